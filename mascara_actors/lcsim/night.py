"""One simulated night, one set of 50 exposures at a time (bounded memory).

For each exposure of a set: which stars are on the chip (camera model at the slot's mid
LST), their true magnitudes (catalogue V + offset + transmission + intrapixel + clouds +
variability + transits), what the photometry measures (:mod:`.noise`), as the records,
star rows and station rows of the pipeline's per-set files. The night also keeps what the
truth file needs: the clouds of every patch and exposure, and the injected noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mascara_actors.atmosphere import airmass
from mascara_actors.camera_model import CameraModel
from mascara_actors.config import CameraConfig
from mascara_actors.decorrelation.sky import slot_hour_angle
from mascara_actors.ephemeris import EphemerisTable, SunMoon
from mascara_actors.lcsim.clouds import CloudField, SkyPatches
from mascara_actors.lcsim.noise import Photometry, measure
from mascara_actors.lcsim.schedule import NightSlots
from mascara_actors.lcsim.settings import LightCurveSimulation
from mascara_actors.lcsim.stars import EDGE_MARGIN_PX, SimulatedStars
from mascara_actors.lcsim.systematics import TruthModel
from mascara_actors.records import empty_records, fast_record_dtype, star_dtype, station_dtype
from mascara_actors.reduce import star_altaz
from mascara_actors.sidereal import (
    REFERENCE_LONGITUDE_DEG,
    SET_SIZE,
    SLOT_SIDEREAL_S,
    jd_to_datetime,
    lstday,
    lstidx,
    lstseq2date,
    slot_length_solar_s,
)
from mascara_actors.star_rows import star_table

__all__ = ["NOISE_DTYPE", "SimulatedNight", "SimulatedSet"]

NOISE_DTYPE = np.dtype([("id", "i4"), ("setidx", "i8"), ("n", "i4"), ("var0", "f4"),
                        ("var1", "f4")])
"""Per star and set: unflagged points and the sum of their injected noise variances in
apertures 0 and 1, mag^2."""
_CCDTEMP = -20.0
_UTC_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # UTC-OBS, as the reducer writes it


@dataclass(frozen=True)
class SimulatedSet:
    """What the pipeline would have saved for one set."""

    records: np.ndarray
    stars: np.ndarray
    station: np.ndarray


@dataclass(frozen=True)
class _Exposures:
    """The slots of a set and their times."""

    lstseq: np.ndarray
    lstidx: np.ndarray
    lst: np.ndarray
    """LST (reference longitude) at the start of each slot, hours."""
    jd: np.ndarray
    jdmid: np.ndarray


@dataclass(frozen=True)
class _Points:
    """The stars on the chip on each exposure of a set: one entry per point."""

    exposure: np.ndarray
    """Index into the set's exposures."""
    star: np.ndarray
    """Index into the simulated stars."""
    x: np.ndarray
    y: np.ndarray
    alt: np.ndarray
    az: np.ndarray


class SimulatedNight:
    """Everything fixed over one simulated night, and its truth as the sets are made."""

    def __init__(self, sim: LightCurveSimulation, camera: CameraConfig, model: CameraModel,
                 stars: SimulatedStars, slots: NightSlots, weather: str,
                 seed_seq: np.random.SeedSequence, patches: SkyPatches,
                 ephemeris: EphemerisTable) -> None:
        self.sim, self.camera, self.model, self.stars = sim, camera, model, stars
        self.slots, self.weather, self.seed_seq = slots, weather, seed_seq
        self.patches = patches
        self.ephemeris = ephemeris
        self.col_of_star = patches.column(stars.patch)
        self.truth = sim.truth_model or TruthModel(model.nx, model.ny)
        self.exptime = slot_length_solar_s()
        self.lon_offset = camera.site.longitude_deg - REFERENCE_LONGITUDE_DEG
        jd0 = float(lstseq2date(slots.first, format="jd"))
        jd1 = float(lstseq2date(slots.stop, format="jd"))
        self.ra, self.dec = stars.cat.positions_at(0.5 * (jd0 + jd1))
        rng = np.random.default_rng(seed_seq.spawn(1)[0])
        self.clouds = CloudField.random(weather, rng, jd0, (jd1 - jd0) * 24.0)
        self.cloud_image = np.full((slots.stop - slots.first, len(patches.patch)), np.nan,
                                   np.float32)
        nstar = len(stars.cat)
        self.noise_sum = np.zeros((2, nstar))
        self.npoints = np.zeros(nstar, np.int64)
        self.noise_rows: list[np.ndarray] = []
        self.nrecords = 0

    def _exposures(self, lstseq: np.ndarray) -> _Exposures:
        idx = lstidx(lstseq)
        jd = np.asarray(lstseq2date(lstseq, format="jd"), float)
        return _Exposures(lstseq, idx, idx * SLOT_SIDEREAL_S / 3600.0, jd,
                          jd + 0.5 * self.exptime / 86400.0)

    def _points(self, lstseq: np.ndarray) -> _Points:
        """The stars on the chip: those near it at the middle of the set (with the margin a
        star moves in 50 exposures), then each exposure's."""
        ne = len(lstseq)
        ha_mid = slot_hour_angle(lstseq[ne // 2], self.ra, self.lon_offset)
        xm, ym = self.model.hadec_to_pixel(ha_mid, self.dec)
        near = np.flatnonzero(self.model.on_chip(xm, ym, margin=EDGE_MARGIN_PX - 2.0 * ne))
        ha = slot_hour_angle(lstseq[:, None], self.ra[near][None, :], self.lon_offset)
        x, y = self.model.hadec_to_pixel(ha, np.broadcast_to(self.dec[near], ha.shape))
        on = self.model.on_chip(x, y, margin=EDGE_MARGIN_PX)
        exposure, star = np.nonzero(on)
        star = near[star]
        alt, az = star_altaz(ha[on], self.dec[star], self.camera.site.latitude_deg)
        return _Points(exposure, star, x[on], y[on], alt, az)

    def _cloud_mag(self, exp: _Exposures, pts: _Points) -> np.ndarray:
        """Clouds at the points (the clouds of every patch are kept for the truth file)."""
        ha_q = slot_hour_angle(exp.lstseq[:, None], self.patches.ra[None, :], self.lon_offset)
        cloud = self.clouds.evaluate(exp.jdmid, ha_q, self.patches.dec)
        self.cloud_image[exp.lstseq - self.slots.first] = cloud
        out: np.ndarray = cloud[pts.exposure, self.col_of_star[pts.star]]
        return out

    def _true_mags(self, exp: _Exposures, pts: _Points) -> tuple[np.ndarray, np.ndarray]:
        """True magnitudes of the points in apertures 0 and 1."""
        st, jd = self.stars, exp.jdmid[pts.exposure]
        dmag = st.offset[pts.star] + self.truth.transmission_mag(pts.x, pts.y, pts.alt) \
            + self._cloud_mag(exp, pts)
        dmag = dmag + st.variability_mag(pts.star, jd) + st.transit_mag(pts.star, jd)
        base = st.cat.vmag[pts.star].astype(float) + dmag
        ipx0 = self.truth.intrapixel_mag(pts.x, pts.y, 0)
        scale = self.truth.ipx_aperture_scale[1] / self.truth.ipx_aperture_scale[0]
        return base + ipx0, base + ipx0 * scale

    def make_set(self, lstseq: np.ndarray, set_seed: int) -> SimulatedSet:
        """Records, star rows and station rows of the exposures ``lstseq`` (one set)."""
        rng = np.random.default_rng(np.random.SeedSequence(
            entropy=self.seed_seq.entropy, spawn_key=(*self.seed_seq.spawn_key, set_seed)))
        exp = self._exposures(lstseq)
        pts = self._points(lstseq)
        mags = self._true_mags(exp, pts)
        sun_moon = self.ephemeris.at(exp.jdmid)
        sun_alt = sun_moon.sunalt.astype(float)[pts.exposure]
        phot = measure(self.sim.noise, mags, airmass(pts.alt), sun_alt, rng,
                       self.sim.flag_fraction)
        rec = self._records(exp, pts, phot)
        self._count_noise(int(lstseq[0]), pts, phot)
        self.nrecords += len(rec)
        station = self._station(exp, pts, phot, sun_moon)
        stars = star_table(self.stars.cat, rec) if len(rec) else np.zeros(0, star_dtype)
        return SimulatedSet(rec, stars, station)

    def _records(self, exp: _Exposures, pts: _Points, phot: Photometry) -> np.ndarray:
        rec = empty_records(len(pts.star), fast_record_dtype())
        rec["id"] = self.stars.cat.hip[pts.star]
        rec["lstseq"] = exp.lstseq[pts.exposure]
        rec["lstidx"] = exp.lstidx[pts.exposure]
        rec["pflag"] = phot.pflag
        rec["aflag"] = 0
        rec["flag"] = phot.pflag != 0
        for a in (0, 1):
            rec[f"flux{a}"] = phot.flux[a]
            rec[f"eflux{a}"] = phot.eflux[a]
        rec["sky"] = phot.sky
        rec["esky"] = phot.esky
        rec["peak"] = phot.peak
        rec["x"], rec["y"] = pts.x, pts.y
        rec["alt"], rec["az"] = pts.alt, pts.az
        rec["ccdtemp"] = _CCDTEMP
        rec["exptime"] = self.exptime
        rec["jdmid"] = exp.jdmid[pts.exposure]
        rec["lst"] = exp.lst[pts.exposure]
        return rec

    def _count_noise(self, first: int, pts: _Points, phot: Photometry) -> None:
        """Add the set's injected noise of the unflagged points to the truth."""
        good = phot.pflag == 0
        nstar = len(self.stars.cat)
        n = np.bincount(pts.star[good], minlength=nstar)
        var = [np.bincount(pts.star[good], phot.noise_var[a][good], minlength=nstar)
               for a in (0, 1)]
        self.noise_sum[0] += var[0]
        self.noise_sum[1] += var[1]
        self.npoints += n
        seen = np.flatnonzero(n)
        rows = np.zeros(len(seen), NOISE_DTYPE)
        rows["id"] = self.stars.cat.hip[seen]
        rows["setidx"] = first // SET_SIZE
        rows["n"] = n[seen]
        rows["var0"] = var[0][seen]
        rows["var1"] = var[1][seen]
        self.noise_rows.append(rows)

    def _station(self, exp: _Exposures, pts: _Points, phot: Photometry, sm: SunMoon
                 ) -> np.ndarray:
        ne = len(exp.lstseq)
        noise = self.sim.noise
        out = np.zeros(ne, station_dtype)
        out["lstseq"] = exp.lstseq
        out["lstidx"] = exp.lstidx
        out["lstday"] = lstday(exp.lstseq)
        out["jd"] = exp.jd
        out["jdmid"] = exp.jdmid
        out["lst"] = exp.lst
        out["exptime"] = self.exptime
        out["ccdtemp"] = _CCDTEMP
        out["dwldtime"] = 0.9
        out["margtime"] = 0.1
        out["immed"] = 1000.0 + (float(np.median(phot.sky_level)) if len(pts.star) else 0.0)
        out["imstd"] = np.sqrt(noise.sky_e) / noise.gain
        for k in range(4):
            out[f"oversca{k}"] = 1000.0
        out["utc"] = [jd_to_datetime(float(j)).strftime(_UTC_FORMAT).encode() for j in exp.jd]
        for name in ("sunra", "sundec", "sunalt", "moonra", "moondec", "moonalt", "moonph"):
            out[name] = getattr(sm, name)
        mx, my = self.model.radec_to_pixel(out["moonra"].astype(float),
                                           out["moondec"].astype(float),
                                           exp.lst + self.lon_offset / 15.0)
        on = self.model.on_chip(mx, my)
        out["moonx"] = np.where(on, mx, np.nan)
        out["moony"] = np.where(on, my, np.nan)
        out["nstars"] = np.bincount(pts.exposure, minlength=ne)
        out["nflagged"] = np.bincount(pts.exposure, weights=(phot.pflag != 0).astype(float),
                                      minlength=ne)
        return out

