"""Typed events: what every actor reports to the summariser and the console.

Each event is a frozen dataclass with a ``kind`` and serialises to one JSON line
(:func:`to_json`), the documented format of ``logs/events.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ActorFailed",
    "AstrometryDone",
    "Event",
    "FrameFailed",
    "FrameReducedEvent",
    "NightFinished",
    "NightStarted",
    "ProductFailed",
    "QueueDepths",
    "SetBinned",
    "SetSaved",
    "Spooled",
    "WarningEvent",
    "from_json",
    "to_json",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event; ``time`` is the wall clock (UNIX seconds)."""

    time: float = field(default_factory=time.time)

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class NightStarted(Event):
    night: str
    camera: str
    out_dir: str
    frames_expected: int
    """Science frames the source will deliver (0 when unknown, live)."""
    resumed_sets: int = 0
    """Sets already on disk from an earlier run of the same night."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameReducedEvent(Event):
    lstseq: int
    nstars: int
    nflagged: int
    latency_s: float
    """From the frame reaching the pipeline to its records being ready, seconds."""
    timings: dict[str, float]
    sky: float
    """Median sky level of the frame's stars, ADU per pixel."""
    ccdtemp: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameFailed(Event):
    lstseq: int
    path: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AstrometryDone(Event):
    lstseq: int
    setidx: int
    dr: float
    nstars: int
    nused: int
    aflag: int
    solved: bool
    """True for a full solve or refit, False when the check kept the model."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetSaved(Event):
    kind_: str
    setidx: int
    nframes: int
    nrecords: int
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetBinned(Event):
    """A set co-added into its binned image and measured (slow photometry)."""

    setidx: int
    nimages: int
    """Frames in the binned image."""
    nrefused: int
    """Frames of the set left out (another camera or exposure time, failed astrometry)."""
    flag: int
    """Flag of the binned set (0 good)."""
    path: str
    """The binned image, or "" when none was written."""
    nstars: int
    """Stars measured on it."""
    reason: str = ""
    """Why the set has no binned image ("" when it has one)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductFailed(Event):
    """A product of a set (``fast``, ``binned`` or ``slow``) or of the night (``fast
    nightly``, ``slow nightly``) could not be written; a restart makes it."""

    setidx: int | None
    """The set, or None for a nightly file."""
    product: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDepths(Event):
    depths: dict[str, int]
    """Messages waiting in each channel."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Spooled(Event):
    spooled: int
    """Frames waiting on disk because the reducer was busy (total so far)."""
    caught_up: int
    """Spooled frames the reducer has taken since (total so far)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WarningEvent(Event):
    source: str
    message: str
    lstseq: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorFailed(Event):
    """An actor cannot go on (e.g. its worker process keeps dying): the night stops early,
    saving what was measured."""

    source: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NightFinished(Event):
    frames_reduced: int
    frames_failed: int
    nightly_files: list[str]
    wall_s: float
    missing: list[str] = field(default_factory=list)
    """Products the night should have and has not (``set 12345: slow``, with the reason);
    empty when the night is complete."""


_TYPES = {
    cls.__name__: cls
    for cls in (
        NightStarted,
        FrameReducedEvent,
        FrameFailed,
        AstrometryDone,
        SetSaved,
        SetBinned,
        ProductFailed,
        QueueDepths,
        Spooled,
        WarningEvent,
        ActorFailed,
        NightFinished,
    )
}


def to_json(event: Event) -> str:
    """One JSON line: ``{"kind": ..., "time": ..., fields...}``."""
    data: dict[str, Any] = {"kind": event.kind}
    data.update(dataclasses.asdict(event))
    return json.dumps(data, separators=(",", ":"), default=float)


def from_json(line: str) -> Event:
    """Parse a line written by :func:`to_json`; ValueError for an unknown kind."""
    data = json.loads(line)
    kind = data.pop("kind")
    try:
        cls = _TYPES[kind]
    except KeyError:
        raise ValueError(f"unknown event kind {kind!r}") from None
    return cls(**data)
