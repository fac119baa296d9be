"""What changes the light of the stars during a simulated night: transits and clouds.

Both are deterministic: a :class:`Transit` is a box-shaped dip at given times, a
:class:`CloudField` a set of Gaussian blobs of extinction drifting across the chip from a
seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CloudField", "Transit"]


@dataclass(frozen=True, slots=True)
class Transit:
    """A box-shaped transit injected into one star's light curve."""

    hip: int
    depth: float
    """Fractional flux drop, e.g. 0.01."""
    duration_h: float
    """Full duration, hours."""
    epoch_jd: float
    """Mid-transit JD (UTC)."""
    period_d: float = math.inf
    """Period, days (inf: a single event)."""

    def factor(self, jd: float) -> float:
        """Flux factor (1 - depth inside the transit) at ``jd``."""
        dt = jd - self.epoch_jd
        if math.isfinite(self.period_d):
            dt = (dt + 0.5 * self.period_d) % self.period_d - 0.5 * self.period_d
        return 1.0 - self.depth if abs(dt) * 24.0 <= self.duration_h / 2.0 else 1.0


@dataclass(frozen=True, slots=True)
class CloudField:
    """Drifting cloud patches: Gaussian blobs of extinction moving across the chip."""

    centres: np.ndarray
    """(k, 2) positions at lstseq0, pixels."""
    velocity: np.ndarray
    """(k, 2) pixels per frame."""
    sigma: np.ndarray
    """(k,) blob size, pixels."""
    depth: np.ndarray
    """(k,) peak extinction, fraction of light lost."""
    lstseq0: int

    @classmethod
    def random(cls, nx: int, ny: int, lstseq0: int, *, seed: int, patches: int = 5) -> CloudField:
        rng = np.random.default_rng([seed, 0xC10D])
        scale = max(nx, ny)
        return cls(
            centres=rng.uniform([0, 0], [nx, ny], size=(patches, 2)),
            velocity=rng.normal(0, 0.004 * scale, size=(patches, 2)),
            sigma=rng.uniform(0.05, 0.2, patches) * scale,
            depth=rng.uniform(0.2, 0.7, patches),
            lstseq0=lstseq0,
        )

    def transmission(self, x: np.ndarray, y: np.ndarray, lstseq: int) -> np.ndarray:
        """Fraction of starlight that gets through at pixel positions, at ``lstseq``."""
        c = self.centres + self.velocity * (lstseq - self.lstseq0)
        d2 = (x[:, None] - c[:, 0]) ** 2 + (y[:, None] - c[:, 1]) ** 2
        loss = self.depth * np.exp(-0.5 * d2 / self.sigma**2)
        transmission: np.ndarray = np.prod(1.0 - loss, axis=1)
        return transmission
