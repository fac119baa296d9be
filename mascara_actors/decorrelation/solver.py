"""The coarse decorrelation of a baseline: camera transmission, intrapixel and clouds.

Model (legacy-pipeline.md section 10.4, after Collier Cameron et al. 2006), for star ``s``
on exposure ``t`` (``lstseq``), with ``mag = 25 - 2.5 log10(flux / exptime)``::

    mag = m_s + T(HA, dec) + sum_i a_i(HA, dec) b_i(x, y) + c(patch_s, t)

``T`` is the camera transmission (vignetting, clear-sky extinction and the zero point),
``b = [sin 2 pi x, cos 2 pi x, sin 2 pi y, cos 2 pi y]`` the pixel phase with amplitudes
``a`` (intrapixel), ``c`` the clouds of the star's HEALPix nside-8 patch on that exposure.
Each point has the weight ``1 / (emag^2 + sigma_s^2 + sigma_t^2)``, with an extra variance
per star (variability, scintillation) and per cloud cell (patchy clouds).

The solver alternates, as the legacy one, a *temporal* step per sky patch (magnitudes, clouds
and their extra variances, given the maps) and a *spatial* step (the maps, given the rest),
for up to ``max_iter`` outer iterations, until the maps change by less than ``tol`` (RMS,
data-weighted). Where the legacy code is weak, this one does otherwise:

- **The spatial step is one joint least-squares solution** of T, the intrapixel amplitudes
  and the star magnitudes (sparse normal equations, factorised once and reused as the
  preconditioner of conjugate gradients while the weights change little). The legacy code
  alternates T and the amplitudes per declination ring, up to 100 times per outer
  iteration: a star that crosses only part of the field ties the nodes it crossed together,
  and a pixel phase that changes slowly along a track looks like T to that star, so
  alternation converges slowly or stops early at a biased split.
- **Intrapixel amplitudes are smooth across cells** (a weak first-difference penalty): the
  response follows the PSF, which changes smoothly over the chip; where the sampled pixel
  phases of one region leave a combination of amplitudes undetermined (legacy: noise), the
  neighbours decide.

- **T on bilinear nodes** (1 deg x 1 deg by default, smoothness-regularised) instead of the
  legacy 13,500 x 720 cells of 0.027 deg x 0.25 deg: each legacy cell is fed by the few stars
  of one 0.25 deg declination ring, so it is noisy and it absorbs part of those stars'
  own signal (a transit of the only star of a ring goes into T); a node here is fed by every
  star within a degree, and the map is continuous.
- **Magnitudes are fitted**, not fixed to the catalogue V (the legacy ``vmag`` variant), so
  catalogue errors and colour terms do not become stripes in T. What the data cannot tell
  apart is fixed explicitly, and said so (every star keeps its declination, so T + g(dec)
  with m_s - g(dec_s) fits equally well; every cloud cell's level trades with its stars):
  the clouds are zero for the clear sky (the median cloud of every patch, and of every
  patch's hour-angle range over the nights, is zero), and the declination profile of T is
  the smoothest one for which the fitted magnitudes agree with the catalogue on average.
  The legacy solver leaves these choices to its starting point, so its T carries the mean
  extinction of the cloudy nights.
- **Extra variances** by a fixed-point solution with the leverage of the fitted means
  (:mod:`.extra_variance`) instead of 10 bisection steps (2 mmag resolution, biased low for
  cells of a few stars).
- **The clear sky has no clouds, robustly**: the clear level of a patch (and of each of its
  HA ranges) is the median of the densest half of its cloud values (clouds only dim), not
  the mean or median, which the cloudy nights pull; points under clouds thicker than
  ``max_cloud_for_maps`` are calibrated but do not enter the maps; stars saturated on most
  points (their good points are the cloudy ones) are left out.
- **Leave-one-out clouds** when the calibration is applied: each point is corrected with the
  cloud of its cell computed without that star, so a star never removes its own transit
  through the clouds; cells with too few other stars are not used and flagged. The bins are
  plain means of the points (weights fitted from the same residuals would bias them).
- Points are dropped for stated reasons (flags, NaN, non-positive flux or error, S/N below
  10) and counted; stars with too few good points are left out and listed; outliers beyond
  ``clip`` sigma do not enter the maps. Everything dropped is reported.
- Memory stays bounded: the good points of each sky patch are kept in scratch files (numpy
  ``.npz`` archives, never pickles), one patch is in memory at a time per worker, and the maps are
  solved from accumulated normal equations. Two worker processes (one per core by default)
  each own half of the patches; the patches of one HEALPix ring stay in one worker, so the
  clouds never cross processes.

A calibration that does not converge raises :class:`NotConverged` after writing only a
report: the raw light curves are never touched, and no calibrated file is written.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mascara_actors.decorrelation.extra_variance import extra_variance
from mascara_actors.decorrelation.grids import (
    IntrapixelGrid,
    TransmissionGrid,
    patch_centres,
    patch_of,
    wrap_ha,
)
from mascara_actors.errors import MascaraError, StorageError
from mascara_actors.sidereal import (
    REFERENCE_LONGITUDE_DEG,
    SET_SIZE,
    SLOT_SIDEREAL_S,
    SLOTS_PER_SIDEREAL_DAY,
)
from mascara_actors.storage.baseline import BaselineFile

__all__ = [
    "BIN_DTYPE",
    "CFLAG_BITS",
    "CalibrationResult",
    "DecorrelationError",
    "DecorrelationSettings",
    "NotConverged",
    "calibrate_baseline",
]

log = logging.getLogger(__name__)

CATALOGUE_SIGMA = 0.05
"""Uncertainty given to the catalogue V of a star, mag. It only decides what the data cannot
(the declination profile of T against the star magnitudes): the data weigh far more."""
SATURATED = 8
"""The photometry's saturation bit (pflag)."""
MAG_ZERO_POINT = 25.0
"""``mag = 25 - 2.5 log10(flux / exptime)``, as the legacy code."""
_MAG = 2.5 / np.log(10.0)

BIN_DTYPE = np.dtype([
    ("setidx", "u8"), ("jd", "f8"), ("lst", "f8"), ("mag", "f4"), ("emag", "f4"),
    ("nobs", "u2"), ("cflag", "u1"), ("trans", "f4"), ("clouds", "f4"), ("x", "f4"),
    ("y", "f4"),
])
"""One calibrated point per star and set of 50: set index (``lstseq // 50``), mean JD (UTC,
mid-exposure) and mean LST (hours, start of exposure; 24 h wrap handled) of its points,
calibrated magnitude (mean of the points), its error (from the points' variances, extra
variances included; mag), number of good points, flags, and the mean transmission +
intrapixel and clouds removed (mag), mean x, y (pixels)."""

CFLAG_BITS = {
    1: ("few_points", "fewer good points than half a set (25 of 50)"),
    2: ("cloudy", "mean clouds above 0.25 mag, or a cloud-cell extra sigma above 0.05 mag"),
    4: ("few_cloud_stars", "some points were left out: their cloud cell had too few other "
                           "stars to measure the clouds without them"),
}
"""Bits of ``cflag`` in the calibrated light curves."""


class DecorrelationError(MascaraError):
    """The baseline cannot be calibrated (one night, no usable data...)."""


class NotConverged(DecorrelationError):
    """The solver did not converge; nothing but the report was written."""


@dataclass(frozen=True)
class DecorrelationSettings:
    """Settings of :func:`calibrate_baseline` (units: mag, degrees)."""

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
    workers: int | None = None
    """Worker processes (default: 2, or 1 on a single-core machine)."""


@dataclass
class CalibrationResult:
    """What :func:`calibrate_baseline` did and wrote."""

    baseline: Path
    outdir: Path
    converged: bool
    iterations: int
    history: list[dict[str, float]]
    dropped: dict[str, int]
    dropped_stars: dict[str, list[int]]
    nstars: int
    npoints: int
    calibrated_file: Path | None = None
    maps_file: Path | None = None
    plots: list[Path] = field(default_factory=list)
    report_file: Path | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        """A few lines for the terminal: what was fitted and what was dropped."""
        lines = [f"{self.nstars} stars, {self.npoints} points, "
                 f"{'converged' if self.converged else 'NOT converged'} after "
                 f"{self.iterations} iterations ({self.seconds:.0f} s)"]
        for reason, n in self.dropped.items():
            if n:
                lines.append(f"dropped {n} {reason}")
        return "\n".join(lines)


# =============================================================================================
# worker side: the patches of one process


def clear_level(values: np.ndarray) -> float:
    """The level of the clear sky among sorted cloud values (mag): the median of the
    shortest interval holding half of them.

    Clouds only dim, so the cloudy cells form a tail on the faint side; as long as
    at least half of the cells are clear, the densest half is the clear sky and its median
    is not pulled by the clouds (the plain median is, by a good fraction of the clear
    scatter when a third of the nights are cloudy).
    """
    n = len(values)
    if n == 0:
        return 0.0
    h = n // 2 + 1
    if n < 4:
        return float(np.median(values))
    widths = values[h - 1:] - values[:n - h + 1]
    i = int(np.argmin(widths))
    return float(np.median(values[i:i + h]))


def _mag(flux: np.ndarray, eflux: np.ndarray, exptime: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = MAG_ZERO_POINT - 2.5 * np.log10(flux / exptime)
        emag = _MAG * eflux / flux
    return mag, emag


def _circular_mean_hours(lst: np.ndarray, weights: np.ndarray, bounds: np.ndarray
                         ) -> np.ndarray:
    """Mean LST per group, hours, wrap at 24 h handled (mean of the unit vectors)."""
    ang = np.asarray(lst, float) * (2 * np.pi / 24.0)
    s = np.add.reduceat(weights * np.sin(ang), bounds)
    c = np.add.reduceat(weights * np.cos(ang), bounds)
    return (np.arctan2(s, c) * (24.0 / (2 * np.pi))) % 24.0


@dataclass
class _Patch:
    """One patch's data loaded from scratch."""

    ids: np.ndarray
    dec: np.ndarray
    vmag: np.ndarray
    ra0: float
    star: np.ndarray
    t: np.ndarray
    lstseq: np.ndarray
    mag: np.ndarray
    emag: np.ndarray
    ha: np.ndarray
    x: np.ndarray
    y: np.ndarray
    # geometry, filled by PatchWorker._load
    fu: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    k0: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    k1: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    fv: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    row: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    j_lo: int = 0
    nrow: int = 0
    cell: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    c_lo: int = 0
    ncrow: int = 0
    basis: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    offsets: tuple = ()


@dataclass
class _State:
    m: np.ndarray
    s2s: np.ndarray
    c: np.ndarray
    s2t: np.ndarray


class PatchWorker:
    """The patches of one worker: their scratch files, states and per-iteration work."""

    FIELDS = ("lstseq", "x", "y", "pflag", "aflag")

    def __init__(self, *, scratch: str, grid: dict, ipx_grid: dict,
                 settings: dict, station_lstseq: np.ndarray, station_jdmid: np.ndarray,
                 station_lst: np.ndarray, station_exptime: np.ndarray, lon_offset: float
                 ) -> None:
        self.scratch = Path(scratch)
        self.grid = TransmissionGrid(**{k: grid[k] for k in ("ha_step", "dec_step", "dec0",
                                                             "ndec")})
        self.ipx_grid = IntrapixelGrid(**{k: ipx_grid[k] for k in ("ha_step", "dec_step",
                                                                   "dec0", "ndec")})
        self.ratios = (round(self.ipx_grid.ha_step / self.grid.ha_step),
                       round(self.ipx_grid.dec_step / self.grid.dec_step))
        self.settings = DecorrelationSettings(**settings)
        self.station_lstseq = np.asarray(station_lstseq, np.int64)
        self.station_jdmid = np.asarray(station_jdmid, float)
        self.station_lst = np.asarray(station_lst, float)
        self.station_exptime = np.asarray(station_exptime, float)
        self.lon_offset = float(lon_offset)
        self.patches: list[int] = []
        self.states: dict[int, _State] = {}

    # -- ingest -------------------------------------------------------------------------

    def ingest(self, *, baseline: str, assignments: list[dict],
               tick: Callable[[], None] | None = None) -> dict:
        """Read the stars of the assigned patches, keep their good points in scratch."""
        st = self.settings
        a = st.aperture
        dropped = {"flagged points": 0, "points with NaN or infinite flux": 0,
                   "points with flux or error <= 0": 0, "points below S/N 10": 0,
                   "points of stars with too few good points": 0}
        few: list[int] = []
        flagged_stars: list[int] = []
        kept_patches = []
        nkept = 0
        with BaselineFile(baseline) as bf:
            stored = bf.lightcurve_dtype().names or ()
            fields = [*self.FIELDS, f"flux{a}", f"eflux{a}"]
            if "exptime" in stored:
                fields.append("exptime")
            for item in assignments:
                q = int(item["patch"])
                ids = np.asarray(item["ids"], np.int64)
                data, counts = bf.read(ids, fields)
                star = np.repeat(np.arange(len(ids)), counts)
                if "exptime" in fields:
                    exptime = data["exptime"].astype(float)
                else:
                    pos = np.searchsorted(self.station_lstseq, data["lstseq"].astype(np.int64))
                    exptime = self.station_exptime[np.clip(pos, 0, len(self.station_exptime)
                                                           - 1)]
                flux = data[f"flux{a}"].astype(float)
                eflux = data[f"eflux{a}"].astype(float)
                flagged = (data["pflag"] != 0) | (data["aflag"] != 0)
                finite = np.isfinite(flux) & np.isfinite(eflux) & np.isfinite(exptime)
                positive = (flux > 0) & (eflux > 0) & (exptime > 0)
                mag, emag = _mag(np.where(positive, flux, 1.0), np.where(positive, eflux, 1.0),
                                 np.where(positive, exptime, 1.0))
                snr_ok = emag <= st.max_emag
                dropped["flagged points"] += int(np.count_nonzero(flagged))
                dropped["points with NaN or infinite flux"] += int(
                    np.count_nonzero(~flagged & ~finite))
                dropped["points with flux or error <= 0"] += int(
                    np.count_nonzero(~flagged & finite & ~positive))
                dropped["points below S/N 10"] += int(
                    np.count_nonzero(~flagged & finite & positive & ~snr_ok))
                good = ~flagged & finite & positive & snr_ok
                ngood = np.bincount(star[good], minlength=len(ids))
                # saturated alone: in bright twilight every star is flagged saturated as well
                nsat = np.bincount(star[data["pflag"] == SATURATED], minlength=len(ids))
                # a star saturated on most points (on clear nights) keeps only its cloudy
                # points: its magnitude would be the clouds'
                mostly = nsat > st.max_saturated_fraction * np.maximum(counts, 1)
                ok_star = (ngood >= st.min_points) & ~mostly
                few.extend(ids[(ngood < st.min_points) & ~mostly].tolist())
                flagged_stars.extend(ids[mostly].tolist())
                dropped["points of stars with too few good points"] += int(
                    ngood[~ok_star].sum())
                good &= ok_star[star]
                if not np.any(good):
                    if tick:
                        tick()
                    continue
                # renumber the kept stars
                new_index = np.cumsum(ok_star) - 1
                star = new_index[star[good]].astype(np.int32)
                lstseq = data["lstseq"][good].astype(np.int64)
                t_lstseq, t = np.unique(lstseq, return_inverse=True)
                dec = np.asarray(item["dec"], float)[ok_star]
                ra = np.asarray(item["ra"], float)[ok_star]
                lstidx = t_lstseq % SLOTS_PER_SIDEREAL_DAY
                lst_mid = (lstidx + 0.5) * SLOT_SIDEREAL_S / 3600.0
                ha = wrap_ha(15.0 * lst_mid[t] + self.lon_offset - ra[star])
                arrays = {
                    "ids": ids[ok_star], "dec": dec,
                    "vmag": np.asarray(item["vmag"], float)[ok_star],
                    "ra0": np.array([float(item["ra0"])]),
                    "star": star, "t": t.astype(np.int32), "lstseq": t_lstseq,
                    "mag": mag[good].astype(np.float32), "emag": emag[good].astype(np.float32),
                    "ha": ha.astype(np.float32), "x": data["x"][good].astype(np.float32),
                    "y": data["y"][good].astype(np.float32),
                }
                np.savez(self.scratch / f"patch_{q:04d}.npz", **arrays)
                kept_patches.append(q)
                nkept += int(good.sum())
                if tick:
                    tick()
        self.patches = kept_patches
        return {"dropped": dropped, "few_points": few, "mostly_flagged": flagged_stars,
                "npoints": nkept, "patches": kept_patches}

    def _load(self, q: int) -> _Patch:
        with np.load(self.scratch / f"patch_{q:04d}.npz") as z:
            d = {k: z[k] for k in z.files}
        p = _Patch(ids=d["ids"], dec=d["dec"], vmag=d["vmag"], ra0=float(d["ra0"][0]),
                   star=d["star"], t=d["t"], lstseq=d["lstseq"],
                   mag=d["mag"].astype(float), emag=d["emag"].astype(float),
                   ha=d["ha"].astype(float), x=d["x"], y=d["y"])
        g, gi = self.grid, self.ipx_grid
        # geometry: the stored HA is already in [-180, 180); each star keeps its dec
        u = (p.ha + 180.0) / g.ha_step
        k0 = np.floor(u).astype(np.int64)
        p.fu = u - k0
        p.k0 = k0 % g.nha
        p.k1 = (k0 + 1) % g.nha
        js, fvs = g.dec_weights(p.dec)
        p.j_lo = int(js.min())
        p.nrow = int(js.max()) - p.j_lo + 2
        p.row = (js - p.j_lo)[p.star]
        p.fv = fvs[p.star]
        # intrapixel cells span r_ha x r_dec node intervals; the four nodes of a point sit
        # at one of (r_ha + 1) x (r_dec + 1) offsets from its cell's first node
        r_ha, r_dec = self.ratios
        ri = js // r_dec
        p.c_lo = int(ri.min())
        p.ncrow = int(ri.max()) - p.c_lo + 1
        kc = p.k0 // r_ha
        p.cell = (ri - p.c_lo)[p.star] * gi.nha + kc
        ok0 = p.k0 - kc * r_ha
        oj0 = (js - ri * r_dec)[p.star]
        width = r_ha + 1
        p.offsets = (ok0 + width * oj0, ok0 + 1 + width * oj0, ok0 + width * (oj0 + 1),
                     ok0 + 1 + width * (oj0 + 1))
        # the pixel phase in float32 is exact enough (x < 2**12) and twice as fast
        px = p.x - np.floor(p.x)
        py = p.y - np.floor(p.y)
        two_pi = np.float32(2 * np.pi)
        p.basis = np.stack([np.sin(two_pi * px), np.cos(two_pi * px), np.sin(two_pi * py),
                            np.cos(two_pi * py)]).astype(np.float64)
        return p

    def _spatial(self, p: _Patch, T: np.ndarray, ipx: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
        """T and the intrapixel term at the points, with the local node indices/weights."""
        nha = self.grid.nha
        tl = T[p.j_lo * nha:(p.j_lo + p.nrow) * nha]
        base = p.row * nha
        n00, n10 = base + p.k0, base + p.k1
        n01, n11 = n00 + nha, n10 + nha
        gu, gv = 1.0 - p.fu, 1.0 - p.fv
        b00, b10, b01, b11 = gu * gv, p.fu * gv, gu * p.fv, p.fu * p.fv
        t_pt = tl[n00] * b00 + tl[n10] * b10 + tl[n01] * b01 + tl[n11] * b11
        nci = self.ipx_grid.nha
        amp = ipx[p.c_lo * nci:(p.c_lo + p.ncrow) * nci][p.cell]
        i_pt = np.einsum("in,ni->n", p.basis, amp)
        return t_pt, i_pt, (n00, n10, n01, n11), (b00, b10, b01, b11)

    def _temporal(self, p: _Patch, r: np.ndarray, state: _State, n_inner: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Magnitudes, clouds and extra variances of one patch given r = mag - T - ipx."""
        st = self.settings
        ns, nt = len(p.ids), len(p.lstseq)
        e2 = p.emag**2
        s, t = p.star, p.t
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
                                     smax=st.sigma_max, steps=2)
                s2t = extra_variance(res, e2 + s2s[s], t, nt, start=s2t, leverage=lev,
                                     smax=st.sigma_max, steps=2)
        # the clear sky has no clouds: the clear level of the patch's well-measured cells
        valid = nstar_t >= st.min_cloud_stars
        if np.any(valid):
            shift = clear_level(np.sort(c[valid]))
            c = c - shift
            m = m + shift
        state.m, state.c, state.s2s, state.s2t = m, c, s2s, s2t
        w = 1.0 / (e2 + s2s[s] + s2t[t])
        return w, valid, nstar_t

    def _cloud_medians(self, p: _Patch, c: np.ndarray, valid: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Clear level of the clouds per HA bin of the patch centre (the clear-sky
        condition), with the number of cells."""
        step = self.settings.gauge_ha_step
        lst_mid = ((p.lstseq % SLOTS_PER_SIDEREAL_DAY) + 0.5) * SLOT_SIDEREAL_S / 3600.0
        ha_q = wrap_ha(15.0 * lst_mid + self.lon_offset - p.ra0)
        b = np.floor((ha_q + 180.0) / step).astype(np.int64)
        b, cv = b[valid], c[valid]
        if len(b) == 0:
            return np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64)
        order = np.lexsort((cv, b))
        b, cv = b[order], cv[order]
        bins, start, count = np.unique(b, return_index=True, return_counts=True)
        level = np.array([clear_level(cv[a:a + n]) for a, n in
                          zip(start.tolist(), count.tolist(), strict=True)])
        return bins, level, count

    # -- one outer iteration ---------------------------------------------------------------

    def iterate(self, *, T: np.ndarray, ipx: np.ndarray, m: np.ndarray | None,
                first: bool, tick: Callable[[], None] | None = None) -> dict:
        """Temporal step of every patch given the maps, then the normal equations of the
        spatial step (T, intrapixel amplitudes and star magnitudes, solved jointly) given
        the clouds and the weights.

        ``m`` are the magnitudes of the last spatial solution (this worker's stars in patch
        order), a warm start for the temporal step.
        """
        st = self.settings
        g, gi = self.grid, self.ipx_grid
        nn, nc, nha, ncha = g.size, gi.size, g.nha, gi.nha
        noff = (self.ratios[0] + 1) * (self.ratios[1] + 1)
        acc_t = np.zeros((5, nn))
        rhs_t = np.zeros(nn)
        acc_i = np.zeros((10, nc))
        rhs_i = np.zeros((4, nc))
        acc_ti = np.zeros((nc, noff, 4))
        gauge, stars, t_prof, i_prof = [], [], [], []
        star_base = 0
        chi2 = 0.0
        nused = nclip = nfew = nthick = 0
        for q in self.patches:
            p = self._load(q)
            t_pt, i_pt, idx, wts = self._spatial(p, T, ipx)
            r = p.mag - t_pt - i_pt
            state = self.states.get(q)
            n_inner = st.inner_iter
            ns, nt = len(p.ids), len(p.lstseq)
            if state is None or first:
                w0 = 1.0 / p.emag**2
                m0 = np.bincount(p.star, w0 * r, minlength=ns) / np.bincount(
                    p.star, w0, minlength=ns)
                state = _State(m0, np.zeros(ns), np.zeros(nt), np.zeros(nt))
                n_inner = max(8, st.inner_iter)
            elif m is not None:
                state.m = np.asarray(m[star_base:star_base + ns], float).copy()
            w, valid, _nstar_t = self._temporal(p, r, state, n_inner)
            self.states[q] = state
            res = r - state.m[p.star] - state.c[p.t]
            thin = valid & (np.abs(state.c) <= st.max_cloud_for_maps)
            use = thin[p.t] & (res * res * w < st.clip**2)
            nclip += int(np.count_nonzero(thin[p.t] & ~use))
            nfew += int(np.count_nonzero(~valid[p.t]))
            nthick += int(np.count_nonzero(valid[p.t] & ~thin[p.t]))
            chi2 += float(np.sum((res * res * w)[use]))
            nused += int(np.count_nonzero(use))
            wu = np.where(use, w, 0.0)
            # spatial normal equations: y = mag - clouds = T + ipx + m (joint)
            y = p.mag - state.c[p.t]
            wy = wu * y
            # T-T: bilinear nodes, over this patch's rows only (5 kinds of pairs)
            n00, n10, n01, n11 = idx
            b00, b10, b01, b11 = wts
            nl, lo = p.nrow * nha, p.j_lo * nha
            loc = np.zeros((5, nl))
            loc_rhs = np.zeros(nl)
            for n_, b_ in ((n00, b00), (n10, b10), (n01, b01), (n11, b11)):
                loc[0] += np.bincount(n_, wu * b_ * b_, minlength=nl)
                loc_rhs += np.bincount(n_, wy * b_, minlength=nl)
            w00, w10 = wu * b00, wu * b10
            loc[1] += np.bincount(n00, w00 * b10, minlength=nl)  # east of n00
            loc[1] += np.bincount(n01, wu * b01 * b11, minlength=nl)  # east of n01
            loc[2] += np.bincount(n00, w00 * b01, minlength=nl)  # north of n00
            loc[2] += np.bincount(n10, w10 * b11, minlength=nl)  # north of n10
            loc[3] += np.bincount(n00, w00 * b11, minlength=nl)  # north-east of n00
            loc[4] += np.bincount(n10, w10 * b01, minlength=nl)  # north-west of n10
            acc_t[:, lo:lo + nl] += loc
            rhs_t[lo:lo + nl] += loc_rhs
            # ipx-ipx: 4 x 4 per cell; T-ipx: per cell, node offset and basis function
            ncl, clo = p.ncrow * ncha, p.c_lo * ncha
            wb = wu * p.basis  # (4, n)
            k = 0
            for i in range(4):
                rhs_i[i, clo:clo + ncl] += np.bincount(p.cell, wb[i] * y, minlength=ncl)
                for j in range(i, 4):
                    acc_i[k, clo:clo + ncl] += np.bincount(p.cell, wb[i] * p.basis[j],
                                                           minlength=ncl)
                    k += 1
            key0 = (p.cell * noff)[None, :] * 4 + np.arange(4)[:, None]
            loc_ti = np.zeros(ncl * noff * 4)
            for off, b_ in zip(p.offsets, wts, strict=True):
                loc_ti += np.bincount((key0 + off * 4).ravel(), (wb * b_).ravel(),
                                      minlength=ncl * noff * 4)
            acc_ti[clo:clo + ncl] += loc_ti.reshape(ncl, noff, 4)
            # star-T and star-ipx couplings: the star's profile over node columns (its two
            # rows follow from its dec) and over its cells
            ws = np.bincount(p.star, wu, minlength=ns)
            zs = np.bincount(p.star, wy, minlength=ns)
            skey = p.star.astype(np.int64) * nha
            prof = np.bincount(skey + p.k0, wu * (1.0 - p.fu), minlength=ns * nha)
            prof += np.bincount(skey + p.k1, wu * p.fu, minlength=ns * nha)
            nz = np.flatnonzero(prof)
            t_prof.append((nz // nha + star_base, nz % nha, prof[nz]))
            ckey = p.star.astype(np.int64) * ncl + p.cell
            for i in range(4):
                pr = np.bincount(ckey, wb[i], minlength=ns * ncl)
                nz = np.flatnonzero(pr)
                i_prof.append((nz // ncl + star_base, nz % ncl + clo,
                               np.full(len(nz), i), pr[nz]))
            star_base += ns
            bins, med, cnt = self._cloud_medians(p, state.c, valid)
            gauge.append((q, bins, med, cnt))
            stars.append(np.stack([p.dec, p.vmag, state.m, state.s2s, ws, zs]))
            if tick:
                tick()
        return {"acc_t": acc_t, "rhs_t": rhs_t, "acc_i": acc_i, "rhs_i": rhs_i,
                "acc_ti": acc_ti,
                "stars": np.concatenate(stars, axis=1) if stars else np.empty((6, 0)),
                "t_prof": _concat_parts(t_prof, 3), "i_prof": _concat_parts(i_prof, 4),
                "gauge": gauge, "chi2": chi2, "nused": nused, "nclip": nclip,
                "nfew": nfew, "nthick": nthick}

    # -- the final pass --------------------------------------------------------------------

    def finish(self, *, T: np.ndarray, ipx: np.ndarray,
               tick: Callable[[], None] | None = None) -> dict:
        """Temporal solution with the final maps, then the calibrated points binned per set."""
        st = self.settings
        curves: list[tuple[int, np.ndarray]] = []
        clouds = []
        star_rows = []
        nfew = nclip = 0
        for q in self.patches:
            p = self._load(q)
            t_pt, i_pt, _, _ = self._spatial(p, T, ipx)
            r = p.mag - t_pt - i_pt
            state = self.states[q]
            w, _valid, nstar_t = self._temporal(p, r, state, max(4, st.inner_iter))
            s, t = p.star, p.t
            res = r - state.m[s] - state.c[t]
            # leave-one-out clouds: the cell's cloud without this star
            base = r - state.m[s]
            num = np.bincount(t, w * base, minlength=len(p.lstseq))
            den = np.bincount(t, w, minlength=len(p.lstseq))
            rest = den[t] - w
            ok_cloud = (nstar_t[t] >= st.min_cloud_stars) & (rest > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                c_loo = np.where(ok_cloud, (num[t] - w * base) / rest, np.nan)
            outlier = np.abs(res) * np.sqrt(w) >= st.clip
            use = ok_cloud & ~outlier
            nfew += int(np.count_nonzero(~ok_cloud))
            nclip += int(np.count_nonzero(ok_cloud & outlier))
            cal = r - c_loo
            curves.extend(self._bins(p, cal, w, use, ok_cloud, t_pt + i_pt, c_loo,
                                     state.s2t))
            clouds.append((q, p.lstseq, state.c.astype(np.float32),
                           np.sqrt(state.s2t).astype(np.float32),
                           nstar_t.astype(np.uint16)))
            npts = np.bincount(s, minlength=len(p.ids))
            star_rows.append(np.stack([p.ids.astype(float), state.m, np.sqrt(state.s2s),
                                       npts.astype(float), np.full(len(p.ids), float(q))]))
            if tick:
                tick()
        return {"curves": curves, "clouds": clouds,
                "stars": np.concatenate(star_rows, axis=1) if star_rows else np.empty((5, 0)),
                "nfew": nfew, "nclip": nclip}

    def _bins(self, p: _Patch, cal: np.ndarray, w: np.ndarray, use: np.ndarray,
              ok_cloud: np.ndarray, trans: np.ndarray, c_loo: np.ndarray,
              s2t: np.ndarray) -> list[tuple[int, np.ndarray]]:
        s = p.star
        lstseq = p.lstseq[p.t]
        setidx = lstseq // SET_SIZE
        # every (star, set) with points, and whether some were lost for lack of cloud stars
        key_all = s.astype(np.int64) * (1 << 40) + setidx
        lost = np.zeros(len(s), bool)
        lost[~ok_cloud] = True
        keys_lost = np.unique(key_all[lost])
        sel = np.flatnonzero(use)
        if len(sel) == 0:
            return []
        key = key_all[sel]
        # points are sorted by star then lstseq, so each bin is one run
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        # plain means: weights fitted from the same residuals (the extra variance of a
        # cell holds the star's own deviation) would pull a transit's bins up
        var = 1.0 / w[sel]
        nobs = np.diff(np.r_[starts, len(sel)])
        out = np.zeros(len(starts), BIN_DTYPE)
        out["setidx"] = setidx[sel][starts]
        pos = np.searchsorted(self.station_lstseq, lstseq[sel])
        pos = np.clip(pos, 0, len(self.station_lstseq) - 1)
        ones = np.ones(len(sel))
        out["jd"] = np.add.reduceat(self.station_jdmid[pos], starts) / nobs
        out["lst"] = _circular_mean_hours(self.station_lst[pos], ones, starts)
        out["mag"] = np.add.reduceat(cal[sel], starts) / nobs
        out["emag"] = np.sqrt(np.add.reduceat(var, starts)) / nobs
        out["nobs"] = np.minimum(nobs, np.iinfo(np.uint16).max)
        out["trans"] = np.add.reduceat(trans[sel], starts) / nobs
        cbin = np.add.reduceat(c_loo[sel], starts) / nobs
        out["clouds"] = cbin
        out["x"] = np.add.reduceat(p.x[sel].astype(float), starts) / nobs
        out["y"] = np.add.reduceat(p.y[sel].astype(float), starts) / nobs
        sig_t = np.maximum.reduceat(np.sqrt(s2t[p.t[sel]]), starts)
        flag = np.zeros(len(starts), np.uint8)
        flag[nobs < SET_SIZE // 2] |= 1
        flag[(np.abs(cbin) > 0.25) | (sig_t > 0.05)] |= 2
        flag[np.isin(key[starts], keys_lost)] |= 4
        out["cflag"] = flag
        star_of_bin = s[sel][starts]
        bounds = np.flatnonzero(np.r_[True, star_of_bin[1:] != star_of_bin[:-1]])
        ends = np.r_[bounds[1:], len(starts)]
        return [(int(p.ids[star_of_bin[a]]), out[a:b]) for a, b in
                zip(bounds.tolist(), ends.tolist(), strict=True)]


# =============================================================================================
# running workers in processes


def _concat_parts(parts: list[tuple], n: int) -> tuple[np.ndarray, ...]:
    if not parts:
        return tuple(np.empty(0) for _ in range(n))
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def _worker_main(conn: Connection, init: dict) -> None:
    try:
        worker = PatchWorker(**init)
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}", isinstance(exc, MascaraError)))
        return
    conn.send(("ready", None))
    while True:
        try:
            cmd, kwargs = conn.recv()
        except EOFError:
            return
        if cmd == "stop":
            return
        try:
            result = getattr(worker, cmd)(**kwargs, tick=lambda: conn.send(("tick", None)))
            conn.send(("done", result))
        except BaseException as exc:
            log.debug("worker error: %s", traceback.format_exc())
            conn.send(("error", f"{type(exc).__name__}: {exc}",
                       isinstance(exc, MascaraError)))


class _Workers:
    """One PatchWorker per process (or in this process when n == 1)."""

    def __init__(self, inits: list[dict]) -> None:
        self.local: PatchWorker | None = None
        self.procs: list[tuple[mp.process.BaseProcess, Connection]] = []
        if len(inits) == 1:
            self.local = PatchWorker(**inits[0])
            return
        ctx = mp.get_context("spawn")
        for init in inits:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, init), daemon=True)
            proc.start()
            child.close()
            self.procs.append((proc, parent))
        for _, conn in self.procs:
            self._expect(conn, "ready")

    def _expect(self, conn: Connection, what: str) -> Any:
        kind, payload, *rest = conn.recv()
        if kind == "error":
            raise (DecorrelationError if rest and rest[0] else RuntimeError)(
                f"a calibration worker failed: {payload}")
        if kind != what:
            raise RuntimeError(f"calibration worker sent {kind!r}, expected {what!r}")
        return payload

    def run(self, cmd: str, kwargs: list[dict], tick: Callable[[], None]) -> list[Any]:
        if self.local is not None:
            return [getattr(self.local, cmd)(**kwargs[0], tick=tick)]
        for (_, conn), kw in zip(self.procs, kwargs, strict=True):
            conn.send((cmd, kw))
        results: dict[int, Any] = {}
        pending = {id(conn): n for n, (_, conn) in enumerate(self.procs)}
        conns = {id(conn): conn for _, conn in self.procs}
        while pending:
            for conn in wait([conns[k] for k in pending]):
                try:
                    kind, payload, *rest = conn.recv()
                except EOFError:
                    raise RuntimeError("a calibration worker died (out of memory?)") from None
                if kind == "tick":
                    tick()
                    continue
                n = pending.pop(id(conn))
                if kind == "error":
                    text = f"a calibration worker failed: {payload}"
                    if rest and rest[0]:
                        raise DecorrelationError(text)
                    raise RuntimeError(text)
                results[n] = payload
        return [results[n] for n in range(len(self.procs))]

    def close(self) -> None:
        for _, conn in self.procs:
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(("stop", {}))
        for proc, conn in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            conn.close()
        self.procs = []


# =============================================================================================
# parent side: the maps


def _assemble_t(grid: TransmissionGrid, acc: np.ndarray) -> sp.csr_matrix:
    """The symmetric normal matrix of T from the accumulated pair sums."""
    nha, nn = grid.nha, grid.size
    n = np.arange(nn)
    k, j = n % nha, n // nha
    east = j * nha + (k + 1) % nha
    north = n + nha
    ne = j * nha + (k + 1) % nha + nha
    nw = (j + 1) * nha + (k - 1) % nha  # the partner of n10 is n01, north-west of it
    rows = [n]
    cols = [n]
    vals = [acc[0]]
    for a, partner in ((1, east), (2, north), (3, ne), (4, nw)):
        ok = (partner < nn) & (acc[a] != 0)
        rows += [n[ok], partner[ok]]
        cols += [partner[ok], n[ok]]
        vals += [acc[a][ok], acc[a][ok]]
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(nn, nn))


def _curvature_rows(grid: TransmissionGrid) -> np.ndarray:
    """Node triplets of the second differences along HA (periodic) and declination."""
    nha, ndec = grid.nha, grid.ndec
    k, j = np.meshgrid(np.arange(nha), np.arange(ndec))
    centre = (j * nha + k).ravel()
    west = (j * nha + (k - 1) % nha).ravel()
    east = (j * nha + (k + 1) % nha).ravel()
    parts = [np.stack([west, centre, east], axis=1)]
    if ndec > 2:
        inner = centre[(j.ravel() > 0) & (j.ravel() < ndec - 1)]
        parts.append(np.stack([inner - nha, inner, inner + nha], axis=1))
    return np.concatenate(parts)


def _difference_rows(grid: IntrapixelGrid) -> np.ndarray:
    """Cell pairs of the first differences between neighbours (HA periodic)."""
    nha, ndec = grid.nha, grid.ndec
    k, j = np.meshgrid(np.arange(nha), np.arange(ndec))
    cell = (j * nha + k).ravel()
    east = (j * nha + (k + 1) % nha).ravel()
    pairs = [np.stack([cell, east], axis=1)]
    if ndec > 1:
        below = cell[j.ravel() < ndec - 1]
        pairs.append(np.stack([below, below + nha], axis=1))
    return np.concatenate(pairs)


def _penalty(rows: np.ndarray, coeffs: tuple[float, ...], active: np.ndarray,
             size: int) -> sp.csr_matrix:
    """``D^T D`` of the difference rows whose unknowns are all active."""
    rows = rows[np.all(active[rows], axis=1)]
    n = len(rows)
    d = sp.csr_matrix((np.tile(coeffs, n), (np.repeat(np.arange(n), rows.shape[1]),
                                            rows.ravel())), shape=(n, size))
    return (d.T @ d).tocsr()


def _dilate(mask: np.ndarray, nrow: int, ncol: int, steps: int) -> np.ndarray:
    """Grow a (row-major, columns periodic) mask by ``steps`` cells in each direction."""
    out = mask.reshape(nrow, ncol).copy()
    for _ in range(steps):
        grown = out | np.roll(out, 1, axis=1) | np.roll(out, -1, axis=1)
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        out = grown
    return out.reshape(-1)


class _Maps:
    """T and intrapixel amplitudes, and their solution from the normal equations."""

    def __init__(self, grid: TransmissionGrid, ipx_grid: IntrapixelGrid,
                 settings: DecorrelationSettings) -> None:
        self.grid, self.ipx_grid, self.settings = grid, ipx_grid, settings
        self.T = np.zeros(grid.size)
        self.ipx = np.zeros((ipx_grid.size, 4))
        self.t_weight = np.zeros(grid.size)
        self.ipx_weight = np.zeros(ipx_grid.size)
        self._t_rows = _curvature_rows(grid)
        self._i_rows = _difference_rows(ipx_grid)
        self._active: np.ndarray | None = None
        self._lu: Any = None
        self._x: np.ndarray | None = None

    def solve(self, outs: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """T, intrapixel amplitudes and star magnitudes, jointly, from the workers' normal
        equations (a star that crosses part of the field ties together the nodes it
        crossed, and a slowly changing pixel phase looks like T to one star: alternating
        would converge slowly). Returns (T, ipx (ncell, 4), m)."""
        grid, gi = self.grid, self.ipx_grid
        nn, nc, nha = grid.size, gi.size, grid.nha
        r_ha = round(gi.ha_step / grid.ha_step)
        r_dec = round(gi.dec_step / grid.dec_step)
        acc_t = sum(o["acc_t"] for o in outs)
        rhs_t = sum(o["rhs_t"] for o in outs)
        acc_i = sum(o["acc_i"] for o in outs)
        rhs_i = sum(o["rhs_i"] for o in outs)
        acc_ti = sum(o["acc_ti"] for o in outs)
        stars = np.concatenate([o["stars"] for o in outs], axis=1)
        nstars = [o["stars"].shape[1] for o in outs]
        base = np.cumsum([0, *nstars[:-1]])
        t_prof = [np.concatenate([o["t_prof"][0] + b for o, b in zip(outs, base, strict=True)]),
                  *(np.concatenate([o["t_prof"][k] for o in outs]) for k in (1, 2))]
        i_prof = [np.concatenate([o["i_prof"][0] + b for o, b in zip(outs, base, strict=True)]),
                  *(np.concatenate([o["i_prof"][k] for o in outs]) for k in (1, 2, 3))]
        dec, vmag, ws, zs = stars[0], stars[1], stars[4], stars[5]
        ns = len(dec)
        oi, om = nn, nn + 4 * nc  # offsets of the ipx and star unknowns
        self.t_weight = acc_t[0]
        sampled = acc_t[0] > 0
        scale = float(np.median(acc_t[0][sampled])) if np.any(sampled) else 1.0
        rows, cols, vals = [], [], []

        def add(r: np.ndarray, c: np.ndarray, v: np.ndarray, sym: bool = True) -> None:
            keep = v != 0
            r, c, v = r[keep], c[keep], v[keep]
            rows.append(r)
            cols.append(c)
            vals.append(v)
            if sym:
                rows.append(c)
                cols.append(r)
                vals.append(v)

        # the unknowns: nodes and cells with data, and two nodes / one cell around them (so
        # the penalties extrapolate), fixed after the first solution; every star
        if self._active is None:
            act_t = _dilate(acc_t[0] > 0, grid.ndec, nha, 2)
            act_i = _dilate(acc_i[0] + acc_i[7] > 0, gi.ndec, gi.nha, 1)
            self._active = (act_t, act_i)
        act_t, act_i = self._active
        # T-T
        t_mat = _assemble_t(grid, acc_t) + self.settings.smooth * scale * _penalty(
            self._t_rows, (1.0, -2.0, 1.0), act_t, nn)
        t_mat = t_mat.tocoo()
        add(t_mat.row, t_mat.col, t_mat.data, sym=False)
        # ipx-ipx
        cell = np.arange(nc)
        k = 0
        for i in range(4):
            for j in range(i, 4):
                add(oi + 4 * cell + i, oi + 4 * cell + j, acc_i[k], sym=i != j)
                k += 1
        self.ipx_weight = acc_i[0] + acc_i[7]
        # the intrapixel response follows the PSF, which changes smoothly over the chip:
        # first differences between neighbouring cells, per amplitude, lift the combinations
        # that the pixel phases of one region leave undetermined
        diag_i = (acc_i[0] + acc_i[4] + acc_i[7] + acc_i[9]) / 4.0
        iscale = float(np.median(diag_i[diag_i > 0])) if np.any(diag_i > 0) else 1.0
        lap = (self.settings.ipx_smooth * iscale * _penalty(self._i_rows, (1.0, -1.0), act_i,
                                                            nc)).tocoo()
        for i in range(4):
            add(oi + 4 * lap.row + i, oi + 4 * lap.col + i, lap.data, sym=False)
        # T-ipx
        jc, kc = cell // gi.nha, cell % gi.nha
        width = r_ha + 1
        for off in range(acc_ti.shape[1]):
            node = (jc * r_dec + off // width) * nha + (kc * r_ha + off % width) % nha
            inside = node < nn
            for i in range(4):
                add(node[inside], oi + 4 * cell[inside] + i, acc_ti[inside, off, i])
        # star-T and star-ipx
        js, fv = grid.dec_weights(dec)
        s_idx, k_idx, val = t_prof
        s_idx = s_idx.astype(np.int64)
        k_idx = k_idx.astype(np.int64)
        add(js[s_idx] * nha + k_idx, om + s_idx, (1.0 - fv[s_idx]) * val)
        add((js[s_idx] + 1) * nha + k_idx, om + s_idx, fv[s_idx] * val)
        s_i, c_i, i_i, v_i = (np.asarray(x) for x in i_prof)
        add(oi + 4 * c_i.astype(np.int64) + i_i.astype(np.int64), om + s_i.astype(np.int64),
            v_i)
        # star-star, with the catalogue prior: it only decides what the data cannot (the
        # declination profile of T against the star magnitudes); the data weigh far more
        prior = np.full(ns, 1.0 / CATALOGUE_SIGMA**2)
        add(om + np.arange(ns), om + np.arange(ns), ws + prior, sym=False)
        # a tiny ridge keeps unsampled nodes and cells at their last values
        ntot = om + ns
        ridge = 1e-9 * scale
        add(np.arange(om), np.arange(om), np.full(om, ridge), sym=False)
        mat = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                    np.concatenate(cols))),
                            shape=(ntot, ntot))
        old = np.r_[self.T, self.ipx.reshape(-1)]
        rhs = np.r_[rhs_t, rhs_i.T.reshape(-1), zs + prior * vmag]
        rhs[:om] += ridge * old
        idx = np.flatnonzero(np.r_[act_t, np.repeat(act_i, 4), np.ones(ns, bool)])
        sub = mat[idx][:, idx].tocsc()
        x = self._solve(sub, rhs[idx])
        sol = np.r_[self.T, self.ipx.reshape(-1), np.zeros(ns)]
        sol[idx] = x
        return sol[:nn], sol[oi:om].reshape(nc, 4), sol[om:]

    def _solve(self, mat: sp.csc_matrix, rhs: np.ndarray) -> np.ndarray:
        """Solve the symmetric positive definite system: preconditioned conjugate gradients
        with the factor of an earlier iteration's matrix (the weights change little from one
        iteration to the next), a new sparse factorisation when that is not enough."""
        if self._lu is not None and self._x is not None and len(self._x) == len(rhs):
            prec = spla.LinearOperator(mat.shape, matvec=self._lu.solve, dtype=float)
            count = 0

            def counter(_: np.ndarray) -> None:
                nonlocal count
                count += 1

            x, info = spla.cg(mat, rhs, x0=self._x, M=prec, rtol=1e-10, maxiter=40,
                              callback=counter)
            if info == 0:
                log.debug("spatial step: %d preconditioned CG iterations", count)
                self._x = x
                return x
        self._lu = spla.splu(mat, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                             options={"SymmetricMode": True})
        self._x = self._lu.solve(rhs)
        return self._x

    def sampled_nodes(self) -> np.ndarray:
        """Nodes that carry a meaningful share of data weight."""
        w = self.t_weight
        if not np.any(w > 0):
            return np.zeros_like(w, bool)
        return w > 1e-3 * np.median(w[w > 0])

    def sampled_cells(self) -> np.ndarray:
        w = self.ipx_weight
        if not np.any(w > 0):
            return np.zeros_like(w, bool)
        return w > 1e-2 * np.median(w[w > 0])


def _cloud_gauge(grid: TransmissionGrid, gauge: list, patch_dec: dict[int, float],
                 step: float) -> np.ndarray:
    """T correction that moves the clear level of the clouds (per ring of patches and HA bin
    of the patch centre, smoothed over a few degrees) into T: the clouds of the clear sky are
    zero."""
    nbin = round(360.0 / step)
    ring_decs = sorted({round(patch_dec[q], 6) for q, *_ in gauge})
    if not ring_decs:
        return np.zeros(grid.size)
    ring_index = {d: i for i, d in enumerate(ring_decs)}
    num = np.zeros((len(ring_decs), nbin))
    den = np.zeros((len(ring_decs), nbin))
    for q, bins, med, cnt in gauge:
        r = ring_index[round(patch_dec[q], 6)]
        np.add.at(num[r], bins, med * cnt)
        np.add.at(den[r], bins, cnt)
    # separable Gaussian kernels from the (ring, bin) table to the nodes
    dec_r = np.asarray(ring_decs)
    ha_b = -180.0 + step * (np.arange(nbin) + 0.5)
    kd = np.exp(-0.5 * ((grid.dec_nodes[:, None] - dec_r[None, :]) / 4.0) ** 2)
    dha = wrap_ha(grid.ha_nodes[:, None] - ha_b[None, :])
    kh = np.exp(-0.5 * (dha / step) ** 2)
    top = kd @ num @ kh.T
    bottom = kd @ den @ kh.T
    full = float(den.sum()) / max(np.count_nonzero(den), 1)
    h = top / (bottom + 1e-3 * full)
    return h.reshape(-1)


# =============================================================================================
# the whole calibration


def _change(delta: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Data-weighted RMS and largest change over the nodes (cells) with at least 5 % of the
    median data weight, mag."""
    sampled = weight > 0
    if not np.any(sampled):
        return 0.0, 0.0
    well = weight > 0.05 * np.median(weight[sampled])
    d = np.abs(delta[well])
    return (float(np.sqrt(np.sum(weight[well] * d * d) / np.sum(weight[well]))),
            float(d.max()))


def _ratio(cell: float, node: float) -> int:
    r = cell / node
    if abs(r - round(r)) > 1e-9 or round(r) < 1:
        raise DecorrelationError(f"intrapixel cells of {cell} deg must span a whole number of "
                                 f"transmission node intervals ({node} deg)")
    return round(r)


def _assign(patches: np.ndarray, weight: np.ndarray, ring: np.ndarray, nworkers: int
            ) -> list[list[int]]:
    """Rings of patches to workers, heaviest first, each to the least loaded worker."""
    load = np.zeros(nworkers)
    out: list[list[int]] = [[] for _ in range(nworkers)]
    rings = np.unique(ring)
    ring_weight = np.array([weight[ring == r].sum() for r in rings])
    for r in rings[np.argsort(-ring_weight)]:
        k = int(np.argmin(load))
        out[k].extend(patches[ring == r].tolist())
        load[k] += weight[ring == r].sum()
    return out


def calibrate_baseline(
    baseline: str | Path,
    outdir: str | Path,
    settings: DecorrelationSettings | None = None,
    *,
    progress: Callable[[str, int, int, str], None] | None = None,
) -> CalibrationResult:
    """Fit the coarse decorrelation to a baseline and write the calibrated light curves.

    Writes into ``outdir``: ``calibrated_{stem}.hdf5`` (binned light curves, see
    :data:`BIN_DTYPE`), ``maps_{stem}.hdf5`` (transmission, intrapixel, clouds, magnitudes,
    with the baseline they came from), ``plots/*.png`` and ``report_{stem}.json``.

    Parameters
    ----------
    baseline
        A baseline file made by ``mascara-actors baseline``.
    outdir
        Output directory (created if missing).
    settings
        Model and solver settings.
    progress
        Called with (stage, done, total, note) as the work advances.

    Raises
    ------
    StorageError
        The baseline is missing, foreign or of an older layout (naming it).
    DecorrelationError
        Too few nights or no usable data.
    NotConverged
        The solver did not converge: only the report is written.
    """
    from mascara_actors.decorrelation.plots import write_plots
    from mascara_actors.storage.calibrated import write_calibrated, write_maps, write_report

    t_start = time.monotonic()
    settings = settings or DecorrelationSettings()
    baseline = Path(baseline)
    outdir = Path(outdir)
    if settings.aperture not in (0, 1):
        raise DecorrelationError(f"aperture={settings.aperture}: the fast photometry has "
                                 "apertures 0 (2.5 px) and 1 (4.5 px)")
    with BaselineFile(baseline) as bf:
        info = bf.info
        header = dict(bf.header)
        stars = bf.stars
        station = bf.station
        filelist = list(bf.filelist)
        nights = bf.nights
        stored = bf.lightcurve_dtype().names or ()
    if info.kind not in ("fast", ""):
        raise DecorrelationError(f"{baseline} holds {info.kind!r} light curves; the "
                                 "decorrelation works on fast (per-exposure) baselines")
    if len(nights) < settings.min_nights:
        raise DecorrelationError(
            f"{baseline} holds {len(nights)} night(s) ({', '.join(nights)}); the "
            f"decorrelation needs at least {settings.min_nights} (typically 15) to separate "
            "the camera from the sky: merge more nights with `mascara-actors baseline`")
    a = settings.aperture
    missing = [f for f in (f"flux{a}", f"eflux{a}", "lstseq", "x", "y", "pflag", "aflag")
               if f not in stored]
    if missing:
        raise StorageError(f"{baseline} stores no {missing} in its light curves: it is not a "
                           "fast baseline of this version")
    for name in ("lstseq", "lst"):
        if name not in (station.dtype.names or ()):
            raise StorageError(f"{baseline}: its station table has no {name!r} field")
    outdir.mkdir(parents=True, exist_ok=True)
    stem = baseline.stem

    lon_offset = float(header.get("lon", REFERENCE_LONGITUDE_DEG)) - REFERENCE_LONGITUDE_DEG
    st_lstseq = station["lstseq"].astype(np.int64)
    exptime = (station["exptime"].astype(float) if "exptime" in station.dtype.names
               else np.full(len(station), 6.38253))
    if "jdmid" in station.dtype.names:
        jdmid = station["jdmid"].astype(float)
    else:
        jdmid = station["jd"].astype(float) + 0.5 * exptime / 86400.0
    dropped: dict[str, int] = {}
    dropped_stars: dict[str, list[int]] = {}

    ids = stars["id"].astype(np.int64)
    ra, dec = stars["ra"].astype(float), stars["dec"].astype(float)
    vmag = stars["vmag"].astype(float)
    nobs = stars["nobs"].astype(np.int64) if "nobs" in stars.dtype.names else np.ones(len(ids))
    keep = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(vmag) & (vmag <= settings.vmax)
    dropped_stars[f"stars fainter than V = {settings.vmax} or without position"] = \
        ids[~keep].tolist()
    ids, ra, dec, vmag, nobs = ids[keep], ra[keep], dec[keep], vmag[keep], nobs[keep]
    if len(ids) == 0:
        raise DecorrelationError(f"{baseline}: no star with V <= {settings.vmax}: nothing to "
                                 "calibrate")
    patch = patch_of(ra, dec)
    patches, inverse = np.unique(patch, return_inverse=True)
    p_ra, p_dec = patch_centres(patches)
    patch_dec = {int(q): float(d) for q, d in zip(patches, p_dec, strict=True)}
    weight = np.bincount(inverse, weights=nobs.astype(float), minlength=len(patches))
    ring = np.round(p_dec, 6)
    nworkers = settings.workers or min(2, os.cpu_count() or 1)
    nworkers = max(1, min(nworkers, len(np.unique(ring))))
    groups = _assign(patches, weight, ring, nworkers)

    grid = TransmissionGrid.covering(dec.min(), dec.max(), ha_step=settings.ha_step,
                                     dec_step=settings.dec_step)
    ipx_grid = IntrapixelGrid.on(grid, ha_ratio=_ratio(settings.ipx_ha_step, settings.ha_step),
                                 dec_ratio=_ratio(settings.ipx_dec_step, settings.dec_step))
    scratch = Path(tempfile.mkdtemp(prefix=".calibrate-", dir=outdir))
    inits = [dict(scratch=str(scratch), grid=grid.attrs(), ipx_grid=ipx_grid.attrs(),
                  settings=asdict(settings), station_lstseq=st_lstseq, station_jdmid=jdmid,
                  station_lst=station["lst"].astype(float), station_exptime=exptime,
                  lon_offset=lon_offset) for _ in groups]
    npatch = len(patches)
    total_work = npatch * (settings.max_iter + 2)
    done = 0
    note = ""

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress("calibrate", done, total_work, note)

    result = CalibrationResult(baseline=baseline, outdir=outdir, converged=False,
                               iterations=0, history=[], dropped=dropped,
                               dropped_stars=dropped_stars, nstars=0, npoints=0)
    workers = None
    try:
        workers = _Workers(inits)
        assignments = []
        for grp in groups:
            items = []
            for q in grp:
                sel = patch == q
                k = int(np.searchsorted(patches, q))
                items.append({"patch": int(q), "ids": ids[sel], "ra": ra[sel], "dec": dec[sel],
                              "vmag": vmag[sel], "ra0": float(p_ra[k])})
            assignments.append({"baseline": str(baseline), "assignments": items})
        note = "reading the baseline"
        ingested = workers.run("ingest", assignments, tick)
        few = sorted(i for r in ingested for i in r["few_points"])
        dropped_stars[f"stars with fewer than {settings.min_points} good points"] = few
        dropped_stars[f"stars saturated on more than {settings.max_saturated_fraction:.0%} "
                      "of their points"] = sorted(
            i for r in ingested for i in r["mostly_flagged"])
        for r in ingested:
            for k, v in r["dropped"].items():
                dropped[k] = dropped.get(k, 0) + v
        result.npoints = sum(r["npoints"] for r in ingested)
        if result.npoints == 0:
            raise DecorrelationError(f"{baseline}: no good point left to calibrate ("
                                     + ", ".join(f"{v} {k}" for k, v in dropped.items() if v)
                                     + ")")
        maps = _Maps(grid, ipx_grid, settings)
        m_parts: list[np.ndarray | None] = [None] * len(groups)
        converged = False
        for it in range(settings.max_iter):
            note = f"iteration {it + 1}" + (f", last change {result.history[-1]['dT'] * 1e3:.2f}"
                                            " mmag" if result.history else "")
            outs = workers.run("iterate", [{"T": maps.T, "ipx": maps.ipx, "m": m_parts[k],
                                            "first": it == 0}
                                           for k in range(len(groups))], tick)
            T_new, ipx_new, m_new = maps.solve(outs)
            split = np.cumsum([o["stars"].shape[1] for o in outs])[:-1]
            m_parts = np.split(m_new, split)
            gauge = [g for o in outs for g in o["gauge"]]
            T_new = T_new + _cloud_gauge(grid, gauge, patch_dec, settings.gauge_ha_step)
            d_t, d_tmax = _change(T_new - maps.T, maps.t_weight)
            d_i, d_imax = _change(np.sqrt(np.sum((ipx_new - maps.ipx) ** 2, axis=1) / 4.0),
                                  maps.ipx_weight)
            nused = sum(o["nused"] for o in outs)
            chi2 = sum(o["chi2"] for o in outs) / max(nused, 1)
            result.history.append({"iteration": it + 1, "dT": d_t, "dipx": d_i,
                                   "dT_max": d_tmax, "dipx_max": d_imax,
                                   "chi2": chi2, "npoints": nused,
                                   "clipped": sum(o["nclip"] for o in outs),
                                   "few_cloud_stars": sum(o["nfew"] for o in outs),
                                   "thick_clouds": sum(o["nthick"] for o in outs)})
            log.info("iteration %d: change of T %.3g mag (largest %.3g), of the intrapixel "
                     "amplitudes %.3g mag (largest %.3g), chi2 %.3f", it + 1, d_t, d_tmax, d_i,
                     d_imax, chi2)
            maps.T, maps.ipx = T_new, ipx_new
            result.iterations = it + 1
            if not (np.all(np.isfinite(T_new)) and np.all(np.isfinite(ipx_new))):
                break
            if it + 1 >= settings.min_iter and max(d_t, d_i) < settings.tol:
                converged = True
                break
        result.converged = converged
        last = result.history[-1]
        dropped["points clipped as outliers (not in the maps)"] = int(last["clipped"])
        dropped["points in cloud cells with too few stars (not in the maps)"] = int(
            last["few_cloud_stars"])
        dropped[f"points under clouds thicker than {settings.max_cloud_for_maps} mag (not in "
                "the maps)"] = int(last["thick_clouds"])
        if not converged:
            result.seconds = time.monotonic() - t_start
            result.report_file = write_report(outdir / f"report_{stem}.json", result,
                                              settings)
            raise NotConverged(
                f"the calibration of {baseline} did not converge in {result.iterations} "
                f"iterations (last RMS change of the maps {max(last['dT'], last['dipx']):.2g} mag, "
                f"tolerance {settings.tol:g}); no calibrated file was written and the "
                f"baseline is untouched: see {result.report_file}, raise --max-iter or check "
                "the nights it holds")
        note = "calibrated light curves"
        done = npatch * (result.iterations + 1)
        total_work = npatch * (result.iterations + 2)
        finals = workers.run("finish", [{"T": maps.T, "ipx": maps.ipx} for _ in groups],
                             tick)
    finally:
        if workers is not None:
            workers.close()
        shutil.rmtree(scratch, ignore_errors=True)

    curves = sorted((c for f in finals for c in f["curves"]), key=lambda c: c[0])
    star_par = np.concatenate([f["stars"] for f in finals], axis=1)
    dropped["points not calibrated: too few other stars in their cloud cell"] = sum(
        f["nfew"] for f in finals)
    dropped["points not calibrated: outliers"] = sum(f["nclip"] for f in finals)
    result.nstars = star_par.shape[1]
    provenance = {
        "baseline": str(baseline.resolve()),
        "baseline_size": baseline.stat().st_size,
        "baseline_mtime_ns": baseline.stat().st_mtime_ns,
        "nights": list(nights),
        "camera": info.camera_id,
        "aperture": a,
    }
    for reason, n in dropped.items():
        if n:
            log.warning("%s: dropped %d %s", baseline.name, n, reason)
    for reason, lst in dropped_stars.items():
        if lst:
            log.warning("%s: left out %d %s", baseline.name, len(lst), reason)
    maps_path = outdir / f"maps_{stem}.hdf5"
    write_maps(maps_path, provenance=provenance, header=header, filelist=filelist,
               settings=asdict(settings), history=result.history, grid=grid,
               ipx_grid=ipx_grid, T=maps.T, t_weight=maps.t_weight,
               t_sampled=maps.sampled_nodes(), ipx=maps.ipx, ipx_weight=maps.ipx_weight,
               ipx_sampled=maps.sampled_cells(), clouds=[c for f in finals
                                                         for c in f["clouds"]],
               station_lstseq=st_lstseq, star_par=star_par, stars=stars)
    cal_path = outdir / f"calibrated_{stem}.hdf5"
    write_calibrated(cal_path, provenance=provenance, header=header, filelist=filelist,
                     stars=stars, star_par=star_par, curves=curves, flags=CFLAG_BITS)
    result.maps_file, result.calibrated_file = maps_path, cal_path
    result.plots = write_plots(outdir / "plots", maps_path)
    result.seconds = time.monotonic() - t_start
    result.report_file = write_report(outdir / f"report_{stem}.json", result, settings)
    return result
