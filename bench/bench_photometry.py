"""Benchmarks: fast aperture photometry of a full frame, ours next to photutils and sep.

The frame is rendered here with a fixed seed (so the figures can be followed over time):
2672 x 4008 float32, sky 1000 ADU with Poisson-like noise (10 ADU), 5000 pixel-integrated
Gaussian stars (sigma 1.2 px, fluxes log-uniform 2e3 to 3e5 ADU) placed uniformly at least
50 px from the edges, the way the fast photometry sees the V <= 8.4 stars of a camera.
Apertures 2.5 and 4.5 px, sky annulus 6-21 px, as the configuration. Everything runs on one
core of this process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from scipy.special import erf

from bench._core import Figure, bench, figure
from mascara_actors.photometry import measure

_SHAPE = (2672, 4008)
_N_STARS = 5000
_APERTURES = (2.5, 4.5)
_SKY_RADII = (6.0, 21.0)
_SEED = 20260401


def _frame() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The benchmark frame (float32, ADU), star x, y (pixels) and fluxes (ADU)."""
    rng = np.random.default_rng(_SEED)
    ny, nx = _SHAPE
    x = rng.uniform(50.0, nx - 51.0, _N_STARS)
    y = rng.uniform(50.0, ny - 51.0, _N_STARS)
    flux = np.exp(rng.uniform(np.log(2e3), np.log(3e5), _N_STARS))
    half, sigma = 7, 1.2
    size = 2 * half + 1
    x0 = np.floor(x + 0.5).astype(np.int64) - half
    y0 = np.floor(y + 0.5).astype(np.int64) - half

    def integrals(c: np.ndarray, first: np.ndarray) -> np.ndarray:
        edges = first[:, None] + np.arange(size + 1) - 0.5
        return np.diff(0.5 * (1.0 + erf((edges - c[:, None]) / (np.sqrt(2.0) * sigma))), axis=1)

    stamps = flux[:, None, None] * integrals(y, y0)[:, :, None] * integrals(x, x0)[:, None, :]
    rows = np.broadcast_to(y0[:, None, None] + np.arange(size)[None, :, None], stamps.shape)
    cols = np.broadcast_to(x0[:, None, None] + np.arange(size)[None, None, :], stamps.shape)
    image = rng.normal(1000.0, 10.0, _SHAPE)
    np.add.at(image, (rows.ravel(), cols.ravel()), stamps.ravel())
    return image.astype(np.float32), x, y, flux


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], list[float], Any]:
    """Wall-clock and CPU seconds of ``repeats`` calls (after one warm-up) and the result."""
    out = fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu, out


def _isolated(x: np.ndarray, y: np.ndarray, flux: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Stars with no other star within 25 px and a peak below saturation."""
    d2 = (x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2
    np.fill_diagonal(d2, np.inf)
    peak = image[np.floor(y + 0.5).astype(int), np.floor(x + 0.5).astype(int)]
    return (d2.min(axis=1) > 25.0**2) & (peak < 63000.0)


@bench("photometry_frame_s")
def run() -> Iterator[Figure]:
    """Figure: photometry_frame_s (s) - median time of ``measure()`` on one full frame.

    5000 stars, 2 exact apertures, clipped-median sky in the 6-21 px annulus (the defaults:
    centred on each star's nearest pixel), flags; median of 11 calls after a warm-up.
    Context: ``min_s``, ``cpu_s`` (median process CPU time, robust when other jobs share
    the machine), and ``star_centre_s`` / ``star_centre_cpu_s``, the same with
    ``sky_centre="star"`` (annulus distances from the star's exact position, one more
    per-star test).
    """
    image, x, y, _ = _frame()
    wall, cpu, _ = _timed(lambda: measure(image, x, y, apertures=_APERTURES,
                                          sky_radii=_SKY_RADII), 11)
    star_wall, star_cpu, _ = _timed(lambda: measure(image, x, y, apertures=_APERTURES,
                                                    sky_radii=_SKY_RADII, sky_centre="star"), 11)
    yield figure("photometry_frame_s", statistics.median(wall), "s", n_stars=_N_STARS,
                 min_s=round(min(wall), 4), cpu_s=round(statistics.median(cpu), 4),
                 star_centre_s=round(statistics.median(star_wall), 4),
                 star_centre_cpu_s=round(statistics.median(star_cpu), 4),
                 shape=list(_SHAPE), apertures=list(_APERTURES), sky="clipped_median")


@bench("photutils_frame_s")
def run_photutils() -> Iterator[Figure]:
    """Figure: photutils_frame_s (s) - photutils on the same frame and stars.

    ``aperture_photometry(method="exact")`` with both apertures plus
    ``ApertureStats(CircularAnnulus(6, 21)).median`` for the sky; median of 3 calls.
    Context: ``ratio`` (photutils / ours), ``max_rel_diff`` of the sky-subtracted fluxes
    (photutils sums minus our sky times the area, against ours) over isolated unsaturated
    stars, and ``median_sky_diff_adu`` (photutils annulus median minus our sky).
    """
    from photutils.aperture import (
        ApertureStats,
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )

    image, x, y, flux = _frame()
    pos = np.column_stack([x, y])

    def photutils_run() -> tuple[np.ndarray, np.ndarray]:
        table = aperture_photometry(image, [CircularAperture(pos, r) for r in _APERTURES],
                                    method="exact")
        sums = np.column_stack([np.asarray(table[f"aperture_sum_{j}"]) for j in range(2)])
        sky = np.asarray(ApertureStats(image, CircularAnnulus(pos, *_SKY_RADII)).median)
        return sums, sky

    wall, cpu, (sums, sky) = _timed(photutils_run, 3)
    ours_wall, _, ours = _timed(lambda: measure(image, x, y), 5)
    area = np.pi * np.square(_APERTURES)
    ok = _isolated(x, y, flux, image)
    ref = sums - ours.sky[:, None] * area
    rel = np.abs(ours.flux - ref)[ok] / np.abs(ref[ok])
    yield figure("photutils_frame_s", statistics.median(wall), "s", n_stars=_N_STARS,
                 cpu_s=round(statistics.median(cpu), 4),
                 ratio=round(statistics.median(wall) / statistics.median(ours_wall), 2),
                 max_rel_diff=float(rel.max()), n_compared=int(ok.sum()),
                 median_sky_diff_adu=round(float(np.median(sky - ours.sky)), 4))


@bench("sep_frame_s")
def run_sep() -> Iterator[Figure]:
    """Figure: sep_frame_s (s) - sep on the same frame and stars.

    ``sep.sum_circle(subpix=0, bkgann=(6, 21))`` (exact overlap, mean sky in the annulus)
    for both apertures; median of 5 calls. Context: ``ratio`` (sep / ours);
    ``max_rel_diff_sums`` of sep's exact sums without background (minus our sky) against
    ours over isolated unsaturated stars (pure aperture geometry); ``median_rel_diff_bkgann``
    of sep's own sky-subtracted r = 4.5 fluxes against ours (sep's annulus mean is biased
    by neighbours, ours is a clipped median).
    """
    import sep

    image, x, y, flux = _frame()

    def sep_run() -> list[np.ndarray]:
        return [sep.sum_circle(image, x, y, r, subpix=0, bkgann=_SKY_RADII)[0]
                for r in _APERTURES]

    wall, cpu, with_bkg = _timed(sep_run, 5)
    _, _, ours = _timed(lambda: measure(image, x, y), 5)
    ours_wall, _, _ = _timed(lambda: measure(image, x, y), 5)
    plain = np.column_stack([sep.sum_circle(image, x, y, r, subpix=0)[0] for r in _APERTURES])
    area = np.pi * np.square(_APERTURES)
    ok = _isolated(x, y, flux, image)
    ref = plain - ours.sky[:, None] * area
    rel = np.abs(ours.flux - ref)[ok] / np.abs(ref[ok])
    bkg_rel = np.abs(with_bkg[1] - ours.flux[:, 1])[ok] / np.abs(ours.flux[ok, 1])
    yield figure("sep_frame_s", statistics.median(wall), "s", n_stars=_N_STARS,
                 cpu_s=round(statistics.median(cpu), 4),
                 ratio=round(statistics.median(wall) / statistics.median(ours_wall), 2),
                 max_rel_diff_sums=float(rel.max()), n_compared=int(ok.sum()),
                 median_rel_diff_bkgann=float(np.median(bkg_rel)))
