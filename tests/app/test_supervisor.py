"""The station supervisor (issue 16): one process per camera, events and commands over the
control socket, restarts with backoff, one station per output directory, deaf to SIGHUP.

The first tests run the supervisor in this process over stand-in camera processes
(``fake_camera.py``: the channel without a camera), so they take a second or two; the last
one stops a real station with SIGTERM. The five-camera night, with its consoles, a killed
camera process and a closed terminal, is ``test_station_service.py``.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketAttribute

from mascara_actors.app.camera_process import CameraProcess, RestartPolicy
from mascara_actors.app.supervisor import StationInUse, StationSupervisor, station_state_dir
from mascara_actors.control import ControlClient, ControlError, EventNotice
from mascara_actors.messages import Event
from tests.app.test_station_recovery import quick_night_config
from tests.stations import raw_frames, short_night_config

REPO = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_camera.py")
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def fake(camera: str, frames: int, ending: str = "") -> Callable[[int], list[str]]:
    """The command line of a stand-in camera process sending ``frames`` frames, then
    exiting 0 (or 1 with ``ending`` ``incomplete`` or ``lost``)."""
    return partial(_fake_argv, camera, frames, ending)


def _fake_argv(camera: str, frames: int, ending: str, fd: int) -> list[str]:
    argv = [sys.executable, str(FAKE), camera, str(frames), "--supervisor-fd", str(fd)]
    return [*argv, ending] if ending else argv


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    with anyio.fail_after(timeout_s):
        while not predicate():
            await anyio.sleep(0.02)


def test_restart_delays_double_up_to_a_minute() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


@pytest.mark.anyio
async def test_supervisor_publishes_forwards_restarts_and_stops(tmp_path: Path) -> None:
    out = tmp_path / "out"
    supervisor = StationSupervisor(
        out,
        {"LPN": fake("LPN", 100_000), "LPE": fake("LPE", 100_000)},
        site="LaPalma",
        policy=RestartPolicy(first_s=0.2),
        env=ENV,
        stop_grace_s=10,
    )
    lpn, lpe = supervisor.cameras["LPN"], supervisor.cameras["LPE"]
    events: list[tuple[str | None, str, str]] = []

    async def listen(client: ControlClient) -> None:
        async for item in client.events():
            if isinstance(item, EventNotice):
                event = item.to_event()
                events.append((item.camera, event.kind, getattr(event, "message", "")))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(supervisor.run)
            await supervisor.ready.wait()
            async with ControlClient(supervisor.socket_path) as client, \
                    anyio.create_task_group() as listening:
                listening.start_soon(listen, client)
                await until(lambda: {c for c, k, _ in events if k == "FrameReducedEvent"}
                            == {"LPN", "LPE"})
                status = (await client.send("status")).unwrap()
                assert status["station"]["cameras"] == ["LPN", "LPE"]
                for name, camera in status["cameras"].items():
                    assert camera["process"]["state"] == "running", name
                    assert camera["phase"] == "science"
                    assert camera["process"]["pid"] == supervisor.cameras[name].pid
                assert (await client.send("status", camera="LPE")).unwrap()["camera"] == "LPE"

                # commands reach the camera's process; unknown cameras are refused
                assert (await client.send("pause", camera="LPN")).unwrap() == "LPN pause"
                refused = await client.send("take_darks", camera="LPX")
                assert not refused.ok
                assert "no camera 'LPX' at this station (cameras: LPE, LPN)" in refused.error

                # kill -9: restarted after its delay, paused again; the other camera untouched
                killed, other = lpn.pid, lpe.pid
                assert killed is not None
                os.kill(killed, signal.SIGKILL)
                await until(lambda: lpn.restarts == 1 and lpn.process_state == "running")
                assert lpn.pid != killed
                assert (lpe.pid, lpe.restarts, lpe.process_state) == (other, 0, "running")
                described = (await client.send("status", camera="LPN")).unwrap()
                assert described["process"]["last_exit"] == "killed by SIGKILL"
                assert described["paused"] is True
                await until(lambda: any("killed by SIGKILL" in m for _, _, m in events))
                assert [(c, k) for c, k, m in events if "SIGKILL" in m] == [
                    ("LPN", "WarningEvent")
                ]
                await anyio.sleep(0.5)  # paused again after its restart: no frames
                held = lpn.state.frames_reduced
                await anyio.sleep(0.5)
                assert lpn.state.frames_reduced <= held + 1
                resumed = (await client.send("resume")).unwrap()
                assert resumed == {
                    "LPN": {"ok": True, "result": "LPN resume"},
                    "LPE": {"ok": True, "result": "LPE resume"},
                }
                await until(lambda: lpn.state.frames_reduced > held + 3)

                # one camera stopped: not restarted, the other goes on
                assert "LPE's night stops" in (await client.send("stop", camera="LPE")).unwrap()
                await until(lambda: lpe.process_state == "stopped")
                assert lpn.process_state == "running"
                refused = await client.send("pause", camera="LPE")
                assert refused.error == "camera LPE's pipeline has stopped: nothing to pause"

                # one station per output directory
                with pytest.raises(StationInUse, match="another station runs on"):
                    await StationSupervisor(out, {"LPN": fake("LPN", 1)}, env=ENV).run()

                assert (await client.send("stop")).unwrap() == {"stopping": ["LPN", "LPE"]}
                listening.cancel_scope.cancel()
    assert (lpn.process_state, lpe.process_state) == ("stopped", "stopped")
    assert lpn.last_exit == lpe.last_exit == "exit status 130: stopped by SIGINT"
    assert supervisor.stopped_by == "the stop command"
    assert not supervisor.socket_path.exists()


@pytest.mark.anyio
async def test_a_finished_night_is_not_restarted(tmp_path: Path) -> None:
    """A camera process that ends its night (exit 0) is done; the station ends with the
    last one."""
    supervisor = StationSupervisor(tmp_path / "out", {"LPC": fake("LPC", 5)}, env=ENV)
    with anyio.fail_after(20):
        await supervisor.run()
    camera = supervisor.cameras["LPC"]
    assert (camera.process_state, camera.restarts) == ("done", 0)
    assert camera.state.frames_reduced == 5
    assert camera.describe()["phase"] == "night done"


@pytest.mark.anyio
async def test_a_state_directory_that_is_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    """The station lock is taken in the state directory before the control socket is made:
    it must not follow a link there either (whoever changes the link chooses the directory)."""
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir(mode=0o755)
    (out / "state").mkdir(parents=True)
    station_state_dir(out).symlink_to(victim)
    supervisor = StationSupervisor(out, {"LPC": fake("LPC", 1)}, env=ENV)
    with pytest.raises(ControlError) as refused:
        await supervisor.run()
    assert str(refused.value) == (
        f"the control socket's directory {station_state_dir(out)} is a symbolic link: the "
        "station does not follow it; make it a real directory of the station's user, or give "
        "the station another state directory"
    )
    assert list(victim.iterdir()) == []
    assert supervisor.cameras["LPC"].pid is None  # no camera was started


def test_the_station_command_writes_no_log_through_a_symbolic_link(tmp_path: Path) -> None:
    """The command opens its log in the state directory before the supervisor runs."""
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir(mode=0o755)
    (out / "state").mkdir(parents=True)
    station_state_dir(out).symlink_to(victim)
    done = subprocess.run([sys.executable, "-m", "mascara_actors.cli", "station", "--out",
                           str(out), "--frames", "1"], capture_output=True, text=True,
                          timeout=120, env=ENV)
    assert done.returncode == 2, done.stderr
    assert f"{station_state_dir(out)} is a symbolic link" in done.stderr
    assert list(victim.iterdir()) == []


@pytest.mark.anyio
async def test_a_night_over_but_incomplete_is_not_restarted_a_lost_camera_is(
    tmp_path: Path,
) -> None:
    """Exit 1 after the dawn sequence (a product missing): the night is over, a restart would
    only wait for the next one, so the camera is done. Exit 1 with its camera lost mid-night:
    restarted (the camera may be back and the night go on)."""
    supervisor = StationSupervisor(
        tmp_path / "out",
        {"LPN": fake("LPN", 3, "incomplete"), "LPE": fake("LPE", 3, "lost")},
        policy=RestartPolicy(first_s=0.2), env=ENV, stop_grace_s=10,
    )
    lpn, lpe = supervisor.cameras["LPN"], supervisor.cameras["LPE"]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(supervisor.run)
            await until(lambda: lpe.restarts >= 1 and lpn.process_state == "done")
            supervisor.stop_all("the test")
    assert (lpn.restarts, lpn.last_exit) == (0, "exit status 1: the night ended early or "
                                                "incomplete")
    assert lpe.process_state == "stopped"


@pytest.mark.anyio
async def test_a_line_the_supervisor_fails_on_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    published: list[str] = []

    def publish(event: Event, camera: str) -> None:
        published.append(camera)
        if len(published) == 2:
            raise RuntimeError("a bug")

    camera = CameraProcess("LPC", fake("LPC", 5), log_path=tmp_path / "LPC.log",
                           publish=publish, env=ENV)
    with anyio.fail_after(20):
        await camera.run()
    assert (camera.process_state, camera.restarts, len(published)) == ("done", 0, 5)
    assert "camera LPC: a line could not be taken" in caplog.text


@pytest.mark.anyio
async def test_a_camera_cancelled_from_outside_as_its_process_writes_reports_nothing(
    tmp_path: Path,
) -> None:
    # A supervisor cancelled from outside (a failure in another of its tasks, or whatever
    # runs it) while a camera's process writes a line: the reader of the channel must not be
    # waiting in a receive that the cancellation ends (InvalidStateError on asyncio, see
    # mascara_actors.control.client.shut_down). The cancellation is delivered by a loop
    # callback of the iteration in which the channel turns readable.
    camera = CameraProcess("LPC", fake("LPC", 100_000), log_path=tmp_path / "LPC.log",
                           publish=lambda event, name: None, env=ENV, stop_grace_s=10)
    scope = anyio.CancelScope()

    async def run() -> None:
        with scope:
            await camera.run()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await until(lambda: camera.state.frames_reduced >= 2)
            channel = camera._channel
            assert channel is not None
            await anyio.sleep(0.01)  # the reader waits for the next line (every 50 ms)
            # block the loop until that line is in the socket, then cancel first thing in
            # the next iteration, before the socket's readiness is handled
            ready, _, _ = select.select([channel.extra(SocketAttribute.raw_socket)], [], [], 5)
            assert ready
            asyncio.get_running_loop().call_soon(scope.cancel)
    # the anyio test runner fails the test on any error a loop callback raised
    assert scope.cancel_called
    assert camera.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(camera.pid, 0)  # the process was killed and reaped


@pytest.mark.anyio
async def test_a_camera_that_never_answers_is_retried_while_the_others_observe(
    tmp_path: Path,
) -> None:
    """LPE's port (a real pty) has nobody behind it: its real pipeline command gives up with
    the reason, and is started again with backoff, while LPN's frames keep coming."""
    config_dir = tmp_path / "config"
    await anyio.to_thread.run_sync(short_night_config, tmp_path)
    master, slave = os.openpty()
    try:
        cameras = config_dir / "cameras.toml"
        text = cameras.read_text().replace(
            "[cameras.LPE]", f'[cameras.LPE]\ntty = "{os.ttyname(slave)}"\n'
            'readout = "127.0.0.1:9"', 1)
        cameras.write_text(text)

        def silent(fd: int) -> list[str]:
            return [sys.executable, "-m", "mascara_actors.cli", "--config", str(config_dir),
                    "live", "--camera", "LPE", "--out", str(tmp_path / "out"),
                    "--supervisor-fd", str(fd)]

        supervisor = StationSupervisor(
            tmp_path / "out", {"LPN": fake("LPN", 100_000), "LPE": silent},
            policy=RestartPolicy(first_s=0.2), env=ENV, stop_grace_s=10,
        )
        lpn, lpe = supervisor.cameras["LPN"], supervisor.cameras["LPE"]
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(supervisor.run)
                await until(lambda: lpe.restarts >= 1, timeout_s=50)
                frames = lpn.state.frames_reduced
                await until(lambda: lpn.state.frames_reduced > frames + 5)
                described = lpe.describe()
                supervisor.stop_all("the test")
    finally:
        os.close(master)
        os.close(slave)
    assert described["process"]["last_exit"].startswith("exit status 2"), described
    assert described["phase"].startswith(("restarting its pipeline in ", "starting")), described
    assert lpn.restarts == 0
    # the reason reaches the consoles: a warning of the camera, ending with the command's words
    told = [p[3] for p in lpe.state.problems if p[1] == "warning"]
    assert any("no reply to SETPOINT" in m and "check that the camera is powered" in m
               for m in told), told
    log = await anyio.to_thread.run_sync((tmp_path / "out/state/station/LPE.log").read_text)
    assert "no reply to SETPOINT" in log
    assert "check that the camera is powered" in log


# -- a real station ------------------------------------------------------------------------

SPEED = 20



@pytest.mark.slow
def test_sigterm_stops_every_night_for_a_restart(tmp_path: Path) -> None:
    """SIGTERM mid-night: each camera's process gets SIGINT and stops its night for a restart
    (complete sets saved, no nightly file), the station exits 143 saying how to go on."""
    config_dir = quick_night_config(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mascara_actors.cli", "--config", str(config_dir), "station",
           "--cameras", "LPC", "--speed", str(SPEED), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    night = out / "20260320LPC"
    try:
        deadline = time.monotonic() + 120
        while not raw_frames(night)["science"]:
            assert time.monotonic() < deadline, "no science frame within 120 s"
            assert proc.poll() is None
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "LPC: stopped, exit status 130: stopped by SIGINT;" in err
    assert err.rstrip().endswith("stopped: run the same command again to resume the nights")
    assert "Traceback" not in err
    camera_log = (out / "state" / "station" / "LPC.log").read_text()
    assert "stopped: run the same command again to resume the night" in camera_log
    assert not (night / "lightcurves" / "fast_20260320LPC.hdf5").exists()
    assert not (out / "state" / "station" / "control.sock").exists()
