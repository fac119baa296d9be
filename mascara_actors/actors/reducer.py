"""The reducer actor: astrometry once per set, fast photometry of every frame, in a worker.

The CPU work runs in one :class:`~mascara_actors.actors.worker.Worker` process, which
receives a path and a small :class:`~mascara_actors.messages.WorkerSpec` and keeps its
:class:`~mascara_actors.reduce.ReductionSession` (catalogue, masters, ephemeris) between
jobs. A frame that fails is reported once and skipped; a worker that dies is replaced by a
fresh one and the job is tried once more, so a frame that kills its worker twice fails alone.

A frame must belong to the night being reduced: one whose lstseq lies outside the night's
window fails alone, with its file named.

While the night has no astrometric solution at all (an overcast start, a camera whose
pointing is far from the configuration and whose frames do not solve blind either), the
frames wait on disk (some try to solve: :data:`SOLVE_EVERY`): as soon as a frame solves,
the waiting frames are reduced with that solution, flagged (aflag 4: not solved on their
own set), before it; frames still waiting at the end of the night fail then. The operator
is told once when the astrometry is lost (which camera, since when, what the solver found,
the command to run) and once when it is back.

The first frame of a set checks the astrometry. When it cannot (too bright, the check
failed) the set goes on with the previous solution, flagged, and the next frames of the set
try again (up to :data:`MAX_CHECKS_PER_SET`): one saturated frame never spoils its set.

On a restart of a night, the astrometric solutions of the sets already on disk come back as
:class:`~mascara_actors.messages.StoredSolution` values: the first set reduced again is
checked against the same model as in an uninterrupted run, so the output does not depend on
where the run stopped. The frames of sets whose fast photometry is on disk but whose binned
image is not are handed to the binner without being reduced again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import numpy as np
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from mascara_actors.actors.gate import PauseGate
from mascara_actors.actors.worker import Worker, failure_reason
from mascara_actors.errors import AstrometryFailed, MascaraError
from mascara_actors.frames import FrameReady
from mascara_actors.messages import (
    REDUCE_JOB,
    SOLVE_JOB,
    ActorFailed,
    AstrometryDone,
    Event,
    FrameFailed,
    FrameForBinning,
    FrameReduced,
    FrameReducedEvent,
    ReductionPaused,
    ReductionResumed,
    StoredSolution,
    WarningEvent,
    WorkerSpec,
)
from mascara_actors.photometry.flags import AFlag
from mascara_actors.sidereal import SET_SIZE, set_index

if TYPE_CHECKING:
    from mascara_actors.astrometry import AstrometricSolution
    from mascara_actors.reduce import FrameResult

__all__ = ["MAX_BROKEN_IN_A_ROW", "MAX_CHECKS_PER_SET", "SOLVE_EVERY", "run"]

log = logging.getLogger(__name__)

_NEGATIVE_SKY = (
    "median sky {sky:.0f} ADU per pixel after calibration: the master dark ({dark}) is "
    "brighter than the frames (darks of another exposure time, temperature or readout, or "
    "light in them?), and the photometry of such frames is wrong: check the night's darks "
    "and reduce it again"
)

# --- the actor ----------------------------------------------------------------------------


MAX_BROKEN_IN_A_ROW = 3
"""Frames in a row whose worker died twice before the reducer gives up and stops the night
(a worker that cannot start, or a system out of memory: every frame would fail)."""

MAX_CHECKS_PER_SET = 5
"""Frames of a set on which the astrometry check is tried when the frames before could not
check it (too bright, check failed)."""

SOLVE_EVERY = 10
"""While the night has no solution yet, a frame tries to solve when it is the first of its
set to come or its slot in the set (lstseq % 50) is a multiple of this; the others wait
without trying (a failed solve of a full-size overcast frame costs seconds). So clouds that
clear part-way through a set cost at most this many flagged frames, and which frames try
depends on the frames alone, never on the machine's speed: a re-run gives the same files."""

AFLAG_FAILED = int(AFlag.SOLVE_FAILED)
_UNCHECKED = int(AFlag.VERY_BRIGHT_SKY) | AFLAG_FAILED


def _params(solution: AstrometricSolution | StoredSolution) -> np.ndarray:
    if isinstance(solution, StoredSolution):
        return np.asarray(solution.params)
    return solution.params()


async def run(
    *,
    inbox: ObjectReceiveStream[FrameReady],
    outbox: ObjectSendStream[FrameReduced | FrameForBinning],
    events: ObjectSendStream[Event],
    worker: Worker,
    spec: WorkerSpec,
    restored: Mapping[int, StoredSolution] | None = None,
    rebin: Mapping[int, int] | None = None,
    window: tuple[int, int] | None = None,
    stop: anyio.Event | None = None,
    gate: PauseGate | None = None,
) -> None:
    """Reduce every frame of ``inbox`` into ``outbox``; a bad frame fails alone.

    The first frame of each set solves (or checks) the astrometry; a frame that cannot be
    read fails alone and the next frame of the set tries again; while the night has no
    solution at all, frames wait for one (see the module docstring).

    Parameters
    ----------
    worker, spec
        Where the jobs run, and the session they need.
    restored
        Solutions of sets already on disk, by set index (resume): before a set, the newest
        of those older than it replaces the solution in hand if that is older still.
    rebin
        Frames (lstseq -> their astrometry flag) of sets whose fast photometry is on disk but
        whose binned image is not: sent on as :class:`FrameForBinning`, not reduced.
    window
        ``[first, end)`` lstseq of the night: a frame outside it fails alone.
    stop
        The night's stop: set here when the worker keeps dying (:data:`MAX_BROKEN_IN_A_ROW`
        frames in a row; an :class:`~.events.ActorFailed` event says why, and the frames
        still coming are drained without being reduced: they stay in the raw archive for a
        restart). Frames still waiting for a solution when it is set are left for the
        restart too.
    gate
        The operator's pause: each frame waits for it before it is reduced.
    """
    restored = dict(restored or {})
    rebin = dict(rebin or {})
    solution: AstrometricSolution | None = None
    solution_set = -1  # set index the solution in hand was made for
    current_set: int | None = None
    checks_left = 0  # further frames of the set that may still check the astrometry
    waiting: list[FrameReady] = []  # frames waiting for the night's first solution
    tried_sets: set[int] = set()  # sets in which a solve failed, while none succeeded
    restarts_seen = worker.restarts
    broken_in_a_row = 0
    sky_below_zero = False
    given_up = False

    async def report_restarts(lstseq: int) -> None:
        nonlocal restarts_seen
        if worker.restarts != restarts_seen:
            restarts_seen = worker.restarts
            await events.send(
                WarningEvent(
                    source="reducer",
                    message=f"the worker process died and was replaced "
                    f"({worker.restarts} so far); the job was run again",
                    lstseq=lstseq,
                )
            )

    async def fail(msg: FrameReady, reason: str, exc: BaseException | None) -> None:
        nonlocal broken_in_a_row, given_up
        await report_restarts(msg.lstseq)
        await events.send(FrameFailed(lstseq=msg.lstseq, path=str(msg.path), reason=reason))
        if not isinstance(exc, anyio.BrokenWorkerProcess):
            return
        broken_in_a_row += 1
        if broken_in_a_row >= MAX_BROKEN_IN_A_ROW:
            given_up = True
            await events.send(
                ActorFailed(
                    source="reducer",
                    message=f"the worker process died on {broken_in_a_row} frames in a row "
                    f"(twice each, last {msg.path}): stopping the night; check memory and "
                    "the worker's environment, then run again to resume",
                )
            )
            if stop is not None:
                stop.set()

    async def check(
        msg: FrameReady, setidx: int, previous: AstrometricSolution | StoredSolution | None
    ) -> AstrometricSolution | None:
        """Solve or check the astrometry on ``msg``; None when the frame failed."""
        new: AstrometricSolution
        blind_note: str | None
        try:
            new, blind_note = await worker.run(SOLVE_JOB, spec, str(msg.path), previous)
        except AstrometryFailed as exc:
            if previous is not None:  # (checks keep the previous model: not reached)
                await fail(msg, f"astrometry: {exc}", exc)
                return None
            tried_sets.add(setidx)  # (a frame that cannot be read does not count)
            if not waiting:
                await events.send(
                    WarningEvent(
                        source="astrometry",
                        message=f"camera {spec.camera_id}: no astrometric solution since "
                        f"lstseq {msg.lstseq}; frames wait on disk until one solves. {exc}",
                        lstseq=msg.lstseq,
                    )
                )
            waiting.append(msg)
            return None
        except Exception as exc:  # fault isolation: one bad frame must not stop the night
            if not isinstance(exc, MascaraError | anyio.BrokenWorkerProcess):
                log.exception("astrometry on %s crashed", msg.path)
            # Unreadable frame, or no model yet: the next frame of the set tries again.
            await fail(msg, f"astrometry: {failure_reason(exc)}", exc)
            return None
        await report_restarts(msg.lstseq)
        if blind_note is not None:  # the camera does not point where the config says
            await events.send(
                WarningEvent(source="astrometry", message=blind_note, lstseq=msg.lstseq)
            )
        before = None if previous is None else _params(previous)
        await events.send(
            AstrometryDone(
                lstseq=msg.lstseq,
                setidx=setidx,
                dr=new.dr,
                nstars=new.nstars,
                nused=new.nused,
                aflag=new.aflag,
                solved=before is None or not np.array_equal(new.params(), before),
            )
        )
        return new

    async def reduce(msg: FrameReady, setidx: int, solution: AstrometricSolution) -> None:
        """Fast photometry of ``msg`` with ``solution``, sent on; a failure fails it alone."""
        nonlocal broken_in_a_row, sky_below_zero
        try:
            result: FrameResult = await worker.run(REDUCE_JOB, spec, str(msg.path), solution)
        except Exception as exc:  # fault isolation: one bad frame must not stop the night
            if not isinstance(exc, MascaraError | anyio.BrokenWorkerProcess):
                log.exception("reducing %s crashed", msg.path)
            await fail(msg, failure_reason(exc), exc)
            return
        broken_in_a_row = 0
        await report_restarts(msg.lstseq)
        await outbox.send(
            FrameReduced(
                lstseq=result.lstseq,
                setidx=setidx,
                path=msg.path,
                records=result.records,
                station=result.station,
                solution=solution,
            )
        )
        sky = result.records["sky"]
        sky = sky[np.isfinite(sky)]
        median_sky = float(np.median(sky)) if sky.size else float("nan")
        if not sky_below_zero and median_sky < 0.0:
            sky_below_zero = True  # once a night: every frame after it is likely the same
            await events.send(WarningEvent(
                source="reducer", lstseq=result.lstseq,
                message=_NEGATIVE_SKY.format(
                    sky=median_sky,
                    dark=Path(spec.dark).name if spec.dark else "none: the overscan level")))
        await events.send(
            FrameReducedEvent(
                lstseq=result.lstseq,
                nstars=result.nstars,
                nflagged=result.nflagged,
                latency_s=time.time() - msg.arrived,
                timings=result.timings,
                sky=median_sky,
                ccdtemp=float(result.station["ccdtemp"][0]),
                path=str(msg.path),
            )
        )

    async def reduce_waiting(new: AstrometricSolution, at: FrameReady) -> None:
        """The frames that waited for a solution, reduced with ``new``, flagged."""
        flagged = dataclasses.replace(new, aflag=new.aflag | AFLAG_FAILED)
        await events.send(
            WarningEvent(
                source="astrometry",
                message=f"camera {spec.camera_id}: solved at lstseq {at.lstseq}; the "
                f"{len(waiting)} frames waiting since lstseq {waiting[0].lstseq} are reduced "
                "with this solution, flagged (aflag 4)",
                lstseq=at.lstseq,
            )
        )
        frames = list(waiting)
        waiting.clear()
        for msg in frames:
            await reduce(msg, int(set_index(msg.lstseq)), flagged)

    last_taken = -1

    async def report_pauses(gate: PauseGate) -> None:
        """Each pause and resume as an event when the operator gives it, even between
        two frames."""
        while True:
            await gate.wait_closed()
            await events.send(ReductionPaused(lstseq=last_taken))
            await events.send(ReductionResumed(paused_s=await gate.wait_open()))

    async with inbox, outbox, events, anyio.create_task_group() as reporting:
        if gate is not None:
            reporting.start_soon(report_pauses, gate)
        async for msg in inbox:
            last_taken = msg.lstseq
            if given_up:
                continue  # drain: the camera stops, these frames stay for the restart
            if gate is not None:
                await gate.wait_open()
            setidx = int(set_index(msg.lstseq))
            if window is not None and not window[0] <= msg.lstseq < window[1]:
                await fail(
                    msg,
                    f"{msg.path}: lstseq {msg.lstseq} is outside this night's window "
                    f"[{window[0]}, {window[1]}): a frame of another night; move it to "
                    "the directory of its own night",
                    None,
                )
                continue
            if msg.lstseq in rebin:
                stored = restored[setidx]
                await outbox.send(
                    FrameForBinning(
                        lstseq=msg.lstseq,
                        setidx=setidx,
                        path=msg.path,
                        aflag=rebin[msg.lstseq],
                        solution=stored,
                    )
                )
                continue
            if setidx != current_set:
                previous: AstrometricSolution | StoredSolution | None = solution
                older = [s for s in restored if solution_set < s < setidx]
                if older:
                    previous = restored[max(older)]
                tries = setidx not in tried_sets or msg.lstseq % SET_SIZE % SOLVE_EVERY == 0
                if previous is None and not tries:
                    waiting.append(msg)  # not a frame that tries: wait for one
                    continue
                new = await check(msg, setidx, previous)
                if new is None:
                    continue
                if waiting:
                    await reduce_waiting(new, msg)
                solution, solution_set, current_set = new, setidx, setidx
                checks_left = MAX_CHECKS_PER_SET if new.aflag & _UNCHECKED else 0
            elif checks_left and solution is not None:
                # The set's first frames could not check the astrometry: this one tries.
                checks_left -= 1
                new = await check(msg, setidx, solution)
                if new is not None and not new.aflag & _UNCHECKED:
                    solution, checks_left = new, 0
            assert solution is not None
            await reduce(msg, setidx, solution)
        for msg in waiting if stop is None or not stop.is_set() else ():
            # the night never solved: they fail now (after a stop they wait for the restart)
            await fail(
                msg,
                "astrometry: no frame of the night could be solved (overcast, or the "
                "camera's pointing is unknown): run "
                f"`mascara-actors solve {msg.path} --camera {spec.camera_id}`",
                None,
            )
        reporting.cancel_scope.cancel()
