"""``mascara-actors live``: a station night on a camera, by default the simulated one.

Without ``--tty`` a simulated camera device is started (its own process, a real
pseudo-terminal and readout socket) rendering the sky of the chosen camera from the
Hipparcos catalogue, with its clock set to the night of ``--date``; the station drives it
exactly as it would drive the real camera on ``/dev/ttyUSB0``: calibration sequences at dusk
and dawn, science from dusk to dawn by the Sun's altitude, the end-of-night chain.

Exit status of ``live``:

* 0: the night was reduced to its nightly files (and summarised);
* 1: the night ended early because the camera was lost (it stayed silent for ``[night]
  camera_timeout_s`` of its own clock): the frames received were reduced and the nightly
  files and summary written; or the night could not be reduced to its nightly files;
* 2: a configuration or input error (one line says what to fix);
* 130 / 143: stopped by SIGINT / SIGTERM for a restart (run the same command again).

``mascara-actors station`` runs ``live`` as each camera's process, with the hidden option
``--supervisor-fd FD``: the night's events go to the supervisor and its commands come back
over that descriptor (:mod:`mascara_actors.app.camera_uplink`); no progress bar.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from mascara_actors.cli.interrupts import imports_uninterrupted
from mascara_actors.config import CameraConfig, Config, load_config
from mascara_actors.errors import ConfigError

if TYPE_CHECKING:
    from mascara_actors.app.reports import StationReport
    from mascara_actors.app.station import Station
    from mascara_actors.night_state import NightState

__all__ = [
    "add_camera_options",
    "add_parser",
    "open_station",
    "print_station_report",
    "real_camera",
    "run",
]

_LEAD_SLOTS = 2


def add_camera_options(p: argparse.ArgumentParser, *, speed: float = 1.0) -> None:
    """The options that choose the camera and the night (``live`` and ``console``)."""
    p.add_argument("--camera", default="LPC", metavar="ID", help="camera id (default LPC)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("night_out"),
        metavar="DIR",
        help="output directory (default ./night_out); the dark table is in DIR/state",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="end the night after N science frames, as at dawn (default: at dawn)",
    )
    p.add_argument(
        "--tty", default=None, metavar="PORT", help="serial port of a real camera (/dev/ttyUSB0)"
    )
    p.add_argument(
        "--readout", default=None, metavar="HOST:PORT", help="readout stream of a real camera"
    )
    sim = p.add_argument_group(
        "the simulated camera (without --tty, unless cameras.toml names a port that exists)"
    )
    sim.add_argument(
        "--sensor", default="crop512", help="sensor from config/cameras.toml (default crop512)"
    )
    sim.add_argument(
        "--date",
        default="2026-03-20",
        help="the night (UTC date of its sunset) the camera clock is set to (default 2026-03-20)",
    )
    sim.add_argument(
        "--start",
        choices=("night", "dusk"),
        default="night",
        help="start the camera clock in the dark (Sun at -18 deg, the default) or just before "
        "the dusk calibration sequence",
    )
    sim.add_argument(
        "--speed",
        type=float,
        default=speed,
        help=f"camera clock this many times faster than real time (default {speed:g})",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "live",
        help="a station night on a camera (default: the simulated camera)",
        description=(
            "Run a station night: dusk calibration (bias, darks, flats), science from dusk to "
            "dawn by the Sun's altitude ([night] in reduction.toml), dawn calibration, then the "
            "nightly files and the summary. Without --tty a simulated camera renders the sky; "
            "with --tty and --readout the real camera is used. Ctrl-C stops for a restart "
            "(running again resumes the night)."
        ),
        epilog=(
            "Exit status: 0 the night was reduced; 1 the night ended early because the camera "
            "was lost (silent for [night] camera_timeout_s of its clock: what was measured is "
            "reduced and saved) or the night could not be reduced; 2 a configuration or input "
            "error; 130/143 stopped by SIGINT/SIGTERM (run the same command again to resume)."
        ),
    )
    add_camera_options(p)
    p.add_argument(
        "--mail", action="store_true", help="e-mail the night summary (settings: config/mail.toml)"
    )
    # the camera process of a station: the channel to its supervisor (mascara_actors.app.
    # camera_uplink); set by `mascara-actors station`, not by hand
    p.add_argument("--supervisor-fd", type=int, default=None, help=argparse.SUPPRESS)


def _check(args: argparse.Namespace) -> None:
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: give a number of frames >= 1")
    if not args.speed > 0:
        raise ConfigError(f"--speed {args.speed}: give a factor > 0 (10 = ten times real time)")
    if (args.tty is None) != (args.readout is None):
        raise ConfigError("a real camera needs both --tty PORT and --readout HOST:PORT")


def real_camera(args: argparse.Namespace, camera: CameraConfig) -> tuple[str, str] | None:
    """(tty, readout) of the real camera: from the command line, else from cameras.toml when
    its port exists on this machine; None: use the simulated camera."""
    if args.tty is not None:
        return args.tty, args.readout
    if camera.tty and Path(camera.tty).exists():
        if not camera.readout:
            raise ConfigError(
                f"cameras.toml: camera {camera.id} has tty = {camera.tty!r} but no readout: "
                "add readout = \"HOST:PORT\""
            )
        return camera.tty, camera.readout
    return None


def _readout_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise ConfigError(
            f"readout {text!r}: give HOST:PORT of the camera's readout stream, e.g. "
            "192.168.1.20:5000"
        )
    return host or "127.0.0.1", int(port)


def _simulated_start(args: argparse.Namespace, config: Config) -> int:
    """The slot the simulated camera clock starts in (blocking: reads the raw archive).

    The start of the night of ``--date`` (or just before its dusk calibration); but when that
    night's raw archive already holds frames (a restart), just before the slot after the
    last of them: a restarted camera neither waits through the slots already taken nor
    loses any, as if its clock had gone on while its pipeline was away.
    """
    from hw.sim.night_start import choose_start_lstseq
    from mascara_actors.app.reports import calibration_start
    from mascara_actors.night_window import night_window
    from mascara_actors.rawframe import parse_raw_filename
    from mascara_actors.sidereal import lstseq2date
    from mascara_actors.storage import NightId

    camera = config.camera(args.camera)
    if args.start == "night":
        start = choose_start_lstseq(camera, args.date, sun_alt_deg=-18.0)
        window = night_window(camera.site, float(lstseq2date(start)), config.reduction.night)
    else:
        # the night of --date: its dusk is after noon UTC of that date at both sites
        noon = float(lstseq2date(choose_start_lstseq(camera, args.date, sun_alt_deg=0.0))) - 0.3
        window = night_window(camera.site, noon, config.reduction.night)
        start = calibration_start(window, config, lead_slots=_LEAD_SLOTS) - 10
    nid = NightId(window.night.strftime("%Y%m%d"), camera.site.code, camera.letter)
    names = _names(nid.night_dir(Path(args.out)) / "raw")
    taken = [parsed[0] for parsed in map(parse_raw_filename, names) if parsed is not None]
    return max(start, max(taken, default=start) - _LEAD_SLOTS)


def _names(directory: Path) -> list[str]:
    """The file names in ``directory`` (none when it does not exist)."""
    try:
        return [entry.name for entry in os.scandir(directory)]
    except FileNotFoundError:
        return []


@contextlib.asynccontextmanager
async def open_station(
    args: argparse.Namespace,
    config: Config,
    *,
    state: NightState,
    stop: anyio.Event,
    handle_signals: bool = False,
) -> AsyncIterator[Station]:
    """The station on the camera chosen by ``args`` (a simulated device unless ``--tty``)."""
    from hw.driver import SerialCamera
    from hw.sim.process import DeviceProcess
    from hw.sim.sky_renderer import sky_device_config
    from mascara_actors.app.station import Station
    from mascara_actors.sidereal import lstseq2date

    _check(args)
    camera = config.camera(args.camera)
    real = real_camera(args, camera)
    async with contextlib.AsyncExitStack() as stack:
        if real is None:
            sensor = config.sensor(args.sensor)
            start = await anyio.to_thread.run_sync(_simulated_start, args, config)
            # a scratch directory for the device and its config: file work, in a thread
            workdir = await anyio.to_thread.run_sync(
                partial(tempfile.mkdtemp, prefix="mascara-cam-")
            )
            stack.push_async_callback(
                anyio.to_thread.run_sync, partial(shutil.rmtree, workdir, ignore_errors=True)
            )
            device_config = await anyio.to_thread.run_sync(
                partial(
                    sky_device_config,
                    workdir,
                    camera_id=camera.id,
                    sensor=sensor.name,
                    config_dir=config.directory,
                    speed=args.speed,
                    start_jd=float(lstseq2date(start)),
                    render_options={"follow_ccdtemp": True},
                )
            )
            device = DeviceProcess(device_config, startup_timeout_s=180.0)
            await stack.enter_async_context(device)
            tty, readout = device.tty_path, device.readout_address
        else:
            sensor = camera.sensor
            tty, readout = real[0], _readout_address(real[1])
        driver = await stack.enter_async_context(SerialCamera(tty, readout))
        yield Station(
            driver,
            config=config,
            camera=camera,
            sensor=sensor,
            out_dir=Path(args.out),
            state=state,
            stop=stop,
            lead_slots=_LEAD_SLOTS,
            poll_s=max(0.5, 6.4 / args.speed),
            handle_signals=handle_signals,
            send_mail=bool(getattr(args, "mail", False)),
            max_science_frames=args.frames,
        )


def run(args: argparse.Namespace) -> int:
    """Run the station night; the exit status (see the module docstring)."""
    # the station, the camera driver and the pipeline load here, not with --help
    with imports_uninterrupted():
        from mascara_actors.app.camera_uplink import ForwardingState
        from mascara_actors.night_state import NightState

    config = load_config(args.config)
    _check(args)
    state = NightState() if args.supervisor_fd is None else ForwardingState()
    report = anyio.run(_live, args, config, state)
    print_station_report(report, state)
    if report.stopped_by is not None:
        return 128 + signal.Signals[report.stopped_by]
    if report.camera_lost is not None:
        return 1
    return 0 if report.ok else 1


def print_station_report(report: StationReport, state: NightState) -> None:
    """The night's outcome on stderr (``live`` and ``console``)."""
    for run_ in report.calibrations:
        made = ", ".join(run_.masters.made) or "no master"
        counts = ", ".join(f"{len(v)} {k}" for k, v in run_.frames.items())
        print(f"{run_.when} calibration: {counts} frames -> {made}", file=sys.stderr)
    print(
        f"night {report.window.night} ({report.night_dir}): {state.frames_reduced} frames "
        f"reduced, {state.frames_failed} failed",
        file=sys.stderr,
    )
    science = report.science
    for f in science.nightly_files if science is not None else ():
        print(f"nightly file: {f}", file=sys.stderr)
    if report.summary_html is not None:
        print(f"summary: {report.summary_html}", file=sys.stderr)
    for missing in science.missing if science is not None else ():
        print(f"error: not made: {missing}; run the same command again", file=sys.stderr)
    if report.camera_lost is not None:
        print(f"error: the night ended early: {report.camera_lost}", file=sys.stderr)
    elif state.fatal:
        print(f"the night stopped: {state.fatal}", file=sys.stderr)
    if report.stopped_by is not None or (science is not None and science.stopped_early):
        print("stopped: run the same command again to resume the night", file=sys.stderr)


async def _live(args: argparse.Namespace, config: Config, state: NightState) -> StationReport:
    from mascara_actors.app.camera_uplink import run_supervised
    from mascara_actors.catalogue import Catalogue
    from mascara_actors.cli.progress import progress_bar

    catalogue = await anyio.to_thread.run_sync(Catalogue.load)
    stop = anyio.Event()
    async with open_station(args, config, state=state, stop=stop, handle_signals=True) as station:
        if args.supervisor_fd is not None:  # a camera process of `mascara-actors station`
            return await run_supervised(station, catalogue, args.supervisor_fd)
        result: list[StationReport] = []

        async def main() -> None:
            result.append(await station.run(catalogue))
            tg.cancel_scope.cancel()

        with progress_bar() as bar:
            task = bar.add_task(args.camera, total=args.frames or None, unit="frames", note="")
            async with anyio.create_task_group() as tg:
                tg.start_soon(main)
                while True:
                    bar.update(task, completed=state.frames_done, note=station.phase)
                    await anyio.sleep(0.5)
        return result[0]
