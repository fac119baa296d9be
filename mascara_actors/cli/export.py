"""``mascara-actors export NIGHTLY_FILE [--stars HIP ...] [--out DIR]``: per-star FITS tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "export",
        help="write one FITS binary table per star from a nightly light-curve file",
        description=(
            "Export light curves of a nightly file (fast_ or slow_{night}{SITE}{CAM}.hdf5) as "
            "one FITS binary table per star, named by HIP number."
        ),
    )
    p.add_argument("nightly_file", type=Path, help="the nightly HDF5 file")
    p.add_argument(
        "--stars",
        type=int,
        nargs="+",
        metavar="HIP",
        help="HIP numbers to export (default: every star in the file)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("star_files"),
        metavar="DIR",
        help="output directory (default ./star_files)",
    )


def run(args: argparse.Namespace) -> int:
    from mascara_actors.storage import export_stars  # h5py: not for --help

    paths = export_stars(args.nightly_file, args.stars, args.out)
    print(f"wrote {len(paths)} star files into {args.out}", file=sys.stderr)
    return 0
