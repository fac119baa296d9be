"""The good points of one sky patch, kept in a scratch file, and where they fall on the maps.

A worker keeps one patch in memory at a time: :meth:`PatchPoints.save` writes its points as a
numpy ``.npz`` archive (never a pickle) after the quality cuts, :meth:`PatchPoints.load`
reads them back on every iteration, and :class:`PatchGeometry` places them on the
transmission nodes and intrapixel cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mascara_actors.decorrelation.grids import IntrapixelGrid, TransmissionGrid

__all__ = ["MapTerms", "PatchGeometry", "PatchPoints", "scratch_path"]


def scratch_path(scratch: Path, patch: int) -> Path:
    """The scratch file of sky patch ``patch``."""
    return scratch / f"patch_{patch:04d}.npz"


@dataclass(frozen=True)
class PatchPoints:
    """The good points of the stars of one sky patch, sorted by star then lstseq.

    Per star: ``ids``, ``dec``, ``vmag``; per exposure of the patch (a cloud cell):
    ``lstseq``; per point: ``star`` and ``t`` (indices into those), ``mag``, ``emag``,
    ``ha`` (degrees), ``x``, ``y`` (pixels, float32).
    """

    ids: np.ndarray
    dec: np.ndarray
    vmag: np.ndarray
    ra0: float
    """RA of the patch centre, degrees."""
    star: np.ndarray
    t: np.ndarray
    lstseq: np.ndarray
    mag: np.ndarray
    emag: np.ndarray
    ha: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @property
    def nstars(self) -> int:
        """Stars of the patch."""
        return len(self.ids)

    @property
    def ncells(self) -> int:
        """Cloud cells (exposures) of the patch."""
        return len(self.lstseq)

    def save(self, path: Path) -> None:
        """Write the points (magnitudes, HA and positions as float32) to ``path``."""
        np.savez(path, ids=self.ids, dec=self.dec, vmag=self.vmag, ra0=np.array([self.ra0]),
                 star=self.star.astype(np.int32), t=self.t.astype(np.int32),
                 lstseq=self.lstseq, mag=self.mag.astype(np.float32),
                 emag=self.emag.astype(np.float32), ha=self.ha.astype(np.float32),
                 x=self.x.astype(np.float32), y=self.y.astype(np.float32))

    @classmethod
    def load(cls, path: Path) -> PatchPoints:
        """Read points written by :meth:`save` (magnitudes and HA back in float64)."""
        with np.load(path) as z:
            return cls(ids=z["ids"], dec=z["dec"], vmag=z["vmag"], ra0=float(z["ra0"][0]),
                       star=z["star"], t=z["t"], lstseq=z["lstseq"],
                       mag=z["mag"].astype(float), emag=z["emag"].astype(float),
                       ha=z["ha"].astype(float), x=z["x"], y=z["y"])


@dataclass(frozen=True)
class MapTerms:
    """The maps at the points of a patch, with the nodes that made T."""

    trans: np.ndarray
    """T at each point, mag."""
    ipx: np.ndarray
    """The intrapixel term at each point, mag."""
    nodes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    """Local flat node indices (from the patch's first node row) of the four corners."""
    weights: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    """Their bilinear weights."""


@dataclass(frozen=True)
class PatchGeometry:
    """Where the points of a patch fall on the node and cell grids.

    Indices are local: node rows from ``j_lo`` (``nrow`` rows), cell rows from ``c_lo``
    (``ncrow`` rows), so a patch's share of the normal equations stays small.
    """

    nha: int
    """Node columns of the transmission grid."""
    ncha: int
    """Cell columns of the intrapixel grid."""
    k0: np.ndarray
    k1: np.ndarray
    """Node columns west and east of each point."""
    fu: np.ndarray
    """Weight of the east column."""
    row: np.ndarray
    """Local node row below each point (every star keeps its declination)."""
    fv: np.ndarray
    """Weight of the row above."""
    j_lo: int
    nrow: int
    cell: np.ndarray
    """Local intrapixel cell of each point."""
    c_lo: int
    ncrow: int
    basis: np.ndarray
    """Pixel-phase basis of each point, (4, n)."""
    offsets: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    """Offset of each corner node from the first node of the point's cell, in the
    (r_ha + 1) x (r_dec + 1) nodes a cell touches."""

    @classmethod
    def of(cls, p: PatchPoints, grid: TransmissionGrid, ipx_grid: IntrapixelGrid
           ) -> PatchGeometry:
        """The geometry of ``p`` (its stored HA is already in [-180, 180))."""
        u = (p.ha + 180.0) / grid.ha_step
        k0 = np.floor(u).astype(np.int64)
        js, fvs = grid.dec_weights(p.dec)
        j_lo = int(js.min())
        # intrapixel cells span r_ha x r_dec node intervals; the four nodes of a point sit
        # at one of (r_ha + 1) x (r_dec + 1) offsets from its cell's first node
        r_ha = round(ipx_grid.ha_step / grid.ha_step)
        r_dec = round(ipx_grid.dec_step / grid.dec_step)
        ri = js // r_dec
        c_lo = int(ri.min())
        kc = (k0 % grid.nha) // r_ha
        ok0 = k0 % grid.nha - kc * r_ha
        oj0 = (js - ri * r_dec)[p.star]
        width = r_ha + 1
        return cls(
            nha=grid.nha, ncha=ipx_grid.nha, k0=k0 % grid.nha, k1=(k0 + 1) % grid.nha,
            fu=u - k0, row=(js - j_lo)[p.star], fv=fvs[p.star], j_lo=j_lo,
            nrow=int(js.max()) - j_lo + 2, cell=(ri - c_lo)[p.star] * ipx_grid.nha + kc,
            c_lo=c_lo, ncrow=int(ri.max()) - c_lo + 1, basis=_phase_basis(p.x, p.y),
            offsets=(ok0 + width * oj0, ok0 + 1 + width * oj0, ok0 + width * (oj0 + 1),
                     ok0 + 1 + width * (oj0 + 1)))

    def maps_at(self, T: np.ndarray, ipx: np.ndarray) -> MapTerms:
        """T and the intrapixel term at the points, from the full node values ``T`` and
        cell amplitudes ``ipx`` (ncell, 4)."""
        nha = self.nha
        tl = T[self.j_lo * nha:(self.j_lo + self.nrow) * nha]
        base = self.row * nha
        n00, n10 = base + self.k0, base + self.k1
        n01, n11 = n00 + nha, n10 + nha
        gu, gv = 1.0 - self.fu, 1.0 - self.fv
        b00, b10, b01, b11 = gu * gv, self.fu * gv, gu * self.fv, self.fu * self.fv
        t_pt = tl[n00] * b00 + tl[n10] * b10 + tl[n01] * b01 + tl[n11] * b11
        amp = ipx[self.c_lo * self.ncha:(self.c_lo + self.ncrow) * self.ncha][self.cell]
        i_pt: np.ndarray = np.einsum("in,ni->n", self.basis, amp)
        return MapTerms(t_pt, i_pt, (n00, n10, n01, n11), (b00, b10, b01, b11))


def _phase_basis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`~mascara_actors.decorrelation.grids.pixel_basis` of float32 positions: the
    pixel phase in float32 is exact enough (x < 2**12) and twice as fast."""
    px = x - np.floor(x)
    py = y - np.floor(y)
    two_pi = np.float32(2 * np.pi)
    out: np.ndarray = np.stack([np.sin(two_pi * px), np.cos(two_pi * px),
                                np.sin(two_pi * py), np.cos(two_pi * py)]).astype(np.float64)
    return out
