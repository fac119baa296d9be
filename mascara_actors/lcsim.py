"""Light-curve-level simulator: nightly fast files of one camera with a known truth.

Rendering images is far too slow for the many nights a calibration needs, so this simulator
writes what the reduction would have measured: for the real Hipparcos stars of a camera
(positions through the camera model, at the 6.4 sidereal-second cadence of the lstseq clock,
inside the configured night windows) it computes fluxes in both fast apertures and writes
them through :class:`~mascara_actors.storage.SetWriter` and the nightly combine, so the
files are exactly the pipeline's: ``OUT/{night}{SITE}{CAM}/lightcurves/fast_{night}{SITE}
{CAM}.hdf5``. Memory stays bounded: one set of 50 exposures is made at a time.

The instrumental magnitude of star ``s`` on exposure ``t`` (before noise) is::

    m = V_s + offset_s + T(x, y, alt) + ipx(x, y) + clouds(patch_s, t) + var_s(t) + transit_s(t)

- ``offset_s``: the catalogue error and passband mismatch, normal with ``offset_sigma``;
- ``T``: vignetting ``-2.5 log10(1 - vignetting * rho^2)`` with ``rho`` the distance from
  the (slightly offset) optical centre in units of half the chip width (30 % at the left and
  right edges), plus extinction ``extinction * (X - 1)`` (Kasten & Young airmass X);
- ``ipx``: ``A(x, y) * (c0 sin 2 pi x + c1 cos 2 pi x + c2 sin 2 pi y + c3 cos 2 pi y)`` with
  ``A = max(0.3, 1 - ipx_falloff * rho^2)``, times ``ipx_aperture_scale[a]`` for aperture a
  (about 1.6 % peak to peak at the centre for aperture 0);
- ``clouds``: per HEALPix nside-8 patch of the star's catalogue position and per exposure,
  zero on clear nights, drifting blobs on cloudy nights, 2.5-4.5 mag on overcast nights;
- ``var_s``: sinusoids for a fraction of the stars; ``transit_s``: trapezoidal transits.

Noise: photon noise of star and sky, read noise (in ``eflux``, as the photometry reports
it) and scintillation (not in ``eflux``, as in reality: ``scintillation * X**1.75``, Young
1967 for a 17 mm pupil, 6.4 s and 2,400 m). Points are flagged as the photometry would:
saturated (8), negative flux (16), bad sky pixel (2, at random and in bright twilight, where
the flux is NaN).

Truth file ``OUT/truth_{SITE}{CAM}.fits`` (FITS, lossless):

``PRIMARY``
    header keys: CAMERA, SEED, NNIGHTS, and every model number (``VIGNET``, ``VIGCX``,
    ``VIGCY``, ``EXTINCT``, ``IPXC0..3``, ``IPXFALL``, ``IPXAP0``, ``IPXAP1``, ``FLUX84``,
    ``SKYE``, ``RDNOISE``, ``SCINT``, ``GAIN``, ``NX``, ``NY``); :func:`read_truth` rebuilds
    the :class:`TruthModel` from them.
``STARS``
    one row per simulated star: ``id`` (HIP), ``ra``, ``dec`` (catalogue, deg), ``vmag``,
    ``patch`` (HEALPix nside 8, ring order), ``offset`` (mag), ``var_amp`` (mag, 0 when
    constant), ``var_period`` (d), ``var_phase`` (rad), ``transit`` (1 when it has a
    transit), and per night (vectors of length NNIGHTS) ``npoints`` (unflagged points) and
    ``noise_var0``, ``noise_var1``: the mean injected noise variance of an unflagged point
    in aperture 0 and 1, mag^2 (photon + sky + read + scintillation), so the noise floor
    of a bin of n points is ``sqrt(noise_var / n)``.
``TRANSITS``
    ``id``, ``period`` (d), ``epoch`` (JD UTC of mid-transit), ``depth`` (fraction of the
    flux), ``duration`` (h).
``NOISE``
    per star and set of 50: ``id``, ``setidx``, ``n`` (unflagged points), ``var0``,
    ``var1`` (the sum of their injected noise variances in aperture 0 and 1, mag^2): the
    noise floor of the set's mean is ``sqrt(var / n**2)``.
``NIGHTS``
    ``night`` (YYYYMMDD), ``weather`` (clear, cloudy or overcast), ``lstseq0`` and ``nexp``
    (the simulated slots), ``file`` (the nightly file, relative to OUT).
``PATCHES``
    ``patch``, ``ra``, ``dec`` (centre, deg) of the patches of the simulated stars.
``CLOUDS_{night}``
    image (nexp, npatch) float32: the clouds in mag of every patch (columns in PATCHES
    order) on every simulated slot (row k is lstseq ``lstseq0 + k``).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, Config, load_config
from mascara_actors.decorrelation.grids import patch_centres, patch_of, wrap_ha
from mascara_actors.ephemeris import sun_moon
from mascara_actors.errors import ConfigError, StorageError
from mascara_actors.night_window import NightWindow, night_window
from mascara_actors.records import empty_records, fast_record_dtype, star_dtype, station_dtype
from mascara_actors.sidereal import (
    REFERENCE_LONGITUDE_DEG,
    SLOT_SIDEREAL_S,
    SLOTS_PER_SIDEREAL_DAY,
    lstseq2date,
    slot_length_solar_s,
)
from mascara_actors.storage import SET_SIZE, SetWriter, atomic_write_bytes

__all__ = [
    "WEATHER",
    "LightCurveSimulation",
    "NoiseModel",
    "SimulationReport",
    "TransitSpec",
    "Truth",
    "TruthModel",
    "airmass",
    "read_truth",
    "simulate_lightcurves",
    "transit_shape",
    "truth_file_path",
]

log = logging.getLogger(__name__)

WEATHER = ("clear", "cloudy", "overcast")
"""Night types: clear (no clouds), cloudy (drifting clouds over part of the sky and night),
overcast (2.5-4.5 mag of clouds over the whole sky)."""
_WEATHER_P = (0.6, 0.3, 0.1)
_MAG = 2.5 / np.log(10.0)  # d(mag) = _MAG * d(flux) / flux
_EDGE_MARGIN_PX = 50.0  # the photometry does not measure stars closer to the edge
_APERTURE_PX = (2.5, 4.5)
_NOISE_DTYPE = np.dtype([("id", "i4"), ("setidx", "i8"), ("n", "i4"), ("var0", "f4"),
                         ("var1", "f4")])


def airmass(alt_deg: np.ndarray) -> np.ndarray:
    """Relative airmass at true altitude ``alt_deg`` (Kasten & Young 1989); alt >= 0."""
    alt = np.maximum(np.asarray(alt_deg, float), 0.0)
    return 1.0 / (np.sin(np.radians(alt)) + 0.50572 * (alt + 6.07995) ** -1.6364)


def transit_shape(jd: np.ndarray, period_d: float, epoch_jd: float, duration_h: float
                  ) -> np.ndarray:
    """Fraction of the transit depth at times ``jd``: 1 in the flat bottom, 0 outside,
    linear over an ingress and egress of a tenth of the duration each."""
    dt_d = (np.asarray(jd, float) - epoch_jd + 0.5 * period_d) % period_d - 0.5 * period_d
    half = 0.5 * duration_h / 24.0
    ramp = 0.1 * duration_h / 24.0
    return np.clip((half - np.abs(dt_d)) / ramp, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class TransitSpec:
    """One injected transit."""

    hip: int
    period_d: float
    epoch_jd: float
    """Mid-transit, JD (UTC)."""
    depth: float
    """Fraction of the flux lost in the flat bottom (0.01 = 1 %)."""
    duration_h: float
    """First to last contact, hours."""


@dataclass(frozen=True, slots=True)
class TruthModel:
    """The camera and the clear sky the simulator injects (evaluated again by the tests)."""

    nx: int
    ny: int
    vignetting: float = 0.30
    """Light lost at ``rho = 1`` (the left and right chip edges), fraction."""
    centre_offset: tuple[float, float] = (80.0, -50.0)
    """Optical centre of the vignetting from the chip centre, pixels."""
    extinction: float = 0.10
    """Clear-sky extinction, mag per airmass."""
    ipx_coeffs: tuple[float, float, float, float] = (0.004, -0.003, 0.003, 0.002)
    """Intrapixel amplitudes at the centre (sin 2 pi x, cos 2 pi x, sin 2 pi y, cos 2 pi y),
    mag."""
    ipx_falloff: float = 0.4
    ipx_aperture_scale: tuple[float, float] = (1.0, 0.35)

    def _rho2(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        cx = (self.nx - 1) / 2.0 + self.centre_offset[0]
        cy = (self.ny - 1) / 2.0 + self.centre_offset[1]
        half = self.nx / 2.0
        return ((np.asarray(x, float) - cx) ** 2 + (np.asarray(y, float) - cy) ** 2) / half**2

    def vignetting_mag(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Magnitudes lost to vignetting at chip position (x, y)."""
        trans = np.maximum(1.0 - self.vignetting * self._rho2(x, y), 0.2)
        return -2.5 * np.log10(trans)

    def extinction_mag(self, alt_deg: np.ndarray) -> np.ndarray:
        """Clear-sky extinction relative to the zenith, magnitudes."""
        return self.extinction * (airmass(alt_deg) - 1.0)

    def transmission_mag(self, x: np.ndarray, y: np.ndarray, alt_deg: np.ndarray
                         ) -> np.ndarray:
        """The true transmission term T: vignetting plus extinction, magnitudes."""
        return self.vignetting_mag(x, y) + self.extinction_mag(alt_deg)

    def intrapixel_amplitudes(self, x: np.ndarray, y: np.ndarray, aperture: int = 0
                              ) -> np.ndarray:
        """True intrapixel amplitudes at (x, y), shape (n, 4), magnitudes."""
        scale = np.maximum(1.0 - self.ipx_falloff * self._rho2(x, y), 0.3)
        scale = scale * self.ipx_aperture_scale[aperture]
        return scale[:, None] * np.asarray(self.ipx_coeffs)[None, :]

    def intrapixel_mag(self, x: np.ndarray, y: np.ndarray, aperture: int = 0) -> np.ndarray:
        """The true intrapixel term at (x, y), magnitudes."""
        from mascara_actors.decorrelation.grids import pixel_basis

        amp = self.intrapixel_amplitudes(x, y, aperture)
        return np.einsum("in,ni->n", pixel_basis(x, y), amp)

    def header_cards(self) -> list[tuple[str, object, str]]:
        c = self.ipx_coeffs
        return [
            ("NX", self.nx, "science region width, px"),
            ("NY", self.ny, "science region height, px"),
            ("VIGNET", self.vignetting, "light lost at rho = 1 (left/right edges)"),
            ("VIGCX", self.centre_offset[0], "vignetting centre - chip centre, x, px"),
            ("VIGCY", self.centre_offset[1], "vignetting centre - chip centre, y, px"),
            ("EXTINCT", self.extinction, "clear-sky extinction, mag per airmass"),
            ("IPXC0", c[0], "ipx sin 2 pi x amplitude at centre, mag"),
            ("IPXC1", c[1], "ipx cos 2 pi x amplitude at centre, mag"),
            ("IPXC2", c[2], "ipx sin 2 pi y amplitude at centre, mag"),
            ("IPXC3", c[3], "ipx cos 2 pi y amplitude at centre, mag"),
            ("IPXFALL", self.ipx_falloff, "ipx scale max(0.3, 1 - IPXFALL rho^2)"),
            ("IPXAP0", self.ipx_aperture_scale[0], "intrapixel scale of aperture 0"),
            ("IPXAP1", self.ipx_aperture_scale[1], "intrapixel scale of aperture 1"),
        ]

    @classmethod
    def from_header(cls, h: fits.Header) -> TruthModel:
        return cls(nx=int(h["NX"]), ny=int(h["NY"]), vignetting=float(h["VIGNET"]),
                   centre_offset=(float(h["VIGCX"]), float(h["VIGCY"])),
                   extinction=float(h["EXTINCT"]),
                   ipx_coeffs=(float(h["IPXC0"]), float(h["IPXC1"]), float(h["IPXC2"]),
                               float(h["IPXC3"])),
                   ipx_falloff=float(h["IPXFALL"]),
                   ipx_aperture_scale=(float(h["IPXAP0"]), float(h["IPXAP1"])))


@dataclass(frozen=True, slots=True)
class NoiseModel:
    """Fluxes and noise of the simulated photometry (electrons unless said otherwise)."""

    flux_v84_e: float = 10000.0
    """Electrons in aperture 0 from a V = 8.4 star at the centre, at the zenith, clear."""
    aperture1_gain: float = 1.12
    """Flux in aperture 1 over aperture 0."""
    sky_e: float = 350.0
    """Dark-sky level at the zenith, electrons per pixel and exposure."""
    read_noise_e: float = 10.0
    gain: float = 0.62
    """e-/ADU."""
    scintillation: float = 0.013
    """Scintillation noise at airmass 1, fraction of the flux."""
    peak_fraction: float = 0.15
    """Fraction of the star's aperture-0 flux in its brightest pixel."""
    saturation_adu: float = 63000.0

    def header_cards(self) -> list[tuple[str, object, str]]:
        return [
            ("FLUX84", self.flux_v84_e, "e- in aperture 0, V=8.4, centre, zenith"),
            ("AP1GAIN", self.aperture1_gain, "flux in aperture 1 / aperture 0"),
            ("SKYE", self.sky_e, "dark sky at zenith, e- per px and exposure"),
            ("RDNOISE", self.read_noise_e, "read noise, e-"),
            ("GAIN", self.gain, "e-/ADU"),
            ("SCINT", self.scintillation, "scintillation at airmass 1, fraction"),
            ("PEAKFRAC", self.peak_fraction, "fraction of the flux in the peak pixel"),
            ("SATURATE", self.saturation_adu, "saturation, ADU"),
        ]


@dataclass(frozen=True)
class LightCurveSimulation:
    """What to simulate."""

    camera: str = "LPC"
    sensor: str | None = None
    """Sensor of config/cameras.toml (default the camera's; ``crop1024`` is the central
    1024 x 680 pixels: a small camera with the full star density, for tests)."""
    nights: int = 15
    start: dt.date = dt.date(2026, 1, 8)
    """Date (UTC, of the sunset) of the first night."""
    stars: int | None = None
    """Simulate this many stars, drawn at random among the camera's stars (default all)."""
    seed: int = 1
    hours: float | None = None
    """Simulate only this many hours of each night (default the whole night window)."""
    offset_hours: float = 0.0
    """With ``hours``: start this long after the night starts."""
    every_set: int = 1
    """Simulate one set of 50 exposures in ``every_set`` (1: all of them). More gives small
    test data with full sets whose stars still cross the whole field."""
    weather: tuple[str, ...] | None = None
    """One of :data:`WEATHER` per night; default drawn at random (60 % clear, 30 % cloudy,
    10 % overcast)."""
    vmax: float = 8.4
    dec_range: tuple[float, float] | None = None
    """Simulate only the camera's stars with declination in this range (degrees): the full
    star density of a part of the field, for small test data."""
    offset_sigma: float = 0.02
    variable_fraction: float = 0.04
    transit_fraction: float = 0.01
    transit_depth: tuple[float, float] = (0.005, 0.02)
    """Range of the random transits' depths (fraction of the flux)."""
    transits: tuple[TransitSpec, ...] = ()
    """Transits to inject besides the random ones (a star listed here gets only this)."""
    flag_fraction: float = 0.002
    """Fraction of points flagged at random (bad sky pixel)."""
    compression: str | None = "config"
    """HDF5 compression of the nightly files: ``"gzip"``, ``"lzf"``, None, or ``"config"``
    for the configured one (``[storage] compression``)."""
    truth_model: TruthModel | None = None
    """Default: :class:`TruthModel` for the camera's chip."""
    noise: NoiseModel = field(default_factory=NoiseModel)


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """What :func:`simulate_lightcurves` wrote."""

    outdir: Path
    nightly_files: tuple[Path, ...]
    truth_file: Path
    nstars: int
    nrecords: int


def truth_file_path(outdir: str | Path, camera_id: str) -> Path:
    """``OUT/truth_{SITE}{CAM}.fits``."""
    return Path(outdir) / f"truth_{camera_id}.fits"


# --------------------------------------------------------------------------------------------
# the sky of one night


@dataclass
class _Clouds:
    """Clouds of one night: drifting Gaussian blobs (cloudy) or a thick layer (overcast)."""

    weather: str
    blobs: np.ndarray  # (nblob, 8): ha0, dec0, vha, vdec, amp, width, t_on, t_off
    base: tuple[float, float, float]  # overcast: level, amplitude, period_h
    t0: float  # JD of the start of the night

    @classmethod
    def random(cls, weather: str, rng: np.random.Generator, t0: float, length_h: float
               ) -> _Clouds:
        nblob = int(rng.integers(4, 9)) if weather == "cloudy" else 0
        blobs = np.empty((nblob, 8))
        if nblob:
            blobs[:, 0] = rng.uniform(-90, 90, nblob)
            blobs[:, 1] = rng.uniform(-10, 70, nblob)
            blobs[:, 2] = rng.uniform(-25, 25, nblob)  # deg per hour: the wind
            blobs[:, 3] = rng.uniform(-5, 5, nblob)
            blobs[:, 4] = np.exp(rng.uniform(np.log(0.05), np.log(0.8), nblob))
            blobs[:, 5] = rng.uniform(6, 18, nblob)
            on = rng.uniform(-0.2, 0.7, nblob) * length_h
            blobs[:, 6] = on
            blobs[:, 7] = on + rng.uniform(0.2, 0.6, nblob) * length_h
        base = (float(rng.uniform(2.5, 3.5)), float(rng.uniform(0.3, 1.0)),
                float(rng.uniform(1.0, 4.0)))
        return cls(weather, blobs, base, t0)

    def evaluate(self, jd: np.ndarray, ha_q: np.ndarray, dec_q: np.ndarray) -> np.ndarray:
        """Clouds (mag) at times ``jd`` (n,) for patches at ``ha_q`` (n, npatch), ``dec_q``."""
        shape = np.shape(ha_q)
        if self.weather == "clear":
            return np.zeros(shape)
        hours = ((np.asarray(jd, float) - self.t0) * 24.0)[:, None]
        if self.weather == "overcast":
            level, amp, period = self.base
            wave = np.sin(2 * np.pi * hours / period + np.radians(ha_q) * 2.0)
            return level + amp * wave * np.cos(np.radians(dec_q))[None, :]
        out = np.zeros(shape)
        sd = np.sin(np.radians(dec_q))[None, :]
        cd = np.cos(np.radians(dec_q))[None, :]
        for ha0, dec0, vha, vdec, amp, width, t_on, t_off in self.blobs:
            env = np.clip((hours - t_on) / 0.5, 0, 1) * np.clip((t_off - hours) / 0.5, 0, 1)
            if not np.any(env):
                continue
            ha_b = ha0 + vha * hours
            dec_b = np.radians(dec0 + vdec * hours)
            cosd = sd * np.sin(dec_b) + cd * np.cos(dec_b) * np.cos(np.radians(ha_q - ha_b))
            d = np.degrees(np.arccos(np.clip(cosd, -1, 1)))
            out += amp * env * np.exp(-0.5 * (d / width) ** 2)
        return out


@dataclass
class _Stars:
    """The simulated stars and their truth (catalogue order = ascending HIP)."""

    cat: Catalogue
    patch: np.ndarray
    offset: np.ndarray
    var_amp: np.ndarray
    var_period: np.ndarray
    var_phase: np.ndarray
    transits: dict[int, TransitSpec]


def _star_rows(cat: Catalogue, index: np.ndarray, lstseq: np.ndarray, jdmid: np.ndarray
               ) -> np.ndarray:
    """``star_dtype`` rows of the stars ``index`` (sorted by id) measured at ``lstseq``."""
    ids, _first, counts = np.unique(index, return_index=True, return_counts=True)
    order = np.argsort(index, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])[:-1]
    out = np.zeros(len(ids), star_dtype)
    sub = cat.stars[ids]
    out["id"] = sub["hip"]
    out["ra"] = sub["ra_deg"]
    out["dec"] = sub["dec_deg"]
    out["vmag"] = sub["vmag"]
    out["bmag"] = sub["bmag"]
    out["sptype"] = np.char.encode(sub["sptype"].astype(str), "ascii")
    out["blend"] = sub["blend"]
    out["blendvalue"] = sub["blendvalue"]
    out["nobs"] = counts
    seq = lstseq[order].astype(np.int64)
    out["lstseqmin"] = np.minimum.reduceat(seq, bounds)
    out["lstseqmax"] = np.maximum.reduceat(seq, bounds)
    out["jdstart"] = np.minimum.reduceat(jdmid[order], bounds)
    return out


def _altaz(ha_deg: np.ndarray, dec_deg: np.ndarray, lat_deg: float
           ) -> tuple[np.ndarray, np.ndarray]:
    ha, dec, phi = np.radians(ha_deg), np.radians(dec_deg), np.radians(lat_deg)
    east = -np.cos(dec) * np.sin(ha)
    north = np.cos(phi) * np.sin(dec) - np.sin(phi) * np.cos(dec) * np.cos(ha)
    up = np.sin(phi) * np.sin(dec) + np.cos(phi) * np.cos(dec) * np.cos(ha)
    return np.degrees(np.arcsin(np.clip(up, -1, 1))), np.degrees(np.arctan2(east, north)) % 360


def _utc_strings(jd: np.ndarray) -> np.ndarray:
    us = np.round((np.asarray(jd, float) - 2440587.5) * 86400e6).astype("datetime64[us]")
    text = np.datetime_as_string(us, unit="us")
    return np.char.encode(np.char.replace(text, "T", " "), "ascii")


class _Night:
    """Everything fixed over one simulated night."""

    def __init__(self, sim: LightCurveSimulation, camera: CameraConfig, model: CameraModel,
                 stars: _Stars, window: NightWindow, first: int, stop: int, weather: str,
                 seed_seq: np.random.SeedSequence, patches: np.ndarray,
                 patch_ra: np.ndarray, patch_dec: np.ndarray) -> None:
        self.sim, self.camera, self.model, self.stars = sim, camera, model, stars
        self.window, self.first, self.stop, self.weather = window, first, stop, weather
        self.seed_seq = seed_seq
        self.patches, self.patch_ra, self.patch_dec = patches, patch_ra, patch_dec
        self.col_of_star = np.searchsorted(patches, stars.patch)
        self.truth = sim.truth_model or TruthModel(model.nx, model.ny)
        self.exptime = slot_length_solar_s()
        self.lon_off = camera.site.longitude_deg - REFERENCE_LONGITUDE_DEG
        jd0 = float(lstseq2date(first, format="jd"))
        jd1 = float(lstseq2date(stop, format="jd"))
        self.ra, self.dec = stars.cat.positions_at(0.5 * (jd0 + jd1))
        rng = np.random.default_rng(seed_seq.spawn(1)[0])
        self.clouds = _Clouds.random(weather, rng, jd0, (jd1 - jd0) * 24.0)
        # Sun and Moon on a 15-minute grid, interpolated per exposure
        step = 15.0 / 1440.0
        self._grid = np.arange(jd0 - step, jd1 + 2 * step, step)
        self._sm = sun_moon(self._grid, camera.site)
        self.cloud_image = np.full((stop - first, len(patches)), np.nan, np.float32)
        nstar = len(stars.cat)
        self.noise_sum = np.zeros((2, nstar))
        self.npoints = np.zeros(nstar, np.int64)
        self.noise_rows: list[np.ndarray] = []
        self.nrecords = 0

    def _interp(self, name: str, jd: np.ndarray) -> np.ndarray:
        values = getattr(self._sm, name).astype(float)
        if name.endswith("ra"):
            values = np.degrees(np.unwrap(np.radians(values)))
            return np.interp(jd, self._grid, values) % 360.0
        return np.interp(jd, self._grid, values)

    def make_set(self, lstseq: np.ndarray, set_seed: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Records, star rows and station rows of the exposures ``lstseq``."""
        sim, noise, truth, st = self.sim, self.sim.noise, self.truth, self.stars
        rng = np.random.default_rng(np.random.SeedSequence(
            entropy=self.seed_seq.entropy, spawn_key=(*self.seed_seq.spawn_key, set_seed)))
        ne = len(lstseq)
        lstidx = lstseq % SLOTS_PER_SIDEREAL_DAY
        lst_start = lstidx * SLOT_SIDEREAL_S / 3600.0
        lst_mid = (lstidx + 0.5) * SLOT_SIDEREAL_S / 3600.0
        jd = np.asarray(lstseq2date(lstseq, format="jd"), float)
        jdmid = jd + 0.5 * self.exptime / 86400.0

        # positions of the stars near the chip (at the middle of the set, with the margin a
        # star moves in 50 exposures) on every exposure; keep those measured
        ha_mid = wrap_ha(15.0 * lst_mid[ne // 2] + self.lon_off - self.ra)
        xm, ym = self.model.hadec_to_pixel(ha_mid, self.dec)
        near = np.flatnonzero(self.model.on_chip(xm, ym, margin=_EDGE_MARGIN_PX - 2.0 * ne))
        ha = wrap_ha(15.0 * lst_mid[:, None] + self.lon_off - self.ra[near][None, :])
        x, y = self.model.hadec_to_pixel(ha, np.broadcast_to(self.dec[near], ha.shape))
        on = self.model.on_chip(x, y, margin=_EDGE_MARGIN_PX)
        ie, isx = np.nonzero(on)
        isx = near[isx]
        x, y, ha = x[on], y[on], ha[on]
        dec = self.dec[isx]
        alt, az = _altaz(ha, dec, self.camera.site.latitude_deg)
        xair = airmass(alt)

        # clouds of the patches on these exposures (also kept for the truth file)
        ha_q = wrap_ha(15.0 * lst_mid[:, None] + self.lon_off - self.patch_ra[None, :])
        cloud = self.clouds.evaluate(jdmid, ha_q, self.patch_dec)
        self.cloud_image[lstseq - self.first] = cloud
        c = cloud[ie, self.col_of_star[isx]]

        # magnitudes before noise
        vmag = st.cat.vmag[isx].astype(float)
        dmag = st.offset[isx] + truth.transmission_mag(x, y, alt) + c
        var = st.var_amp[isx] * np.sin(2 * np.pi * jdmid[ie] / np.where(
            st.var_period[isx] > 0, st.var_period[isx], 1.0) + st.var_phase[isx])
        dmag = dmag + var
        hip = st.cat.hip[isx]
        for h in np.intersect1d(hip, np.fromiter(st.transits, np.int64)).tolist():
            tr = st.transits[int(h)]
            k = np.flatnonzero(hip == h)
            shape = transit_shape(jdmid[ie[k]], tr.period_d, tr.epoch_jd, tr.duration_h)
            dmag[k] += -2.5 * np.log10(1.0 - tr.depth * shape)
        sun_alt = self._interp("sunalt", jdmid)[ie]
        sky_e = noise.sky_e * (1.0 + 0.3 * (xair - 1.0))
        sky_e = sky_e * 10.0 ** (0.4 * 0.6 * np.clip(sun_alt + 18.0, 0.0, None))
        fluxes, efluxes, noise_var = [], [], []
        z = rng.standard_normal((3, len(ie)))
        scint = noise.scintillation * xair**1.75 * z[2]
        npix = [np.pi * r * r for r in _APERTURE_PX]
        shot0 = None
        ipx0 = truth.intrapixel_mag(x, y, 0)
        ipx_scale = truth.ipx_aperture_scale[1] / truth.ipx_aperture_scale[0]
        for a in (0, 1):
            m_a = vmag + dmag + (ipx0 * ipx_scale if a else ipx0) - 8.4
            f_e = noise.flux_v84_e * 10.0 ** (-0.4 * m_a) * (noise.aperture1_gain if a else 1.0)
            var_e = np.maximum(f_e, 0) + npix[a] * (sky_e + noise.read_noise_e**2)
            if a == 0:
                shot0 = np.sqrt(var_e) * z[0]
                shot = shot0
            else:
                # the outer aperture holds the inner one: its noise adds to the inner's
                extra = np.maximum(var_e - (np.maximum(f_e / noise.aperture1_gain, 0)
                                            + npix[0] * (sky_e + noise.read_noise_e**2)), 0)
                shot = shot0 + np.sqrt(extra) * z[1]
            fluxes.append((f_e * (1.0 + scint) + shot) / noise.gain)
            efluxes.append(np.sqrt(var_e) / noise.gain)
            noise_var.append(_MAG**2 * (var_e / f_e**2 + (noise.scintillation * xair**1.75)**2))
        sky_adu = sky_e / noise.gain
        peak = noise.peak_fraction * fluxes[0] + sky_adu

        pflag = np.zeros(len(ie), np.uint8)
        pflag[rng.random(len(ie)) < sim.flag_fraction] |= 2
        bright = sky_adu >= noise.saturation_adu
        pflag[bright] |= 2
        pflag[peak >= noise.saturation_adu] |= 8
        for a in (0, 1):
            fluxes[a][bright] = np.nan
            pflag[fluxes[a] < 0] |= 16

        rec = empty_records(len(ie), fast_record_dtype())
        rec["id"] = st.cat.hip[isx]
        rec["lstseq"] = lstseq[ie]
        rec["lstidx"] = lstidx[ie]
        rec["pflag"] = pflag
        rec["aflag"] = 0
        rec["flag"] = pflag != 0
        for a in (0, 1):
            rec[f"flux{a}"] = fluxes[a]
            rec[f"eflux{a}"] = efluxes[a]
        rec["sky"] = sky_adu + np.sqrt(sky_e) / noise.gain * 0.05 * z[1]
        rec["esky"] = np.sqrt(sky_e + noise.read_noise_e**2) / noise.gain
        rec["peak"] = peak
        rec["x"], rec["y"] = x, y
        rec["alt"], rec["az"] = alt, az
        rec["ccdtemp"] = -20.0
        rec["exptime"] = self.exptime
        rec["jdmid"] = jdmid[ie]
        rec["lst"] = lst_start[ie]

        good = pflag == 0
        nstar = len(st.cat)
        per_set = [np.bincount(isx[good], minlength=nstar)]
        for a in (0, 1):
            per_set.append(np.bincount(isx[good], noise_var[a][good], minlength=nstar))
            self.noise_sum[a] += per_set[-1]
        self.npoints += per_set[0]
        seen = np.flatnonzero(per_set[0])
        rows = np.zeros(len(seen), _NOISE_DTYPE)
        rows["id"] = st.cat.hip[seen]
        rows["setidx"] = int(lstseq[0]) // SET_SIZE
        rows["n"] = per_set[0][seen]
        rows["var0"] = per_set[1][seen]
        rows["var1"] = per_set[2][seen]
        self.noise_rows.append(rows)
        self.nrecords += len(rec)

        station = self._station(lstseq, lstidx, lst_start, jd, jdmid, ie, pflag,
                                float(np.median(sky_adu)) if len(sky_adu) else 0.0)
        return rec, _star_rows(st.cat, isx, lstseq[ie], jdmid[ie]), station

    def _station(self, lstseq: np.ndarray, lstidx: np.ndarray, lst: np.ndarray,
                 jd: np.ndarray, jdmid: np.ndarray, ie: np.ndarray, pflag: np.ndarray,
                 sky: float) -> np.ndarray:
        ne = len(lstseq)
        out = np.zeros(ne, station_dtype)
        out["lstseq"] = lstseq
        out["lstidx"] = lstidx
        out["lstday"] = lstseq // SLOTS_PER_SIDEREAL_DAY
        out["jd"] = jd
        out["jdmid"] = jdmid
        out["lst"] = lst
        out["exptime"] = self.exptime
        out["ccdtemp"] = -20.0
        out["dwldtime"] = 0.9
        out["margtime"] = 0.1
        out["immed"] = 1000.0 + sky
        out["imstd"] = np.sqrt(self.sim.noise.sky_e) / self.sim.noise.gain
        for k in range(4):
            out[f"oversca{k}"] = 1000.0
        out["utc"] = _utc_strings(jd)
        for name in ("sunra", "sundec", "sunalt", "moonra", "moondec", "moonalt", "moonph"):
            out[name] = self._interp(name, jdmid)
        mx, my = self.model.radec_to_pixel(out["moonra"].astype(float),
                                           out["moondec"].astype(float),
                                           lst + self.lon_off / 15.0)
        on = self.model.on_chip(mx, my)
        out["moonx"] = np.where(on, mx, np.nan)
        out["moony"] = np.where(on, my, np.nan)
        out["nstars"] = np.bincount(ie, minlength=ne)
        out["nflagged"] = np.bincount(ie, weights=(pflag != 0).astype(float), minlength=ne)
        return out


# --------------------------------------------------------------------------------------------


def _night_windows(config: Config, camera: CameraConfig, sim: LightCurveSimulation
                   ) -> list[tuple[NightWindow, int, int]]:
    """(window, first slot, stop slot) of each simulated night."""
    out = []
    slots_per_hour = 3600.0 / slot_length_solar_s()
    # local noon of the night's date: the next night window is the one wanted
    noon_utc_h = 12.0 - camera.site.longitude_deg / 15.0
    for i in range(sim.nights):
        date = sim.start + dt.timedelta(days=i)
        jd = (dt.datetime(date.year, date.month, date.day) - dt.datetime(2000, 1, 1, 12)
              ).total_seconds() / 86400.0 + 2451545.0 + noon_utc_h / 24.0
        win = night_window(camera.site, jd, config.reduction.night)
        first, stop = win.start_lstseq, win.stop_lstseq
        if sim.hours is not None:
            first = min(stop - 1, first + round(sim.offset_hours * slots_per_hour))
            stop = min(stop, first + max(1, round(sim.hours * slots_per_hour)))
        out.append((win, first, stop))
    return out


def _choose_stars(sim: LightCurveSimulation, catalogue: Catalogue, model: CameraModel,
                  camera: CameraConfig, windows: list[tuple[NightWindow, int, int]],
                  rng: np.random.Generator) -> _Stars:
    bright = catalogue.select(vmax=sim.vmax)
    jd_mid = float(lstseq2date((windows[0][1] + windows[-1][2]) // 2, format="jd"))
    ra, dec = bright.positions_at(jd_mid)
    lon_off = camera.site.longitude_deg - REFERENCE_LONGITUDE_DEG
    # only stars in the declinations the chip covers (its border, with a margin)
    edge_x = np.r_[np.linspace(0, model.nx - 1, 64), np.full(64, model.nx - 1),
                   np.linspace(0, model.nx - 1, 64), np.zeros(64)]
    edge_y = np.r_[np.zeros(64), np.linspace(0, model.ny - 1, 64), np.full(64, model.ny - 1),
                   np.linspace(0, model.ny - 1, 64)]
    _, edge_dec = model.pixel_to_hadec(edge_x, edge_y)
    lo, hi = np.nanmin(edge_dec) - 2, np.nanmax(edge_dec) + 2
    if sim.dec_range is not None:
        lo, hi = max(lo, sim.dec_range[0]), min(hi, sim.dec_range[1])
    inside_dec = np.flatnonzero((dec >= lo) & (dec <= hi))
    ra_c, dec_c = ra[inside_dec], dec[inside_dec]
    # the slots of every night, one every 4 minutes (a star moves 1 deg, 50 px, meanwhile)
    lstidx = np.unique(np.concatenate([
        np.r_[np.arange(first, stop, 38), stop - 1] % SLOTS_PER_SIDEREAL_DAY // 38 * 38
        for _, first, stop in windows]))
    seen = np.zeros(len(inside_dec), bool)
    for idx in lstidx.tolist():
        lst = (idx + 0.5) * SLOT_SIDEREAL_S / 3600.0
        x, y = model.hadec_to_pixel(wrap_ha(15 * lst + lon_off - ra_c), dec_c)
        seen |= model.on_chip(x, y, margin=_EDGE_MARGIN_PX)
    index = inside_dec[seen]
    if sim.stars is not None and sim.stars < len(index):
        index = np.sort(rng.choice(index, sim.stars, replace=False))
    cat = Catalogue(bright.stars[index], blend_radius_arcsec=bright.blend_radius_arcsec)
    n = len(cat)
    patch = patch_of(cat["ra_deg"], cat["dec_deg"])
    offset = rng.normal(0.0, sim.offset_sigma, n)
    var_amp = np.zeros(n)
    var_period = np.zeros(n)
    var_phase = np.zeros(n)
    nvar = round(sim.variable_fraction * n)
    chosen = rng.choice(n, nvar, replace=False) if nvar else np.empty(0, np.int64)
    var_amp[chosen] = np.exp(rng.uniform(np.log(0.003), np.log(0.1), nvar))
    var_period[chosen] = np.exp(rng.uniform(np.log(0.1), np.log(20.0), nvar))
    var_phase[chosen] = rng.uniform(0, 2 * np.pi, nvar)
    jd0 = float(lstseq2date(windows[0][1], format="jd"))
    transits: dict[int, TransitSpec] = {}
    ntr = round(sim.transit_fraction * n)
    if ntr:
        pool = np.setdiff1d(np.arange(n), chosen)
        for k in rng.choice(pool, min(ntr, len(pool)), replace=False).tolist():
            period = float(rng.uniform(1.5, 6.0))
            transits[int(cat.hip[k])] = TransitSpec(
                hip=int(cat.hip[k]), period_d=period,
                epoch_jd=jd0 + float(rng.uniform(0, period)),
                depth=float(rng.uniform(*sim.transit_depth)),
                duration_h=float(rng.uniform(1.5, 4.0)))
    for tr in sim.transits:
        transits[int(tr.hip)] = tr
    # a transit star is not also an intrinsic variable
    var_amp[np.isin(cat.hip, list(transits))] = 0.0
    return _Stars(cat, patch, offset, var_amp, var_period, var_phase, transits)


def _check_outdir(outdir: Path) -> None:
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise StorageError(f"{outdir} exists and is not an empty directory: choose a new OUT "
                           "directory (the simulation never mixes with earlier files)")


def simulate_lightcurves(
    outdir: str | Path,
    sim: LightCurveSimulation,
    *,
    config: Config | None = None,
    catalogue: Catalogue | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationReport:
    """Simulate ``sim.nights`` nights of one camera into ``outdir`` (see the module doc).

    The nights are written in ``{outdir}.part`` and renamed to ``outdir`` at the end, so a
    directory under the final name is complete.

    Parameters
    ----------
    outdir
        New (or empty) directory.
    sim
        What to simulate.
    config, catalogue
        Default: the installed configuration and the Hipparcos catalogue.
    progress
        Called with (sets done, sets in all) after each set of 50 exposures.

    Raises
    ------
    ConfigError
        Unknown camera, bad weather names, nothing to simulate.
    StorageError
        ``outdir`` is not empty, or a file cannot be written.
    """
    outdir = Path(outdir)
    config = config or load_config()
    camera = config.camera(sim.camera)
    if sim.nights < 1:
        raise ConfigError(f"nights={sim.nights}: simulate at least one night")
    if sim.weather is not None:
        bad = [w for w in sim.weather if w not in WEATHER]
        if bad or len(sim.weather) != sim.nights:
            raise ConfigError(f"weather={sim.weather!r}: give one of {WEATHER} per night "
                              f"({sim.nights} nights)")
    if int(sim.every_set) != sim.every_set or sim.every_set < 1:
        raise ConfigError(f"every_set={sim.every_set}: must be a positive whole number")
    if sim.hours is not None and sim.hours <= 0:
        raise ConfigError(f"hours={sim.hours}: must be positive")
    _check_outdir(outdir)
    part = outdir.with_name(outdir.name + ".part")
    if part.exists():
        shutil.rmtree(part)
    part.mkdir(parents=True)
    catalogue = catalogue or Catalogue.load()
    sensor = config.sensor(sim.sensor) if sim.sensor else camera.sensor
    model = CameraModel.from_config(camera, nx=sensor.xsize, ny=sensor.ysize)
    seed = np.random.SeedSequence(sim.seed)
    rng = np.random.default_rng(seed.spawn(1)[0])
    windows = _night_windows(config, camera, sim)
    weather = sim.weather or tuple(rng.choice(WEATHER, sim.nights, p=_WEATHER_P).tolist())
    stars = _choose_stars(sim, catalogue, model, camera, windows, rng)
    if len(stars.cat) == 0:
        raise ConfigError(f"camera {camera.id} sees no star with V <= {sim.vmax} in the "
                          "simulated windows")
    patches = np.unique(stars.patch)
    patch_ra, patch_dec = patch_centres(patches)
    header = {
        "site-obs": camera.site.name, "cam-obs": camera.id,
        "lat": camera.site.latitude_deg, "lon": camera.site.longitude_deg,
        "height": camera.site.height_m,
        "aper": np.asarray(_APERTURE_PX), "skyrad": np.asarray([6.0, 21.0]),
        "exptime": slot_length_solar_s(), "rversion": "mascara-actors lcsim",
        "simulated": "light-curve simulator (mascara_actors.lcsim)",
    }
    total_sets = sum(len(range(f // SET_SIZE, (s - 1) // SET_SIZE + 1, sim.every_set))
                     for _, f, s in windows)
    done = 0
    nights_rows, cloud_hdus, files = [], [], []
    noise_rows: list[np.ndarray] = []
    nstar = len(stars.cat)
    npoints = np.zeros((nstar, sim.nights), np.int32)
    noise_var = np.zeros((2, nstar, sim.nights), np.float32)
    nrecords = 0
    night_seeds = seed.spawn(sim.nights + 1)[1:]
    # with one set in every_set simulated, a star keeps the share of the points it needs
    minobs = max(1, config.reduction.storage.minobs // sim.every_set)
    compression = sim.compression
    if compression == "config":
        compression = config.reduction.storage.compression
    compression = None if compression == "none" else compression
    for i, (win, first, stop) in enumerate(windows):
        night = _Night(sim, camera, model, stars, win, first, stop, weather[i],
                       night_seeds[i], patches, patch_ra, patch_dec)
        night_dir = part / f"{win.night:%Y%m%d}{camera.site.code}{camera.letter}"
        with SetWriter(night_dir, header=header) as writer:
            for setidx in range(first // SET_SIZE, (stop - 1) // SET_SIZE + 1,
                                sim.every_set):
                seq = np.arange(max(first, setidx * SET_SIZE),
                                min(stop, (setidx + 1) * SET_SIZE), dtype=np.int64)
                rec, star_rows, station = night.make_set(seq, setidx)
                if len(rec):
                    writer.write_set("fast", setidx, rec, stars=star_rows, station=station)
                done += 1
                if progress is not None:
                    progress(done, total_sets)
            report = writer.combine("fast", minobs=minobs, compression=compression)
        if report.output is None:
            raise StorageError(f"night {win.night}: no star was measured; nothing written")
        files.append(report.output)
        nrecords += report.nrecords
        with np.errstate(invalid="ignore", divide="ignore"):
            noise_var[:, :, i] = night.noise_sum / night.npoints[None, :]
        npoints[:, i] = night.npoints
        noise_rows.extend(night.noise_rows)
        night_name = f"{win.night:%Y%m%d}"
        nights_rows.append((night_name, weather[i], first, stop - first,
                            str(report.output.relative_to(part))))
        cloud_hdus.append(fits.ImageHDU(night.cloud_image, name=f"CLOUDS_{night_name}"))
        log.info("simulated night %s (%s): %d records", night_name, weather[i],
                 report.nrecords)

    truth_path = truth_file_path(part, camera.id)
    _write_truth(truth_path, sim, camera, model, stars, patches, patch_ra, patch_dec,
                 nights_rows, cloud_hdus, npoints, noise_var,
                 np.concatenate(noise_rows) if noise_rows else np.zeros(0, _NOISE_DTYPE))
    os.replace(part, outdir)
    files_final = tuple(outdir / p.relative_to(part) for p in files)
    return SimulationReport(outdir, files_final, truth_file_path(outdir, camera.id), nstar,
                            nrecords)


def _write_truth(path: Path, sim: LightCurveSimulation, camera: CameraConfig,
                 camera_model: CameraModel, stars: _Stars,
                 patches: np.ndarray, patch_ra: np.ndarray, patch_dec: np.ndarray,
                 nights_rows: list[tuple], cloud_hdus: list[fits.ImageHDU],
                 npoints: np.ndarray, noise_var: np.ndarray, noise_rows: np.ndarray) -> None:
    model = sim.truth_model or TruthModel(camera_model.nx, camera_model.ny)
    primary = fits.PrimaryHDU()
    h = primary.header
    h["CAMERA"] = (camera.id, "camera id")
    h["SENSOR"] = (sim.sensor or camera.sensor.name, "sensor")
    h["SEED"] = (sim.seed, "random seed")
    h["NNIGHTS"] = (sim.nights, "nights simulated")
    h["OFFSIG"] = (sim.offset_sigma, "sigma of the per-star offsets, mag")
    for key, value, comment in model.header_cards() + sim.noise.header_cards():
        h[key] = (value, comment)
    cat = stars.cat
    n = len(cat)
    tr_ids = np.array(sorted(stars.transits), dtype=np.int64)
    star_cols = [
        fits.Column("id", "J", array=cat.hip.astype(np.int32)),
        fits.Column("ra", "D", unit="deg", array=cat["ra_deg"]),
        fits.Column("dec", "D", unit="deg", array=cat["dec_deg"]),
        fits.Column("vmag", "E", unit="mag", array=cat.vmag),
        fits.Column("patch", "J", array=stars.patch.astype(np.int32)),
        fits.Column("offset", "D", unit="mag", array=stars.offset),
        fits.Column("var_amp", "D", unit="mag", array=stars.var_amp),
        fits.Column("var_period", "D", unit="d", array=stars.var_period),
        fits.Column("var_phase", "D", unit="rad", array=stars.var_phase),
        fits.Column("transit", "B", array=np.isin(cat.hip, tr_ids).astype(np.uint8)),
        fits.Column("npoints", f"{sim.nights}J", array=npoints.reshape(n, sim.nights)),
        fits.Column("noise_var0", f"{sim.nights}E", unit="mag2",
                    array=noise_var[0].reshape(n, sim.nights)),
        fits.Column("noise_var1", f"{sim.nights}E", unit="mag2",
                    array=noise_var[1].reshape(n, sim.nights)),
    ]
    trs = [stars.transits[int(i)] for i in tr_ids]
    tr_cols = [
        fits.Column("id", "J", array=np.array([t.hip for t in trs], np.int32)),
        fits.Column("period", "D", unit="d", array=np.array([t.period_d for t in trs])),
        fits.Column("epoch", "D", unit="d", array=np.array([t.epoch_jd for t in trs])),
        fits.Column("depth", "D", array=np.array([t.depth for t in trs])),
        fits.Column("duration", "D", unit="h", array=np.array([t.duration_h for t in trs])),
    ]
    rows = list(zip(*nights_rows, strict=True)) if nights_rows else [[]] * 5
    night_cols = [
        fits.Column("night", "8A", array=np.array(rows[0], dtype="S8")),
        fits.Column("weather", "8A", array=np.array(rows[1], dtype="S8")),
        fits.Column("lstseq0", "K", array=np.array(rows[2], np.int64)),
        fits.Column("nexp", "J", array=np.array(rows[3], np.int32)),
        fits.Column("file", "80A", array=np.array(rows[4], dtype="S80")),
    ]
    patch_cols = [
        fits.Column("patch", "J", array=patches.astype(np.int32)),
        fits.Column("ra", "D", unit="deg", array=patch_ra),
        fits.Column("dec", "D", unit="deg", array=patch_dec),
    ]
    hdul = fits.HDUList([
        primary,
        fits.BinTableHDU.from_columns(star_cols, name="STARS"),
        fits.BinTableHDU.from_columns(tr_cols, name="TRANSITS"),
        fits.BinTableHDU.from_columns(night_cols, name="NIGHTS"),
        fits.BinTableHDU.from_columns(patch_cols, name="PATCHES"),
        fits.BinTableHDU.from_columns([
            fits.Column("id", "J", array=noise_rows["id"]),
            fits.Column("setidx", "K", array=noise_rows["setidx"]),
            fits.Column("n", "J", array=noise_rows["n"]),
            fits.Column("var0", "E", unit="mag2", array=noise_rows["var0"]),
            fits.Column("var1", "E", unit="mag2", array=noise_rows["var1"]),
        ], name="NOISE"),
        *cloud_hdus,
    ])
    buf = io.BytesIO()
    hdul.writeto(buf)
    atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------
# reading the truth back


@dataclass(frozen=True)
class Truth:
    """A truth file read back (see the module docstring for the meaning of each table)."""

    camera: str
    model: TruthModel
    noise: NoiseModel
    stars: np.ndarray
    transits: np.ndarray
    nights: np.ndarray
    patches: np.ndarray
    clouds: dict[str, np.ndarray]
    """Night (YYYYMMDD) -> (nexp, npatch) clouds image, mag."""
    noise_sets: np.ndarray
    """Per star and set of 50: ``id``, ``setidx``, ``n`` (unflagged points), ``var0``,
    ``var1`` (sum of their injected noise variances in aperture 0 and 1, mag^2)."""

    def set_noise(self, star_id: int, setidx: np.ndarray, aperture: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(points, mean injected noise variance per point, mag^2) of a star's sets."""
        rows = self.noise_sets[self.noise_sets["id"] == star_id]
        pos = np.clip(np.searchsorted(rows["setidx"], setidx), 0, max(len(rows) - 1, 0))
        found = (rows["setidx"][pos] == setidx) if len(rows) else np.zeros(len(setidx), bool)
        n = np.where(found, rows["n"][pos], 0) if len(rows) else np.zeros(len(setidx))
        var = rows[f"var{aperture}"][pos] if len(rows) else np.zeros(len(setidx))
        with np.errstate(invalid="ignore", divide="ignore"):
            return n, np.where(found & (n > 0), var / np.maximum(n, 1), np.nan)

    def star_index(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows of :attr:`stars` for HIP numbers ``ids`` (-1 where absent)."""
        ids = np.asarray(ids, np.int64)
        pos = np.clip(np.searchsorted(self.stars["id"], ids), 0, len(self.stars) - 1)
        return np.where(self.stars["id"][pos] == ids, pos, -1)

    def cloud_at(self, lstseq: np.ndarray, patch: np.ndarray) -> np.ndarray:
        """True clouds (mag) at exposures ``lstseq`` for HEALPix patches ``patch``."""
        lstseq = np.asarray(lstseq, np.int64)
        out = np.full(lstseq.shape, np.nan)
        col = np.searchsorted(self.patches["patch"], patch)
        for row in self.nights:
            image = self.clouds[row["night"]]
            k = lstseq - int(row["lstseq0"])
            inside = (k >= 0) & (k < int(row["nexp"]))
            out[inside] = image[k[inside], col[inside]]
        return out


def read_truth(path: str | Path) -> Truth:
    """Read a truth file written by :func:`simulate_lightcurves`."""
    path = Path(path)
    try:
        with fits.open(path, memmap=False) as hdul:
            h = hdul[0].header
            model = TruthModel.from_header(h)
            noise_model = NoiseModel(flux_v84_e=h["FLUX84"], aperture1_gain=h["AP1GAIN"],
                               sky_e=h["SKYE"], read_noise_e=h["RDNOISE"], gain=h["GAIN"],
                               scintillation=h["SCINT"], peak_fraction=h["PEAKFRAC"],
                               saturation_adu=h["SATURATE"])
            stars = np.asarray(hdul["STARS"].data).copy()
            transits = np.asarray(hdul["TRANSITS"].data).copy()
            nights_raw = np.asarray(hdul["NIGHTS"].data)
            nights = np.zeros(len(nights_raw), [("night", "U8"), ("weather", "U8"),
                                                ("lstseq0", "i8"), ("nexp", "i4"),
                                                ("file", "U80")])
            for name in nights.dtype.names:
                col = nights_raw[name]
                nights[name] = (np.char.decode(col, "ascii") if col.dtype.kind == "S"
                                else col)
            patches = np.asarray(hdul["PATCHES"].data).copy()
            noise = np.asarray(hdul["NOISE"].data).copy()
            clouds = {n: np.asarray(hdul[f"CLOUDS_{n}"].data, np.float32)
                      for n in nights["night"]}
            camera = str(h["CAMERA"])
    except (OSError, KeyError) as exc:
        raise StorageError(f"{path} is not a truth file of the light-curve simulator: "
                           f"{exc}") from exc
    stars = _native(stars)
    return Truth(camera, model, noise_model, stars, _native(transits), nights,
                 _native(patches), clouds, _native(noise))


def _native(arr: np.ndarray) -> np.ndarray:
    """A FITS table as a plain native-endian structured array."""
    dtype = [(n, arr.dtype[n].newbyteorder("=") if arr.dtype[n].byteorder not in "=|"
              else arr.dtype[n]) for n in arr.dtype.names]
    out = np.empty(arr.shape, dtype)
    for n in arr.dtype.names:
        out[n] = arr[n]
    return out
