"""The settings of the coarse decorrelation (units: mag, degrees)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mascara_actors.decorrelation.errors import DecorrelationError

__all__ = ["DecorrelationSettings"]


@dataclass(frozen=True)
class DecorrelationSettings:
    """Settings of :func:`~mascara_actors.decorrelation.calibrate_baseline`."""

    aperture: int = 0
    """Fast aperture (0: 2.5 px, 1: 4.5 px)."""
    vmax: float = 8.4
    """Stars fainter than this V are left out (the legacy cut)."""
    ha_step: float = 1.0
    dec_step: float = 1.0
    """Transmission node spacing."""
    ipx_ha_step: float = 2.0
    ipx_dec_step: float = 2.0
    """Intrapixel cell size (a whole number of node intervals)."""
    max_iter: int = 30
    tol: float = 1e-4
    """Converged when the data-weighted RMS change of T and of the intrapixel amplitudes
    between two iterations is below this (over the nodes and cells with at least 5 % of the
    median data weight)."""
    min_iter: int = 3
    inner_iter: int = 3
    """Alternations of magnitudes and clouds per outer iteration (more on the first)."""
    min_nights: int = 2
    min_points: int = 100
    """Stars with fewer good points are left out."""
    max_saturated_fraction: float = 0.5
    """Stars saturated on a larger fraction of their points are left out: a star saturated
    on clear nights keeps only its cloudy points, and its magnitude would absorb the
    clouds."""
    max_emag: float = 0.1
    """Points with a larger error (S/N below 10: thick clouds, bright twilight) are dropped:
    their magnitudes are biased (the logarithm of a noisy flux, and only the upward
    fluctuations pass) and they would bias the maps."""
    max_cloud_for_maps: float = 0.5
    """Cloud cells thicker than this (mag) are calibrated but do not enter the maps."""
    min_cloud_stars: int = 4
    """Cloud cells need this many stars to enter the maps and to correct a point (the
    leave-one-out value then rests on at least min_cloud_stars - 1 others)."""
    clip: float = 5.0
    """Points further than this many sigma from the model do not enter the maps or bins."""
    smooth: float = 1e-3
    """Weight of the curvature penalty of T relative to the median data weight of a node."""
    ipx_smooth: float = 0.05
    """Weight of the difference penalty between neighbouring intrapixel cells relative to
    the median data weight of a cell."""
    gauge_ha_step: float = 5.0
    """HA bins of the clear-sky condition on the clouds, degrees."""
    sigma_max: float = 2.0
    """Largest extra sigma of a star or cloud cell, mag."""
    workers: int | None = None
    """Worker processes (default: 2, or 1 on a single-core machine)."""

    def check(self) -> None:
        """Raise :class:`DecorrelationError` naming the first setting that cannot work."""
        if self.aperture not in (0, 1):
            raise DecorrelationError(f"aperture={self.aperture}: the fast photometry has "
                                     "apertures 0 (2.5 px) and 1 (4.5 px)")
        if self.max_iter < 1 or self.min_iter < 1 or self.inner_iter < 1:
            raise DecorrelationError(
                f"max_iter={self.max_iter}, min_iter={self.min_iter}, "
                f"inner_iter={self.inner_iter}: each must be at least 1")
        if self.max_iter < self.min_iter:
            # the fit never stops before min_iter iterations: it could never converge
            raise DecorrelationError(
                f"max_iter={self.max_iter} is less than min_iter={self.min_iter}, the "
                "iterations the fit always runs, so it could never converge: give "
                f"max_iter (--max-iter) of at least {self.min_iter}")
        if self.workers is not None and self.workers < 1:
            raise DecorrelationError(f"workers={self.workers}: must be at least 1")
        self.ipx_ratios()

    def ipx_ratios(self) -> tuple[int, int]:
        """Transmission node intervals per intrapixel cell, along HA and declination."""
        return (_ratio(self.ipx_ha_step, self.ha_step), _ratio(self.ipx_dec_step, self.dec_step))

    def worker_count(self, nrings: int) -> int:
        """Worker processes to use for ``nrings`` rings of sky patches."""
        wanted = self.workers or min(2, os.cpu_count() or 1)
        return max(1, min(wanted, nrings))


def _ratio(cell: float, node: float) -> int:
    r = cell / node
    if abs(r - round(r)) > 1e-9 or round(r) < 1:
        raise DecorrelationError(f"intrapixel cells of {cell} deg must span a whole number of "
                                 f"transmission node intervals ({node} deg)")
    return round(r)
