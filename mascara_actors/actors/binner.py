"""The binner actor: co-add each set of 50 and measure the fainter stars on it.

The binner collects the paths of a set's reduced frames; when the set is complete (the first
frame of the next set arrives, or the night ends) one job in a worker process reads and
calibrates them one at a time into a :class:`~mascara_actors.binning.SetStack` (memory stays
at a few images), writes the Rice-compressed binned image and measures the slow photometry
(V <= 10). Only the small slow records come back. The job needs no state between calls, so
it can run in any worker process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_process
import anyio.to_thread
import numpy as np
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from mascara_actors.actors.events import Event, SetBinned, WarningEvent
from mascara_actors.actors.messages import FrameReduced
from mascara_actors.actors.reducer import WorkerSpec, _session
from mascara_actors.astrometry import AstrometricSolution
from mascara_actors.binned_file import write_binned
from mascara_actors.binning import SetStack
from mascara_actors.errors import MascaraError
from mascara_actors.slow import measure_binned

__all__ = ["BinnedOutput", "bin_set", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BinnedOutput:
    """What one set's binning produced (small: no image)."""

    setidx: int
    nimages: int
    nrefused: int
    flag: int
    path: str | None
    """The binned FITS file, None when the set had too few frames to bin."""
    records: np.ndarray | None
    """Slow records (``slow_record_dtype()`` with ``id``), None when not binned."""
    station: np.ndarray | None


def bin_set(
    spec: WorkerSpec, setidx: int, paths: list[str], solution: AstrometricSolution, out_dir: str
) -> BinnedOutput:
    """Co-add the frames at ``paths`` (one set), write the binned image, measure it."""
    session = _session(spec)
    cfg = session.config.reduction
    stack = SetStack(
        solution.model,
        setidx,
        min_frames=cfg.binning.min_frames,
        camera=session.camera.letter,
        site=session.camera.site.name,
        # Two copy threads keep a full-size set under 5 s (bench binned_set_s); the job runs
        # once per 320 s, so it barely competes with the reducer for the second core.
        threads=2,
    )
    for path in paths:
        try:
            raw = session.read(path)
            stack.add(session.calibrated_image(raw), raw.header, aflag=solution.aflag)
        except MascaraError as exc:
            log.warning("set %d: %s left out of the binned image: %s", setidx, path, exc)
    binned = stack.finish()
    if not binned.binned:
        return BinnedOutput(
            setidx, binned.nimages, binned.nrefused, int(binned.flag), None, None, None
        )
    file = write_binned(out_dir, binned, solution.model)
    slow = measure_binned(
        binned.image,
        binned,
        solution.model,
        session.catalogue,
        cfg.photometry,
        aflag=solution.aflag,
        ephemeris=session._ephemeris,
    )
    return BinnedOutput(
        setidx,
        binned.nimages,
        binned.nrefused,
        int(binned.flag),
        str(file),
        np.array(slow.records),
        np.array(slow.station),
    )


async def run(
    *,
    inbox: ObjectReceiveStream[FrameReduced],
    outbox: ObjectSendStream[BinnedOutput],
    events: ObjectSendStream[Event],
    spec: WorkerSpec,
    out_dir: Path,
    stopping: anyio.Event,
    mode: str = "process",
) -> None:
    """Bin every complete set of ``inbox`` and send its slow photometry to ``outbox``.

    ``mode`` is where the job runs, as the reducer's: ``process``, ``thread`` or ``inline``.
    """
    paths: list[str] = []
    current: int | None = None
    solution: AstrometricSolution | None = None
    limiter = anyio.CapacityLimiter(1)

    async def flush(setidx: int, solution: AstrometricSolution) -> None:
        job = (bin_set, spec, setidx, list(paths), solution, str(out_dir))
        try:
            if mode == "process":
                result = await anyio.to_process.run_sync(*job, limiter=limiter)
            elif mode == "thread":
                result = await anyio.to_thread.run_sync(*job, limiter=limiter)
            else:
                result = job[0](*job[1:])
        except (MascaraError, anyio.BrokenWorkerProcess) as exc:
            await events.send(WarningEvent(source="binner", message=f"set {setidx}: {exc}"))
            return
        await events.send(
            SetBinned(
                setidx=result.setidx,
                nimages=result.nimages,
                nrefused=result.nrefused,
                flag=result.flag,
                path=result.path or "",
                nstars=0 if result.records is None else int(result.records.size),
            )
        )
        if result.records is not None:
            await outbox.send(result)

    out_dir.mkdir(parents=True, exist_ok=True)
    async with inbox, outbox, events:
        async for msg in inbox:
            if current is not None and solution is not None and msg.setidx != current:
                await flush(current, solution)
                paths.clear()
            current, solution = msg.setidx, msg.solution
            paths.append(str(msg.path))
        if paths and current is not None and solution is not None and not stopping.is_set():
            await flush(current, solution)
