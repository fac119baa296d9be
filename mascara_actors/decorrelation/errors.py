"""What goes wrong in a calibration, and whose fault it is."""

from __future__ import annotations

from mascara_actors.errors import MascaraError

__all__ = ["DecorrelationError", "NotConverged"]


class DecorrelationError(MascaraError):
    """The baseline cannot be calibrated (one night, no usable data, bad settings...)."""


class NotConverged(DecorrelationError):
    """The solver did not converge; nothing but the report was written."""
