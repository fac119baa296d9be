"""A command on a terminal of its own (a pty), as an operator's shell would run it."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence

ON_A_TERMINAL = (
    "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
"""Runs ``argv[1:]`` as the leader of a new session whose controlling terminal is stdin:
closing the pty's other end hangs it up (SIGHUP), as closing a window does."""


class Terminal:
    """The terminal's end of a pty, and the process running on it."""

    def __init__(self, proc: subprocess.Popen[bytes], fd: int) -> None:
        self.proc = proc
        self.fd = fd

    def read_until(self, done: Callable[[bytes], bool], timeout_s: float) -> bytes:
        """What the terminal shows until ``done`` of it is true, the process ends or
        ``timeout_s`` pass (reading keeps a full-screen program from blocking on its
        writes)."""
        drawn = b""
        deadline = time.monotonic() + timeout_s
        while not done(drawn) and time.monotonic() < deadline and self.proc.poll() is None:
            if select.select([self.fd], [], [], 0.5)[0]:
                with contextlib.suppress(OSError):
                    drawn += os.read(self.fd, 65536)
        return drawn

    def hang_up(self) -> None:
        """Close the terminal: the kernel hangs up the process's session."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@contextlib.contextmanager
def on_a_terminal(cmd: Sequence[str], env: dict[str, str]) -> Iterator[Terminal]:
    """Run ``cmd`` on a new pty; on leaving, a process still running is killed and the
    terminal closed."""
    fd, tty = os.openpty()
    proc = subprocess.Popen([sys.executable, "-c", ON_A_TERMINAL, *cmd], stdin=tty,
                            stdout=tty, stderr=tty, env=env)
    os.close(tty)
    terminal = Terminal(proc, fd)
    try:
        yield terminal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        terminal.hang_up()
