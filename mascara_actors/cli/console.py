"""``mascara-actors console``: the operator console of a station, or of a recorded night.

By default the console attaches to the station running on ``--out`` through its control
socket (``OUT/state/station/control.sock``), and starts one first when none runs there (the
``station`` command, with the station options given here, in a session of its own: closing
the console or its terminal never stops it). ``q`` detaches; the station goes on, and
``mascara-actors console --out OUT`` attaches again, from any terminal of the station's user.

``--replay DIR`` instead plays a recorded night as the camera, in this process, with the
console of one camera (the night stops for a restart when it quits, or when its terminal
hangs up: exit status 129).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import anyio

from mascara_actors.cli.station import add_station_options, station_argv
from mascara_actors.config import Config, load_config
from mascara_actors.errors import ConfigError

if TYPE_CHECKING:
    from mascara_actors.actors.pipeline import NightReport
    from mascara_actors.catalogue import Catalogue
    from tui.feed import ConsoleFeed
    from tui.messages import LightCurve

__all__ = ["add_parser", "run"]

_SPEED = 10.0
"""Times real time of a replayed night's clock, by default."""

_STATION_SPEED = 5.0
"""Times real time of the simulated cameras' clocks of a station the console starts, by
default: five cameras keep up on two cores (at 10x a busy moment drops frames)."""

_STATION_START_S = 180.0
"""Seconds a station started by the console has to open its control socket."""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``console`` on the CLI's sub-commands."""
    p = sub.add_parser(
        "console",
        help="the operator console (Textual): attaches to the station on --out, starting one "
        "if none runs",
        description=(
            "Open the operator console of the station running on --out (its control socket "
            "OUT/state/station/control.sock; only the station's user may use it). When no "
            "station runs there, one is started first with the station options below, in the "
            "background: closing the console, or its terminal, never stops it. Station view: "
            "one panel per camera; Tab moves, Enter opens a camera's detailed view (Esc goes "
            "back); p pause/resume its reduction, d take darks, e end its night as at dawn, "
            "l star look-up, s stop the station (both asked first), q detach (the station goes "
            "on). --replay DIR plays a recorded night as the camera instead, in this process "
            "(q, or its terminal closing, stops it, saving first; run again to resume)."
        ),
    )
    add_station_options(
        p, speed=None, speed_help=f"{_STATION_SPEED:g}; a recorded night {_SPEED:g}"
    )
    replay = p.add_argument_group("a recorded night instead of a station")
    replay.add_argument(
        "--replay",
        type=Path,
        default=None,
        metavar="DIR",
        help="replay this recorded night (e.g. replay_data/night) as the camera",
    )
    replay.add_argument(
        "--camera", default=None, metavar="ID", help="the camera of the recorded night "
        "(default: from its frames)"
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


def _hang_up(signum: int, frame: object) -> None:
    """The console's terminal is gone (a closed window, a dropped ssh session): leave at once.

    Textual does not notice: its input thread spun on the closed terminal at most of a core
    for ever, the cores the station reduces on, while its screen writer waited on it. The
    console keeps nothing of the station's (the station goes on, ignoring the hang-up), so
    there is nothing to save but its own log.
    """
    logging.getLogger(__name__).warning("the terminal hung up: the console leaves, the "
                                        "station goes on")
    _leave(signum)


def _leave(signum: int) -> NoReturn:
    """Exit now with the signal's status, the log written: Textual can neither draw nor
    restore a closed terminal, so its own exit is not waited for."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(128 + signum)


_HANG_UP_GRACE_S = 60.0
"""Seconds a replayed night has to stop after its terminal hangs up; past them the console
leaves anyway (what is saved is saved atomically: a restart redoes the rest)."""


def _on_replay_hang_up(loop: asyncio.AbstractEventLoop, hung_up: anyio.Event, signum: int,
                       frame: object) -> None:
    """SIGHUP of a replay's console (a plain handler: it runs even while the event loop is
    blocked): keep Textual off the closed terminal, arm the deadline, wake
    :func:`_stop_after_hang_up`.

    The kernel sends SIGCONT with the hang-up, and Textual's handler of it restarts its
    screen on the dead terminal: its writer's queue filled and blocked the event loop for
    good, so the night could neither stop nor time out. Handlers run in signal order, so
    this one disarms it first.
    """
    signal.signal(signal.SIGCONT, signal.SIG_DFL)
    _off_the_terminal()
    deadline = threading.Timer(_HANG_UP_GRACE_S + 5.0, _leave_late, (signum,))
    deadline.daemon = True
    deadline.start()
    loop.call_soon_threadsafe(hung_up.set)


def _off_the_terminal() -> None:
    """Point the standard streams away from a closed terminal: stdin at a pipe nothing
    writes to (a reader waits there instead of spinning on the terminal's end of file),
    stdout and stderr at /dev/null (a writer never blocks)."""
    silent, _kept_open = os.pipe()  # its write end stays open: the pipe never ends
    os.dup2(silent, 0)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)


def _leave_late(signum: int) -> NoReturn:
    logging.getLogger(__name__).warning(
        "the night did not stop within %.0f s of the hang-up: the console leaves; run the "
        "same command again to go on (what was saved is kept)", _HANG_UP_GRACE_S)
    _leave(signum)


async def _stop_after_hang_up(feed: ConsoleFeed, hung_up: anyio.Event) -> None:
    """Once the terminal of a replay's console is gone, stop the night as ``q`` does: the
    frames in flight reduced, complete sets saved, the open set left for the restart; then
    leave (:func:`_leave`). SIGHUP's default action, death at once, left no word of why."""
    await hung_up.wait()
    log = logging.getLogger(__name__)
    log.warning("the terminal hung up: stopping the night (complete sets are saved), then "
                "the console leaves")
    feed.stop.set()
    feed.gate.resume()
    with anyio.move_on_after(_HANG_UP_GRACE_S) as waited:
        await feed.finished.wait()
    if waited.cancelled_caught:
        _leave_late(signal.SIGHUP)  # does not return
    log.warning("the night stopped; run the same command again to go on")
    _leave(signal.SIGHUP)


def run(args: argparse.Namespace) -> int:
    """Open the console; returns the exit code (0 after detaching, or a clean quit)."""
    # the console and the station's client load here, not with --help
    from mascara_actors.app.supervisor import station_state_dir
    from tui.station_app import StationConsole
    from tui.station_link import StationLink

    config = load_config(args.config)
    if args.speed is None:
        args.speed = _SPEED if args.replay is not None else _STATION_SPEED
    if args.replay is not None:
        return _run_replay(args, config)
    socket_path = station_state_dir(args.out) / "control.sock"
    started = None
    if not anyio.run(_answers, socket_path):
        started = _start_station(args, socket_path)
    link = StationLink(socket_path, dict(config.cameras))
    app = StationConsole(link, lookup=_lookup)
    previous = signal.signal(signal.SIGHUP, _hang_up)
    try:
        with _log_to_file(socket_path.parent / "console.log"):
            code = anyio.run(app.run_async, backend="asyncio") or 0
    finally:
        signal.signal(signal.SIGHUP, previous)
    pid = link.station.get("pid") or started or "?"
    if link.lost is None:
        print(
            f"detached: the station goes on (pid {pid}); `mascara-actors console --out "
            f"{args.out}` attaches again, s in the console or SIGTERM to {pid} stops it",
            file=sys.stderr,
        )
    else:
        print(f"the station is gone: {link.lost}", file=sys.stderr)
    return code


async def _answers(socket_path: Path) -> bool:
    """Whether a station answers on ``socket_path``."""
    from mascara_actors.control import ControlClient, ControlError, ForeignListener

    try:
        async with ControlClient(socket_path):
            return True
    except ForeignListener:
        raise  # another user's socket: starting a station beside it would not help
    except ControlError:
        return False


def _start_station(args: argparse.Namespace, socket_path: Path) -> int:
    """Start ``mascara-actors station`` with the console's station options, in a session
    of its own, and wait until its socket answers; its pid.

    Raises
    ------
    ConfigError
        The station ended, or its socket did not answer in time (its log is named).
    """
    from mascara_actors.control import owner_only_directory

    state_dir = socket_path.parent
    owner_only_directory(state_dir)  # a symbolic link there is refused before any file
    log_path = state_dir / "started-by-console.log"
    argv = station_argv(args)
    print(f"no station runs on {args.out}: starting one ({' '.join(argv[3:])}) ...",
          file=sys.stderr)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + _STATION_START_S
    while not anyio.run(_answers, socket_path):
        code = proc.poll()
        if code is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise ConfigError(
                f"the station did not start (exit status {code}): {' / '.join(tail)} "
                f"(whole output: {log_path})"
            )
        if time.monotonic() > deadline:
            raise ConfigError(
                f"the station started (pid {proc.pid}) but its control socket {socket_path} "
                f"did not answer within {_STATION_START_S:g} s: see {log_path}"
            )
        time.sleep(0.2)
    print(f"station started (pid {proc.pid}; its output: {log_path})", file=sys.stderr)
    return proc.pid


@functools.cache
def _catalogue() -> Catalogue:
    from mascara_actors.catalogue import Catalogue

    return Catalogue.load()


def _lookup(night_dir: Path, hip: int) -> LightCurve:
    """A star's light curve so far in a camera's night (blocking: the console calls it in
    a worker thread)."""
    from mascara_actors.cli.console_feed import light_curve_so_far

    return light_curve_so_far(night_dir, _catalogue(), hip)


def _run_replay(args: argparse.Namespace, config: Config) -> int:
    """The console over a recorded night replayed as the camera."""
    import anyio.to_thread

    from mascara_actors.app.replay import plan_replay
    from mascara_actors.cli.console_feed import replay_feed
    from tui.app import make_console, run_console

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
        catalogue = await anyio.to_thread.run_sync(_catalogue)
        feeds.append(replay_feed(job, catalogue, speed=args.speed))
        hung_up = anyio.Event()
        previous = signal.signal(signal.SIGHUP, functools.partial(
            _on_replay_hang_up, asyncio.get_running_loop(), hung_up))
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_after_hang_up, feeds[0], hung_up)
                code = await run_console(make_console(feeds[0]))
                tg.cancel_scope.cancel()
        finally:
            signal.signal(signal.SIGHUP, previous)
        return code

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
        from mascara_actors.summary import summarise_night

        outcome = summarise_night(night_dir)
        print(f"summary: {outcome.html_path}", file=sys.stderr)
