"""The transit search of a full season: 60 nights x 6,000 LPC stars, full cadence, simulated
and calibrated by runs of 15 nights, with transits of 2, 1 and 0.5 % (periods 1-5 days,
durations 2-4 hours) injected before the calibration into a third of the stars.

``bls_search_s`` times ``search`` over every star (two workers; the simulation and the
calibration are not timed); ``injection_recovery`` gives the recovered fraction per depth
(context: per period bin, Talens et al. 2018, the false candidates per 1,000 stars without
an injected transit) from the same run.

The season takes 51 minutes to simulate and calibrate on two cores (a run of 15 nights at
a time; at most about 30 GB on disk, 1.6 GB left); it is kept in
``MASCARA_BENCH_SEARCH_DIR`` (default ``~/.cache/mascara-actors-bench/search-season-*``)
and reused. Of the 6,000 stars simulated, about 4,950 come out of the calibration (it
leaves out those with fewer than 100 good points in a run, and the saturated ones) and
about 4,100 have the points and nights the search needs; ``stars`` and ``searched`` in the
figure say how many.

``MASCARA_BENCH_SEARCH_BAND=1`` simulates every star of dec 26-34 instead (about 2,200, the
issue's smallest season).
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench._core import Figure, bench, figure

NIGHTS = 60
BAND = os.environ.get("MASCARA_BENCH_SEARCH_BAND") == "1"
"""Every star of dec 26-34 (about 2,200: the issue's smallest season, at the full star
density the calibration needs) instead of 6,000 of the whole field."""
STARS = None if BAND else 6000
DEC = (26.0, 34.0) if BAND else None
SEED = 2027


def _season_dir() -> Path:
    env = os.environ.get("MASCARA_BENCH_SEARCH_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mascara-actors-bench" / \
        ("search-season-band" if BAND else "search-season")


def _prepare(work: Path):  # type: ignore[no-untyped-def]
    """The season (simulated once, then read back from ``work/season.pickle``)."""
    import numpy as np

    from mascara_actors.search.season import draw_injections, plan_season, simulate_season

    done = work / "season.pickle"
    if done.exists():
        return pickle.loads(done.read_bytes())
    plan = plan_season(nights=NIGHTS, stars=STARS, dec_range=DEC, seed=SEED)
    rng = np.random.default_rng(SEED)
    # a third of the stars get a transit, the others count the false candidates
    chosen = rng.choice(plan.stars["hip"], len(plan.stars) // 3, replace=False)
    transits = draw_injections(sorted(chosen.tolist()), start_jd=plan.start_jd, seed=SEED)
    t0 = time.perf_counter()
    last = [""]

    def progress(stage: str, done_: int, total: int) -> None:
        if stage != last[0]:
            print(f"# {stage} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            last[0] = stage

    shutil.rmtree(work / "season", ignore_errors=True)
    season = simulate_season(work / "season", nights=NIGHTS, stars=STARS, dec_range=DEC,
                             transits=transits, seed=SEED, progress=progress)
    print(f"# season simulated and calibrated in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    done.write_bytes(pickle.dumps(season))
    return season


@functools.cache
def _searched():  # type: ignore[no-untyped-def]
    """(season, search report, seconds): made once per process for both figures."""
    from mascara_actors.search.run import search

    work = _season_dir()
    work.mkdir(parents=True, exist_ok=True)
    season = _prepare(work)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = search(season.calibrated, Path(tmp) / "search")
        seconds = time.perf_counter() - t0
    return season, report, seconds


@bench("bls_search_s")
def bench_bls_search() -> Iterator[Figure]:
    _, report, seconds = _searched()
    yield figure("bls_search_s", round(seconds, 1), "s", bar=1800, stars=report.stars,
                 searched=report.searched, nights=NIGHTS,
                 baseline_days=round(report.baseline_days, 1),
                 candidates=len(report.candidates), passed=len(report.passed), workers=2)


@bench("injection_recovery")
def bench_injection_recovery() -> Iterator[Figure]:
    from mascara_actors.search.injection import TALENS_2018, recovery_of

    season, report, _ = _searched()
    rec = recovery_of(season.transits, report, list(season.stars))
    table = rec.table()
    for d in rec.depths:
        bins = {f"{lo:g}-{hi:g} d": f"{k}/{n}" for dd, lo, hi, n, k in table if dd == d}
        yield figure("injection_recovery", round(rec.fraction(d), 3), "fraction", depth=d,
                     talens_2018=TALENS_2018.get(d), injected=sum(
                         1 for t in rec.injected if t.depth == d), per_period_bin=bins,
                     exact_period=round(rec.fraction(d, exact=True), 3),
                     by_an_alias=rec.by_an_alias(d),
                     false_per_1000_stars=round(rec.false_per_1000, 2),
                     null_stars=rec.null_stars)
