"""Ctrl-C while a command imports its modules (:func:`imports_uninterrupted`), and SIGTERM
that stops what Ctrl-C stops (:func:`sigterm_as_sigint`)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

__all__ = ["imports_uninterrupted", "sigterm_as_sigint"]


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


@contextlib.contextmanager
def sigterm_as_sigint() -> Iterator[list[int]]:
    """Inside, SIGTERM acts as SIGINT: a KeyboardInterrupt where Python's own SIGINT handler
    is in place. The list yielded gets each SIGTERM received, to tell the two apart.

    For what runs outside an event loop's own signal handling: the start of every command
    (:func:`mascara_actors.cli.main`), and a station's dawn summary, after the loop has
    put back the default action (death without a word).
    """
    terminated: list[int] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        terminated.append(signum)
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield terminated
    finally:
        signal.signal(signal.SIGTERM, previous)
