"""``mascara-actors search CALIBRATED... --out DIR``: the transit search of a season.

Exit codes: 0 searched (whatever was found; skipped files and stars are listed), 2 bad input
(no readable calibrated file, an absurd period range, no star to search).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mascara_actors.cli.progress import progress_bar

__all__ = ["add_parser", "parse_hours", "parse_stars", "run", "search_settings"]


def parse_hours(text: str) -> tuple[float, ...]:
    """``1,1.5,2`` -> hours."""
    try:
        out = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give hours separated by commas, e.g. "
                                         "1,2,3") from None
    if not out:
        raise argparse.ArgumentTypeError("give at least one duration")
    return out


def parse_stars(text: str) -> tuple[int, ...]:
    """``12,345`` -> HIP numbers."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give HIP numbers separated by commas") \
            from None


def add_search_options(p: argparse.ArgumentParser) -> None:
    """The options ``search`` and ``inject-recover`` share."""
    p.add_argument("--periods", type=float, nargs=2, default=(1.0, 20.0),
                   metavar=("MIN", "MAX"), help="period range, days (default 1 20)")
    p.add_argument("--durations", type=parse_hours, default=None, metavar="H,H,...",
                   help="box durations, hours (default 1,1.5,2,2.5,3,4,5,6)")
    p.add_argument("--workers", type=int, default=2,
                   help="processes searching stars (default 2, one per core)")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "search",
        help="search calibrated light curves for transits: candidates, sheets, index",
        description=(
            "Detrend each star's binned light curve (a slow trend in time and a term in LST, "
            "robust to outliers), run box least squares over the periods and durations, mask "
            "the sidereal-day aliases, measure the best peaks of each star (period, epoch, "
            "depth and error, duration, SDE, S/N, transits, odd/even, secondary eclipse, "
            "ellipsoidal variation, in-transit fraction, blends with neighbours) and vet them. "
            "Writes DIR/candidates.csv and .hdf5 (sorted by significance, pass/fail per "
            "criterion), DIR/sheets/*.png (one per candidate), DIR/index.html and "
            "DIR/search.json (what was read, skipped and why). Files of another camera, "
            "unreadable files and stars with too few points are skipped and listed."),
        epilog=("Example: mascara-actors search calib/*/calibrated_*.hdf5 --out search "
                "(then open search/index.html). Exit status: 0 searched, 2 bad input."),
    )
    p.add_argument("files", type=Path, nargs="+", metavar="CALIBRATED",
                   help="calibrated light-curve files of one camera (mascara-actors calibrate)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    add_search_options(p)
    p.add_argument("--sheets", type=int, default=50, metavar="N",
                   help="besides every candidate that passed, draw the sheets of the N most "
                        "significant others (default 50)")
    p.add_argument("--stars", type=parse_stars, default=None, metavar="HIP,HIP,...",
                   help="search only these stars (default all)")


def search_settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The :class:`SearchSettings` the options give."""
    from mascara_actors.search.settings import SearchSettings

    base = SearchSettings()
    return SearchSettings(period_min=args.periods[0], period_max=args.periods[1],
                          durations_h=args.durations or base.durations_h,
                          workers=args.workers)


def _kind(why: str) -> str:
    return ("too few points" if "good points" in why else
            "constant light curves" if why.startswith("constant") else "failed")


def run(args: argparse.Namespace) -> int:
    from mascara_actors.search.run import search

    with progress_bar() as bar:
        task = bar.add_task("search", total=None, unit="stars", note="")

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=f"search: {stage}", completed=done, total=total)

        report = search(args.files, args.out, search_settings(args), sheets=args.sheets,
                        stars=args.stars, progress=progress)
    err = Console(file=sys.stderr)
    for path, why in report.skipped_files:
        err.print(f"skipped {path}: {why}")
    if report.skipped_stars:
        kinds = Counter(_kind(why) for _, why in report.skipped_stars)
        err.print(f"skipped {len(report.skipped_stars)} stars: "
                  + ", ".join(f"{n} {k}" for k, n in kinds.most_common())
                  + f" (each listed in {report.outdir / 'search.json'})")
    table = Table(title=f"{len(report.passed)} candidates passed the vetting")
    for col in ("HIP", "V", "period d", "depth %", "dur h", "SDE", "S/N", "transits"):
        table.add_column(col, justify="right")
    for c in report.passed[:20]:
        table.add_row(str(c.hip), f"{c.vmag:.2f}", f"{c.period:.4f}", f"{100 * c.depth:.2f}",
                      f"{24 * c.duration:.1f}", f"{c.sde:.1f}", f"{c.snr:.1f}",
                      str(c.ntransits))
    if report.passed:
        err.print(table)
    err.print(f"searched {report.searched} of {report.stars} stars of {report.camera} over "
              f"{report.baseline_days:.0f} days in {report.seconds:.0f} s: "
              f"{len(report.candidates)} peaks kept, {len(report.passed)} passed the vetting\n"
              f"candidates: {report.outdir / 'candidates.csv'}\n"
              f"sheets: {report.outdir / 'index.html'}")
    return 0

