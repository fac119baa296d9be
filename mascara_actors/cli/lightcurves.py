"""``simulate-lightcurves``, ``baseline`` and ``calibrate``: multi-night calibrated light curves.

``mascara-actors simulate-lightcurves OUT`` writes simulated nightly fast files (with a truth
file), ``baseline NIGHTLY_FILES... --out FILE`` merges the nights of one camera, and
``calibrate BASELINE --out DIR`` fits the coarse decorrelation (camera transmission,
intrapixel, clouds) and writes the calibrated light curves binned per set of 50.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from mascara_actors.cli.progress import progress_bar

__all__ = ["add_baseline", "add_calibrate", "add_simulate", "run_baseline", "run_calibrate",
           "run_simulate"]


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text if "-" in text else f"{text[:4]}-{text[4:6]}-{text[6:]}")
    except ValueError:
        raise argparse.ArgumentTypeError(f"--start {text!r}: write the date as YYYY-MM-DD") \
            from None


def _weather(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``simulate-lightcurves``."""
    p = sub.add_parser(
        "simulate-lightcurves",
        help="simulate nightly fast light-curve files (and a truth file) for a calibration",
        description=(
            "Write simulated nightly fast files of one camera, in the pipeline's own format, "
            "for the real Hipparcos stars it sees, with a smooth camera transmission (30 %% "
            "vignetting), intrapixel modulation, clouds per sky patch and exposure, photon, "
            "sky and scintillation noise, variable stars and transits; plus "
            "OUT/truth_{CAM}.fits with what was injected. Then: mascara-actors baseline "
            "OUT/*/lightcurves/fast_*.hdf5 --out baseline.hdf5"),
    )
    p.add_argument("outdir", type=Path, help="new (or empty) output directory")
    p.add_argument("--camera", default="LPC", help="camera id (default LPC)")
    p.add_argument("--nights", type=int, default=15, help="nights (default 15)")
    p.add_argument("--start", type=_date, default=dt.date(2026, 1, 8),
                   help="date of the first night, YYYY-MM-DD (default 2026-01-08)")
    p.add_argument("--stars", type=int, default=None,
                   help="simulate this many of the camera's stars, at random (default all)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--hours", type=float, default=None,
                   help="simulate only this many hours of each night, at most to its end "
                        "(default all of it)")
    p.add_argument("--offset-hours", type=float, default=0.0, metavar="H",
                   help="with --hours: start this long after the night starts (default 0: "
                        "the night starts at sunset, so its first hour is bright twilight)")
    p.add_argument("--every-set", type=int, default=1, metavar="K",
                   help="simulate one set of 50 exposures in K (default 1: every set)")
    p.add_argument("--weather", type=_weather, default=None, metavar="W,W,...",
                   help="clear, cloudy or overcast for each night (default at random)")
    p.add_argument("--sensor", default=None,
                   help="sensor from config/cameras.toml (default the camera's)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes simulating nights (default: 2, one per core)")


def add_baseline(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``baseline``."""
    p = sub.add_parser(
        "baseline",
        help="merge the nightly fast files of one camera into a baseline",
        description=(
            "Merge nightly fast files (lightcurves/fast_{night}{SITE}{CAM}.hdf5) of one camera "
            "into one baseline file with the same layout plus the list of source files, "
            "with bounded memory (chunks of stars). Typically 15 nights."),
    )
    p.add_argument("files", type=Path, nargs="+", metavar="NIGHTLY_FILE",
                   help="nightly fast files of one camera")
    p.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="the baseline file to write")
    p.add_argument("--compression", choices=["gzip", "lzf", "none"], default="gzip",
                   help="compression of the light curves (default gzip)")


def add_calibrate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``calibrate``."""
    p = sub.add_parser(
        "calibrate",
        help="coarse decorrelation of a baseline: calibrated light curves and maps",
        description=(
            "Fit mag = m_star + T(HA, dec) + intrapixel(HA, dec; x, y) + clouds(patch, lstseq) "
            "to a baseline and write OUT/calibrated_{stem}.hdf5 (one point per star and set "
            "of 50), OUT/maps_{stem}.hdf5 (the maps, with the baseline they came from), "
            "OUT/plots/*.png and OUT/report_{stem}.json. A fit that does not converge writes "
            "only OUT/report_{stem}.failed.json and exits with status 1 (an earlier run's "
            "files and report are kept); the baseline is never modified."),
    )
    p.add_argument("baseline", type=Path, help="baseline file (mascara-actors baseline)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument("--aperture", type=int, choices=[0, 1], default=0,
                   help="fast aperture: 0 (2.5 px, default) or 1 (4.5 px)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: 2, one per core)")
    p.add_argument("--max-iter", type=int, default=30, help="outer iterations (default 30)")
    p.add_argument("--tol", type=float, default=1e-4,
                   help="convergence: RMS change of the maps, mag (default 1e-4)")
    p.add_argument("--vmax", type=float, default=8.4,
                   help="leave out stars fainter than this V (default 8.4)")


def run_simulate(args: argparse.Namespace) -> int:
    from mascara_actors.config import load_config
    from mascara_actors.lcsim import LightCurveSimulation, simulate_lightcurves

    config = load_config(args.config)
    sim = LightCurveSimulation(camera=args.camera, nights=args.nights, start=args.start,
                               stars=args.stars, seed=args.seed, hours=args.hours,
                               offset_hours=args.offset_hours,
                               every_set=args.every_set, weather=args.weather,
                               sensor=args.sensor)
    with progress_bar() as bar:
        task = bar.add_task(f"simulate {args.camera}", total=None, unit="sets", note="")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = simulate_lightcurves(args.outdir, sim, config=config, workers=args.workers,
                                      progress=progress)
    print(f"simulated {len(report.nightly_files)} nights of {report.nstars} stars "
          f"({report.nrecords} points) into {report.outdir}; truth: {report.truth_file}\n"
          f"next: mascara-actors baseline {report.outdir}/*/lightcurves/fast_*.hdf5 "
          f"--out {report.outdir}/baseline.hdf5", file=sys.stderr)
    return 0


def run_baseline(args: argparse.Namespace) -> int:
    from mascara_actors.storage.baseline import build_baseline

    with progress_bar() as bar:
        task = bar.add_task("baseline", total=None, unit="stars", note="")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = build_baseline(args.files, args.out,
                                compression=None if args.compression == "none" else
                                args.compression, progress=progress)
    print(f"baseline {report.output}: {len(report.nights)} nights ({report.nights[0]} to "
          f"{report.nights[-1]}), {report.nstars} stars, {report.nrecords} points\n"
          f"next: mascara-actors calibrate {report.output} --out calibration", file=sys.stderr)
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from mascara_actors.decorrelation import (
        CalibrationResult,
        DecorrelationSettings,
        NotConverged,
        calibrate_baseline,
    )

    settings = DecorrelationSettings(aperture=args.aperture, workers=args.workers,
                                     max_iter=args.max_iter, tol=args.tol, vmax=args.vmax)
    result: CalibrationResult | NotConverged
    with progress_bar() as bar:
        task = bar.add_task("calibrate", total=None, unit="patches", note="")

        def progress(stage: str, done: int, total: int, note: str) -> None:
            bar.update(task, description=f"calibrate: {stage}", completed=done, total=total,
                       note=note)

        try:
            result = calibrate_baseline(args.baseline, args.out, settings, progress=progress)
        except NotConverged as exc:
            result = exc
    if isinstance(result, NotConverged):
        print(f"mascara-actors: {result}", file=sys.stderr)
        return 1
    print(result.summary(), file=sys.stderr)
    print(f"calibrated light curves: {result.calibrated_file}\nmaps: {result.maps_file}\n"
          f"plots: {result.outdir / 'plots'}\nreport: {result.report_file}", file=sys.stderr)
    return 0
