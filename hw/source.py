"""What every frame source is: the contract between a camera (or a night on disk) and the
pipeline.

Three sources feed the camera actor, and the command line picks one:

* :func:`hw.live.live_frames`: a camera (serial or simulated) writing into the raw archive, a
  :class:`~hw.live.LiveFrames` that also counts what became of each slot (its ``stats``);
* :meth:`hw.recorded.RecordedNight.frame_source`: the science frames of a recorded night,
  each checked as it is read;
* :func:`hw.recorded.paced_frames`: recorded frames by path, as ``--replay`` plans them, as
  fast as they are taken or at the camera's cadence.

A :class:`FrameSource` is an async iterator of :class:`~mascara_actors.frames.FrameReady`
that can be closed, nothing more. That shape is the one the sources already had (an async
generator satisfies it as it is, as :func:`~hw.recorded.paced_frames` does), the one
:func:`mascara_actors.actors.pipeline.run_night` takes (an ``AsyncIterator[FrameReady]``),
and the one the camera actor already closes (``aclose``). A source is single use: it *is*
one night's stream, so there is no ``frames()`` method handing out a second one; an object
that can be replayed several times (:class:`~hw.recorded.RecordedNight`) makes a new source
each time.

The contract, checked for every source by :func:`hw.testing.check_frame_source`:

Order
    Frames come in strictly increasing lstseq (gaps allowed: a lost frame is left out). When
    a frame is yielded its file is complete at ``path`` and is the raw science frame of that
    lstseq (name and header).
End of night
    When the night is over ``__anext__`` raises ``StopAsyncIteration``, and goes on raising
    it on every later call.
Closing
    Every ``__anext__`` is a checkpoint, so a consumer waiting for a frame can always be
    cancelled. ``aclose()`` releases whatever the source holds (armed exposures, the readout
    stream, open files, tasks); it may be called at any time, more than once, and from a
    cancelled scope. A consumer cancelled while waiting for a frame leaves no task, open
    file or process behind once the source is closed, and a new source can start at once.
    After ``aclose`` the iteration is over.
Failure
    A source that cannot go on raises a :class:`~mascara_actors.errors.MascaraError` subclass
    whose message says what went wrong and what to do (the camera actor reports it and ends
    the night cleanly; any other exception would crash the night). A failed source is over.
    Bad arguments are refused with ``ValueError`` before any frame is taken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from mascara_actors.frames import FrameReady

__all__ = ["FrameSource"]


@runtime_checkable
class FrameSource(Protocol):
    """An async iterator of :class:`~mascara_actors.frames.FrameReady` that can be closed.

    See the module docstring for the contract (order, end of night, closing, failure).
    Async generators of ``FrameReady`` satisfy it as they are, and every source is an
    ``AsyncIterator[FrameReady]``.
    """

    def __aiter__(self) -> AsyncIterator[FrameReady]:
        """The source itself."""
        ...

    async def __anext__(self) -> FrameReady:
        """The next frame; ``StopAsyncIteration`` at the end of the night (and after it)."""
        ...

    async def aclose(self) -> None:
        """Stop the source and release what it holds; idempotent, safe when cancelled."""
        ...
