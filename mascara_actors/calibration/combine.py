"""The robust combine of a master: a sigma-clipped mean about the per-pixel median.

Never a plain mean over outliers (:data:`COMBINE_METHOD`); streamed in row blocks of
float32 (:data:`BLOCK_BYTES`), so that 20 full-size frames need a few frames' worth of
memory.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from mascara_actors.calibration.sources import Source

__all__ = ["BLOCK_BYTES", "CLIP_NSIGMA", "COMBINE_METHOD", "clipped_mean", "combine_frames"]

CLIP_NSIGMA = 4.0
"""Clipping threshold of the master combine, in per-pixel robust sigmas."""
COMBINE_METHOD = "clipmean4"
"""The ``METHOD`` header value: mean after clipping at 4 sigma about the per-pixel median."""
BLOCK_BYTES = 16 * 2**20
"""Size of the float32 stack of one row block during a combine, bytes."""

_IQR_TO_SIGMA = 1.0 / 1.349
_COLUMNS = 16384
"""Pixels combined at a time: the frames' values of that many pixels stay in the cache."""


@functools.cache
def _sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Comparators ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort of ``n`` values.

    The network of the next power of two, less the comparators that reach past ``n``: the
    values missing there would be larger than any, and such comparators never move them.
    """
    size = 1 << max(n - 1, 0).bit_length()
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def _sort_frames(s: np.ndarray) -> None:
    """Sort ``s`` (frames, pixels) along axis 0 in place, NaN last, as ``np.sort`` does.

    numpy sorts along a first axis one pixel at a time, a call per pixel; a sorting network
    is a few dozen whole-row minima and maxima (``fmin`` keeps the number of a pair holding
    a NaN, ``maximum`` the NaN): about four times faster for ten frames.
    """
    low = np.empty_like(s[0])
    for i, j in _sorting_network(s.shape[0]):
        np.fmin(s[i], s[j], out=low)
        np.maximum(s[i], s[j], out=s[j])
        s[i] = low


def _sorted_quantile(s: np.ndarray, valid: np.ndarray | int, q: float) -> np.ndarray:
    """Quantile ``q`` along axis 0 of ``s`` sorted with NaN last; ``valid`` non-NaN counts."""
    if isinstance(valid, int):
        pos = (valid - 1) * q
        lo = math.floor(pos)
        hi = min(lo + 1, valid - 1)
        at: np.ndarray = s[lo] + (s[hi] - s[lo]) * np.float32(pos - lo)
        return at
    pos = (np.maximum(valid, 1) - 1) * q
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(valid, 1) - 1)
    a = np.take_along_axis(s, lo[None], axis=0)[0]
    b = np.take_along_axis(s, hi[None], axis=0)[0]
    quantile: np.ndarray = a + (b - a) * (pos - lo).astype(np.float32)
    return quantile


def clipped_mean(stack: np.ndarray, nsigma: float = CLIP_NSIGMA) -> np.ndarray:
    """Robust mean along axis 0 of ``stack`` (frames, pixels), float32: clip at ``nsigma``
    robust sigmas about the median.

    The sigma of each pixel is its interquartile range / 1.349 over the frames. At least
    half the frames always survive (those between the quartiles), so a pixel is NaN only
    when it is NaN in every frame.
    """
    out = np.empty(stack.shape[1:], np.float32)
    for c0 in range(0, stack.shape[1], _COLUMNS):
        cols = slice(c0, c0 + _COLUMNS)
        out[cols] = _clipped_mean_sorted(np.array(stack[:, cols]), nsigma)
    return out


def _clipped_mean_sorted(s: np.ndarray, nsigma: float) -> np.ndarray:
    """:func:`clipped_mean` of ``s`` (frames, pixels), which it sorts in place."""
    _sort_frames(s)  # NaN sorts last
    n = s.shape[0]
    valid: np.ndarray | int = n
    if np.isnan(s[-1]).any():
        valid = np.count_nonzero(~np.isnan(s), axis=0)
    med = _sorted_quantile(s, valid, 0.5)
    limit = (_sorted_quantile(s, valid, 0.75) - _sorted_quantile(s, valid, 0.25)) * np.float32(
        nsigma * _IQR_TO_SIGMA
    )
    keep = s >= med - limit  # NaN compares False
    keep &= s <= med + limit
    total = np.sum(s, axis=0, where=keep, dtype=np.float32)
    count = np.count_nonzero(keep, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: np.ndarray = (total / count).astype(np.float32)
    return mean


def combine_frames(sources: Sequence[Source],
                   prepare: Callable[[int, np.ndarray, int, int], None] | None = None,
                   ) -> np.ndarray:
    """Robust combine of the full readouts, streamed in row blocks of float32.

    ``prepare(i, rows, r0, r1)`` may modify frame ``i``'s float32 rows ``r0:r1`` in place
    before the combine (dark subtraction and normalisation of flats).
    """
    ny, nx = sources[0].shape
    n = len(sources)
    block = max(1, min(ny, BLOCK_BYTES // (4 * n * nx)))
    out = np.empty((ny, nx), np.float32)
    stack = np.empty((n, block, nx), np.float32)
    for r0 in range(0, ny, block):
        r1 = min(ny, r0 + block)
        part = stack[:, : r1 - r0]
        for i, src in enumerate(sources):
            part[i] = src.rows(r0, r1)
            if prepare is not None:
                prepare(i, part[i], r0, r1)
        out[r0:r1] = clipped_mean(part.reshape(n, -1)).reshape(r1 - r0, nx)
    return out
