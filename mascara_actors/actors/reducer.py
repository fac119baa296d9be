"""The reducer actor: astrometry once per set, fast photometry of every frame, in a worker.

The CPU work runs in one worker process (``anyio.to_process``), which receives a path and a
small :class:`WorkerSpec` and keeps its :class:`~mascara_actors.reduce.ReductionSession`
(catalogue, masters, ephemeris) between calls. A frame that fails is reported and skipped;
a worker that dies is replaced by a fresh one on the next call.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_process
import numpy as np
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from mascara_actors.actors.events import AstrometryDone, Event, FrameFailed, FrameReducedEvent
from mascara_actors.actors.messages import FrameReady, FrameReduced
from mascara_actors.astrometry import AFLAG_FAILED, AstrometricSolution
from mascara_actors.errors import AstrometryFailed, FrameError, MascaraError
from mascara_actors.reduce import FrameResult, ReductionSession
from mascara_actors.sidereal import set_index

__all__ = ["ReducerWorker", "WorkerSpec", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker process needs to build its session (small, picklable)."""

    camera_id: str
    config_dir: str | None = None
    dark: str | None = None
    flat: str | None = None


_SESSION: tuple[WorkerSpec, ReductionSession] | None = None


def _session(spec: WorkerSpec) -> ReductionSession:
    """The worker process's session for ``spec``, built on first use."""
    global _SESSION
    if (
        _SESSION is None
        or _SESSION[0].camera_id != spec.camera_id
        or (_SESSION[0].config_dir != spec.config_dir)
    ):
        _SESSION = (
            spec,
            ReductionSession.open(
                spec.camera_id, config_dir=spec.config_dir, dark=spec.dark, flat=spec.flat
            ),
        )
    elif _SESSION[0] != spec:
        _SESSION[1].use_masters(dark=spec.dark, flat=spec.flat)
        _SESSION = (spec, _SESSION[1])
    return _SESSION[1]


def _solve_job(
    spec: WorkerSpec, path: str, previous: AstrometricSolution | None
) -> AstrometricSolution:
    return _session(spec).solve(path, previous)


def _reduce_job(spec: WorkerSpec, path: str, solution: AstrometricSolution) -> FrameResult:
    return _session(spec).reduce_frame(path, solution)


class ReducerWorker:
    """Runs the reduction jobs in one worker process (``in_process=True``: in a thread, for
    debugging only)."""

    def __init__(self, spec: WorkerSpec, *, in_process: bool = False) -> None:
        self.spec = spec
        self.in_process = in_process
        self._limiter = anyio.CapacityLimiter(1)
        self.restarts = 0

    async def _call(self, fn, *args):  # type: ignore[no-untyped-def]
        if self.in_process:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        try:
            return await anyio.to_process.run_sync(fn, *args, limiter=self._limiter)
        except anyio.BrokenWorkerProcess:
            # The process died (killed, out of memory): the next call starts a fresh one.
            self.restarts += 1
            log.warning(
                "reducer worker process died; starting a new one (restart %d)", self.restarts
            )
            return await anyio.to_process.run_sync(fn, *args, limiter=self._limiter)

    async def solve(self, path: Path, previous: AstrometricSolution | None) -> AstrometricSolution:
        return await self._call(_solve_job, self.spec, str(path), previous)

    async def reduce(self, path: Path, solution: AstrometricSolution) -> FrameResult:
        return await self._call(_reduce_job, self.spec, str(path), solution)


async def run(
    *,
    inbox: ObjectReceiveStream[FrameReady],
    outbox: ObjectSendStream[FrameReduced],
    events: ObjectSendStream[Event],
    worker: ReducerWorker,
) -> None:
    """Reduce every frame of ``inbox`` into ``outbox``; a bad frame fails alone."""
    solution: AstrometricSolution | None = None
    current_set: int | None = None
    async with inbox, outbox, events:
        async for msg in inbox:
            setidx = int(set_index(msg.lstseq))
            if setidx != current_set:
                try:
                    new = await worker.solve(msg.path, solution)
                    await events.send(
                        AstrometryDone(
                            lstseq=msg.lstseq,
                            setidx=setidx,
                            dr=new.dr,
                            nstars=new.nstars,
                            nused=new.nused,
                            aflag=new.aflag,
                            solved=solution is None or new.model is not solution.model,
                        )
                    )
                    solution = new
                    current_set = setidx
                except (AstrometryFailed, FrameError, anyio.BrokenWorkerProcess) as exc:
                    await events.send(
                        FrameFailed(
                            lstseq=msg.lstseq, path=str(msg.path), reason=f"astrometry: {exc}"
                        )
                    )
                    if solution is None:
                        continue  # no model yet: try again on the next frame
                    solution = AstrometricSolution(
                        model=solution.model,
                        lstseq=msg.lstseq,
                        nstars=solution.nstars,
                        nused=0,
                        dx=solution.dx,
                        dy=solution.dy,
                        aflag=solution.aflag | AFLAG_FAILED,
                    )
                    current_set = setidx
            try:
                result = await worker.reduce(msg.path, solution)
            except MascaraError as exc:
                await events.send(
                    FrameFailed(lstseq=msg.lstseq, path=str(msg.path), reason=str(exc))
                )
                continue
            except Exception as exc:  # fault isolation: one bad frame must not stop the night
                log.exception("reducing %s crashed", msg.path)
                await events.send(
                    FrameFailed(
                        lstseq=msg.lstseq, path=str(msg.path), reason=f"{type(exc).__name__}: {exc}"
                    )
                )
                continue
            await outbox.send(
                FrameReduced(
                    lstseq=result.lstseq,
                    setidx=setidx,
                    records=result.records,
                    station=result.station,
                    solution=solution,
                )
            )
            sky = result.records["sky"]
            await events.send(
                FrameReducedEvent(
                    lstseq=result.lstseq,
                    nstars=result.nstars,
                    nflagged=result.nflagged,
                    latency_s=time.time() - msg.arrived,
                    timings=result.timings,
                    sky=float(np.nanmedian(sky)) if sky.size else float("nan"),
                    ccdtemp=float(result.station["ccdtemp"][0]),
                )
            )
