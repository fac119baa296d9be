"""The ``mascara-actors`` command: the one place that wires hw, the science and the UI.

``mascara-actors --replay DIR`` reduces a recorded night headless; ``simulate`` records a
simulated night; ``live`` runs a camera's night (the simulated camera by default), ``station``
every camera of a site under one supervisor, ``console`` attaches to a station (starting one
when none runs); ``demo`` opens the console on a terminal, else replays ``replay_data/``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from mascara_actors import __version__
from mascara_actors.cli.interrupts import imports_uninterrupted, sigterm_as_sigint
from mascara_actors.errors import MascaraError

__all__ = ["build_parser", "file_in_the_way", "main"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPLAY = REPO_ROOT / "replay_data" / "night"


COMMANDS = {
    "archive": "mascara_actors.cli.archive",
    "console": "mascara_actors.cli.console",
    "simulate": "mascara_actors.cli.simulate",
    "live": "mascara_actors.cli.live",
    "station": "mascara_actors.cli.station",
    "summary": "mascara_actors.cli.summary",
    "export": "mascara_actors.cli.export",
    "solve": "mascara_actors.cli.solve",
    "simulate-lightcurves": "mascara_actors.cli.simulate_lightcurves",
    "baseline": "mascara_actors.cli.baseline",
    "calibrate": "mascara_actors.cli.calibrate",
    "search": "mascara_actors.cli.search",
    "inject-recover": "mascara_actors.cli.inject_recover",
}
"""Each command's module: ``add_parser(subparsers)`` defines its arguments, ``run(args)``
runs it."""


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser (also used to check ``--help`` in the tests).

    ``commands`` limits the subcommands defined to those named (default: all). A command's
    module imports what the command needs (the hardware layer, the console...), so
    :func:`main` defines only the one given: ``--replay`` starts in a fraction of the time.
    """
    parser = argparse.ArgumentParser(
        prog="mascara-actors",
        description=(
            "Real-time reduction system of a MASCARA camera. Reduce a recorded night with "
            "--replay DIR, record a simulated one with `simulate`, or try it all with `demo`."
        ),
        epilog="Run `mascara-actors COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="DIR",
        help="configuration directory (default: the config/ of this install)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    _add_replay_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name in COMMANDS if commands is None else commands:
        importlib.import_module(COMMANDS[name]).add_parser(sub)
    demo = sub.add_parser(
        "demo",
        help="try it: the console on a station of five simulated cameras (on a terminal), "
        "else a replay",
        description=(
            "On a terminal, start a station of the five simulated cameras of La Palma (their "
            "clocks at 5x real time, 150 science frames each, then the dawn sequence) in "
            "OUT/station-{time}/ and open its console (q detaches; the station finishes its "
            "nights by itself). Otherwise, or with --headless, reduce the small recorded night "
            "shipped in replay_data/ headless, with a progress bar and a report."
        ),
    )
    demo.add_argument("--headless", action="store_true", help="never open the console")
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("night_out"),
        metavar="DIR",
        help="output directory (default ./night_out)",
    )
    return parser


def _add_replay_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("replay a recorded night (headless)")
    group.add_argument(
        "--replay", type=Path, metavar="DIR", help="directory of a recorded night's raw FITS frames"
    )
    group.add_argument(
        "--out",
        type=Path,
        default=Path("night_out"),
        metavar="DIR",
        help="where the reduced night goes (default ./night_out)",
    )
    group.add_argument(
        "--realtime",
        action="store_true",
        help="pace the frames at the real 6.4 sidereal-second cadence",
    )
    group.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="with --realtime: this many times faster than real time",
    )
    group.add_argument(
        "--camera",
        metavar="ID",
        default=None,
        help="camera id (e.g. LPC); default from the frames' headers",
    )
    group.add_argument(
        "--mail", action="store_true", help="e-mail the night summary (settings: config/mail.toml)"
    )
    group.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)


_DEMO_FRAMES = 150
"""Science frames of each camera of the demo station (about 3 minutes at 5x), so that it
ends by itself, with its dawn calibration, nightly files and summaries."""


def _demo(args: argparse.Namespace) -> int:
    """``demo``: the console over a station of five simulated cameras on a terminal, else a
    headless replay."""
    if not args.headless and sys.stdin.isatty() and sys.stdout.isatty():
        from mascara_actors.cli import console

        # a fresh directory each time: the simulated nights would otherwise resume (and skip)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        out = args.out / f"station-{stamp}"
        console_args = build_parser().parse_args(
            ["console", "--out", str(out), "--frames", str(_DEMO_FRAMES)]
        )
        console_args.config = args.config
        return console.run(console_args)
    from mascara_actors.cli import replay

    return replay.run(args, directory=DEFAULT_REPLAY, out=args.out)


def _input_error(group: BaseExceptionGroup) -> MascaraError | OSError | None:
    """The first error of ``group`` when every error in it is a MascaraError or OSError."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = exc.exceptions
        else:
            leaves.append(exc)
    if leaves and all(isinstance(e, MascaraError | OSError) for e in leaves):
        return leaves[0]  # type: ignore[return-value]
    return None


def file_in_the_way(path: Path) -> Path | None:
    """The file that stands where the directory ``path``, or one it would be made in, should
    be (None when there is none)."""
    there = next((p for p in (path, *path.parents) if p.exists()), None)
    return there if there is not None and not there.is_dir() else None


def _one_line(exc: MascaraError | OSError) -> str:
    """The error as one line that says what to do (a path problem names the path)."""
    if isinstance(exc, MascaraError) or exc.filename is None:
        return " ".join(str(exc).split())
    path = Path(os.fsdecode(exc.filename))
    if isinstance(exc, NotADirectoryError | FileExistsError):
        blocker = file_in_the_way(path)
        if blocker is not None:
            return (f"{blocker} is a file, not a directory: pass a directory (or a path that "
                    "does not exist yet) as --out, or move the file away")
    if isinstance(exc, PermissionError):
        return (f"{path}: permission denied; choose a directory you may write to (--out) or "
                "change the permissions")
    if exc.errno == errno.EROFS:
        return f"{path}: read-only file system; choose an --out directory on a writable disk"
    if exc.errno == errno.ENOSPC:
        return (f"{path}: no space left on the device; free some space and run the same "
                "command again")
    return f"{path}: {exc.strerror or exc}; check the path and run the command again"


class _StderrNow(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record to ``sys.stderr`` as it is at that moment: a progress bar (rich's)
    takes stderr over while it shows and prints such lines above itself. A handler bound to
    the stderr of the command's start wrote through the bar."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code.

    From its first instruction until a command listens for signals itself, SIGTERM acts as
    SIGINT: either stops the command with one line and exit 128 + the signal number.
    """
    with sigterm_as_sigint() as terminated:
        try:
            return _main(argv)
        except (KeyboardInterrupt, BaseExceptionGroup) as exc:
            if isinstance(exc, BaseExceptionGroup) and exc.subgroup(KeyboardInterrupt) is None:
                raise
            signum = signal.SIGTERM if terminated else signal.SIGINT
            print(
                f"mascara-actors: stopped by {signum.name} while starting (nothing is "
                "half-written); run the same command again",
                file=sys.stderr,
            )
            return 128 + signum


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    named = [a for a in argv if a in COMMANDS]
    help_only = not named and any(a in ("-h", "--help") for a in argv)
    with imports_uninterrupted():
        parser = build_parser(None if help_only else named[:1])
        args = parser.parse_args(argv)
        if args.command is None and args.replay is not None:
            importlib.import_module("mascara_actors.cli.replay")
        elif args.command == "demo":
            for name in ("mascara_actors.cli.console", "mascara_actors.cli.replay"):
                importlib.import_module(name)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[_StderrNow()])
    try:
        if args.command in COMMANDS:
            return int(importlib.import_module(COMMANDS[args.command]).run(args))
        if args.command == "demo":
            return _demo(args)
        if args.replay is not None:
            from mascara_actors.cli import replay

            return replay.run(args, directory=args.replay, out=args.out)
    except (MascaraError, OSError) as exc:
        print(f"mascara-actors: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:  # raised out of a task group: one line if we can
        leaf = _input_error(group)
        if leaf is None:
            raise
        print(f"mascara-actors: {_one_line(leaf)}", file=sys.stderr)
        return 2
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
