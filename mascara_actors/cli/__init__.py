"""The ``mascara-actors`` command: the one place that wires hw, the science and the UI.

``mascara-actors --replay DIR`` reduces a recorded night headless; ``simulate`` records a
simulated night; ``live`` and ``console`` run a station night on a camera (the simulated one
by default); ``demo`` opens the console on a terminal, else replays ``replay_data/``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from mascara_actors import __version__
from mascara_actors.errors import MascaraError

__all__ = ["build_parser", "main"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPLAY = REPO_ROOT / "replay_data" / "night"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to check ``--help`` in the tests)."""
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

    from mascara_actors.cli import console, export, live, simulate, summary

    console.add_parser(sub)
    simulate.add_parser(sub)
    live.add_parser(sub)
    summary.add_parser(sub)
    export.add_parser(sub)
    demo = sub.add_parser(
        "demo",
        help="try it: the console on the simulated camera (on a terminal), else a replay",
        description=(
            "On a terminal, open the operator console over a station night on the simulated "
            "camera (its clock at 10x real time; q quits, saving first). Otherwise, or with "
            "--headless, reduce the small recorded night shipped in replay_data/ headless, "
            "with a progress bar and a report."
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


def _demo(args: argparse.Namespace) -> int:
    """``demo``: the console over the replay night on a terminal, else a headless replay."""
    if not args.headless and sys.stdin.isatty() and sys.stdout.isatty():
        from mascara_actors.cli import console

        # a fresh directory each time: the simulated night would otherwise resume (and skip)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        out = args.out / f"console-{stamp}"
        console_args = build_parser().parse_args(["console", "--out", str(out)])
        console_args.config = args.config
        return console.run(console_args)
    from mascara_actors.cli import replay

    return replay.run(args, directory=DEFAULT_REPLAY, out=args.out)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "simulate":
            from mascara_actors.cli import simulate

            return simulate.run(args)
        if args.command == "console":
            from mascara_actors.cli import console

            return console.run(args)
        if args.command == "live":
            from mascara_actors.cli import live

            return live.run(args)
        if args.command == "summary":
            from mascara_actors.cli import summary

            return summary.run(args)
        if args.command == "export":
            from mascara_actors.cli import export

            return export.run(args)
        if args.command == "demo":
            return _demo(args)
        if args.replay is not None:
            from mascara_actors.cli import replay

            return replay.run(args, directory=args.replay, out=args.out)
    except MascaraError as exc:
        print(f"mascara-actors: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mascara-actors: interrupted", file=sys.stderr)
        return 130
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
