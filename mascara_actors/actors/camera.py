"""The camera actor: frames from the live camera or a recorded night into the pipeline."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
from anyio.abc import ObjectSendStream
from anyio.streams.memory import MemoryObjectSendStream

from mascara_actors.actors.spool import Spool
from mascara_actors.errors import MascaraError
from mascara_actors.frames import FrameReady
from mascara_actors.messages import ActorFailed, Event, Spooled

__all__ = ["close_source", "run"]

log = logging.getLogger(__name__)


async def run(
    *,
    source: AsyncIterator[FrameReady],
    spool: Spool[FrameReady],
    events: MemoryObjectSendStream[Event],
    stop: anyio.Event,
    live: bool,
) -> None:
    """Forward every frame of ``source`` until it ends or ``stop`` is set.

    A live camera (or a replay paced to the real cadence) must never wait: frames go through
    :meth:`Spool.put`, and a new spool count is reported only if the event channel has room.
    A replay as fast as possible has no camera to protect, so it waits for the reducer
    instead (plain backpressure) and nothing is spooled.

    Setting ``stop`` ends the wait for the next frame at once (a live camera may be
    seconds away from its next readout); the frame being handed over, if any, is not
    forwarded: it stays in the raw archive for the restart.

    A source that fails (a camera that stays away after its driver gave up reconnecting, a
    raw archive that cannot be written) stops the night like ``stop``: the failure is
    reported as :class:`~.events.ActorFailed`, and the frames already forwarded are reduced
    and saved.
    """
    reported = 0
    frames = _until_failure(source, events, stop)
    async with events:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_when_set, stop, tg.cancel_scope)
                async for frame in frames:
                    if live:
                        spool.put(frame)
                        if spool.spooled != reported:
                            try:
                                events.send_nowait(
                                    Spooled(spooled=spool.spooled, caught_up=spool.caught_up)
                                )
                                reported = spool.spooled
                            except anyio.WouldBlock:
                                pass  # the monitor reports the counts again within a second
                    else:
                        await spool.send(frame)
                tg.cancel_scope.cancel()
        finally:
            await spool.aclose()
            await close_source(frames)
            await close_source(source)


async def _until_failure(
    source: AsyncIterator[FrameReady], events: ObjectSendStream[Event], stop: anyio.Event
) -> AsyncIterator[FrameReady]:
    """``source``, ended cleanly (``stop`` set, the failure reported) if it raises."""
    try:
        async for frame in source:
            yield frame
    except MascaraError as exc:
        log.error("the camera stopped the night: %s", exc)
        await events.send(
            ActorFailed(
                source="camera",
                message=f"{exc} (the night stops; complete sets are saved, run again to resume)",
            )
        )
        stop.set()  # after the report: setting it cancels this task's scope


async def close_source(source: AsyncIterator[object]) -> None:
    """Close ``source`` if it can be closed (an async generator left at a ``yield`` when the
    camera stopped), even inside a cancelled scope."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


async def _cancel_when_set(stop: anyio.Event, scope: anyio.CancelScope) -> None:
    await stop.wait()
    scope.cancel()
