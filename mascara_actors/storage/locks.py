"""One writer per camera-night: an exclusive ``flock`` on ``{night_dir}/night.lock``.

The holder writes ``pid@host`` into the lock file so that a refused second writer can say
who holds it. The kernel drops the lock when the holder dies (even by kill -9), so a crash
never leaves the night locked.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from pathlib import Path
from types import TracebackType

from mascara_actors.errors import StorageError
from mascara_actors.storage.layout import LOCK_NAME

__all__ = ["NightLock"]

log = logging.getLogger(__name__)


class NightLock:
    """Exclusive, non-blocking lock of one night directory.

    Parameters
    ----------
    night_dir : path-like
        The camera-night directory; created if missing.

    Notes
    -----
    ``flock`` locks belong to an open file description, so two ``NightLock`` objects on the
    same directory exclude each other even inside one process.
    """

    def __init__(self, night_dir: str | Path) -> None:
        self.night_dir = Path(night_dir)
        self.path = self.night_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def holder(self) -> str:
        """What the lock file says about its holder (``pid@host``), or ``"unknown"``."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        return text or "unknown"

    def acquire(self) -> NightLock:
        """Take the lock or raise StorageError naming the process that holds it."""
        if self._fd is not None:
            return self
        self.night_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StorageError(
                f"{self.night_dir} is locked by another writer (process {self.holder()}, lock "
                f"file {self.path}): only one process may write a camera-night; stop that "
                "process or wait for it to finish") from None
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode(), 0)
        except OSError as exc:  # a full disk: the lock holds all the same, its holder unnamed
            log.debug("%s: the holder is not written (%s)", self.path, exc)
        log.debug("locked %s", self.path)
        return self

    def release(self) -> None:
        """Drop the lock; releasing twice is a no-op."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        log.debug("unlocked %s", self.path)

    def __enter__(self) -> NightLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
