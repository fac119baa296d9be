"""The spatial step: T, the intrapixel amplitudes and the star magnitudes, solved jointly.

The legacy code alternates T and the amplitudes per declination ring, up to 100 times per
outer iteration. A star that crosses only part of the field ties the nodes it crossed
together, and a pixel phase that changes slowly along a track looks like T to that star,
so alternation converges slowly or stops early at a biased split. Here the workers' normal
equations (:mod:`.normal_equations`) are summed into one sparse symmetric system over the
nodes, cells and stars, with the smoothness penalties (:mod:`.penalties`) and a catalogue
prior on the magnitudes, and solved at once: a sparse factorisation, reused as the
preconditioner of conjugate gradients while the weights change little.

The catalogue prior (``CATALOGUE_SIGMA``) only decides what the data cannot: every star
keeps its declination, so T + g(dec) with m_s - g(dec_s) fits equally well; the
declination profile of T is the one for which the fitted magnitudes agree with the
catalogue on average.
"""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mascara_actors.decorrelation.grids import IntrapixelGrid, TransmissionGrid
from mascara_actors.decorrelation.normal_equations import SpatialNormals
from mascara_actors.decorrelation.penalties import (
    curvature_rows,
    difference_rows,
    dilate,
    penalty,
)
from mascara_actors.decorrelation.settings import DecorrelationSettings

__all__ = ["CATALOGUE_SIGMA", "CameraMaps"]

log = logging.getLogger(__name__)

CATALOGUE_SIGMA = 0.05
"""Uncertainty given to the catalogue V of a star, mag. It only decides what the data cannot
(the declination profile of T against the star magnitudes): the data weigh far more."""


@dataclass
class _Triplets:
    """A sparse matrix being built from (row, column, value) triplets."""

    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    vals: list[np.ndarray] = field(default_factory=list)

    def add(self, r: np.ndarray, c: np.ndarray, v: np.ndarray, sym: bool = True) -> None:
        """Add the non-zero values (and their mirror images when ``sym``)."""
        keep = v != 0
        r, c, v = r[keep], c[keep], v[keep]
        self.rows.append(r)
        self.cols.append(c)
        self.vals.append(v)
        if sym:
            self.rows.append(c)
            self.cols.append(r)
            self.vals.append(v)

    def add_matrix(self, m: sp.spmatrix) -> None:
        """Add a whole sparse matrix as it is."""
        coo = m.tocoo()
        self.add(coo.row, coo.col, coo.data, sym=False)

    def matrix(self, n: int) -> sp.csc_matrix:
        return sp.csc_matrix((np.concatenate(self.vals), (np.concatenate(self.rows),
                                                          np.concatenate(self.cols))),
                             shape=(n, n))


def _sum_normals(parts: Sequence[SpatialNormals]) -> SpatialNormals:
    """The workers' sums added up, their stars one after the other."""
    base = np.cumsum([0, *(p.nstars for p in parts[:-1])])

    def add(name: str) -> np.ndarray:
        out: np.ndarray = functools.reduce(operator.add, (getattr(p, name) for p in parts))
        return out

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    t0 = np.concatenate([p.t_prof[0] + b for p, b in zip(parts, base, strict=True)])
    i0 = np.concatenate([p.i_prof[0] + b for p, b in zip(parts, base, strict=True)])
    return SpatialNormals(
        add("acc_t"), add("rhs_t"), add("acc_i"), add("rhs_i"), add("acc_ti"),
        cat("star_dec"), cat("star_vmag"), cat("star_m"), cat("star_s2s"), cat("star_w"),
        cat("star_z"),
        (t0, np.concatenate([p.t_prof[1] for p in parts]),
         np.concatenate([p.t_prof[2] for p in parts])),
        (i0, np.concatenate([p.i_prof[1] for p in parts]),
         np.concatenate([p.i_prof[2] for p in parts]),
         np.concatenate([p.i_prof[3] for p in parts])))


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


class CameraMaps:
    """T and the intrapixel amplitudes, and their solution from the normal equations.

    The unknowns are the nodes and cells with data, and two nodes / one cell around them
    (so the penalties extrapolate), fixed after the first solution, and every star.
    """

    def __init__(self, grid: TransmissionGrid, ipx_grid: IntrapixelGrid,
                 settings: DecorrelationSettings) -> None:
        self.grid, self.ipx_grid, self.settings = grid, ipx_grid, settings
        self.T = np.zeros(grid.size)
        """Transmission at the nodes, mag."""
        self.ipx = np.zeros((ipx_grid.size, 4))
        """Intrapixel amplitudes per cell, mag."""
        self.t_weight = np.zeros(grid.size)
        """Data weight of each node in the last solution."""
        self.ipx_weight = np.zeros(ipx_grid.size)
        """Data weight of each cell in the last solution."""
        self._t_rows = curvature_rows(grid)
        self._i_rows = difference_rows(ipx_grid)
        self._active: tuple[np.ndarray, np.ndarray] | None = None
        self._lu: Any = None  # scipy's SuperLU (untyped)
        self._x: np.ndarray | None = None

    def solve(self, parts: Sequence[SpatialNormals]) -> tuple[np.ndarray, np.ndarray,
                                                               np.ndarray]:
        """T, intrapixel amplitudes (ncell, 4) and star magnitudes (the workers' stars one
        after the other), from the workers' normal equations. The maps are not changed."""
        s = _sum_normals(parts)
        nn, nc, ns = self.grid.size, self.ipx_grid.size, s.nstars
        oi, om = nn, nn + 4 * nc  # offsets of the ipx and star unknowns
        self.t_weight = s.acc_t[0]
        self.ipx_weight = s.acc_i[0] + s.acc_i[7]
        sampled = s.acc_t[0] > 0
        scale = float(np.median(s.acc_t[0][sampled])) if np.any(sampled) else 1.0
        if self._active is None:
            self._active = (dilate(s.acc_t[0] > 0, self.grid.ndec, self.grid.nha, 2),
                            dilate(self.ipx_weight > 0, self.ipx_grid.ndec, self.ipx_grid.nha,
                                   1))
        act_t, act_i = self._active
        trip = _Triplets()
        trip.add_matrix(_assemble_t(self.grid, s.acc_t) + self.settings.smooth * scale
                        * penalty(self._t_rows, (1.0, -2.0, 1.0), act_t, nn))
        self._add_intrapixel(trip, s, act_i, oi)
        self._add_couplings(trip, s, oi)
        prior = self._add_stars(trip, s, oi, om)
        # a tiny ridge keeps unsampled nodes and cells at their last values
        ridge = 1e-9 * scale
        trip.add(np.arange(om), np.arange(om), np.full(om, ridge), sym=False)
        mat = trip.matrix(om + ns)
        rhs = np.r_[s.rhs_t, s.rhs_i.T.reshape(-1), s.star_z + prior * s.star_vmag]
        rhs[:om] += ridge * np.r_[self.T, self.ipx.reshape(-1)]
        idx = np.flatnonzero(np.r_[act_t, np.repeat(act_i, 4), np.ones(ns, bool)])
        x = self._solve(mat[idx][:, idx].tocsc(), rhs[idx])
        sol = np.r_[self.T, self.ipx.reshape(-1), np.zeros(ns)]
        sol[idx] = x
        return sol[:nn], sol[oi:om].reshape(nc, 4), sol[om:]

    def _add_intrapixel(self, trip: _Triplets, s: SpatialNormals, act_i: np.ndarray,
                        oi: int) -> None:
        """ipx-ipx blocks (4 x 4 per cell) and the difference penalty between cells."""
        nc = self.ipx_grid.size
        cell = np.arange(nc)
        k = 0
        for i in range(4):
            for j in range(i, 4):
                trip.add(oi + 4 * cell + i, oi + 4 * cell + j, s.acc_i[k], sym=i != j)
                k += 1
        diag_i = (s.acc_i[0] + s.acc_i[4] + s.acc_i[7] + s.acc_i[9]) / 4.0
        iscale = float(np.median(diag_i[diag_i > 0])) if np.any(diag_i > 0) else 1.0
        lap = (self.settings.ipx_smooth * iscale
               * penalty(self._i_rows, (1.0, -1.0), act_i, nc)).tocoo()
        for i in range(4):
            trip.add(oi + 4 * lap.row + i, oi + 4 * lap.col + i, lap.data, sym=False)

    def _add_couplings(self, trip: _Triplets, s: SpatialNormals, oi: int) -> None:
        """T-ipx: the nodes each cell touches, at (r_ha + 1) x (r_dec + 1) offsets."""
        grid, gi = self.grid, self.ipx_grid
        r_ha = round(gi.ha_step / grid.ha_step)
        r_dec = round(gi.dec_step / grid.dec_step)
        cell = np.arange(gi.size)
        jc, kc = cell // gi.nha, cell % gi.nha
        width = r_ha + 1
        for off in range(s.acc_ti.shape[1]):
            node = (jc * r_dec + off // width) * grid.nha + (kc * r_ha + off % width) % grid.nha
            inside = node < grid.size
            for i in range(4):
                trip.add(node[inside], oi + 4 * cell[inside] + i, s.acc_ti[inside, off, i])

    def _add_stars(self, trip: _Triplets, s: SpatialNormals, oi: int, om: int) -> np.ndarray:
        """Star-T, star-ipx and star-star (with the catalogue prior, returned per star)."""
        nha = self.grid.nha
        js, fv = self.grid.dec_weights(s.star_dec)
        s_idx, k_idx, val = (s.t_prof[0].astype(np.int64), s.t_prof[1].astype(np.int64),
                             s.t_prof[2])
        trip.add(js[s_idx] * nha + k_idx, om + s_idx, (1.0 - fv[s_idx]) * val)
        trip.add((js[s_idx] + 1) * nha + k_idx, om + s_idx, fv[s_idx] * val)
        s_i, c_i, i_i, v_i = s.i_prof
        trip.add(oi + 4 * c_i.astype(np.int64) + i_i.astype(np.int64),
                 om + s_i.astype(np.int64), v_i)
        prior = np.full(s.nstars, 1.0 / CATALOGUE_SIGMA**2)
        trip.add(om + np.arange(s.nstars), om + np.arange(s.nstars), s.star_w + prior,
                 sym=False)
        return prior

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
                self._x = np.asarray(x, float)
                return self._x
        self._lu = spla.splu(mat, permc_spec="COLAMD", diag_pivot_thresh=0.0,
                             options={"SymmetricMode": True})
        self._x = np.asarray(self._lu.solve(rhs), float)
        return self._x

    def sampled_nodes(self) -> np.ndarray:
        """Nodes that carry a meaningful share of data weight."""
        return _sampled(self.t_weight, 1e-3)

    def sampled_cells(self) -> np.ndarray:
        """Cells that carry a meaningful share of data weight."""
        return _sampled(self.ipx_weight, 1e-2)


def _sampled(weight: np.ndarray, fraction: float) -> np.ndarray:
    if not np.any(weight > 0):
        return np.zeros_like(weight, bool)
    out: np.ndarray = weight > fraction * np.median(weight[weight > 0])
    return out
