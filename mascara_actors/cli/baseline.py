"""``mascara-actors baseline``: see :mod:`mascara_actors.cli.lightcurves`."""

from __future__ import annotations

from mascara_actors.cli.lightcurves import add_baseline as add_parser
from mascara_actors.cli.lightcurves import run_baseline as run

__all__ = ["add_parser", "run"]
