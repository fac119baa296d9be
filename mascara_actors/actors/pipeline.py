"""The supervisor: one task group owns the camera, reducer, saver and summariser.

``run_night`` wires the actors with bounded channels (sizes from config), starts them, and
returns when the night is reduced, combined and logged. The source of frames is injected
(a live camera or a recorded night, from the command line), so this module imports nothing
from ``hw``.

- Stop: SIGINT or SIGTERM (or the ``stop`` event) stops the camera; what is in flight is
  reduced, complete sets are saved, the open set is left for the restart. A second signal
  cancels at once. An actor that cannot go on (a worker process that keeps dying) stops the
  night the same way and says why.
- Resume: sets already on disk (per-set files, or the nightly file) are not reduced again,
  and the astrometry goes on from their stored solutions, so a night stopped or killed at
  any moment and run again ends with the same files as an uninterrupted run.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
from anyio.abc import ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream

from mascara_actors import __version__
from mascara_actors.actors import binner, camera, reducer, saver, summariser
from mascara_actors.actors.binner import BinnedOutput
from mascara_actors.actors.events import (
    Event,
    NightFinished,
    NightStarted,
    QueueDepths,
    Spooled,
)
from mascara_actors.actors.gate import PauseGate
from mascara_actors.actors.messages import FrameReady, FrameReduced
from mascara_actors.actors.reducer import ReducerWorker, StoredSolution, WorkerSpec
from mascara_actors.actors.saver import SaverResult
from mascara_actors.actors.spool import Spool
from mascara_actors.actors.summariser import NightState
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, Config
from mascara_actors.errors import StorageError
from mascara_actors.records import star_dtype
from mascara_actors.sidereal import SLOT_SIDEREAL_S, set_index, slot_length_solar_s
from mascara_actors.storage import (
    NightFile,
    NightId,
    SetFile,
    SetWriter,
    list_set_files,
    nightly_file_path,
)

__all__ = [
    "NightPlan",
    "NightReport",
    "ResumePoint",
    "paced_frames",
    "resume_point",
    "run_night",
    "star_table",
    "stop_on_signals",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NightPlan:
    """Everything fixed about one camera-night before it starts."""

    config: Config
    camera: CameraConfig
    night: NightId
    out_dir: Path
    worker: WorkerSpec
    frames_expected: int = 0
    live: bool = False
    """True for a live camera or a paced replay: the camera edge must never wait."""

    @property
    def night_dir(self) -> Path:
        return self.night.night_dir(self.out_dir)

    @property
    def log_path(self) -> Path:
        return self.night_dir / "logs" / "events.jsonl"


@dataclass
class NightReport:
    """The outcome of :func:`run_night`."""

    state: NightState
    saved: SaverResult
    stopped_early: bool
    wall_s: float
    skipped_frames: int = 0
    """Frames not reduced because their set was already on disk (resume)."""
    nightly_files: list[Path] = field(default_factory=list)
    stopped_by: str | None = None
    """Name of the signal that stopped the night early (``SIGINT``, ``SIGTERM``), if any."""
    worker_restarts: int = 0
    """Worker processes that died and were replaced."""
    failure: str | None = None
    """Why an actor stopped the night, when one did (``NightState.fatal``)."""

    @property
    def ok(self) -> bool:
        """True when the night was reduced: it ran to the end, frames were reduced (now or by
        an earlier run) and the nightly file was written."""
        done = self.state.frames_reduced + self.skipped_frames
        return not self.stopped_early and done > 0 and bool(self.nightly_files)


def star_table(catalogue: Catalogue, records: np.ndarray) -> np.ndarray:
    """Rows of ``star_dtype`` for the stars in ``records`` (catalogue data + counts)."""
    ids, counts = np.unique(records["id"], return_counts=True)
    order = np.argsort(records["id"], kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])[:-1]
    sorted_lstseq = records["lstseq"][order].astype(np.int64)
    sorted_jd = records["jdmid"][order]
    cat = catalogue.by_hip(ids.tolist())
    out = np.zeros(ids.size, star_dtype)
    out["id"] = ids
    out["ra"] = cat["ra_deg"]
    out["dec"] = cat["dec_deg"]
    out["vmag"] = cat["vmag"]
    out["bmag"] = cat["bmag"]
    out["sptype"] = np.char.encode(cat["sptype"].astype(str), "ascii")
    out["blend"] = cat["blend"]
    out["blendvalue"] = cat["blendvalue"]
    out["nobs"] = counts
    out["lstseqmin"] = np.minimum.reduceat(sorted_lstseq, bounds)
    out["lstseqmax"] = np.maximum.reduceat(sorted_lstseq, bounds)
    out["jdstart"] = np.minimum.reduceat(sorted_jd, bounds)
    return out


async def paced_frames(
    frames: Sequence[tuple[int, Path]],
    *,
    realtime: bool = False,
    speed: float = 1.0,
) -> AsyncIterator[FrameReady]:
    """FrameReady messages for recorded frames, in lstseq order, fast or at the real cadence.

    Parameters
    ----------
    frames
        ``(lstseq, path)`` pairs, in any order.
    realtime
        Release frame ``lstseq`` when its slot ends, ``(lstseq - first + 1)`` slots of
        6.4 sidereal seconds (6.38 s) after the call, ``first`` being the lowest lstseq, as a
        camera would deliver it. The schedule is kept on the event loop's clock, so a virtual
        clock drives it in tests.
    speed
        With ``realtime``: this many times faster than real time (> 0).
    """
    if not speed > 0:
        raise ValueError(f"speed must be > 0 (2.0 = twice real time), got {speed!r}")
    ordered = sorted(((int(s), Path(p)) for s, p in frames), key=lambda f: f[0])
    if not ordered:
        return
    slot = slot_length_solar_s(SLOT_SIDEREAL_S) / speed
    start = anyio.current_time()
    first = ordered[0][0]
    for lstseq, path in ordered:
        if realtime:
            await anyio.sleep_until(start + (lstseq - first + 1) * slot)
        yield FrameReady(path=path, lstseq=lstseq, arrived=time.time())


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """What an earlier run of a camera-night left on disk."""

    done_sets: frozenset[int]
    """Sets written whole (per-set files, or rows of the nightly file): not reduced again."""
    solutions: dict[int, StoredSolution]
    """The astrometric solution of each of those sets that has one, by set index."""

    def skips(self, lstseq: int) -> bool:
        """True when the frame ``lstseq`` belongs to a set already on disk."""
        return int(set_index(lstseq)) in self.done_sets


def resume_point(night_dir: Path) -> ResumePoint:
    """Read what is on disk for the night in ``night_dir`` (nothing: an empty ResumePoint).

    A set counts as done when its per-set file exists (files appear whole, by rename) or
    when its frames are in the nightly file (the per-set files are deleted after the nightly
    combine). Unreadable per-set files still count as done (they are never overwritten); the
    nightly combine reports them.
    """
    night_dir = Path(night_dir)
    done: set[int] = set()
    solutions: dict[int, StoredSolution] = {}
    nightly = nightly_file_path(night_dir, "fast")
    if nightly.exists():
        try:
            with NightFile(nightly) as nf:
                done.update(int(s) for s in np.unique(set_index(nf.station["lstseq"])))
                astrometry = nf.astrometry
        except StorageError as exc:
            log.warning("resume: %s; its sets are reduced again", exc)
            astrometry = None
        for row in astrometry if astrometry is not None else ():
            solutions[int(row["setidx"])] = StoredSolution.from_row(row)
    for setidx, path in list_set_files(night_dir, "fast").items():
        done.add(setidx)
        try:
            with SetFile(path, "fast") as set_file:
                rows = set_file.astrometry()
        except StorageError as exc:
            log.warning("resume: %s", exc)
            continue
        for row in rows if rows is not None else ():
            solutions[int(row["setidx"])] = StoredSolution.from_row(row)
    return ResumePoint(frozenset(done), solutions)


async def _skip_done(
    source: AsyncIterator[FrameReady], resume: ResumePoint, counter: list[int]
) -> AsyncIterator[FrameReady]:
    try:
        async for frame in source:
            if resume.skips(frame.lstseq):
                counter[0] += 1
                continue
            yield frame
    finally:
        await camera.close_source(source)


def _header_attrs(plan: NightPlan) -> dict[str, object]:
    site = plan.camera.site
    phot = plan.config.reduction.photometry
    return {
        "site-obs": site.name,
        "cam-obs": plan.camera.id,
        "lat": site.latitude_deg,
        "lon": site.longitude_deg,
        "height": site.height_m,
        "aper": np.asarray(phot.fast_apertures_px),
        "skyrad": np.asarray(phot.sky_radii_px),
        "exptime": slot_length_solar_s(),
        "rversion": f"mascara-actors {__version__}",
        "aperture_method": "exact circle-pixel overlap",
    }


async def run_night(
    plan: NightPlan,
    source: AsyncIterator[FrameReady],
    catalogue: Catalogue,
    *,
    state: NightState | None = None,
    stop: anyio.Event | None = None,
    handle_signals: bool = False,
    worker_mode: str | None = None,
    in_process: bool = False,
    saver_delay: float = 0.0,
    gate: PauseGate | None = None,
) -> NightReport:
    """Reduce one camera-night from ``source``; see the module docstring.

    Frames of sets already on disk (an earlier run of the same night) are skipped, and the
    astrometry goes on from the solutions stored with those sets, so a restarted night ends
    with the same files as an uninterrupted one.

    Parameters
    ----------
    plan
        The camera-night: config, camera, output directory, worker spec.
    source
        Frames in lstseq order (:func:`paced_frames`, or a live camera).
    catalogue
        The star catalogue (star rows of the per-set files).
    state
        Filled in live (the console and the progress bar read it).
    stop
        Set it to end the night early and gracefully (what SIGINT does): frames in flight
        are reduced, complete sets are saved, the open set is left for the restart.
    handle_signals
        First SIGINT or SIGTERM sets ``stop``; a second one cancels at once. Only from
        the main thread.
    worker_mode
        Where the reduction runs, one of :data:`~mascara_actors.actors.reducer.WORKER_MODES`
        (default ``"process"``).
    in_process
        Shorthand for ``worker_mode="thread"`` (debugging).
    saver_delay
        Seconds the saver waits per message (tests of backpressure only).
    gate
        The operator's pause switch: while paused the reducer holds and a live camera's
        frames are spooled.
    """
    t0 = time.time()
    cfg = plan.config.reduction
    state = state if state is not None else NightState()
    stop = stop if stop is not None else anyio.Event()
    mode = worker_mode if worker_mode is not None else ("thread" if in_process else "process")
    worker = ReducerWorker(plan.worker, mode=mode)
    saved = SaverResult()
    skipped = [0]
    stopped_by: list[str] = []
    files: list[Path] = []

    frames_send, frames_recv = anyio.create_memory_object_stream[FrameReady](cfg.channels.frames)
    reduced_send, reduced_recv = anyio.create_memory_object_stream[FrameReduced](
        cfg.channels.records
    )
    saver_send, saver_recv = anyio.create_memory_object_stream[FrameReduced](cfg.channels.records)
    binner_send, binner_recv = anyio.create_memory_object_stream[FrameReduced](cfg.channels.records)
    binned_send, binned_recv = anyio.create_memory_object_stream[BinnedOutput](cfg.channels.records)
    ev_send, ev_recv = anyio.create_memory_object_stream[Event](cfg.channels.events)
    spool = Spool(frames_send)
    storage = cfg.storage
    combine_options: dict[str, object] = {
        "minobs": storage.minobs,
        "compression": None if storage.compression == "none" else storage.compression,
    }

    async with SetWriter(plan.night_dir, header=_header_attrs(plan)) as writer:
        resume = await anyio.to_thread.run_sync(resume_point, plan.night_dir)
        if resume.done_sets:
            log.info(
                "%s: %d sets already on disk; their frames are skipped",
                plan.night_dir,
                len(resume.done_sets),
            )
        async with anyio.create_task_group() as tg_all:
            tg_all.start_soon(
                lambda: summariser.run(inbox=ev_recv, log_path=plan.log_path, state=state)
            )
            async with ev_send:
                await ev_send.send(
                    NightStarted(
                        night=plan.night.night,
                        camera=plan.camera.id,
                        out_dir=str(plan.night_dir),
                        frames_expected=plan.frames_expected,
                        resumed_sets=len(resume.done_sets),
                    )
                )
                async with anyio.create_task_group() as side:
                    side.start_soon(_monitor, ev_send.clone(), spool, frames_recv, reduced_recv)
                    async with anyio.create_task_group() as tg:
                        if handle_signals:
                            side.start_soon(stop_on_signals, stop, tg.cancel_scope, stopped_by)
                        tg.start_soon(spool.feed)
                        tg.start_soon(
                            lambda: camera.run(
                                source=_skip_done(source, resume, skipped),
                                spool=spool,
                                events=ev_send.clone(),
                                stop=stop,
                                live=plan.live,
                            )
                        )
                        tg.start_soon(
                            lambda: reducer.run(
                                inbox=frames_recv,
                                outbox=reduced_send,
                                events=ev_send.clone(),
                                worker=worker,
                                restored=resume.solutions,
                                stop=stop,
                                gate=gate,
                            )
                        )
                        tg.start_soon(_tee, reduced_recv, (saver_send, binner_send))
                        tg.start_soon(
                            lambda: binner.run(
                                inbox=binner_recv,
                                outbox=binned_send,
                                events=ev_send.clone(),
                                spec=plan.worker,
                                out_dir=plan.night_dir / "binned",
                                stopping=stop,
                                mode=mode,
                            )
                        )
                        tg.start_soon(
                            lambda: saver.run_slow(
                                inbox=binned_recv,
                                events=ev_send.clone(),
                                writer=writer,
                                star_rows=lambda records: star_table(catalogue, records),
                                stopping=stop,
                                combine_options=combine_options,
                                result=saved,
                            )
                        )
                        tg.start_soon(
                            lambda: saver.run(
                                inbox=saver_recv,
                                events=ev_send.clone(),
                                delay_s=saver_delay,
                                writer=writer,
                                star_rows=lambda records: star_table(catalogue, records),
                                stopping=stop,
                                combine_options=combine_options,
                                result=saved,
                            )
                        )
                    side.cancel_scope.cancel()
                if spool.spooled:
                    await ev_send.send(Spooled(spooled=spool.spooled, caught_up=spool.caught_up))
                files = [r.output for r in saved.combined if r.output is not None]
                await ev_send.send(
                    NightFinished(
                        frames_reduced=state.frames_reduced,
                        frames_failed=state.frames_failed,
                        nightly_files=[str(f) for f in files],
                        wall_s=time.time() - t0,
                    )
                )
    return NightReport(
        state=state,
        saved=saved,
        stopped_early=stop.is_set(),
        wall_s=time.time() - t0,
        skipped_frames=skipped[0],
        nightly_files=files,
        stopped_by=stopped_by[0] if stopped_by else None,
        worker_restarts=worker.restarts,
        failure=state.fatal,
    )


async def _tee(
    inbox: MemoryObjectReceiveStream[FrameReduced],
    outboxes: tuple[ObjectSendStream[FrameReduced], ...],
) -> None:
    """Hand every reduced frame to the saver and to the binner (each with backpressure)."""
    async with inbox, outboxes[0], outboxes[1]:
        async for msg in inbox:
            for out in outboxes:
                await out.send(msg)


async def _monitor(
    events: ObjectSendStream[Event],
    spool: Spool[FrameReady],
    frames_recv: MemoryObjectReceiveStream[FrameReady],
    reduced_recv: MemoryObjectReceiveStream[FrameReduced],
    *,
    period_s: float = 1.0,
) -> None:
    """Report queue depths and spool counts when they change, checked every ``period_s``
    seconds (backpressure made visible)."""
    last_depths: dict[str, int] | None = None
    last_counts = (0, 0)
    async with events:
        while True:
            depths = {
                "spool": spool.waiting,
                "frames": frames_recv.statistics().current_buffer_used,
                "records": reduced_recv.statistics().current_buffer_used,
            }
            if depths != last_depths:
                await events.send(QueueDepths(depths=depths))
                last_depths = depths
            counts = (spool.spooled, spool.caught_up)
            if counts != last_counts:
                await events.send(Spooled(spooled=counts[0], caught_up=counts[1]))
                last_counts = counts
            await anyio.sleep(period_s)


async def stop_on_signals(
    stop: anyio.Event, scope: anyio.CancelScope, stopped_by: list[str]
) -> None:
    """First SIGINT/SIGTERM: set ``stop`` (its name goes to ``stopped_by``). Second: cancel
    ``scope`` now. Run it in the main thread."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if stop.is_set():
                log.warning("second %s: stopping now", name)
                scope.cancel()
                return
            log.warning(
                "%s: finishing the frames in flight, then stopping (again to stop at once)",
                name,
            )
            stopped_by.append(name)
            stop.set()
