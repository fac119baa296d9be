"""The whole calibration of a baseline: read it, plan the workers, iterate, write the files.

The solver alternates, as the legacy one, a *temporal* step per sky patch (magnitudes, clouds
and their extra variances, given the maps: :mod:`.temporal`) and a *spatial* step (the maps,
given the rest: :mod:`.spatial`), for up to ``max_iter`` outer iterations, until the maps
change by less than ``tol`` (RMS, data-weighted). The clear level of the clouds is moved
into T after each spatial step (:mod:`.clear_sky`). Points under clouds thicker than
``max_cloud_for_maps``, in cloud cells of too few stars, or beyond ``clip`` sigma are
calibrated but do not enter the maps; everything dropped is counted and reported.

Memory stays bounded: the good points of each sky patch are kept in scratch files (in a
hidden ``.calibrate-*`` directory of the output directory, holding the pid of its process,
removed at the end; one left by a process that died is removed by the next run), one patch
is in memory at a time per worker, and the maps are solved from accumulated normal
equations. Two worker processes (one per core by default) each own about half of the
patches; the patches of one HEALPix ring stay in one worker.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mascara_actors.config import load_config
from mascara_actors.decorrelation.bins import CFLAG_BITS, Scintillation
from mascara_actors.decorrelation.clear_sky import cloud_gauge
from mascara_actors.decorrelation.errors import DecorrelationError, NotConverged
from mascara_actors.decorrelation.grids import IntrapixelGrid, TransmissionGrid
from mascara_actors.decorrelation.ingest import PatchAssignment
from mascara_actors.decorrelation.processes import Workers
from mascara_actors.decorrelation.report import CalibrationResult, write_report
from mascara_actors.decorrelation.settings import DecorrelationSettings
from mascara_actors.decorrelation.sky import patch_centres, patch_of
from mascara_actors.decorrelation.spatial import CameraMaps
from mascara_actors.decorrelation.station_times import StationTimes
from mascara_actors.decorrelation.worker import (
    Finish,
    FinishedPatches,
    Ingest,
    IngestSummary,
    Iterate,
    IterationSums,
    WorkerSetup,
)
from mascara_actors.errors import StorageError
from mascara_actors.sidereal import REFERENCE_LONGITUDE_DEG
from mascara_actors.storage.baseline_file import BaselineFile
from mascara_actors.storage.calibrated import FittedMaps, write_calibrated, write_maps
from mascara_actors.storage.nightly_info import NightlyInfo
from mascara_actors.storage.state import write_json_state

__all__ = ["calibrate_baseline"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int, str], None]

_SCRATCH_PREFIX = ".calibrate-"
_OWNER_FILE = "owner.pid"
"""In a scratch directory: the pid and host name of the process that made it."""
_SCRATCH_BYTES_PER_POINT = 32
"""A point in the scratch files: 28 for its star and exposure indices (int32), magnitude,
error, HA and x, y (float32), and about 4 for the per-exposure lstseq, the per-star data and
the archive headers (about 29 in all measured on a small baseline)."""


@dataclass(frozen=True)
class _Baseline:
    """The tables of a baseline the calibration needs, read once."""

    path: Path
    info: NightlyInfo
    header: dict[str, Any]
    stars: np.ndarray
    station: StationTimes
    filelist: list[str]

    @classmethod
    def read(cls, path: Path, settings: DecorrelationSettings) -> _Baseline:
        """Read and check ``path``: a fast baseline of enough nights with the fields the
        fit needs (StorageError or DecorrelationError naming it otherwise)."""
        with BaselineFile(path) as bf:
            info, stars, station, filelist = bf.info, bf.stars, bf.station, bf.filelist
            stored = bf.lightcurve_dtype().names or ()
        if info.kind not in ("fast", ""):
            raise DecorrelationError(f"{path} holds {info.kind!r} light curves; the "
                                     "decorrelation works on fast (per-exposure) baselines")
        if len(info.nights) < settings.min_nights:
            raise DecorrelationError(
                f"{path} holds {len(info.nights)} night(s) ({', '.join(info.nights)}); the "
                f"decorrelation needs at least {settings.min_nights} (typically 15) to "
                "separate the camera from the sky: merge more nights with "
                "`mascara-actors baseline`")
        a = settings.aperture
        missing = [f for f in (f"flux{a}", f"eflux{a}", "lstseq", "x", "y", "pflag", "aflag")
                   if f not in stored]
        if missing:
            raise StorageError(f"{path} stores no {missing} in its light curves: it is not a "
                               "fast baseline of this version")
        for name in ("lstseq", "lst"):
            if name not in (station.dtype.names or ()):
                raise StorageError(f"{path}: its station table has no {name!r} field")
        return cls(path, info, dict(info.header), stars, StationTimes.from_table(station),
                   filelist)

    def scintillation(self, pupil_m: float | None) -> Scintillation:
        """The site (from the header) and the lens (``pupil_m``, metres, or the
        configuration's lens of the baseline's camera) the scintillation depends on."""
        if pupil_m is None:
            pupil_m = load_config().camera(self.info.camera_id).lens.aperture_mm / 1e3
        try:
            lat, height = float(self.header["lat"]), float(self.header["height"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"{self.path}: its header gives no site latitude and height "
                               f"({exc}): it is not a baseline of this version") from exc
        return Scintillation(lat, height, float(pupil_m))

    @property
    def lon_offset(self) -> float:
        """Site longitude east of the reference longitude of the lstseq clock, degrees."""
        return float(self.header.get("lon", REFERENCE_LONGITUDE_DEG)) - REFERENCE_LONGITUDE_DEG


@dataclass(frozen=True)
class _Plan:
    """The stars to fit, their sky patches, and which worker takes which patches."""

    patch_dec: dict[int, float]
    """Declination of each patch centre."""
    dec_min: float
    dec_max: float
    """Declination range of the stars, degrees."""
    assignments: list[list[PatchAssignment]]
    """Per worker."""
    npoints: int
    """Points of the selected stars in the baseline (their good points are fewer)."""

    @property
    def npatch(self) -> int:
        return sum(len(a) for a in self.assignments)


def _plan(base: _Baseline, settings: DecorrelationSettings,
          dropped_stars: dict[str, list[int]]) -> _Plan:
    """Select the stars (V <= vmax, with a position), group them by sky patch and give the
    rings of patches to the workers, heaviest first, each to the least loaded one."""
    stars = base.stars
    names = stars.dtype.names or ()
    ids = stars["id"].astype(np.int64)
    ra, dec = stars["ra"].astype(float), stars["dec"].astype(float)
    vmag = stars["vmag"].astype(float)
    nobs = stars["nobs"].astype(float) if "nobs" in names else np.ones(len(ids))
    keep = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(vmag) & (vmag <= settings.vmax)
    dropped_stars[f"stars fainter than V = {settings.vmax} or without position"] = \
        ids[~keep].tolist()
    ids, ra, dec, vmag, nobs = ids[keep], ra[keep], dec[keep], vmag[keep], nobs[keep]
    if len(ids) == 0:
        raise DecorrelationError(f"{base.path}: no star with V <= {settings.vmax}: nothing "
                                 "to calibrate")
    patch = patch_of(ra, dec)
    patches, inverse = np.unique(patch, return_inverse=True)
    p_ra, p_dec = patch_centres(patches)
    weight = np.bincount(inverse, weights=nobs, minlength=len(patches))
    ring = np.round(p_dec, 6)
    nworkers = settings.worker_count(len(np.unique(ring)))
    load = np.zeros(nworkers)
    groups: list[list[PatchAssignment]] = [[] for _ in range(nworkers)]
    rings = np.unique(ring)
    ring_weight = np.array([weight[ring == r].sum() for r in rings])
    for r in rings[np.argsort(-ring_weight)]:
        k = int(np.argmin(load))
        for q in np.flatnonzero(ring == r).tolist():
            sel = patch == patches[q]
            groups[k].append(PatchAssignment(int(patches[q]), ids[sel], ra[sel], dec[sel],
                                             vmag[sel], float(p_ra[q])))
        load[k] += weight[ring == r].sum()
    return _Plan({int(q): float(d) for q, d in zip(patches, p_dec, strict=True)},
                 float(dec.min()), float(dec.max()), groups, int(nobs.sum()))


class _Ticker:
    """Progress over the patch passes: ingest, each iteration, the final pass."""

    def __init__(self, progress: Progress | None, npatch: int, passes: int) -> None:
        self.progress, self.npatch = progress, npatch
        self.total, self.done, self.note = npatch * passes, 0, ""

    def __call__(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress("calibrate", self.done, self.total, self.note)

    def last_pass(self, iterations: int, note: str) -> None:
        self.done, self.total = self.npatch * (iterations + 1), self.npatch * (iterations + 2)
        self.note = note


def _change(delta: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Data-weighted RMS and largest change over the nodes (cells) with at least 5 % of the
    median data weight, mag."""
    sampled = weight > 0
    if not np.any(sampled):
        return 0.0, 0.0
    well = weight > 0.05 * np.median(weight[sampled])
    d = np.abs(delta[well])
    return (float(np.sqrt(np.sum(weight[well] * d * d) / np.sum(weight[well]))),
            float(d.max()))


def _ingest(workers: Workers, base: _Baseline, plan: _Plan, settings: DecorrelationSettings,
            result: CalibrationResult, tick: _Ticker) -> None:
    tick.note = "reading the baseline"
    got = workers.run([Ingest(base.path, a) for a in plan.assignments], IngestSummary, tick)
    result.dropped_stars[f"stars with fewer than {settings.min_points} good points"] = sorted(
        i for r in got for i in r.few_points)
    result.dropped_stars[f"stars saturated on more than {settings.max_saturated_fraction:.0%} "
                         "of their points"] = sorted(i for r in got for i in r.mostly_saturated)
    for r in got:
        for k, v in r.dropped.items():
            result.dropped[k] = result.dropped.get(k, 0) + v
    result.npoints = sum(r.npoints for r in got)
    if result.npoints == 0:
        raise DecorrelationError(
            f"{base.path}: no good point left to calibrate ("
            + ", ".join(f"{v} {k}" for k, v in result.dropped.items() if v) + ")")


def _iterate(workers: Workers, maps: CameraMaps, plan: _Plan, settings: DecorrelationSettings,
             result: CalibrationResult, tick: _Ticker) -> None:
    """Outer iterations until the maps change by less than ``tol`` (or ``max_iter``)."""
    m_parts: list[np.ndarray | None] = [None] * len(plan.assignments)
    for it in range(settings.max_iter):
        tick.note = f"iteration {it + 1}" + (
            f", last change {result.history[-1]['dT'] * 1e3:.2f} mmag" if result.history else "")
        outs = workers.run([Iterate(maps.T, maps.ipx, m, it == 0) for m in m_parts],
                           IterationSums, tick)
        normals = [o.normals for o in outs if o.normals is not None]
        T_new, ipx_new, m_new = maps.solve(normals)
        m_parts = list(np.split(m_new, np.cumsum([n.nstars for n in normals])[:-1]))
        T_new = T_new + cloud_gauge(maps.grid, [c for o in outs for c in o.clear],
                                    plan.patch_dec, settings.gauge_ha_step)
        d_t, d_tmax = _change(T_new - maps.T, maps.t_weight)
        d_i, d_imax = _change(np.sqrt(np.sum((ipx_new - maps.ipx) ** 2, axis=1) / 4.0),
                              maps.ipx_weight)
        nused = sum(o.nused for o in outs)
        chi2 = sum(o.chi2 for o in outs) / max(nused, 1)
        result.history.append({"iteration": it + 1, "dT": d_t, "dipx": d_i,
                               "dT_max": d_tmax, "dipx_max": d_imax, "chi2": chi2,
                               "npoints": nused, "clipped": sum(o.nclip for o in outs),
                               "few_cloud_stars": sum(o.nfew for o in outs),
                               "thick_clouds": sum(o.nthick for o in outs)})
        log.info("iteration %d: change of T %.3g mag (largest %.3g), of the intrapixel "
                 "amplitudes %.3g mag (largest %.3g), chi2 %.3f", it + 1, d_t, d_tmax, d_i,
                 d_imax, chi2)
        maps.T, maps.ipx = T_new, ipx_new
        result.iterations = it + 1
        if not (np.all(np.isfinite(T_new)) and np.all(np.isfinite(ipx_new))):
            return
        if it + 1 >= settings.min_iter and max(d_t, d_i) < settings.tol:
            result.converged = True
            return


def _count_map_drops(result: CalibrationResult, settings: DecorrelationSettings) -> None:
    last = result.history[-1]
    result.dropped["points clipped as outliers (not in the maps)"] = int(last["clipped"])
    result.dropped["points in cloud cells with too few stars (not in the maps)"] = int(
        last["few_cloud_stars"])
    result.dropped[f"points under clouds thicker than {settings.max_cloud_for_maps} mag (not "
                   "in the maps)"] = int(last["thick_clouds"])


def _earlier_outputs(outdir: Path, stem: str) -> list[Path]:
    """The calibrated and maps files of ``stem`` already in ``outdir`` (an earlier run's)."""
    return [p for p in (outdir / f"calibrated_{stem}.hdf5", outdir / f"maps_{stem}.hdf5")
            if p.exists()]


def _report_path(outdir: Path, stem: str, *, failed: bool = False) -> Path:
    """The report of a run on baseline ``stem``: ``report_{stem}.json`` beside the files of
    a run that converged, ``report_{stem}.failed.json`` for one that did not (so that an
    earlier run's report stays with its files)."""
    return outdir / f"report_{stem}{'.failed' if failed else ''}.json"


def _report_failure(base: _Baseline, outdir: Path, result: CalibrationResult,
                    settings: DecorrelationSettings) -> list[Path]:
    """Write the report of a run that did not converge, naming the files of an earlier run
    left in ``outdir``; those files."""
    # An earlier run's calibrated and maps files are left in place, not deleted: they may be
    # the only good calibration of this camera, and a run that fails (too few iterations, a
    # bad night added) says nothing against them. The message and the report name them, so
    # nobody takes them for this run's; deleting them is the user's choice.
    earlier = _earlier_outputs(outdir, base.path.stem)
    path = write_report(_report_path(outdir, base.path.stem, failed=True), result, settings)
    if earlier:
        doc = json.loads(path.read_text(encoding="utf-8"))
        kept = _report_path(outdir, base.path.stem)
        doc["earlier_run"] = {
            "files": [str(p) for p in earlier],
            "report": str(kept) if kept.exists() else None,
            "note": "this run wrote no calibrated or maps file: these are from an earlier run "
                    "(left in place; the live calibration keeps using the newest maps_*.hdf5 "
                    "of its calibration directory)"}
        write_json_state(path, doc)
    result.report_file = path
    return earlier


def _not_converged(base: _Baseline, result: CalibrationResult, tol: float,
                   earlier: list[Path]) -> NotConverged:
    last = result.history[-1]
    left = ""
    if earlier:
        left = (f"; {' and '.join(str(p) for p in earlier)} "
                f"{'are' if len(earlier) > 1 else 'is'} from an earlier run, left in place (the "
                "live calibration keeps using the newest maps_*.hdf5 of its calibration "
                "directory): delete them if they should not be used")
    return NotConverged(
        f"the calibration of {base.path} did not converge in {result.iterations} "
        f"iterations (last RMS change of the maps {max(last['dT'], last['dipx']):.2g} mag, "
        f"tolerance {tol:g}); no calibrated file was written and the "
        f"baseline is untouched: see {result.report_file}, raise --max-iter or check "
        f"the nights it holds{left}")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_scratch(outdir: Path) -> list[Path]:
    """Remove the scratch directories in ``outdir`` whose process is gone (killed); the
    directories removed.

    Only a directory with an owner file naming this host and a pid that no longer runs is
    removed: one of a running calibration, of another host sharing the disk, or without an
    owner file (an older version) is left, and the last is logged."""
    removed = []
    host = socket.gethostname()
    for d in sorted(outdir.glob(f"{_SCRATCH_PREFIX}*")):
        if not d.is_dir():
            continue
        try:
            pid_text, owner_host = (d / _OWNER_FILE).read_text(encoding="utf-8").split()[:2]
            pid = int(pid_text)
            if pid <= 0:
                raise ValueError(pid_text)
        except (OSError, ValueError):
            log.warning("left %s: a calibration scratch directory that names no owner; "
                        "delete it if no calibration is running into %s", d, outdir)
            continue
        if owner_host != host or _pid_alive(pid):
            continue
        shutil.rmtree(d, ignore_errors=True)
        if d.exists():
            log.warning("could not remove %s, the scratch directory of calibration process "
                        "%d (gone): delete it by hand", d, pid)
            continue
        log.warning("removed %s: the scratch directory of calibration process %d, which "
                    "ended without removing it (killed?)", d, pid)
        removed.append(d)
    return removed


def _make_scratch(outdir: Path) -> Path:
    """A new scratch directory in ``outdir`` holding the pid of this process."""
    try:
        scratch = Path(tempfile.mkdtemp(prefix=_SCRATCH_PREFIX, dir=outdir))
        (scratch / _OWNER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n",
                                           encoding="utf-8")
    except OSError as exc:
        raise StorageError(f"could not make the scratch directory of the calibration in "
                           f"{outdir} ({exc.strerror or exc}): choose an --out directory you "
                           "may write to, on a disk with room") from exc
    return scratch


def _write_outputs(base: _Baseline, outdir: Path, maps: CameraMaps,
                   finals: list[FinishedPatches], settings: DecorrelationSettings,
                   result: CalibrationResult) -> None:
    """The calibrated light curves, the maps and their plots (the report comes last)."""
    curves = sorted((c for f in finals for c in f.curves), key=lambda c: c[0])
    star_fit = np.concatenate([s for f in finals for s in f.stars])
    result.dropped["points not calibrated: too few other stars in their cloud cell"] = sum(
        f.nfew for f in finals)
    result.dropped["points not calibrated: outliers"] = sum(f.nclip for f in finals)
    result.nstars = len(star_fit)
    stat = base.path.stat()
    provenance = {"baseline": str(base.path.resolve()), "baseline_size": stat.st_size,
                  "baseline_mtime_ns": stat.st_mtime_ns, "nights": list(base.info.nights),
                  "camera": base.info.camera_id, "aperture": settings.aperture}
    for reason, n in result.dropped.items():
        if n:
            log.warning("%s: dropped %d %s", base.path.name, n, reason)
    for reason, ids in result.dropped_stars.items():
        if ids:
            log.warning("%s: left out %d %s", base.path.name, len(ids), reason)
    stem = base.path.stem
    fitted = FittedMaps(grid=maps.grid, T=maps.T, t_weight=maps.t_weight,
                        t_sampled=maps.sampled_nodes(), ipx_grid=maps.ipx_grid, ipx=maps.ipx,
                        ipx_weight=maps.ipx_weight, ipx_sampled=maps.sampled_cells(),
                        clouds=[c for f in finals for c in f.clouds], star_fit=star_fit)
    result.maps_file = write_maps(
        outdir / f"maps_{stem}.hdf5", provenance=provenance, header=base.header,
        filelist=base.filelist, settings=asdict(settings), history=result.history,
        maps=fitted, station_lstseq=base.station.lstseq, stars=base.stars)
    result.calibrated_file = write_calibrated(
        outdir / f"calibrated_{stem}.hdf5", provenance=provenance, header=base.header,
        filelist=base.filelist, stars=base.stars, star_fit=star_fit, curves=curves,
        flags=CFLAG_BITS)
    # matplotlib is imported here, in the parent only: the workers do without it
    from mascara_actors.decorrelation.plots import write_plots

    result.plots = write_plots(outdir / "plots", result.maps_file)


def calibrate_baseline(
    baseline: str | Path,
    outdir: str | Path,
    settings: DecorrelationSettings | None = None,
    *,
    pupil_m: float | None = None,
    progress: Progress | None = None,
) -> CalibrationResult:
    """Fit the coarse decorrelation to a baseline and write the calibrated light curves.

    Writes into ``outdir``: ``calibrated_{stem}.hdf5`` (binned light curves, see
    :data:`~mascara_actors.decorrelation.BIN_DTYPE`), ``maps_{stem}.hdf5`` (transmission,
    intrapixel, clouds, magnitudes, with the baseline they came from), ``plots/*.png`` and
    ``report_{stem}.json``; a run that does not converge writes ``report_{stem}.failed.json``
    alone and raises :class:`NotConverged`.

    Parameters
    ----------
    baseline
        A baseline file made by ``mascara-actors baseline``.
    outdir
        Output directory (created if missing).
    settings
        Model and solver settings.
    pupil_m
        Entrance pupil of the camera's lens, metres, for the scintillation that the cloud
        flag allows for (default: the lens of the baseline's camera in the configuration).
    progress
        Called with (stage, done, total, note) as the work advances.

    Raises
    ------
    StorageError
        The baseline is missing, foreign or of an older layout (naming it).
    DecorrelationError
        Too few nights, no usable data or settings that cannot work.
    NotConverged
        The solver did not converge: only the report is written (the calibrated and maps
        files of an earlier run, if any, are left and named).
    """
    t_start = time.monotonic()
    settings = settings or DecorrelationSettings()
    settings.check()
    base = _Baseline.read(Path(baseline), settings)
    scintillation = base.scintillation(pupil_m)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    _remove_stale_scratch(outdir)
    result = CalibrationResult(baseline=base.path, outdir=outdir)
    plan = _plan(base, settings, result.dropped_stars)
    grid = TransmissionGrid.covering(plan.dec_min, plan.dec_max,
                                     ha_step=settings.ha_step, dec_step=settings.dec_step)
    r_ha, r_dec = settings.ipx_ratios()
    maps = CameraMaps(grid, IntrapixelGrid.on(grid, ha_ratio=r_ha, dec_ratio=r_dec), settings)
    tick = _Ticker(progress, plan.npatch, settings.max_iter + 2)
    scratch = _make_scratch(outdir)
    setup = WorkerSetup(scratch, maps.grid, maps.ipx_grid, settings, base.station,
                        base.lon_offset, scintillation,
                        plan.npoints * _SCRATCH_BYTES_PER_POINT)
    workers = None
    try:
        workers = Workers([setup] * len(plan.assignments))
        _ingest(workers, base, plan, settings, result, tick)
        _iterate(workers, maps, plan, settings, result, tick)
        _count_map_drops(result, settings)
        if not result.converged:
            result.seconds = time.monotonic() - t_start
            earlier = _report_failure(base, outdir, result, settings)
            raise _not_converged(base, result, settings.tol, earlier)
        tick.last_pass(result.iterations, "calibrated light curves")
        finals = workers.run([Finish(maps.T, maps.ipx)] * len(plan.assignments),
                             FinishedPatches, tick)
    finally:
        if workers is not None:
            workers.close()
        shutil.rmtree(scratch, ignore_errors=True)
    _write_outputs(base, outdir, maps, finals, settings, result)
    result.seconds = time.monotonic() - t_start
    result.report_file = write_report(_report_path(outdir, base.path.stem), result, settings)
    # an earlier failure's report would contradict the files this run wrote
    _report_path(outdir, base.path.stem, failed=True).unlink(missing_ok=True)
    return result
