"""What a peak looks like on the star's binned points: the depth and its red-noise error,
the transits seen, odd and even, a secondary eclipse, ellipsoidal variation, the share of
the single best night and the anti-transit ratio. All of it on the points themselves (no
phase bins), for one period, epoch and duration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TransitMeasure", "box_depth", "measure_transit", "phase_days"]


def phase_days(t: np.ndarray, period: float, epoch: float) -> np.ndarray:
    """Time from the nearest mid-transit, days, in [-P/2, P/2)."""
    out: np.ndarray = (t - epoch + 0.5 * period) % period - 0.5 * period
    return out


def _mean(f: np.ndarray, w: np.ndarray, sel: np.ndarray) -> tuple[float, float]:
    """Weighted mean of ``f[sel]`` and its error (NaN without points)."""
    wsum = float(w[sel].sum())
    if wsum <= 0:
        return float("nan"), float("nan")
    return float((w[sel] * f[sel]).sum() / wsum), float(wsum ** -0.5)


def box_depth(f: np.ndarray, w: np.ndarray, inside: np.ndarray) -> tuple[float, float]:
    """Out-of-box minus in-box weighted mean, and its error (NaN without points in or out)."""
    m_in, e_in = _mean(f, w, inside)
    m_out, e_out = _mean(f, w, ~inside)
    return m_out - m_in, float(np.hypot(e_in, e_out))


@dataclass(frozen=True)
class TransitMeasure:
    """One peak measured (see :class:`~mascara_actors.search.candidates.Candidate`)."""

    period: float
    epoch: float
    duration: float
    depth: float
    depth_err: float
    snr: float
    red_noise: float
    """beta: the scatter of duration-long means of the out-of-transit points over their
    white-noise expectation (at least 1); the depth error includes it."""
    snr_err: float
    """Standard error of ``snr``: 1 from the noise and, in quadrature, ``snr`` times beta's
    own relative error, 1 / sqrt(2 N) over its N windows (about 5 % on a season)."""
    ntransits: int
    in_transit_fraction: float
    odd_even_sigma: float
    """Difference of the odd and even transits' depths over its error, which includes the
    larger of the red noise and the single transits' excess scatter about their parity's
    mean."""
    secondary_depth: float
    secondary_sigma: float
    ellipsoidal_amp: float
    ellipsoidal_sigma: float
    single_night_fraction: float
    """The share of the depth's chi-square that the best single transit brings."""
    anti_transit_ratio: float
    """Chi-square gain of the best dip over that of the best bump of the same duration at
    this period."""


def _red_noise(t: np.ndarray, r: np.ndarray, w: np.ndarray, duration: float
               ) -> tuple[float, int]:
    """beta for windows of ``duration`` (the Pont et al. 2006 measure of correlated noise)
    and the number of windows it was measured on (0: too few, beta is 1)."""
    key = np.floor(t / duration).astype(np.int64)
    _, inv, n = np.unique(key, return_inverse=True, return_counts=True)
    ws = np.bincount(inv, w)
    mean = np.bincount(inv, w * r) / ws
    full = n >= 3
    windows = int(np.count_nonzero(full))
    if windows < 5:
        return 1.0, 0
    chi2 = float(np.sum(ws[full] * mean[full] ** 2)) / windows
    return max(1.0, float(np.sqrt(chi2))), windows


def _depth_scatter(r: np.ndarray, w: np.ndarray, n_tr: np.ndarray) -> float:
    """How much more the single transits' depths scatter about the mean of their parity
    (odd or even) than their white errors allow: the root of the reduced chi-square, at
    least 1 (1 with fewer than three transits of at least 3 points).

    ``r`` are the residual fluxes in transit (out-of-transit mean subtracted), ``w`` their
    weights and ``n_tr`` their transit numbers. Each night's photometry carries its own
    error beyond the noise of its points, which the out-of-transit windows of
    :func:`_red_noise` do not see at full depth; within one parity an eclipsing binary's
    eclipses agree, so the scatter does not hide one."""
    tr, inv, count = np.unique(n_tr, return_inverse=True, return_counts=True)
    wk = np.bincount(inv, w)
    depth = -np.bincount(inv, w * r) / wk
    keep = count >= 3
    tr, wk, depth = tr[keep], wk[keep], depth[keep]
    if len(tr) < 3:
        return 1.0
    parity = tr % 2
    mean = np.bincount(parity, wk * depth, 2) / np.maximum(np.bincount(parity, wk, 2), 1e-300)
    dof = len(tr) - len(np.unique(parity))
    chi2 = float(np.sum(wk * (depth - mean[parity]) ** 2)) / dof
    return max(1.0, float(np.sqrt(chi2)))


def _extreme_boxes(ph: np.ndarray, r: np.ndarray, w: np.ndarray, period: float,
                   duration: float) -> tuple[float, float]:
    """Chi-square gains of the best dip and the best bump of ``duration`` over all phases."""
    nbin = max(int(np.ceil(period / (duration / 4.0))), 8)
    b = np.minimum(((ph / period + 0.5) * nbin).astype(np.int64), nbin - 1)
    W = np.bincount(b, w, nbin)
    Y = np.bincount(b, w * r, nbin)
    m = 4
    cw = np.concatenate([[0.0], np.cumsum(np.concatenate([W, W[:m]]))])
    cy = np.concatenate([[0.0], np.cumsum(np.concatenate([Y, Y[:m]]))])
    win_w, win_y = cw[m:m + nbin] - cw[:nbin], cy[m:m + nbin] - cy[:nbin]
    wtot = float(W.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where((win_w > 0) & (win_w < wtot), win_y ** 2 * wtot
                        / (win_w * (wtot - win_w)), 0.0)
    dip = float(np.max(np.where(win_y < 0, gain, 0.0)))
    bump = float(np.max(np.where(win_y > 0, gain, 0.0)))
    return dip, bump


def measure_transit(t: np.ndarray, flux: np.ndarray, err: np.ndarray, period: float,
                    epoch: float, duration: float) -> TransitMeasure:
    """Measure a box of ``duration`` (days) every ``period`` (days) from ``epoch`` (same
    time scale as ``t``) on relative fluxes ``flux`` with errors ``err``."""
    # the epoch nearest the middle of the data keeps it and the period least correlated
    mid = float(np.median(t))
    epoch = epoch + np.round((mid - epoch) / period) * period
    w = 1.0 / err ** 2
    ph = phase_days(t, period, epoch)
    inside = np.abs(ph) < 0.5 * duration
    r = flux - _mean(flux, w, ~inside)[0]
    # errors scaled by the scatter out of transit (calibrated errors can be optimistic)
    nout = int(np.count_nonzero(~inside))
    chi2 = float(np.sum(w[~inside] * r[~inside] ** 2)) / max(nout - 1, 1)
    w = w / max(chi2, 1.0)
    beta, windows = _red_noise(t[~inside], r[~inside], w[~inside], duration)
    depth, depth_err = box_depth(flux, w, inside)
    depth_err *= beta
    n_tr = np.round((t - epoch) / period).astype(np.int64)
    tr, per_tr = np.unique(n_tr[inside], return_counts=True)
    # each transit's share of the chi-square the box gains
    gains = np.bincount(np.searchsorted(tr, n_tr[inside]), w[inside] * (-r[inside]), len(tr))
    share = gains.clip(min=0) ** 2 / np.bincount(np.searchsorted(tr, n_tr[inside]),
                                                 w[inside], len(tr))
    single = float(share.max() / share.sum()) if len(tr) and share.sum() > 0 else 1.0
    # odd and even on the middle 80 % of the box, where a transit is flat: a transit seen
    # only at its ingress or egress would otherwise look shallower
    core = np.abs(ph) < 0.4 * duration
    odd = core & (n_tr % 2 == 1)
    d_odd, e_odd = box_depth(flux[odd | ~inside], w[odd | ~inside], odd[odd | ~inside])
    even = core & (n_tr % 2 == 0)
    d_even, e_even = box_depth(flux[even | ~inside], w[even | ~inside], even[even | ~inside])
    scatter = _depth_scatter(r[core], w[core], n_tr[core])
    odd_even = abs(d_odd - d_even) / (max(beta, scatter) * np.hypot(e_odd, e_even))
    sec = np.abs(phase_days(t, period, epoch + 0.5 * period)) < 0.5 * duration
    sec_depth, sec_err = box_depth(flux[~inside], w[~inside], sec[~inside])
    sec_err *= beta
    # ellipsoidal: flux minima at phases 0 and 0.5, so a -cos(4 pi phase) term
    out = ~inside
    x = np.cos(4.0 * np.pi * ph[out] / period)
    a = np.column_stack([np.ones(np.count_nonzero(out)), x]) * np.sqrt(w[out])[:, None]
    if np.count_nonzero(out) > 3:
        coef, *_ = np.linalg.lstsq(a, r[out] * np.sqrt(w[out]), rcond=None)
        cov = np.linalg.pinv(a.T @ a)
        ell, ell_err = -float(coef[1]), float(np.sqrt(cov[1, 1])) * beta
    else:
        ell, ell_err = 0.0, float("inf")
    dip, bump = _extreme_boxes(ph, r, w, period, duration)
    snr = depth / depth_err if depth_err > 0 else 0.0
    return TransitMeasure(
        period=period, epoch=float(epoch), duration=duration, depth=depth,
        depth_err=depth_err, snr=snr, red_noise=beta,
        snr_err=float(np.hypot(1.0, snr / np.sqrt(2 * windows))) if windows else 1.0,
        ntransits=int(np.count_nonzero(per_tr >= 3)),
        in_transit_fraction=float(np.count_nonzero(inside)) / max(len(t), 1),
        odd_even_sigma=float(np.nan_to_num(odd_even, nan=0.0)),
        secondary_depth=float(np.nan_to_num(sec_depth)),
        secondary_sigma=float(np.nan_to_num(sec_depth / sec_err)) if sec_err > 0 else 0.0,
        ellipsoidal_amp=ell, ellipsoidal_sigma=ell / ell_err if ell_err > 0 else 0.0,
        single_night_fraction=single,
        anti_transit_ratio=dip / bump if bump > 0 else float("inf"))
