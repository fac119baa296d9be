"""`mascara-actors live` on the simulated camera device: stopped by Ctrl-C, and a camera
that dies. (A whole night of `live`, darks to dawn, is what each camera process of the
station test does: ``tests/app/test_station_service.py``.)

The runs use the short-night configuration of :mod:`tests.stations`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mascara_actors.storage import NightFile, list_set_files
from tests.app.test_station_recovery import CAMERA_TIMEOUT_S, quick_night_config
from tests.stations import raw_frames, short_night_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return short_night_config(tmp_path_factory.mktemp("config"))



def test_sigint_stops_the_night_for_a_restart(tmp_path: Path, config_dir: Path) -> None:
    """Ctrl-C mid-night: the frames in flight are reduced, complete sets saved, exit 130
    with a message that says how to go on; no nightly file, no dawn sequence."""
    out = tmp_path / "out"
    script = Path(sys.executable).parent / "mascara-actors"
    cmd = [str(script), "--config", str(config_dir), "live", "--speed", "25", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    night = out / "20260320LPC"
    try:
        deadline = time.monotonic() + 120
        while not list_set_files(night, "fast") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list_set_files(night, "fast"), "no set was saved within 120 s"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "stopped: run the same command again to resume the night" in err
    assert "Traceback" not in err
    raw = raw_frames(night)
    assert not raw["bias"]  # no dawn sequence
    assert not (night / "lightcurves" / "fast_20260320LPC.hdf5").exists()
    for setidx, path in list_set_files(night, "fast").items():
        assert path.stat().st_size > 0
        assert setidx * 50 <= raw["science"][-1]



def _device_pid(parent: int) -> int | None:
    """Process id of the simulated camera device started by process ``parent``, if any."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"hw.sim.device" in cmdline:
            return int(entry.name)
    return None


def test_a_dead_camera_ends_the_night_with_what_was_measured(tmp_path: Path) -> None:
    """The simulated camera's process killed (SIGKILL) mid-night: once it has been silent
    for ``[night] camera_timeout_s`` (60 s of its clock, 3 s of real time at 20 x) the night
    ends with the frames received, all reduced into the nightly file and summarised, an
    error event names the camera and since when, no dawn sequence is tried, and ``live``
    exits 1 with one line saying so."""
    config_dir = quick_night_config(tmp_path)
    out = tmp_path / "out"
    script = Path(sys.executable).parent / "mascara-actors"
    cmd = [str(script), "--config", str(config_dir), "live", "--speed", "20", "--frames", "60",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    night = out / "20260320LPC"
    try:
        deadline = time.monotonic() + 120
        while len(raw_frames(night)["science"]) < 10:
            assert time.monotonic() < deadline, "fewer than 10 science frames within 120 s"
            time.sleep(0.1)
        device = _device_pid(proc.pid)
        assert device is not None
        os.kill(device, signal.SIGKILL)
        killed = time.time()
        _, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1
    assert lines[0].startswith("error: the night ended early: camera LPC lost: nothing from it")
    events = [json.loads(e) for e in (night / "logs" / "events.jsonl").read_text().splitlines()]
    lost = [e for e in events if e["kind"] == "ActorFailed"]
    assert [e["source"] for e in lost] == ["camera"]
    message = lost[0]["message"]
    assert f"camera_timeout_s = {CAMERA_TIMEOUT_S:g} s of camera time" in message
    assert "Check the camera's power and its serial port" in message
    # given up once silent for the timeout (3 s of real time), give or take one poll
    timeout_s = CAMERA_TIMEOUT_S / 20
    assert killed + timeout_s - 0.5 < lost[0]["time"] < killed + timeout_s + 2.0
    since = re.search(r"since (\S+ \S+) UTC", message)
    assert since is not None
    last_heard = datetime.fromisoformat(since[1]).replace(tzinfo=UTC).timestamp()
    assert killed - 2.0 < last_heard <= killed
    # every frame received before the kill is in the nightly file, and nothing else
    raw = raw_frames(night)
    science = raw["science"]
    assert 10 <= len(science) < 60
    with NightFile(night / "lightcurves" / "fast_20260320LPC.hdf5") as nf:
        assert nf.station["lstseq"].tolist() == science
    assert not raw["bias"]  # no dawn sequence on a dead camera
    assert list((night / "summary").glob("summary_*.html"))
