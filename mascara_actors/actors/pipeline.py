"""The supervisor: one task group owns the camera, reducer, saver and summariser.

``run_night`` wires the actors with bounded channels (sizes from config), starts them, and
returns when the night is reduced, combined and logged. The source of frames is injected
(a live camera or a recorded night, from the command line), so this module imports nothing
from ``hw``.

- Stop: SIGINT or SIGTERM (or the ``stop`` event) stops the camera; what is in flight is
  reduced, complete sets are saved, the open set is left for the restart. A second signal
  cancels at once. An actor that cannot go on (a worker process that keeps dying) stops the
  night the same way and says why.
- Resume: sets whose products are all on disk and verified are not touched again; a set
  whose fast photometry is there but whose binned image or slow photometry is not is binned
  again (:mod:`.resume`); the astrometry goes on from the stored solutions. So a night
  stopped or killed at any moment and run again ends with the same files as an
  uninterrupted run.
- Complete: at the end the night checks, from the disk, that every set it reduced has its
  fast photometry and its slow side, and that the nightly files are there;
  :attr:`NightReport.missing` lists what is not (the exit status of the commands).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from anyio.abc import ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mascara_actors import __version__
from mascara_actors.actors import binner, calibrator, camera, reducer, saver, summariser
from mascara_actors.actors.gate import PauseGate
from mascara_actors.actors.resume import ResumePoint, missing_products, resume_point
from mascara_actors.actors.spool import Spool
from mascara_actors.actors.worker import Worker
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, Config
from mascara_actors.faults import phase
from mascara_actors.frames import FrameReady
from mascara_actors.messages import (
    WARM_UP_JOB,
    BinnedOutput,
    Event,
    FrameForBinning,
    FrameReduced,
    NightFinished,
    NightStarted,
    QueueDepths,
    SetRecords,
    Spooled,
    WarningEvent,
    WorkerSpec,
)
from mascara_actors.night_state import NightState
from mascara_actors.sidereal import slot_length_solar_s
from mascara_actors.star_rows import star_table
from mascara_actors.storage import NightId, SetWriter, binned_dir, event_log_path

__all__ = ["NightPlan", "NightReport", "run_night", "stop_on_signals", "waiting_events"]

log = logging.getLogger(__name__)

_CALIBRATE_QUEUE = 2
"""Sets waiting for the live calibration (each is a few tens of MB at full size; one takes
well under the 320 s of a set)."""


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
    window: tuple[int, int] | None = None
    """``[first, end)`` lstseq of the night: frames outside it belong to another night and
    fail alone (None: no check)."""
    calibration_notes: tuple[str, ...] = ()
    """What the operator should know of the night's masters (no dark of its own and which
    one it uses, calibration frames left out and why): warnings of its event log, so its
    report keeps them."""

    @property
    def night_dir(self) -> Path:
        return self.night.night_dir(self.out_dir)

    @property
    def log_path(self) -> Path:
        return event_log_path(self.night_dir)


@dataclass
class NightReport:
    """The outcome of :func:`run_night`."""

    state: NightState
    """The night's counters, complete (every event applied)."""
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
    missing: tuple[str, ...] = ()
    """Products the night should have made and has not (checked on disk at the end)."""

    @property
    def reduced(self) -> bool:
        """True when the night ran to its end and frames were reduced (now or by an earlier
        run): its summary can be made, listing anything :attr:`missing`."""
        done = self.state.frames_reduced + self.skipped_frames
        return not self.stopped_early and done > 0

    @property
    def ok(self) -> bool:
        """True when the night was reduced completely: every product is on disk."""
        return self.reduced and not self.missing


class _SkipDone:
    """The frames of a source whose set is not done yet (an earlier run of the night made
    it); :attr:`skipped` counts the others."""

    def __init__(self, source: AsyncIterator[FrameReady], resume: ResumePoint) -> None:
        self.source, self.resume = source, resume
        self.skipped = 0

    async def frames(self) -> AsyncIterator[FrameReady]:
        try:
            async for frame in self.source:
                if self.resume.skips(frame.lstseq):
                    self.skipped += 1
                    continue
                yield frame
        finally:
            await camera.close_source(self.source)


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
    outside_events: MemoryObjectReceiveStream[Event] | None = None,
    combine_threads: int | None = None,
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
        Frames in lstseq order: a :class:`hw.source.FrameSource` (a recorded night paced
        or not, or a live camera), injected by the application layer.
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
    outside_events
        Events of the caller (a station's camera link, say) for this night's log and state:
        taken while the night runs, and those waiting at its end before ``NightFinished``.
        The stream stays open (the caller may have more after the night).
    combine_threads
        Threads that compress the nightly files' light curves (default: one per core of
        the machine). A process that has one core of its own (a Dask worker) gives 1: with
        every core busy, more threads only cost time.
    """
    t0 = time.time()
    cfg = plan.config.reduction
    state = state if state is not None else NightState()
    stop = stop if stop is not None else anyio.Event()
    mode = worker_mode if worker_mode is not None else ("thread" if in_process else "process")
    stopped_by: list[str] = []
    seen_sets: set[int] = set()
    nightly: dict[str, Path | None] = {}
    files: list[Path] = []
    missing: tuple[str, ...] = ()

    frames_send, frames_recv = anyio.create_memory_object_stream[FrameReady](cfg.channels.frames)
    reduced_send, reduced_recv = anyio.create_memory_object_stream[
        FrameReduced | FrameForBinning
    ](cfg.channels.records)
    saver_send, saver_recv = anyio.create_memory_object_stream[FrameReduced](cfg.channels.records)
    binner_send, binner_recv = anyio.create_memory_object_stream[FrameReduced | FrameForBinning](
        cfg.channels.records
    )
    binned_send, binned_recv = anyio.create_memory_object_stream[BinnedOutput](cfg.channels.records)
    ev_send, ev_recv = anyio.create_memory_object_stream[Event](cfg.channels.events)
    spool = Spool(frames_send)
    storage = cfg.storage
    combine_options: dict[str, Any] = {
        "minobs": storage.minobs,
        "compression": None if storage.compression == "none" else storage.compression,
        "threads": combine_threads,
    }

    async with (
        SetWriter(plan.night_dir, header=_header_attrs(plan)) as writer,
        Worker("reducer", mode=mode) as reducer_worker,
        Worker("binner", mode=mode) as binner_worker,
    ):
        resume = await anyio.to_thread.run_sync(
            lambda: resume_point(plan.night_dir, repair=True)
        )
        skip_done = _SkipDone(source, resume)

        async def save(kind: str, saving: Awaitable[Path | None]) -> None:
            nightly[kind] = await saving
        if resume.done_sets or resume.rebin_sets:
            log.info(
                "%s: %d sets already on disk (their frames are skipped), %d to bin again",
                plan.night_dir,
                len(resume.done_sets),
                len(resume.rebin_sets),
            )
        calibration, calibration_problem = await anyio.to_thread.run_sync(
            calibrator.load_calibration, plan.out_dir, plan.camera
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
                        calibration=str(calibration.path) if calibration else "",
                        dark=Path(plan.worker.dark).name if plan.worker.dark else "",
                        flat=Path(plan.worker.flat).name if plan.worker.flat else "",
                    )
                )
                for note in plan.calibration_notes:
                    await ev_send.send(WarningEvent(source="masters", message=note))
                for note in resume.notes:
                    await ev_send.send(WarningEvent(source="resume", message=note))
                if calibration_problem:
                    await ev_send.send(
                        WarningEvent(source="calibrator", message=calibration_problem)
                    )
                calibrate_send: MemoryObjectSendStream[SetRecords] | None = None
                if calibration is not None:
                    calibrate_send, calibrate_recv = anyio.create_memory_object_stream[
                        SetRecords
                    ](_CALIBRATE_QUEUE)
                async with anyio.create_task_group() as side:
                    side.start_soon(_monitor, ev_send.clone(), spool, frames_recv, reduced_recv)
                    if outside_events is not None:
                        side.start_soon(_forward, outside_events, ev_send)
                    async with anyio.create_task_group() as tg:
                        if handle_signals:
                            side.start_soon(stop_on_signals, stop, tg.cancel_scope, stopped_by)
                        tg.start_soon(spool.feed)
                        # The binner's worker starts only when a set must be read from
                        # disk again (jobs.finish_set).
                        tg.start_soon(reducer_worker.warm_up, WARM_UP_JOB, plan.worker)
                        tg.start_soon(
                            lambda: camera.run(
                                source=skip_done.frames(),
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
                                worker=reducer_worker,
                                spec=plan.worker,
                                restored=resume.solutions,
                                rebin=resume.frame_aflags,
                                window=plan.window,
                                stop=stop,
                                gate=gate,
                            )
                        )
                        tg.start_soon(_tee, reduced_recv, saver_send, binner_send, seen_sets)
                        tg.start_soon(
                            lambda: binner.run(
                                inbox=binner_recv,
                                outbox=binned_send,
                                events=ev_send.clone(),
                                worker=binner_worker,
                                reducer_worker=reducer_worker,
                                spec=plan.worker,
                                out_dir=binned_dir(plan.night_dir),
                                stopping=stop,
                            )
                        )
                        tg.start_soon(
                            save,
                            "slow",
                            saver.run_slow(
                                inbox=binned_recv,
                                events=ev_send.clone(),
                                writer=writer,
                                star_rows=lambda records: star_table(catalogue, records),
                                stopping=stop,
                                combine_options=combine_options,
                                on_disk=resume.slow_sets,
                            ),
                        )
                        tg.start_soon(
                            save,
                            "fast",
                            saver.run(
                                inbox=saver_recv,
                                events=ev_send.clone(),
                                delay_s=saver_delay,
                                writer=writer,
                                star_rows=lambda records: star_table(catalogue, records),
                                stopping=stop,
                                combine_options=combine_options,
                                calibrate=calibrate_send,
                            ),
                        )
                        if calibration is not None:
                            tg.start_soon(
                                lambda: calibrator.run(
                                    inbox=calibrate_recv,
                                    events=ev_send.clone(),
                                    calibration=calibration,
                                    night_dir=plan.night_dir,
                                    camera=plan.camera.id,
                                )
                            )
                    side.cancel_scope.cancel()
                if spool.spooled:
                    await ev_send.send(Spooled(spooled=spool.spooled, caught_up=spool.caught_up))
                if outside_events is not None:
                    for ev in waiting_events(outside_events):
                        await ev_send.send(ev)
                files = [f for f in (nightly.get("fast"), nightly.get("slow")) if f is not None]
                if not stop.is_set():
                    phase("nightly-done", "night")
                    missing = await anyio.to_thread.run_sync(
                        missing_products, plan.night_dir, seen_sets
                    )
                await ev_send.send(
                    NightFinished(
                        frames_reduced=state.frames_reduced,
                        frames_failed=state.frames_failed,
                        nightly_files=tuple(str(f) for f in files),
                        wall_s=time.time() - t0,
                        missing=missing,
                    )
                )
    return NightReport(
        state=state,
        stopped_early=stop.is_set(),
        wall_s=time.time() - t0,
        skipped_frames=skip_done.skipped + len(resume.frame_aflags),
        nightly_files=files,
        stopped_by=stopped_by[0] if stopped_by else None,
        worker_restarts=reducer_worker.restarts + binner_worker.restarts,
        failure=state.fatal,
        missing=missing,
    )


async def _forward(
    inbox: MemoryObjectReceiveStream[Event], outbox: ObjectSendStream[Event]
) -> None:
    """Pass the caller's events on to the summariser (until cancelled; neither is closed)."""
    async for ev in inbox:
        await outbox.send(ev)


def waiting_events(inbox: MemoryObjectReceiveStream[Event]) -> list[Event]:
    """The events ``inbox`` holds now (none once it is closed), without waiting."""
    out: list[Event] = []
    while True:
        try:
            out.append(inbox.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            return out


async def _tee(
    inbox: MemoryObjectReceiveStream[FrameReduced | FrameForBinning],
    saver_box: ObjectSendStream[FrameReduced],
    binner_box: ObjectSendStream[FrameReduced | FrameForBinning],
    seen_sets: set[int],
) -> None:
    """Hand every reduced frame to the saver and to the binner (each with backpressure), and
    the frames to bin again to the binner alone; note each set seen in ``seen_sets``."""
    async with inbox, saver_box, binner_box:
        async for msg in inbox:
            seen_sets.add(msg.setidx)
            if isinstance(msg, FrameReduced):
                await saver_box.send(msg)
            await binner_box.send(msg)


async def _monitor(
    events: ObjectSendStream[Event],
    spool: Spool[FrameReady],
    frames_recv: MemoryObjectReceiveStream[FrameReady],
    reduced_recv: MemoryObjectReceiveStream[FrameReduced | FrameForBinning],
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
