"""The state of one camera-night as its events tell it: the counters the progress bar and the
console read on a timer.

:class:`NightState` changes only through :meth:`NightState.apply`, one event at a time: the
summariser applies every event of a running night (and logs it); after the night's pipeline
has ended, the console reports the pipeline's own crash the same way. Readers never write.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from mascara_actors.messages import (
    ActorFailed,
    AstrometryDone,
    CameraLink,
    Event,
    FrameFailed,
    FrameReducedEvent,
    NightlyFileWritten,
    NightStarted,
    ProductFailed,
    QueueDepths,
    ReductionPaused,
    ReductionResumed,
    SetBinned,
    SetCalibrated,
    SetSaved,
    Spooled,
    WarningEvent,
)

__all__ = ["NightState", "Problem"]

Problem = tuple[float, str, int | None, str]
"""(time in UNIX seconds, ``error`` or ``warning``, lstseq or None, message)."""


@dataclass
class NightState:
    """Live counters of one camera-night (changed only by :meth:`apply`)."""

    night: str = ""
    camera: str = ""
    frames_expected: int = 0
    frames_reduced: int = 0
    frames_failed: int = 0
    sets_saved: int = 0
    """Fast per-set files written."""
    sets_binned: int = 0
    last_lstseq: int | None = None
    last_frame: str = ""
    """Path of the latest frame reduced."""
    last_nstars: int = 0
    last_nflagged: int = 0
    last_latency_s: float = float("nan")
    last_sky: float = float("nan")
    """ADU per pixel."""
    ccdtemp: float = float("nan")
    """Degrees Celsius, from the latest frame."""
    astrometry_dr: float = float("nan")
    """Pixels."""
    aflag: int = 0
    spooled: int = 0
    caught_up: int = 0
    paused: bool = False
    """The operator paused the reduction (frames wait on disk)."""
    calibration: str = ""
    """The calibration of earlier nights each set is calibrated with ("" none: raw)."""
    sets_calibrated: int = 0
    clouds_setidx: int | None = None
    """The set of :attr:`clouds`."""
    clouds: dict[int, float] = field(default_factory=dict)
    """Median clouds (mag) per sky patch of the latest calibrated set."""
    camera_answering: bool = True
    queue_depths: dict[str, int] = field(default_factory=dict)
    stars_measured: int = 0
    flags_raised: int = 0
    warnings: int = 0
    sets_not_binned: dict[int, str] = field(default_factory=dict)
    """Sets with no binned image by design (too few usable frames), with the reason."""
    products_failed: list[str] = field(default_factory=list)
    """Products that could not be written (``set N binned: reason``); a restart makes them."""
    nightly_files: list[str] = field(default_factory=list)
    """Nightly files written so far (fast, slow)."""
    fatal: str | None = None
    """Why an actor gave up and stopped the night, if one did."""
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=120))
    problems: deque[Problem] = field(default_factory=lambda: deque(maxlen=200))
    """The latest warnings and errors."""
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
            self.calibration = ev.calibration
        elif isinstance(ev, FrameReducedEvent):
            self.frames_reduced += 1
            self.last_lstseq, self.last_frame = ev.lstseq, ev.path
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
        elif isinstance(ev, SetCalibrated):
            self.sets_calibrated += 1
            self.clouds_setidx = ev.setidx
            self.clouds = dict(zip(ev.patches, ev.clouds, strict=True))
        elif isinstance(ev, SetBinned):
            self.sets_binned += 1
            if ev.reason:
                self.sets_not_binned[ev.setidx] = ev.reason
        elif isinstance(ev, ProductFailed):
            where = "nightly" if ev.setidx is None else f"set {ev.setidx}"
            message = f"{where} {ev.product} not written: {ev.reason}"
            self.products_failed.append(message)
            self.problems.append((ev.time, "error", None, message))
        elif isinstance(ev, NightlyFileWritten):
            self.nightly_files.append(ev.path)
        elif isinstance(ev, Spooled):
            self.spooled, self.caught_up = ev.spooled, ev.caught_up
        elif isinstance(ev, QueueDepths):
            self.queue_depths = dict(ev.depths)
        elif isinstance(ev, ReductionPaused):
            self.paused = True
        elif isinstance(ev, ReductionResumed):
            self.paused = False
        elif isinstance(ev, CameraLink):
            self.camera_answering = ev.answering
            if ev.answering:
                self.problems.append((ev.time, "warning", None, f"camera link back: {ev.detail}"))
            else:
                self.problems.append((ev.time, "error", None, f"camera link lost: {ev.detail}"))
        elif isinstance(ev, ActorFailed):
            self.fatal = f"{ev.source}: {ev.message}"
            self.problems.append((ev.time, "error", None, self.fatal))
        elif isinstance(ev, WarningEvent):
            self.warnings += 1
            self.problems.append((ev.time, "warning", ev.lstseq, f"{ev.source}: {ev.message}"))
