"""``mascara-actors --replay DIR``: reduce a recorded night headless, with a progress bar.

Exit codes: 0 when the night was reduced to its nightly file; 1 when it was not (every
frame failed, nothing to combine); 2 for bad input (from :func:`mascara_actors.cli.main`);
128 + the signal number when SIGINT (130) or SIGTERM (143) stopped it early; running the
same command again finishes the night.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import anyio
import anyio.to_thread

from hw.recorded import RecordedNight
from mascara_actors.actors.pipeline import (
    NightPlan,
    NightReport,
    paced_frames,
    resume_point,
    run_night,
)
from mascara_actors.actors.reducer import WorkerSpec
from mascara_actors.actors.summariser import NightState
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, Config, load_config
from mascara_actors.ephemeris import night_date
from mascara_actors.errors import ConfigError
from mascara_actors.masters import make_masters
from mascara_actors.progress import ProgressBar
from mascara_actors.rawframe import read_raw
from mascara_actors.sidereal import slot_length_solar_s
from mascara_actors.storage import NightId
from mascara_actors.summary import summarise_night

__all__ = ["ReplayJob", "plan_replay", "run"]


@dataclass(frozen=True, slots=True)
class ReplayJob:
    """A recorded night, ready to replay (what :func:`plan_replay` found)."""

    plan: NightPlan
    frames: tuple[tuple[int, Path], ...]
    """(lstseq, path) of the science frames still to reduce, in lstseq order."""
    total: int
    """Science frames in the recorded night."""
    skipped: int
    """Science frames of sets already on disk from an earlier run (not reduced again)."""
    notes: tuple[str, ...]
    """Remarks for the user (which master dark is used, ...)."""


def _camera(config: Config, night: RecordedNight, camera_id: str | None) -> CameraConfig:
    first = night.frames()[0]
    header = read_raw(first.path).header
    if camera_id is None:
        sites = [s for s in config.sites.values() if s.name == header.site]
        if not sites:
            raise ConfigError(
                f"{first.path}: SITE-OBS {header.site!r} is not a configured site "
                f"({sorted(config.sites)}); pass --camera"
            )
        camera_id = sites[0].code + header.camera
    camera = config.camera(camera_id)
    if camera.letter != first.camera:
        raise ConfigError(
            f"--camera {camera_id} but the frames in {night.directory} are of camera "
            f"{first.camera}: pass the id of camera {first.camera} or leave --camera out"
        )
    return camera


def plan_replay(
    directory: str | Path,
    out: str | Path,
    *,
    config: Config,
    camera_id: str | None = None,
    realtime: bool = False,
) -> ReplayJob:
    """Scan a recorded night, make its masters and plan its replay into ``out``.

    Frames are taken in lstseq order whatever the order of the files; frames of sets that
    an earlier run already wrote are left out (the night resumes).

    Parameters
    ----------
    directory
        The recorded night (raw FITS files named by lstseq).
    out
        Output directory; the night goes to ``out/{night}{SITE}{CAM}/``.
    config
        The configuration.
    camera_id
        Camera id such as ``"LPC"``; default from the frames' headers.
    realtime
        The replay will be paced at the real cadence (the camera edge then never waits).

    Raises
    ------
    ConfigError
        Directory missing, empty, mixing cameras, without science frames, or a camera that
        does not match the frames.
    """
    night = RecordedNight(directory)
    camera = _camera(config, night, camera_id)
    science = [(f.lstseq, f.path) for f in night.frames("science")]
    if not science:
        raise ConfigError(
            f"recorded night {directory} holds no science frames (only "
            f"{len(night)} calibration frames): nothing to reduce"
        )
    first = read_raw(science[0][1]).header
    date = night_date(first.jd, camera.site)
    nid = NightId(date.strftime("%Y%m%d"), camera.site.code, camera.letter)
    out = Path(out)
    night_dir = nid.night_dir(out)
    masters = make_masters(
        bias=[f.path for f in night.frames("bias")],
        dark=[f.path for f in night.frames("dark")],
        flat=[f.path for f in night.frames("flat")],
        camera_letter=camera.letter,
        calibration=config.reduction.calibration,
        binned_dir=night_dir / "binned",
        state_dir=out / "state",
    )
    notes = list(masters.notes)
    resume = resume_point(night_dir)
    todo = tuple(f for f in science if not resume.skips(f[0]))
    if len(todo) < len(science):
        notes.append(
            f"resuming: {len(science) - len(todo)} frames of {len(resume.done_sets)} sets are "
            f"already on disk in {night_dir}"
        )
    plan = NightPlan(
        config=config,
        camera=camera,
        night=nid,
        out_dir=out,
        worker=WorkerSpec(camera.id, str(config.directory), masters.dark, masters.flat),
        frames_expected=len(todo),
        live=realtime,
    )
    return ReplayJob(
        plan=plan,
        frames=todo,
        total=len(science),
        skipped=len(science) - len(todo),
        notes=tuple(notes),
    )


def run(args: argparse.Namespace, *, directory: Path, out: Path) -> int:
    """Replay ``directory`` into ``out``; the exit code is in the module docstring."""
    # Until the pipeline listens for signals itself, SIGTERM behaves like SIGINT (a
    # KeyboardInterrupt at a safe point), so an early stop also gets a clear message.
    term_seen: list[int] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        term_seen.append(signum)
        signal.raise_signal(signal.SIGINT)

    previous_term = signal.signal(signal.SIGTERM, on_term)
    try:
        return _run(args, directory=directory, out=out)
    except KeyboardInterrupt:
        signum = signal.SIGTERM if term_seen else signal.SIGINT
        print(
            f"mascara-actors: stopped by {signum.name} while starting: nothing of the night "
            "was saved by this run; run the same command again",
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        signal.signal(signal.SIGTERM, previous_term)


def _run(args: argparse.Namespace, *, directory: Path, out: Path) -> int:
    config = load_config(args.config)
    realtime = bool(getattr(args, "realtime", False))
    job = plan_replay(
        directory,
        out,
        config=config,
        camera_id=getattr(args, "camera", None),
        realtime=realtime,
    )
    plan = job.plan
    print(
        f"Replaying {len(job.frames)} of {job.total} frames of {plan.camera.id} "
        f"(night {plan.night.night}) from {directory} into {plan.night_dir}",
        file=sys.stderr,
    )
    for note in job.notes:
        print(f"note: {note}", file=sys.stderr)
    state = NightState()
    report = anyio.run(
        _replay,
        job,
        state,
        realtime,
        float(getattr(args, "speed", 1.0)),
        bool(getattr(args, "in_process", False)),
        backend="trio",
    )
    _print_report(report, job)
    if report.stopped_by is not None:
        return 128 + signal.Signals[report.stopped_by]
    if not _reduced(report, job):
        return 1
    # The end-of-night chain: the summary is written always, mailed only when asked.
    outcome = summarise_night(job.plan.night_dir, send=bool(getattr(args, "mail", False)))
    print(f"summary: {outcome.html_path}", file=sys.stderr)
    if outcome.problems:
        for problem in outcome.problems:
            print(f"summary: {problem}", file=sys.stderr)
    return 0


def _reduced(report: NightReport, job: ReplayJob) -> bool:
    """The night ran to its end and has a nightly file with frames of this or earlier runs."""
    done = report.state.frames_reduced + report.skipped_frames + job.skipped
    return not report.stopped_early and done > 0 and bool(report.nightly_files)


async def _replay(
    job: ReplayJob, state: NightState, realtime: bool, speed: float, in_process: bool
) -> NightReport:
    catalogue = await anyio.to_thread.run_sync(Catalogue.load)
    bar = ProgressBar(job.plan.frames_expected)
    result: list[NightReport] = []

    async def main() -> None:
        result.append(
            await run_night(
                job.plan,
                paced_frames(job.frames, realtime=realtime, speed=speed),
                catalogue,
                state=state,
                handle_signals=True,
                in_process=in_process,
            )
        )
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(main)
        while True:
            note = f"errors {state.frames_failed}" if state.frames_failed else ""
            bar.update(state.frames_done, note)
            await anyio.sleep(0.25)
    bar.update(state.frames_done)
    bar.close()
    return result[0]


def _print_report(report: NightReport, job: ReplayJob) -> None:
    s = report.state
    real_s = s.frames_reduced * slot_length_solar_s()
    skipped = job.skipped + report.skipped_frames
    lines = [
        f"frames: {s.frames_reduced} reduced, {s.frames_failed} failed, "
        f"{skipped} already on disk, of {job.total}",
        f"stars: {s.stars_measured} measurements, {s.flags_raised} flagged",
        f"sets written: {len(report.saved.sets_written)}; astrometry residual "
        f"{s.astrometry_dr:.3f} px",
        f"wall time: {report.wall_s:.1f} s ({real_s / max(report.wall_s, 1e-9):.1f} x real time)",
    ]
    if report.worker_restarts:
        lines.append(f"worker process restarts: {report.worker_restarts}")
    for f in report.nightly_files:
        lines.append(f"nightly file: {f}")
    for _, level, lstseq, message in list(s.problems)[-10:]:
        lines.append(f"{level}: lstseq {lstseq}: {message}")
    if report.failure:
        lines.append(
            f"the night was stopped: {report.failure}; complete sets are saved, run the "
            "same command again to finish the night"
        )
    elif report.stopped_early:
        why = f"by {report.stopped_by}" if report.stopped_by else "early"
        lines.append(
            f"stopped {why}: complete sets are saved, the frames of the open set are left "
            "for the restart; run the same command again to finish the night"
        )
    elif not _reduced(report, job):
        lines.append("the night was NOT reduced: see the errors above")
    print("\n".join(lines), file=sys.stderr)
