"""The camera edge: hand frames to the reducer without ever blocking the camera.

When the reducer's inbox is full, frames wait as paths in an overflow queue (the raw frames
themselves are already on disk, in the raw archive: that is the spool). A feeder task moves
them into the inbox, oldest first, as space frees up. Nothing is dropped, and the counts of
spooled and caught-up frames are kept for the summariser.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectSendStream

__all__ = ["Spool", "SpoolStatistics"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SpoolStatistics:
    """A snapshot of a :class:`Spool` (cheap, safe to hand to another task)."""

    spooled: int
    """Items that had to wait in the overflow, total so far."""
    caught_up: int
    """Overflow items delivered to the stream since, total so far."""
    waiting: int
    """Items in the overflow now (``spooled - caught_up``)."""
    buffer_used: int
    """Items in the stream's buffer now."""
    max_buffer_size: float
    """Capacity of the stream's buffer."""


class Spool(Generic[T]):
    """A never-blocking front for a bounded send stream, with FIFO overflow.

    Use :meth:`put` from the camera (a plain function: it never waits), run :meth:`feed` in
    a task of the same task group, and :meth:`aclose` when the camera is done: the feeder
    delivers what is still waiting, then closes the stream. Items reach the stream in the
    order they were put, whether they waited or not.

    Parameters
    ----------
    send
        The bounded send end of the reducer's inbox; the spool owns it and closes it.
    """

    def __init__(self, send: MemoryObjectSendStream[T]) -> None:
        self._send = send
        self._overflow: deque[T] = deque()
        self._wake = anyio.Event()
        self._closing = False
        self.spooled = 0
        """Items that had to wait in the overflow (total)."""
        self.caught_up = 0
        """Overflow items delivered since (total)."""

    @property
    def waiting(self) -> int:
        """Items in the overflow now."""
        return len(self._overflow)

    def statistics(self) -> SpoolStatistics:
        """Counts of the spool and of its stream, now."""
        stream = self._send.statistics()
        return SpoolStatistics(
            spooled=self.spooled,
            caught_up=self.caught_up,
            waiting=len(self._overflow),
            buffer_used=stream.current_buffer_used,
            max_buffer_size=stream.max_buffer_size,
        )

    def put(self, item: T) -> None:
        """Deliver ``item`` now if the stream has room, else queue it; never blocks.

        Raises
        ------
        anyio.ClosedResourceError
            After :meth:`aclose`.
        anyio.BrokenResourceError
            When the receiving side is gone (the reducer stopped).
        """
        if self._closing:
            raise anyio.ClosedResourceError("the spool is closing: no more frames can be put")
        if not self._overflow:
            try:
                self._send.send_nowait(item)
                return
            except anyio.WouldBlock:
                pass
        # Behind earlier overflow items or a full stream: wait in line (FIFO).
        self._overflow.append(item)
        self.spooled += 1
        self._wake.set()

    async def send(self, item: T) -> None:
        """Deliver ``item``, waiting for room (for sources that may wait: fast replays)."""
        if self._overflow:
            self.put(item)
        else:
            await self._send.send(item)

    async def feed(self) -> None:
        """Move overflow items into the stream as it frees up; returns once closed and empty."""
        while True:
            while self._overflow:
                await self._send.send(self._overflow[0])
                # No checkpoint between the send completing and the pop: put() cannot slip
                # an item past the one just delivered.
                self._overflow.popleft()
                self.caught_up += 1
            if self._closing:
                await self._send.aclose()
                return
            await self._wake.wait()
            self._wake = anyio.Event()

    async def aclose(self) -> None:
        """No more puts; :meth:`feed` closes the stream after the overflow drains."""
        self._closing = True
        self._wake.set()
