"""A pause switch for the reducer: while paused, frames wait at the camera edge (spooled).

The console's pause and resume commands act on it; the reducer reports each pause and resume
as events when they happen (not when the next frame comes), so the night's state and log see
even a pause shorter than a frame.
"""

from __future__ import annotations

import anyio

__all__ = ["PauseGate"]


class PauseGate:
    """Holds the reducer before its next frame while paused; the camera never waits.

    The reducer calls :meth:`wait_open` before each frame. A live camera keeps writing its
    frames to the raw archive meanwhile (the spool), so pausing loses nothing.
    """

    def __init__(self) -> None:
        self._open = anyio.Event()
        self._open.set()
        self._closed = anyio.Event()
        self.paused = False

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self._open = anyio.Event()
            self._closed.set()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._closed = anyio.Event()
            self._open.set()

    async def wait_closed(self) -> None:
        """Wait until the gate is paused (returns at once if it is)."""
        while not self.paused:
            await self._closed.wait()

    async def wait_open(self) -> float:
        """Wait while paused; returns the seconds waited (0.0 when it was open)."""
        if not self.paused:
            return 0.0
        start = anyio.current_time()
        while self.paused:
            await self._open.wait()
        return anyio.current_time() - start
