"""``mascara-actors --replay DIR``: reduce a recorded night headless, with a progress bar.

Exit codes: 0 when the night was reduced completely (every set's fast photometry, binned
image or the record that it has none, slow photometry, both nightly files); 1 when it was
not (every frame failed, or a product is missing: each is listed, and running the same
command again makes it); 2 for bad input (from :func:`mascara_actors.cli.main`); 128 + the
signal number when SIGINT (130) or SIGTERM (143) stopped it early; running the same command
again finishes the night.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from hw.recorded import RecordedNight, paced_frames
from mascara_actors.actors.pipeline import (
    NightPlan,
    NightReport,
    run_night,
    stop_on_signals,
)
from mascara_actors.actors.resume import resume_point
from mascara_actors.calibration import make_masters
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, Config, load_config
from mascara_actors.errors import ConfigError, FrameError
from mascara_actors.frames import FrameReady
from mascara_actors.messages import WorkerSpec
from mascara_actors.night_state import NightState
from mascara_actors.night_window import NightWindow, night_window
from mascara_actors.progress import ProgressBar
from mascara_actors.rawframe import RawHeader, read_raw
from mascara_actors.sidereal import lstseq2date, slot_length_solar_s
from mascara_actors.storage import NightId, NightLock
from mascara_actors.summary import summarise_night

__all__ = ["ReplayJob", "plan_replay", "run"]


@dataclass(frozen=True, slots=True)
class ReplayJob:
    """A recorded night, ready to replay (what :func:`plan_replay` found)."""

    plan: NightPlan
    frames: tuple[tuple[int, Path], ...]
    """(lstseq, path) of the science frames still to reduce, in lstseq order."""
    rebin: tuple[tuple[int, Path], ...]
    """(lstseq, path) of the frames whose fast photometry is on disk but whose set's binned
    image is not: binned again, not reduced (and not paced)."""
    total: int
    """Science frames in the recorded night."""
    skipped: int
    """Science frames of sets already on disk from an earlier run (not reduced again)."""
    notes: tuple[str, ...]
    """Remarks for the user (which master dark is used, ...)."""


def _first_header(night: RecordedNight) -> tuple[Path, RawHeader]:
    """The header of the first frame that reads (a bad frame fails alone, later)."""
    problems = []
    for frame in night.frames():
        try:
            return frame.path, read_raw(frame.path).header
        except FrameError as exc:
            problems.append(str(exc))
    raise ConfigError(
        f"recorded night {night.directory}: no frame can be read ({len(problems)} tried; "
        f"first: {problems[0] if problems else 'none'})"
    )


def _camera(config: Config, night: RecordedNight, camera_id: str | None) -> CameraConfig:
    first = night.frames()[0]
    path, header = _first_header(night)
    if camera_id is None:
        sites = [s for s in config.sites.values() if s.name == header.site]
        if not sites:
            raise ConfigError(
                f"{path}: SITE-OBS {header.site!r} is not a configured site "
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
    window = replay_window(config, camera, [lstseq for lstseq, _ in science])
    nid = NightId(window.night.strftime("%Y%m%d"), camera.site.code, camera.letter)
    out = Path(out)
    night_dir = nid.night_dir(out)
    # Refuse a second replay of the same night before touching its masters or dark table.
    calibration, calibration_note = _calibration_frames(night, first_science=science[0][0])
    with NightLock(night_dir):
        masters = make_masters(
            bias=calibration["bias"],
            dark=calibration["dark"],
            flat=calibration["flat"],
            camera_letter=camera.letter,
            calibration=config.reduction.calibration,
            binned_dir=night_dir / "binned",
            state_dir=out / "state",
        )
    notes = [*([calibration_note] if calibration_note else []), *masters.notes]
    resume = resume_point(night_dir)
    todo = tuple(f for f in science if not resume.skips(f[0]) and not resume.rebins(f[0]))
    rebin = tuple(f for f in science if resume.rebins(f[0]))
    notes.extend(resume.notes)
    if rebin:
        notes.append(
            f"resuming: {len(resume.rebin_sets)} sets have their fast photometry on disk but "
            f"not their binned image: their {len(rebin)} frames are binned again"
        )
    if len(todo) + len(rebin) < len(science):
        notes.append(
            f"resuming: {len(science) - len(todo) - len(rebin)} frames of "
            f"{len(resume.done_sets)} sets are "
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
        window=(window.start_lstseq, window.stop_lstseq),
    )
    return ReplayJob(
        plan=plan,
        frames=todo,
        rebin=rebin,
        total=len(science),
        skipped=len(science) - len(todo) - len(rebin),
        notes=tuple(notes),
    )


def _calibration_frames(
    night: RecordedNight, *, first_science: int
) -> tuple[dict[str, list[Path]], str | None]:
    """The calibration frames the night's masters are made from, by kind, and a note.

    A station makes its masters from the calibration taken before its science (dusk) and
    keeps them all night; the later ones (a dark sequence, the dawn calibration) are for
    the next night's dark table. So a replay of a station's raw archive uses the frames
    before ``first_science`` (an lstseq) and reduces the frames as the station did, byte for
    byte. A recording with no calibration before its science uses all of its frames.
    """
    frames = [f for f in night.frames() if f.kind in ("bias", "dark", "flat")]
    before = [f for f in frames if f.lstseq < first_science]
    chosen = before or frames
    note = None
    if before and len(before) < len(frames):
        note = (
            f"masters from the {len(before)} calibration frames taken before the science, as "
            f"the station did; the {len(frames) - len(before)} taken later (a dark sequence, "
            "the dawn calibration) are left out"
        )
    return {k: [f.path for f in chosen if f.kind == k] for k in ("bias", "dark", "flat")}, note


REPLAY_SUN_ALT_DEG = 10.0
"""The replay accepts the frames taken with the Sun below this altitude (the highest a
station may be configured to observe at) in the night of most of the frames."""


def replay_window(config: Config, camera: CameraConfig, lstseqs: list[int]) -> NightWindow:
    """The night most of ``lstseqs`` belong to, from Sun +10 deg at dusk to +10 deg at dawn:
    a frame outside it is of another night."""
    middle = sorted(lstseqs)[len(lstseqs) // 2]
    wide = dataclasses.replace(
        config.reduction.night,
        sun_alt_start_deg=REPLAY_SUN_ALT_DEG,
        sun_alt_stop_deg=REPLAY_SUN_ALT_DEG,
    )
    return night_window(camera.site, float(lstseq2date(middle, format="jd")), wide)


def run(args: argparse.Namespace, *, directory: Path, out: Path) -> int:
    """Replay ``directory`` into ``out``; the exit code is in the module docstring.

    A signal before the pipeline listens (while the night is planned) is a
    KeyboardInterrupt, turned into one line by :func:`mascara_actors.cli.main`.
    """
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
    stopped_by: list[str] = []
    report = anyio.run(
        _replay,
        job,
        state,
        stopped_by,
        realtime,
        float(getattr(args, "speed", 1.0)),
        bool(getattr(args, "in_process", False)),
        backend="trio",
    )
    if report is None:  # a signal came while the catalogue loaded
        print(
            f"mascara-actors: stopped by {stopped_by[0]} while starting: nothing of the night "
            "was saved by this run; run the same command again",
            file=sys.stderr,
        )
        return 128 + signal.Signals[stopped_by[0]]
    _print_report(report, job, stopped_by[0] if stopped_by else None)
    if stopped_by:
        return 128 + signal.Signals[stopped_by[0]]
    if report.stopped_early or not _reduced(report, job):
        return 1
    # The end-of-night chain: the summary is written always (it lists what is missing),
    # mailed only when asked.
    outcome = summarise_night(job.plan.night_dir, send=bool(getattr(args, "mail", False)))
    print(f"summary: {outcome.html_path}", file=sys.stderr)
    for problem in outcome.problems:
        print(f"summary: {problem}", file=sys.stderr)
    return 1 if report.missing or outcome.write_error is not None else 0


def _reduced(report: NightReport, job: ReplayJob) -> bool:
    """Frames of the night were reduced, by this run or by earlier ones."""
    return report.state.frames_reduced + report.skipped_frames + job.skipped > 0


async def _replay(
    job: ReplayJob,
    state: NightState,
    stopped_by: list[str],
    realtime: bool,
    speed: float,
    in_process: bool,
) -> NightReport | None:
    """The replay under this process's signal handling (first SIGINT/SIGTERM: stop
    gracefully; second: at once); None when stopped before the night began."""
    stop = anyio.Event()
    bar = ProgressBar(job.plan.frames_expected)
    result: list[NightReport] = []

    async def main() -> None:
        catalogue = await anyio.to_thread.run_sync(Catalogue.load)
        if not stop.is_set():
            result.append(
                await run_night(
                    job.plan,
                    _frames(job, realtime=realtime, speed=speed),
                    catalogue,
                    state=state,
                    stop=stop,
                    in_process=in_process,
                )
            )
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_on_signals, stop, tg.cancel_scope, stopped_by)
        tg.start_soon(main)
        while True:
            note = f"errors {state.frames_failed}" if state.frames_failed else ""
            bar.update(state.frames_done, note)
            await anyio.sleep(0.25)
    bar.update(state.frames_done)
    bar.close()
    return result[0] if result else None


async def _frames(job: ReplayJob, *, realtime: bool, speed: float) -> AsyncIterator[FrameReady]:
    """The frames to bin again at once, then the frames to reduce (paced when asked)."""
    for source in (paced_frames(job.rebin), paced_frames(job.frames, realtime=realtime,
                                                        speed=speed)):
        async for frame in source:
            yield frame


def _print_report(report: NightReport, job: ReplayJob, stopped_by: str | None) -> None:
    s = report.state
    real_s = s.frames_reduced * slot_length_solar_s()
    skipped = job.skipped + report.skipped_frames
    lines = [
        f"frames: {s.frames_reduced} reduced, {s.frames_failed} failed, "
        f"{skipped} already on disk, of {job.total}",
        f"stars: {s.stars_measured} measurements, {s.flags_raised} flagged",
        f"sets written: {report.state.sets_saved}; astrometry residual "
        f"{s.astrometry_dr:.3f} px",
        f"wall time: {report.wall_s:.1f} s ({real_s / max(report.wall_s, 1e-9):.1f} x real time)",
    ]
    if report.worker_restarts:
        lines.append(f"worker process restarts: {report.worker_restarts}")
    for f in report.nightly_files:
        lines.append(f"nightly file: {f}")
    for _, level, lstseq, message in list(s.problems)[-10:]:
        lines.append(f"{level}: lstseq {lstseq}: {message}" if lstseq is not None
                     else f"{level}: {message}")
    for setidx, reason in sorted(s.sets_not_binned.items()):
        lines.append(f"set {setidx}: no binned image ({reason})")
    if report.failure:
        lines.append(
            f"the night was stopped: {report.failure}; complete sets are saved, run the "
            "same command again to finish the night"
        )
    elif report.stopped_early:
        why = f"by {stopped_by}" if stopped_by else "early"
        lines.append(
            f"stopped {why}: complete sets are saved, the frames of the open set are left "
            "for the restart; run the same command again to finish the night"
        )
    elif not _reduced(report, job):
        lines.append("the night was NOT reduced: see the errors above")
    elif report.missing:
        lines.append(
            f"the night is NOT complete, {len(report.missing)} products missing: "
            + "; ".join(report.missing[:10])
            + ("; ..." if len(report.missing) > 10 else "")
            + ". Free the disk or mend the cause above, then run the same command again: "
            "it makes only what is missing"
        )
    print("\n".join(lines), file=sys.stderr)
