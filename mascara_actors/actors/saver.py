"""The saver actor: collect each set's records, write it whole, combine at the end.

A set is written when the first frame of the next set arrives, or when the night ends. On a
graceful stop before the end (SIGINT, SIGTERM) the open set is *not* written, unless its last
slot has come (then it is complete, and written as it would have been): its raw frames are in
the archive and a restart reduces the set again, so no frame is lost or doubled.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from mascara_actors.errors import StorageError
from mascara_actors.faults import phase
from mascara_actors.messages import (
    BinnedOutput,
    Event,
    FrameReduced,
    NightlyFileWritten,
    ProductFailed,
    SetRecords,
    SetSaved,
)
from mascara_actors.records import astrometry_dtype
from mascara_actors.sidereal import SET_SIZE
from mascara_actors.storage import CombineReport, SetWriter
from mascara_actors.storage import layout as L

__all__ = ["run", "run_slow"]

log = logging.getLogger(__name__)


def _astrometry_row(frames: list[FrameReduced]) -> np.ndarray:
    # The last frame's solution is the best the set reached (a set whose first frames could
    # not check the astrometry checks it on a later one); the binner uses the same.
    sol = frames[-1].solution
    params = sol.params()
    row = np.zeros(1, astrometry_dtype(params.size))
    row["lstseq"] = sol.lstseq
    row["setidx"] = frames[0].setidx
    row["nstars"] = sol.nstars
    row["nused"] = sol.nused
    row["dx"] = sol.dx
    row["dy"] = sol.dy
    row["dr"] = sol.dr
    row["aflag"] = sol.aflag
    row["params"] = params
    return row


async def run(
    *,
    inbox: ObjectReceiveStream[FrameReduced],
    events: ObjectSendStream[Event],
    writer: SetWriter,
    star_rows: Callable[[np.ndarray], np.ndarray],  # records -> star_dtype rows
    stopping: anyio.Event,
    combine_options: dict[str, Any],
    delay_s: float = 0.0,
    calibrate: ObjectSendStream[SetRecords] | None = None,
) -> Path | None:
    """Write every complete set of ``inbox``; at the end of the night, combine; returns the
    nightly fast file (None when the night stopped early or it could not be written).

    ``delay_s`` makes the saver take that long per message: a slow disk, for the
    backpressure tests. Each set written goes on to ``calibrate`` (the live calibration)
    when given; it is closed with the inbox.
    """
    frames: list[FrameReduced] = []
    failed: list[int] = []

    async def flush() -> None:
        setidx = frames[0].setidx
        records = np.concatenate([f.records for f in frames])
        station = np.concatenate([f.station for f in frames])
        stars = star_rows(records)
        try:
            path = await writer.write_set_async(
                "fast",
                setidx,
                records,
                stars=stars,
                station=station,
                astrometry=_astrometry_row(frames),
            )
        except StorageError as exc:
            # A full disk or a foreign file: the set's raw frames stay in the archive.
            await events.send(ProductFailed(setidx=setidx, product="fast", reason=str(exc)))
            failed.append(setidx)
            frames.clear()
            return
        phase("fast-saved", setidx)
        await events.send(
            SetSaved(
                kind_="fast",
                setidx=setidx,
                nframes=len(frames),
                nrecords=int(records.size),
                path=str(path),
            )
        )
        frames.clear()
        if calibrate is not None:
            # the calibrator never stops the saver: were it gone, the sets are saved as always
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await calibrate.send(
                    SetRecords(setidx=setidx, records=records, stars=stars, station=station)
                )

    async with inbox, events, calibrate if calibrate is not None else contextlib.nullcontext():
        async for msg in inbox:
            if delay_s:
                await anyio.sleep(delay_s)
            if frames and msg.setidx != frames[0].setidx:
                await flush()
            frames.append(msg)
        if stopping.is_set():
            # A set whose last slot has come is complete: saved, as it would be later.
            if frames and frames[-1].lstseq % SET_SIZE == SET_SIZE - 1:
                await flush()
            elif frames:
                log.info(
                    "stopped mid-set %d: %d frames are left for the restart",
                    frames[0].setidx,
                    len(frames),
                )
            return None
        if frames:
            await flush()
        options = _combine_options(combine_options, "fast", failed)
        try:
            report = await anyio.to_thread.run_sync(lambda: writer.combine("fast", **options))
        except StorageError as exc:
            await events.send(ProductFailed(setidx=None, product="fast", reason=str(exc)))
            return None
        return await _combined(report, events)


async def run_slow(
    *,
    inbox: ObjectReceiveStream[BinnedOutput],
    events: ObjectSendStream[Event],
    writer: SetWriter,
    star_rows: Callable[[np.ndarray], np.ndarray],
    stopping: anyio.Event,
    combine_options: dict[str, Any],
    on_disk: frozenset[int] = frozenset(),
) -> Path | None:
    """Write each binned set's slow photometry as a slow per-set file; combine at the end;
    returns the nightly slow file (None when the night stopped early or it could not be
    written).

    ``on_disk``: sets whose slow side an earlier run of the night left on disk. Such a set
    comes again only when its fast photometry did not reach the disk; it is not written a
    second time.

    A slow set is one record per star, so the nightly slow file keeps every star
    (``minobs`` 1), as the legacy slow files did. A set too short to bin is written too,
    with no records: its station row (``setflag``) records that it has no image.
    """
    failed: list[int] = []
    async with inbox, events:
        async for out in inbox:
            phase("slow-saving", out.setidx)
            if out.setidx in on_disk:
                log.info("set %d: its slow photometry is on disk already", out.setidx)
                continue
            try:
                await writer.write_set_async(
                    "slow",
                    out.setidx,
                    out.records,
                    stars=star_rows(out.records),
                    station=out.station,
                )
            except StorageError as exc:
                await events.send(
                    ProductFailed(setidx=out.setidx, product="slow", reason=str(exc))
                )
                failed.append(out.setidx)
        if stopping.is_set():
            return None
        options = _combine_options({**combine_options, "minobs": 1}, "slow", failed)
        try:
            report = await anyio.to_thread.run_sync(lambda: writer.combine("slow", **options))
        except StorageError as exc:
            await events.send(ProductFailed(setidx=None, product="slow", reason=str(exc)))
            return None
        return await _combined(report, events)


def _combine_options(options: dict[str, Any], kind: str, failed: list[int]) -> dict[str, Any]:
    """``options`` of the end-of-night combine, keeping the per-set files when a set of the
    night could not be written.

    The nightly file leaves out the stars with fewer than ``minobs`` points. Without the
    failed set, a star may fall short only for now: the re-run that makes the set again
    combines it with the kept per-set files, and the star has all its points. Were they
    deleted, its points of the other sets would be lost for good.
    """
    if not failed:
        return options
    log.warning("%s sets %s could not be written: the nightly file is made from the others "
                "and their per-set files are kept for the re-run that completes the night",
                kind, ", ".join(map(str, failed)))
    return {**options, "keep_sets": True}


async def _combined(report: CombineReport, events: ObjectSendStream[Event]) -> Path | None:
    """Report the nightly file ``report`` wrote (None: there was nothing to combine), and the
    per-set files it left out: the night lacks what they hold (a set written by another
    version or configuration, say, after a restart mid-night)."""
    for path, reason in report.skipped:
        named = L.parse_set_file_name(path)
        await events.send(ProductFailed(
            setidx=named[1] if named is not None else None, product=report.kind,
            reason=f"{path} was left out of the nightly file ({reason}); move it away and run "
                   "the night again to make its set anew"))
    if report.output is None:
        return None
    await events.send(NightlyFileWritten(kind_=report.kind, path=str(report.output)))
    return report.output
