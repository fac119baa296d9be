"""Write files whole or not at all: temporary name, fsync, atomic rename, directory fsync.

A crash (kill -9, power cut) while writing leaves the old file, or no file, never half a
file; a stray ``*.tmp`` may remain and is removed by :func:`remove_stale_tmp` at start-up.
Every file the package writes goes through here (HDF5 files through
:func:`mascara_actors.storage.atomic.atomic_hdf5`, which uses the same temporary names).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
from pathlib import Path

from mascara_actors.errors import StorageError

__all__ = [
    "TMP_SUFFIX",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "remove_quietly",
    "remove_stale_tmp",
    "shared_tmp_path_for",
    "storage_error",
    "tmp_path_for",
    "write_remedy",
]

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"
"""Suffix of files being written; a file with it is never complete."""


def tmp_path_for(path: Path) -> Path:
    """The temporary name under which ``path`` is written: ``{path}.tmp``."""
    return path.with_name(path.name + TMP_SUFFIX)


def shared_tmp_path_for(path: Path) -> Path:
    """A temporary name for ``path`` that no other writer uses: ``.{name}.{random}.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}{TMP_SUFFIX}")


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so that a rename or unlink in it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_remedy(exc: OSError) -> str:
    """What to do about a failed write: free space for a full disk or a file size limit,
    otherwise look at the permissions and the disk."""
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return "free disk space (or raise the file size limit)"
    return "check the directory's permissions and the disk"


def storage_error(path: Path, exc: OSError) -> StorageError:
    """The StorageError for a failed write of ``path``, with what to do about it."""
    return StorageError(f"could not write {path}: {exc.strerror or exc}; "
                        f"no partial file was left and earlier files are untouched; "
                        f"{write_remedy(exc)} and run again")


def remove_quietly(path: Path) -> None:
    """Remove ``path`` if it exists."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True,
                       shared: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (tmp, fsync, rename, directory fsync).

    With ``durable=False`` the fsyncs are skipped: the file is still whole or absent after
    a process crash, but a power cut may lose it; batch writers then call ``os.sync()``
    once for the batch.

    With ``shared=True`` the temporary file gets a name of its own
    (``.{name}.{random}.tmp``, see :func:`shared_tmp_path_for`) instead of ``{path}.tmp``:
    for files that several processes may write at the same time, such as a cache shared by
    the cameras of a station. Each writer then renames a whole file of its own into place.

    Raises
    ------
    StorageError
        The write failed (disk full, file too large, permissions); ``path`` is unchanged.
    """
    path = Path(path)
    tmp = shared_tmp_path_for(path) if shared else tmp_path_for(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if shared else os.O_TRUNC),
                     0o644)
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
        remove_quietly(tmp)
        raise storage_error(path, exc) from exc
    return path


def atomic_write_text(path: str | Path, text: str, *, durable: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def remove_stale_tmp(directory: Path) -> list[Path]:
    """Remove the ``*.tmp`` files a crashed writer left in ``directory``; return them.

    Call it only while holding the night's lock: a live writer's tmp file looks the same.
    """
    removed: list[Path] = []
    if not Path(directory).is_dir():
        return removed
    for p in sorted(Path(directory).glob("*" + TMP_SUFFIX)):
        remove_quietly(p)
        removed.append(p)
        log.warning("removed %s, left by an interrupted writer", p)
    return removed
