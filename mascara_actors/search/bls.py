"""Box least squares over a grid of trial periods, vectorised over the periods (Kovacs,
Zucker & Mazeh 2002).

For each trial period the light curve is folded and summed into phase bins of a fixed
length in time (``bin_days``, a fraction of the shortest duration), so a box of a given
duration spans the same number of bins at every period; the box sums are differences of
cumulative sums, wrapped around phase 0. A chunk of periods is folded at once (one
``bincount`` over the chunk's flattened bins), so the work is a few numpy passes per chunk,
never a Python loop per period or per point.

With ``y`` the relative flux minus its weighted mean (a transit is a dip, ``y < 0``) and
``w = 1 / sigma^2``, a box holding weight ``W_in`` and weighted sum ``Y_in`` of the total
weight ``W`` has the depth ``d = -Y_in W / (W_in (W - W_in))`` and the error
``sigma_d = sqrt(W / (W_in (W - W_in)))``; the statistic is the signal to noise of the depth,
``d / sigma_d``, whose square is the chi-square the box gains (astropy's ``snr`` and
``likelihood`` objectives rank the same boxes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BLSPeriodogram", "box_least_squares", "period_grid"]


def period_grid(baseline_days: float, min_period: float, max_period: float,
                min_duration: float, oversample: float = 3.0) -> np.ndarray:
    """Trial periods (days, ascending), uniform in log frequency: between two neighbours a
    transit drifts by ``min_duration / oversample`` over the baseline."""
    if not 0 < min_period < max_period:
        raise ValueError(f"periods {min_period} to {max_period} d: need 0 < min < max")
    if baseline_days <= 0 or min_duration <= 0 or oversample <= 0:
        raise ValueError("baseline, duration and oversample must be positive")
    step = min_duration / (oversample * baseline_days)
    n = int(np.ceil(np.log(max_period / min_period) / step)) + 1
    out: np.ndarray = np.exp(np.linspace(np.log(min_period), np.log(max_period), n))
    return out


@dataclass(frozen=True)
class BLSPeriodogram:
    """The best box at each trial period."""

    periods: np.ndarray
    """Days."""
    power: np.ndarray
    """Signal to noise of the best box's depth (0 where no box is a dip)."""
    depth: np.ndarray
    """Depth of that box (relative flux, positive: a dip)."""
    depth_err: np.ndarray
    duration: np.ndarray
    """Its duration, days."""
    epoch: np.ndarray
    """Mid-time of one of its transits (the time of ``t[0]``'s fold plus the box centre), in
    the units of ``t``."""


def box_least_squares(t: np.ndarray, y: np.ndarray, dy: np.ndarray, periods: np.ndarray,
                      durations: np.ndarray, *, bin_days: float | None = None,
                      chunk_points: int = 2_000_000) -> BLSPeriodogram:
    """The BLS periodogram of ``y`` (relative flux; a transit is a dip) with errors ``dy`` at
    times ``t`` (days), over ``periods`` and box ``durations`` (days).

    ``bin_days`` (default a quarter of the shortest duration) sets the phase resolution; a
    duration is rounded to a whole number of bins. ``chunk_points`` bounds the memory: about
    that many folded points are held at once.
    """
    t = np.asarray(t, float)
    dy = np.asarray(dy, float)
    ok = np.isfinite(t) & np.isfinite(y) & np.isfinite(dy) & (dy > 0)
    t, y, w = t[ok], np.asarray(y, float)[ok], 1.0 / dy[ok] ** 2
    periods = np.asarray(periods, float)
    durations = np.asarray(durations, float)
    n_out = len(periods)
    out = {k: np.zeros(n_out) for k in ("power", "depth", "depth_err", "duration", "epoch")}
    if len(t) < 3 or n_out == 0:
        return BLSPeriodogram(periods, **out)
    bin_days = float(bin_days or durations.min() / 4.0)
    widths = np.unique(np.maximum(np.rint(durations / bin_days).astype(int), 1))
    t0 = t.min()
    wsum = w.sum()
    # the points of each stretch of bin_days in time fall in the same phase bin or the
    # next at every period: summed first, they are folded once (the points are 5-minute
    # bins: a third as many to fold)
    cell = np.floor((t - t0) / bin_days).astype(np.int64)
    inv = np.unique(cell, return_inverse=True)[1]
    w_c = np.bincount(inv, w)
    tt = np.bincount(inv, w * (t - t0)) / w_c
    wy = np.bincount(inv, w * (y - np.sum(w * y) / wsum))
    w = w_c
    chunk = max(1, chunk_points // len(tt))
    for lo in range(0, n_out, chunk):
        p = periods[lo:lo + chunk]
        nb = np.ceil(p / bin_days).astype(int)  # bins per period, the last one partial
        nmax = int(nb.max())
        rows = np.arange(len(p))
        b = np.minimum((tt[None, :] % p[:, None]) / bin_days, nb[:, None] - 1).astype(np.int64)
        flat = (rows[:, None] * nmax + b).ravel()
        size = len(p) * nmax
        W = np.bincount(flat, np.broadcast_to(w, b.shape).ravel(), size).reshape(len(p), nmax)
        Y = np.bincount(flat, np.broadcast_to(wy, b.shape).ravel(), size).reshape(len(p), nmax)
        cum_w = _wrapped_cumsum(W, nb, int(widths.max()))
        cum_y = _wrapped_cumsum(Y, nb, int(widths.max()))
        starts = (np.arange(nmax)[None, :] < nb[:, None]).astype(float)  # box starts in phase
        best = np.zeros(len(p))
        for m in widths.tolist():
            win_w = cum_w[:, m:m + nmax] - cum_w[:, :nmax]
            win_y = cum_y[:, m:m + nmax] - cum_y[:, :nmax]
            # the squared signal to noise of the dips; its root only at each row's best
            with np.errstate(invalid="ignore", divide="ignore"):
                snr2 = np.where(win_y < 0, win_y * win_y / (win_w * (wsum - win_w)), 0.0)
            snr2 = np.nan_to_num(snr2, nan=0.0, posinf=0.0) * starts
            j = np.argmax(snr2, axis=1)
            top = np.sqrt(snr2[rows, j] * wsum)
            better = top > best
            if np.any(better):
                r, jj = rows[better], j[better]
                scale = wsum / (win_w[r, jj] * (wsum - win_w[r, jj]))
                best[better] = top[better]
                out["power"][lo + r] = top[better]
                out["depth"][lo + r] = -win_y[r, jj] * scale
                out["depth_err"][lo + r] = np.sqrt(scale)
                out["duration"][lo + r] = m * bin_days
                out["epoch"][lo + r] = t0 + (jj + m / 2.0) * bin_days
    return BLSPeriodogram(periods, **out)


def _wrapped_cumsum(sums: np.ndarray, nb: np.ndarray, m: int) -> np.ndarray:
    """Cumulative sums along each row, with a leading 0, of the row's ``nb`` bins followed
    by its first ``m`` bins again (so a window may wrap past phase 1); columns past a row's
    ``nb + m`` are left over (the caller masks the windows that start past ``nb``)."""
    nrow, nmax = sums.shape
    j = np.arange(nmax + m)[None, :]
    src = np.clip(np.where(j < nb[:, None], j, j - nb[:, None]), 0, nmax - 1)
    cs = np.zeros((nrow, nmax + m + 1))
    np.cumsum(np.take_along_axis(sums, src, axis=1), axis=1, out=cs[:, 1:])
    return cs
