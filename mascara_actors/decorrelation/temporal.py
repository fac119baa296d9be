"""The temporal step of one sky patch: star magnitudes, clouds and their extra variances,
given the camera maps.

With ``r = mag - T - ipx`` of the patch's points, magnitudes ``m`` (per star) and clouds
``c`` (per exposure of the patch: a cloud cell) are weighted means that alternate, with the
extra variances of stars and cells (:mod:`.extra_variance`) every other alternation. The
clear sky has no clouds: the clear level of the patch's well-measured cells
(:func:`~mascara_actors.decorrelation.clear_sky.clear_level`) is moved from the clouds into
the magnitudes.

When the calibration is applied, each point is corrected with the cloud of its cell
computed without that star (:func:`leave_one_out_clouds`), so a star never removes its own
transit through the clouds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mascara_actors.decorrelation.clear_sky import clear_level
from mascara_actors.decorrelation.extra_variance import extra_variance
from mascara_actors.decorrelation.patch import PatchPoints

__all__ = ["PatchState", "TemporalFit", "leave_one_out_clouds", "solve_temporal"]


@dataclass
class PatchState:
    """What the temporal step fitted for a patch, kept by its worker between iterations."""

    m: np.ndarray
    """Star magnitudes (with T = 0 at the patch's first fit), mag."""
    s2s: np.ndarray
    """Extra variance per star, mag^2."""
    c: np.ndarray
    """Clouds per cell, mag."""
    s2t: np.ndarray
    """Extra variance per cell, mag^2."""

    @classmethod
    def start(cls, p: PatchPoints, r: np.ndarray) -> PatchState:
        """First guess: error-weighted mean magnitudes, no clouds, no extra variance."""
        w0 = 1.0 / p.emag**2
        m0 = np.bincount(p.star, w0 * r, minlength=p.nstars) / np.bincount(
            p.star, w0, minlength=p.nstars)
        return cls(m0, np.zeros(p.nstars), np.zeros(p.ncells), np.zeros(p.ncells))


@dataclass(frozen=True)
class TemporalFit:
    """The weights of the points after a temporal step, and the cells it could measure."""

    w: np.ndarray
    """Weight of each point, ``1 / (emag^2 + sigma_star^2 + sigma_cell^2)``."""
    valid: np.ndarray
    """Cells with at least ``min_cloud_stars`` stars."""
    nstar_t: np.ndarray
    """Stars measured in each cell."""


def solve_temporal(p: PatchPoints, r: np.ndarray, state: PatchState, n_inner: int, *,
                   min_cloud_stars: int, sigma_max: float) -> TemporalFit:
    """Update ``state`` (magnitudes, clouds, extra variances) from ``r = mag - T - ipx``."""
    e2 = p.emag**2
    s, t = p.star, p.t
    ns, nt = p.nstars, p.ncells
    m, c, s2s, s2t = state.m, state.c, state.s2s, state.s2t
    nstar_t = np.bincount(t, minlength=nt)
    for it in range(n_inner):
        w = 1.0 / (e2 + s2s[s] + s2t[t])
        ws = np.bincount(s, w, minlength=ns)
        m = np.bincount(s, w * (r - c[t]), minlength=ns) / ws
        wt = np.bincount(t, w, minlength=nt)
        c = np.bincount(t, w * (r - m[s]), minlength=nt) / wt
        if it == n_inner - 1 or (n_inner > 4 and it % 2 == 1):
            res = r - m[s] - c[t]
            lev = w / ws[s] + w / wt[t]
            s2s = extra_variance(res, e2 + s2t[t], s, ns, start=s2s, leverage=lev,
                                 smax=sigma_max, steps=2)
            s2t = extra_variance(res, e2 + s2s[s], t, nt, start=s2t, leverage=lev,
                                 smax=sigma_max, steps=2)
    # the clear sky has no clouds: the clear level of the patch's well-measured cells
    valid = nstar_t >= min_cloud_stars
    if np.any(valid):
        shift = clear_level(np.sort(c[valid]))
        c = c - shift
        m = m + shift
    state.m, state.c, state.s2s, state.s2t = m, c, s2s, s2t
    return TemporalFit(1.0 / (e2 + s2s[s] + s2t[t]), valid, nstar_t)


def leave_one_out_clouds(p: PatchPoints, r: np.ndarray, state: PatchState, fit: TemporalFit,
                         min_cloud_stars: int) -> tuple[np.ndarray, np.ndarray]:
    """The cloud of each point's cell without that star, and where it could be measured
    (at least ``min_cloud_stars`` stars in the cell, another one with weight); NaN elsewhere.
    """
    w, t = fit.w, p.t
    base = r - state.m[p.star]
    num = np.bincount(t, w * base, minlength=p.ncells)
    den = np.bincount(t, w, minlength=p.ncells)
    rest = den[t] - w
    ok: np.ndarray = (fit.nstar_t[t] >= min_cloud_stars) & (rest > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        c_loo: np.ndarray = np.where(ok, (num[t] - w * base) / rest, np.nan)
    return c_loo, ok
