"""Adding a frame's tiles into their accumulator rows, in one compiled loop (numba).

A set's stack keeps, for every tile of the image and every half-pixel phase, a row of
``tile * tile`` sums (:class:`~mascara_actors.binning.stack.SetStack`). numpy could add a
frame only by gathering its tiles and their accumulator rows into copies, adding and
scattering back: 19-25 ms for a full frame. This adds each tile's rows in place: 10 ms
(docs/performance.md).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = ["add_tiles"]

_U = np.uint64
_NONE = np.zeros(0, np.uint8)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _add(frame: np.ndarray, nx: int, src_y: np.ndarray, src_x: np.ndarray, dest: np.ndarray,
         sums: np.ndarray, tile: int, nan: np.ndarray, missing: np.ndarray,
         ) -> None:  # pragma: no cover - compiled; covered through add_tiles
    # unsigned flat indices: numba then checks no index for wrapping around (see gather.py)
    size = tile * tile
    count = nan.shape[0] > 0
    for t in range(dest.shape[0]):
        base = src_y[t] * nx + src_x[t]
        row = dest[t] * size
        for r in range(tile):
            s = _U(base + r * nx)
            d = _U(row + r * tile)
            for c in range(tile):
                sums[d + _U(c)] += frame[s + _U(c)]
            if count:
                for c in range(tile):
                    missing[d + _U(c)] += nan[s + _U(c)]


def add_tiles(frame: NDArray[np.float32], src_y: NDArray[np.intp], src_x: NDArray[np.intp],
              dest: NDArray[np.intp], sums: NDArray[np.float32], *,
              nan: NDArray[np.bool_] | None = None, missing: NDArray[np.uint8] | None = None,
              ) -> None:
    """Add the tile of ``frame`` at ``(src_y[t], src_x[t])`` (its top left pixel) to row
    ``dest[t]`` of ``sums`` (shape (rows, tile * tile)), for every ``t``; with ``nan`` (the
    frame's NaN mask) add its tiles to the same rows of ``missing`` too.

    Rows ``dest`` must be distinct within a call (calls on disjoint rows may run in threads
    at once). ValueError when a tile leaves the frame or a row the sums: the compiled loop
    checks no index.
    """
    ny, nx = frame.shape
    tile = math.isqrt(sums.shape[1])
    if (frame.dtype != sums.dtype or tile * tile != sums.shape[1]
            or not sums.flags.c_contiguous or src_x.shape != dest.shape
            or src_y.shape != dest.shape or (nan is None) != (missing is None)
            or (missing is not None and (missing.shape != sums.shape
                                         or not missing.flags.c_contiguous))
            or (nan is not None and nan.shape != frame.shape)):
        raise ValueError(f"tiles of a {frame.shape} {frame.dtype} frame into "
                         f"{sums.shape} {sums.dtype} sums: the arrays do not fit together")
    if dest.size and (src_y.min() < 0 or src_x.min() < 0 or src_y.max() > ny - tile
                      or src_x.max() > nx - tile or dest.min() < 0
                      or dest.max() >= sums.shape[0]):
        raise ValueError(f"a tile leaves the {frame.shape} frame or the {sums.shape[0]} rows")
    _add(np.ascontiguousarray(frame).reshape(-1), nx, src_y.astype(np.int64, copy=False),
         src_x.astype(np.int64, copy=False), dest.astype(np.int64, copy=False),
         sums.reshape(-1), tile,
         _NONE if nan is None else np.ascontiguousarray(nan).view(np.uint8).reshape(-1),
         _NONE if missing is None else missing.reshape(-1))
