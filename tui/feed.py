"""What the console reads and the commands it may send: the :class:`ConsoleFeed`, and
:func:`take_snapshot`, which reads it once per redraw.

The feed holds the night's :class:`~mascara_actors.night_state.NightState` (read only: the
night's events change it) and a clock; the screens and the App import it from here.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from mascara_actors.actors.gate import PauseGate
from mascara_actors.config import CameraConfig
from mascara_actors.ephemeris import EphemerisTable
from mascara_actors.messages import ActorFailed
from mascara_actors.night_state import NightState
from mascara_actors.sidereal import SiteReference, set_index, unix_to_jd
from tui.messages import LightCurve, Snapshot

__all__ = ["ConsoleFeed", "Sky", "clock_fields", "free_space", "night_word", "take_snapshot"]

log = logging.getLogger(__name__)


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
    latest_frame: Callable[[], Path | None] = lambda: None
    disk_free: Callable[[Path], float] = lambda p: float(shutil.disk_usage(p).free)
    """Free bytes on the disk holding a path (fixed in snapshot tests)."""
    finished: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    """What ``pipeline`` returned (a NightReport)."""
    forced: bool = False
    """The operator quit without waiting for the pipeline (it is cancelled)."""

    def snapshot(self, sky: Sky | None, *, free_bytes: float) -> Snapshot:
        """:func:`take_snapshot` of this feed (the main screen's source)."""
        return take_snapshot(self, sky, free_bytes=free_bytes)

    def free_space(self) -> float:
        """:func:`free_space` of this feed."""
        return free_space(self)

    async def run_pipeline(self) -> None:
        """Run ``pipeline`` (if any); a crash is shown as the night's fatal error."""
        try:
            if self.pipeline is not None:
                self.result = await self.pipeline()
        except Exception as exc:  # shown to the operator, and logged
            log.exception("the pipeline stopped")
            # its summariser is gone with it: the console reports the crash itself
            message = f"{type(exc).__name__}: {exc}"
            self.state.apply(ActorFailed(time=self.wall(), source="pipeline", message=message))
        finally:
            self.finished.set()


def night_word(sun_alt: float) -> str:
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


class Sky:
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
            jd = unix_to_jd(utc.timestamp())
            sun = float(self.ephem.at(jd).sunalt[0])
            self._value = (float(lst.lst), int(lst.lstseq), int(lst.lstidx), sun)
            self._key = key
        return self._value


def clock_fields(sky: Sky | None, utc: datetime) -> dict[str, Any]:
    """The snapshot's clock fields at ``utc``: its text, LST, slot, set, the Sun and the night
    state (NaN and slot 0 without a site to compute them for)."""
    lst, seq, idx, sun = sky.at(utc) if sky is not None else (math.nan, 0, 0, math.nan)
    return {
        "utc": utc.strftime("%Y-%m-%d %H:%M:%S"),
        "lst_hours": lst,
        "lstseq": seq,
        "lstidx": idx,
        "setidx": int(set_index(seq)),
        "sun_alt_deg": sun,
        "night_state": night_word(sun),
    }


def free_space(feed: ConsoleFeed) -> float:
    """Free bytes on the disk the night is written to (NaN when it cannot be read); a
    system call: call it from a worker thread."""
    try:
        return feed.disk_free(feed.out_dir if feed.out_dir.exists() else Path.cwd())
    except OSError:
        return float("nan")


def take_snapshot(
    feed: ConsoleFeed, sky: Sky | None = None, *, free_bytes: float | None = None
) -> Snapshot:
    """Read the feed once: what the main screen draws at this redraw.

    ``free_bytes`` is the latest reading of :func:`free_space` (read now when None).
    """
    sky = sky if sky is not None else Sky(feed.camera)
    s = feed.state
    utc = feed.clock()
    if utc.tzinfo is None:
        utc = utc.replace(tzinfo=UTC)
    free = free_space(feed) if free_bytes is None else free_bytes
    elapsed = feed.wall() - s.started
    return Snapshot(
        site=feed.camera.site.name,
        camera=feed.camera.id,
        night=s.night,
        **clock_fields(sky, utc),
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
        calibration=s.calibration,
        clouds_setidx=s.clouds_setidx,
        clouds=tuple(s.clouds.items()),
    )
