"""Star detection for the blind solve: peaks above a smooth background, centroided.

Saturated stars are kept: the brightest stars are the best to hash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mascara_actors.centroids import block_medians, find_peaks, windowed_centroids

__all__ = ["Detections", "detect_stars"]


def _background(image: np.ndarray, box: int = 64) -> np.ndarray:
    """Smooth sky: medians of ``box`` x ``box`` blocks, bilinearly interpolated.

    The same map as :func:`mascara_actors.centroids.background_map`, several times faster:
    the medians come from every fourth pixel of each block (still 256 values, so the sky is
    known to a tenth of the pixel noise) and the interpolation, separable, is two small
    matrix products.
    """
    ny, nx = image.shape
    med = block_medians(image, box, step=4 if box >= 32 else 1)
    by, bx = med.shape

    def weights(n: int, nb: int) -> np.ndarray:
        t = np.clip((np.arange(n) + 0.5) / box - 0.5, 0, nb - 1)
        i0 = np.floor(t).astype(int)
        i1 = np.minimum(i0 + 1, nb - 1)
        w = np.zeros((n, nb), np.float32)
        np.add.at(w, (np.arange(n), i0), 1.0 - (t - i0))
        np.add.at(w, (np.arange(n), i1), t - i0)
        return w

    background: np.ndarray = weights(ny, by) @ med.astype(np.float32) @ weights(nx, bx).T
    return background


@dataclass(frozen=True, slots=True)
class Detections:
    """Stars found on a frame, brightest first."""

    xy: np.ndarray
    """(n, 2) windowed centroids, pixels."""
    height: np.ndarray
    """(n,) smoothed peak height above the sky, ADU (the brightness order)."""
    saturated: np.ndarray
    """(n,) True where the star reaches the saturation level (centroid less precise)."""
    shape: tuple[int, int]
    """(ny, nx) of the image."""

    def __len__(self) -> int:
        return len(self.xy)

    @property
    def density(self) -> float:
        """Detections per square pixel."""
        return len(self.xy) / float(self.shape[0] * self.shape[1])


def detect_stars(image: np.ndarray, *, nmax: int = 5000, saturation: float = 63000.0) -> Detections:
    """The ``nmax`` brightest star-like peaks of a calibrated image, saturated ones included.

    Single-pixel spikes (hot pixels, cosmic rays) are dropped: a star's peak pixel is at
    most ~2.5 times its smoothed height, a spike's about 6 times.
    """
    image = np.asarray(image, np.float32)
    sub = image - _background(image)
    x, y, h = find_peaks(sub, nmax=nmax, truncate=3.0)
    ny, nx = image.shape
    # 3x3 and 5x5 neighbourhoods of each peak, gathered at once.
    off5 = np.arange(-2, 3)
    gy = np.clip(y[:, None, None] + off5[None, :, None], 0, ny - 1)
    gx = np.clip(x[:, None, None] + off5[None, None, :], 0, nx - 1)
    raw = image[gy, gx]
    peak = sub[gy[:, 1:4, :], gx[:, :, 1:4]].max(axis=(1, 2))
    saturated = raw.max(axis=(1, 2)) >= saturation
    sharp = (peak > 3.5 * h) & ~saturated
    x, y, h, saturated = x[~sharp], y[~sharp], h[~sharp], saturated[~sharp]
    # Five iterations from the integer peak: within 0.001 px of eight for 99 % of stars.
    xc, yc, ok = windowed_centroids(sub, x, y, iterations=5)
    return Detections(
        xy=np.column_stack([xc[ok], yc[ok]]),
        height=h[ok].astype(float),
        saturated=saturated[ok],
        shape=(ny, nx),
    )


