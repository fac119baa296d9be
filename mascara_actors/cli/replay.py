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
import signal
import sys
from pathlib import Path

import anyio
import anyio.to_thread

from mascara_actors.actors.pipeline import NightReport, run_night, stop_on_signals
from mascara_actors.app.replay import ReplayJob, plan_replay, record_complete, replay_frames
from mascara_actors.catalogue import Catalogue
from mascara_actors.cli.progress import progress_bar
from mascara_actors.config import load_config
from mascara_actors.decorrelation.live import calibration_dir
from mascara_actors.night_state import NightState
from mascara_actors.sidereal import slot_length_solar_s
from mascara_actors.summary import summarise_night

__all__ = ["run"]


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
    if not job.reduced(report):
        return 1
    # The end-of-night chain: the summary is written always (it lists what is missing),
    # mailed only when asked.
    outcome = summarise_night(job.plan.night_dir, send=bool(getattr(args, "mail", False)),
                              config=args.config)
    if not report.missing:  # after the report: a complete night is not replayed again
        record_complete(job)
    print(f"summary: {outcome.html_path}", file=sys.stderr)
    for problem in outcome.problems:
        print(f"summary: {problem}", file=sys.stderr)
    return 1 if report.missing or outcome.write_error is not None else 0


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
    result: list[NightReport] = []

    async def main() -> None:
        catalogue = await anyio.to_thread.run_sync(Catalogue.load)
        if not stop.is_set():
            result.append(
                await run_night(
                    job.plan,
                    replay_frames(job, realtime=realtime, speed=speed),
                    catalogue,
                    state=state,
                    stop=stop,
                    in_process=in_process,
                )
            )
        tg.cancel_scope.cancel()

    with progress_bar() as bar:
        task = bar.add_task(
            job.plan.camera.id, total=job.plan.frames_expected, unit="frames", note=""
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_signals, stop, tg.cancel_scope, stopped_by)
            tg.start_soon(main)
            while True:
                note = f"errors {state.frames_failed}" if state.frames_failed else ""
                bar.update(task, completed=state.frames_done, note=note)
                await anyio.sleep(0.25)
        bar.update(task, completed=state.frames_done)
    return result[0] if result else None


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
    if s.calibration:
        lines.append(f"calibrated live: {s.sets_calibrated} sets, with {s.calibration}")
    else:
        where = calibration_dir(job.plan.out_dir, job.plan.camera.id)
        lines.append(f"no calibration in {where}: the light curves stay raw (README: "
                     "Calibrated light curves)")
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
    elif not job.reduced(report):
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
