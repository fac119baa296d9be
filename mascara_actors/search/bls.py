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
    """That box's length, days (of a transit, about mid-ingress to mid-egress)."""
    epoch: np.ndarray
    """Mid-time of one of its transits (the time of ``t[0]``'s fold plus the box centre), in
    the units of ``t``."""


def box_least_squares(t: np.ndarray, y: np.ndarray, dy: np.ndarray, periods: np.ndarray,
                      durations: np.ndarray, *, bin_days: float | None = None,
                      chunk_points: int = 250_000, chunk_bins: int = 100_000
                      ) -> BLSPeriodogram:
    """The BLS periodogram of ``y`` (relative flux; a transit is a dip) with errors ``dy`` at
    times ``t`` (days), over ``periods`` and box ``durations`` (days).

    ``bin_days`` (default a quarter of the shortest duration) sets the phase resolution; a
    duration is rounded to a whole number of bins. ``chunk_points`` and ``chunk_bins`` bound
    the memory: about that many folded points and phase bins are held at once.
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
    # bins: several times fewer to fold)
    cell = np.floor((t - t0) / bin_days).astype(np.int64)
    inv = np.unique(cell, return_inverse=True)[1]
    w_c = np.bincount(inv, w)
    tt = np.bincount(inv, w * (t - t0)) / w_c
    wy = np.bincount(inv, w * (y - np.sum(w * y) / wsum))
    w = w_c
    chunk = max(1, chunk_points // len(tt))
    # float32 halves the memory traffic of the window passes, which are most of the time;
    # the weights are scaled to a mean of 1 so the cumulative sums keep their precision
    scale_w = float(w.mean())
    w32, wy32 = (w / scale_w).astype(np.float32), (wy / scale_w).astype(np.float32)
    wtot = np.float32(w32.sum())
    tiny = np.float32(1e-9) * wtot * wtot
    mmax = int(widths.max())
    lo = 0
    while lo < n_out:
        # a chunk's rows are padded to its longest period: bounding the bins too keeps
        # that padding small (and the folding of few points cheap)
        size = chunk
        while size > 1 and size * np.ceil(periods[min(lo + size, n_out) - 1] / bin_days) \
                > chunk_bins:
            size //= 2
        start, lo = lo, lo + size
        p = periods[start:lo]
        nb = np.ceil(p / bin_days).astype(np.int64)  # bins per period, the last one partial
        nmax = int(nb.max())
        rows = np.arange(len(p))
        b = np.minimum((tt[None, :] % p[:, None]) / bin_days, nb[:, None] - 1).astype(np.int64)
        flat = (rows[:, None] * (nmax + 1) + b).ravel()
        size = len(p) * (nmax + 1)
        W = np.bincount(flat, np.broadcast_to(w32, b.shape).ravel(), size)
        Y = np.bincount(flat, np.broadcast_to(wy32, b.shape).ravel(), size)
        cum_w = _wrapped_cumsum(W.reshape(len(p), nmax + 1), nb, mmax)
        cum_y = _wrapped_cumsum(Y.reshape(len(p), nmax + 1), nb, mmax)
        best = np.zeros(len(p), np.float32)
        for m in widths.tolist():
            win_w = cum_w[:, m:m + nmax] - cum_w[:, :nmax]
            win_y = np.minimum(cum_y[:, m:m + nmax] - cum_y[:, :nmax], 0)  # dips only
            # the squared signal to noise of the dips over wtot; its root only at each
            # row's best
            snr2 = win_y * win_y / np.maximum(win_w * (wtot - win_w), tiny)
            j = np.argmax(snr2, axis=1)
            top = snr2[rows, j]
            better = top > best
            if np.any(better):
                r, jj = rows[better], j[better]
                ww = win_w[r, jj].astype(float)
                scale = float(wtot) / (ww * (float(wtot) - ww))
                best[better] = top[better]
                out["power"][start + r] = np.sqrt(top[better].astype(float) * float(wtot)
                                                  * scale_w)
                out["depth"][start + r] = -win_y[r, jj].astype(float) * scale
                out["depth_err"][start + r] = np.sqrt(scale / scale_w)
                out["duration"][start + r] = m * bin_days
                out["epoch"][start + r] = t0 + (jj % nb[r] + m / 2.0) * bin_days
    return BLSPeriodogram(periods, **out)


def _wrapped_cumsum(sums: np.ndarray, nb: np.ndarray, m: int) -> np.ndarray:
    """Cumulative sums along each row, with a leading 0, of the row's ``nb`` bins followed
    by its first ``m`` bins again (so a window may wrap past phase 1), then constant: the
    last column of ``sums`` is zero, so a window starting past ``nb + m`` is empty and one
    starting in ``[nb, nb + m)`` repeats the window starting ``nb`` earlier."""
    nrow, ncol = sums.shape
    j = np.arange(ncol - 1 + m)[None, :]
    src = np.where(j < nb[:, None], j, j - nb[:, None])
    src = np.where(j < nb[:, None] + m, src, ncol - 1)
    cs = np.zeros((nrow, ncol + m), np.float32)
    np.cumsum(np.take_along_axis(sums, src, axis=1), axis=1, out=cs[:, 1:])
    return cs
