"""Replay of a full-size simulated night segment through ``mascara-actors --replay``.

A segment of LPC's night of 2026-03-20 (from astronomical dusk; KAI-11002, 4072 x 2720
readout, 10 darks, seed 6) is recorded into a temporary directory first (1-2 s per frame,
not timed). Then the command runs as a child process, exactly as an observer would run it;
only that is timed. Its peak RSS (the command or its worker process, whichever is larger) is
read with ``getrusage(RUSAGE_CHILDREN)``; the summed RSS of the command and its worker is
sampled from /proc as well. ``BENCH_REPLAY_FRAMES`` sets the number of science frames
(default 500) to check the benchmark quickly.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._core import bench, figure, tree_rss_mb
from hw.sim.night_start import choose_start_lstseq
from hw.sim.recording import record_night
from hw.sim.sky import SimulationSettings
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.sidereal import slot_length_solar_s

_CAMERA = "LPC"
_NIGHT = "2026-03-20"
_DEFAULT_FRAMES = 500
_SAMPLE_S = 0.5


def _summary(stderr: str) -> list[str]:
    """The final report of the replay (the lines after the progress bar)."""
    keys = ("frames:", "stars:", "sets written:", "wall time:", "nightly file:", "error:")
    return [line for line in stderr.splitlines() if line.startswith(keys)]


@bench("replay_x_realtime")
def run():
    """Figure: replay_x_realtime (x) - frames x 6.38 s divided by the wall time of
    ``mascara-actors --replay`` on a full-size night segment (>= 500 frames; start-up,
    master dark, worker start, reduction, per-set files and nightly combine included);
    figure: replay_peak_rss_mb (MB) - its peak RSS (bar 1500, flat in the number of frames).
    """
    nframes = int(os.environ.get("BENCH_REPLAY_FRAMES", _DEFAULT_FRAMES))
    config = load_config()
    camera = config.camera(_CAMERA)
    start = choose_start_lstseq(camera, _NIGHT, sun_alt_deg=-18.0)
    script = Path(sys.executable).parent / "mascara-actors"
    with tempfile.TemporaryDirectory(prefix="bench_replay_") as tmp:
        night = Path(tmp) / "night"
        out = Path(tmp) / "out"
        t0 = time.perf_counter()
        info = record_night(
            night,
            camera,
            Catalogue.load(),
            start_lstseq=start,
            n_science=nframes,
            n_bias=0,
            n_dark=10,
            settings=SimulationSettings(seed=6),
        )
        record_s = time.perf_counter() - t0
        night_mb = sum(p.stat().st_size for p in night.iterdir()) / 2**20

        log_path = Path(tmp) / "replay.log"
        before_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        sampled_mb = 0.0
        t0 = time.perf_counter()
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [str(script), "--replay", str(night), "--out", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            while proc.poll() is None:
                sampled_mb = max(sampled_mb, tree_rss_mb(proc.pid))
                time.sleep(_SAMPLE_S)
        wall_s = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        stderr = log_path.read_text()
        summary = _summary(stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"the replay failed (exit {proc.returncode}):\n{stderr[-3000:]}")
        print("replay summary:\n  " + "\n  ".join(summary), file=sys.stderr, flush=True)
        nightly_mb = sum(p.stat().st_size for p in out.glob("*/lightcurves/*.hdf5")) / 2**20

    context = {
        "frames": nframes,
        "camera": _CAMERA,
        "sensor": camera.sensor.name,
        "first_lstseq": info.start_lstseq,
        "wall_s": round(wall_s, 1),
        "record_s": round(record_s, 1),
        "night_mb": round(night_mb, 1),
        "nightly_mb": round(nightly_mb, 1),
        "summary": next((line for line in summary if line.startswith("wall time:")), ""),
    }
    yield figure(
        "replay_x_realtime",
        round(nframes * slot_length_solar_s() / wall_s, 2),
        "x",
        **context,
    )
    yield figure(
        "replay_peak_rss_mb",
        round(peak_mb, 1),
        "MB",
        bar=1500,
        sampled_sum_peak_mb=round(sampled_mb, 1),
        earlier_children_mb=round(before_mb, 1),
        **context,
    )
