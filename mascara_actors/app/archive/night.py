"""One camera-night of an archive, reduced on a Dask worker (or anywhere).

:func:`reduce_camera_night` runs the pipeline of ``--replay`` on the night's frames
(:mod:`mascara_actors.app.replay`), so its products are the bytes a ``--replay`` of the
night makes. It is idempotent: a night whose record says complete and whose products verify
is not reduced again (one whose products do not, or whose science frames in the archive are
not as many as it was reduced from, is refused: it changed since it was made); an
interrupted night resumes from its saved sets; a night holding
another software version's products is refused. Expected failures come back as an outcome
(the run goes on with the other nights); anything else raises, and Dask retries the task.
A worker that does not see the archive or the output directory where the run saw them (a
cluster machine without the shared disk, a disk unmounted since the scan) fails the night
at once, naming the path: retrying cannot help.

A stop is asked for by creating the run's stop file (on the output disk, which every worker
shares): a night not begun then does not begin, a running one reduces to the end of its
current set, saves it, and stops; the next run resumes it without reducing a frame twice.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from hw.recorded import RecordedNight
from mascara_actors.actors.pipeline import NightReport, run_night
from mascara_actors.app.archive.task import NightOutcome, NightTask, frames_changed
from mascara_actors.app.replay import ReplayJob, plan_replay, record_complete, replay_frames
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.errors import MascaraError
from mascara_actors.frames import FrameReady
from mascara_actors.night_state import NightState
from mascara_actors.sidereal import SET_SIZE
from mascara_actors.storage.layout import report_path, summary_dir
from mascara_actors.storage.provenance import (
    check_complete,
    config_hash,
    read_provenance,
)
from mascara_actors.summary import summarise_night
from mascara_actors.summary.report import problem_pattern

if TYPE_CHECKING:
    from distributed import Worker

__all__ = ["reduce_camera_night"]

@functools.cache
def _catalogue() -> Catalogue:
    """The catalogue, loaded once per worker process (it serves every night)."""
    return Catalogue.load()


def _dask_worker() -> Worker | None:
    """The Dask worker this runs in (None outside one)."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _worker_threads() -> int | None:
    """The threads of the Dask worker this runs in (None outside one)."""
    worker = _dask_worker()
    return None if worker is None else int(worker.state.nthreads)


def _worker_name() -> str:
    worker = _dask_worker()
    return f"{socket.gethostname()}:{os.getpid()}" if worker is None else str(worker.address)


def reduce_camera_night(task: NightTask) -> NightOutcome:
    """Reduce ``task.night`` into ``task.out`` (blocking; the module docstring says how)."""
    t0 = time.monotonic()
    n = task.night
    outcome = functools.partial(
        NightOutcome, night=n.night, camera=n.camera_id, frames=n.science, worker=_worker_name()
    )
    if task.stop_file.exists():
        return outcome(status="not started")
    if unseen := _unseen(task):
        return outcome(status="failed", error=unseen, wall_s=time.monotonic() - t0)
    try:
        config = load_config(task.config_dir)
        night_dir = task.out / n.key
        record = read_provenance(night_dir)
        if (
            record is not None
            and record.status == "complete"
            and record.made_here(config_hash(config.directory))
        ):
            if changed := frames_changed(n, record.raw_frames):
                return outcome(status="failed", error=f"{night_dir}: {changed}",
                               wall_s=time.monotonic() - t0)
            check_complete(night_dir, record, thorough=task.thorough)
            if not report_path(summary_dir(night_dir), n.key, ".txt").is_file():
                # made after the record by earlier versions: a night killed between the two
                # was left without its report
                summarise_night(night_dir, config=config)
            return outcome(status="verified", wall_s=time.monotonic() - t0)
        job = plan_replay(
            RecordedNight(task.archive_root, files=n.frames()),
            task.out,
            config=config,
            camera_id=n.camera_id,
            command=task.command,
            borrowed_darks=n.borrowed,
        )
        state = NightState()
        report = anyio.run(_reduce, job, state, task.stop_file, backend="trio")
    except MascaraError as exc:
        return outcome(status="failed", error=str(exc), wall_s=time.monotonic() - t0)
    if report.stopped_early:
        status, error = "stopped", report.failure or ""
    elif report.missing or not job.reduced(report):
        status, error = "incomplete", _why_incomplete(report)
    else:
        # the report before the record: a night recorded complete is not reduced again, so
        # one killed between the two would be left without its report
        summarise_night(job.plan.night_dir, config=config)
        record_complete(job)
        status, error = "reduced", ""
    return outcome(
        status=status,
        error=error,
        wall_s=time.monotonic() - t0,
        reduced=state.frames_reduced,
        failed=state.frames_failed,
        warnings=state.warnings,
    )


def _unseen(task: NightTask) -> str:
    """Why this worker cannot reduce the night: the archive or the output directory is not
    where the run saw it ("" when both are). On a cluster, a worker whose machine does not
    mount the disk; on any machine, a disk unmounted (or the night moved) since the scan.
    The output directory is looked for by the directory of the run's stop file, which the
    run makes in it before any night: an empty mount point is no output directory."""
    for what, path, sign in (("the archive", task.archive_root, task.archive_root),
                             ("the output directory", task.out, task.stop_file.parent)):
        if not sign.is_dir():
            return (f"worker {_worker_name()} does not see {what} {path}: the archive and "
                    "--out must be on a disk every worker mounts at the same path (is it "
                    "still mounted here?)")
    runs = sorted({run.directory for run in task.night.runs})
    if missing := [str(d) for d in runs if not d.is_dir()]:
        return (f"worker {_worker_name()} does not see {', '.join(missing)} of the night: "
                "moved or unmounted since the scan; run the same command again to scan the "
                "archive as it is now")
    return ""


def _why_incomplete(report: NightReport) -> str:
    """Why a night that ran to its end is not complete: the first product that could not be
    written (its reason says the cause, a full disk say, and what to do), then what is
    missing."""
    missing = "; ".join(report.missing) or "no frame of the night could be reduced"
    if not report.missing and (common := _most_common_failure(report.state)):
        missing += f" ({common})"
    failed = report.state.products_failed
    if not failed:
        return missing
    more = f" (and {len(failed) - 1} more products not written)" if len(failed) > 1 else ""
    return f"{failed[0]}{more}; missing: {missing}"


def _most_common_failure(state: NightState) -> str:
    """The reason most of the night's failed frames share, with how many share it ("" when
    none failed): the cause of a night of which no frame could be reduced, in its error."""
    reasons = [message for _, level, _, message in state.problems if level == "error"]
    if not reasons:
        return ""
    patterns = [problem_pattern(r) for r in reasons]
    pattern, count = Counter(patterns).most_common(1)[0]
    example = reasons[patterns.index(pattern)]
    share = ("every frame" if count == len(reasons)
             else f"{count} of the last {len(reasons)} failed frames")
    return f"{share} failed with: {example}"


async def _reduce(job: ReplayJob, state: NightState, stop_file: Path) -> NightReport:
    """The night on this thread's event loop; the reduction in worker threads (one core's
    worth: a Dask worker is a process per core; its nightly files are compressed with as many
    threads as it has, since with every core reducing a thread per core in each worker
    only adds threads)."""
    catalogue = await anyio.to_thread.run_sync(_catalogue)
    stop = anyio.Event()
    return await run_night(
        job.plan,
        _to_set_end(replay_frames(job, realtime=False, speed=1.0), stop_file, stop),
        catalogue,
        state=state,
        stop=stop,
        worker_mode="thread",
        combine_threads=_worker_threads(),
    )


async def _to_set_end(
    frames: AsyncIterator[FrameReady], stop_file: Path, stop: anyio.Event
) -> AsyncIterator[FrameReady]:
    """``frames`` until the first frame of a set that begins once ``stop_file`` exists: the
    night is stopped (``stop``) there, so no frame it reduced is left unsaved.

    The file is looked at once per set, at its first frame: a stop acts only at the end of
    a set, and a poll of the shared disk ten times a second cost a night several per cent of
    its CPU time (a thread hop each time, against the reduction's threads for the GIL).
    """
    current: int | None = None
    async for frame in frames:
        setidx = frame.lstseq // SET_SIZE
        new_set = current is not None and setidx != current
        if new_set and await anyio.to_thread.run_sync(stop_file.exists):
            stop.set()
            return
        current = setidx
        yield frame
