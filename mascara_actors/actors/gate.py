"""A pause switch for the reducer: while paused, frames wait at the camera edge (spooled)."""

from __future__ import annotations

from typing import Any

import anyio

__all__ = ["PauseGate"]


class PauseGate:
    """Holds the reducer before its next frame while paused; the camera never waits.

    The reducer calls :meth:`passing` before each frame. A live camera keeps writing its
    frames to the raw archive meanwhile (the spool), so pausing loses nothing.
    """

    def __init__(self) -> None:
        self._open = anyio.Event()
        self._open.set()
        self.paused = False
        self.passed = 0
        """Items let through so far."""
        self.last: Any = None
        """The latest item let through."""

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self._open = anyio.Event()

    def resume(self) -> None:
        self.paused = False
        self._open.set()

    async def passing(self, item: Any) -> None:
        """Wait while paused, then count ``item`` as let through."""
        while self.paused:
            await self._open.wait()
        self.passed += 1
        self.last = item
