"""``mascara-actors calibrate``: see :mod:`mascara_actors.cli.lightcurves`."""

from __future__ import annotations

from mascara_actors.cli.lightcurves import add_calibrate as add_parser
from mascara_actors.cli.lightcurves import run_calibrate as run

__all__ = ["add_parser", "run"]
