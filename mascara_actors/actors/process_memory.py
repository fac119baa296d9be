"""How a process that reduces frames handles its memory: :func:`prepare_process_memory`.

A frame's arrays are tens of MB each, made and freed again for every frame. Two defaults
make the kernel do that work again and again:

- glibc serves blocks that large with mmap and unmaps them when they are freed, so every
  frame paid again for the page faults of fresh memory: about a tenth of a replay's CPU
  time (a quarter in worker threads). With mmap off for large blocks, no trimming of the
  heap and one arena for all threads, the next frame's arrays reuse the same pages. Freed
  memory is then not given back to the system before the process ends, which is what a
  reduction wants: it needs the same again for the next frame.
- numpy asks the kernel for transparent huge pages for every array of 4 MB or more. Where
  the kernel may compact memory to find them (``defrag`` ``madvise``, the usual setting),
  a fault of fresh memory waits for that compaction, and a machine that reads an archive
  has its memory full of cached files: 2.2-2.8 s per 0.5 GiB on this machine, against
  0.2 s with ordinary pages. A reducing process grows to about 1 GB once, so that was 3-5 s
  of every worker's first night; the nights after it reuse the same memory either way.

Python's cyclic garbage collector, besides, went through every object of the imported
modules (about 170,000) at each of its full collections: 0.35 s of a night of 120 frames,
2 % of its CPU. The objects that exist when the process is prepared, its modules' above
all, live as long as it does: they are frozen, left out of every collection after (0.21 s
a night then).
"""

from __future__ import annotations

import ctypes
import gc
import importlib

__all__ = ["prepare_process_memory"]

_M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc malloc.h)
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_KEPT: bool | None = None


def prepare_process_memory() -> bool:
    """Have this process keep freed memory for reuse, take fresh memory without huge pages
    and leave its objects so far out of garbage collections (the module docstring says
    why); True when the C allocator took the settings.

    Once per process; the allocator part is a no-op (False) where the C library is not
    glibc. Its arena setting reaches only threads that have not allocated yet: a process
    whose threads exist before (a Dask worker's) needs ``MALLOC_ARENA_MAX=1`` in its
    environment from the start.
    """
    global _KEPT
    if _KEPT is None:
        gc.freeze()
        _no_huge_pages()
        _KEPT = _keep_freed_memory()
    return _KEPT


def _keep_freed_memory() -> bool:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(
        mallopt(param, value) == 1
        for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
    )


def _no_huge_pages() -> None:
    # numpy's own switch (what NUMPY_MADVISE_HUGEPAGE=0 sets when numpy is imported); its
    # module moved in numpy 2
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy 1.26
        multiarray = importlib.import_module("numpy.core.multiarray")
    setting = getattr(multiarray, "_set_madvise_hugepage", None)
    if setting is not None:
        setting(False)
