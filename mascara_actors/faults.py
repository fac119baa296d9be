"""Named phases of a night, where the crash tests stop it on purpose.

A night's products are written in phases (a set's fast file saved, its binning, its slow
file, each nightly combine, the nightly files done). :func:`phase` marks them. When the
environment variable :data:`FAULT_ENV` names one, the fault happens as the phase is reached:

- ``PHASE:KEY=SIGNAL`` (for example ``binning:1306884=SIGKILL``): the process sends that
  signal to its own process group, as ``kill -9 -PGID``, systemd's SIGTERM or a Ctrl-C would
  at that moment;
- ``PHASE:KEY=FILL:PATH``: the file system that holds ``PATH`` is filled up (a file at
  ``PATH`` grows until the kernel answers ENOSPC) and kept full, as by another program
  writing beside the station: space the night frees (removing its per-set files) is taken
  again within milliseconds, so every later write meets a full disk.

It fires once per process. Without the variable :func:`phase` costs one dictionary look-up.

The phases, in the order of an uninterrupted night (KEY in brackets):

=============== ======================================================================
fast-saved      a set's fast per-set file is on disk (setidx)
binning         a set is co-added, its binned image not yet written (setidx; in the
                binner's worker process)
slow-saving     a set's binned image is on disk, its slow per-set file not yet (setidx)
combined        a nightly file is renamed into place, the per-set files not yet removed
                (``fast`` or ``slow``)
nightly-done    both nightly files are written (``night``)
=============== ======================================================================
"""

from __future__ import annotations

import os
import signal
import threading
import time

__all__ = ["FAULT_ENV", "fill_file_system", "phase"]

FAULT_ENV = "MASCARA_ACTORS_FAULT"
"""``PHASE:KEY=SIGNAL``: the phase at which the process signals its own process group."""

_fired = False


def phase(name: str, key: object) -> None:
    """Mark phase ``name`` of ``key``; signal the process group when :data:`FAULT_ENV`
    names it (see the module docstring)."""
    global _fired
    spec = os.environ.get(FAULT_ENV)
    if not spec or _fired:
        return
    where, _, action = spec.partition("=")
    if where != f"{name}:{key}":
        return
    _fired = True
    if action.startswith("FILL:"):
        _keep_full(action.removeprefix("FILL:"))
        return
    sig = signal.Signals[action]
    os.killpg(os.getpgrp(), sig)
    if sig == signal.SIGKILL:
        time.sleep(60)  # never returns: the kernel takes the process first


def _keep_full(path: str) -> None:
    """Fill the file system of ``path`` now, and again every millisecond from a daemon
    thread until the process ends."""
    fill_file_system(path)

    def top_up() -> None:
        while True:
            time.sleep(0.001)
            fill_file_system(path)

    threading.Thread(target=top_up, name="fault-keep-full", daemon=True).start()


def fill_file_system(path: str | os.PathLike[str]) -> None:
    """Grow the file at ``path`` until its file system is full (ENOSPC)."""
    block = bytes(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError:  # ENOSPC: a smaller block may still fit; then it is full
                if len(block) == 1:
                    return
                block = block[: len(block) // 16 or 1]
    finally:
        os.close(fd)
