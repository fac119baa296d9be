"""Injected transits: what each one is, and the shape of its light curve."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TransitSpec", "transit_shape"]


def transit_shape(jd: np.ndarray, period_d: float, epoch_jd: float, duration_h: float
                  ) -> np.ndarray:
    """Fraction of the transit depth at times ``jd``: 1 in the flat bottom, 0 outside,
    linear over an ingress and egress of a tenth of the duration each."""
    dt_d = (np.asarray(jd, float) - epoch_jd + 0.5 * period_d) % period_d - 0.5 * period_d
    half = 0.5 * duration_h / 24.0
    ramp = 0.1 * duration_h / 24.0
    out: np.ndarray = np.clip((half - np.abs(dt_d)) / ramp, 0.0, 1.0)
    return out


@dataclass(frozen=True, slots=True)
class TransitSpec:
    """One injected transit."""

    hip: int
    period_d: float
    epoch_jd: float
    """Mid-transit, JD (UTC)."""
    depth: float
    """Fraction of the flux lost in the flat bottom (0.01 = 1 %)."""
    duration_h: float
    """First to last contact, hours."""

    def dimming_mag(self, jd: np.ndarray) -> np.ndarray:
        """Magnitudes lost to the transit at times ``jd``."""
        shape = transit_shape(jd, self.period_d, self.epoch_jd, self.duration_h)
        out: np.ndarray = -2.5 * np.log10(1.0 - self.depth * shape)
        return out
