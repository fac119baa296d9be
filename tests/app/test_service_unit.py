"""The systemd unit of the station (``config/systemd/``) agrees with the station it starts."""

from __future__ import annotations

import configparser
import inspect
import shlex
import signal
from pathlib import Path

from mascara_actors.app.supervisor import StationSupervisor
from mascara_actors.cli import build_parser

UNIT = Path(__file__).resolve().parents[2] / "config" / "systemd" / "mascara-actors-station.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_runs_the_station_command() -> None:
    service = _unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/.venv/bin/mascara-actors")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "station"
    assert (args.site, args.mail) == ("LaPalma", True)
    # the station writes only under its output directory
    assert str(args.out) in service["ReadWritePaths"].split()
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


def test_the_unit_stops_the_station_the_way_it_saves_its_nights() -> None:
    service = _unit()["Service"]
    # SIGTERM to the supervisor alone: it stops its cameras' nights itself (a camera process
    # that got SIGTERM as well would take the supervisor's SIGINT as a second signal and
    # stop at once, without saving)
    assert service["KillMode"] == "mixed"
    assert service["KillSignal"] == "SIGTERM"
    grace = inspect.signature(StationSupervisor).parameters["stop_grace_s"].default
    assert float(service["TimeoutStopSec"]) > grace
    # stopped by a signal it exits 128 + the signal: a clean stop, not a failure
    clean = {int(code) for code in service["SuccessExitStatus"].split()}
    assert {128 + signal.SIGTERM, 128 + signal.SIGINT} <= clean
    # exit 2 is a configuration error or a second station: retrying cannot help
    assert service["RestartPreventExitStatus"].split() == ["2"]
    assert service["Restart"] == "always"
    assert service["UMask"] == "0077"
