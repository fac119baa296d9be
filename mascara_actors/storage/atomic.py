"""Write files whole or not at all: temporary name, fsync, atomic rename, directory fsync.

A crash (kill -9, power cut) while writing leaves the old file, or no file, never half a
file; a stray ``*.tmp`` may remain and is removed by :func:`remove_stale_tmp` at start-up.

HDF5 files are written through :class:`_GuardedFile`, a file object that never lets an
OSError (disk full, file too large) reach the HDF5 library: HDF5 does not recover from a
failed write (it may crash the process while closing). The first error is kept, later
writes go to memory only, and the error is raised as :class:`StorageError` once HDF5 has
closed the file; the temporary file is then removed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py

from mascara_actors.errors import StorageError
from mascara_actors.storage.layout import TMP_SUFFIX

__all__ = [
    "atomic_hdf5",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "remove_stale_tmp",
    "tmp_path_for",
]

log = logging.getLogger(__name__)


def tmp_path_for(path: Path) -> Path:
    """The temporary name under which ``path`` is written: ``{path}.tmp``."""
    return path.with_name(path.name + TMP_SUFFIX)


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so that a rename or unlink in it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _storage_error(path: Path, exc: OSError) -> StorageError:
    hint = ("free disk space (or raise the file size limit)"
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
            else "check the directory's permissions and the disk")
    return StorageError(f"could not write {path}: {exc.strerror or exc}; "
                        f"no partial file was left and earlier files are untouched; {hint} "
                        "and run again")


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (tmp, fsync, rename, directory fsync).

    With ``durable=False`` the fsyncs are skipped: the file is still whole or absent after
    a process crash, but a power cut may lose it; batch writers then call ``os.sync()``
    once for the batch.

    Raises
    ------
    StorageError
        The write failed (disk full, file too large, permissions); ``path`` is unchanged.
    """
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        _remove_quietly(tmp)
        raise _storage_error(path, exc) from exc
    return path


def atomic_write_text(path: str | Path, text: str, *, durable: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def remove_stale_tmp(directory: Path) -> list[Path]:
    """Remove the ``*.tmp`` files a crashed writer left in ``directory``; return them.

    Call it only while holding the night's lock: a live writer's tmp file looks the same.
    """
    removed = []
    if not Path(directory).is_dir():
        return removed
    for p in sorted(Path(directory).glob("*" + TMP_SUFFIX)):
        _remove_quietly(p)
        removed.append(p)
        log.warning("removed %s, left by an interrupted writer", p)
    return removed


class _GuardedFile:
    """Binary file object for h5py's ``fileobj`` driver that never raises OSError.

    After the first failed write every later write is kept in memory (so HDF5 can read back
    what it wrote and close cleanly) and :attr:`error` holds the failure.
    """

    def __init__(self, path: Path) -> None:
        self._f = open(path, "w+b", buffering=0)  # noqa: SIM115 - closed by close()
        self._pos = 0
        self._size = 0
        self._overlay: list[tuple[int, bytes]] = []
        self.error: OSError | None = None

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == os.SEEK_SET:
            self._pos = pos
        elif whence == os.SEEK_CUR:
            self._pos += pos
        else:
            self._pos = self._size + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        if self.error is None:
            try:
                self._f.seek(self._pos)
                rest = view
                while rest:
                    rest = rest[self._f.write(rest):]
            except OSError as exc:
                self.error = exc
        if self.error is not None:
            self._overlay.append((self._pos, bytes(view)))
        self._pos += n
        self._size = max(self._size, self._pos)
        return n

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(self._size - self._pos, 0)
        start = self._pos
        try:
            self._f.seek(start)
            buf = bytearray(self._f.read(size) or b"")
        except OSError as exc:
            self.error = self.error or exc
            buf = bytearray()
        # HDF5 may read past what was written (fresh space reads as zeros)
        buf.extend(b"\0" * (size - len(buf)))
        for off, chunk in self._overlay:
            lo, hi = max(off, start), min(off + len(chunk), start + size)
            if lo < hi:
                buf[lo - start:hi - start] = chunk[lo - off:hi - off]
        self._pos += size
        return bytes(buf)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                self._f.truncate(size)
            except OSError as exc:
                self.error = exc
        self._size = size
        return size

    def flush(self) -> None:
        # unbuffered FileIO: nothing to flush; durability comes from fsync()
        return None

    def fsync(self) -> None:
        if self.error is None:
            try:
                os.fsync(self._f.fileno())
            except OSError as exc:
                self.error = exc

    def close(self) -> None:
        self._overlay.clear()
        with contextlib.suppress(OSError):
            self._f.close()


class AtomicH5:
    """An HDF5 file being written under a temporary name (see :func:`atomic_hdf5`)."""

    def __init__(self, path: Path, file: h5py.File, guard: _GuardedFile) -> None:
        self.path = path
        """Final path of the file."""
        self.file = file
        """The open :class:`h5py.File` to fill."""
        self._guard = guard

    def check(self) -> None:
        """Raise StorageError now if a write already failed (lets long writers stop early)."""
        if self._guard.error is not None:
            raise _storage_error(self.path, self._guard.error)


@contextlib.contextmanager
def atomic_hdf5(
    path: str | Path,
    *,
    verify: Callable[[Path], None] | None = None,
) -> Iterator[AtomicH5]:
    """Write an HDF5 file whole under ``{path}.tmp`` and rename it into place.

    Parameters
    ----------
    path : path-like
        Final file name. Its directory must exist.
    verify : callable, optional
        Called with the temporary path after the data are on disk and before the rename;
        it raises to refuse the file (the temporary file is then removed).

    Yields
    ------
    AtomicH5
        ``.file`` is the h5py File (track_order on) to fill; ``.check()`` raises early if a
        write already failed.

    Raises
    ------
    StorageError
        A write, fsync or rename failed; ``path`` is unchanged and no tmp file is left.
    """
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        guard = _GuardedFile(tmp)
    except OSError as exc:
        raise _storage_error(path, exc) from exc
    try:
        with h5py.File(guard, "w", track_order=True) as f:
            handle = AtomicH5(path, f, guard)
            yield handle
        guard.fsync()
        handle.check()
        guard.close()
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        guard.close()
        _remove_quietly(tmp)
        if isinstance(exc, OSError):
            raise _storage_error(path, exc) from exc
        if (isinstance(exc, Exception) and not isinstance(exc, StorageError)
                and guard.error is not None):
            # HDF5 tripped over the failed write; report the cause, not the symptom
            raise _storage_error(path, guard.error) from exc
        raise
