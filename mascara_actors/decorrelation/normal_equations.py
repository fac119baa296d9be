"""The normal equations of the spatial step, accumulated patch by patch in each worker.

The spatial step solves ``y = mag - clouds = T + ipx + m_star`` for the transmission nodes,
the intrapixel amplitudes and the star magnitudes jointly (:mod:`.spatial`). Each worker
adds its patches' points to sums small enough to send to the parent: per node the five
kinds of bilinear pairs (itself, east, north, north-east, north-west), per cell the
4 x 4 basis products, per cell and node offset the T-intrapixel couplings, and per star its
weight profile over node columns and cells (the couplings with its magnitude).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mascara_actors.decorrelation.grids import IntrapixelGrid, TransmissionGrid
from mascara_actors.decorrelation.patch import MapTerms, PatchGeometry, PatchPoints

__all__ = ["NormalsAccumulator", "SpatialNormals"]


@dataclass(frozen=True)
class SpatialNormals:
    """One worker's sums (its stars in patch order)."""

    acc_t: np.ndarray
    """(5, nodes): sums of w b_a b_b for a node with itself, its east, north, north-east and
    north-west neighbour."""
    rhs_t: np.ndarray
    """(nodes,): sums of w b y."""
    acc_i: np.ndarray
    """(10, cells): the upper triangle of the 4 x 4 basis products per cell."""
    rhs_i: np.ndarray
    """(4, cells): sums of w basis y."""
    acc_ti: np.ndarray
    """(cells, node offsets, 4): T-intrapixel couplings."""
    star_dec: np.ndarray
    star_vmag: np.ndarray
    star_m: np.ndarray
    """Magnitudes of the temporal step (a warm start)."""
    star_s2s: np.ndarray
    star_w: np.ndarray
    """Sum of the weights of each star's points in the maps."""
    star_z: np.ndarray
    """Sum of w y of each star's points."""
    t_prof: tuple[np.ndarray, np.ndarray, np.ndarray]
    """(star, node column, weight): each star's weight over node columns (its two node
    rows follow from its declination)."""
    i_prof: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    """(star, cell, basis function, weight)."""

    @property
    def nstars(self) -> int:
        """Stars of this worker."""
        return len(self.star_dec)


@dataclass
class NormalsAccumulator:
    """Sums over the patches of one worker, for one iteration."""

    grid: TransmissionGrid
    ipx_grid: IntrapixelGrid
    acc_t: np.ndarray = field(init=False)
    rhs_t: np.ndarray = field(init=False)
    acc_i: np.ndarray = field(init=False)
    rhs_i: np.ndarray = field(init=False)
    acc_ti: np.ndarray = field(init=False)
    nstars: int = 0
    _stars: list[np.ndarray] = field(default_factory=list)
    _t_prof: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    _i_prof: list[tuple[np.ndarray, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        nn, nc = self.grid.size, self.ipx_grid.size
        r_ha = round(self.ipx_grid.ha_step / self.grid.ha_step)
        r_dec = round(self.ipx_grid.dec_step / self.grid.dec_step)
        self.acc_t = np.zeros((5, nn))
        self.rhs_t = np.zeros(nn)
        self.acc_i = np.zeros((10, nc))
        self.rhs_i = np.zeros((4, nc))
        self.acc_ti = np.zeros((nc, (r_ha + 1) * (r_dec + 1), 4))

    def add_patch(self, p: PatchPoints, g: PatchGeometry, terms: MapTerms, wu: np.ndarray,
                  y: np.ndarray, m: np.ndarray, s2s: np.ndarray) -> None:
        """Add the points of a patch with weights ``wu`` (0 for points left out of the maps)
        and values ``y = mag - clouds``; ``m``, ``s2s`` are its stars' temporal fit."""
        self._add_nodes(g, terms, wu, wu * y)
        self._add_cells(g, terms, wu, y)
        self._add_stars(p, g, wu, wu * y, m, s2s)

    def _add_nodes(self, g: PatchGeometry, terms: MapTerms, wu: np.ndarray, wy: np.ndarray
                   ) -> None:
        """T-T pairs over this patch's node rows only."""
        n00, n10, n01, n11 = terms.nodes
        b00, b10, b01, b11 = terms.weights
        nl, lo = g.nrow * g.nha, g.j_lo * g.nha
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
        self.acc_t[:, lo:lo + nl] += loc
        self.rhs_t[lo:lo + nl] += loc_rhs

    def _add_cells(self, g: PatchGeometry, terms: MapTerms, wu: np.ndarray, y: np.ndarray
                   ) -> None:
        """ipx-ipx: 4 x 4 per cell; T-ipx: per cell, node offset and basis function."""
        ncl, clo = g.ncrow * g.ncha, g.c_lo * g.ncha
        wb = wu * g.basis  # (4, n)
        k = 0
        for i in range(4):
            self.rhs_i[i, clo:clo + ncl] += np.bincount(g.cell, wb[i] * y, minlength=ncl)
            for j in range(i, 4):
                self.acc_i[k, clo:clo + ncl] += np.bincount(g.cell, wb[i] * g.basis[j],
                                                            minlength=ncl)
                k += 1
        noff = self.acc_ti.shape[1]
        key0 = (g.cell * noff)[None, :] * 4 + np.arange(4)[:, None]
        loc_ti = np.zeros(ncl * noff * 4)
        for off, b_ in zip(g.offsets, terms.weights, strict=True):
            loc_ti += np.bincount((key0 + off * 4).ravel(), (wb * b_).ravel(),
                                  minlength=ncl * noff * 4)
        self.acc_ti[clo:clo + ncl] += loc_ti.reshape(ncl, noff, 4)

    def _add_stars(self, p: PatchPoints, g: PatchGeometry, wu: np.ndarray, wy: np.ndarray,
                   m: np.ndarray, s2s: np.ndarray) -> None:
        """Star-T and star-ipx couplings: each star's profile over node columns and cells."""
        ns, nha, base = p.nstars, g.nha, self.nstars
        ncl, clo = g.ncrow * g.ncha, g.c_lo * g.ncha
        skey = p.star.astype(np.int64) * nha
        prof = np.bincount(skey + g.k0, wu * (1.0 - g.fu), minlength=ns * nha)
        prof += np.bincount(skey + g.k1, wu * g.fu, minlength=ns * nha)
        nz = np.flatnonzero(prof)
        self._t_prof.append((nz // nha + base, nz % nha, prof[nz]))
        ckey = p.star.astype(np.int64) * ncl + g.cell
        wb = wu * g.basis
        for i in range(4):
            pr = np.bincount(ckey, wb[i], minlength=ns * ncl)
            nz = np.flatnonzero(pr)
            self._i_prof.append((nz // ncl + base, nz % ncl + clo, np.full(len(nz), i),
                                 pr[nz]))
        ws = np.bincount(p.star, wu, minlength=ns)
        zs = np.bincount(p.star, wy, minlength=ns)
        self._stars.append(np.stack([p.dec, p.vmag, m, s2s, ws, zs]))
        self.nstars += ns

    def result(self) -> SpatialNormals:
        """The sums, to send to the parent."""
        stars = np.concatenate(self._stars, axis=1) if self._stars else np.empty((6, 0))
        t_prof = _concat_columns(self._t_prof, 3)
        i_prof = _concat_columns(self._i_prof, 4)
        return SpatialNormals(self.acc_t, self.rhs_t, self.acc_i, self.rhs_i, self.acc_ti,
                              stars[0], stars[1], stars[2], stars[3], stars[4], stars[5],
                              (t_prof[0], t_prof[1], t_prof[2]),
                              (i_prof[0], i_prof[1], i_prof[2], i_prof[3]))


def _concat_columns(parts: list[tuple[np.ndarray, ...]], n: int) -> list[np.ndarray]:
    if not parts:
        return [np.empty(0) for _ in range(n)]
    return [np.concatenate(column) for column in zip(*parts, strict=True)]
