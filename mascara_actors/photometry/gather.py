"""The pixels at fixed offsets around many stars, gathered by one compiled loop (numba).

The photometry needs, for every star, its sky annulus (1,264 pixels for radii 6-21) and
the box of its largest aperture. numpy could gather them only through a copy of each
star's whole 43 x 43 box and then about 54 runs of it, 21 ms a frame of 5,000 stars; this
copies each run of the image straight into its place: 9 ms (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = ["PixelRuns", "gather_runs", "pixel_runs"]

_U = np.uint64


@dataclass(frozen=True, slots=True)
class PixelRuns:
    """Offsets from a star's pixel grouped in runs along image rows: run ``q`` is the
    ``length[q]`` pixels from ``(dy[q], dx[q])`` rightwards, which go to columns
    ``col[q]...`` of the star's output row (int64 arrays, pixels)."""

    dy: NDArray[np.int64]
    dx: NDArray[np.int64]
    length: NDArray[np.int64]
    col: NDArray[np.int64]
    width: int  # output columns the runs fill: 0 .. width - 1
    x_range: tuple[int, int]  # smallest and largest dx of a pixel
    y_range: tuple[int, int]  # smallest and largest dy


def pixel_runs(dx: NDArray[np.integer], dy: NDArray[np.integer]) -> PixelRuns:
    """The runs of the offsets ``(dx[k], dy[k])`` taken in their order: output column ``k``
    is offset ``k``; neighbours along a row that follow each other make one run."""
    dx, dy = np.asarray(dx, np.int64), np.asarray(dy, np.int64)
    if dx.shape != dy.shape or dx.ndim != 1:
        raise ValueError(f"offsets dx {dx.shape} and dy {dy.shape}: need two 1-d arrays")
    cut = np.flatnonzero((np.diff(dy) != 0) | (np.diff(dx) != 1)) + 1
    start = np.r_[0, cut].astype(np.int64) if dx.size else np.zeros(0, np.int64)
    stop = np.r_[cut, dx.size].astype(np.int64) if dx.size else np.zeros(0, np.int64)
    return PixelRuns(dy=dy[start], dx=dx[start], length=stop - start, col=start,
                     width=int(dx.size),
                     x_range=(int(dx.min(initial=0)), int(dx.max(initial=0))),
                     y_range=(int(dy.min(initial=0)), int(dy.max(initial=0))))


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _gather(flat: np.ndarray, nx: int, xi: np.ndarray, yi: np.ndarray, dy: np.ndarray,
            dx: np.ndarray, length: np.ndarray, col: np.ndarray, out: np.ndarray, m: int,
            ) -> None:  # pragma: no cover - compiled; covered through gather_runs
    # flat indices as unsigned: numba then leaves out its check for negative indices,
    # which took two thirds of the time
    for s in range(xi.shape[0]):
        base = yi[s] * nx + xi[s]
        row = s * m
        for q in range(dx.shape[0]):
            src = _U(base + dy[q] * nx + dx[q])
            dst = _U(row + col[q])
            for j in range(length[q]):
                out[dst + _U(j)] = flat[src + _U(j)]


def gather_runs(image: NDArray[np.floating], xi: NDArray[np.intp], yi: NDArray[np.intp],
                runs: PixelRuns, out: NDArray[np.floating]) -> None:
    """Fill ``out[s, :runs.width]`` with the pixels of ``runs`` around star ``s``, whose
    pixel is ``image[yi[s], xi[s]]`` (``out`` may have more columns: left as they are).

    ValueError when the arrays do not fit together or a run of a star leaves the image
    (the compiled loop checks no index).
    """
    ny, nx = image.shape
    if out.dtype != image.dtype or out.ndim != 2 or out.shape[0] != xi.size or (
            out.shape[1] < runs.width) or yi.size != xi.size or not out.flags.c_contiguous:
        raise ValueError(f"gather of {runs.width} pixels around {xi.size} stars into a "
                         f"{out.shape} {out.dtype} array from a {image.dtype} image")
    (x0, x1), (y0, y1) = runs.x_range, runs.y_range
    if xi.size and (xi.min() + x0 < 0 or yi.min() + y0 < 0 or xi.max() + x1 >= nx
                    or yi.max() + y1 >= ny):
        raise ValueError(f"a star's pixels (dx {x0}..{x1}, dy {y0}..{y1}) leave the "
                         f"{image.shape} image")
    flat = np.ascontiguousarray(image).reshape(-1)
    _gather(flat, nx, xi.astype(np.int64, copy=False), yi.astype(np.int64, copy=False),
            runs.dy, runs.dx, runs.length, runs.col, out.reshape(-1), out.shape[1])
