"""``console --replay`` on a terminal that closes: the night stops, saved, and resumes.

The console runs on a real pty; closing its other end makes the kernel hang up the console's
session, as closing a window or losing an ssh session does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from tests.terminal import on_a_terminal

REPO = Path(__file__).resolve().parents[2]
NIGHT = REPO / "replay_data" / "night"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}


def _kinds(events: Path) -> list[dict[str, object]]:
    if not events.exists():
        return []
    # whole lines only: the night may be writing the last one as this reads
    lines = events.read_text().split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def test_a_replay_console_whose_terminal_closes_stops_the_night_and_a_restart_finishes_it(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    night_dir = out / "20260320LPC"
    events = night_dir / "logs" / "events.jsonl"
    cmd = [sys.executable, "-m", "mascara_actors.cli", "console", "--replay", str(NIGHT),
           "--out", str(out), "--speed", "20"]
    with on_a_terminal(cmd, ENV) as terminal:
        def some_frames_reduced(_: bytes) -> bool:
            return sum(e["kind"] == "FrameReducedEvent" for e in _kinds(events)) >= 3

        terminal.read_until(some_frames_reduced, 90)
        assert some_frames_reduced(b""), (night_dir / "logs" / "console.log").read_text()
        # A stop that takes a while (a slow frame, a set being saved): the reducer and
        # binner processes are held while the terminal closes. Textual, resumed by the
        # SIGCONT that comes with the hang-up, used to block the event loop for good then.
        helpers = [int(p) for p in subprocess.run(
            ["pgrep", "-P", str(terminal.proc.pid)], capture_output=True,
            text=True).stdout.split()]
        assert helpers, "the replay runs its reducer and binner in processes of their own"
        for pid in helpers:
            os.kill(pid, signal.SIGSTOP)
        terminal.hang_up()
        time.sleep(5)
        for pid in helpers:
            os.kill(pid, signal.SIGCONT)
        code = terminal.proc.wait(timeout=60)

    log = (night_dir / "logs" / "console.log").read_text()
    assert code == 128 + signal.SIGHUP, log  # not killed by the hang-up: it stopped the night
    assert "the terminal hung up: stopping the night" in log
    assert "the night stopped; run the same command again to go on" in log
    seen = _kinds(events)
    finished = [e for e in seen if e["kind"] == "NightFinished"]
    reduced = sum(e["kind"] == "FrameReducedEvent" for e in seen)
    assert len(finished) == 1, finished
    assert finished[0]["frames_reduced"] == reduced, finished
    assert finished[0]["nightly_files"] == []  # stopped for a restart, not ended
    # the night's lock is free and the restart reduces what is left, to the whole night
    done = subprocess.run([sys.executable, "-m", "mascara_actors.cli", "--replay", str(NIGHT),
                           "--out", str(out)], env=ENV, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    science = sorted(int(p.name[:8]) for p in NIGHT.iterdir()
                     if re.fullmatch(r"\d{8}C\.fits\.fz", p.name))
    with h5py.File(night_dir / "lightcurves" / f"fast_{night_dir.name}.hdf5", "r") as f:
        lstseq = f["station"]["lstseq"][()]
    np.testing.assert_array_equal(lstseq, science)
