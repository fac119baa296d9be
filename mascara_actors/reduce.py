"""Reduce one raw frame end to end: what the reducer actor runs in its worker process.

``reduce_frame`` reads the frame, measures image statistics, calibrates, places every
V <= 8.4 star through the set's astrometric solution at mid-exposure, measures it, and
returns the per-star records and the per-exposure station row with timings. Everything a
worker needs that is costly to build (catalogue, masters, Sun/Moon table) is kept in a
per-process :class:`ReductionSession`, so a frame costs only its own work.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np

from mascara_actors.astrometry import (
    AFLAG_TOO_BRIGHT,
    AstrometricSolution,
    astrometry_stars,
    sky_brightness_flag,
    solve,
    verify,
)
from mascara_actors.blind_solve import BlindIndex, BlindSolveFailed, blind_solve
from mascara_actors.calibration import (
    CalibratedFrame,
    Calibrator,
    image_statistics,
    read_master,
)
from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, Config, load_config
from mascara_actors.ephemeris import EphemerisTable
from mascara_actors.errors import AstrometryFailed, FrameError
from mascara_actors.photometry import PhotometryResult, measure, sky_estimator
from mascara_actors.rawframe import RawFrame, RawHeader, read_raw
from mascara_actors.records import fast_record_dtype, station_dtype
from mascara_actors.sidereal import (
    lst_mid_hours,
    lstday,
    lstidx,
    lstseq2date,
    slot_length_solar_s,
)

__all__ = [
    "FrameResult",
    "ReductionSession",
    "check_clock",
    "photometry_records",
    "star_altaz",
]

log = logging.getLogger(__name__)


def check_clock(path: str | Path, header: RawHeader) -> None:
    """FrameError unless the frame's JD lies in its slot (LSTSEQ), give or take a slot.

    The two are redundant: the light curves' times come from JD, the astrometry from LST,
    so a camera computer whose clock was off (or a header edited) gave light curves with
    wrong times and nothing else wrong.
    """
    slot_s = slot_length_solar_s()
    start = float(lstseq2date(header.lstseq))
    late_s = (header.jd - start) * 86400.0
    if not -slot_s <= late_s <= 2.0 * slot_s:
        raise FrameError(
            f"{path}: JD {header.jd:.6f} is {late_s:+.0f} s from the start of its slot "
            f"(LSTSEQ {header.lstseq}, JD {start:.6f}): the header's clock and slot "
            "contradict each other (the camera computer's clock?), so its time is unknown"
        )


def star_altaz(
    ha_deg: np.ndarray, dec_deg: np.ndarray, latitude_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Altitude and azimuth (from north through east) of (HA, dec), degrees."""
    ha, dec, phi = np.radians(ha_deg), np.radians(dec_deg), np.radians(latitude_deg)
    east = -np.cos(dec) * np.sin(ha)
    north = np.cos(phi) * np.sin(dec) - np.sin(phi) * np.cos(dec) * np.cos(ha)
    up = np.sin(phi) * np.sin(dec) + np.cos(phi) * np.cos(dec) * np.cos(ha)
    return np.degrees(np.arcsin(np.clip(up, -1, 1))), np.degrees(np.arctan2(east, north)) % 360


def photometry_records(
    result: PhotometryResult,
    dtype: np.dtype,
    *,
    ids: np.ndarray,
    lstseq: int,
    aflag: int,
    ha_deg: np.ndarray,
    dec_deg: np.ndarray,
    latitude_deg: float,
    ccdtemp: float,
    exptime: float,
    jdmid: float,
    lst_hours: float,
    eflux: np.ndarray | None = None,
) -> np.ndarray:
    """Light-curve records (fast or slow ``dtype``) of one measurement of many stars.

    ``eflux`` replaces ``result.eflux`` (the slow photometry widens it for resampling).
    """
    records = np.zeros(len(result), dtype)
    records["id"] = ids
    records["lstseq"] = lstseq
    records["lstidx"] = lstidx(lstseq)
    records["pflag"] = result.pflag
    records["aflag"] = aflag
    records["flag"] = (result.pflag != 0) | (aflag != 0)
    eflux = result.eflux if eflux is None else eflux
    for i in range(len(result.apertures)):
        records[f"flux{i}"] = result.flux[:, i]
        records[f"eflux{i}"] = eflux[:, i]
    records["sky"] = result.sky
    records["esky"] = result.esky
    records["peak"] = result.peak
    records["x"] = result.x
    records["y"] = result.y
    records["alt"], records["az"] = star_altaz(ha_deg, dec_deg, latitude_deg)
    records["ccdtemp"] = ccdtemp
    records["exptime"] = exptime
    records["jdmid"] = jdmid
    records["lst"] = lst_hours
    return records


class _SolveOptions(TypedDict):
    """The keyword arguments of a solve from scratch (:func:`solve`, :func:`blind_solve`)."""

    lst_hours: float
    jd: float
    lstseq: int
    order: int
    min_match_fraction: float
    saturation: float


@dataclass(frozen=True, slots=True)
class FrameResult:
    """The reduction of one frame."""

    lstseq: int
    records: np.ndarray
    """Fast records (``fast_record_dtype()``, with ``id``), one per star measured."""
    station: np.ndarray
    """One row of ``station_dtype``."""
    timings: dict[str, float]
    """Seconds spent per step: read, calibrate, positions, photometry, total."""

    @property
    def nstars(self) -> int:
        return int(self.records.size)

    @property
    def nflagged(self) -> int:
        return int(np.count_nonzero(self.records["flag"]))


@dataclass
class ReductionSession:
    """Per-process state of the reduction of one camera: config, stars, masters, ephemeris."""

    config: Config
    camera: CameraConfig
    catalogue: Catalogue
    fast_stars: Catalogue = field(init=False)
    astro_stars: Catalogue = field(init=False)
    calibrator: Calibrator = field(default_factory=Calibrator)
    _ephemeris: EphemerisTable = field(init=False)
    _positions: tuple[int, np.ndarray, np.ndarray] | None = field(default=None, init=False)
    _cand_key: tuple[int, CameraModel, int] | None = field(default=None, init=False)
    _cand: np.ndarray = field(default_factory=lambda: np.empty(0, int), init=False)
    _blind_index: BlindIndex | None = field(default=None, init=False)
    _solved: tuple[str, RawFrame] | None = field(default=None, init=False)
    """The frame :meth:`solve` read, kept for :meth:`reduce_frame` of the same file (the
    reducer reduces each set's first frame right after solving on it)."""
    blind_note: str | None = field(default=None, init=False)
    """After :meth:`solve`: what the operator should know when the frame was solved blind
    (the pointing found, the command that makes it the configured one), else None."""

    def __post_init__(self) -> None:
        phot = self.config.reduction.photometry
        astro = self.config.reduction.astrometry
        self.fast_stars = self.catalogue.select(vmax=phot.fast_vmax)
        self.astro_stars = astrometry_stars(self.catalogue, vmin=astro.vmin, vmax=astro.vmax)
        self._ephemeris = EphemerisTable(self.camera.site)
        self._sky = sky_estimator(phot.sky_estimator, minsky=phot.min_sky_pixels)

    @classmethod
    def open(
        cls,
        camera_id: str,
        *,
        config_dir: str | Path | None = None,
        dark: str | Path | None = None,
        flat: str | Path | None = None,
    ) -> ReductionSession:
        """Load config, catalogue (cached) and the master frames named."""
        config = load_config(config_dir)
        session = cls(config=config, camera=config.camera(camera_id), catalogue=Catalogue.load())
        session.use_masters(dark=dark, flat=flat)
        return session

    def use_masters(self, *, dark: str | Path | None, flat: str | Path | None) -> None:
        """Switch to these master dark and flat files (None: none)."""
        self.calibrator = Calibrator(
            dark=read_master(dark) if dark else None, flat=read_master(flat) if flat else None
        )

    def nominal_model(self, raw: RawFrame) -> CameraModel:
        """The configured camera model, sized to this frame's science region."""
        return CameraModel.from_config(self.camera, nx=raw.header.xsize, ny=raw.header.ysize)

    def _star_positions(self, jd: float) -> tuple[np.ndarray, np.ndarray]:
        # Proper motion and precession move a star far less than a pixel in a day.
        day = int(jd)
        if self._positions is None or self._positions[0] != day:
            ra, dec = self.fast_stars.positions_at(day + 0.5)
            self._positions = (day, ra, dec)
        return self._positions[1], self._positions[2]

    def _candidates(self, jd: float, lst_hours: float, model: CameraModel) -> np.ndarray:
        """Indices of fast stars that may be on the chip within 8 minutes of ``lst_hours``.

        Projecting only these (a tenth of the sky) keeps the per-frame cost down; the list is
        rebuilt every 0.25 h of LST with a margin wider than the sky turns in that time.
        """
        key = (int(jd), model, int(lst_hours * 4.0))
        if self._cand_key != key:
            ra, dec = self._star_positions(jd)
            centre = (int(lst_hours * 4.0) + 0.5) / 4.0
            x, y = model.hadec_to_pixel(centre * 15.0 - ra, dec)
            margin = -(0.125 * 15.0 * model.focal_px * np.pi / 180.0 + 60.0)
            self._cand = np.flatnonzero(model.on_chip(x, y, margin=margin))
            self._cand_key = key
        return self._cand

    # --- the work --------------------------------------------------------------------------

    def read(self, path: str | Path) -> RawFrame:
        """Read and check a raw frame of this camera; FrameError otherwise."""
        raw = read_raw(path)
        h = raw.header
        if h.camera != self.camera.letter or h.site != self.camera.site.name:
            raise FrameError(
                f"{path}: frame of {h.site} camera {h.camera}, but this reducer runs "
                f"{self.camera.site.name} camera {self.camera.letter}"
            )
        check_clock(path, h)
        return raw

    def calibrated_image(self, raw: RawFrame) -> np.ndarray:
        """The calibrated science region (float32 ADU)."""
        return self.calibrator.calibrate(raw).image

    def solve(self, path: str | Path, previous: AstrometricSolution | None) -> AstrometricSolution:
        """Solve (no previous solution) or verify the astrometry on the frame at ``path``.

        Without a previous solution the configured pointing is tried first (fast); when it
        fails, the frame is solved blind (:func:`~mascara_actors.blind_solve.blind_solve`).

        Raises
        ------
        AstrometryFailed
            Both failed; the message names the camera, the stars detected and matched, the
            best pointing found and the command to run.
        """
        self.blind_note = None
        self._solved = None
        raw = self.read(path)
        solution = self._solve_frame(path, raw, previous)
        self._solved = (os.fspath(path), raw)  # only a solved frame is reduced next
        return solution

    def _solve_frame(self, path: str | Path, raw: RawFrame,
                     previous: AstrometricSolution | None) -> AstrometricSolution:
        """:meth:`solve` on the frame ``raw`` read from ``path``."""
        image = self.calibrated_image(raw)
        h = raw.header
        lst = lst_mid_hours(h.lst, h.jd, h.jdmid)
        astro = self.config.reduction.astrometry
        if previous is None:
            try:
                options = self._solve_options(raw, lst)
                return solve(image, self.astro_stars, self.nominal_model(raw), **options)
            except AstrometryFailed as exc:
                return self._solve_blind(path, raw, image, lst, exc)
        return verify(
            image,
            self.astro_stars,
            previous,
            lst_hours=lst,
            jd=h.jdmid,
            lstseq=h.lstseq,
            max_residual_px=astro.max_residual_px,
            min_match_fraction=astro.min_match_fraction,
            order=astro.legendre_order,
        )

    def _solve_options(self, raw: RawFrame, lst: float) -> _SolveOptions:
        """The options a solve from scratch takes, configured or blind."""
        astro = self.config.reduction.astrometry
        return {
            "lst_hours": lst,
            "jd": raw.header.jdmid,
            "lstseq": raw.header.lstseq,
            "order": astro.legendre_order,
            "min_match_fraction": astro.min_match_fraction,
            "saturation": self.config.reduction.photometry.saturation_adu,
        }

    def _solve_blind(
        self,
        path: str | Path,
        raw: RawFrame,
        image: np.ndarray,
        lst: float,
        nominal_error: AstrometryFailed,
    ) -> AstrometricSolution:
        """The blind solve after the configured pointing failed with ``nominal_error``."""
        h = raw.header
        cam = self.camera.id
        if sky_brightness_flag(image) & AFLAG_TOO_BRIGHT:
            # Twilight or the Moon: no solve can do better, and nothing is to be fixed.
            raise AstrometryFailed(f"camera {cam}, {nominal_error}") from nominal_error
        if self._blind_index is None:
            self._blind_index = BlindIndex.load(self.catalogue)
        try:
            found = blind_solve(
                image,
                self._blind_index,
                self.astro_stars,
                self.nominal_model(raw),
                **self._solve_options(raw, lst),
            )
        except BlindSolveFailed as exc:
            raise AstrometryFailed(
                f"camera {cam}, lstseq {h.lstseq}: no astrometric solution. From the configured "
                f"pointing: {nominal_error}. Blind: {exc.describe()}. Check the camera (dome, "
                f"clouds, focus) and run `mascara-actors solve {path} --camera {cam}`"
            ) from exc
        alt, az, roll = found.pointing
        self.blind_note = (
            f"camera {cam}, lstseq {h.lstseq}: the configured pointing failed ({nominal_error}); "
            f"solved blind: alt {alt:.2f} az {az:.2f} roll {roll:.2f} deg"
            f"{', mirrored' if found.mirrored else ''}, {found.nmatched} of {found.npredicted} "
            f"stars matched, {found.solution.dr:.3f} px RMS. Update config/cameras.toml with "
            f"`mascara-actors solve {path} --camera {cam} --write-config`"
        )
        log.warning("%s", self.blind_note)
        return found.solution

    def reduce_frame(
        self,
        path: str | Path,
        solution: AstrometricSolution,
        *,
        keep: Callable[[CalibratedFrame, RawHeader], None] | None = None,
    ) -> FrameResult:
        """Reduce the science frame at ``path`` with the set's ``solution``.

        ``keep``, when given, receives the calibrated frame (its science image, float32 ADU)
        and the header once the frame is reduced: the worker co-adds it into the set's
        binned image without reading the frame again.

        Raises
        ------
        FrameError
            The frame cannot be read or calibrated; only this frame is lost.
        """
        t0 = time.perf_counter()
        solved, self._solved = self._solved, None
        raw = solved[1] if solved is not None and solved[0] == os.fspath(path) else self.read(path)
        h = raw.header
        if (h.xsize, h.ysize) != (solution.model.nx, solution.model.ny):
            raise FrameError(
                f"{path}: science region {h.xsize} x {h.ysize} differs from the solution's "
                f"{solution.model.nx} x {solution.model.ny}"
            )
        t1 = time.perf_counter()
        stats = image_statistics(raw)
        calibrated = self.calibrator.calibrate(raw, stats=stats)
        image = calibrated.image
        t2 = time.perf_counter()

        phot = self.config.reduction.photometry
        model = solution.model
        lst = lst_mid_hours(h.lst, h.jd, h.jdmid)
        cand = self._candidates(h.jdmid, lst, model)
        ra, dec = self._star_positions(h.jdmid)
        ha = lst * 15.0 - ra[cand]
        x, y = model.hadec_to_pixel(ha, dec[cand])
        on = model.on_chip(x, y, margin=phot.edge_margin_px)
        sel = np.flatnonzero(on)
        idx = cand[sel]
        ha, x, y = ha[sel], x[sel], y[sel]
        sm = self._ephemeris.at(h.jdmid)
        mx, my = model.radec_to_pixel(sm.moonra, sm.moondec, lst)
        moon_on = bool(model.on_chip(mx, my)[0])
        moon_xy = (float(mx[0]), float(my[0])) if moon_on else None
        t3 = time.perf_counter()

        result = measure(
            image,
            x,
            y,
            apertures=phot.fast_apertures_px,
            sky_radii=(phot.sky_radii_px[0], phot.sky_radii_px[1]),
            gain=phot.gain_e_per_adu,
            saturation=phot.saturation_adu,
            flat=self.calibrator.flat_science,
            sky_estimator=self._sky,
            moon_xy=moon_xy,
            moon_radius=phot.moon_radius_px,
        )
        t4 = time.perf_counter()

        records = photometry_records(
            result,
            fast_record_dtype(len(phot.fast_apertures_px)),
            ids=self.fast_stars.hip[idx],
            lstseq=h.lstseq,
            aflag=solution.aflag,
            ha_deg=ha,
            dec_deg=dec[idx],
            latitude_deg=model.latitude_deg,
            ccdtemp=h.ccdtemp,
            exptime=h.exptime,
            jdmid=h.jdmid,
            lst_hours=h.lst,
        )

        station = np.zeros(1, station_dtype)
        row = station[0]
        row["lstseq"] = h.lstseq
        row["lstidx"] = lstidx(h.lstseq)
        row["lstday"] = lstday(h.lstseq)
        for name in ("jd", "jdmid", "lst", "exptime", "ccdtemp", "dwldtime", "margtime"):
            row[name] = getattr(h, name)
        for name, value in stats.as_record().items():
            if name in (station_dtype.names or ()):
                row[name] = value
        row["darkfile"] = calibrated.darkfile
        row["utc"] = h.utc.strftime("%Y-%m-%d %H:%M:%S.%f").encode()
        for name in ("sunra", "sundec", "sunalt", "moonra", "moondec", "moonalt", "moonph"):
            row[name] = getattr(sm, name)[0]
        row["moonx"] = mx[0] if moon_on else np.nan
        row["moony"] = my[0] if moon_on else np.nan
        row["nstars"] = idx.size
        row["nflagged"] = int(np.count_nonzero(records["flag"]))
        row["aflag"] = solution.aflag
        t5 = time.perf_counter()
        timings = {
            "read": t1 - t0,
            "calibrate": t2 - t1,
            "positions": t3 - t2,
            "photometry": t4 - t3,
            "records": t5 - t4,
            "total": t5 - t0,
        }
        if keep is not None:
            keep(calibrated, h)
        return FrameResult(lstseq=h.lstseq, records=records, station=station, timings=timings)
