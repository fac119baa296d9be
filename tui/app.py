"""The console application: a thin App over a :class:`ConsoleFeed`.

The feed is everything the console reads (the night's :class:`NightState`, a clock) and
every command it can send (pause, stop, take darks); :func:`make_console` builds the app
for the CLI and the tests alike, and :func:`run_console` runs it beside the pipeline in one
task group, so quitting waits for the pipeline's last flush.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import anyio
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from mascara_actors.actors.gate import PauseGate
from mascara_actors.actors.summariser import NightState
from mascara_actors.config import CameraConfig
from mascara_actors.ephemeris import EphemerisTable
from mascara_actors.sidereal import SiteReference, set_index
from tui.messages import LightCurve, Snapshot

__all__ = ["ConsoleApp", "ConsoleFeed", "make_console", "run_console", "take_snapshot"]

log = logging.getLogger(__name__)

_SECONDS_PER_DAY = 86400.0
_JD_UNIX_EPOCH = 2440587.5


@dataclass
class ConsoleFeed:
    """What the console reads and the commands it may send."""

    state: NightState
    camera: CameraConfig
    out_dir: Path
    """Where the night is written (its disk's free space is shown)."""
    clock: Callable[[], datetime]
    """UTC now; in a replay the night's own time, in tests a fixed instant."""
    wall: Callable[[], float]
    """Wall-clock seconds (``time.time``) for the frame rate; fixed in snapshot tests."""
    stop: anyio.Event = field(default_factory=anyio.Event)
    gate: PauseGate = field(default_factory=PauseGate)
    pipeline: Callable[[], Awaitable[Any]] | None = None
    """Runs the night to its end (``run_night`` with this feed's state, stop and gate)."""
    lookup: Callable[[int], LightCurve] | None = None
    """HIP number -> light curve so far (blocking: run in a thread). Raises MascaraError."""
    take_darks: Callable[[], Awaitable[str]] | None = None
    """Take a series of darks (live camera only); returns what was done."""
    end_night: Callable[[], bool] | None = None
    """End the science now, as at dawn (live camera); False when it is already ending.
    Without it, ending the night stops it for a restart."""
    phase: Callable[[], str] = lambda: ""
    """What the station is doing (waiting for dusk, calibration, science ...)."""
    camera_link: Callable[[], str] = lambda: ""
    """The camera link in a few words (empty for a recorded night)."""
    recorded: bool = True
    """The frames come from a recorded night (no darks can be taken)."""
    latest_frame: Callable[[], Path | None] = lambda: None
    disk_free: Callable[[Path], float] = lambda p: float(shutil.disk_usage(p).free)
    """Free bytes on the disk holding a path (fixed in snapshot tests)."""
    finished: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    """What ``pipeline`` returned (a NightReport)."""
    forced: bool = False
    """The operator quit without waiting for the pipeline (it is cancelled)."""

    async def run_pipeline(self) -> None:
        """Run ``pipeline`` (if any); a crash is shown as the night's fatal error."""
        try:
            if self.pipeline is not None:
                self.result = await self.pipeline()
        except Exception as exc:  # shown to the operator, and logged
            log.exception("the pipeline stopped")
            self.state.fatal = f"pipeline: {type(exc).__name__}: {exc}"
            self.state.problems.append((self.wall(), "error", None, self.state.fatal))
        finally:
            self.finished.set()


def _night_state(sun_alt: float) -> str:
    if not math.isfinite(sun_alt):
        return "unknown"
    if sun_alt >= -0.833:
        return "day"
    if sun_alt >= -6:
        return "civil twilight"
    if sun_alt >= -12:
        return "nautical twilight"
    if sun_alt >= -18:
        return "astronomical twilight"
    return "night"


class _Sky:
    """Clock-derived values (slot, LST, Sun) for one site, cached per second of clock."""

    def __init__(self, camera: CameraConfig) -> None:
        self.ref = SiteReference()
        self.ephem = EphemerisTable(camera.site)
        self._key: tuple[int, int] | None = None
        self._value: tuple[float, int, int, float] = (float("nan"), 0, 0, float("nan"))

    def at(self, utc: datetime) -> tuple[float, int, int, float]:
        key = (int(utc.timestamp()), 0)
        if key != self._key:
            lst = self.ref.local_sidereal_time(utc.replace(tzinfo=None))
            jd = utc.timestamp() / _SECONDS_PER_DAY + _JD_UNIX_EPOCH
            sun = float(self.ephem.at(jd).sunalt[0])
            self._value = (float(lst.lst), int(lst.lstseq), int(lst.lstidx), sun)
            self._key = key
        return self._value


def take_snapshot(feed: ConsoleFeed, sky: _Sky | None = None) -> Snapshot:
    """Read the feed once: what the main screen draws at this redraw."""
    sky = sky if sky is not None else _Sky(feed.camera)
    s = feed.state
    utc = feed.clock()
    if utc.tzinfo is None:
        utc = utc.replace(tzinfo=UTC)
    lst, seq, idx, sun = sky.at(utc)
    try:
        free = feed.disk_free(feed.out_dir if feed.out_dir.exists() else Path.cwd())
    except OSError:
        free = float("nan")
    elapsed = feed.wall() - s.started
    return Snapshot(
        site=feed.camera.site.name,
        camera=feed.camera.id,
        night=s.night,
        utc=utc.strftime("%Y-%m-%d %H:%M:%S"),
        lst_hours=lst,
        lstseq=seq,
        lstidx=idx,
        setidx=int(set_index(seq)),
        sun_alt_deg=sun,
        night_state=_night_state(sun),
        frames_reduced=s.frames_reduced,
        frames_failed=s.frames_failed,
        frames_expected=s.frames_expected,
        rate_hz=s.frames_done / elapsed if elapsed > 0 else 0.0,
        last_lstseq=s.last_lstseq,
        last_latency_s=s.last_latency_s,
        last_nstars=s.last_nstars,
        last_nflagged=s.last_nflagged,
        astrometry_dr=s.astrometry_dr,
        aflag=s.aflag,
        ccdtemp=s.ccdtemp,
        disk_free_gb=free / 1e9,
        spooled=s.spooled,
        queue_depths=dict(s.queue_depths),
        latencies=tuple(s.latencies),
        problems=tuple(s.problems),
        paused=feed.gate.paused,
        stopping=feed.stop.is_set(),
        finished=feed.finished.is_set(),
        fatal=s.fatal,
        latest_frame=feed.latest_frame(),
        phase=feed.phase(),
        camera_link=feed.camera_link(),
    )


class ConsoleApp(App[int]):
    """The operator console of one camera."""

    CSS_PATH = "console.tcss"
    TITLE = "mascara-actors console"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause", "Pause/resume"),
        Binding("d", "darks", "Take darks"),
        Binding("e", "end_night", "End night"),
        Binding("l", "lookup", "Star look-up"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, feed: ConsoleFeed, *, refresh_hz: float = 4.0) -> None:
        super().__init__()
        self.feed = feed
        self.refresh_hz = refresh_hz
        self.sky = _Sky(feed.camera)
        self.quitting = False

    def get_default_screen(self) -> Screen[Any]:
        from tui.screens.main import MainScreen

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

    async def action_darks(self) -> None:
        if self.feed.take_darks is None or self.feed.recorded:
            self.notify("take darks: not available on a recorded night (the darks of a "
                        "replay come from its files)", severity="warning", timeout=6)
            return
        self.notify(await self.feed.take_darks())

    def action_end_night(self) -> None:
        feed = self.feed
        if feed.end_night is not None and not self.quitting:
            feed.gate.resume()
            if feed.end_night():
                self.notify("ending the night: the science stops now; the dawn calibration, "
                            "final set, nightly files and summary follow", timeout=8)
            else:
                self.notify("the night is already ending", severity="warning")
            return
        self._stop()

    def _stop(self) -> None:
        """Stop the night for a restart: frames in flight are reduced, complete sets saved."""
        if not self.feed.stop.is_set():
            self.feed.stop.set()
            self.feed.gate.resume()
            self.notify("stopping the night: frames in flight are reduced, complete sets saved")

    def action_lookup(self) -> None:
        from tui.screens.lookup import LookupScreen

        if not isinstance(self.screen, LookupScreen):
            self.push_screen(LookupScreen(self.feed))

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
