"""The station console: attached to a running station through its control socket only.

::

    app = StationConsole(StationLink(state_dir / "control.sock", configs))
    await app.run_async()      # q detaches; the station goes on

The station view shows one panel per camera; Enter opens the focused camera's detailed
view (Esc goes back). The keys act on the focused (or open) camera: ``p`` pauses or resumes
its reduction, ``d`` takes darks, ``e`` ends its night as at dawn (asked first), ``l`` looks
up a star's light curve; ``s`` stops the whole station (asked first); ``q`` detaches. Every
command goes over the socket, and what the station answers is shown as a notification.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from mascara_actors.control import CommandName
from tui.feed import Sky
from tui.messages import LightCurve
from tui.screens import LookupScreen
from tui.screens.station import CameraScreen, ConfirmScreen, StationScreen
from tui.station_link import StationLink

__all__ = ["StationConsole"]

log = logging.getLogger(__name__)

Lookup = Callable[[Path, int], LightCurve]
"""(night directory, HIP number) -> the star's light curve so far (blocking)."""


class StationConsole(App[int]):
    """The console of a station; see the module docstring."""

    CSS_PATH = Path(__file__).with_name("console.tcss")
    TITLE = "mascara-actors station console"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open camera"),
        Binding("p", "pause", "Pause/resume"),
        Binding("d", "darks", "Take darks"),
        Binding("e", "end_night", "End night"),
        Binding("l", "lookup", "Star look-up"),
        Binding("s", "stop_station", "Stop station"),
        Binding("q", "quit", "Detach"),
    ]

    def __init__(
        self, link: StationLink, *, lookup: Lookup | None = None, refresh_hz: float = 4.0
    ) -> None:
        super().__init__()
        self.link = link
        self.lookup = lookup
        self.refresh_hz = refresh_hz
        self._skies: dict[str, Sky] = {}
        self.said: list[str] = []
        """What the station answered to each command sent, in order (for the operator's
        notifications, and the tests)."""

    def get_default_screen(self) -> StationScreen:
        return StationScreen(self.link, refresh_hz=self.refresh_hz)

    async def on_mount(self) -> None:
        self.run_worker(self._follow(), group="link")

    async def _follow(self) -> None:
        try:
            await self.link.run()
        except Exception as exc:  # the connection failed: shown, the console stays
            self.link.lost = f"lost the station: {exc}"
            log.warning("station console: %s", self.link.lost)
        self.notify(self.link.lost or "the station is gone", severity="warning", timeout=10)

    # -- which camera ------------------------------------------------------------------------

    def selected(self) -> str | None:
        """The camera the keys act on: the open one, else the focused panel's."""
        screen = self.screen
        if isinstance(screen, CameraScreen):
            return screen.camera_id
        if isinstance(screen, StationScreen):
            return screen.selected()
        return None

    def _need_camera(self, what: str) -> str | None:
        camera = self.selected()
        if camera is None:
            self.notify(f"{what}: choose a camera first (Tab moves between the panels)",
                        severity="warning")
        return camera

    # -- actions -----------------------------------------------------------------------------

    def action_open(self) -> None:
        camera_id = self.selected()
        if camera_id is None or isinstance(self.screen, CameraScreen):
            return
        camera = self.link.cameras[camera_id]
        if camera_id not in self._skies and camera.config is not None:
            self._skies[camera_id] = Sky(camera.config)
        self.push_screen(
            CameraScreen(camera, sky=self._skies.get(camera_id), refresh_hz=self.refresh_hz)
        )

    def action_pause(self) -> None:
        camera = self._need_camera("pause")
        if camera is not None:
            cmd: CommandName = "resume" if self.link.cameras[camera].paused else "pause"
            self._send(cmd, camera)

    def action_darks(self) -> None:
        camera = self._need_camera("take darks")
        if camera is not None:
            self.notify(f"{camera}: taking darks (the science waits; minutes at the real clock)")
            self._send("take_darks", camera)

    def action_end_night(self) -> None:
        camera = self._need_camera("end night")
        if camera is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._send("end_night", camera)

        self.push_screen(
            ConfirmScreen(
                f"End {camera}'s night now, as at dawn? Its science stops; the dawn "
                "calibration, the nightly files and the summary follow."
            ),
            answered,
        )

    def action_stop_station(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._send("stop", None)

        self.push_screen(
            ConfirmScreen(
                "Stop the station? Every camera's night stops (what was measured is saved); "
                "run `mascara-actors station` again to resume them."
            ),
            answered,
        )

    def action_lookup(self) -> None:
        camera_id = self._need_camera("star look-up")
        if camera_id is None:
            return
        night_dir = self.link.cameras[camera_id].night_dir
        lookup = self.lookup
        if lookup is None or night_dir is None:
            self.push_screen(LookupScreen(None))
            return

        self.push_screen(LookupScreen(partial(lookup, night_dir)))

    async def action_quit(self) -> None:
        """Detach: the console closes its connection; the station goes on."""
        self.exit(0)

    def _send(self, cmd: CommandName, camera: str | None) -> None:
        async def send() -> None:
            ok, said = await self.link.command(cmd, camera)
            who = camera or "station"
            line = f"{who}: {said}"
            self.said.append(line)
            self.notify(line, severity="information" if ok else "error", timeout=8)

        self.run_worker(send(), group="commands")
