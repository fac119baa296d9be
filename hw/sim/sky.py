"""The simulated sky: what a MASCARA camera would record at a given lstseq.

:class:`SimulatedSky` renders science, dark, bias and flat frames through the *true* camera
model (which may differ from the configured nominal one, as a real camera's does), from the
real Hipparcos catalogue, with twilight and Moon sky, drifting clouds, satellite trails and
injected transits. Every science frame comes with its truth: the mid-exposure position and
the expected flux of each star. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hw.sim.effects import CloudField, Transit
from hw.sim.render import (
    DetectorPattern,
    RenderSettings,
    StarField,
    photons_to_raw,
    render_star_electrons,
    sky_electrons_per_pixel,
    star_electrons,
)
from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, SensorConfig
from mascara_actors.ephemeris import EphemerisTable
from mascara_actors.rawframe import RawHeader
from mascara_actors.sidereal import SLOT_SIDEREAL_S, lstseq2date, slot_length_solar_s

__all__ = [
    "TRUTH_DTYPE",
    "SimulatedFrame",
    "SimulatedSky",
    "SimulationSettings",
    "misaligned_model",
]

SOFTWARE_VERSION = "mascara-actors-sim 0.1"

TRUTH_DTYPE = np.dtype(
    [
        ("lstseq", "u8"),
        ("id", "i4"),
        ("x", "f4"),
        ("y", "f4"),
        ("flux", "f8"),
        ("transmission", "f4"),
        ("transit", "f4"),
    ]
)
"""Per star and frame: mid-exposure science-region pixel position, expected flux (ADU per
exposure, after vignetting, pixel response, clouds and transit), the cloud transmission and
the transit factor."""


def misaligned_model(
    camera: CameraConfig, sensor: SensorConfig, pointing_error_deg: float
) -> CameraModel:
    """The camera's nominal model with its pointing off by ``pointing_error_deg`` in both
    altitude and azimuth, degrees: a camera as mounted, not as configured."""
    nominal = CameraModel.from_config(camera, nx=sensor.xsize, ny=sensor.ysize)
    return nominal.replace(
        alt_deg=nominal.alt_deg + pointing_error_deg,
        az_deg=nominal.az_deg + pointing_error_deg,
    )


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    """Choices of a simulated night."""

    seed: int = 1
    vmax: float = 10.5
    """Faintest star rendered, V mag."""
    ccdtemp_c: float = -15.0
    clouds: bool = False
    trail_probability: float = 0.0
    """Chance of a satellite or aircraft trail per frame."""
    transits: tuple[Transit, ...] = ()
    flat_level_adu: float = 20000.0
    render: RenderSettings = field(default_factory=RenderSettings)


@dataclass(frozen=True, slots=True)
class SimulatedFrame:
    """A rendered exposure: the full readout, its header and (science frames) the truth."""

    raw: np.ndarray
    header: RawHeader
    truth: np.ndarray


class SimulatedSky:
    """Renders the frames of one camera.

    Parameters
    ----------
    camera
        The configured camera (site, letter, lens).
    catalogue
        The star catalogue (Hipparcos).
    true_model
        The camera's real geometry; default the nominal model of ``camera``.
    sensor
        The sensor to render; default ``camera.sensor`` (a crop gives small test nights).
    settings
        Seed, magnitude limit, clouds, trails, transits, render settings.
    """

    def __init__(
        self,
        camera: CameraConfig,
        catalogue: Catalogue,
        *,
        true_model: CameraModel | None = None,
        sensor: SensorConfig | None = None,
        settings: SimulationSettings | None = None,
    ) -> None:
        self.camera = camera
        self.sensor = sensor or camera.sensor
        self.settings = settings or SimulationSettings()
        self.model = true_model or CameraModel.from_config(
            camera, nx=self.sensor.xsize, ny=self.sensor.ysize
        )
        if (self.model.nx, self.model.ny) != (self.sensor.xsize, self.sensor.ysize):
            raise ValueError("true_model size must match the sensor's science region")
        self.stars = catalogue.select(vmax=self.settings.vmax)
        self.pattern = DetectorPattern(self.sensor, self.settings.render, seed=self.settings.seed)
        self.exptime_s = slot_length_solar_s()
        self._positions_day: int | None = None
        self._ra = self._dec = np.empty(0)
        self._clouds: CloudField | None = None
        self._transits = {t.hip: t for t in self.settings.transits}
        self._ephemeris = EphemerisTable(camera.site)

    # --- time ------------------------------------------------------------------------------

    def header(
        self, lstseq: int, kind: str = "science", *, ccdtemp_c: float | None = None
    ) -> RawHeader:
        """The raw header of the exposure in slot ``lstseq`` (it opens on the slot boundary)."""
        return RawHeader.of_exposure(
            lstseq,
            jd=float(lstseq2date(lstseq, format="jd")),
            exptime=0.0 if kind == "bias" else self.exptime_s,
            ccdtemp=self.settings.ccdtemp_c if ccdtemp_c is None else ccdtemp_c,
            site=self.camera.site.name,
            camera=self.camera.letter,
            imagetyp=kind,
            x0=self.sensor.x0,
            xsize=self.sensor.xsize,
            y0=self.sensor.y0,
            ysize=self.sensor.ysize,
            dwldtime=0.9,
            margtime=0.1,
        )

    # --- the sky ---------------------------------------------------------------------------

    def _radec(self, jd: float) -> tuple[np.ndarray, np.ndarray]:
        # Precession and proper motion change by far less than a pixel within a day.
        day = int(jd)
        if self._positions_day != day:
            self._ra, self._dec = self.stars.positions_at(day + 0.5)
            self._positions_day = day
        return self._ra, self._dec

    def star_field(self, header: RawHeader) -> tuple[StarField, np.ndarray, np.ndarray]:
        """Trailed stars on the chip, their ids and their flux factors (clouds x transits)."""
        ra, dec = self._radec(header.jd)
        ha0 = header.lst * 15.0 - ra
        ha1 = ha0 + SLOT_SIDEREAL_S * 15.0 / 3600.0  # the sky turns by one slot per exposure
        x0, y0 = self.model.hadec_to_pixel(ha0, dec)
        x1, y1 = self.model.hadec_to_pixel(ha1, dec)
        half = self.settings.render.stamp_half
        on = self.model.on_chip(0.5 * (x0 + x1), 0.5 * (y0 + y1), margin=-half)
        ids = self.stars.hip[on]
        factor = np.ones(on.sum())
        if self.settings.clouds:
            if self._clouds is None:
                self._clouds = CloudField.random(
                    self.model.nx, self.model.ny, header.lstseq, seed=self.settings.seed
                )
            factor *= self._clouds.transmission(
                0.5 * (x0 + x1)[on], 0.5 * (y0 + y1)[on], header.lstseq
            )
        transit = np.ones(on.sum())
        for i in np.flatnonzero(np.isin(ids, list(self._transits))):
            transit[i] = self._transits[int(ids[i])].factor(header.jdmid)
        electrons = star_electrons(self.stars.vmag[on], header.exptime, self.settings.render)
        stars = StarField(x0[on], y0[on], x1[on], y1[on], electrons * factor * transit)
        return stars, ids, np.stack([factor, transit])

    def sky_level_e(self, header: RawHeader) -> float:
        """Sky electrons per pixel on the axis: dark sky brightened by twilight and the Moon."""
        sm = self._ephemeris.at(header.jdmid)
        sunalt, moonalt, moonph = float(sm.sunalt[0]), float(sm.moonalt[0]), float(sm.moonph[0])
        # Twilight: ~2 mag brighter at nautical dusk (-12 deg), ~4 mag at civil dusk (-6 deg).
        extra = -0.35 * min(max(sunalt + 18.0, 0.0), 30.0)
        if moonalt > 0:
            extra -= 3.0 * moonph * math.sin(math.radians(moonalt))
        return sky_electrons_per_pixel(
            self.model, header.exptime, self.settings.render, extra_mag=extra
        )

    def _trail_field(self, rng: np.random.Generator) -> StarField | None:
        if rng.uniform() >= self.settings.trail_probability:
            return None
        nx, ny = self.model.nx, self.model.ny
        start = rng.uniform([0, 0], [nx, ny])
        angle = rng.uniform(0, np.pi)
        length = float(np.hypot(nx, ny))
        s = np.arange(-length, length, 0.5)
        xs, ys = start[0] + s * np.cos(angle), start[1] + s * np.sin(angle)
        keep = (xs > -5) & (xs < nx + 5) & (ys > -5) & (ys < ny + 5)
        xs, ys = xs[keep], ys[keep]
        e = np.full(xs.size, rng.uniform(200.0, 3000.0))
        return StarField(xs, ys, xs, ys, e)

    def _dark_electrons(self, header: RawHeader) -> np.ndarray | float:
        rate = self.settings.render.dark_e_per_s_at_0c * 2.0 ** (header.ccdtemp / 6.3)
        dark = np.full((self.sensor.ysize, self.sensor.xsize), rate * header.exptime, np.float32)
        dark.ravel()[self.pattern.hot_index] *= self.pattern.hot_factor
        return dark

    # --- frames ----------------------------------------------------------------------------

    def exposure(
        self, lstseq: int, kind: str = "science", *, ccdtemp_c: float | None = None
    ) -> SimulatedFrame:
        """Render the exposure of slot ``lstseq`` (``science``, ``dark``, ``bias`` or ``flat``)."""
        header = self.header(lstseq, kind, ccdtemp_c=ccdtemp_c)
        rng = np.random.default_rng([self.settings.seed, int(lstseq), "sdbf".index(kind[0])])
        shape = (self.sensor.ysize, self.sensor.xsize)
        dark = self._dark_electrons(header) if kind != "bias" else 0.0
        truth = np.empty(0, TRUTH_DTYPE)
        if kind == "science":
            throughput = self.pattern.throughput()
            stars, ids, factors = self.star_field(header)
            light, deposited = render_star_electrons(
                shape, stars, self.settings.render, throughput=throughput
            )
            trail = self._trail_field(rng)
            if trail is not None:
                light += render_star_electrons(
                    shape, trail, self.settings.render, throughput=throughput
                )[0]
            light += np.float32(self.sky_level_e(header)) * throughput
            truth = self._truth(header, stars, ids, factors, deposited)
        elif kind == "flat":
            level_e = self.settings.flat_level_adu * self.sensor.gain_e_per_adu
            light = np.float32(level_e) * self.pattern.throughput()
        else:
            light = np.zeros(shape, np.float32)
        raw = photons_to_raw(
            light, self.sensor, dark_e=dark, rng=rng, light=kind in ("science", "flat")
        )
        return SimulatedFrame(raw=raw, header=header, truth=truth)

    def _truth(
        self,
        header: RawHeader,
        stars: StarField,
        ids: np.ndarray,
        factors: np.ndarray,
        deposited_e: np.ndarray,
    ) -> np.ndarray:
        x, y = stars.xmid, stars.ymid
        inside = self.model.on_chip(x, y)
        truth = np.empty(int(inside.sum()), TRUTH_DTYPE)
        truth["lstseq"] = header.lstseq
        truth["id"] = ids[inside]
        truth["x"] = x[inside]
        truth["y"] = y[inside]
        truth["flux"] = (deposited_e / self.sensor.gain_e_per_adu)[inside]
        truth["transmission"] = factors[0][inside]
        truth["transit"] = factors[1][inside]
        return truth
