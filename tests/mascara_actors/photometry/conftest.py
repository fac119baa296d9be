"""Fixtures for the photometry tests: a tiny renderer of Gaussian stars on a flat sky."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.special import erf

Renderer = Callable[..., NDArray[np.float64]]


def _pixel_integrals(centre: NDArray[np.float64], first: NDArray[np.int64], size: int,
                     sigma: float) -> NDArray[np.float64]:
    """Fraction of a 1-D Gaussian (unit integral) falling in each of ``size`` pixels."""
    edges = first[:, None] + np.arange(size + 1)[None, :] - 0.5
    cdf = 0.5 * (1.0 + erf((edges - centre[:, None]) / (np.sqrt(2.0) * sigma)))
    return np.diff(cdf, axis=1)


def render_stars(shape: tuple[int, int], x: NDArray[np.float64], y: NDArray[np.float64],
                 flux: NDArray[np.float64], *, sigma: float = 1.2, sky: float = 0.0,
                 half: int = 8) -> NDArray[np.float64]:
    """Noise-free image, ADU: sky plus pixel-integrated circular Gaussian stars.

    ``x, y`` in pixels with the centre of pixel (0, 0) at 0.0; ``flux`` is each star's total
    flux, ADU; ``sigma`` the PSF width, pixels. Each star is drawn in a (2 half + 1)^2 box
    (half = 8 keeps 1 - 1e-11 of the flux for sigma = 1.2). Returns a fresh float64 array.
    """
    image = np.full(shape, float(sky))
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    size = 2 * half + 1
    x0 = np.floor(x + 0.5).astype(np.int64) - half
    y0 = np.floor(y + 0.5).astype(np.int64) - half
    px = _pixel_integrals(x, x0, size, sigma)
    py = _pixel_integrals(y, y0, size, sigma)
    stamps = flux[:, None, None] * py[:, :, None] * px[:, None, :]
    rows = y0[:, None, None] + np.arange(size)[None, :, None]
    cols = x0[:, None, None] + np.arange(size)[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    keep = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    np.add.at(image, (rows[keep], cols[keep]), stamps[keep])
    return image


def add_noise(image: NDArray[np.float64], rng: np.random.Generator, *, gain: float,
              read_noise_e: float) -> NDArray[np.float64]:
    """Poisson noise in electrons (``gain`` e-/ADU) plus Gaussian read noise, back in ADU."""
    electrons = rng.poisson(np.clip(image, 0.0, None) * gain).astype(np.float64)
    electrons += rng.normal(0.0, read_noise_e, image.shape)
    return electrons / gain


def grid_positions(shape: tuple[int, int], spacing: float, margin: float,
                   rng: np.random.Generator) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Star positions on a regular grid with random sub-pixel offsets, pixels."""
    ys = np.arange(margin, shape[0] - margin, spacing)
    xs = np.arange(margin, shape[1] - margin, spacing)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    n = gx.size
    return (gx.ravel() + rng.uniform(-0.5, 0.5, n), gy.ravel() + rng.uniform(-0.5, 0.5, n))


@pytest.fixture
def render() -> Renderer:
    """The star renderer (:func:`render_stars`); every call returns a fresh array."""
    return render_stars


@pytest.fixture
def noisy() -> Callable[..., NDArray[np.float64]]:
    """The noise model (:func:`add_noise`); returns a fresh array, the input is untouched."""
    return add_noise


@pytest.fixture
def grid() -> Callable[..., tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Grid positions with random sub-pixel offsets (:func:`grid_positions`)."""
    return grid_positions
