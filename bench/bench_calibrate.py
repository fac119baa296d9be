"""Coarse decorrelation of a full-size baseline: 15 nights x 6,000 stars of LPC, full cadence.

The nights are simulated with :mod:`mascara_actors.lcsim` (nightly files as the pipeline
writes them, gzip) and merged with ``build_baseline``; only the calibration is timed, in a
child process (``mascara-actors calibrate``, two workers). Peak RSS is the largest sum, over
the calibration's processes (the command and its workers), of their resident memory,
sampled every 0.2 s; the largest single process (``getrusage``) is given as context.
The truth metrics of the Done-when (maps, noise floor, transits) are computed from the
simulator's truth and given as context.

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
from pathlib import Path

import numpy as np

from bench._core import bench, figure

_REPO = Path(__file__).resolve().parent.parent
NIGHTS = 15
STARS = 6000


def _tree_rss_kb(root: int) -> int:
    """Resident memory of ``root`` and its descendants, kB (from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                text = f.read()
        except OSError:
            continue
        pid = int(entry)
        for line in text.splitlines():
            if line.startswith("PPid:"):
                parents[pid] = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss[pid] = int(line.split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(rss.get(p, 0) for p in tree)


def _prepare(work: Path) -> tuple[Path, Path]:
    from mascara_actors.lcsim import LightCurveSimulation, simulate_lightcurves, truth_file_path
    from mascara_actors.storage.baseline import build_baseline

    nights_dir = work / "nights"
    base = work / "baseline_LPC.hdf5"
    truth = truth_file_path(nights_dir, "LPC")
    if base.exists() and truth.exists():
        return base, truth
    weather = ("clear", "cloudy", "clear", "clear", "clear", "clear", "cloudy", "overcast",
               "clear", "clear", "cloudy", "clear", "clear", "clear", "clear")
    if not truth.exists():
        sim = LightCurveSimulation(camera="LPC", nights=NIGHTS, stars=STARS, seed=2026,
                                   weather=weather, transit_fraction=0.01,
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
    """Done-when figures of the calibration against the truth (as the tests compute them)."""
    from mascara_actors.decorrelation.grids import IntrapixelGrid, TransmissionGrid, wrap_ha
    from mascara_actors.lcsim import read_truth, transit_shape
    from mascara_actors.sidereal import REFERENCE_LONGITUDE_DEG
    from mascara_actors.storage.baseline import BaselineFile
    from mascara_actors.storage.calibrated import CalibratedFile, MapsFile

    truth = read_truth(truth_path)
    stem = base.stem
    with MapsFile(out / f"maps_{stem}.hdf5") as mf:
        tr, ip = mf.group("transmission"), mf.group("intrapix")
    a, b = tr["attrs"], ip["attrs"]
    grid = TransmissionGrid(a["ha_step"], a["dec_step"], a["dec0"], a["ndec"])
    igrid = IntrapixelGrid(b["ha_step"], b["dec_step"], b["dec0"], b["ndec"])
    with BaselineFile(base) as bf:
        stars, lon = bf.stars, float(bf.header["lon"])
        pick = stars[(stars["vmag"] <= 8.4) & (stars["vmag"] > 5.0)]
        ids = np.sort(np.random.default_rng(1).choice(pick["id"], 400, replace=False))
        d, counts = bf.read(ids, ["lstseq", "x", "y", "alt", "pflag", "aflag"])
    sid = np.repeat(ids, counts)
    pos = np.searchsorted(stars["id"], sid)
    ha = wrap_ha(15.0 * ((d["lstseq"] % 13500) + 0.5) * 6.4 / 3600.0 + lon
                 - REFERENCE_LONGITUDE_DEG - stars["ra"][pos])
    dec = stars["dec"][pos]
    fitted = grid.evaluate(tr["values"].reshape(-1), ha, dec)
    ok = (d["pflag"] == 0) & np.isfinite(fitted)
    diff = (fitted - truth.model.transmission_mag(d["x"], d["y"], d["alt"]))[ok]
    _, inv = np.unique(sid[ok], return_inverse=True)
    smean = np.bincount(inv, diff) / np.bincount(inv)
    sdec = np.bincount(inv, dec[ok]) / np.bincount(inv)
    _, binv = np.unique(np.floor(sdec), return_inverse=True)
    bmean = np.bincount(binv, smean) / np.bincount(binv)
    t_rms = float(np.sqrt(np.mean((diff - bmean[binv][inv]) ** 2)))
    amp = ip["amplitudes"].reshape(-1, 4)[igrid.cell(ha, dec)]
    ok2 = (d["pflag"] == 0) & np.all(np.isfinite(amp), axis=1)
    ipx_rms = float(np.sqrt(np.mean((amp - truth.model.intrapixel_amplitudes(
        d["x"], d["y"], 0))[ok2] ** 2)))
    ts = truth.stars
    overcast = truth.nights[truth.nights["weather"] == "overcast"]
    cal_var, floor_var, meas, inj = [], [], [], []
    half = 25 * 6.38253 / 86400.0
    with CalibratedFile(out / f"calibrated_{stem}.hdf5") as cf:
        cids = cf.ids()
        k = truth.star_index(cids)
        for hip, kk in zip(cids.tolist(), k.tolist(), strict=True):
            if kk < 0 or ts["var_amp"][kk] != 0:
                continue
            quiet = ts["transit"][kk] == 0 and 7.0 <= ts["vmag"][kk] < 8.0
            if not quiet and ts["transit"][kk] == 0:
                continue
            lc = cf.lightcurve(hip)
            good = (lc["cflag"] == 0) & (lc["nobs"] >= 45)
            first = lc["setidx"].astype(np.int64) * 50
            for row in overcast:
                good &= ~((first >= row["lstseq0"]) & (first < row["lstseq0"] + row["nexp"]))
            if quiet and good.sum() >= 8:
                _, var = truth.set_noise(hip, lc["setidx"][good].astype(np.int64), 0)
                mag = lc["mag"][good].astype(float)
                cal_var.append(np.var(mag, ddof=1))
                floor_var.append(np.mean(var / lc["nobs"][good]))
            elif not quiet:
                row = truth.transits[truth.transits["id"] == hip][0]
                args = (row["period"], row["epoch"], row["duration"])
                jd = lc["jd"]
                bottom = good & (np.minimum(transit_shape(jd - half, *args),
                                            transit_shape(jd + half, *args)) >= 1)
                outside = good & (transit_shape(jd, row["period"], row["epoch"],
                                                row["duration"] + 1) == 0)
                if bottom.any() and outside.sum() >= 5:
                    depth = lc["mag"][bottom].mean() - np.median(lc["mag"][outside])
                    meas += [depth] * int(bottom.sum())
                    inj += [-2.5 * np.log10(1 - row["depth"])] * int(bottom.sum())
    return {
        "transmission_rms_mmag": round(t_rms * 1e3, 3),
        "intrapixel_rms_mmag": round(ipx_rms * 1e3, 3),
        "noise_floor_ratio_v7_8": round(float(np.sqrt(np.mean(cal_var) / np.mean(floor_var))),
                                        3) if cal_var else float("nan"),
        "transit_depth_ratio": round(float(np.sum(meas) / np.sum(inj)), 3) if meas else
        float("nan"),
        "transit_bins": len(meas),
    }


@bench("calibrate_baseline_s")
def calibrate_baseline_s():  # type: ignore[no-untyped-def]
    keep = os.environ.get("MASCARA_BENCH_CALIBRATE_DIR")
    tmp = None if keep else tempfile.TemporaryDirectory(prefix="bench-calibrate-")
    work = Path(keep) if keep else Path(tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    try:
        base, truth = _prepare(work)
        out = work / "calibration"
        cmd = [sys.executable, "-c", "import sys; from mascara_actors.cli import main; "
               "sys.exit(main(sys.argv[1:]))", "calibrate", str(base), "--out", str(out),
               "--workers", "2"]
        peak = 0
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=_REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss_kb(proc.pid))
                stop.wait(0.2)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        _, err = proc.communicate()
        elapsed = time.perf_counter() - t0
        stop.set()
        watcher.join()
        if proc.returncode != 0:
            raise RuntimeError(f"calibrate failed ({proc.returncode}): {err[-2000:]}")
        report = json.loads((out / f"report_{base.stem}.json").read_text())
        largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        context = {"nights": NIGHTS, "stars": STARS, "points": report["npoints"],
                   "stars_calibrated": report["nstars"], "iterations": report["iterations"],
                   "converged": report["status"] == "converged", "workers": 2,
                   "largest_process_rss_mb": round(largest, 1)}
        metrics = _metrics(base, out, truth)
        yield figure("calibrate_baseline_s", round(elapsed, 1), "s", bar_s=1800,
                     **context, **metrics)
        yield figure("calibrate_peak_rss_mb", round(peak / 1024.0, 1), "MB", bar_mb=8192,
                     **context)
    finally:
        if tmp is not None:
            tmp.cleanup()
