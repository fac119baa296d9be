"""Finding stars on a frame and measuring where they are.

Used by the astrometry (blind matching and per-set verification), never by the fast
photometry, which measures at the positions the camera model predicts.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

__all__ = ["BlockBackground", "background_map", "block_medians", "find_peaks",
           "windowed_centroids"]

_ROWS_PER_BLOCK = 16
"""Rows of the background map made at once (their float64 temporaries stay in cache)."""


def _median_last_axis(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=-1)``, bit for bit, for floating ``a`` without NaN (the caller
    checks); other types are left to ``np.median``.

    For an even count np.median partitions about the two middle values at once, which
    numpy does with its generic selection; one middle value is a vectorised selection (five
    times faster on 64 x 64 blocks), and the other is the largest value below it.
    """
    n = a.shape[-1]
    if not np.issubdtype(a.dtype, np.floating) or n == 0:
        return np.asarray(np.median(a, axis=-1))
    k = n // 2
    part = np.partition(a, k, axis=-1)
    upper = part[..., k]
    if n % 2:
        return upper.copy()
    # as np.median: the mean of the two, their sum in the data's type halved
    median: np.ndarray = (part[..., :k].max(axis=-1) + upper) / 2
    return median


def block_medians(image: np.ndarray, box: int, step: int = 1) -> np.ndarray:
    """Median of each ``box`` x ``box`` block of ``image`` (of every ``step``-th pixel of it
    along both axes; NaN left out), shape (ny // box, nx // box), ADU."""
    ny, nx = image.shape
    by, bx = max(ny // box, 1), max(nx // box, 1)
    m = box // step
    core = image[: by * box : step, : bx * box : step].reshape(by, m, bx, m)
    # copyto into the block layout is several times faster than reshaping the transpose
    blocks = np.empty((by, bx, m, m), image.dtype)
    np.copyto(blocks, core.transpose(0, 2, 1, 3))
    values = blocks.reshape(by, bx, m * m)
    if np.isnan(values).any():  # nanmedian goes block by block: only when it must
        return np.asarray(np.nanmedian(values, axis=2))
    return _median_last_axis(values)


class BlockBackground:
    """A smooth background: medians of ``box`` x ``box`` blocks, bilinearly interpolated.

    Stars cover a tiny fraction of each block, so the block median is the sky. The map is
    interpolated along the rows once (a column per block); :meth:`image` finishes the whole
    map and :meth:`at` gives its values at chosen pixels only, the same values bit for bit
    (each interpolated value depends on its own coordinates alone).
    """

    def __init__(self, image: np.ndarray, *, box: int = 64) -> None:
        ny, nx = image.shape
        med = block_medians(image, box)
        by, bx = med.shape
        yy = (np.arange(ny) + 0.5) / box - 0.5
        xx = np.clip((np.arange(nx) + 0.5) / box - 0.5, 0, bx - 1)
        self.shape = (ny, nx)
        self._rows = ndimage.map_coordinates(
            med, np.meshgrid(np.clip(yy, 0, by - 1), np.arange(bx), indexing="ij"), order=1
        )
        # Along the rows: the two block columns around each pixel column and their weights.
        self._i0 = np.floor(xx).astype(np.intp)
        self._i1 = np.minimum(self._i0 + 1, bx - 1)
        self._t = xx - self._i0
        self._w0 = 1.0 - self._t

    @staticmethod
    def _mix(left: np.ndarray, right: np.ndarray, w_left: np.ndarray,
             w_right: np.ndarray) -> np.ndarray:
        # The one expression of the map's values, for the whole map and for chosen pixels
        # alike: elementwise float64 arithmetic on the same values gives the same bits.
        values: np.ndarray = (left * w_left + right * w_right).astype(np.float32)
        return values

    def image(self) -> np.ndarray:
        """The whole map, float32, the shape of the image."""
        ny, _ = self.shape
        out = np.empty(self.shape, np.float32)
        # Blocks of rows keep the float64 temporaries in cache (and memory bounded).
        for start in range(0, ny, _ROWS_PER_BLOCK):
            rows = self._rows[start:start + _ROWS_PER_BLOCK]
            out[start:start + _ROWS_PER_BLOCK] = self._mix(
                np.take(rows, self._i0, axis=1), np.take(rows, self._i1, axis=1),
                self._w0, self._t)
        return out

    def at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The map at pixels ``(y, x)`` (integer arrays, broadcast together), float32."""
        y, x = np.broadcast_arrays(y, x)
        return self._mix(self._rows[y, self._i0[x]], self._rows[y, self._i1[x]],
                         self._w0[x], self._t[x])


def background_map(image: np.ndarray, *, box: int = 64) -> np.ndarray:
    """A smooth background: medians of ``box`` x ``box`` blocks, bilinearly interpolated.

    Stars cover a tiny fraction of each block, so the block median is the sky. (Where only
    some pixels are needed, :class:`BlockBackground` gives them at a fraction of the cost.)
    """
    return BlockBackground(image, box=box).image()


def find_peaks(
    image: np.ndarray,
    *,
    nmax: int = 1000,
    threshold_sigma: float = 10.0,
    margin: int = 10,
    saturation: float = 63000.0,
    raw_peak: np.ndarray | None = None,
    truncate: float = 4.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima of a background-subtracted, smoothed image: the ``nmax`` brightest.

    A peak is a pixel of the smoothed image above the threshold that no pixel of its 5 x 5
    neighbourhood exceeds (a NaN neighbour makes it none). Only the pixels above the
    threshold, a few per cent, are tested, not the whole image.

    Parameters
    ----------
    image
        Background-subtracted science image, ADU.
    threshold_sigma
        Detection threshold in units of the robust image noise.
    margin
        Peaks closer than this to an edge are dropped, pixels (at least 2).
    saturation, raw_peak
        Peaks whose ``raw_peak`` value (e.g. the calibrated image before background
        subtraction) reaches ``saturation`` anywhere in their 5 x 5 neighbourhood are
        dropped: their centres are flat.
    truncate
        The smoothing Gaussian (sigma 1 pixel) is cut at this many sigma.

    Returns
    -------
    x, y, height
        Integer peak positions (pixels) and smoothed heights (ADU), brightest first.
    """
    smooth = ndimage.gaussian_filter(image, 1.0, truncate=truncate)
    sample = smooth[::7, ::7]
    med = np.median(sample)
    noise = 1.4826 * np.median(np.abs(sample - med))
    above = smooth > med + threshold_sigma * max(noise, 1e-6)
    m = max(margin, 2)  # the neighbourhood of every candidate lies on the image
    above[:m] = above[-m:] = False
    above[:, :m] = above[:, -m:] = False
    y, x = np.nonzero(above)
    h = smooth[y, x]
    # The 8 nearest neighbours first: they leave few candidates for the outer 16.
    for ring in (1, 2):
        is_max = np.ones(h.shape, bool)
        for dy in range(-ring, ring + 1):
            for dx in range(-ring, ring + 1):
                if max(abs(dy), abs(dx)) == ring:
                    is_max &= h >= smooth[y + dy, x + dx]
        x, y, h = x[is_max], y[is_max], h[is_max]
    if raw_peak is not None:
        around = sliding_window_view(raw_peak, (5, 5))[y - 2, x - 2].reshape(len(y), 25)
        ok = np.fmax.reduce(around, axis=1) < saturation  # NaN pixels ignored
        x, y, h = x[ok], y[ok], h[ok]
    order = np.argsort(h)[::-1][:nmax]
    return x[order], y[order], h[order]


def windowed_centroids(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    sigma: float = 1.2,
    half: int = 5,
    iterations: int = 8,
    background: BlockBackground | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian-windowed centroids (as SExtractor's XWIN), vectorised over stars.

    The window follows the star, so the estimate is unbiased for symmetric profiles
    (including a trail, whose centre is its midpoint), unlike a plain box centroid.

    Parameters
    ----------
    image
        Background-subtracted image, ADU.
    x, y
        Starting positions, pixels.
    background
        When given, ``image`` is not background-subtracted: this background is subtracted
        from the pixels gathered (the same values as with ``image - background.image()``,
        without making the whole map).
    sigma
        Window width, pixels (about the PSF sigma).
    half
        Half size of the box gathered around each star, pixels.

    Returns
    -------
    x, y, ok
        Refined positions and a mask of stars whose window stayed inside the image and
        whose weighted flux is positive.
    """
    ny, nx = image.shape
    xc = np.asarray(x, float).copy()
    yc = np.asarray(y, float).copy()
    offs = np.arange(-half, half + 1)
    ok = np.ones(xc.shape, bool)
    for _ in range(iterations):
        xi = np.round(xc).astype(np.int64)
        yi = np.round(yc).astype(np.int64)
        inside = (xi - half >= 0) & (xi + half < nx) & (yi - half >= 0) & (yi + half < ny)
        ok &= inside
        xi = np.clip(xi, half, nx - 1 - half)
        yi = np.clip(yi, half, ny - 1 - half)
        gx = xi[:, None, None] + offs[None, None, :]
        gy = yi[:, None, None] + offs[None, :, None]
        if background is None:
            cut = image[gy, gx].astype(float)
        else:
            cut = (image[gy, gx] - background.at(gy, gx)).astype(float)
        dx = gx - xc[:, None, None]
        dy = gy - yc[:, None, None]
        w = np.exp(-(dx * dx + dy * dy) / (2.0 * sigma * sigma)) * cut
        tot = w.sum(axis=(1, 2))
        good = tot > 0
        ok &= good
        tot = np.where(good, tot, 1.0)
        xc = xc + 2.0 * (w * dx).sum(axis=(1, 2)) / tot * good
        yc = yc + 2.0 * (w * dy).sum(axis=(1, 2)) / tot * good
    return xc, yc, ok
