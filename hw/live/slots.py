"""The slots of a live run: which frame is due next, which slots gave none, when it ends.

A run exposes the slots from its first one, ``count`` of them or until stopped. Frames must
come in increasing slot order: a frame of a slot before the one due (before the run, repeated
or out of order) is *stale* and left out; a frame after the one due leaves a *gap*, the slots
in between counted as missing, logged and reported to ``on_gap`` with the reason. The run is
done after its last slot, or once ``max_frames`` frames were kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["GapReport", "SlotLedger"]

log = logging.getLogger(__name__)

GapReport = Callable[[int, int, str], None]
"""``on_gap(first, last, why)``: slots ``first..last`` (inclusive) gave no frame, and why."""

_LOST_ON_THE_WAY = (
    "exposed but lost on the way (dropped by the camera, or by the readout link's check as "
    "corrupt, short or cut off)"
)


class SlotLedger:
    """The bookkeeping of one run's slots.

    Parameters
    ----------
    camera
        Camera letter (for the log).
    count
        Slots of the run; None: until stopped.
    max_frames
        Done once this many frames were kept; None: no limit but ``count``.
    on_gap
        Called with ``(first, last, why)`` for each run of slots that gave no frame.
    """

    def __init__(
        self,
        camera: str,
        *,
        count: int | None,
        max_frames: int | None = None,
        on_gap: GapReport | None = None,
    ) -> None:
        self.camera = camera
        self.count = count
        self.max_frames = max_frames
        self.on_gap = on_gap
        self.first = -1
        """First slot of the run (set by :meth:`begin`)."""
        self.expected = -1
        """Next slot whose frame is due."""
        self.done = False
        """True once no more frame is wanted."""
        self.rearmed: tuple[int, str] | None = None
        """First slot and reason of the latest re-arm, until its first frame comes."""
        self.kept = 0
        """Frames kept (written and yielded)."""
        self.missing = 0
        self.stale = 0

    @property
    def last(self) -> int | None:
        """Last slot of a counted run, None without a count."""
        return None if self.count is None else self.first + self.count - 1

    @property
    def awaited(self) -> int:
        """The slot whose frame is awaited: after a re-arm, the first slot it armed."""
        return max(self.expected, self.rearmed[0] if self.rearmed else self.expected)

    def begin(self, first: int) -> None:
        """The run was armed from slot ``first``."""
        self.first = self.expected = first

    def rearm(self, first: int, why: str) -> None:
        """The camera was armed again from slot ``first``: the slots before it gave no frame
        for reason ``why``."""
        self.rearmed = (first, why)

    def admit(self, lstseq: int) -> bool:
        """A frame of slot ``lstseq`` came: True when it is to be kept (the slots skipped
        before it are reported as a gap), False when it is stale or past the last slot."""
        if lstseq < self.expected:
            self.stale += 1
            if lstseq < self.first:
                log.debug("frame %d from before this run (first %d) skipped", lstseq, self.first)
            else:
                log.warning(
                    "frame %d repeated or out of order (expected %d): skipped",
                    lstseq,
                    self.expected,
                )
            return False
        last = self.last
        if last is not None and lstseq > last:
            self.stale += 1
            self.end(f"frame {lstseq} is past the last slot {last}")
            return False
        if lstseq > self.expected:
            why = _LOST_ON_THE_WAY
            if self.rearmed is not None and self.expected < self.rearmed[0] <= lstseq:
                why = self.rearmed[1]
            self.gap(self.expected, lstseq - 1, why)
        self.rearmed = None
        self.expected = lstseq + 1
        if last is not None and lstseq == last:
            self.done = True
        return True

    def keep(self) -> None:
        """The frame admitted last was written and is yielded."""
        self.kept += 1
        if self.max_frames is not None and self.kept >= self.max_frames:
            self.done = True

    def end(self, why: str) -> None:
        """The run is over (``why``): the slots still due gave no frame."""
        last = self.last
        if last is not None and self.expected <= last:
            self.gap(self.expected, last, f"no frame came before the sequence ended ({why})")
            self.expected = last + 1
        self.done = True

    def gap(self, first: int, last: int, why: str) -> None:
        """Slots ``first..last`` gave no frame: count, log and report them."""
        self.missing += last - first + 1
        log.warning("slots %d..%d of camera %s gave no frame: %s", first, last, self.camera, why)
        if self.on_gap is not None:
            self.on_gap(first, last, why)
