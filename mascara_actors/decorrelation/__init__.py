"""The coarse decorrelation of multi-night baselines (camera transmission, intrapixel, clouds).

See :mod:`mascara_actors.decorrelation.solver` for the model, the solver and how it differs
from the legacy one; :mod:`mascara_actors.decorrelation.grids` for the grids.
"""

from mascara_actors.decorrelation.solver import BIN_DTYPE as BIN_DTYPE
from mascara_actors.decorrelation.solver import CFLAG_BITS as CFLAG_BITS
from mascara_actors.decorrelation.solver import CalibrationResult as CalibrationResult
from mascara_actors.decorrelation.solver import DecorrelationError as DecorrelationError
from mascara_actors.decorrelation.solver import DecorrelationSettings as DecorrelationSettings
from mascara_actors.decorrelation.solver import NotConverged as NotConverged
from mascara_actors.decorrelation.solver import calibrate_baseline as calibrate_baseline

__all__ = [
    "BIN_DTYPE",
    "CFLAG_BITS",
    "CalibrationResult",
    "DecorrelationError",
    "DecorrelationSettings",
    "NotConverged",
    "calibrate_baseline",
]
