"""``mascara-actors simulate-lightcurves``: see :mod:`mascara_actors.cli.lightcurves`."""

from __future__ import annotations

from mascara_actors.cli.lightcurves import add_simulate as add_parser
from mascara_actors.cli.lightcurves import run_simulate as run

__all__ = ["add_parser", "run"]
