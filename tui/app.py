"""The console of a night run in this process (a recorded night played as the camera): a
thin App over a :class:`~tui.feed.ConsoleFeed`.

The feed is everything the console reads (the night's state, a clock) and every command it
can send (pause, stop); :func:`make_console` builds the app for the CLI and the tests alike,
and :func:`run_console` runs it beside the pipeline in one task group, so quitting waits for
the pipeline's last flush. A station's console is :mod:`tui.station_app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import anyio
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from tui.feed import ConsoleFeed, Sky
from tui.screens import LookupScreen, MainScreen

__all__ = ["ConsoleApp", "make_console", "run_console"]


class ConsoleApp(App[int]):
    """The operator console of one camera-night run here."""

    CSS_PATH = Path(__file__).with_name("console.tcss")  # absolute: Textual resolves nothing
    TITLE = "mascara-actors console"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause", "Pause/resume"),
        Binding("e", "end_night", "Stop night"),
        Binding("l", "lookup", "Star look-up"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, feed: ConsoleFeed, *, refresh_hz: float = 4.0) -> None:
        super().__init__()
        self.feed = feed
        self.refresh_hz = refresh_hz
        self.sky = Sky(feed.camera)
        self.quitting = False

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(self.feed, sky=self.sky, refresh_hz=self.refresh_hz)

    def on_mount(self) -> None:
        self.sub_title = f"{self.feed.camera.site.name} {self.feed.camera.id}"

    def action_pause(self) -> None:
        gate = self.feed.gate
        if self.feed.stop.is_set():
            self.notify("the night is ending: nothing to pause", severity="warning")
        elif gate.paused:
            gate.resume()
            self.notify("reduction resumed")
        else:
            gate.pause()
            self.notify("reduction paused: frames wait at the camera edge (p resumes)")

    def action_end_night(self) -> None:
        """Stop the night for a restart (a recorded night has no dawn)."""
        self._stop()

    def _stop(self) -> None:
        """Stop the night for a restart: frames in flight are reduced, complete sets saved."""
        if not self.feed.stop.is_set():
            self.feed.stop.set()
            self.feed.gate.resume()
            self.notify("stopping the night: frames in flight are reduced, complete sets saved")

    def action_lookup(self) -> None:
        if not isinstance(self.screen, LookupScreen):
            self.push_screen(LookupScreen(self.feed.lookup))

    async def action_quit(self) -> None:
        """Stop the night, wait until the pipeline has saved what it had, then exit."""
        if self.quitting:
            # a second q: the operator will not wait (a stuck worker); like a second SIGINT
            self.feed.forced = True
            self.exit(1, return_code=1,
                      message="quit without waiting: the open sets were not saved")
            return
        self.quitting = True
        self._stop()
        if not self.feed.finished.is_set():
            self.notify("quitting: saving the night first (q again: quit without waiting)",
                        timeout=30)
        self.run_worker(self._exit_when_finished(), exclusive=True, group="quit")

    async def _exit_when_finished(self) -> None:
        await self.feed.finished.wait()
        self.exit(0)


def make_console(feed: ConsoleFeed, *, refresh_hz: float = 4.0) -> ConsoleApp:
    """The console over ``feed`` (redrawn ``refresh_hz`` times a second from its state)."""
    return ConsoleApp(feed, refresh_hz=refresh_hz)


async def run_console(app: ConsoleApp) -> int:
    """Run the app and its pipeline in one task group (asyncio backend).

    When the app exits by any path, the night is stopped and its pipeline is awaited, so
    the saver's last flush happens before this returns; only a second ``q`` (quit without
    waiting) cancels the pipeline instead. Returns the app's return code.
    """
    feed = app.feed
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.run_pipeline)
        try:
            await app.run_async()
        finally:
            feed.stop.set()
            feed.gate.resume()
            if feed.forced:
                tg.cancel_scope.cancel()
            else:
                with anyio.CancelScope(shield=True):
                    await feed.finished.wait()
    return app.return_code or 0
