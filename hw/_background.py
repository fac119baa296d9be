"""Base of the hardware links that read in a background task while they are open."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc

__all__ = ["BackgroundLink"]


class BackgroundLink(abc.ABC):
    """An async resource that runs :meth:`_run` in its own task group while open.

    ``async with link:`` opens the streams (:meth:`_open_streams`) and starts the task;
    :meth:`aclose` cancels the task, waits for it and closes the streams. Closing twice is a
    no-op (the trio ``AsyncResource`` contract).
    """

    _tg: anyio.abc.TaskGroup | None = None

    @abc.abstractmethod
    def _open_streams(self) -> None:
        """Create the streams the background task feeds."""

    @abc.abstractmethod
    def _streams(self) -> Iterable[Any]:
        """The streams to close on :meth:`aclose` (None entries are skipped)."""

    @abc.abstractmethod
    async def _run(self) -> None:
        """The background task."""

    async def __aenter__(self) -> Self:
        self._open_streams()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None

    async def aclose(self) -> None:
        """Stop the background task and close the streams; closing twice is a no-op."""
        tg, self._tg = self._tg, None
        if tg is None:
            return
        tg.cancel_scope.cancel()
        await tg.__aexit__(None, None, None)
        for stream in self._streams():
            if stream is not None:
                await stream.aclose()
