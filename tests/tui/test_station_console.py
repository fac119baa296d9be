"""The station console (issue 16): attached to a real supervisor through its control socket.

The supervisor runs in this process with five stand-in camera processes
(``tests/app/fake_camera.py``: real processes speaking the camera channel, a frame every
50 ms); the console is driven with Textual's Pilot. The real cameras are in
``tests/app/test_station_service.py``.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import anyio
import pytest
from rich.text import Text

from mascara_actors.app.camera_process import RestartPolicy
from mascara_actors.app.supervisor import StationSupervisor
from mascara_actors.config import CameraConfig, load_config
from tests.app.test_supervisor import ENV, fake, until
from tui.screens import LookupScreen
from tui.screens.station import CameraScreen, ConfirmScreen, StationScreen
from tui.station_app import StationConsole
from tui.station_link import RemoteCamera, StationLink
from tui.widgets import StatusPanel
from tui.widgets.camera_panel import CameraPanel, panel_state, panel_text
from tui.widgets.station_problems import problems_text

CAMERAS = ("LPN", "LPE", "LPS", "LPW", "LPC")


def _text(widget) -> str:  # type: ignore[no-untyped-def]
    rendered = widget.render()
    return rendered.plain if isinstance(rendered, Text) else str(rendered)


def _panel_text(app: StationConsole, camera: str) -> str:
    panel = app.screen.query_one(f"#camera-{camera}", CameraPanel)
    return _text(panel.query_one(".camera-text"))


@pytest.fixture(scope="module")
def configs() -> dict[str, CameraConfig]:
    config = load_config(None)
    return {c: config.camera(c) for c in CAMERAS}


@pytest.mark.anyio
async def test_consoles_attach_detach_and_command_a_station(
    tmp_path: Path, configs: dict[str, CameraConfig]
) -> None:
    supervisor = StationSupervisor(
        tmp_path / "out",
        {c: fake(c, 100_000) for c in CAMERAS},
        site="LaPalma",
        policy=RestartPolicy(first_s=0.2),
        env=ENV,
        stop_grace_s=10,
    )

    def console() -> StationConsole:
        link = StationLink(supervisor.socket_path, configs, poll_s=0.2)
        return StationConsole(link, refresh_hz=10.0)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(supervisor.run)
            await supervisor.ready.wait()

            # the first console: five panels, counters from the station, the detailed view
            first = console()
            async with first.run_test(size=(200, 50)) as pilot:
                await until(lambda: len(first.screen.query(CameraPanel)) == 5
                            and all(first.link.cameras[c].count("frames_reduced") > 3
                                    for c in CAMERAS))
                # the panels redraw at 10 Hz and the cameras take a frame every 50 ms: a
                # panel shows a slot between the one before the pause and the latest
                lo = {c: first.link.cameras[c].status["lstseq"] for c in CAMERAS}
                await pilot.pause(0.3)
                assert [p.camera_id for p in first.screen.query(CameraPanel)] == list(CAMERAS)
                for camera in CAMERAS:
                    text = _panel_text(first, camera)
                    assert text.splitlines()[0] == "science", text
                    assert "stars 100 (1 flagged)" in text
                    slot = re.search(r"lstseq (\d+)", text)
                    assert slot is not None, text
                    hi = first.link.cameras[camera].status["lstseq"]
                    assert lo[camera] <= int(slot.group(1)) <= hi, (lo[camera], text, hi)
                assert first.link.cameras["LPN"].stars[-1] == 99  # measured less flagged
                assert isinstance(first.screen, StationScreen)
                assert first.selected() == "LPN"  # the first panel has the focus
                await pilot.press("tab", "tab")
                assert first.selected() == "LPS"
                await pilot.press("enter")
                assert isinstance(first.screen, CameraScreen)
                assert first.screen.camera_id == "LPS"
                lo = supervisor.cameras["LPS"].state.frames_reduced
                await pilot.pause(0.5)
                status = _text(first.screen.query_one("#status", StatusPanel))
                hi = supervisor.cameras["LPS"].state.frames_reduced
                assert status.startswith("LaPalma LPS"), status
                shown = re.search(r"frames (\d+) reduced, 0 failed", status)
                assert shown is not None, status
                assert lo <= int(shown.group(1)) <= hi, (lo, status, hi)
                # a camera's process killed while attached: its restart, told as a warning
                killed = supervisor.cameras["LPW"].pid
                assert killed is not None
                os.kill(killed, signal.SIGKILL)
                await until(lambda: "killed by SIGKILL" in problems_text(
                    first.link.cameras.values()).plain)
                line = problems_text(first.link.cameras.values()).plain.splitlines()[-1]
                assert line.split()[1:3] == ["LPW", "warning"]
                assert f"(pid {killed}) killed by SIGKILL" in line
                await pilot.press("l")
                assert isinstance(first.screen, LookupScreen)
                await pilot.press("escape", "escape")
                assert isinstance(first.screen, StationScreen)
                await pilot.press("q")
            assert first.return_code == 0
            # detached: the station goes on
            running = {c: supervisor.cameras[c].process_state for c in CAMERAS}
            assert set(running.values()) == {"running"}, running
            before = supervisor.cameras["LPE"].state.frames_reduced
            await until(lambda: supervisor.cameras["LPE"].state.frames_reduced > before + 2)

            # a second console, beside a third: pause and resume one camera
            second, third = console(), console()
            async with second.run_test(size=(120, 40)) as pilot, \
                    third.run_test(size=(80, 24)) as pilot3:
                await until(lambda: len(second.link.cameras) == 5 and len(third.link.cameras) == 5)
                await pilot.pause(0.2)
                await pilot.press("tab")
                assert second.selected() == "LPE"
                await pilot.press("p")
                await until(lambda: supervisor.cameras["LPE"].paused
                            and third.link.cameras["LPE"].paused)
                assert second.said == ["LPE: LPE pause"]
                await pilot3.pause(0.3)
                assert "PAUSED" in str(third.screen.query_one("#camera-LPE").border_subtitle)
                held = supervisor.cameras["LPE"].state.frames_reduced
                await anyio.sleep(0.4)
                assert supervisor.cameras["LPE"].state.frames_reduced <= held + 1
                await until(lambda: second.link.cameras["LPE"].paused)
                await pilot.press("p")
                await until(lambda: not supervisor.cameras["LPE"].paused)
                assert second.said[-1] == "LPE: LPE resume"
                await pilot.press("d")
                await until(lambda: len(second.said) == 3)
                assert second.said[-1] == "LPE: LPE take_darks"

                # stopping the station asks first: no keeps it running
                await pilot.press("s")
                assert isinstance(second.screen, ConfirmScreen)
                await pilot.press("n")
                assert isinstance(second.screen, StationScreen)
                await anyio.sleep(0.3)
                assert supervisor.stopped_by is None
                # yes stops it; both consoles see it go
                await pilot.press("s")
                await pilot.press("y")
                await until(lambda: supervisor.stopped_by == "the stop command")
                await until(lambda: second.link.lost is not None and third.link.lost is not None)
                await pilot.pause(0.3)
                assert "q quits" in _text(second.screen.query_one("#station-line"))
                await pilot.press("q")
                await pilot3.press("q")
    assert {supervisor.cameras[c].process_state for c in CAMERAS} == {"stopped"}


def test_panel_tells_a_lost_link_a_restart_and_a_pause() -> None:
    camera = RemoteCamera("LPW", None)
    camera.status = {
        "phase": "science", "lstseq": 65344200, "frames_expected": 300, "frames_reduced": 120,
        "frames_failed": 2, "stars": 812, "stars_flagged": 34, "residual_px": 0.0123,
        "aflag": 0, "errors": 3, "warnings": 5, "paused": False,
        "link": {"answering": False, "detail": "silent 42 s"},
        "process": {"state": "running", "restarts": 1},
    }
    text = panel_text(camera).plain
    assert text.splitlines() == [
        "science",
        "lstseq 65344200",
        "frames 120/300  2 failed",
        "stars 812 (34 flagged)",
        "resid 0.012 px  aflag 0",
        "errors 3  warnings 5",
        "link NOT ANSWERING silent 42 s",
        "restarts 1",
    ]
    assert panel_state(camera) == "lost"
    camera.status["link"] = {"answering": True, "detail": "exposing"}
    camera.status["paused"] = True
    assert panel_state(camera) == "paused"
    camera.status["process"] = {"state": "restarting", "restarts": 2}
    assert panel_state(camera) == "restarting"
    camera.status["fatal"] = "saver: disk full"
    assert panel_state(camera) == "failed"
    # before the first status: nothing known, nothing invented
    assert panel_text(RemoteCamera("LPN", None)).plain.splitlines()[:3] == [
        "waiting for the station", "lstseq --", "frames 0  0 failed"]
