"""Ctrl-C while a command imports its modules: :func:`imports_uninterrupted`."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

__all__ = ["imports_uninterrupted"]


@contextlib.contextmanager
def imports_uninterrupted() -> Iterator[None]:
    """Hold SIGINT (and so SIGTERM: :func:`mascara_actors.cli.main`) while a command imports
    its modules; a signal held is raised as KeyboardInterrupt once they are imported.

    A KeyboardInterrupt raised while an extension module initialises (numpy, astropy, erfa
    call back into Python there) can leave it half made: under load, about one Ctrl-C in
    eighty in the first two seconds crashed the process (SIGSEGV), ended it with a
    ``TypeError`` from erfa, or was lost. The imports take a second or two; what runs after
    them stops at once as before. A SIGINT ignored from the start (a background job) stays
    ignored.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt
