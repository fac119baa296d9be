"""The summariser actor: log every event as a JSON line and keep the night's state.

:class:`NightState` is the snapshot the progress bar and the console read on a timer; the
event log (``logs/events.jsonl``) is what the night summary is built from.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from anyio.abc import ObjectReceiveStream

from mascara_actors.actors.events import (
    ActorFailed,
    AstrometryDone,
    Event,
    FrameFailed,
    FrameReducedEvent,
    NightStarted,
    ProductFailed,
    QueueDepths,
    SetBinned,
    SetSaved,
    Spooled,
    WarningEvent,
    to_json,
)

__all__ = ["NightState", "run"]

log = logging.getLogger(__name__)


@dataclass
class NightState:
    """Live counters of one camera-night (read by the UI; written only by the summariser)."""

    night: str = ""
    camera: str = ""
    frames_expected: int = 0
    frames_reduced: int = 0
    frames_failed: int = 0
    sets_saved: int = 0
    sets_binned: int = 0
    last_lstseq: int | None = None
    last_nstars: int = 0
    last_nflagged: int = 0
    last_latency_s: float = float("nan")
    last_sky: float = float("nan")
    ccdtemp: float = float("nan")
    astrometry_dr: float = float("nan")
    aflag: int = 0
    spooled: int = 0
    caught_up: int = 0
    queue_depths: dict[str, int] = field(default_factory=dict)
    stars_measured: int = 0
    flags_raised: int = 0
    warnings: int = 0
    sets_not_binned: dict[int, str] = field(default_factory=dict)
    """Sets with no binned image by design (too few usable frames), with the reason."""
    products_failed: list[str] = field(default_factory=list)
    """Products that could not be written (``set N binned: reason``); a restart makes them."""
    fatal: str | None = None
    """Why an actor gave up and stopped the night, if one did."""
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=120))
    problems: deque[tuple[float, str, int | None, str]] = field(
        default_factory=lambda: deque(maxlen=200)
    )
    """(time, level, lstseq, message) of the latest warnings and errors."""
    started: float = field(default_factory=time.time)

    @property
    def frames_done(self) -> int:
        return self.frames_reduced + self.frames_failed

    def rate(self) -> float:
        """Frames handled per second of wall time so far."""
        dt = time.time() - self.started
        return self.frames_done / dt if dt > 0 else 0.0

    def apply(self, ev: Event) -> None:
        """Update the counters with one event."""
        if isinstance(ev, NightStarted):
            self.night, self.camera = ev.night, ev.camera
            self.frames_expected = ev.frames_expected
        elif isinstance(ev, FrameReducedEvent):
            self.frames_reduced += 1
            self.last_lstseq = ev.lstseq
            self.last_nstars, self.last_nflagged = ev.nstars, ev.nflagged
            self.last_latency_s = ev.latency_s
            self.latencies.append(ev.latency_s)
            self.last_sky, self.ccdtemp = ev.sky, ev.ccdtemp
            self.stars_measured += ev.nstars
            self.flags_raised += ev.nflagged
        elif isinstance(ev, FrameFailed):
            self.frames_failed += 1
            self.problems.append((ev.time, "error", ev.lstseq, ev.reason))
        elif isinstance(ev, AstrometryDone):
            self.astrometry_dr, self.aflag = ev.dr, ev.aflag
        elif isinstance(ev, SetSaved):
            self.sets_saved += 1
        elif isinstance(ev, SetBinned):
            self.sets_binned += 1
            if ev.reason:
                self.sets_not_binned[ev.setidx] = ev.reason
        elif isinstance(ev, ProductFailed):
            where = "nightly" if ev.setidx is None else f"set {ev.setidx}"
            message = f"{where} {ev.product} not written: {ev.reason}"
            self.products_failed.append(message)
            self.problems.append((ev.time, "error", None, message))
        elif isinstance(ev, Spooled):
            self.spooled, self.caught_up = ev.spooled, ev.caught_up
        elif isinstance(ev, QueueDepths):
            self.queue_depths = dict(ev.depths)
        elif isinstance(ev, ActorFailed):
            self.fatal = f"{ev.source}: {ev.message}"
            self.problems.append((ev.time, "error", None, self.fatal))
        elif isinstance(ev, WarningEvent):
            self.warnings += 1
            self.problems.append((ev.time, "warning", ev.lstseq, f"{ev.source}: {ev.message}"))


def _end_torn_line(path: Path) -> None:
    """A run killed while writing may leave a last line without its newline: end it, so the
    next run's events start on a line of their own."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            if fh.tell() == 0:
                return
            fh.seek(-1, 2)
            torn = fh.read(1) != b"\n"
    except FileNotFoundError:
        return
    if torn:
        with path.open("ab") as fh:
            fh.write(b"\n")


async def run(*, inbox: ObjectReceiveStream[Event], log_path: Path, state: NightState) -> None:
    """Log and count every event until every sender has closed.

    Events are appended to ``log_path`` (JSON lines, :func:`~.events.to_json`), one line
    each, flushed as they come; a restarted night appends to the same log.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _end_torn_line(log_path)
    failed: OSError | None = None
    async with inbox:
        # unbuffered: one write per line, nothing held back that a full disk could fail later
        with log_path.open("ab", buffering=0) as fh:
            async for ev in inbox:
                state.apply(ev)
                if failed is not None:
                    continue
                try:
                    fh.write((to_json(ev) + "\n").encode())
                except OSError as exc:
                    # A full disk must not stop the night: the counters go on, the log
                    # stops here (the summary says so).
                    failed = exc
                    message = f"event log {log_path} not written from here on: {exc}"
                    log.error("%s", message)
                    state.problems.append((ev.time, "error", None, message))
                    state.products_failed.append(message)
