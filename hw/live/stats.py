"""The counters of a live source: what became of the slots it armed."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["LiveStats"]


@dataclass(frozen=True, slots=True)
class LiveStats:
    """Counters of a :class:`~hw.live.source.LiveFrames` source, as read from its
    :attr:`~hw.live.source.LiveFrames.stats`: a snapshot, which the source does not change
    (read ``stats`` again for newer counts).

    Snapshots add up field by field (``a + b``), e.g. over the sequences of a night.
    """

    frames: int = 0
    """Frames written to the archive and yielded."""
    missing: int = 0
    """Armed slots whose frame never came (dropped by the camera or the readout check)."""
    rejected: int = 0
    """Frames received but unusable (wrong shape, impossible header values)."""
    stale: int = 0
    """Frames of slots before the first one, repeated or out of order (not yielded)."""
    write_failed: int = 0
    """Frames that could not be written to the archive (not yielded)."""
    arms: int = 0
    """Sequences armed (the first one plus re-arms after the camera lost its sequence)."""
    link_errors: int = 0
    """Polls or re-arms that failed because the camera was silent or away (retried)."""
    existing: int = 0
    """Frames whose raw file already existed: the file on disk was kept, the frame left out."""

    def __add__(self, other: LiveStats) -> LiveStats:
        if not isinstance(other, LiveStats):
            return NotImplemented
        return LiveStats(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(LiveStats))
        )
