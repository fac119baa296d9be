"""The search of a season: every star of the calibrated files, on every core, to a vetted
candidates table, one sheet per candidate and an index.

Writes into ``outdir``: ``candidates.csv`` and ``candidates.hdf5`` (see
:mod:`~mascara_actors.search.candidates`), ``sheets/HIP{hip}_{rank}.png``, ``index.html``
and ``search.json`` (the inputs, settings, thresholds, what was skipped and why, counts and
wall time).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from mascara_actors import __version__
from mascara_actors.atomic_files import atomic_write_text
from mascara_actors.catalogue import Catalogue
from mascara_actors.lcsim.transits import TransitSpec
from mascara_actors.search.candidates import Candidate, sort_by_significance, write_candidates
from mascara_actors.search.errors import SearchError
from mascara_actors.search.lightcurve import RawPoints, SeasonInputs, open_season, read_points
from mascara_actors.search.measure import measure_transit
from mascara_actors.search.peaks import calibration_sidebands
from mascara_actors.search.settings import SearchSettings
from mascara_actors.search.sheets import render_sheet, sheet_name, write_index
from mascara_actors.search.star import CoarseGrid, StarResult, detrend_points, search_points
from mascara_actors.search.vetting import Thresholds, criteria_text, vet
from mascara_actors.spherical import unit_vectors
from mascara_actors.storage.calibrated import CalibratedFile

__all__ = ["SearchProgress", "SearchReport", "search"]

log = logging.getLogger(__name__)

SearchProgress = Callable[[str, int, int], None]
"""Called with (stage, done, total): stages ``stars``, ``blends``, ``sheets``."""


@dataclass(frozen=True)
class SearchReport:
    """What a search read, skipped and found."""

    outdir: Path
    camera: str
    files: tuple[Path, ...]
    skipped_files: tuple[tuple[Path, str], ...]
    stars: int
    skipped_stars: tuple[tuple[int, str], ...]
    candidates: tuple[Candidate, ...]
    """Sorted by significance."""
    sheets: int
    seconds: float
    baseline_days: float
    results: dict[int, StarResult] = field(repr=False, default_factory=dict)
    """Each searched star's result (without its periodogram and light curves)."""
    nights: int = 0
    """Nights the files span (:attr:`~mascara_actors.search.lightcurve.SeasonInputs.nights`;
    0: not known, the baseline in days is taken)."""

    @property
    def passed(self) -> list[Candidate]:
        """The candidates that passed every criterion."""
        return [c for c in self.candidates if c.passed]

    @property
    def searched(self) -> int:
        """Stars searched (not skipped)."""
        return self.stars - len(self.skipped_stars)


@dataclass(frozen=True)
class _StarsTask:
    files: tuple[Path, ...]
    camera: str
    hips: tuple[int, ...]
    grid: CoarseGrid
    settings: SearchSettings
    injections: Mapping[int, TransitSpec]


@dataclass(frozen=True)
class _BlendTask:
    files: tuple[Path, ...]
    settings: SearchSettings
    requests: tuple[tuple[int, tuple[tuple[float, float, float], ...]], ...]
    """(neighbour HIP, the (period, epoch, duration) to measure on it)."""


def _open(files: Sequence[Path]) -> list[CalibratedFile]:
    return [CalibratedFile(p) for p in files]


def _points(opened: list[CalibratedFile], hip: int, s: SearchSettings,
            injection: TransitSpec | None) -> RawPoints:
    pts = read_points(opened, hip, s.min_nobs)
    if injection is not None and len(pts):
        pts = replace(pts, mag=pts.mag + injection.dimming_mag(pts.jd))
    return pts


def _search_stars(task: _StarsTask) -> list[StarResult]:
    """Worker: search a chunk of stars; a star whose reading or search fails is skipped with
    its exception."""
    opened = _open(task.files)
    try:
        out = []
        for hip in task.hips:
            # one star's failure (a damaged light curve, a bug its data brings out) is that
            # star's: it must name the star and leave the others of the chunk searched
            try:
                pts = _points(opened, hip, task.settings, task.injections.get(hip))
                out.append(search_points(hip, task.camera, pts, task.grid, task.settings))
            except Exception as exc:
                out.append(StarResult(hip, 0, 0, f"search failed: {type(exc).__name__}: "
                                                 f"{exc}"))
        return out
    finally:
        for f in opened:
            f.close()


def _measure_neighbours(task: _BlendTask) -> list[tuple[int, tuple[float, ...]]]:
    """Worker: each neighbour's signal to noise at the ephemerides asked (0 without enough
    points)."""
    s = task.settings
    opened = _open(task.files)
    try:
        out = []
        for hip, ephemerides in task.requests:
            pts = read_points(opened, hip, s.min_nobs)
            if len(pts) < s.min_points or float(np.ptp(pts.mag)) == 0.0:
                out.append((hip, tuple(0.0 for _ in ephemerides)))
                continue
            d = detrend_points(pts, s)
            snr = tuple(measure_transit(pts.jd, d.flux, d.flux_err, p, e, w).snr
                        for p, e, w in ephemerides)
            out.append((hip, snr))
        return out
    finally:
        for f in opened:
            f.close()


def _render(args: tuple[Path, Candidate, StarResult, np.ndarray]) -> Path:
    path, cand, result, periods = args
    lc = next((p.lightcurve for p in result.peaks if p.rank == cand.rank), None)
    if lc is None or result.sde is None:
        raise ValueError(f"HIP {cand.hip} has no light curve or periodogram to draw")
    return render_sheet(path, cand, lc, periods, result.sde)


class _Inline(Executor):
    """Runs each task when submitted, in this process (one worker: no process to start)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future[object] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # a task's failure is reported by the caller
            future.set_exception(exc)
        return future


_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def _executor(workers: int) -> Iterator[Executor]:
    if workers <= 1:
        yield _Inline()
        return
    # one BLAS thread per worker (read when a worker imports numpy): the workers fill the
    # cores already, and BLAS threads fighting over them made the detrending ten times
    # slower; spawned, so the workers start clean whatever threads the caller runs
    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    os.environ.update(_ONE_THREAD)
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            yield pool
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _lean(r: StarResult) -> StarResult:
    """The result without its periodogram and light curves (the report keeps every star)."""
    return replace(r, sde=None, peaks=tuple(replace(p, lightcurve=None) for p in r.peaks))


def _chunks(items: Sequence[int], size: int) -> list[tuple[int, ...]]:
    return [tuple(items[i:i + size]) for i in range(0, len(items), size)]


def _star_data(catalogue: Catalogue, hips: np.ndarray) -> dict[int, tuple[float, str, float,
                                                                          float]]:
    """HIP -> (V, spectral class, RA, Dec) for the stars in the catalogue."""
    known = np.isin(hips, catalogue.hip)
    cat = catalogue.by_hip(hips[known].tolist())
    return {int(h): (float(v), str(sp), float(ra), float(dec)) for h, v, sp, ra, dec in
            zip(cat["hip"], cat["vmag"], cat["sptype"], cat["ra_deg"], cat["dec_deg"],
                strict=True)}


def _neighbours(data: Mapping[int, tuple[float, str, float, float]], wanted: Sequence[int],
                radius_arcsec: float) -> dict[int, list[int]]:
    """For each wanted HIP, the other stars of ``data`` within the radius."""
    hips = np.array(sorted(data), np.int64)
    if len(hips) < 2:
        return {h: [] for h in wanted}
    ra = np.array([data[h][2] for h in hips])
    dec = np.array([data[h][3] for h in hips])
    tree = cKDTree(unit_vectors(ra, dec))
    chord = 2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0)
    out: dict[int, list[int]] = {}
    for h in wanted:
        if h not in data:
            out[h] = []
            continue
        i = int(np.searchsorted(hips, h))
        near = tree.query_ball_point(unit_vectors(ra[i:i + 1], dec[i:i + 1])[0], chord)
        out[h] = [int(hips[j]) for j in near if j != i]
    return out


def search(
    paths: Sequence[str | Path],
    outdir: str | Path,
    settings: SearchSettings | None = None,
    thresholds: Thresholds | None = None,
    *,
    sheets: int = 50,
    stars: Sequence[int] | None = None,
    injections: Sequence[TransitSpec] = (),
    catalogue: Catalogue | None = None,
    progress: SearchProgress | None = None,
) -> SearchReport:
    """Search the calibrated light curves ``paths`` of one camera for transits.

    Parameters
    ----------
    paths
        Calibrated files (``mascara-actors calibrate``); unreadable ones and those of another
        camera are skipped and reported.
    outdir
        Where the candidates, sheets, index and ``search.json`` go (created if missing).
    settings, thresholds
        What to search and how to vet.
    sheets
        Besides every candidate that passed the vetting, draw the sheets of this many of
        the others (the most significant).
    stars
        Search only these HIP numbers (default every star of the files).
    injections
        Transits added to the stars' calibrated magnitudes before the search (for
        injection-recovery; the files are not changed).
    catalogue
        Default: the Hipparcos catalogue.
    progress
        Called as the stars, blends and sheets are done.

    Raises
    ------
    SearchError
        No readable file, no star to search.
    ConfigError
        Settings that cannot work for this season.
    """
    start = time.perf_counter()
    s = settings or SearchSettings()
    outdir = Path(outdir)
    season = open_season(paths)
    baseline = season.baseline_days
    s.check(baseline)
    sidebands = calibration_sidebands(season.file_days)
    limits = replace(thresholds or Thresholds(alias_tolerance=s.alias_tolerance),
                     sidebands=sidebands, sideband_width=1.0 / baseline)
    hips = season.stars if stars is None else np.intersect1d(season.stars, np.asarray(
        list(stars), np.int64))
    if len(hips) == 0:
        raise SearchError("none of the stars asked for is in the calibrated files")
    grid = CoarseGrid.for_season(baseline, s)
    inject = {t.hip: t for t in injections}
    # every star of the files, searched or not: a neighbour that dilutes a searched star's
    # dip is measured for the blend check whether or not it was asked for (``stars``)
    data = _star_data(catalogue or Catalogue.load(), season.stars)
    tick = progress or (lambda stage, done, total: None)
    outdir.mkdir(parents=True, exist_ok=True)
    results: dict[int, StarResult] = {}
    failed: list[tuple[int, str]] = []
    with _executor(s.workers) as pool:
        chunk = max(1, min(25, len(hips) // (4 * s.workers) or 1))
        futures = {pool.submit(_search_stars, _StarsTask(
            season.files, season.camera, c, grid, s,
            {h: inject[h] for h in c if h in inject})): c for c in _chunks(hips.tolist(), chunk)}
        done = 0
        tick("stars", 0, len(hips))
        for fut in as_completed(futures):
            try:
                for r in fut.result():
                    results[r.hip] = r
                    if r.skipped and r.skipped.startswith("search failed"):
                        log.warning("HIP %d: %s", r.hip, r.skipped)
            except Exception as exc:  # the whole chunk: its files unreadable, its worker died
                failed += [(h, f"search failed: {type(exc).__name__}: {exc}")
                           for h in futures[fut]]
                log.warning("HIP %s: search failed: %s: %s",
                            ", ".join(str(h) for h in futures[fut]), type(exc).__name__, exc)
            done += len(futures[fut])
            tick("stars", done, len(hips))
        found = [r for r in results.values() if r.peaks]
        blend = _blends(pool, season, s, data, found, tick)
        rows = _candidates(season.camera, data, found, blend, limits)
        rows = _passed_first(rows, results)
        drawn = _sheets(pool, outdir, rows, results, grid.periods, sheets, tick)
    _remove_stale_sheets(outdir, drawn.values())
    write_candidates(outdir, rows, criteria_text(limits))
    write_index(outdir, rows, drawn)
    skipped = sorted([(h, r.skipped) for h, r in results.items() if r.skipped] + failed)
    report = SearchReport(outdir, season.camera, season.files, season.skipped,
                          len(hips), tuple((h, str(w)) for h, w in skipped), tuple(rows),
                          len(drawn), time.perf_counter() - start, baseline,
                          {h: _lean(r) for h, r in results.items()}, season.nights)
    _write_json(outdir / "search.json", report, s, limits, season, injections)
    return report


def _blends(pool: Executor, season: SeasonInputs, s: SearchSettings,
            data: Mapping[int, tuple[float, str, float, float]], found: list[StarResult],
            tick: SearchProgress) -> dict[tuple[int, int], tuple[int, float]]:
    """(HIP, rank) -> the neighbour showing the peak's dip most significantly and its S/N."""
    near = _neighbours(data, [r.hip for r in found], s.blend_radius_arcsec)
    asks: dict[int, list[tuple[tuple[int, int], tuple[float, float, float]]]] = {}
    for r in found:
        for p in r.peaks:
            m = p.measure
            for n in near[r.hip]:
                asks.setdefault(n, []).append(((r.hip, p.rank), (m.period, m.epoch,
                                                                 m.duration)))
    out: dict[tuple[int, int], tuple[int, float]] = {}
    if not asks:
        return out
    requests = [(n, tuple(e for _, e in asks[n])) for n in sorted(asks)]
    tasks = [_BlendTask(season.files, s, tuple(c)) for c in
             (requests[i:i + 20] for i in range(0, len(requests), 20))]
    futures = {pool.submit(_measure_neighbours, t): t for t in tasks}
    for done, fut in enumerate(as_completed(futures), start=1):
        try:
            answers = fut.result()
        except Exception as exc:
            # their candidates then pass the blend check unchecked: say so, never in silence
            log.warning("the blend check could not measure the neighbours HIP %s (%s: %s): "
                        "the candidates within %g\" of them are not checked against them",
                        ", ".join(str(n) for n, _ in futures[fut].requests),
                        type(exc).__name__, exc, s.blend_radius_arcsec)
            answers = []
        for n, snrs in answers:
            for (key, _), snr in zip(asks[n], snrs, strict=True):
                if snr > out.get(key, (0, 0.0))[1]:
                    out[key] = (n, snr)
        tick("blends", done, len(futures))
    return out


def _candidates(camera: str, data: Mapping[int, tuple[float, str, float, float]],
                found: list[StarResult], blend: Mapping[tuple[int, int], tuple[int, float]],
                limits: Thresholds) -> list[Candidate]:
    """One row per kept peak, vetted and with its aliases (:func:`_passed_first` ranks
    and sorts them)."""
    rows = []
    for r in found:
        vmag, sptype, ra, dec = data.get(r.hip, (float("nan"), "?", float("nan"),
                                                 float("nan")))
        for p in r.peaks:
            m = p.measure
            n_hip, n_snr = blend.get((r.hip, p.rank), (0, 0.0))
            rows.append(Candidate(
                hip=r.hip, camera=camera, vmag=vmag, sptype=sptype, ra=ra, dec=dec,
                rank=p.rank, period=m.period, epoch=m.epoch, duration=m.duration,
                depth=m.depth, depth_err=m.depth_err, sde=p.sde, snr=m.snr,
                npoints=r.npoints, ntransits=m.ntransits,
                in_transit_fraction=m.in_transit_fraction,
                odd_even_sigma=m.odd_even_sigma, secondary_depth=m.secondary_depth,
                secondary_sigma=m.secondary_sigma, ellipsoidal_amp=m.ellipsoidal_amp,
                ellipsoidal_sigma=m.ellipsoidal_sigma,
                single_night_fraction=m.single_night_fraction,
                anti_transit_ratio=m.anti_transit_ratio, red_noise=m.red_noise,
                blend_hip=n_hip, blend_snr=n_snr, snr_err=m.snr_err,
                checks=vet(m, sde=p.sde, sptype=sptype, blend_snr=n_snr, limits=limits)))
    return _with_aliases(rows, found)


def _with_aliases(rows: list[Candidate], found: list[StarResult]) -> list[Candidate]:
    """Each row with the periods of its star's passed peaks that fold the same transits."""
    row = {(c.hip, c.rank): c for c in rows}
    out = []
    for r in found:
        for p in r.peaks:
            others = [row[(r.hip, k)] for k in p.same_transits]
            aliases = " ".join(f"{c.period:.6f}" for c in others if c.passed)
            out.append(replace(row[(r.hip, p.rank)], aliases=aliases))
    return out


def _passed_first(rows: list[Candidate], results: dict[int, StarResult]) -> list[Candidate]:
    """Rank each star's peaks again, those that passed the vetting first, each group by S/N:
    the star's candidate is its strongest peak that passed. The search ranked by S/N alone,
    and an alias that fails a criterion of its own (a box at three times the period holds
    three times the share of points in transit) would otherwise stand above the period
    that passes. The star's results in ``results`` are renumbered to match."""
    by_star: dict[int, list[Candidate]] = {}
    for c in rows:
        by_star.setdefault(c.hip, []).append(c)
    out = []
    for hip, mine in by_star.items():
        mine.sort(key=lambda c: (not c.passed, -c.snr, c.rank))
        new = {c.rank: k for k, c in enumerate(mine, start=1)}
        out += [replace(c, rank=new[c.rank]) for c in mine]
        r = results[hip]
        peaks = (replace(p, rank=new[p.rank],
                         same_transits=tuple(sorted(new[k] for k in p.same_transits)))
                 for p in r.peaks)
        results[hip] = replace(r, peaks=tuple(sorted(peaks, key=lambda p: p.rank)))
    return sort_by_significance(out)


def _sheets(pool: Executor, outdir: Path, rows: list[Candidate],
            results: Mapping[int, StarResult], periods: np.ndarray, others: int,
            tick: SearchProgress) -> dict[tuple[int, int], str]:
    """Draw the sheets of the candidates that passed and of the ``others`` most significant
    of the rest; (HIP, rank) -> file name relative to ``outdir``."""
    failed = [c for c in rows if not c.passed][:max(others, 0)]
    chosen = [c for c in rows if c.passed] + failed
    if not chosen:
        return {}
    (outdir / "sheets").mkdir(exist_ok=True)
    futures = {pool.submit(_render, (outdir / "sheets" / sheet_name(c), c, results[c.hip],
                                     periods)): c for c in chosen}
    out: dict[tuple[int, int], str] = {}
    for done, fut in enumerate(as_completed(futures), start=1):
        c = futures[fut]
        try:
            fut.result()
            out[(c.hip, c.rank)] = f"sheets/{sheet_name(c)}"
        except Exception as exc:  # the index lists the candidate without a link
            log.warning("the sheet of HIP %d (peak %d) could not be drawn: %s", c.hip,
                        c.rank, exc)
        tick("sheets", done, len(futures))
    return out


_SHEET_FILE = re.compile(r"HIP\d+_\d+\.png")
"""The name of a sheet (:func:`~mascara_actors.search.sheets.sheet_name`)."""


def _remove_stale_sheets(outdir: Path, drawn: Iterable[str]) -> None:
    """Delete the sheets in ``outdir/sheets`` that this search did not draw (``drawn``:
    names relative to ``outdir``): an earlier search into the same directory left them, of
    stars that are no longer candidates or peaks ranked anew, which the index does not list
    and a reader would take for this search's. Only files named as sheets are touched."""
    folder = outdir / "sheets"
    if not folder.is_dir():
        return
    keep = {Path(name).name for name in drawn}
    for path in folder.iterdir():
        if _SHEET_FILE.fullmatch(path.name) and path.name not in keep and path.is_file():
            path.unlink(missing_ok=True)


def _write_json(path: Path, report: SearchReport, s: SearchSettings, limits: Thresholds,
                season: SeasonInputs, injections: Sequence[TransitSpec]) -> None:
    doc = {
        "software_version": __version__,
        "camera": report.camera,
        "files": [str(p) for p in season.files],
        "skipped_files": [{"file": str(p), "why": w} for p, w in season.skipped],
        "baseline_days": report.baseline_days,
        "nights": report.nights,
        "settings": asdict(s),
        "thresholds": asdict(limits),
        "criteria": criteria_text(limits),
        "stars": report.stars,
        "searched": report.searched,
        "skipped_stars": [{"hip": h, "why": w} for h, w in report.skipped_stars],
        "candidates": len(report.candidates),
        "passed": len(report.passed),
        "sheets": report.sheets,
        "injected": len(injections),
        "seconds": round(report.seconds, 1),
    }
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")

