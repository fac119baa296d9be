"""The camera actor: frames from the live camera or a recorded night into the pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from anyio.abc import ObjectSendStream

from mascara_actors.actors.events import Event, Spooled
from mascara_actors.actors.messages import FrameReady
from mascara_actors.actors.spool import Spool

__all__ = ["run"]


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
    :meth:`Spool.put`. A replay as fast as possible has no camera to protect, so it waits for
    the reducer instead (plain backpressure) and nothing is spooled.
    """
    reported = 0
    async with events:
        try:
            async for frame in source:
                if stop.is_set():
                    break
                if live:
                    spool.put(frame)
                    if spool.spooled != reported:
                        reported = spool.spooled
                        await events.send(Spooled(spooled=spool.spooled, caught_up=spool.caught_up))
                else:
                    await spool.send(frame)
        finally:
            await spool.aclose()
