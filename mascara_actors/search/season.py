"""A simulated observing season through the calibration, for the transit search's
injection-recovery (issue 19).

A season is more nights than one calibration takes: MASCARA calibrates baselines of about
15 nights. :func:`simulate_season` simulates the nights with the light-curve simulator
(:mod:`mascara_actors.lcsim`), merges each run of ``baseline_nights`` consecutive nights
into a baseline and calibrates each baseline on its own, as the station does; the search
then reads the calibrated files in time order. :func:`draw_injections` draws the transits
to inject, and :func:`plan_season` tells which stars a season will simulate before it is
simulated (the injections need their HIP numbers).

Layout of ``outdir`` (nothing is removed: the intermediate files help when a test fails;
:func:`remove_intermediate` removes the nightly files and baselines, several GB, once the
calibrated files are all that is needed)::

    nights/                                   the simulator's output (new directory)
        {night}{SITE}{CAM}/lightcurves/fast_{night}{SITE}{CAM}.hdf5
        truth_{SITE}{CAM}.fits                what was injected (Season.truth)
    baselines/baseline_{first}_{last}.hdf5    one per run of nights (first and last night)
    calibrated/{first}_{last}/                the calibration of that baseline:
        calibrated_baseline_{first}_{last}.hdf5   (Season.calibrated)
        maps_baseline_{first}_{last}.hdf5, report_baseline_{first}_{last}.json, plots/

The nightly files and baselines are written uncompressed: a season is test data, written
once and read a few times, and gzip would cost more time than the disk it saves.

Cost, on two cores (60 nights of LPC from 2026-01-08, 400 stars of dec 29-31, one set of
50 in two: 2 minutes, 4.5 GB): most of it does not depend on the stars. The simulator's
planning takes 0.45 s a night on one core (the night windows, from the Sun's altitude:
27 s), the simulation about 1.2 s of CPU a night besides the stars (the sets written and
combined as the pipeline does), a calibration 8-15 s; 150 more stars cost about 10 s.
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
from concurrent.futures import ProcessPoolExecutor, as_completed
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
    "remove_intermediate",
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
        compression=None)
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


def _calibrate_all(baselines: list[Path], outdirs: list[Path], settings: DecorrelationSettings,
                   workers: int, progress: SeasonProgress | None) -> list[Path]:
    """Calibrate the baselines, ``workers`` at a time with one process each.

    One calibration splits its sky patches between its workers by HEALPix rings, and a
    narrow dec band (test seasons) has most of its stars in one ring: two workers on one
    baseline leave a core idle, two baselines at a time keep both busy.
    """
    if workers == 1 or len(baselines) == 1:
        out = []
        for k, (base, outdir) in enumerate(zip(baselines, outdirs, strict=True)):
            out.append(_calibrate(base, outdir, settings))
            if progress is not None:
                progress("calibrate", k + 1, len(baselines))
        return out
    one = dataclasses.replace(settings, workers=1)
    done: dict[int, Path] = {}
    with ProcessPoolExecutor(min(workers, len(baselines)),
                             mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_calibrate, base, outdir, one): k
                   for k, (base, outdir) in enumerate(zip(baselines, outdirs, strict=True))}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            if progress is not None:
                progress("calibrate", len(done), len(baselines))
    return [done[k] for k in range(len(baselines))]


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
        Processes simulating the nights, then calibrating the baselines (``workers``
        baselines at a time, each in one process).
    settings
        Calibration settings (default :class:`DecorrelationSettings`); their ``workers``
        count only when the baselines are calibrated one after the other (``workers=1``
        or a single baseline).
    progress
        Called with (stage, done, total) as the work advances (:data:`SeasonProgress`).

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

    report = simulate_lightcurves(outdir / "nights", sim, workers=workers,
                                  progress=simulated_sets)
    files = sorted(report.nightly_files)
    runs = baseline_runs(nights, baseline_nights)
    # the night directories are named {YYYYMMDD}{SITE}{CAM}
    spans = [f"{files[r.start].parent.parent.name[:8]}_{files[r.stop - 1].parent.parent.name[:8]}"
             for r in runs]
    (outdir / "baselines").mkdir()
    baselines = []
    for k, (run, span) in enumerate(zip(runs, spans, strict=True)):
        base = build_baseline(files[run.start:run.stop],
                              outdir / "baselines" / f"baseline_{span}.hdf5",
                              compression=None, threads=workers)
        baselines.append(base.output)
        if progress is not None:
            progress("baseline", k + 1, len(runs))
    calibrated = _calibrate_all(baselines, [outdir / "calibrated" / span for span in spans],
                                settings or DecorrelationSettings(workers=workers), workers,
                                progress)
    truth = read_truth(report.truth_file)
    injected = tuple(TransitSpec(hip=int(r["id"]), period_d=float(r["period"]),
                                 epoch_jd=float(r["epoch"]), depth=float(r["depth"]),
                                 duration_h=float(r["duration"])) for r in truth.transits)
    ts = truth.stars
    return Season(tuple(calibrated), report.truth_file, injected,
                  frozenset(ts["id"][ts["var_amp"] > 0].astype(int).tolist()),
                  tuple(sorted(ts["id"].astype(int).tolist())))


def remove_intermediate(outdir: Path) -> None:
    """Delete a season's nightly files and baselines (the truth file and the calibrated
    files stay)."""
    nights = Path(outdir) / "nights"
    if nights.is_dir():
        for night in nights.iterdir():
            if night.is_dir():
                shutil.rmtree(night)
    shutil.rmtree(Path(outdir) / "baselines", ignore_errors=True)
