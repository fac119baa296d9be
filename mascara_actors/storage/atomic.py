"""Write HDF5 files whole or not at all, as :mod:`mascara_actors.atomic_files` does any file.

HDF5 files are written through :class:`_GuardedFile`, a file object that never lets an
OSError (disk full, file too large) reach the HDF5 library: HDF5 does not recover from a
failed write (it may crash the process while closing). The first error is kept, later
writes go to memory only, and the error is raised as :class:`StorageError` once HDF5 has
closed the file; the temporary file is then removed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py

from mascara_actors.atomic_files import fsync_dir, remove_quietly, storage_error, tmp_path_for
from mascara_actors.errors import StorageError

__all__ = ["LIBVER", "AtomicH5", "atomic_hdf5"]

LIBVER = ("v110", "v110")
"""The HDF5 file format every file is written in: HDF5 1.10's (readable by HDF5 1.10 and later,
2016 on). The chunk index of a single-chunk light curve is then a few bytes instead of a B-tree
node of 2 kB: a nightly file of 9,000 short light curves is a fifth of the size, written with
a third fewer calls into :class:`_GuardedFile`. The upper bound is pinned as well, so that a
newer HDF5 library writes the same bytes. (Paged aggregation would cut the writes to a few
hundred, but HDF5 stamps the superblock extension it needs with the time of day: two runs
would no longer write the same bytes.)"""


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
            raise storage_error(self.path, self._guard.error)


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
        raise storage_error(path, exc) from exc
    try:
        with h5py.File(guard, "w", track_order=True, libver=LIBVER) as f:
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
        remove_quietly(tmp)
        if isinstance(exc, OSError):
            raise storage_error(path, exc) from exc
        if (isinstance(exc, Exception) and not isinstance(exc, StorageError)
                and guard.error is not None):
            # HDF5 tripped over the failed write; report the cause, not the symptom
            raise storage_error(path, guard.error) from exc
        raise
