"""The binner actor: co-add each set of 50 and measure the fainter stars on it.

The reducer's worker co-adds each frame it reduces into its set's
:class:`~mascara_actors.binning.SetStack` (memory stays at a few images). The binner collects
the paths of a set's reduced frames; when the set is complete (the first frame of the next
set arrives, or the night ends) one job finishes the set in the reducer's worker, writes the
Rice-compressed binned image and measures the slow photometry (V <= 10):
:func:`~mascara_actors.actors.jobs.finish_set`. When that stack does not hold exactly the
set's frames (a restart, a worker that died, a solution that changed within the set) the
binner's own worker reads and calibrates them again, one at a time:
:func:`~mascara_actors.actors.jobs.bin_set`; the image is the same either way. Only the
small slow records come back, and go on to the slow saver, also for a set too short to bin
(its slow station row records that it has no image, and why).

A set whose binning fails (a full disk, an unreadable set) is reported with a
:class:`~.events.ProductFailed` event and left for the restart, which bins it again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from mascara_actors.actors.worker import Worker, failure_reason
from mascara_actors.errors import MascaraError
from mascara_actors.messages import (
    BIN_SET_JOB,
    FINISH_SET_JOB,
    BinnedOutput,
    Event,
    FrameForBinning,
    FrameReduced,
    ProductFailed,
    SetBinned,
    StoredSolution,
    WorkerSpec,
)

if TYPE_CHECKING:
    from mascara_actors.astrometry import AstrometricSolution

__all__ = ["run"]

log = logging.getLogger(__name__)


async def run(
    *,
    inbox: ObjectReceiveStream[FrameReduced | FrameForBinning],
    outbox: ObjectSendStream[BinnedOutput],
    events: ObjectSendStream[Event],
    worker: Worker,
    reducer_worker: Worker | None = None,
    spec: WorkerSpec,
    out_dir: Path,
    stopping: anyio.Event,
) -> None:
    """Bin every complete set of ``inbox`` and send its slow photometry to ``outbox``.

    The set's camera model is the solution of its last frame (the best the set reached);
    each frame carries its own astrometry flag, so a frame that could not be checked is
    left out of the image alone. On a graceful stop the open set is left for the restart.
    ``reducer_worker``: the worker whose reduction jobs grew the sets' stacks (None: every
    set is read from disk in ``worker``).
    """
    frames: list[tuple[str, int]] = []
    current: int | None = None
    solution: AstrometricSolution | StoredSolution | None = None

    async def flush(setidx: int, solution: AstrometricSolution | StoredSolution) -> None:
        job = (spec, setidx, list(frames), solution, str(out_dir))
        try:
            grown: BinnedOutput | None = None
            if reducer_worker is not None:
                grown = await reducer_worker.run(FINISH_SET_JOB, *job)
            result: BinnedOutput = (
                grown if grown is not None else await worker.run(BIN_SET_JOB, *job)
            )
        except Exception as exc:  # fault isolation: one set must not stop the night
            if not isinstance(exc, MascaraError | anyio.BrokenWorkerProcess):
                log.exception("binning set %d crashed", setidx)
            await events.send(
                ProductFailed(setidx=setidx, product="binned", reason=failure_reason(exc))
            )
            return
        await events.send(
            SetBinned(
                setidx=result.setidx,
                nimages=result.nimages,
                nrefused=result.nrefused,
                flag=result.flag,
                path=result.path or "",
                nstars=int(result.records.size),
                reason=result.reason or "",
            )
        )
        await outbox.send(result)

    await anyio.to_thread.run_sync(lambda: out_dir.mkdir(parents=True, exist_ok=True))
    async with inbox, outbox, events:
        async for msg in inbox:
            if current is not None and solution is not None and msg.setidx != current:
                await flush(current, solution)
                frames.clear()
            current, solution = msg.setidx, msg.solution
            frames.append((str(msg.path), msg.aflag))
        if frames and current is not None and solution is not None and not stopping.is_set():
            await flush(current, solution)
