"""``mascara-actors simulate OUTDIR``: record a simulated night for replays and tests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mascara_actors.config import load_config
from mascara_actors.errors import ConfigError

if TYPE_CHECKING:
    from hw.sim.effects import Transit

__all__ = ["add_parser", "run"]


def _transit(text: str) -> Transit:
    from hw.sim.effects import Transit

    try:
        hip, depth, duration, epoch = text.split(":")
        return Transit(
            hip=int(hip), depth=float(depth), duration_h=float(duration), epoch_jd=float(epoch)
        )
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--transit {text!r}: write HIP:DEPTH:DURATION_H:EPOCH_JD, "
            "e.g. 12345:0.01:2.5:2461368.6"
        ) from None


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "simulate",
        help="record a simulated night (raw FITS + truth) for --replay",
        description=(
            "Render a night of one camera through the simulator and write it as a recorded "
            "night: bias and dark frames at dusk, then science frames, plus truth.fits."
        ),
    )
    p.add_argument("outdir", type=Path, help="directory to create (must be empty or absent)")
    p.add_argument("--camera", default="LPC", help="camera id (default LPC)")
    p.add_argument(
        "--date",
        default="2026-03-20",
        help="night date YYYY-MM-DD, UTC date of the sunset (default 2026-03-20)",
    )
    p.add_argument("--frames", type=int, default=100, help="science frames (default 100)")
    p.add_argument(
        "--sensor",
        default=None,
        help="sensor from config/cameras.toml (default the camera's; crop1024 is small)",
    )
    p.add_argument("--darks", type=int, default=10, help="dark frames at dusk (default 10)")
    p.add_argument("--bias", type=int, default=10, help="bias frames at dusk (default 10)")
    p.add_argument("--flats", type=int, default=0, help="flat frames at dusk (default 0)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--clouds", action="store_true", help="drifting cloud patches")
    p.add_argument(
        "--trails",
        type=float,
        default=0.0,
        metavar="P",
        help="chance per frame of a satellite trail (default 0)",
    )
    p.add_argument(
        "--transit",
        type=_transit,
        action="append",
        default=[],
        metavar="HIP:DEPTH:DUR_H:EPOCH_JD",
        help="inject a transit (repeatable)",
    )
    p.add_argument(
        "--pointing-error",
        type=float,
        default=0.3,
        metavar="DEG",
        help="true pointing off the nominal one by this much in alt and az (default 0.3)",
    )
    p.add_argument(
        "--sun-alt",
        type=float,
        default=-18.0,
        metavar="DEG",
        help="start when the Sun is this far below the horizon (default -18)",
    )
    p.add_argument(
        "--align-set",
        action="store_true",
        help="start the science frames at the first slot of a set of 50",
    )
    p.add_argument("--compression", default=".fits.fz", choices=[".fits", ".fits.gz", ".fits.fz"])


def run(args: argparse.Namespace) -> int:
    # the renderer and the catalogue load here, not with --help
    from hw.sim.night_start import choose_start_lstseq
    from hw.sim.recording import record_night
    from hw.sim.sky import SimulationSettings, misaligned_model
    from mascara_actors.catalogue import Catalogue
    from mascara_actors.cli.progress import progress_bar
    from mascara_actors.sidereal import SET_SIZE, set_index

    config = load_config(args.config)
    camera = config.camera(args.camera)
    sensor = config.sensor(args.sensor) if args.sensor else camera.sensor
    if args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: record at least one science frame")
    catalogue = Catalogue.load()
    true = misaligned_model(camera, sensor, args.pointing_error)
    start = choose_start_lstseq(camera, args.date, sun_alt_deg=args.sun_alt)
    if args.align_set:
        start = (int(set_index(start)) + 1) * SET_SIZE
    settings = SimulationSettings(
        seed=args.seed,
        clouds=args.clouds,
        trail_probability=args.trails,
        transits=tuple(args.transit),
    )
    total = args.frames + args.darks + args.bias + args.flats
    with progress_bar() as bar:
        task = bar.add_task(camera.id, total=total, unit="frames", note="")
        info = record_night(
            args.outdir,
            camera,
            catalogue,
            start_lstseq=start,
            n_science=args.frames,
            sensor=sensor,
            true_model=true,
            settings=settings,
            n_bias=args.bias,
            n_dark=args.darks,
            n_flat=args.flats,
            compression=args.compression,
            progress=lambda done, _total: bar.update(task, completed=done),
        )
    print(
        f"recorded {info.n_frames} frames of {camera.id} into {args.outdir} "
        f"(science lstseq {start}..{start + args.frames - 1}); replay it with\n"
        f"  mascara-actors --replay {args.outdir}",
        file=sys.stderr,
    )
    return 0
