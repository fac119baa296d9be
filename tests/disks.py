"""Real small file systems for the tests of a full disk (the tests run as root)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = ["tmpfs"]


@contextlib.contextmanager
def tmpfs(path: Path, size: int, *, inodes: int | None = None) -> Iterator[Path]:
    """A real file system of ``size`` bytes (and at most ``inodes`` files and directories)
    mounted at ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes is not None else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
