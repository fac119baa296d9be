"""The supervisor: one task group owns the camera, reducer, saver and summariser.

``run_night`` wires the actors with bounded channels (sizes from config), starts them, and
returns when the night is reduced, combined and logged. The source of frames is injected
(a live camera or a recorded night, from the command line), so this module imports nothing
from ``hw``. SIGINT or SIGTERM stops the camera; what is in flight is reduced and saved, and
the open set is left for the restart. A second signal cancels at once.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import numpy as np

from mascara_actors import __version__
from mascara_actors.actors import camera, reducer, saver, summariser
from mascara_actors.actors.events import Event, NightFinished, NightStarted, QueueDepths
from mascara_actors.actors.messages import FrameReady, FrameReduced
from mascara_actors.actors.reducer import ReducerWorker, WorkerSpec
from mascara_actors.actors.saver import SaverResult
from mascara_actors.actors.spool import Spool
from mascara_actors.actors.summariser import NightState
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, Config
from mascara_actors.records import star_dtype
from mascara_actors.sidereal import SLOT_SIDEREAL_S, set_index, slot_length_solar_s
from mascara_actors.storage import NightId, SetWriter

__all__ = ["NightPlan", "NightReport", "paced_frames", "run_night", "star_table"]

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

    @property
    def ok(self) -> bool:
        """True when the night was reduced: frames reduced and a nightly file written."""
        return self.state.frames_reduced > 0 and bool(self.nightly_files)


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
    """FrameReady messages for recorded frames, as fast as possible or at the real cadence.

    With ``realtime`` each frame is released when its slot ends (6.4 sidereal seconds per
    lstseq, divided by ``speed``), measured from the first frame, as a camera would deliver.
    """
    if not frames:
        return
    slot = slot_length_solar_s(SLOT_SIDEREAL_S) / speed
    start = anyio.current_time()
    first = frames[0][0]
    for lstseq, path in frames:
        if realtime:
            due = start + (lstseq - first + 1) * slot
            await anyio.sleep(max(due - anyio.current_time(), 0.0))
        yield FrameReady(path=Path(path), lstseq=int(lstseq), arrived=time.time())


async def _skip_done(
    source: AsyncIterator[FrameReady], done: set[int], counter: list[int]
) -> AsyncIterator[FrameReady]:
    async for frame in source:
        if int(set_index(frame.lstseq)) in done:
            counter[0] += 1
            continue
        yield frame


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
    in_process: bool = False,
    saver_delay: float = 0.0,
) -> NightReport:
    """Reduce one camera-night from ``source``; see the module docstring.

    Parameters
    ----------
    state
        Filled in live (the console and the progress bar read it).
    stop
        Set it to end the night early and gracefully (what SIGINT does).
    in_process
        Run the reduction in a thread instead of a worker process (debugging).
    saver_delay
        Seconds the saver waits per message (tests of backpressure only).
    """
    t0 = time.time()
    cfg = plan.config.reduction
    state = state if state is not None else NightState()
    stop = stop if stop is not None else anyio.Event()
    saved = SaverResult()
    skipped = [0]

    frames_send, frames_recv = anyio.create_memory_object_stream[FrameReady](cfg.channels.frames)
    reduced_send, reduced_recv = anyio.create_memory_object_stream[FrameReduced](
        cfg.channels.records
    )
    ev_send, ev_recv = anyio.create_memory_object_stream[Event](cfg.channels.events)
    spool = Spool(frames_send)
    worker = ReducerWorker(plan.worker, in_process=in_process)
    storage = cfg.storage

    async with SetWriter(plan.night_dir, header=_header_attrs(plan)) as writer:
        done = {int(s) for s in writer.completed_sets("fast")}
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
                        resumed_sets=len(done),
                    )
                )
                async with anyio.create_task_group() as side:
                    side.start_soon(_monitor, ev_send.clone(), spool, frames_recv, reduced_recv)
                    async with anyio.create_task_group() as tg:
                        if handle_signals:
                            side.start_soon(_signals, stop, tg.cancel_scope)
                        tg.start_soon(spool.feed)
                        tg.start_soon(
                            lambda: camera.run(
                                source=_skip_done(source, done, skipped),
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
                            )
                        )
                        tg.start_soon(
                            lambda: saver.run(
                                inbox=reduced_recv,
                                events=ev_send.clone(),
                                delay_s=saver_delay,
                                writer=writer,
                                star_rows=lambda records: star_table(catalogue, records),
                                stopping=stop,
                                combine_options={
                                    "minobs": storage.minobs,
                                    "compression": None
                                    if storage.compression == "none"
                                    else storage.compression,
                                },
                                result=saved,
                            )
                        )
                    side.cancel_scope.cancel()
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
    )


async def _monitor(events, spool: Spool, frames_recv, reduced_recv) -> None:  # type: ignore[no-untyped-def]
    """Report the depth of every queue once a second (backpressure made visible)."""
    async with events:
        while True:
            depths = {
                "spool": spool.waiting,
                "frames": frames_recv.statistics().current_buffer_used,
                "records": reduced_recv.statistics().current_buffer_used,
            }
            await events.send(QueueDepths(depths=depths))
            await anyio.sleep(1.0)


async def _signals(stop: anyio.Event, scope: anyio.CancelScope) -> None:
    """First SIGINT/SIGTERM: graceful stop. Second: cancel everything now."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if stop.is_set():
                log.warning("second %s: stopping now", signal.Signals(signum).name)
                scope.cancel()
                return
            log.warning(
                "%s: finishing the frames in flight, then stopping (again to stop at once)",
                signal.Signals(signum).name,
            )
            stop.set()
