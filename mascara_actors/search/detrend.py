"""Detrending before the search: a slow trend in time and a term in LST, fitted together and
robustly, on the legacy pipeline's scales (``s_jd`` = 5 days, ``s_lst`` = 0.25 h). The legacy
fitted Legendre polynomials of one order per scale; here each term is linear interpolation
between nodes one scale apart, which follows the same detail but stays local: a
polynomial of order 36 in LST swings wildly where points are left out of the fit.

The slow trend follows what the calibration leaves over days (the star's own variability,
a drift of its magnitude); the LST term what repeats every sidereal day (a residual of the
camera transmission or intrapixel maps at the star's path across the chip). A transit lasts
hours and falls at a different LST on each night, so it is in neither. The fit is refitted
without the points further than ``clip`` robust sigma (most of a deep transit), so the trend
does not fill the transits in.
"""

from __future__ import annotations

import numpy as np

from mascara_actors.decorrelation.ingest import MAG_PER_RELATIVE_FLUX

__all__ = ["Detrended", "detrend"]


class Detrended:
    """A detrended light curve: relative flux (1 = the star's level) and its error."""

    __slots__ = ("flux", "flux_err", "trend_mag", "used")

    def __init__(self, flux: np.ndarray, flux_err: np.ndarray, trend_mag: np.ndarray,
                 used: np.ndarray) -> None:
        self.flux = flux
        self.flux_err = flux_err
        self.trend_mag = trend_mag
        """The fitted trend, mag."""
        self.used = used
        """The points the last fit used (the others were clipped)."""


def _hats(x: np.ndarray, step: float) -> np.ndarray:
    """Columns of linear interpolation ("hat" functions) on nodes every ``step`` from the
    smallest ``x`` to the largest: each row has weight on its two neighbouring nodes. Local,
    unlike one polynomial, so a stretch left out of the fit (a candidate's transits) is
    bridged, never swung over."""
    lo = float(x.min())
    nodes = max(int(np.ceil((float(x.max()) - lo) / step)), 1) + 1
    u = np.clip((x - lo) / step, 0.0, nodes - 1 - 1e-9)
    k = np.floor(u).astype(np.int64)
    f = u - k
    out = np.zeros((len(x), nodes))
    rows = np.arange(len(x))
    out[rows, k] = 1.0 - f
    out[rows, k + 1] = f
    return out


def _design(jd: np.ndarray, lst: np.ndarray, days: float, lst_h: float
            ) -> tuple[np.ndarray, list[slice]]:
    """Columns: per stretch of data (split at gaps longer than ``days``) hats every
    ``days``; then hats every ``lst_h`` over the LST covered. Also the columns of each
    block of hats (a stretch's, the LST term's)."""
    cols = []
    blocks = []
    start = 0
    cut = np.flatnonzero(np.diff(jd) > days) + 1
    for seg in np.split(np.arange(len(jd)), cut):
        block = _hats(jd[seg], days)
        full = np.zeros((len(jd), block.shape[1]))
        full[seg] = block
        cols.append(full)
        blocks.append(slice(start, start + block.shape[1]))
        start += block.shape[1]
    # LST around the star's own: a path that crosses 0 h stays in one piece
    dl = (lst - np.median(lst) + 12.0) % 24.0 - 12.0
    cols.append(_hats(dl, lst_h))
    blocks.append(slice(start, start + cols[-1].shape[1]))
    return np.hstack(cols), blocks


def _bending(blocks: list[slice], ncols: int) -> np.ndarray:
    """The penalty matrix of the differences of neighbouring nodes in each block: added
    weakly to the normal equations, it gives nodes without fitted points the straight line
    between their neighbours (a stretch left out is bridged), holds the last node value
    beyond the last points (no slope is extrapolated from a few noisy ones), and leaves the
    nodes the points determine as they were."""
    penalty = np.zeros((ncols, ncols))
    for b in blocks:
        n = b.stop - b.start
        d1 = np.eye(n - 1, n, 1) - np.eye(n - 1, n)
        penalty[b, b] += d1.T @ d1
    return penalty


_BENDING_WEIGHT = 1e-4
"""Weight of :func:`_bending`, relative to the mean weight of a node in the normal
equations: a node's own points outweigh it ten-thousandfold."""


def detrend(jd: np.ndarray, lst: np.ndarray, mag: np.ndarray, emag: np.ndarray, *,
            days: float = 5.0, lst_h: float = 0.25, clip: float = 3.0,
            iterations: int = 10, exclude: np.ndarray | None = None) -> Detrended:
    """Fit and remove the slow trend and the LST term from time-ordered binned magnitudes
    (``jd`` days, ``lst`` hours, ``mag`` and ``emag`` mag, all finite, ``emag > 0``),
    refitting without the clipped points until they no longer change (at most
    ``iterations`` fits: a transit at the end of a stretch of data, where the polynomials
    bend most easily, takes several to be left out whole). Points where ``exclude`` is true
    (a candidate's transits) never enter the fit."""
    a, blocks = _design(jd, lst, days, lst_h)
    bending = _bending(blocks, a.shape[1])
    sw = 1.0 / emag
    free = np.ones(len(mag), bool) if exclude is None else ~exclude
    used = free.copy()
    # the trend is fitted about the star's level: a node no point reaches then means "no
    # trend", where about the raw magnitude it would mean "0 mag" (lstsq sets it to 0)
    level = float(np.median(mag[free])) if free.any() else float(np.median(mag))
    model = np.full(len(mag), level)
    for _ in range(iterations):
        if np.count_nonzero(used) <= a.shape[1]:
            break
        # normal equations: the design has tens of columns and thousands of rows, so this
        # is a hundred times faster than a least-squares solve of the whole matrix; lstsq
        # of the small matrix copes with the constant the blocks can trade between them
        aw = a[used] * sw[used, None]
        normal = aw.T @ aw
        normal += _BENDING_WEIGHT * float(np.mean(np.diag(normal))) * bending
        coef = np.linalg.lstsq(normal, aw.T @ ((mag[used] - level) * sw[used]), rcond=None)[0]
        model = level + a @ coef
        z = (mag - model) * sw
        sigma = 1.4826 * np.median(np.abs(z[used] - np.median(z[used])))
        keep = free & (np.abs(z) <= clip * max(float(sigma), 1e-12))
        if np.array_equal(keep, used):
            break
        used = keep
    resid = mag - model
    flux = 10.0 ** (-0.4 * resid)
    return Detrended(flux, flux * emag / MAG_PER_RELATIVE_FLUX, model, used)
