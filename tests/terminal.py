"""A command on a terminal of its own (a pty), as an operator's shell would run it."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

ON_A_TERMINAL = (
    "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
"""Runs ``argv[1:]`` as the leader of a new session whose controlling terminal is stdin:
closing the pty's other end hangs it up (SIGHUP), as closing a window does."""


def start_on_a_terminal(cmd: Sequence[str], env: dict[str, str]
                        ) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``cmd`` on a new pty; the process and the terminal's end (read what it draws
    from it, close it to hang up)."""
    terminal, tty = os.openpty()
    proc = subprocess.Popen([sys.executable, "-c", ON_A_TERMINAL, *cmd], stdin=tty,
                            stdout=tty, stderr=tty, env=env)
    os.close(tty)
    return proc, terminal


def read_until(terminal: int, proc: subprocess.Popen[bytes], done: Callable[[bytes], bool],
               timeout_s: float) -> bytes:
    """What the terminal shows until ``done`` of it is true, the process ends or
    ``timeout_s`` pass (reading keeps a full-screen program from blocking on its writes)."""
    drawn = b""
    deadline = time.monotonic() + timeout_s
    while not done(drawn) and time.monotonic() < deadline and proc.poll() is None:
        if select.select([terminal], [], [], 0.5)[0]:
            with contextlib.suppress(OSError):
                drawn += os.read(terminal, 65536)
    return drawn
