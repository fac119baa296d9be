"""A simulated observing season through the calibration, for the transit search's
injection-recovery (issue 19).

A season is more nights than one calibration takes: MASCARA calibrates baselines of about
15 nights. :func:`simulate_season` simulates the nights with the light-curve simulator
(:mod:`mascara_actors.lcsim`) a run of ``baseline_nights`` consecutive nights at a time;
as soon as a run is written it is merged into a baseline, its nightly files are deleted
and the baseline is calibrated on its own (in a worker process, while the next run is
simulated), as the station does; the search then reads the calibrated files in time order.
:func:`draw_injections` draws the transits to inject, and :func:`plan_season` tells which
stars a season will simulate before it is simulated (the injections need their HIP
numbers).

Layout of ``outdir``::

    nights/truth_{SITE}{CAM}.fits             what was injected (Season.truth)
    calibrated/{first}_{last}/                the calibration of each run of nights
        calibrated_baseline_{first}_{last}.hdf5   (Season.calibrated)
        maps_baseline_{first}_{last}.hdf5, report_baseline_{first}_{last}.json, plots/

With ``keep=True`` the nightly files stay (``nights/{night}{SITE}{CAM}/lightcurves/``), and
the baselines (``baselines/baseline_{first}_{last}.hdf5``): they help when a test fails, but
a full season of 6,000 stars would need about 100 GB. Both are written with LZF
compression, which halves them at no measurable cost in time (gzip saves a few % more and
is slower to read).

Cost, on two cores (60 nights of LPC from 2026-01-08, 400 stars of dec 29-31, one set of
50 in two: 2 minutes): most of it does not depend on the stars. The simulator's
planning takes 0.45 s a night on one core (the night windows, from the Sun's altitude:
27 s), the simulation about 1.2 s of CPU a night besides the stars (the sets written and
combined as the pipeline does), a calibration 8-15 s; 150 more stars cost about 10 s.
A nightly file holds about 0.13 MB per star and night (full cadence, LZF).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import logging
import math
import multiprocessing as mp
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.decorrelation import DecorrelationSettings, calibrate_baseline
from mascara_actors.decorrelation.sky import slot_hour_angle
from mascara_actors.errors import ConfigError, StorageError
from mascara_actors.lcsim import (
    LightCurveSimulation,
    TransitSpec,
    read_truth,
    simulate_lightcurves,
)
from mascara_actors.lcsim.simulate import _plan as _lcsim_plan
from mascara_actors.sidereal import REFERENCE_LONGITUDE_DEG, lstseq2date
from mascara_actors.storage.baseline import build_baseline

__all__ = [
    "MIN_BASELINE_NIGHTS",
    "Season",
    "SeasonPlan",
    "SeasonProgress",
    "baseline_runs",
    "draw_injections",
    "plan_season",
    "simulate_season",
]

log = logging.getLogger(__name__)

MIN_BASELINE_NIGHTS = 5
"""Fewer nights do not separate the camera from the sky well: a shorter last run of
nights joins the run before it."""

SeasonProgress = Callable[[str, int, int], None]
"""Called with (stage, done, total): ``"simulate"`` (sets of 50 exposures, after each
night), ``"baseline"`` and ``"calibrate"`` (baselines)."""

_STAR_DTYPE = np.dtype([("hip", "i8"), ("vmag", "f8"), ("ra", "f8"), ("dec", "f8")])


@dataclass(frozen=True)
class Season:
    """What :func:`simulate_season` wrote and injected."""

    calibrated: tuple[Path, ...]
    """The calibrated light curves (``calibrated_*.hdf5``), one per baseline, in time
    order."""
    truth: Path
    """The simulator's truth file (:func:`~mascara_actors.lcsim.read_truth`)."""
    transits: tuple[TransitSpec, ...]
    """Every injected transit (from the truth file), by HIP number."""
    variables: frozenset[int]
    """HIP numbers of the intrinsic variables (from the truth file)."""
    stars: tuple[int, ...]
    """HIP numbers of every simulated star, ascending."""


@dataclass(frozen=True)
class SeasonPlan:
    """The stars a season will simulate, known before it is simulated."""

    stars: np.ndarray
    """``hip``, ``vmag``, ``ra``, ``dec`` (catalogue, deg) of each star, ascending HIP."""
    variables: frozenset[int]
    """The stars the simulator makes variable (unless given a transit: a transit star is
    never also a variable)."""
    start_jd: float
    """JD (UTC) of the first simulated exposure."""
    nights: tuple[str, ...]
    """The nights (YYYYMMDD)."""
    night_slots: np.ndarray
    """(nights, 2): the first and the stop lstseq of the slots simulated each night."""
    lon_offset_deg: float
    """The camera's longitude east of the reference longitude of the lstseq clock."""

    def midnight_hour_angle(self) -> np.ndarray:
        """(stars, nights): each star's hour angle (deg, [-180, 180)) in the middle of each
        night's slots: the further from 0, the less of the star's passage through the
        field falls in the dark (a star within 60 deg on every night of a January season
        crosses the whole field every night)."""
        mid = self.night_slots.sum(axis=1) // 2
        return slot_hour_angle(mid[None, :], self.stars["ra"][:, None], self.lon_offset_deg)


def _simulation(*, nights: int, camera: str, start: dt.date, stars: int | None,
                dec_range: tuple[float, float] | None, transits: Sequence[TransitSpec],
                random_transits: bool, every_set: int, seed: int) -> LightCurveSimulation:
    """The lcsim settings of a season, checked (:class:`ConfigError` naming the first
    that cannot work)."""
    if nights < MIN_BASELINE_NIGHTS:
        raise ConfigError(f"nights={nights}: a season needs at least {MIN_BASELINE_NIGHTS} "
                          "nights, the shortest run of nights calibrated together")
    if dec_range is not None and not dec_range[0] < dec_range[1]:
        raise ConfigError(f"dec_range={dec_range}: give (lowest, highest) declination, deg")
    _check_transits(transits)
    sim = LightCurveSimulation(
        camera=camera, nights=nights, start=start, stars=stars, seed=seed,
        every_set=every_set, dec_range=dec_range, transits=tuple(transits),
        # the random transits would mix with the injections, whose truth the test knows
        transit_fraction=LightCurveSimulation.transit_fraction if random_transits else 0.0,
        compression="lzf")
    sim.check()
    return sim


def _check_transits(transits: Sequence[TransitSpec]) -> None:
    twice = sorted(h for h, n in collections.Counter(t.hip for t in transits).items() if n > 1)
    if twice:
        raise ConfigError(f"transits: stars {twice} are given more than one transit; the "
                          "simulator keeps one per star")
    for t in transits:
        if not (0.0 < t.depth < 1.0 and t.period_d > 0 and 0 < t.duration_h < 24 * t.period_d
                and math.isfinite(t.epoch_jd)):
            raise ConfigError(f"{t}: needs 0 < depth < 1, a positive period, a duration "
                              "shorter than the period and a finite epoch")


def _plan_of(sim: LightCurveSimulation) -> SeasonPlan:
    config = load_config()
    config.camera(sim.camera)
    with tempfile.TemporaryDirectory() as scratch:
        # lcsim's own planning, so that the stars are those it will simulate; it writes
        # nothing, the directory only fills a field of the plan
        plan = _lcsim_plan(sim, config, Catalogue.load(), Path(scratch))
    cat = plan.stars.cat
    stars = np.zeros(len(cat), _STAR_DTYPE)
    stars["hip"], stars["vmag"] = cat.hip, cat.vmag
    stars["ra"], stars["dec"] = cat["ra_deg"], cat["dec_deg"]
    slots = np.array([(n.first, n.stop) for n in plan.schedule], np.int64)
    return SeasonPlan(stars, frozenset(cat.hip[plan.stars.var_amp > 0].tolist()),
                      float(lstseq2date(plan.schedule[0].first, format="jd")),
                      tuple(f"{n.window.night:%Y%m%d}" for n in plan.schedule), slots,
                      plan.camera.site.longitude_deg - REFERENCE_LONGITUDE_DEG)


def plan_season(*, nights: int = 60, camera: str = "LPC", start: dt.date = dt.date(2026, 1, 8),
                stars: int | None = None, dec_range: tuple[float, float] | None = None,
                every_set: int = 1, seed: int = 1) -> SeasonPlan:
    """The stars :func:`simulate_season` simulates with the same arguments (the transits
    do not change which), and when the season starts: what :func:`draw_injections`
    needs. Writes nothing.

    It costs what the simulator's own planning costs, about half a second per night (the
    night windows, from the Sun's altitude); the result is kept, so that
    :func:`simulate_season` checks its transits against it for free.
    """
    return _cached_plan(nights, camera, start, stars,
                        None if dec_range is None else (dec_range[0], dec_range[1]),
                        every_set, seed)


@functools.lru_cache(maxsize=4)
def _cached_plan(nights: int, camera: str, start: dt.date, stars: int | None,
                 dec_range: tuple[float, float] | None, every_set: int, seed: int
                 ) -> SeasonPlan:
    plan = _plan_of(_simulation(nights=nights, camera=camera, start=start, stars=stars,
                                dec_range=dec_range, transits=(), random_transits=False,
                                every_set=every_set, seed=seed))
    # shared by every caller of the cache
    plan.stars.flags.writeable = False
    plan.night_slots.flags.writeable = False
    return plan


def baseline_runs(nights: int, baseline_nights: int) -> list[range]:
    """The nights (indices) of each baseline: runs of ``baseline_nights``; a last run
    shorter than :data:`MIN_BASELINE_NIGHTS` joins the one before it."""
    runs = [range(i, min(i + baseline_nights, nights)) for i in range(0, nights, baseline_nights)]
    if len(runs) > 1 and len(runs[-1]) < MIN_BASELINE_NIGHTS:
        runs[-2:] = [range(runs[-2].start, nights)]
    return runs


def draw_injections(
    hips: Sequence[int],
    *,
    depths: Sequence[float] = (0.02, 0.01, 0.005),
    periods: tuple[float, float] = (1.0, 5.0),
    durations_h: tuple[float, float] = (2.0, 4.0),
    start_jd: float,
    seed: int,
) -> tuple[TransitSpec, ...]:
    """One transit per star of ``hips``: the depths in turn (star k gets
    ``depths[k % len(depths)]``, so each gets an equal share), the period log-uniform in
    ``periods`` (days), the duration uniform in ``durations_h`` (hours), mid-transit
    uniform within the first period after ``start_jd``.

    Raises
    ------
    ConfigError
        A star given twice, no depth or one outside (0, 1), an empty or non-positive
        period or duration range.
    """
    hips = [int(h) for h in hips]
    if len(set(hips)) != len(hips):
        raise ConfigError("draw_injections: a star is given twice; each gets one transit")
    if not depths or not all(0.0 < d < 1.0 for d in depths):
        raise ConfigError(f"depths={tuple(depths)}: give depths between 0 and 1 (fractions "
                          "of the flux)")
    if not 0.0 < periods[0] <= periods[1]:
        raise ConfigError(f"periods={periods}: give (shortest, longest) > 0, days")
    if not 0.0 < durations_h[0] <= durations_h[1]:
        raise ConfigError(f"durations_h={durations_h}: give (shortest, longest) > 0, hours")
    rng = np.random.default_rng(seed)
    n = len(hips)
    period = np.exp(rng.uniform(np.log(periods[0]), np.log(periods[1]), n))
    duration = rng.uniform(durations_h[0], durations_h[1], n)
    epoch = start_jd + rng.uniform(0.0, 1.0, n) * period
    return tuple(TransitSpec(hip=h, period_d=float(period[k]), epoch_jd=float(epoch[k]),
                             depth=float(depths[k % len(depths)]),
                             duration_h=float(duration[k]))
                 for k, h in enumerate(hips))


def _calibrate(baseline: Path, outdir: Path, settings: DecorrelationSettings) -> Path:
    """Calibrate one baseline (in a worker process: a module-level function pickles)."""
    result = calibrate_baseline(baseline, outdir, settings)
    log.info("%s: %s", baseline.name, result.summary().splitlines()[0])
    # calibrate_baseline raises NotConverged rather than return without the file
    assert result.calibrated_file is not None
    return result.calibrated_file


class _RunsOfNights:
    """What :func:`simulate_season` does with each run of nights as soon as it is
    simulated: merge it into a baseline, delete its nightly files, calibrate the baseline
    in a worker process (while the simulator goes on with the next run), delete the
    baseline once calibrated. A context manager: it waits for the calibrations on exit."""

    def __init__(self, outdir: Path, runs: int, settings: DecorrelationSettings, workers: int,
                 keep: bool, progress: SeasonProgress | None) -> None:
        self.outdir, self.runs, self.keep, self.progress = outdir, runs, keep, progress
        self.workers = workers
        self.settings = settings
        # as many as simulate: while the simulator runs they share the cores with it, once
        # it is done the calibrations left run side by side
        self._pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        self._futures: list[Future[Path]] = []

    def __enter__(self) -> _RunsOfNights:
        (self.outdir / "baselines").mkdir(parents=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=exc[0] is not None)
        if not self.keep:
            shutil.rmtree(self.outdir / "baselines", ignore_errors=True)

    def take(self, files: list[Path]) -> None:
        """One run of nightly files, just written (in night order)."""
        k = len(self._futures)
        # the night directories are named {YYYYMMDD}{SITE}{CAM}
        span = f"{files[0].parent.parent.name[:8]}_{files[-1].parent.parent.name[:8]}"
        base = build_baseline(files, self.outdir / "baselines" / f"baseline_{span}.hdf5",
                              compression="lzf", threads=self.workers).output
        if self.progress is not None:
            self.progress("baseline", k + 1, self.runs)
        if not self.keep:
            for f in files:
                shutil.rmtree(f.parent.parent)
        # one calibration splits its sky patches between its workers by HEALPix rings, and
        # a narrow dec band (test seasons) has most of its stars in one ring: one process
        # per calibration, but for the last run, alone at the end, which gets every worker
        last = k == self.runs - 1
        settings = self.settings if last else dataclasses.replace(self.settings, workers=1)
        future = self._pool.submit(_calibrate, base, self.outdir / "calibrated" / span,
                                   settings)
        future.add_done_callback(functools.partial(self._calibrated_one, base))
        self._futures.append(future)

    def _calibrated_one(self, baseline: Path, future: Future[Path]) -> None:
        """In the pool's thread, once a calibration ended: its baseline is no longer
        needed."""
        if not self.keep and not future.cancelled() and future.exception() is None:
            baseline.unlink(missing_ok=True)

    def calibrated(self) -> list[Path]:
        """The calibrated files, in time order, as the calibrations end (raises what a
        calibration raised)."""
        out = []
        for k, future in enumerate(self._futures):
            out.append(future.result())
            if self.progress is not None:
                self.progress("calibrate", k + 1, self.runs)
        return out


def simulate_season(
    outdir: Path,
    *,
    nights: int = 60,
    camera: str = "LPC",
    start: dt.date = dt.date(2026, 1, 8),
    stars: int | None = None,
    dec_range: tuple[float, float] | None = None,
    transits: Sequence[TransitSpec] = (),
    random_transits: bool = False,
    every_set: int = 1,
    baseline_nights: int = 15,
    seed: int = 1,
    workers: int = 2,
    settings: DecorrelationSettings | None = None,
    progress: SeasonProgress | None = None,
    keep: bool = False,
) -> Season:
    """Simulate a season of ``nights`` nights of one camera and calibrate it by runs of
    ``baseline_nights`` nights (layout of ``outdir``: the module docstring).

    Parameters
    ----------
    outdir
        New or empty directory.
    nights, camera, start, stars, dec_range, every_set, seed
        As :class:`~mascara_actors.lcsim.LightCurveSimulation`; the weather is drawn by
        the simulator, variable stars are made as it makes them.
    transits
        Transits to inject (a star listed gets exactly this one); every star must be one
        the season simulates (:func:`plan_season`). Checking that takes the simulator's
        planning (half a second a night) unless :func:`plan_season` was called with the
        same arguments in this process.
    random_transits
        Also give the simulator's random transits to a fraction of the stars (off: the
        only transits are ``transits``).
    baseline_nights
        Nights per baseline (the last baseline takes the remainder, and a remainder of
        fewer than :data:`MIN_BASELINE_NIGHTS` nights joins the baseline before it).
    workers
        Processes simulating the nights, and as many calibrating the runs of nights
        already simulated (one process each) beside them.
    settings
        Calibration settings (default :class:`DecorrelationSettings`); their ``workers``
        count for the last run of nights only (the others are calibrated in one process
        each).
    progress
        Called with (stage, done, total) as the work advances (:data:`SeasonProgress`).
    keep
        Keep the nightly files and the baselines (deleted as soon as they are used
        otherwise; see the module docstring).

    Raises
    ------
    ConfigError
        Settings that cannot work (fewer than :data:`MIN_BASELINE_NIGHTS` nights, baselines
        shorter than that, a transit of a star not simulated ...), before anything is
        simulated.
    StorageError
        ``outdir`` is not empty, or a file cannot be written.
    NotConverged
        The calibration of a baseline did not converge.
    """
    if baseline_nights < MIN_BASELINE_NIGHTS:
        raise ConfigError(f"baseline_nights={baseline_nights}: a baseline needs at least "
                          f"{MIN_BASELINE_NIGHTS} nights to separate the camera from the sky "
                          "(MASCARA calibrates 15)")
    if workers < 1:
        raise ConfigError(f"workers={workers}: must be at least 1")
    sim = _simulation(nights=nights, camera=camera, start=start, stars=stars,
                      dec_range=dec_range, transits=transits,
                      random_transits=random_transits, every_set=every_set, seed=seed)
    if transits:
        plan = _cached_plan(nights, camera, start, stars,
                            None if dec_range is None else (dec_range[0], dec_range[1]),
                            every_set, seed)
        simulated = set(plan.stars["hip"].tolist())
        missing = sorted({t.hip for t in transits} - simulated)
        if missing:
            raise ConfigError(f"transits of stars {missing[:10]} that the season does not "
                              "simulate: pick them with plan_season() and the same arguments")
    outdir = Path(outdir)
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise StorageError(f"{outdir} exists and is not an empty directory: give a new one")

    def simulated_sets(done: int, total: int) -> None:
        if progress is not None:
            progress("simulate", done, total)

    runs = baseline_runs(nights, baseline_nights)
    with _RunsOfNights(outdir, len(runs), settings or DecorrelationSettings(workers=workers),
                       workers, keep, progress) as after:
        report = simulate_lightcurves(outdir / "nights", sim, workers=workers,
                                      progress=simulated_sets, batches=runs,
                                      after_batch=after.take)
        calibrated = after.calibrated()
    truth = read_truth(report.truth_file)
    injected = tuple(TransitSpec(hip=int(r["id"]), period_d=float(r["period"]),
                                 epoch_jd=float(r["epoch"]), depth=float(r["depth"]),
                                 duration_h=float(r["duration"])) for r in truth.transits)
    ts = truth.stars
    return Season(tuple(calibrated), report.truth_file, injected,
                  frozenset(ts["id"][ts["var_amp"] > 0].astype(int).tolist()),
                  tuple(sorted(ts["id"].astype(int).tolist())))
