"""The station service (issue 16), end to end: a real station of five simulated cameras.

One short night of ``mascara-actors station`` (five camera processes, each with its simulated
camera device, on a terminal of its own: a pty) is shared by the tests of this module. While
it runs, the scenario

1. kills one camera's pipeline with SIGKILL early in its science, closes the station's
   terminal (SIGHUP) and starts a second station on the same output directory;
2. attaches a console (Textual Pilot, through the control socket only) beside a plain
   client, pauses and resumes a camera and takes darks on it from the keyboard;
3. attaches a second console, reads the panels, opens a camera's detailed view and
   detaches (``q``): the station goes on;
4. feeds the socket arbitrary byte streams (hypothesis), each on a connection of its own;

then waits for the night to end. The killed camera's nightly files are compared, byte for
byte, with an uninterrupted reduction of the same exposures (a ``--replay`` of its raw
archive: a camera's exposures cannot be taken twice).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mascara_actors.calibration import read_dark_table
from mascara_actors.config import load_config
from mascara_actors.control import ControlClient, EventNotice
from mascara_actors.rawframe import read_raw
from mascara_actors.storage import NightFile
from tests.app.test_station_recovery import N_QUICK, quick_night_config
from tests.app.test_supervisor import ENV
from tests.stations import raw_frames
from tests.terminal import Terminal, on_a_terminal
from tui.screens.station import CameraScreen, StationScreen
from tui.station_app import StationConsole
from tui.station_link import StationLink
from tui.widgets.camera_panel import CameraPanel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CAMERAS = ("LPN", "LPE", "LPS", "LPW", "LPC")
FRAMES = 40
SPEED = 5
NIGHT = "20260320"
KILLED = "LPN"
PAUSED = "LPE"


@dataclass
class Night:
    """What the station did, and what was seen of it."""

    out: Path
    config_dir: Path
    code: int = -1
    log: str = ""
    events: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    panels: dict[str, str] = field(default_factory=dict)
    """The first console's panel text of each camera."""
    detail: str = ""
    """The first console's detailed view: the camera it showed."""
    running_after_detach: dict[str, str] = field(default_factory=dict)
    frames_after_detach: tuple[int, int] = (0, 0)
    said: list[str] = field(default_factory=list)
    """What the station answered the second console."""
    paused_seen_by_other: bool = False
    fuzzed: int = 0
    status_after_fuzz: dict[str, Any] = field(default_factory=dict)
    killed_pid: int = 0
    ignores_hup: bool = False
    console_hung_up: tuple[int | None, float] = (None, 0.0)
    """A console on a terminal that closed: its exit code and the seconds it took."""
    second: subprocess.CompletedProcess[str] | None = None
    marks: dict[str, float] = field(default_factory=dict)
    """Seconds from the station's start to each step of the scenario (for a failure's
    message: was the night long enough?)."""


def _text(widget: Any) -> str:
    rendered = widget.render()
    return str(getattr(rendered, "plain", rendered))


def _fuzz(socket_path: Path, night: Night) -> None:
    """Arbitrary bytes on fresh connections; the station must answer ``status`` after."""

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(
        st.binary(max_size=4096),
        st.lists(st.binary(max_size=300), max_size=8).map(lambda parts: b"\n".join(parts)),
        st.text(max_size=2000).map(str.encode),
        st.builds(lambda n: b"{" * n, st.integers(0, 70_000)),  # over 64 KiB on one line
    ))
    def one_stream(data: bytes) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(socket_path))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):  # everything it answers, until it closes
                    pass
        night.fuzzed += 1

    one_stream()


def _console_on_a_closing_terminal(out: Path, config_dir: Path) -> tuple[int | None, float]:
    """Start ``mascara-actors console`` on a pty, let it draw, close the terminal; its exit
    code (None when it still runs 10 s later) and the seconds it took."""
    cmd = [sys.executable, "-m", "mascara_actors.cli", "--config", str(config_dir), "console",
           "--out", str(out)]
    with on_a_terminal(cmd, {**ENV, "TERM": "xterm-256color"}) as terminal:
        drawn = terminal.read_until(lambda seen: b"science" in seen, 60)
        assert b"science" in drawn, drawn[-2000:]  # its panels show the cameras observing
        terminal.hang_up()
        t0 = time.monotonic()
        try:
            code: int | None = terminal.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        return code, round(time.monotonic() - t0, 1)


async def _scenario(night: Night, terminal: Terminal, cmd: list[str],
                    config_dir: Path) -> None:
    proc = terminal.proc
    sock = night.out / "state" / "station" / "control.sock"
    t0 = time.monotonic()

    def mark(step: str) -> None:
        night.marks[step] = round(time.monotonic() - t0, 1)

    with anyio.fail_after(120):
        while not sock.exists():
            assert proc.poll() is None, "the station ended before its socket was made"
            await anyio.sleep(0.1)
    config = await anyio.to_thread.run_sync(load_config, config_dir)
    configs = {c: config.camera(c) for c in CAMERAS}

    def console() -> StationConsole:
        return StationConsole(StationLink(sock, configs, poll_s=0.25), refresh_hz=4.0)

    async with ControlClient(sock) as client, anyio.create_task_group() as tg:

        async def listen() -> None:
            async for item in client.events():
                if isinstance(item, EventNotice):
                    night.events.append((item.camera, dict(item.event)))

        async def status(camera: str) -> dict[str, Any]:
            described: dict[str, Any] = (await client.send("status", camera=camera)).unwrap()
            return described

        tg.start_soon(listen)

        # 1. kill -9 of one camera's pipeline early in its science, the terminal closed,
        # a second station
        with anyio.fail_after(60):
            while (await status(KILLED))["frames_reduced"] < 1:
                await anyio.sleep(0.1)
        night.killed_pid = (await status(KILLED))["process"]["pid"]
        sig_ign = re.search(r"SigIgn:\s*([0-9a-f]+)", Path(f"/proc/{proc.pid}/status").read_text())
        assert sig_ign is not None
        night.ignores_hup = bool(int(sig_ign[1], 16) & (1 << (signal.SIGHUP - 1)))
        os.kill(night.killed_pid, signal.SIGKILL)
        mark("killed")
        terminal.hang_up()
        os.kill(proc.pid, signal.SIGHUP)
        night.second = await anyio.to_thread.run_sync(
            partial(subprocess.run, cmd, capture_output=True, text=True, timeout=60, env=ENV)
        )

        # 2. a console: pause, resume and take darks on one camera (first: the operator's darks
        # must come while that camera's science goes on)
        second = console()
        async with second.run_test(size=(120, 40)) as pilot:
            with anyio.fail_after(30):
                while len(second.link.cameras) < 5:
                    await pilot.pause(0.1)
            await pilot.pause(0.3)
            await pilot.press("tab")  # LPN has the focus first; LPE is next
            assert second.selected() == PAUSED
            await pilot.press("p")
            with anyio.fail_after(30):
                while not (await status(PAUSED))["paused"]:
                    await pilot.pause(0.1)
            night.paused_seen_by_other = True
            await pilot.pause(1.0)
            await pilot.press("p")
            with anyio.fail_after(30):
                while (await status(PAUSED))["paused"]:
                    await pilot.pause(0.1)
            with anyio.fail_after(60):  # darks are taken between science frames
                while (await status(PAUSED))["phase"] != "science":
                    await pilot.pause(0.1)
            await pilot.press("d")
            with anyio.fail_after(120):
                while len(second.said) < 3:
                    await pilot.pause(0.2)
            night.said = list(second.said)
            mark("darks taken")
            await pilot.press("q")

        # 3. another console attaches: the other cameras in science, the killed one restarted;
        # a detailed view; q detaches
        first = console()
        async with first.run_test(size=(200, 50)) as pilot:
            cams = first.link.cameras

            def ready() -> bool:
                if any(c not in cams for c in CAMERAS):
                    return False
                others = all(cams[c].phase == "science" and cams[c].count("frames_reduced") >= 2
                             for c in CAMERAS if c != KILLED)
                killed = cams[KILLED]
                restarted = bool((killed.status.get("process") or {}).get("restarts"))
                return others and restarted and killed.phase.startswith(
                    ("science", "waiting for the resume slot"))

            with anyio.fail_after(180):
                while not ready():
                    await pilot.pause(0.2)
            mark("the others in science")
            await pilot.pause(0.5)
            for panel in first.screen.query(CameraPanel):
                night.panels[panel.camera_id] = _text(panel.query_one(".camera-text"))
            await pilot.press("tab", "tab", "enter")
            assert isinstance(first.screen, CameraScreen)
            await pilot.pause(0.5)
            night.detail = _text(first.screen.query_one("#status"))
            await pilot.press("escape")
            assert isinstance(first.screen, StationScreen)
            await pilot.press("q")
        night.running_after_detach = {
            c: (await status(c))["process"]["state"] for c in CAMERAS
        }
        before = after = (await status("LPW"))["frames_reduced"]
        with anyio.move_on_after(30):
            while after == before:
                await anyio.sleep(0.2)
                after = (await status("LPW"))["frames_reduced"]
        night.frames_after_detach = (before, after)

        mark("detached")
        # 4. arbitrary bytes on the socket while the cameras observe
        await anyio.to_thread.run_sync(_fuzz, sock, night)
        night.status_after_fuzz = (await client.send("status")).unwrap()
        mark("fuzzed")
        # 5. a console on a terminal of its own, which then closes (a dropped ssh session)
        night.console_hung_up = await anyio.to_thread.run_sync(
            _console_on_a_closing_terminal, night.out, config_dir)
        mark("console hung up")

    # the listener ends when the station closes the socket


@pytest.fixture(scope="module")
def station_night(tmp_path_factory: pytest.TempPathFactory) -> Night:
    tmp = tmp_path_factory.mktemp("station")
    config_dir = quick_night_config(tmp)
    reduction = config_dir / "reduction.toml"
    text = reduction.read_text()
    # a camera kept waiting by a busy machine is not given up for lost
    text = re.sub(r"(?m)^camera_timeout_s\s*=\s*[0-9.]+", "camera_timeout_s = 600.0", text)
    # a short night: its stars enter the nightly file with 20 points
    text = re.sub(r"(?m)^minobs\s*=\s*[0-9]+", "minobs = 20", text)
    reduction.write_text(text)
    night = Night(out=tmp / "out", config_dir=config_dir)
    cmd = [sys.executable, "-m", "mascara_actors.cli", "--config", str(config_dir), "station",
           "--frames", str(FRAMES), "--speed", str(SPEED), "--out", str(night.out)]
    with on_a_terminal(cmd, ENV) as terminal:
        anyio.run(_scenario, night, terminal, cmd, config_dir, backend="asyncio")
        night.code = terminal.proc.wait(timeout=300)
    night.log = (night.out / "state" / "station" / "station.log").read_text()
    return night


def test_consoles_attach_detach_and_command_the_station(station_night: Night) -> None:
    night = station_night
    assert night.code == 0, night.log
    assert sorted(night.panels) == sorted(CAMERAS)
    for camera, text in night.panels.items():
        lines = text.splitlines()
        reduced = int(re.search(r"frames (\d+)/", text).group(1))  # type: ignore[union-attr]
        if camera == KILLED:
            # restarted: in science again, or (on a busy machine) still waiting for the next
            # slot; either way its count carries the frame it reduced before the kill
            assert lines[0] == "science" or lines[0].startswith(
                "waiting for the resume slot: science from lstseq"), text
            assert reduced >= 1, text
        else:
            assert lines[0] == "science", text
            assert reduced >= 2, text
        assert re.search(r"stars \d+ \(\d+ flagged\)", text), text
    assert night.panels[KILLED].splitlines()[-1] == "restarts 1", night.panels[KILLED]
    assert night.detail.startswith("LaPalma LPS  night 20260320"), night.detail
    # detached: the station went on
    others = {c: s for c, s in night.running_after_detach.items() if c != KILLED}
    assert set(others.values()) == {"running"}, night.running_after_detach
    assert night.running_after_detach[KILLED] in ("starting", "running")
    assert night.frames_after_detach[1] > night.frames_after_detach[0]
    # the second console's commands, and their events
    assert night.said[:2] == [
        f"{PAUSED}: paused: the camera goes on, its frames wait on disk",
        f"{PAUSED}: resumed",
    ], night.said
    assert night.said[2].startswith(f"{PAUSED}: took {N_QUICK} darks"), (night.said, night.marks)
    kinds = [e["kind"] for c, e in night.events if c == PAUSED]
    assert kinds.index("ReductionPaused") < kinds.index("ReductionResumed")
    darks = raw_frames(night.out / f"{NIGHT}{PAUSED}")
    science = darks["science"]
    operator = [d for d in darks["dark"] if science[0] < d < science[-1]]
    assert len(operator) == N_QUICK
    # every command was logged with its client
    assert re.search(rf"control: pause {PAUSED} \(id \d+\) from client #\d+ \(pid \d+ uid "
                     rf"{os.getuid()}\)", night.log), night.log


def test_arbitrary_bytes_on_the_socket_cost_no_frame(station_night: Night) -> None:
    night = station_night
    assert night.fuzzed >= 40
    assert sorted(night.status_after_fuzz["cameras"]) == sorted(CAMERAS)
    assert night.code == 0, night.log
    for camera in CAMERAS:
        night_dir = night.out / f"{NIGHT}{camera}"
        kinds = raw_frames(night_dir)
        science = kinds["science"]
        assert len(science) == FRAMES, camera
        # every slot from the first science frame to the last holds a frame, but the (up to
        # three) slots each side of the operator's darks in which the camera is re-armed
        operator = [d for d in kinds["dark"] if science[0] < d < science[-1]]
        rearming = set()
        if operator:
            rearming = {*range(operator[0] - 3, operator[0]),
                        *range(operator[-1] + 1, operator[-1] + 4)}
        empty = set(range(science[0], science[-1] + 1)) - set(science) - set(operator)
        assert empty <= rearming, (camera, sorted(empty))
        assert "gave no frame" not in (night.out / "state" / "station" / f"{camera}.log"
                                       ).read_text(), camera
        logged = [json.loads(line)
                  for line in (night_dir / "logs" / "events.jsonl").read_text().splitlines()]
        assert not [e for e in logged if e["kind"] == "FrameFailed"], camera
        reduced = {e["lstseq"] for e in logged if e["kind"] == "FrameReducedEvent"}
        assert reduced == set(science), camera
    assert "Traceback" not in night.log


def test_a_killed_pipeline_resumes_to_the_same_files(
    station_night: Night, tmp_path: Path
) -> None:
    night = station_night
    assert night.code == 0, night.log
    done = f"done, exit status 0: the night is done; {FRAMES} frames reduced, 0 failed"
    assert f"station: {KILLED}: {done}, 1 restarts;" in night.log, night.log
    for other in CAMERAS:
        if other != KILLED:
            assert night.log.count(f"camera {other}: pipeline started") == 1
    assert f"camera {KILLED}'s pipeline (pid {night.killed_pid}) killed by SIGKILL" in night.log
    night_dir = night.out / f"{NIGHT}{KILLED}"
    # an uninterrupted reduction of the same exposures
    ref = tmp_path / "ref"
    replay = subprocess.run(
        [sys.executable, "-m", "mascara_actors.cli", "--config", str(night.config_dir), "--replay",
         str(night_dir / "raw"), "--out", str(ref)],
        capture_output=True, text=True, timeout=300, env=ENV,
    )
    assert replay.returncode == 0, replay.stderr
    ref_dir = ref / f"{NIGHT}{KILLED}"
    for kind in ("fast", "slow"):
        name = f"lightcurves/{kind}_{NIGHT}{KILLED}.hdf5"
        assert (night_dir / name).read_bytes() == (ref_dir / name).read_bytes(), name
    binned = sorted(p.name for p in (night_dir / "binned").glob("bin_*.fits*"))
    assert binned
    for name in binned:
        assert (night_dir / "binned" / name).read_bytes() == \
            (ref_dir / "binned" / name).read_bytes(), name


def test_a_console_whose_terminal_closes_leaves_and_the_station_goes_on(
        station_night: Night) -> None:
    # Textual alone spun on the closed terminal at most of a core until killed
    code, seconds = station_night.console_hung_up
    assert code == 128 + signal.SIGHUP, station_night.console_hung_up
    assert seconds < 10
    assert station_night.code == 0, station_night.log


def test_the_station_outlives_its_terminal_and_refuses_a_twin(station_night: Night) -> None:
    night = station_night
    assert night.ignores_hup
    assert night.code == 0, night.log
    assert "every camera's night is over" in night.log
    second = night.second
    assert second is not None
    assert second.returncode == 2
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mascara-actors: another station runs on {night.out} (process ")
    assert "Traceback" not in second.stderr


def test_each_camera_runs_its_night_from_darks_to_dawn(station_night: Night) -> None:
    """What ``live`` does for one camera, each camera process did: darks first (no master dark
    yet), the science, the dawn sequence, the nightly files and the summary; then the
    station's summary over the five."""
    night = station_night
    assert night.code == 0, night.log
    for camera in CAMERAS:
        night_dir = night.out / f"{NIGHT}{camera}"
        raw = raw_frames(night_dir)
        science = raw["science"]
        dusk, dawn = raw["dark"][:N_QUICK], raw["dark"][-N_QUICK:]
        assert dusk[-1] < science[0] < science[-1] < raw["bias"][0] < dawn[0], camera
        assert len(raw["bias"]) == len(raw["flat"]) == N_QUICK
        header = read_raw(night_dir / "raw" / f"{science[0]:08d}{camera[-1]}.fits").header
        assert (header.camera, header.site, header.xsize, header.ysize) == (
            camera[-1], "LaPalma", 512, 384)
        with NightFile(night_dir / "lightcurves" / f"fast_{NIGHT}{camera}.hdf5") as nf:
            assert np.array_equal(nf.station["lstseq"], science), camera
            assert len(nf.ids()) > 20
        assert (night_dir / "lightcurves" / f"slow_{NIGHT}{camera}.hdf5").is_file()
        assert list((night_dir / "binned").glob("bin_*.fits*"))
        # the dawn's master dark tops the table, the dusk's (or the operator's) below it
        table = [Path(p).name for p in read_dark_table(camera, night.out / "state")]
        assert table[0] == f"{dawn[0]:08d}{camera[-1]}masterdark.fits", camera
        assert table[-1] == f"{dusk[0]:08d}{camera[-1]}masterdark.fits", camera
        said = (night.out / "state" / "station" / f"{camera}.log").read_text()
        # (the report of the process that finished the night: the killed one's took the darks)
        assert camera == KILLED or f"start calibration: {N_QUICK} dark frames -> dark" in said
        assert (f"dawn calibration: {N_QUICK} bias, {N_QUICK} dark, {N_QUICK} flat frames -> "
                "bias, dark, flat") in said, camera
        assert list((night_dir / "summary").glob("summary_*.html")), camera
    report = (night.out / f"{NIGHT}LP-station" / f"summary_{NIGHT}LP.html").read_text()
    for camera in CAMERAS:
        assert f'id="{camera}-frames_reduced">{FRAMES}<' in report, camera
