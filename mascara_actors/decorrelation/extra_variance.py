"""Extra variances per group (star or cloud cell), vectorised over all groups at once.

The legacy ``find_par_sigma`` looks, for each group, for the extra sigma in [0, 2] mag with
``sum w^2 (r - par)^2 - sum w = 0`` (``w = 1 / (err^2 + sigma^2)``) by 10 bisection steps:
a resolution of 2 mmag, and no account of the degrees of freedom the fitted means use, so
the extra variance of a cloud cell with a handful of stars comes out too small.

Here the equation is ``F(s) = sum w^2 r^2 - sum w (1 - h) = 0`` with ``s = sigma^2`` and
``h`` the leverage of each point on the means it entered (``w / W_star + w / W_cell``), and
it is solved by the fixed-point step ``s <- s + F(s) / sum (1 - h) w^2``: exact in one step
when the errors of a group are equal, and converging from a warm start in two or three
steps otherwise (a Newton step with the curvature of the equal-error case).
"""

from __future__ import annotations

import numpy as np

__all__ = ["extra_variance"]


def extra_variance(
    resid: np.ndarray,
    var: np.ndarray,
    group: np.ndarray,
    ngroup: int,
    *,
    start: np.ndarray | None = None,
    leverage: np.ndarray | None = None,
    smax: float = 2.0,
    steps: int = 3,
) -> np.ndarray:
    """Extra variance ``sigma^2`` (mag^2) of each group, so that its points have unit
    reduced chi-square.

    Parameters
    ----------
    resid
        Residuals of the points, mag.
    var
        Their known variance (error squared plus the other extra variances), mag^2.
    group
        Group index of each point, in ``[0, ngroup)``.
    start
        Warm start, per group (default 0).
    leverage
        Leverage of each point on the fitted means (default 0).
    smax
        Largest extra sigma, mag.
    steps
        Fixed-point steps.

    Returns
    -------
    numpy.ndarray
        ``sigma^2`` per group, in ``[0, smax^2]``; 0 for a group without points.
    """
    r2 = np.asarray(resid, np.float64) ** 2
    var = np.asarray(var, np.float64)
    b = 1.0 if leverage is None else np.clip(1.0 - leverage, 0.05, 1.0)
    s = np.zeros(ngroup) if start is None else np.clip(np.asarray(start, float), 0, smax**2)
    for _ in range(steps):
        w = 1.0 / (var + s[group])
        w2 = w * w
        num = np.bincount(group, w2 * r2, minlength=ngroup) - np.bincount(
            group, w * b, minlength=ngroup)
        den = np.bincount(group, w2 * b, minlength=ngroup)
        with np.errstate(invalid="ignore", divide="ignore"):
            step = np.where(den > 0, num / den, 0.0)
        s = np.clip(s + step, 0.0, smax**2)
    return s
