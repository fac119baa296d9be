"""Coarse decorrelation of a full-size baseline: 15 nights x 6,000 stars of LPC, full cadence.

The nights are simulated with :mod:`mascara_actors.lcsim` (nightly files as the pipeline
writes them, gzip) and merged with ``build_baseline``; only the calibration is timed, in a
child process (``mascara-actors calibrate``, two workers). Peak RSS is the largest sum, over
the calibration's processes (the command and its workers), of their resident memory,
sampled every 0.2 s; the largest single process (``getrusage``) is given as context.
The Done-when figures (maps, noise floor, transits) are computed against the simulator's
truth by :mod:`mascara_actors.lcsim.scoring`, as the tests do, and given as context.

``MASCARA_BENCH_CALIBRATE_DIR=DIR`` keeps the simulated nights and baseline in DIR (and
reuses them when they are there); by default they go to a temporary directory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench._core import Figure, bench, figure, tree_rss_mb

_REPO = Path(__file__).resolve().parent.parent
NIGHTS = 15
STARS = 6000
WEATHER = ("clear", "cloudy", "clear", "clear", "clear", "clear", "cloudy", "overcast",
           "clear", "clear", "cloudy", "clear", "clear", "clear", "clear")


def _prepare(work: Path) -> tuple[Path, Path]:
    from mascara_actors.lcsim import LightCurveSimulation, simulate_lightcurves, truth_file_path
    from mascara_actors.storage.baseline import build_baseline

    nights_dir = work / "nights"
    base = work / "baseline_LPC.hdf5"
    truth = truth_file_path(nights_dir, "LPC")
    if base.exists() and truth.exists():
        return base, truth
    if not truth.exists():
        sim = LightCurveSimulation(camera="LPC", nights=NIGHTS, stars=STARS, seed=2026,
                                   weather=WEATHER, transit_fraction=0.01,
                                   transit_depth=(0.01, 0.01))
        t0 = time.perf_counter()
        report = simulate_lightcurves(nights_dir, sim)
        print(f"# simulated {report.nrecords} points in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
    files = sorted(nights_dir.glob("*/lightcurves/fast_*.hdf5"))
    t0 = time.perf_counter()
    build_baseline(files, base)
    print(f"# baseline in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return base, truth


def _metrics(base: Path, out: Path, truth_path: Path) -> dict[str, float]:
    """The Done-when figures of the calibration against the truth."""
    from mascara_actors.lcsim import read_truth
    from mascara_actors.lcsim.scoring import map_errors, noise_floor, transit_depth

    truth = read_truth(truth_path)
    maps = map_errors(truth, base, out / f"maps_{base.stem}.hdf5")
    calibrated = out / f"calibrated_{base.stem}.hdf5"
    floor = noise_floor(truth, calibrated, base)
    depth = transit_depth(truth, calibrated)
    return {
        "transmission_rms_mmag": round(maps.transmission_rms * 1e3, 3),
        "intrapixel_rms_mmag": round(max(maps.intrapixel_rms) * 1e3, 3),
        "noise_floor_ratio_v7_8": round(floor.ratio, 3),
        "raw_noise_ratio_v7_8": round(floor.raw_ratio, 2),
        "transit_depth_ratio": round(depth.ratio, 3),
        "transit_bins": depth.nbins,
    }


def _run_sampled(cmd: list[str]) -> tuple[float, float, str, int]:
    """Run ``cmd``: wall seconds, peak summed RSS (MB), stderr and exit code."""
    peak = 0.0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=_REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_mb(proc.pid))
            stop.wait(0.2)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - t0
    stop.set()
    watcher.join()
    return elapsed, peak, err, proc.returncode


@bench("calibrate_baseline_s")
def calibrate_baseline_s() -> Iterator[Figure]:
    keep = os.environ.get("MASCARA_BENCH_CALIBRATE_DIR")
    with tempfile.TemporaryDirectory(prefix="bench-calibrate-") as tmp:
        work = Path(keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        base, truth = _prepare(work)
        out = work / "calibration"
        cmd = [sys.executable, "-c", "import sys; from mascara_actors.cli import main; "
               "sys.exit(main(sys.argv[1:]))", "calibrate", str(base), "--out", str(out),
               "--workers", "2"]
        elapsed, peak, err, code = _run_sampled(cmd)
        if code != 0:
            raise RuntimeError(f"calibrate failed ({code}): {err[-2000:]}")
        report = json.loads((out / f"report_{base.stem}.json").read_text())
        largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        context = {"nights": NIGHTS, "stars": STARS, "points": report["npoints"],
                   "stars_calibrated": report["nstars"], "iterations": report["iterations"],
                   "converged": report["status"] == "converged", "workers": 2,
                   "largest_process_rss_mb": round(largest, 1)}
        yield figure("calibrate_baseline_s", round(elapsed, 1), "s", bar_s=1800,
                     **context, **_metrics(base, out, truth))
        yield figure("calibrate_peak_rss_mb", round(peak, 1), "MB", bar_mb=8192, **context)
