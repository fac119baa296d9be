"""A calibration killed (SIGKILL) leaves its scratch copy in --out; the next run into that
directory removes it, says so, and leaves the scratch of a running calibration, of another
host, and one that names no owner."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mascara_actors.decorrelation import NotConverged, calibrate_baseline
from mascara_actors.storage.baseline import BaselineReport

from .conftest import quick_settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]

# killed by SIGKILL once its scratch copy is written (at the first iteration)
CHILD = r"""
import os, signal, sys
from tests.mascara_actors.decorrelation.conftest import quick_settings
from mascara_actors.decorrelation import calibrate_baseline

def progress(stage, done, total, note):
    if note.startswith("iteration 1"):
        os.kill(os.getpid(), signal.SIGKILL)

calibrate_baseline(sys.argv[1], sys.argv[2], quick_settings(), progress=progress)
"""


def test_the_scratch_of_a_killed_run_is_removed_by_the_next(
        small_baseline: BaselineReport, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen([sys.executable, "-c", CHILD, str(small_baseline.output), str(out)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, stderr[-2000:]
    (killed,) = out.glob(".calibrate-*")
    assert (killed / "owner.pid").read_text() == f"{proc.pid} {socket.gethostname()}\n"
    assert len(list(killed.glob("patch_*.npz"))) > 10

    host = socket.gethostname()
    running = out / ".calibrate-running"  # this process: alive
    running.mkdir()
    (running / "owner.pid").write_text(f"{os.getpid()} {host}\n")
    elsewhere = out / ".calibrate-elsewhere"  # a pid that is not running here, another host
    elsewhere.mkdir()
    (elsewhere / "owner.pid").write_text(f"{proc.pid} not-{host}\n")
    unowned = out / ".calibrate-unowned"
    unowned.mkdir()

    with caplog.at_level(logging.INFO, logger="mascara_actors.decorrelation"), \
            pytest.raises(NotConverged):
        calibrate_baseline(small_baseline.output, out,
                           quick_settings(max_iter=1, min_iter=1, tol=1e-12))
    assert not killed.exists()
    assert sorted(p.name for p in out.glob(".calibrate-*")) == [
        ".calibrate-elsewhere", ".calibrate-running", ".calibrate-unowned"]
    messages = [r.getMessage() for r in caplog.records]
    assert (f"removed {killed}: the scratch directory of calibration process {proc.pid}, "
            "which ended without removing it (killed?)") in messages
    assert (f"left {unowned}: a calibration scratch directory that names no owner; delete it "
            f"if no calibration is running into {out}") in messages
    assert not any(str(running) in m or str(elsewhere) in m for m in messages)
