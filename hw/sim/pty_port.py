"""The simulated device's end of the control line: a pty behind a stable path.

A pty's ``/dev/pts/N`` name cannot be chosen, so the port publishes a stable symlink (like
udev's ``/dev/serial/by-id`` links) and re-points it when it comes back after a ``vanish``;
the driver reopens that path with backoff. Writes never block the device: what the pty
cannot take is dropped and counted, as a UART with a full buffer would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tty
from collections.abc import Callable
from pathlib import Path

import anyio

from hw.protocol import COMMANDS, EVT, LineParser, Message

__all__ = ["PtyPort"]

log = logging.getLogger(__name__)

_VANISH_AFTER_S = 0.1
"""Real seconds between a ``vanish`` and the pty closing: the host reads the reply first
(closing a pty discards what it has not read)."""


class PtyPort:
    """Serve the camera protocol on a pty whose stable path is ``link_path``.

    Parameters
    ----------
    link_path
        The stable symlink to create (and re-point after a vanish).
    on_open
        Called each time a new pty is ready (the device publishes its ready file then).
    """

    def __init__(self, link_path: Path, *, on_open: Callable[[], None]) -> None:
        self.link_path = link_path
        self.pts = ""
        """Current pty, ``/dev/pts/N``."""
        self.write_drops = 0
        """Writes the pty did not take whole."""
        self._on_open = on_open
        self._master: int | None = None
        self._scope: anyio.CancelScope | None = None
        self._down_s: float | None = None
        self._evt_seq = 0

    def write(self, data: bytes) -> None:
        """Write to the pty without ever blocking; what does not fit is dropped (counted)."""
        master = self._master
        if master is None:
            self.write_drops += 1
            return
        try:
            n = os.write(master, data)
        except OSError:
            n = 0
        if n < len(data):
            self.write_drops += 1

    def emit(self, name: str, *args: object) -> None:
        """Send an asynchronous event ``EVT,<name>,<args>``."""
        self._evt_seq = self._evt_seq % 99_999 + 1
        self.write(Message(self._evt_seq, EVT, (name, *map(str, args))).encode())

    def vanish(self, down_s: float) -> None:
        """Close the pty shortly (the reply being sent is read first) for ``down_s`` real
        seconds, then come back on the same stable path."""
        if self._scope is None:
            return
        self._down_s = down_s
        self._scope.deadline = min(self._scope.deadline, anyio.current_time() + _VANISH_AFTER_S)

    async def serve(self, handle: Callable[[Message], None]) -> None:
        """Pass each command read to ``handle``, for ever; after a vanish, come back."""
        parser = LineParser(COMMANDS)
        while True:
            master, slave = self._open()
            parser.reset()
            self._on_open()
            log.info("serving the protocol on %s -> %s", self.link_path, self.pts)
            try:
                with anyio.CancelScope() as scope:
                    self._scope = scope
                    await self._read(master, parser, handle)
            finally:
                self._master, self._scope = None, None
                anyio.notify_closing(master)
                os.close(master)
                os.close(slave)
            down_s, self._down_s = self._down_s or 0.0, None
            log.info("vanishing for %.2f s", down_s)
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()
            await anyio.sleep(down_s)

    def _open(self) -> tuple[int, int]:
        """A new pty (raw, non-blocking master) with the stable link pointing at it."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing before the host configures the port
        os.set_blocking(master, False)
        self.pts = os.ttyname(slave)
        tmp = self.link_path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.pts)
        tmp.replace(self.link_path)
        self._master = master
        return master, slave

    @staticmethod
    async def _read(master: int, parser: LineParser, handle: Callable[[Message], None]) -> None:
        while True:
            await anyio.wait_readable(master)
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                await anyio.sleep(0.01)
                continue
            for msg in parser.feed(data):
                handle(msg)
