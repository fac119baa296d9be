"""Rows sorted once, with order statistics and window sums in O(32) per row.

The data structure under the robust sky estimators (:mod:`.sky`): window sums over a
sorted row come from prefix sums of fixed 32-pixel blocks plus one partial block, and counts
from a search of the block starts and one block, so every clipping iteration costs
O(n_stars * 32) whatever the number of pixels. The per-row loops are compiled (numba):
numpy needed a gather of each row's block and masks around it, twice the time (issue 17).
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["SortedRows"]

_BLOCK = 32
_PREPARE_CHUNK = 256


@numba.njit(cache=True, nogil=True)
def _count_below(buf: np.ndarray, starts: np.ndarray, rows: np.ndarray, npix: np.ndarray,
                 bound: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    for i in range(rows.shape[0]):
        r = rows[i]
        t = bound[i]
        lo, hi = 0, starts.shape[1]
        while lo < hi:  # blocks that start below t (NaN starts and a NaN t compare false)
            mid = (lo + hi) >> 1
            if starts[r, mid] < t:
                lo = mid + 1
            else:
                hi = mid
        count = 0
        if lo > 0:
            first = (lo - 1) * _BLOCK
            count = first
            for j in range(first, first + _BLOCK):
                if buf[r, j] < t:
                    count += 1
        out[i] = min(count, npix[r])


@numba.njit(cache=True, nogil=True)
def _subtract_and_sum(v: np.ndarray, ref: np.ndarray, starts: np.ndarray, p1: np.ndarray,
                      p2: np.ndarray) -> None:  # pragma: no cover - compiled; see prepare
    # One pass a row: d = v - ref in place, each block's first d, and the prefix sums of d
    # and d**2 over whole blocks (NaN from the first block holding a NaN: never used).
    # Four running sums a block, added in a fixed order: the additions overlap, and the
    # result does not depend on the CPU (as a vectorising compiler's order would).
    for i in range(v.shape[0]):
        p1[i, 0] = 0.0
        p2[i, 0] = 0.0
        for b in range(starts.shape[1]):
            a0 = a1 = a2 = a3 = q0 = q1 = q2 = q3 = 0.0
            for j in range(b * _BLOCK, b * _BLOCK + _BLOCK, 4):
                v[i, j] -= ref[i]
                v[i, j + 1] -= ref[i]
                v[i, j + 2] -= ref[i]
                v[i, j + 3] -= ref[i]
                d0, d1 = np.float64(v[i, j]), np.float64(v[i, j + 1])
                d2, d3 = np.float64(v[i, j + 2]), np.float64(v[i, j + 3])
                a0 += d0
                a1 += d1
                a2 += d2
                a3 += d3
                q0 += d0 * d0
                q1 += d1 * d1
                q2 += d2 * d2
                q3 += d3 * d3
            b1 = (a0 + a1) + (a2 + a3)
            b2 = (q0 + q1) + (q2 + q3)
            starts[i, b] = v[i, b * _BLOCK]
            p1[i, b + 1] = p1[i, b] + b1
            p2[i, b + 1] = p2[i, b] + b2


@numba.njit(cache=True, nogil=True)
def _prefix_sums(buf: np.ndarray, p1: np.ndarray, p2: np.ndarray, rows: np.ndarray,
                 k: np.ndarray, s1: np.ndarray, s2: np.ndarray,
                 ) -> None:  # pragma: no cover - compiled; see SortedRows._prefix
    for i in range(rows.shape[0]):
        r, b = rows[i], k[i] // _BLOCK
        a1 = 0.0
        a2 = 0.0
        for j in range(b * _BLOCK, k[i]):
            v = np.float64(buf[r, j])
            a1 += v
            a2 += v * v
        s1[i] = p1[r, b] + a1
        s2[i] = p2[r, b] + a2


class SortedRows:
    """Rows sorted ascending (NaNs last) with fast order statistics and window sums.

    Parameters
    ----------
    values : ndarray, shape (n, m)
        Each row sorted ascending, NaNs last (as ``np.sort`` leaves them), ADU.
    npix : array_like of int, shape (n,), optional
        Number of usable entries per row (the first ``npix[i]`` of row ``i``); default the
        number of non-NaN entries.
    overwrite : bool
        Allow ``values`` to be overwritten (it then holds ``values - ref``), which saves a
        copy when ``m`` is a multiple of 32. Otherwise ``values`` is not modified.

    Attributes
    ----------
    buffer : ndarray, shape (n, m rounded up to a multiple of 32)
        The stored rows (``values - ref`` once prepared; padded with NaN).
    m : int
        Number of columns of :attr:`buffer`.
    npix : ndarray of int, shape (n,)
        Number of usable entries per row. It may be lowered after construction, e.g. to
        leave out saturated values, which sort to the end of the finite part.
    ref : ndarray of float64, shape (n,)
        Median of the finite entries of each row (0 for an empty row), ADU; subtracted from
        the stored values to keep float32 sums accurate.

    Notes
    -----
    Rows are stored as ``d = values - ref``, which keeps float32 sums accurate, in blocks
    of 32 entries. Window sums add block prefix sums to one partial block; counts search
    the block starts, then count in one block. Every query costs O(32) per row whatever the
    row length. Every query takes ``sel``, the indices of the rows to work on (default all);
    indices may repeat, so several queries on the same rows can be batched in one call.

    To fill the rows chunk by chunk while the data is in cache, use :meth:`empty`, write
    sorted rows into :attr:`buffer` and call :meth:`prepare` on each chunk.
    """

    def __init__(self, values: NDArray[np.floating], npix: ArrayLike | None = None, *,
                 overwrite: bool = False) -> None:
        if values.ndim != 2:
            raise ValueError(f"values must be 2-D (stars, pixels), got shape {values.shape}")
        if values.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            values = values.astype(np.float64)  # integers, float16, big-endian data
            overwrite = True
        n, m = values.shape
        mp = max(1, -(-m // _BLOCK)) * _BLOCK
        if overwrite and mp == m and values.flags.c_contiguous and values.flags.writeable:
            buf = values
        else:
            buf = np.empty((n, mp), dtype=values.dtype)
            buf[:, :m] = values
            buf[:, m:] = np.nan
        self._setup(buf)
        counts = None if npix is None else np.asarray(npix, dtype=np.intp)
        for start in range(0, n, _PREPARE_CHUNK):
            s = slice(start, min(start + _PREPARE_CHUNK, n))
            self.prepare(s, None if counts is None else counts[s])

    @classmethod
    def empty(cls, n: int, m: int, dtype: np.dtype | type = np.float32) -> SortedRows:
        """Rows to be filled in place: write sorted rows into :attr:`buffer`, then
        :meth:`prepare` them.

        Parameters
        ----------
        n, m : int
            Number of rows and of entries per row. :attr:`buffer` has ``m`` rounded up to
            a multiple of 32 columns, uninitialised: fill every column (NaN for unused
            ones) before sorting.
        dtype : numpy dtype
            Float dtype of the values.
        """
        mp = max(1, -(-m // _BLOCK)) * _BLOCK
        buf = np.empty((n, mp), dtype=dtype)
        self = cls.__new__(cls)
        self._setup(buf)
        return self

    def _setup(self, buf: NDArray[np.floating]) -> None:
        n, mp = buf.shape
        nb = mp // _BLOCK
        self.buffer = buf
        self.m = mp
        self._nb = nb
        self.all_rows = np.arange(n)
        self.npix = np.zeros(n, dtype=np.intp)
        self.ref = np.zeros(n)
        self._dflat = buf.reshape(-1)
        self._starts = np.empty((n, nb), dtype=buf.dtype)
        self._p1 = np.zeros((n, nb + 1))
        self._p2 = np.zeros((n, nb + 1))

    def prepare(self, rows: slice, npix: ArrayLike | None = None, *,
                max_finite: ArrayLike | None = None) -> None:
        """Make rows ``rows`` of :attr:`buffer` (sorted values, NaNs last) queryable.

        Parameters
        ----------
        rows : slice
            The rows to prepare (a contiguous chunk).
        npix : array_like of int, optional
            Usable entries of each of these rows; default the non-NaN ones.
        max_finite : array_like of int, optional
            Known upper bound of the non-NaN entries per row (e.g. the caller knows how many
            NaNs it wrote); speeds up the default count.
        """
        v = self.buffer[rows]
        c = v.shape[0]
        local = np.arange(c)
        if npix is not None:
            cnt = np.asarray(npix, dtype=np.intp)
        elif max_finite is not None:
            cnt = np.asarray(max_finite, dtype=np.intp)
            # The bound is the count unless the entry before it is NaN (NaNs of the data).
            short = np.isnan(v[local, np.maximum(cnt - 1, 0)]) & (cnt > 0)
            if short.any():
                cnt = np.where(short, self._count_finite(v), cnt)
        else:
            cnt = self._count_finite(v)
        ref = 0.5 * (v[local, np.clip((cnt - 1) // 2, 0, self.m - 1)].astype(np.float64)
                     + v[local, np.clip(cnt // 2, 0, self.m - 1)].astype(np.float64))
        ref[(cnt == 0) | ~np.isfinite(ref)] = 0.0
        # Keep ref exact in the stored dtype, so that d + ref gives back v exactly (Sterbenz:
        # v - ref is exact for v within a factor 2 of ref, i.e. for all sky values).
        ref_t = ref.astype(v.dtype)
        _subtract_and_sum(v, ref_t, self._starts[rows], self._p1[rows], self._p2[rows])
        self.npix[rows] = cnt
        self.ref[rows] = ref_t.astype(np.float64)

    def _count_finite(self, v: NDArray[np.floating]) -> NDArray[np.intp]:
        """Non-NaN entries of sorted rows: count the finite block starts, then the finite
        entries of the last block that starts finite."""
        c = v.shape[0]
        nfin = np.count_nonzero(~np.isnan(v[:, ::_BLOCK]), axis=1)
        last = np.maximum(nfin - 1, 0)
        tail = v.reshape(c, self._nb, _BLOCK)[np.arange(c), last]
        return np.where(nfin > 0, last * _BLOCK + np.count_nonzero(~np.isnan(tail), axis=1), 0)

    def _sel(self, sel: NDArray[np.intp] | None) -> NDArray[np.intp]:
        return self.all_rows if sel is None else sel

    def value_at(self, index: ArrayLike, sel: NDArray[np.intp] | None = None,
                 ) -> NDArray[np.float64]:
        """Value at ``index`` of each selected row (index clipped to the row), float64 ADU."""
        rows = self._sel(sel)
        idx = np.clip(index, 0, self.m - 1)
        values: NDArray[np.float64] = (
            self._dflat[rows * self.m + idx].astype(np.float64) + self.ref[rows])
        return values

    def count_below(self, threshold: ArrayLike, sel: NDArray[np.intp] | None = None, *,
                    inclusive: bool | NDArray[np.bool_] = False) -> NDArray[np.intp]:
        """Number of usable values ``< threshold`` per selected row.

        ``inclusive`` (a bool, or one per selected row) counts ``<= threshold`` instead.
        """
        rows = self._sel(sel)
        t = np.asarray(threshold, dtype=np.float64) - self.ref[rows]
        if np.any(inclusive):
            # v <= t exactly when v < the next float above t.
            t = np.where(inclusive, np.nextafter(t, np.inf), t)
        count = np.empty(rows.size, dtype=np.intp)
        _count_below(self.buffer, self._starts, rows.astype(np.intp, copy=False), self.npix,
                     self._strict_bound(t), count)
        return count

    def _strict_bound(self, t: NDArray[np.float64]) -> NDArray[np.floating]:
        """``t`` in the dtype of the stored values, rounded up, so that ``v < result``
        exactly when ``v < t`` for every stored value ``v`` (compares stay in that dtype)."""
        dtype = self.buffer.dtype
        if dtype == np.float64:
            return t
        with np.errstate(over="ignore"):
            tv = t.astype(dtype)
        return np.where(tv < t, np.nextafter(tv, dtype.type(np.inf)), tv)

    def count_between(self, low: ArrayLike, high: ArrayLike,
                      sel: NDArray[np.intp] | None = None,
                      ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """Window ``[lo, hi)`` of the usable values within ``[low, high]`` per row."""
        rows = self._sel(sel)
        n = rows.size
        counts = self.count_below(np.concatenate([low, high]), np.concatenate([rows, rows]),
                                  inclusive=np.arange(2 * n) >= n)
        return counts[:n], counts[n:]

    def _prefix(self, k: NDArray[np.intp], rows: NDArray[np.intp],
                ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Sums of ``d`` and ``d**2`` over the first ``k`` entries of each row."""
        s1, s2 = np.empty(rows.size), np.empty(rows.size)
        _prefix_sums(self.buffer, self._p1, self._p2, rows.astype(np.intp, copy=False),
                     np.asarray(k, dtype=np.intp), s1, s2)
        return s1, s2

    def window_sums(self, lo: NDArray[np.intp], hi: NDArray[np.intp],
                    sel: NDArray[np.intp] | None = None,
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Sums of ``values - ref`` and of its square over entries ``lo <= i < hi``."""
        rows = self._sel(sel)
        n = rows.size
        s1, s2 = self._prefix(np.concatenate([lo, hi]), np.concatenate([rows, rows]))
        return s1[n:] - s1[:n], s2[n:] - s2[:n]

    def window_stats(self, lo: NDArray[np.intp], hi: NDArray[np.intp],
                     sel: NDArray[np.intp] | None = None,
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Mean and standard deviation (ddof 0) of entries ``lo <= i < hi``; NaN if empty."""
        rows = self._sel(sel)
        s1, s2 = self.window_sums(lo, hi, rows)
        n = (hi - lo).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_d = s1 / n
            var = s2 / n - mean_d * mean_d
        return self.ref[rows] + mean_d, np.sqrt(np.maximum(var, 0.0))

    def window_median(self, lo: NDArray[np.intp], hi: NDArray[np.intp],
                      sel: NDArray[np.intp] | None = None) -> NDArray[np.float64]:
        """Median of entries ``lo <= i < hi`` (mean of the two middle ones) per row."""
        rows = self._sel(sel)
        n = hi - lo
        both = self.value_at(np.concatenate([lo + (n - 1) // 2, lo + n // 2]),
                             np.concatenate([rows, rows]))
        return 0.5 * (both[: rows.size] + both[rows.size:])
