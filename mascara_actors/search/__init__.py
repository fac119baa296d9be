"""The transit search over calibrated light curves (issue 19).

One module per step: :mod:`.lightcurve` (the calibrated files of one camera and a star's
points), :mod:`.detrend` (slow trend and LST term), :mod:`.bls` (box least squares over the
periods), :mod:`.peaks` (alias mask, SDE, refinement), :mod:`.measure` (a peak on the
points), :mod:`.vetting` (the criteria), :mod:`.star` (one star through all of it),
:mod:`.candidates` (the table), :mod:`.sheets` (one figure per candidate, the index),
:mod:`.run` (a season on every core), :mod:`.injection` (injection-recovery) and
:mod:`.season` (a simulated season through the calibration).
"""

from mascara_actors.search.bls import BLSPeriodogram as BLSPeriodogram
from mascara_actors.search.bls import box_least_squares as box_least_squares
from mascara_actors.search.bls import period_grid as period_grid

__all__ = ["BLSPeriodogram", "box_least_squares", "period_grid"]
