"""What the console passes around: the snapshot it draws and its UI messages.

:class:`Snapshot` is built from the night's state on the redraw timer (never per event);
widgets only ever draw a snapshot, so a flood of pipeline events cannot freeze the UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from textual.message import Message

__all__ = ["LightCurve", "Snapshot", "StarRequested"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the main screen shows at one redraw."""

    site: str
    """Site name, e.g. ``LaPalma``."""
    camera: str
    """Camera id, e.g. ``LPC``."""
    night: str
    utc: str
    """UTC of the camera clock (the night's time in a replay), ``YYYY-mm-dd HH:MM:SS``."""
    lst_hours: float
    """Local sidereal time at the reference longitude, hours of LST."""
    lstseq: int
    lstidx: int
    setidx: int
    sun_alt_deg: float
    """Altitude of the Sun, degrees."""
    night_state: str
    """``day``, ``civil twilight``, ``nautical twilight``, ``astronomical twilight``, ``night``."""
    frames_reduced: int
    frames_failed: int
    frames_expected: int
    rate_hz: float
    """Frames handled per second of wall time."""
    last_lstseq: int | None
    last_latency_s: float
    """Seconds from the frame's arrival to its records."""
    last_nstars: int
    """Stars expected on the last frame (catalogue, V <= 8.4, inside the edge margin): each
    has a record."""
    last_nflagged: int
    """... of which flagged (edge, saturated, bad sky ...); the others are clean."""
    astrometry_dr: float
    """Astrometric residual of the latest set, pixels."""
    aflag: int
    ccdtemp: float
    """CCD temperature of the latest frame, degrees C."""
    disk_free_gb: float
    """Free space on the output disk, GB (1e9 bytes)."""
    spooled: int
    queue_depths: dict[str, int] = field(default_factory=dict)
    latencies: tuple[float, ...] = ()
    problems: tuple[tuple[float, str, int | None, str], ...] = ()
    paused: bool = False
    stopping: bool = False
    finished: bool = False
    fatal: str | None = None
    latest_frame: Path | None = None
    phase: str = ""
    """What the station is doing (live camera)."""
    camera_link: str = ""
    """The camera link in a few words (live camera)."""
    calibration: str = ""
    """The calibration the sets are calibrated with as they are saved ("" none)."""
    clouds_setidx: int | None = None
    clouds: tuple[tuple[int, float], ...] = ()
    """(sky patch, median clouds in mag) of the latest calibrated set."""


@dataclass(frozen=True, slots=True)
class LightCurve:
    """One star's light curve so far (what the star look-up plots)."""

    hip: int
    vmag: float
    lstseq: np.ndarray
    jd: np.ndarray
    """JD (UTC) at mid-exposure."""
    mag: np.ndarray
    """Instrumental magnitude ``25 - 2.5 log10(flux0)`` (aperture 0), NaN where flux <= 0."""
    flagged: np.ndarray
    """True where the record's flag is non-zero."""


class StarRequested(Message):
    """The operator asked for the light curve of a HIP number (raw text as typed)."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__()
