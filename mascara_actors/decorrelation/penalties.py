"""Smoothness penalties of the camera maps and the unknowns they act on.

T gets a weak curvature penalty (second differences along HA, periodic, and declination):
a node is then fed by every star within a degree and the map is continuous. The intrapixel
amplitudes get a weak first-difference penalty between neighbouring cells: the response
follows the PSF, which changes smoothly over the chip, so where the pixel phases sampled in
one region leave a combination of amplitudes undetermined, the neighbours decide.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mascara_actors.decorrelation.grids import IntrapixelGrid, TransmissionGrid

__all__ = ["curvature_rows", "difference_rows", "dilate", "penalty"]


def curvature_rows(grid: TransmissionGrid) -> np.ndarray:
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


def difference_rows(grid: IntrapixelGrid) -> np.ndarray:
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


def penalty(rows: np.ndarray, coeffs: tuple[float, ...], active: np.ndarray,
            size: int) -> sp.csr_matrix:
    """``D^T D`` of the difference rows whose unknowns are all active."""
    rows = rows[np.all(active[rows], axis=1)]
    n = len(rows)
    d = sp.csr_matrix((np.tile(coeffs, n), (np.repeat(np.arange(n), rows.shape[1]),
                                            rows.ravel())), shape=(n, size))
    return (d.T @ d).tocsr()


def dilate(mask: np.ndarray, nrow: int, ncol: int, steps: int) -> np.ndarray:
    """Grow a (row-major, columns periodic) mask by ``steps`` cells in each direction."""
    out = mask.reshape(nrow, ncol).copy()
    for _ in range(steps):
        grown = out | np.roll(out, 1, axis=1) | np.roll(out, -1, axis=1)
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        out = grown
    flat: np.ndarray = out.reshape(-1)
    return flat
