"""``mascara-actors console``: the operator console over a camera-night.

By default the console drives a camera through a whole station night
(:mod:`mascara_actors.app.station`):
the camera named in ``cameras.toml`` when its port exists on this machine, else the
simulated camera device (10x real time), so anyone can try it. ``--replay DIR`` plays a
recorded night as the camera instead. This module wires the camera, the pipeline and the
Textual console (``tui/``) together.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np

from hw.recorded import paced_frames
from mascara_actors.actors.gate import PauseGate
from mascara_actors.actors.pipeline import NightReport, run_night
from mascara_actors.app.reports import StationReport
from mascara_actors.app.station import Station
from mascara_actors.catalogue import Catalogue
from mascara_actors.cli.live import (
    add_camera_options,
    open_station,
    print_station_report,
    real_camera,
)
from mascara_actors.cli.replay import ReplayJob, plan_replay
from mascara_actors.config import load_config
from mascara_actors.errors import StorageError
from mascara_actors.night_state import NightState
from mascara_actors.sidereal import lstseq2date
from mascara_actors.storage import NightFile, SetFile, list_set_files, nightly_file_path
from mascara_actors.summary import summarise_night
from tui.app import make_console, run_console
from tui.feed import ConsoleFeed
from tui.messages import LightCurve

__all__ = ["add_parser", "light_curve_so_far", "replay_feed", "run", "station_feed"]

_SPEED = 10.0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``console`` on the CLI's sub-commands."""
    p = sub.add_parser(
        "console",
        help="the operator console (Textual) over a camera (default: the simulated camera)",
        description=(
            "Open the operator console over a station night: the camera of cameras.toml when "
            "its port exists here, else the simulated camera (its clock at SPEED x real time, "
            f"default {_SPEED:g}x). --replay DIR plays a recorded night as the camera instead. "
            "Keys: p pause/resume the reduction, d take darks, e end the night (dawn sequence, "
            "nightly files, summary), l star look-up, q quit (saves first; run again to resume)."
        ),
    )
    add_camera_options(p, speed=_SPEED)
    p.add_argument(
        "--replay",
        type=Path,
        default=None,
        metavar="DIR",
        help="instead of a camera, replay this recorded night (e.g. replay_data/night)",
    )
    p.add_argument(
        "--mail", action="store_true", help="e-mail the night summary (settings: config/mail.toml)"
    )


def light_curve_so_far(night_dir: Path, catalogue: Catalogue, hip: int) -> LightCurve:
    """The fast light curve of star ``hip`` from what the night has written so far.

    Reads the nightly file if it exists, else every per-set file (``tmp/fast_*.hdf5``).

    Raises
    ------
    CatalogueError
        ``hip`` is not in the star catalogue.
    StorageError
        The star has no measurement on this camera yet (or nothing is written yet).
    """
    star = catalogue.by_hip([hip])
    vmag = float(star["vmag"][0])
    night_dir = Path(night_dir)
    nightly = nightly_file_path(night_dir, "fast")
    parts: list[np.ndarray] = []
    if nightly.exists():
        with NightFile(nightly) as nf:
            if hip in set(nf.ids().tolist()):
                parts.append(nf.lightcurve(hip, ["lstseq", "jdmid", "flux0", "flag"]))
    else:
        for path in list_set_files(night_dir, "fast").values():
            with SetFile(path, "fast") as set_file:
                rec = set_file.lightcurves([hip])
            if rec.size:
                parts.append(rec[["lstseq", "jdmid", "flux0", "flag"]])
    if not parts:
        raise StorageError(
            f"star not on this camera: HIP {hip} (V {vmag:.2f}) has no measurement in "
            f"{night_dir} yet; it may be outside this camera's field, fainter than the fast "
            "limit, or its first set is not saved yet"
        )
    rec = np.concatenate([np.asarray(p) for p in parts])
    rec = rec[np.argsort(rec["lstseq"], kind="stable")]
    flux = rec["flux0"].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, 25.0 - 2.5 * np.log10(flux), np.nan)
    return LightCurve(
        hip=hip,
        vmag=vmag,
        lstseq=rec["lstseq"].astype(np.int64),
        jd=rec["jdmid"].astype(float),
        mag=mag,
        flagged=rec["flag"] != 0,
    )


def replay_feed(
    job: ReplayJob, catalogue: Catalogue, *, speed: float = _SPEED, in_process: bool = False
) -> ConsoleFeed:
    """A console feed that replays ``job`` at ``speed`` x real time as the camera.

    The console's clock runs the night's own time: the start of the first frame's slot,
    advanced at ``speed`` from when the feed is made.
    """
    state = NightState()
    gate = PauseGate()
    stop = anyio.Event()
    plan = job.plan
    first = job.frames[0][0] if job.frames else 0
    night_t0: datetime = lstseq2date(first, format="calendar")
    if night_t0.tzinfo is None:
        night_t0 = night_t0.replace(tzinfo=UTC)
    wall0 = time.monotonic()

    def clock() -> datetime:
        return night_t0 + timedelta(seconds=(time.monotonic() - wall0) * speed)

    async def pipeline() -> object:
        source = paced_frames(job.frames, realtime=True, speed=speed)
        return await run_night(
            plan, source, catalogue, state=state, stop=stop, in_process=in_process, gate=gate
        )

    def latest() -> Path | None:
        return Path(state.last_frame) if state.last_frame else None

    return ConsoleFeed(
        state=state,
        camera=plan.camera,
        out_dir=plan.out_dir,
        clock=clock,
        wall=time.time,
        stop=stop,
        gate=gate,
        pipeline=pipeline,
        lookup=partial(light_curve_so_far, plan.night_dir, catalogue),
        take_darks=None,
        recorded=True,
        latest_frame=latest,
    )


def station_feed(station: Station, catalogue: Catalogue) -> ConsoleFeed:
    """A console feed over a station night on a live (or simulated) camera.

    The console's clock is the camera's; ``d`` takes a dark sequence and ``e`` ends the
    science as at dawn (the end-of-night chain follows); the camera is polled every two
    seconds, so a camera that stops answering shows at once.
    """
    if station.gate is None:  # the console's p key pauses the station's reduction
        station.gate = PauseGate()

    async def pipeline() -> StationReport:
        async with anyio.create_task_group() as tg:
            tg.start_soon(station.watch.run)
            report = await station.run(catalogue)
            tg.cancel_scope.cancel()
        return report

    def lookup(hip: int) -> LightCurve:
        if station.night_dir is None:
            raise StorageError("nothing is written yet: the night has not started")
        return light_curve_so_far(station.night_dir, catalogue, hip)

    def latest() -> Path | None:
        return None if station.latest is None else station.latest.path

    return ConsoleFeed(
        state=station.state,
        camera=station.camera,
        out_dir=station.out_dir,
        clock=station.watch.clock,
        wall=time.time,
        stop=station.stop,
        gate=station.gate,
        pipeline=pipeline,
        lookup=lookup,
        take_darks=station.take_darks,
        recorded=False,
        latest_frame=latest,
        end_night=station.end_night,
        phase=lambda: station.phase,
        camera_link=station.watch.link,
        camera_ccdtemp=station.watch.ccdtemp,
    )


@contextmanager
def _log_to_file(path: Path) -> Iterator[None]:
    """Send log records to ``path`` instead of the terminal while the console draws on it
    (a warning written to stderr would tear the screen)."""
    root = logging.getLogger()
    streams = [h for h in root.handlers if type(h) is logging.StreamHandler]
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for h in streams:
        root.removeHandler(h)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for h in streams:
            root.addHandler(h)


def run(args: argparse.Namespace) -> int:
    """Open the console; returns the exit code (0 after a clean quit)."""
    config = load_config(args.config)
    if args.replay is not None:
        return _run_replay(args, config)
    camera = config.camera(args.camera)
    what = "the camera" if real_camera(args, camera) else "the simulated camera"
    print(f"starting {what} {camera.id} (a few seconds) ...", file=sys.stderr)
    feeds: list[ConsoleFeed] = []

    async def main() -> int:
        catalogue = await anyio.to_thread.run_sync(Catalogue.load)
        state, stop = NightState(), anyio.Event()
        async with open_station(args, config, state=state, stop=stop) as station:
            feeds.append(station_feed(station, catalogue))
            return await run_console(make_console(feeds[0]))

    with _log_to_file(Path(args.out) / "logs" / "console.log"):
        code = anyio.run(main, backend="asyncio")
    report = feeds[0].result if feeds else None
    if not isinstance(report, StationReport):
        print(
            "the night was not finished (quit without waiting, or the station failed; see "
            f"{Path(args.out) / 'logs' / 'console.log'}): run the same command again to go on",
            file=sys.stderr,
        )
        return code or 1
    print_station_report(report, feeds[0].state)
    incomplete = report.science is not None and report.science.reduced and not report.ok
    return code or int(report.camera_lost is not None or incomplete)


def _run_replay(args: argparse.Namespace, config) -> int:  # type: ignore[no-untyped-def]
    """The console over a recorded night replayed as the camera."""
    job = plan_replay(
        args.replay, args.out, config=config, camera_id=args.camera, realtime=True
    )
    if not job.frames:
        print(
            f"mascara-actors: every frame of {args.replay} is already reduced in "
            f"{job.plan.night_dir}: nothing to replay (use another --out)",
            file=sys.stderr,
        )
        return 1

    feeds: list[ConsoleFeed] = []
    log_path = job.plan.night_dir / "logs" / "console.log"

    async def main() -> int:
        catalogue = await anyio.to_thread.run_sync(Catalogue.load)
        feeds.append(replay_feed(job, catalogue, speed=args.speed))
        return await run_console(make_console(feeds[0]))

    with _log_to_file(log_path):
        code = anyio.run(main, backend="asyncio")
    report = feeds[0].result if feeds else None
    if report is None:
        print(
            f"the night in {job.plan.night_dir} was not finished (quit without waiting, or "
            "the pipeline failed): run the same command again to go on",
            file=sys.stderr,
        )
        return code or 1
    _print_outcome(report, job.plan.night_dir)
    return code or int(report.reduced and not report.ok)


def _print_outcome(report: NightReport, night_dir: Path) -> None:
    s = report.state
    print(
        f"frames: {s.frames_reduced} reduced, {s.frames_failed} failed; sets written: "
        f"{report.state.sets_saved}; output {night_dir}",
        file=sys.stderr,
    )
    if report.stopped_early:
        print(
            "ended early: complete sets are saved, the frames of the open set are left for "
            "the restart; run the same command again to finish the night",
            file=sys.stderr,
        )
    for f in report.nightly_files:
        print(f"nightly file: {f}", file=sys.stderr)
    for missing in report.missing:
        print(f"error: not made: {missing}; run the same command again", file=sys.stderr)
    if report.reduced:
        outcome = summarise_night(night_dir)
        print(f"summary: {outcome.html_path}", file=sys.stderr)
