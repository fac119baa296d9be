"""The camera actor: frames from the live camera or a recorded night into the pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from anyio.abc import ObjectSendStream

from mascara_actors.actors.events import Event, Spooled
from mascara_actors.actors.messages import FrameReady
from mascara_actors.actors.spool import Spool

__all__ = ["close_source", "run"]


async def run(
    *,
    source: AsyncIterator[FrameReady],
    spool: Spool[FrameReady],
    events: ObjectSendStream[Event],
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
    """
    reported = 0
    async with events:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_when_set, stop, tg.cancel_scope)
                async for frame in source:
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
            await close_source(source)


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
