"""The reducer actor: astrometry once per set, fast photometry of every frame, in a worker.

The CPU work runs in one worker process (``anyio.to_process``), which receives a path and a
small :class:`WorkerSpec` and keeps its :class:`~mascara_actors.reduce.ReductionSession`
(catalogue, masters, ephemeris) between calls. A frame that fails is reported once and
skipped; a worker that dies is replaced by a fresh one and the job is tried once more, so a
frame that kills its worker twice fails alone.

On a restart of a night, the astrometric solutions of the sets already on disk come back as
:class:`StoredSolution` values: the first set reduced again is checked against the same
model as in an uninterrupted run, so the output does not depend on where the run stopped.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_process
import anyio.to_thread
import numpy as np
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from mascara_actors.actors.events import (
    ActorFailed,
    AstrometryDone,
    Event,
    FrameFailed,
    FrameReducedEvent,
    WarningEvent,
)
from mascara_actors.actors.gate import PauseGate
from mascara_actors.actors.messages import FrameReady, FrameReduced
from mascara_actors.astrometry import AstrometricSolution
from mascara_actors.camera_model import CameraModel
from mascara_actors.errors import AstrometryFailed, MascaraError
from mascara_actors.reduce import FrameResult, ReductionSession
from mascara_actors.sidereal import set_index

__all__ = [
    "MAX_BROKEN_IN_A_ROW",
    "WORKER_MODES",
    "ReducerWorker",
    "StoredSolution",
    "WorkerSpec",
    "run",
]

log = logging.getLogger(__name__)

R = TypeVar("R")

WORKER_MODES = ("process", "thread", "inline")
"""Where :class:`ReducerWorker` runs the jobs: ``process`` (the default: one worker process,
the event loop stays free), ``thread`` (a worker thread of this process; the session is
kept between nights) or ``inline`` (on the event loop itself, blocking it: only for tests
on a virtual clock, where the work must take no virtual time)."""

# The parameter vector of AstrometricSolution.params(): pointing corrections, focal length,
# radial distortion, then the Legendre coefficients in x and in y.
_PARAM_NAMES = ("tilt_x_deg", "tilt_y_deg", "spin_deg", "focal_px", "k1", "k2")


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker process needs to build its session (small, picklable)."""

    camera_id: str
    config_dir: str | None = None
    dark: str | None = None
    """Master dark file, or None (overscan level only)."""
    flat: str | None = None
    """Master flat file, or None."""


@dataclass(frozen=True, slots=True)
class StoredSolution:
    """An astrometric solution as a set's ``astrometry`` row stores it (for resuming).

    The camera model is the nominal one of the camera (sized to the frames) with the stored
    parameters; :meth:`rebuild` puts it back together in the worker.
    """

    setidx: int
    lstseq: int
    nstars: int
    nused: int
    dx: float
    """RMS residual in x, pixels."""
    dy: float
    """RMS residual in y, pixels."""
    aflag: int
    params: tuple[float, ...]
    """``AstrometricSolution.params()`` of the solution, float64."""

    @classmethod
    def from_row(cls, row: np.void | np.ndarray) -> StoredSolution:
        """From one row of ``records.astrometry_dtype``."""
        return cls(
            setidx=int(row["setidx"]),
            lstseq=int(row["lstseq"]),
            nstars=int(row["nstars"]),
            nused=int(row["nused"]),
            dx=float(row["dx"]),
            dy=float(row["dy"]),
            aflag=int(row["aflag"]),
            params=tuple(float(p) for p in np.ravel(row["params"])),
        )

    def rebuild(self, nominal: CameraModel) -> AstrometricSolution:
        """The solution, on the nominal model of the frames it will be used on.

        Raises
        ------
        AstrometryFailed
            When the stored parameters do not give back the same parameter vector (a model
            of another layout); the caller then solves from scratch.
        """
        p = np.asarray(self.params, float)
        nhead = len(_PARAM_NAMES)
        nterms = (p.size - nhead) // 2
        if p.size < nhead or p.size != nhead + 2 * nterms:
            raise AstrometryFailed(
                f"set {self.setidx}: {p.size} stored camera-model parameters do not fit the "
                f"layout of {nhead} + 2 x n; solving again"
            )
        model = nominal.replace(
            **{name: float(v) for name, v in zip(_PARAM_NAMES, p[:nhead], strict=True)},
            coeffs_x=tuple(float(v) for v in p[nhead : nhead + nterms]),
            coeffs_y=tuple(float(v) for v in p[nhead + nterms :]),
        )
        solution = AstrometricSolution(
            model=model,
            lstseq=self.lstseq,
            nstars=self.nstars,
            nused=self.nused,
            dx=self.dx,
            dy=self.dy,
            aflag=self.aflag,
        )
        if not np.array_equal(solution.params(), p):
            raise AstrometryFailed(
                f"set {self.setidx}: the stored camera model does not round-trip (the "
                "parameter layout changed); solving again"
            )
        return solution


# --- the jobs, run in the worker --------------------------------------------------------

_SESSION: tuple[WorkerSpec, ReductionSession] | None = None
_SIGNALS_IGNORED = False


def _session(spec: WorkerSpec) -> ReductionSession:
    """The worker's session for ``spec``, built on first use and kept."""
    global _SESSION
    if (
        _SESSION is None
        or _SESSION[0].camera_id != spec.camera_id
        or _SESSION[0].config_dir != spec.config_dir
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


def _in_worker_process(fn: Callable[..., R], *args: Any) -> R:
    """Run ``fn`` in the worker process, deaf to SIGINT and SIGTERM.

    A Ctrl-C in a terminal reaches the whole process group; the parent stops gracefully and
    the worker must finish the job in hand rather than die with it. The worker still exits
    when the parent goes away (its stdin closes).
    """
    global _SIGNALS_IGNORED
    if not _SIGNALS_IGNORED:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _SIGNALS_IGNORED = True
    return fn(*args)


def _solve_job(
    spec: WorkerSpec, path: str, previous: AstrometricSolution | StoredSolution | None
) -> AstrometricSolution:
    session = _session(spec)
    if isinstance(previous, StoredSolution):
        try:
            previous = previous.rebuild(session.nominal_model(session.read(path)))
        except AstrometryFailed as exc:
            log.warning("%s", exc)
            previous = None
    return session.solve(path, previous)


def _reduce_job(spec: WorkerSpec, path: str, solution: AstrometricSolution) -> FrameResult:
    return _session(spec).reduce_frame(path, solution)


class ReducerWorker:
    """Runs the reduction jobs one at a time, in a worker process by default.

    Parameters
    ----------
    spec
        Camera, configuration and masters of the session.
    mode
        One of :data:`WORKER_MODES`.

    Attributes
    ----------
    restarts
        Worker processes that died during a job and were replaced (total).
    """

    def __init__(self, spec: WorkerSpec, *, mode: str = "process") -> None:
        if mode not in WORKER_MODES:
            raise ValueError(f"mode must be one of {WORKER_MODES}, got {mode!r}")
        self.spec = spec
        self.mode = mode
        self._limiter = anyio.CapacityLimiter(1)
        self.restarts = 0

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        if self.mode == "inline":
            await anyio.lowlevel.checkpoint()
            return fn(*args)
        if self.mode == "thread":
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        try:
            return await anyio.to_process.run_sync(
                _in_worker_process, fn, *args, limiter=self._limiter
            )
        except anyio.BrokenWorkerProcess:
            # The process died under the job (killed, out of memory): one more try on a
            # fresh process; a frame that kills it again fails alone.
            self.restarts += 1
            log.warning(
                "reducer worker process died; starting a new one (restart %d)", self.restarts
            )
            return await anyio.to_process.run_sync(
                _in_worker_process, fn, *args, limiter=self._limiter
            )

    async def solve(
        self, path: Path, previous: AstrometricSolution | StoredSolution | None
    ) -> AstrometricSolution:
        """Solve the astrometry on the frame at ``path`` (blind when ``previous`` is None),
        or check ``previous`` on it and refit when needed."""
        return await self._call(_solve_job, self.spec, str(path), previous)

    async def reduce(self, path: Path, solution: AstrometricSolution) -> FrameResult:
        """Fast photometry of the frame at ``path`` with the set's ``solution``."""
        return await self._call(_reduce_job, self.spec, str(path), solution)


# --- the actor ----------------------------------------------------------------------------


MAX_BROKEN_IN_A_ROW = 3
"""Frames in a row whose worker died twice before the reducer gives up and stops the night
(a worker that cannot start, or a system out of memory: every frame would fail)."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MascaraError):
        return str(exc)
    if isinstance(exc, anyio.BrokenWorkerProcess):
        return "the worker process died twice on this frame"
    return f"{type(exc).__name__}: {exc}"


async def run(
    *,
    inbox: ObjectReceiveStream[FrameReady],
    outbox: ObjectSendStream[FrameReduced],
    events: ObjectSendStream[Event],
    worker: ReducerWorker,
    restored: Mapping[int, StoredSolution] | None = None,
    stop: anyio.Event | None = None,
    gate: PauseGate | None = None,
) -> None:
    """Reduce every frame of ``inbox`` into ``outbox``; a bad frame fails alone.

    The first frame of each set solves (or checks) the astrometry; a frame that cannot be
    read, or on which no solution can be found while there is none yet, fails and the next
    frame of the set tries again.

    Parameters
    ----------
    restored
        Solutions of sets already on disk, by set index (resume): before a set, the newest
        of those older than it replaces the solution in hand if that is older still.
    stop
        Set when the worker keeps dying (:data:`MAX_BROKEN_IN_A_ROW` frames in a row): an
        :class:`~.events.ActorFailed` event says why, and the frames still coming are
        drained without being reduced (they stay in the raw archive for a restart).
    gate
        The operator's pause: each frame waits for it before it is reduced.
    """
    restored = dict(restored or {})
    solution: AstrometricSolution | None = None
    solution_set = -1  # set index the solution in hand was made for
    current_set: int | None = None
    restarts_seen = worker.restarts
    broken_in_a_row = 0
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

    async def fail(msg: FrameReady, reason: str, exc: BaseException) -> None:
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

    async with inbox, outbox, events:
        async for msg in inbox:
            if given_up:
                continue  # drain: the camera stops, these frames stay for the restart
            if gate is not None:
                await gate.passing(msg)
            setidx = int(set_index(msg.lstseq))
            if setidx != current_set:
                previous: AstrometricSolution | StoredSolution | None = solution
                older = [s for s in restored if solution_set < s < setidx]
                if older:
                    previous = restored[max(older)]
                try:
                    new = await worker.solve(msg.path, previous)
                except (MascaraError, anyio.BrokenWorkerProcess) as exc:
                    # Unreadable frame, or no model yet: the next frame of the set tries again.
                    await fail(msg, f"astrometry: {_reason(exc)}", exc)
                    continue
                except Exception as exc:  # fault isolation: one bad frame must not stop the night
                    log.exception("astrometry on %s crashed", msg.path)
                    await fail(msg, f"astrometry: {_reason(exc)}", exc)
                    continue
                await report_restarts(msg.lstseq)
                before = None if previous is None else np.asarray(_params(previous))
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
                solution, solution_set, current_set = new, setidx, setidx
            assert solution is not None
            try:
                result = await worker.reduce(msg.path, solution)
            except (MascaraError, anyio.BrokenWorkerProcess) as exc:
                await fail(msg, _reason(exc), exc)
                continue
            except Exception as exc:  # fault isolation: one bad frame must not stop the night
                log.exception("reducing %s crashed", msg.path)
                await fail(msg, _reason(exc), exc)
                continue
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


def _params(solution: AstrometricSolution | StoredSolution) -> tuple[float, ...] | np.ndarray:
    return solution.params if isinstance(solution, StoredSolution) else solution.params()
