"""``mascara-actors station``: every camera of a site, one process each, under one supervisor.

Each camera's night is ``mascara-actors live --camera ID`` run as a process of its own by the
supervisor (:mod:`mascara_actors.app.supervisor`): the simulated camera unless
``cameras.toml`` names a port that exists for it. The station is headless; consoles and
scripts use its control socket, ``OUT/state/station/control.sock`` (``docs/control-socket.md``).

When every camera's night is over, the station report of the night (one row per camera, a sky
map; :mod:`mascara_actors.summary.station`) is written to ``OUT/{night}{SITE}-station/`` and,
with ``--mail``, mailed once: the site gets one mail a night, not one per camera (the cameras
still write their own summaries, unmailed).

Exit status: 0 when every camera's night is over (or the station was stopped by the ``stop``
command); 1 when the nights are over but the station report could not be made or mailed
(the command that makes it again is printed); 2 for a configuration error or a station
already running on ``--out``; 130 / 143 when stopped by SIGINT / SIGTERM (run the same
command again to resume the nights; stopped during the dawn summary, the nights are complete
and the command that makes the summary is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import logging.handlers
import os
import queue
import signal
import sys
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

import mascara_actors
from mascara_actors.cli import summary as summary_cli
from mascara_actors.cli.interrupts import imports_uninterrupted, sigterm_as_sigint
from mascara_actors.config import CameraConfig, Config, load_config
from mascara_actors.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from mascara_actors.app.supervisor import StationSupervisor

__all__ = ["add_parser", "run"]

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "station",
        help="every camera of a site, one process each, under one supervisor (headless)",
        description=(
            "Run the night of every camera of a site, each camera's pipeline a process of its "
            "own (what `live` does for one camera), under one supervisor. A camera whose "
            "pipeline dies is restarted (after 1, 2, 4 ... 60 s) and resumes its night; the "
            "others go on. The station keeps running when its terminal goes away (SIGHUP is "
            "ignored); SIGINT or SIGTERM stops every night for a restart (run the same command "
            "again to resume). Cameras are simulated unless config/cameras.toml names a port "
            "that exists for them. Events and commands: the control socket "
            "OUT/state/station/control.sock (owner only; docs/control-socket.md); logs: "
            "OUT/state/station/station.log and one CAMERA.log per camera. When every night is "
            "over, the station report (one row per camera, a sky map) goes to "
            "OUT/{YYYYMMDD}{SITE}-station/ (remake it with `mascara-actors summary --station "
            "OUT --night YYYYMMDD`)."
        ),
        epilog=(
            "Exit status: 0 every night is over (or the stop command stopped the station); "
            "1 the nights are over but the station report could not be made or mailed (the "
            "command that makes it again is printed); 2 a configuration error, or another "
            "station runs on the same --out; 130/143 stopped by SIGINT/SIGTERM (run the same "
            "command again to resume; during the dawn summary the nights are complete and "
            "the command that makes the summary is printed)."
        ),
    )
    add_station_options(p)


def add_station_options(
    p: argparse.ArgumentParser, *, speed: float | None = 1.0, speed_help: str = "1"
) -> None:
    """The options of a station (``station``, and ``console``, which may start one);
    ``speed``: the simulated camera clocks' default (``speed_help`` says it in words)."""
    p.add_argument(
        "--site",
        default=None,
        help="the site whose cameras run (default LaPalma, or the site of --cameras)",
    )
    p.add_argument(
        "--cameras",
        default=None,
        metavar="ID,ID,...",
        help="the cameras to run, comma-separated (default: every camera of the site in "
        "config/cameras.toml, e.g. LPN,LPE,LPS,LPW,LPC)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("night_out"),
        metavar="DIR",
        help="output directory (default ./night_out): one DIR/{night}{SITE}{CAM}/ per camera, "
        "the dark tables in DIR/state, the station's socket and logs in DIR/state/station",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="end each camera's night after N science frames, as at dawn (default: at dawn)",
    )
    p.add_argument(
        "--mail",
        action="store_true",
        help="e-mail the station report once when the nights are over (config/mail.toml); "
        "the cameras' own summaries are written but not mailed",
    )
    sim = p.add_argument_group("the simulated cameras")
    sim.add_argument(
        "--speed",
        type=float,
        default=speed,
        help=f"camera clocks this many times faster than real time (default {speed_help})",
    )
    sim.add_argument(
        "--sensor", default="crop512", help="sensor from config/cameras.toml (default crop512)"
    )
    sim.add_argument(
        "--date",
        default="2026-03-20",
        help="the night (UTC date of its sunset) the camera clocks are set to (default "
        "2026-03-20)",
    )
    sim.add_argument(
        "--start",
        choices=("night", "dusk"),
        default="night",
        help="start the camera clocks in the dark (default) or just before the dusk calibration",
    )


def _cameras(args: argparse.Namespace, config: Config) -> tuple[str, list[CameraConfig]]:
    """The site's name and its cameras to run (ConfigError says what to fix)."""
    if args.cameras is not None:
        ids = [c.strip() for c in args.cameras.split(",") if c.strip()]
        if not ids:
            raise ConfigError("--cameras: name at least one camera, e.g. --cameras LPN,LPE")
        if len(set(ids)) != len(ids):
            raise ConfigError(f"--cameras {args.cameras}: a camera is named twice")
        cameras = [config.camera(c) for c in ids]
        site = args.site or cameras[0].site.name
        config.site(site)
        others = [c.id for c in cameras if c.site.name != site]
        if others:
            raise ConfigError(
                f"--cameras: {', '.join(others)} not at {site}: a station runs the cameras of "
                "one site"
            )
        return site, cameras
    site = args.site or "LaPalma"
    config.site(site)
    cameras = [c for c in config.cameras.values() if c.site.name == site]
    if not cameras:
        raise ConfigError(f"no camera of site {site} in {config.directory / 'cameras.toml'}")
    return site, cameras


def _check(args: argparse.Namespace) -> None:
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: give a number of frames >= 1")
    if not args.speed > 0:
        raise ConfigError(f"--speed {args.speed}: give a factor > 0 (10 = ten times real time)")


def _command(args: argparse.Namespace, *command: str) -> list[str]:
    """``mascara-actors [--config] -v COMMAND...`` with the output and the simulated cameras
    of ``args``."""
    argv = [sys.executable, "-m", "mascara_actors.cli"]
    if args.config is not None:
        argv += ["--config", str(Path(args.config).resolve())]
    argv += ["-" + "v" * max(1, args.verbose), *command]
    argv += ["--out", str(Path(args.out).resolve()), "--speed", repr(float(args.speed))]
    argv += ["--sensor", args.sensor, "--date", args.date, "--start", args.start]
    return argv


def camera_command(args: argparse.Namespace, camera: str) -> list[str]:
    """The command line of ``camera``'s process, without ``--supervisor-fd``."""
    argv = _command(args, "live", "--camera", camera)
    if args.frames is not None:
        argv += ["--frames", str(args.frames)]
    # no --mail: the station mails one report over every camera (see _dawn_summary)
    return argv


def station_argv(args: argparse.Namespace) -> list[str]:
    """The command line of a station with the station options of ``args`` (the console
    starts one with it)."""
    argv = _command(args, "station")
    for option in ("site", "cameras", "frames"):
        value = getattr(args, option)
        if value is not None:
            argv += [f"--{option}", str(value)]
    if args.mail:
        argv.append("--mail")
    return argv


def _with_fd(base: Sequence[str], fd: int) -> list[str]:
    return [*base, "--supervisor-fd", str(fd)]


def _environment() -> dict[str, str]:
    """The camera processes' environment: this one, running this copy of the package."""
    env = dict(os.environ)
    root = str(Path(mascara_actors.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # the camera logs are current
    return env


def _say(text: str) -> None:
    """A line on stderr, unless the terminal has gone away."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _station_log(path: Path) -> Iterator[None]:
    """The log also to ``path`` (INFO and up), written from a thread of its own: the
    supervisor's event loop never waits on a disk or a terminal."""
    from mascara_actors.control import owner_only_directory

    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    owner_only_directory(path.parent)  # a symbolic link there is refused before any file
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setLevel(logging.INFO)
    to_file.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    levels = [h.level for h in handlers]
    for h in handlers:
        h.setLevel(max(h.level, level))  # the terminal keeps the level of -v
        root.removeHandler(h)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(
        records, *handlers, to_file, respect_handler_level=True
    )
    to_queue = logging.handlers.QueueHandler(records)
    root.addHandler(to_queue)
    root.setLevel(min(level, logging.INFO))
    listener.start()
    try:
        yield
    finally:
        listener.stop()
        root.removeHandler(to_queue)
        root.setLevel(level)
        to_file.close()
        for h, h_level in zip(handlers, levels, strict=True):
            h.setLevel(h_level)
            root.addHandler(h)


def run(args: argparse.Namespace) -> int:
    """Run the station; the exit status (see the module docstring)."""
    # the supervisor's imports are the command's, not --help's
    with imports_uninterrupted():
        from mascara_actors.app.supervisor import StationSupervisor, station_state_dir

    config = load_config(args.config)
    _check(args)
    config.sensor(args.sensor)
    site, cameras = _cameras(args, config)
    out = Path(args.out)
    env = _environment()
    supervisor = StationSupervisor(
        out,
        {c.id: partial(_with_fd, camera_command(args, c.id)) for c in cameras},
        site=site,
        env=env,
        handle_signals=True,
    )
    state_dir = station_state_dir(out)

    def kind(camera: CameraConfig) -> str:
        real = camera.tty and Path(camera.tty).exists()
        return f"{camera.id} (camera on {camera.tty})" if real else f"{camera.id} (simulated)"

    _say(f"station {site}: {', '.join(kind(c) for c in cameras)}")
    _say(f"output {out}; control socket {supervisor.socket_path}; logs in {state_dir}")
    _say("Ctrl-C or SIGTERM stops every night for a restart (run the same command to resume)")
    with _station_log(state_dir / "station.log"):
        anyio.run(supervisor.run)
        for line in supervisor.outcome():
            _say(line)
        if supervisor.stopped_by in ("SIGINT", "SIGTERM"):
            _say("stopped: run the same command again to resume the nights")
            return 128 + signal.Signals[supervisor.stopped_by]
        if supervisor.stopped_by is not None:
            return 0
        # still inside the station log: the report's log lines (mail sent...) go there too
        return _dawn_summary(args, out, cameras[0].site.code, supervisor)


def _night_of(supervisor: StationSupervisor, camera: str) -> str:
    """The night (YYYYMMDD) a camera's process reported, "" when it reported none."""
    from mascara_actors.storage import NightId

    cam = supervisor.cameras[camera]
    if cam.state.night:
        return cam.state.night
    try:
        return NightId.from_dir(cam.status.get("night_dir") or "").night
    except StorageError:
        return ""


def _dawn_summary(args: argparse.Namespace, out: Path, site: str,
                  supervisor: StationSupervisor) -> int:
    """The station report once every camera's night is over; the exit status (0, or 1 with
    the command that makes the report again; 130/143 with that command when SIGINT/SIGTERM
    stops it)."""
    cameras = list(supervisor.cameras)
    nights = sorted({n for n in (_night_of(supervisor, c) for c in cameras) if n})
    config = Path(args.config).resolve() if args.config is not None else None

    def again(night: str) -> str:
        return summary_cli.station_command(out, night, cameras, mail=args.mail, config=config)

    not_over = [c for c in cameras if supervisor.cameras[c].process_state != "done"]
    if not_over:
        # a camera stopped alone (the socket's stop): its night resumes on the next run
        _say(f"station summary not made: the night of {', '.join(not_over)} is not over; "
             f"when it is: {again(nights[0] if nights else 'YYYYMMDD')}")
        return 0
    if not nights:
        _say("station summary NOT made: no camera reported its night; make it with: "
             + again("YYYYMMDD"))
        return 1
    status = 0
    # The nights' event loop is gone, and with it the signal handling: SIGTERM (a service
    # stopped at dawn) would end the process without a word, the report half made.
    with sigterm_as_sigint() as terminated:
        for night in nights:  # one night, unless the cameras' clocks disagree about the date
            try:
                code = summary_cli.station_report(
                    out, night, cameras, site=site, mail=args.mail,
                    mail_config=summary_cli.mail_config_path(args), config=config, say=_say)
            except KeyboardInterrupt:
                signum = signal.SIGTERM if terminated else signal.SIGINT
                _say(f"station summary of {night} NOT finished: stopped by {signum.name} (the "
                     f"nights are complete); make it again with: {again(night)}")
                return 128 + signum
            except Exception as exc:
                # a failure of the report must not hide how the nights went (printed above)
                log.exception("station summary of %s failed", night)
                _say(f"station summary of {night} NOT made ({type(exc).__name__}: {exc}); "
                     f"make it again with: {again(night)}")
                code = 1
            status = max(status, code)
    return status
