"""``mascara-actors live``: run the pipeline on a camera, by default the simulated one.

Without ``--tty`` a simulated camera device is started (its own process, a real
pseudo-terminal and readout socket) rendering the sky of the chosen camera from the
Hipparcos catalogue, with its clock set to the night of ``--date``; the pipeline drives it
exactly as it would drive the real camera on ``/dev/ttyUSB0``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import time
from pathlib import Path

import anyio
import anyio.to_thread

from hw.device import DeviceProcess
from hw.driver import SerialCamera
from hw.live import LiveStats, live_frames
from hw.recording import choose_start_lstseq
from hw.sky_device import sky_device_config
from mascara_actors.actors.pipeline import NightPlan, NightReport, run_night
from mascara_actors.actors.reducer import WorkerSpec
from mascara_actors.actors.summariser import NightState
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.ephemeris import night_date
from mascara_actors.errors import CalibrationError, ConfigError
from mascara_actors.progress import ProgressBar
from mascara_actors.sidereal import lstseq2date
from mascara_actors.storage import NightId, get_dark_filename

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "live",
        help="reduce frames from a camera as they come (default: the simulated camera)",
        description=(
            "Run the pipeline live. Without --tty a simulated camera device renders the sky; "
            "with --tty and --readout the real camera is used."
        ),
    )
    p.add_argument("--camera", default="LPC", help="camera id (default LPC)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("night_out"),
        metavar="DIR",
        help="output directory (default ./night_out)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help="stop after this many frames (default: until Ctrl-C)",
    )
    p.add_argument("--tty", default=None, help="serial port of a real camera, e.g. /dev/ttyUSB0")
    p.add_argument(
        "--readout", default=None, metavar="HOST:PORT", help="readout stream of a real camera"
    )
    p.add_argument(
        "--sensor",
        default="crop512",
        help="simulated camera: sensor from config/cameras.toml (default crop512)",
    )
    p.add_argument(
        "--date",
        default="2026-03-20",
        help="simulated camera: the night to start in (default 2026-03-20)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated camera: clock this many times faster than real time",
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    camera = config.camera(args.camera)
    try:
        dark: str | None = str(get_dark_filename(camera.letter, Path(args.out) / "state"))
    except CalibrationError:
        dark = None
        print("note: no dark in the dark table: subtracting the overscan level", file=sys.stderr)
    state = NightState()
    report = anyio.run(_live, args, config, camera, dark, state)
    s = report.state
    print(
        f"frames: {s.frames_reduced} reduced, {s.frames_failed} failed; "
        f"wall time {report.wall_s:.1f} s",
        file=sys.stderr,
    )
    for f in report.nightly_files:
        print(f"nightly file: {f}", file=sys.stderr)
    if report.stopped_by is not None:
        return 128 + signal.Signals[report.stopped_by]
    return 0 if report.ok else 1


async def _live(args, config, camera, dark, state: NightState) -> NightReport:  # type: ignore[no-untyped-def]
    catalogue = await anyio.to_thread.run_sync(Catalogue.load)
    stop = anyio.Event()
    async with contextlib.AsyncExitStack() as stack:
        if args.tty is None:
            sensor = config.sensor(args.sensor)
            start = choose_start_lstseq(camera, args.date, sun_alt_deg=-18.0)
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mascara-cam-"))
            device = stack.enter_context(
                DeviceProcess(
                    sky_device_config(
                        workdir,
                        camera_id=camera.id,
                        sensor=args.sensor,
                        speed=args.speed,
                        start_jd=float(lstseq2date(start)),
                        render_options={"follow_ccdtemp": True},
                    ),
                    startup_timeout_s=180.0,
                )
            )
            tty, readout = device.tty_path, device.readout_address
            jd0 = float(lstseq2date(start))
        else:
            sensor = camera.sensor
            host, _, port = (args.readout or "").rpartition(":")
            if not port.isdigit():
                raise ConfigError(
                    f"--readout {args.readout!r}: give HOST:PORT of the camera's "
                    "readout stream, e.g. 192.168.1.20:5000"
                )
            tty, readout = args.tty, (host or "127.0.0.1", int(port))
            jd0 = time.time() / 86400.0 + 2440587.5  # now, UTC
        nid = NightId(
            night_date(jd0, camera.site).strftime("%Y%m%d"), camera.site.code, camera.letter
        )
        plan = NightPlan(
            config=config,
            camera=camera,
            night=nid,
            out_dir=Path(args.out),
            worker=WorkerSpec(camera.id, str(config.directory), dark, None),
            frames_expected=args.frames or 0,
            live=True,
        )
        cam = await stack.enter_async_context(SerialCamera(tty, readout))
        source = live_frames(
            cam,
            plan.night_dir / "raw",
            camera=camera.letter,
            site=camera.site.name,
            sensor=sensor,
            count=args.frames,
            stop=stop,
            stats=LiveStats(),
            poll_s=max(0.5, 6.4 / args.speed),
        )
        frames = await stack.enter_async_context(contextlib.aclosing(source))
        bar = ProgressBar(args.frames or 0)
        result: list[NightReport] = []

        async def main() -> None:
            result.append(
                await run_night(
                    plan, frames, catalogue, state=state, stop=stop, handle_signals=True
                )
            )
            tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(main)
            while True:
                bar.update(state.frames_done)
                await anyio.sleep(0.5)
        bar.close()
        return result[0]
