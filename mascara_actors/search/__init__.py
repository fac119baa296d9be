"""The transit search over calibrated light curves (issue 19): box least squares so far."""

from mascara_actors.search.bls import BLSPeriodogram as BLSPeriodogram
from mascara_actors.search.bls import box_least_squares as box_least_squares
from mascara_actors.search.bls import period_grid as period_grid

__all__ = ["BLSPeriodogram", "box_least_squares", "period_grid"]
