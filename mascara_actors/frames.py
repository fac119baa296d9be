"""What every frame source yields: a raw science frame on disk, by its lstseq.

The live camera, a recorded night and the paced replay (``hw``) produce these; the actors
consume them. It lives at the bottom so that neither side imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["FrameReady"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameReady:
    """A raw science frame is on disk (the raw archive is the spool)."""

    path: Path
    lstseq: int
    arrived: float
    """Wall-clock time (time.time()) the frame reached the pipeline, for latency."""
