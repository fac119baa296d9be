"""Robust sky estimators for the pixels of a sky annulus, vectorised over stars.

Each estimator is a small class with the same interface (photutils ``background/core.py``
style): call it on an ``(n_stars, n_pixels)`` array in which NaN marks "not a sky pixel",
and get a :class:`SkyEstimate` back. Two estimators are provided, and neither is a plain
mean (a mean is biased by every neighbouring star in the annulus):

- :class:`MMMSky`: the mode estimator of the IDL astrolib ``MMM`` routine, as the legacy
  lsreduce pipeline used it (its ``mmm``), vectorised.
- :class:`ClippedMedianSky`: the median and standard deviation after iterative sigma
  clipping about the median, with the semantics of astropy's ``sigma_clipped_stats``.

Both work on rows sorted once (NaNs last). Window sums over a sorted row come from prefix
sums of fixed 32-pixel blocks plus one partial block, so every clipping iteration costs
O(n_stars * 32) whatever the number of pixels; there is no Python loop per star.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mascara_actors.errors import ConfigError

__all__ = [
    "ClippedMedianSky",
    "MMMSky",
    "SkyEstimate",
    "SkyEstimator",
    "SortedRows",
    "sky_estimator",
]

_BLOCK = 32
_PREPARE_CHUNK = 256


@dataclass(frozen=True, slots=True)
class SkyEstimate:
    """Sky level per star.

    Attributes
    ----------
    sky : ndarray of float64, shape (n,)
        Sky level, ADU per pixel; NaN where the estimate failed (too few good pixels).
    esky : ndarray of float64, shape (n,)
        Standard deviation of the sky pixels the estimate kept (the scatter of one pixel),
        ADU per pixel; NaN where the estimate failed.
    nsky : ndarray of int32, shape (n,)
        Number of pixels the estimate kept; 0 where it failed.
    """

    sky: NDArray[np.float64]
    esky: NDArray[np.float64]
    nsky: NDArray[np.int32]

    @property
    def failed(self) -> NDArray[np.bool_]:
        """True where no sky could be estimated."""
        return ~np.isfinite(self.sky)


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
    of 32 entries. Window sums add block prefix sums to one partial block; counts look up
    the block starts, then one block. Every query costs O(32) per row whatever the row
    length. Every query takes ``sel``, the indices of the rows to work on (default all);
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
        self._blocks = buf.reshape(n * nb, _BLOCK)
        self._starts = np.empty((n, nb), dtype=buf.dtype)
        self._p1 = np.zeros((n, nb + 1))
        self._p2 = np.zeros((n, nb + 1))
        self._below = np.tri(_BLOCK + 1, _BLOCK, k=-1, dtype=bool)  # [r, i] = i < r

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
        v -= ref_t[:, None]
        self.npix[rows] = cnt
        self.ref[rows] = ref_t.astype(np.float64)
        self._starts[rows] = v[:, ::_BLOCK]
        bl = v.reshape(c, self._nb, _BLOCK)
        # NaN blocks (past the finite entries) make later prefixes NaN; they are never used.
        np.cumsum(np.einsum("nbk->nb", bl), axis=1, out=self._p1[rows, 1:])
        np.cumsum(np.einsum("nbk,nbk->nb", bl, bl), axis=1, out=self._p2[rows, 1:])

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
        return self._dflat[rows * self.m + idx].astype(np.float64) + self.ref[rows]

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
        tv = self._strict_bound(t)[:, None]
        starts = self._starts if sel is None else np.take(self._starts, rows, axis=0)
        nblk = np.less(starts, tv).sum(axis=1)
        blk = np.maximum(nblk - 1, 0)
        within = np.less(np.take(self._blocks, rows * self._nb + blk, axis=0), tv).sum(axis=1)
        count = np.where(nblk > 0, blk * _BLOCK + within, 0)
        return np.minimum(count, self.npix[rows])

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
        b = k // _BLOCK
        part = np.take(self._blocks, rows * self._nb + np.minimum(b, self._nb - 1), axis=0)
        # Entries past k (NaN among them) must not reach the sums: select, not multiply.
        part = np.where(self._below[k - b * _BLOCK], part, part.dtype.type(0))
        pidx = rows * (self._nb + 1) + b
        return (self._p1.reshape(-1)[pidx] + np.einsum("nk->n", part),
                self._p2.reshape(-1)[pidx] + np.einsum("nk,nk->n", part, part))

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


class SkyEstimator(ABC):
    """Interface of a robust sky estimator.

    Parameters
    ----------
    minsky : int
        Minimum number of good pixels (legacy: 20); rows with fewer get a NaN sky.
    """

    def __init__(self, *, minsky: int = 20) -> None:
        if minsky < 1:
            raise ConfigError(f"minsky={minsky!r} must be >= 1 pixel; the legacy value is 20")
        self.minsky = int(minsky)

    def __call__(self, pixels: ArrayLike) -> SkyEstimate:
        """Estimate the sky of each row of ``pixels``.

        Parameters
        ----------
        pixels : array_like, shape (n, m)
            Annulus pixel values, ADU; NaN marks entries that are not sky pixels (outside
            the annulus, bad, saturated). Not modified.

        Returns
        -------
        SkyEstimate
        """
        values = np.array(pixels, dtype=np.result_type(np.asarray(pixels).dtype, np.float32))
        if values.ndim == 1:
            values = values[None, :]
        values.sort(axis=1)
        return self.estimate_rows(SortedRows(values, overwrite=True))

    def estimate_sorted(self, values: NDArray[np.floating], npix: ArrayLike | None = None,
                        ) -> SkyEstimate:
        """Estimate the sky from rows already sorted ascending.

        Parameters
        ----------
        values : ndarray, shape (n, m)
            Sorted rows (NaNs last), ADU. Not modified.
        npix : array_like of int, shape (n,), optional
            Number of sky pixels per row: only the first ``npix[i]`` entries of row ``i``
            are used (default: the non-NaN ones).

        Returns
        -------
        SkyEstimate
        """
        return self.estimate_rows(SortedRows(values, npix))

    @abstractmethod
    def estimate_rows(self, rows: SortedRows) -> SkyEstimate:
        """Estimate the sky of each row of a :class:`SortedRows` (its first ``npix``)."""


def _round_half_up(x: NDArray[np.float64]) -> NDArray[np.intp]:
    # IDL ROUND rounds halves away from zero; all arguments here are positive.
    return np.floor(x + 0.5).astype(np.intp)


class MMMSky(SkyEstimator):
    """Sky mode as IDL astrolib ``MMM`` (the legacy lsreduce ``mmm``), vectorised.

    Starting from the median and a window symmetric about it, iterate: clip at
    ``mode +- (r * sigma + |mean - mode| / 2)`` with the Chauvenet-like factor
    ``r = max(2, (-0.1042 lg n + 1.1695) lg n + 0.8895)``; recompute the mean and sigma of
    the window and a robust median (the mean of its central 20 %); the mode moves towards
    ``3 median - 2 mean`` when the median is below the mean (contaminated by stars),
    otherwise towards the mean, damped by halving a clamp whenever the step changes sign;
    stop when the window no longer changes.

    Parameters
    ----------
    minsky : int
        Minimum number of pixels in the window (legacy 20); fewer gives a NaN sky.
    maxiter : int
        Maximum number of iterations (legacy 50). A row still moving after ``maxiter``
        keeps its last estimate, as the legacy Python port did (IDL would fail it).
    highbad : float or None
        Values at or above this, ADU, never enter the window (legacy ``badpixval``).
        :func:`~mascara_actors.photometry.measure` already excludes saturated pixels.

    Notes
    -----
    ``sky`` is the mode, ``esky`` the standard deviation of the final window and ``nsky``
    its number of pixels (as IDL ``MMM``). On pure Gaussian noise the mode is biased low by
    about 0.7 standard errors of the mean (``0.7 * esky / sqrt(nsky)``), because the mode
    only moves below the mean; :class:`ClippedMedianSky` has no such bias.
    """

    def __init__(self, *, minsky: int = 20, maxiter: int = 50,
                 highbad: float | None = None) -> None:
        super().__init__(minsky=minsky)
        if maxiter < 1:
            raise ConfigError(f"maxiter={maxiter!r} must be >= 1; the legacy value is 50")
        self.maxiter = int(maxiter)
        self.highbad = highbad

    def __repr__(self) -> str:
        return f"MMMSky(minsky={self.minsky}, maxiter={self.maxiter}, highbad={self.highbad})"

    def estimate_rows(self, rows: SortedRows) -> SkyEstimate:
        if self.highbad is not None:
            rows.npix = rows.count_below(np.full(rows.npix.shape, float(self.highbad)))
        n = rows.npix
        nstars = n.size
        sky = np.full(nstars, np.nan)
        esky = np.full(nstars, np.nan)
        nsky = np.zeros(nstars, dtype=np.int32)
        # State of the rows still iterating; `sel` maps them to the output rows.
        sel = np.flatnonzero(n >= self.minsky)
        skymid = rows.ref[sel]
        cut = np.minimum(skymid - rows.value_at(np.zeros_like(sel), sel),
                         rows.value_at(n[sel] - 1, sel) - skymid)
        lo, hi = rows.count_between(skymid - cut, skymid + cut, sel)
        keep = (hi - lo) >= self.minsky
        sel, lo, hi = sel[keep], lo[keep], hi[keep]
        skymn, sigma = rows.window_stats(lo, hi, sel)
        skymed = rows.window_median(lo, hi, sel)
        skymod = np.where(skymed < skymn, 3.0 * skymed - 2.0 * skymn, skymn)
        clamp = np.ones(sel.size)
        old = np.zeros(sel.size)
        for _ in range(self.maxiter):
            if sel.size == 0:
                break
            lg = np.log10((hi - lo).astype(np.float64))
            r = np.maximum(2.0, (-0.1042 * lg + 1.1695) * lg + 0.8895)
            cut = r * sigma + 0.5 * np.abs(skymn - skymod)
            new_lo, new_hi = rows.count_between(skymod - cut, skymod + cut, sel)
            redo = (new_lo != lo) | (new_hi != hi)
            # Too few pixels left: the estimate fails (the row keeps its NaN output).
            keep = (new_hi - new_lo) >= self.minsky
            if not keep.all():
                sel, redo = sel[keep], redo[keep]
                skymod, clamp, old = skymod[keep], clamp[keep], old[keep]
            lo, hi = new_lo[keep], new_hi[keep]
            nw = hi - lo
            # Robust median: the mean of the central 20 % of the window (IDL indices).
            center = 0.5 * (lo + hi - 1)
            side = 0.5 * _round_half_up(0.2 * nw) + 0.25
            j = _round_half_up(center - side)
            k = _round_half_up(center + side)
            m = sel.size
            s1, s2 = rows.window_sums(np.concatenate([lo, j]), np.concatenate([hi, k + 1]),
                                      np.concatenate([sel, sel]))
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_d = s1[:m] / nw
                sigma = np.sqrt(np.maximum(s2[:m] / nw - mean_d * mean_d, 0.0))
                central = rows.ref[sel] + s1[m:] / (k - j + 1)
            skymn = rows.ref[sel] + mean_d
            dmod = np.where(central < skymn, 3.0 * central - 2.0 * skymn - skymod, skymn - skymod)
            clamp = np.where(dmod * old < 0.0, 0.5 * clamp, clamp)
            skymod = skymod + clamp * dmod
            old = dmod
            # Rows whose window did not move are done: write them out and drop them.
            done = ~redo
            sky[sel[done]] = skymod[done]
            esky[sel[done]] = sigma[done]
            nsky[sel[done]] = nw[done]
            sel, lo, hi, skymod = sel[redo], lo[redo], hi[redo], skymod[redo]
            skymn, sigma, clamp, old = skymn[redo], sigma[redo], clamp[redo], old[redo]
        # Rows still moving after maxiter keep their last estimate (legacy behaviour).
        sky[sel] = skymod
        esky[sel] = sigma
        nsky[sel] = hi - lo
        return SkyEstimate(sky=sky, esky=esky, nsky=nsky)


class ClippedMedianSky(SkyEstimator):
    """Median after iterative sigma clipping about the median (astropy semantics).

    Each iteration keeps the values within ``median +- sigma * std`` of the values kept so
    far (std with ddof 0), until nothing changes or ``maxiters`` is reached; the result is
    the median and standard deviation of the kept values, as
    ``astropy.stats.sigma_clipped_stats(data, sigma=sigma, maxiters=maxiters)``.

    Parameters
    ----------
    sigma : float
        Clipping half-width in standard deviations (default 3).
    maxiters : int
        Maximum number of clipping iterations (default 5, as astropy).
    minsky : int
        Minimum number of kept pixels (legacy 20); fewer gives a NaN sky.

    Notes
    -----
    ``esky`` is the clipped standard deviation, which underestimates the scatter of clean
    Gaussian sky by about 1.3 % at ``sigma = 3``.
    """

    def __init__(self, *, sigma: float = 3.0, maxiters: int = 5, minsky: int = 20) -> None:
        super().__init__(minsky=minsky)
        if not sigma > 0.0:
            raise ConfigError(f"sigma={sigma!r} must be > 0 standard deviations; try 3")
        if maxiters < 1:
            raise ConfigError(f"maxiters={maxiters!r} must be >= 1; astropy's default is 5")
        self.sigma = float(sigma)
        self.maxiters = int(maxiters)

    def __repr__(self) -> str:
        return (f"ClippedMedianSky(sigma={self.sigma}, maxiters={self.maxiters}, "
                f"minsky={self.minsky})")

    def estimate_rows(self, rows: SortedRows) -> SkyEstimate:
        lo = np.zeros_like(rows.npix)
        hi = rows.npix.copy()
        sel = np.flatnonzero(hi > 0)
        for _ in range(self.maxiters):
            if sel.size == 0:
                break
            wlo, whi = lo[sel], hi[sel]
            med = rows.window_median(wlo, whi, sel)
            _, std = rows.window_stats(wlo, whi, sel)
            clip_lo, clip_hi = rows.count_between(med - self.sigma * std,
                                                  med + self.sigma * std, sel)
            new_lo = np.maximum(wlo, clip_lo)
            new_hi = np.minimum(whi, clip_hi)
            changed = (new_lo != wlo) | (new_hi != whi)
            lo[sel] = new_lo
            hi[sel] = new_hi
            sel = sel[changed]
        nw = hi - lo
        ok = nw >= self.minsky
        _, std = rows.window_stats(lo, hi)
        med = rows.window_median(lo, hi)
        return SkyEstimate(
            sky=np.where(ok, med, np.nan),
            esky=np.where(ok, std, np.nan),
            nsky=np.where(ok, nw, 0).astype(np.int32),
        )


_ESTIMATORS: dict[str, type[SkyEstimator]] = {"mmm": MMMSky, "clipped_median": ClippedMedianSky}


def sky_estimator(name: str, *, minsky: int = 20) -> SkyEstimator:
    """The sky estimator called ``name`` in the configuration.

    Parameters
    ----------
    name : {"mmm", "clipped_median"}
        ``photometry.sky_estimator`` in ``config/reduction.toml``.
    minsky : int
        Minimum number of good annulus pixels (``photometry.min_sky_pixels``).

    Returns
    -------
    SkyEstimator
    """
    try:
        cls = _ESTIMATORS[name]
    except KeyError:
        raise ConfigError(
            f"sky estimator {name!r} is unknown: use one of {sorted(_ESTIMATORS)} "
            "(photometry.sky_estimator)"
        ) from None
    return cls(minsky=minsky)

