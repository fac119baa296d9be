"""Robust sky estimators for the pixels of a sky annulus, vectorised over stars.

Each estimator is a small class with the same interface (photutils ``background/core.py``
style): call it on an ``(n_stars, n_pixels)`` array in which NaN marks "not a sky pixel",
and get a :class:`SkyEstimate` back. Two estimators are provided, and neither is a plain
mean (a mean is biased by every neighbouring star in the annulus):

- :class:`MMMSky`: the mode estimator of the IDL astrolib ``MMM`` routine, as the legacy
  lsreduce pipeline used it (its ``mmm``), vectorised.
- :class:`ClippedMedianSky`: the median and standard deviation after iterative sigma
  clipping about the median, with the semantics of astropy's ``sigma_clipped_stats``.

Both work on rows sorted once (NaNs last), :class:`~.sorted_rows.SortedRows`, whose window
sums cost O(32) per row whatever the number of pixels; there is no Python loop per star.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mascara_actors.errors import ConfigError
from mascara_actors.photometry.sorted_rows import SortedRows

__all__ = [
    "ClippedMedianSky",
    "MMMSky",
    "SkyEstimate",
    "SkyEstimator",
    "sky_estimator",
]


@dataclass(frozen=True, slots=True)
class SkyEstimate:
    """Sky level per star.

    Attributes
    ----------
    sky : ndarray of float64, shape (n,)
        Sky level, ADU per pixel; NaN where the estimate failed (too few good pixels).
    esky : ndarray of float64, shape (n,)
        Standard deviation of the sky pixels the estimate kept (the scatter of one pixel),
        ADU per pixel; NaN where the estimate failed.
    nsky : ndarray of int32, shape (n,)
        Number of pixels the estimate kept; 0 where it failed.
    """

    sky: NDArray[np.float64]
    esky: NDArray[np.float64]
    nsky: NDArray[np.int32]

    @property
    def failed(self) -> NDArray[np.bool_]:
        """True where no sky could be estimated."""
        return ~np.isfinite(self.sky)


class SkyEstimator(ABC):
    """Interface of a robust sky estimator.

    Parameters
    ----------
    minsky : int
        Minimum number of good pixels (legacy: 20); rows with fewer get a NaN sky.
    """

    def __init__(self, *, minsky: int = 20) -> None:
        if minsky < 1:
            raise ConfigError(f"minsky={minsky!r} must be >= 1 pixel; the legacy value is 20")
        self.minsky = int(minsky)

    def __call__(self, pixels: ArrayLike) -> SkyEstimate:
        """Estimate the sky of each row of ``pixels``.

        Parameters
        ----------
        pixels : array_like, shape (n, m)
            Annulus pixel values, ADU; NaN marks entries that are not sky pixels (outside
            the annulus, bad, saturated). Not modified.

        Returns
        -------
        SkyEstimate
        """
        values = np.array(pixels, dtype=np.result_type(np.asarray(pixels).dtype, np.float32))
        if values.ndim == 1:
            values = values[None, :]
        values.sort(axis=1)
        return self.estimate_rows(SortedRows(values, overwrite=True))

    def estimate_sorted(self, values: NDArray[np.floating], npix: ArrayLike | None = None,
                        ) -> SkyEstimate:
        """Estimate the sky from rows already sorted ascending.

        Parameters
        ----------
        values : ndarray, shape (n, m)
            Sorted rows (NaNs last), ADU. Not modified.
        npix : array_like of int, shape (n,), optional
            Number of sky pixels per row: only the first ``npix[i]`` entries of row ``i``
            are used (default: the non-NaN ones).

        Returns
        -------
        SkyEstimate
        """
        return self.estimate_rows(SortedRows(values, npix))

    @abstractmethod
    def estimate_rows(self, rows: SortedRows) -> SkyEstimate:
        """Estimate the sky of each row of a :class:`SortedRows` (its first ``npix``)."""


def _round_half_up(x: NDArray[np.floating]) -> NDArray[np.intp]:
    # IDL ROUND rounds halves away from zero; all arguments here are positive.
    rounded: NDArray[np.intp] = np.floor(x + 0.5).astype(np.intp)
    return rounded


class MMMSky(SkyEstimator):
    """Sky mode as IDL astrolib ``MMM`` (the legacy lsreduce ``mmm``), vectorised.

    Starting from the median and a window symmetric about it, iterate: clip at
    ``mode +- (r * sigma + |mean - mode| / 2)`` with the Chauvenet-like factor
    ``r = max(2, (-0.1042 lg n + 1.1695) lg n + 0.8895)``; recompute the mean and sigma of
    the window and a robust median (the mean of its central 20 %); the mode moves towards
    ``3 median - 2 mean`` when the median is below the mean (contaminated by stars),
    otherwise towards the mean, damped by halving a clamp whenever the step changes sign;
    stop when the window no longer changes.

    Parameters
    ----------
    minsky : int
        Minimum number of pixels in the window (legacy 20); fewer gives a NaN sky.
    maxiter : int
        Maximum number of iterations (legacy 50). A row still moving after ``maxiter``
        keeps its last estimate, as the legacy Python port did (IDL would fail it).
    highbad : float or None
        Values at or above this, ADU, never enter the window (legacy ``badpixval``).
        :func:`~mascara_actors.photometry.measure` already excludes saturated pixels.

    Notes
    -----
    ``sky`` is the mode, ``esky`` the standard deviation of the final window and ``nsky``
    its number of pixels (as IDL ``MMM``). On pure Gaussian noise the mode is biased low by
    about 0.7 standard errors of the mean (``0.7 * esky / sqrt(nsky)``), because the mode
    only moves below the mean; :class:`ClippedMedianSky` has no such bias.
    """

    def __init__(self, *, minsky: int = 20, maxiter: int = 50,
                 highbad: float | None = None) -> None:
        super().__init__(minsky=minsky)
        if maxiter < 1:
            raise ConfigError(f"maxiter={maxiter!r} must be >= 1; the legacy value is 50")
        self.maxiter = int(maxiter)
        self.highbad = highbad

    def __repr__(self) -> str:
        return f"MMMSky(minsky={self.minsky}, maxiter={self.maxiter}, highbad={self.highbad})"

    def estimate_rows(self, rows: SortedRows) -> SkyEstimate:
        if self.highbad is not None:
            rows.npix = rows.count_below(np.full(rows.npix.shape, float(self.highbad)))
        n = rows.npix
        nstars = n.size
        sky = np.full(nstars, np.nan)
        esky = np.full(nstars, np.nan)
        nsky = np.zeros(nstars, dtype=np.int32)
        # State of the rows still iterating; `sel` maps them to the output rows.
        sel = np.flatnonzero(n >= self.minsky)
        skymid = rows.ref[sel]
        cut = np.minimum(skymid - rows.value_at(np.zeros_like(sel), sel),
                         rows.value_at(n[sel] - 1, sel) - skymid)
        lo, hi = rows.count_between(skymid - cut, skymid + cut, sel)
        keep = (hi - lo) >= self.minsky
        sel, lo, hi = sel[keep], lo[keep], hi[keep]
        skymn, sigma = rows.window_stats(lo, hi, sel)
        skymed = rows.window_median(lo, hi, sel)
        skymod = np.where(skymed < skymn, 3.0 * skymed - 2.0 * skymn, skymn)
        clamp = np.ones(sel.size)
        old = np.zeros(sel.size)
        for _ in range(self.maxiter):
            if sel.size == 0:
                break
            lg = np.log10((hi - lo).astype(np.float64))
            r = np.maximum(2.0, (-0.1042 * lg + 1.1695) * lg + 0.8895)
            cut = r * sigma + 0.5 * np.abs(skymn - skymod)
            new_lo, new_hi = rows.count_between(skymod - cut, skymod + cut, sel)
            redo = (new_lo != lo) | (new_hi != hi)
            # Too few pixels left: the estimate fails (the row keeps its NaN output).
            keep = (new_hi - new_lo) >= self.minsky
            if not keep.all():
                sel, redo = sel[keep], redo[keep]
                skymod, clamp, old = skymod[keep], clamp[keep], old[keep]
            lo, hi = new_lo[keep], new_hi[keep]
            nw = hi - lo
            # Robust median: the mean of the central 20 % of the window (IDL indices).
            center = 0.5 * (lo + hi - 1)
            side = 0.5 * _round_half_up(0.2 * nw) + 0.25
            j = _round_half_up(center - side)
            k = _round_half_up(center + side)
            m = sel.size
            s1, s2 = rows.window_sums(np.concatenate([lo, j]), np.concatenate([hi, k + 1]),
                                      np.concatenate([sel, sel]))
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_d = s1[:m] / nw
                sigma = np.sqrt(np.maximum(s2[:m] / nw - mean_d * mean_d, 0.0))
                central = rows.ref[sel] + s1[m:] / (k - j + 1)
            skymn = rows.ref[sel] + mean_d
            dmod = np.where(central < skymn, 3.0 * central - 2.0 * skymn - skymod, skymn - skymod)
            clamp = np.where(dmod * old < 0.0, 0.5 * clamp, clamp)
            skymod = skymod + clamp * dmod
            old = dmod
            # Rows whose window did not move are done: write them out and drop them.
            done = ~redo
            sky[sel[done]] = skymod[done]
            esky[sel[done]] = sigma[done]
            nsky[sel[done]] = nw[done]
            sel, lo, hi, skymod = sel[redo], lo[redo], hi[redo], skymod[redo]
            skymn, sigma, clamp, old = skymn[redo], sigma[redo], clamp[redo], old[redo]
        # Rows still moving after maxiter keep their last estimate (legacy behaviour).
        sky[sel] = skymod
        esky[sel] = sigma
        nsky[sel] = hi - lo
        return SkyEstimate(sky=sky, esky=esky, nsky=nsky)


class ClippedMedianSky(SkyEstimator):
    """Median after iterative sigma clipping about the median (astropy semantics).

    Each iteration keeps the values within ``median +- sigma * std`` of the values kept so
    far (std with ddof 0), until nothing changes or ``maxiters`` is reached; the result is
    the median and standard deviation of the kept values, as
    ``astropy.stats.sigma_clipped_stats(data, sigma=sigma, maxiters=maxiters)``.

    Parameters
    ----------
    sigma : float
        Clipping half-width in standard deviations (default 3).
    maxiters : int
        Maximum number of clipping iterations (default 5, as astropy).
    minsky : int
        Minimum number of kept pixels (legacy 20); fewer gives a NaN sky.

    Notes
    -----
    ``esky`` is the clipped standard deviation, which underestimates the scatter of clean
    Gaussian sky by about 1.3 % at ``sigma = 3``.
    """

    def __init__(self, *, sigma: float = 3.0, maxiters: int = 5, minsky: int = 20) -> None:
        super().__init__(minsky=minsky)
        if not sigma > 0.0:
            raise ConfigError(f"sigma={sigma!r} must be > 0 standard deviations; try 3")
        if maxiters < 1:
            raise ConfigError(f"maxiters={maxiters!r} must be >= 1; astropy's default is 5")
        self.sigma = float(sigma)
        self.maxiters = int(maxiters)

    def __repr__(self) -> str:
        return (f"ClippedMedianSky(sigma={self.sigma}, maxiters={self.maxiters}, "
                f"minsky={self.minsky})")

    def estimate_rows(self, rows: SortedRows) -> SkyEstimate:
        lo = np.zeros_like(rows.npix)
        hi = rows.npix.copy()
        sel = np.flatnonzero(hi > 0)
        for _ in range(self.maxiters):
            if sel.size == 0:
                break
            wlo, whi = lo[sel], hi[sel]
            med = rows.window_median(wlo, whi, sel)
            _, std = rows.window_stats(wlo, whi, sel)
            clip_lo, clip_hi = rows.count_between(med - self.sigma * std,
                                                  med + self.sigma * std, sel)
            new_lo = np.maximum(wlo, clip_lo)
            new_hi = np.minimum(whi, clip_hi)
            changed = (new_lo != wlo) | (new_hi != whi)
            lo[sel] = new_lo
            hi[sel] = new_hi
            sel = sel[changed]
        nw = hi - lo
        ok = nw >= self.minsky
        _, std = rows.window_stats(lo, hi)
        med = rows.window_median(lo, hi)
        return SkyEstimate(
            sky=np.where(ok, med, np.nan),
            esky=np.where(ok, std, np.nan),
            nsky=np.where(ok, nw, 0).astype(np.int32),
        )


_ESTIMATORS: dict[str, type[SkyEstimator]] = {"mmm": MMMSky, "clipped_median": ClippedMedianSky}


def sky_estimator(name: str, *, minsky: int = 20) -> SkyEstimator:
    """The sky estimator called ``name`` in the configuration.

    Parameters
    ----------
    name : {"mmm", "clipped_median"}
        ``photometry.sky_estimator`` in ``config/reduction.toml``.
    minsky : int
        Minimum number of good annulus pixels (``photometry.min_sky_pixels``).

    Returns
    -------
    SkyEstimator
    """
    try:
        cls = _ESTIMATORS[name]
    except KeyError:
        raise ConfigError(
            f"sky estimator {name!r} is unknown: use one of {sorted(_ESTIMATORS)} "
            "(photometry.sky_estimator)"
        ) from None
    return cls(minsky=minsky)

