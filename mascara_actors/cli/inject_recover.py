"""``mascara-actors inject-recover``: the recovered fraction of injected transits per depth
and period, into calibrated light curves or a simulated season.

Exit codes: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mascara_actors.cli.progress import progress_bar
from mascara_actors.cli.search import add_search_options, search_settings

__all__ = ["add_parser", "run"]


def _percents(text: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) / 100.0 for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give depths in per cent separated by "
                                         "commas, e.g. 2,1,0.5") from None
    if not out or not all(0 < d < 1 for d in out):
        raise argparse.ArgumentTypeError(f"{text!r}: depths between 0 and 100 per cent")
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "inject-recover",
        help="inject transits, search, and report the recovered fraction per depth and period",
        description=(
            "Inject box-shaped transits (ingress and egress a tenth of the duration each) of "
            "the given depths, periods log-uniform and durations uniform in the ranges, into "
            "the calibrated light curves given (in memory; the files are not changed) or, "
            "with --simulate NIGHTS, into a simulated season before its calibration; run the "
            "search on them and on as many stars without a transit; report the recovered "
            "fraction per depth and period bin (a transit is recovered when its star's "
            "candidate, the strongest peak that passed the vetting, is at the injected "
            "period, half or twice it, within 1 %, or names one of these among its aliases: "
            "periods that fold the same transits) and the false candidates, against Talens "
            "et al. 2018. Writes DIR/recovery.csv, recovery_table.csv, recovery.json, "
            "recovery.png and the search in DIR/search."),
        epilog=("Examples: mascara-actors inject-recover calib/*/calibrated_*.hdf5 --out ir; "
                "mascara-actors inject-recover --simulate 60 --stars 600 --out ir"),
    )
    p.add_argument("files", type=Path, nargs="*", metavar="CALIBRATED",
                   help="calibrated light-curve files of one camera (or --simulate)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument("--simulate", type=int, default=None, metavar="NIGHTS",
                   help="simulate a season of this many nights (LPC, calibrated by 15 nights; "
                        "the nightly files, about 10 GB for 600 stars, are deleted once "
                        "calibrated) instead of reading files")
    p.add_argument("--stars", type=int, default=None, metavar="N",
                   help="stars to use: half get a transit (default: every star of the files; "
                        "with --simulate 600)")
    p.add_argument("--dec", type=float, nargs=2, default=(26.0, 34.0), metavar=("MIN", "MAX"),
                   help="with --simulate: the declinations of the stars (default 26 34)")
    p.add_argument("--depths", type=_percents, default=(0.02, 0.01, 0.005), metavar="P,P,...",
                   help="depths in per cent (default 2,1,0.5)")
    p.add_argument("--inject-periods", type=float, nargs=2, default=(1.0, 5.0),
                   metavar=("MIN", "MAX"), help="periods of the transits, days (default 1 5)")
    p.add_argument("--inject-durations", type=float, nargs=2, default=(2.0, 4.0),
                   metavar=("MIN", "MAX"), help="their durations, hours (default 2 4)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    add_search_options(p)


def run(args: argparse.Namespace) -> int:
    from mascara_actors.errors import ConfigError
    from mascara_actors.search import injection, season
    from mascara_actors.search.lightcurve import open_season

    if bool(args.files) == (args.simulate is not None):
        raise ConfigError("give calibrated files or --simulate NIGHTS (one of the two)")
    rng = np.random.default_rng(args.seed)
    with progress_bar() as bar:
        task = bar.add_task("inject-recover", total=None, unit="", note="")

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        if args.simulate is not None:
            plan = season.plan_season(nights=args.simulate, stars=args.stars or 600,
                                      dec_range=tuple(args.dec), seed=args.seed)
            hips = plan.stars["hip"]
            start_jd = plan.start_jd
        else:
            inputs = open_season(args.files)
            hips = inputs.stars
            if args.stars is not None:
                hips = np.sort(rng.choice(hips, min(args.stars, len(hips)), replace=False))
            start_jd = inputs.first_jd
        chosen = np.sort(rng.choice(hips, len(hips) // 2, replace=False))
        transits = season.draw_injections(
            chosen.tolist(), depths=args.depths, periods=tuple(args.inject_periods),
            durations_h=tuple(args.inject_durations), start_jd=start_jd, seed=args.seed)
        nulls = np.setdiff1d(hips, chosen).tolist()
        if args.simulate is not None:
            made = season.simulate_season(args.out / "season", nights=args.simulate,
                                          stars=args.stars or 600, dec_range=tuple(args.dec),
                                          transits=transits, seed=args.seed,
                                          progress=progress)
            files = list(made.calibrated)
        else:
            files = list(args.files)
        # the simulated season holds the transits already: the search only scores them
        rec = injection.inject_recover(files, args.out, transits, null_stars=nulls,
                                       settings=search_settings(args), progress=progress,
                                       in_files=args.simulate is not None)
    table = Table(title="recovered fraction")
    table.add_column("depth", justify="right")
    table.add_column("injected", justify="right")
    table.add_column("recovered", justify="right")
    table.add_column("at the period", justify="right")
    table.add_column("by an alias", justify="right")
    table.add_column("Talens et al. 2018", justify="right")
    for d in rec.depths:
        n = sum(1 for t in rec.injected if t.depth == d)
        ref = injection.TALENS_2018.get(d)
        table.add_row(f"{100 * d:g} %", str(n), f"{100 * rec.fraction(d):.1f} %",
                      f"{100 * rec.fraction(d, exact=True):.1f} %", str(rec.by_an_alias(d)),
                      "" if ref is None else f"{100 * ref:.1f} %")
    err = Console(file=sys.stderr)
    err.print(table)
    err.print(f"false candidates: {len(rec.false)} in {rec.null_stars} stars without a "
              f"transit ({rec.false_per_1000:.1f} per 1,000)\n"
              f"table: {args.out / 'recovery_table.csv'}; plot: {args.out / 'recovery.png'}")
    return 0

