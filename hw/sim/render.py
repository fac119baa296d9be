"""Render raw frames of the sky as a MASCARA camera records them.

The renderer works in electrons and returns the full readout (science region plus overscan)
as uint16 ADU, like the camera. Stars are placed through the same
:class:`~mascara_actors.camera_model.CameraModel` the reduction uses, trailed over the
exposure (the cameras do not track), with a Gaussian PSF whose width grows towards the
corners, vignetting and a fixed pixel-response pattern. Sky, dark current (doubling every
6.3 C), bias, hot pixels, read noise and photon noise are added; the frame saturates at the
ADC limit.

Photon noise is drawn from a normal distribution with the Poisson variance (the counts per
pixel are hundreds of electrons or more), which keeps a full frame under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from mascara_actors.camera_model import CameraModel
from mascara_actors.config import SensorConfig

__all__ = [
    "DetectorPattern",
    "RenderSettings",
    "StarField",
    "photons_to_raw",
    "render_star_electrons",
    "sky_electrons_per_pixel",
    "star_electrons",
]

_SQRT2 = np.sqrt(2.0)


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """What the simulated optics, sky and detector are like.

    Parameters
    ----------
    zero_point_e_per_s
        Electrons per second from a V = 0 star through the 17 mm pupil.
    psf_sigma_centre_px, psf_sigma_corner_px
        Gaussian PSF sigma on the optical axis and in the corners, pixels.
    vignetting
        Fractional light loss in the corners (quadratic in radius).
    sky_mag_arcsec2
        Dark-sky surface brightness, V mag per square arcsec.
    dark_e_per_s_at_0c
        Dark current at 0 C, electrons per second per pixel; doubles every 6.3 C.
    prnu
        RMS of the pixel response non-uniformity (flat-field pattern), fraction.
    hot_pixel_fraction
        Fraction of pixels with 50-500 times the dark current.
    trail_steps
        Sub-exposure positions used to draw the trail of a star.
    stamp_half
        Half size of the stamp each star is drawn in, pixels.
    """

    zero_point_e_per_s: float = 3.4e6
    psf_sigma_centre_px: float = 0.9
    psf_sigma_corner_px: float = 1.4
    vignetting: float = 0.3
    sky_mag_arcsec2: float = 21.0
    dark_e_per_s_at_0c: float = 2.0
    prnu: float = 0.01
    hot_pixel_fraction: float = 2e-5
    trail_steps: int = 8
    stamp_half: int = 7


@dataclass(frozen=True, slots=True)
class StarField:
    """Stars to draw in one exposure, pixel positions at the start and end of it."""

    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    electrons: np.ndarray

    @property
    def xmid(self) -> np.ndarray:
        """Mid-exposure x, pixels (where the reduction should find the star)."""
        mid: np.ndarray = 0.5 * (self.x0 + self.x1)
        return mid

    @property
    def ymid(self) -> np.ndarray:
        """Mid-exposure y, pixels."""
        mid: np.ndarray = 0.5 * (self.y0 + self.y1)
        return mid


class DetectorPattern:
    """The fixed pattern of one detector: flat-field response and hot pixels, from a seed."""

    def __init__(self, sensor: SensorConfig, settings: RenderSettings, *, seed: int) -> None:
        rng = np.random.default_rng([seed, 0xF1A7])
        ny, nx = sensor.ysize, sensor.xsize
        self.response = (1.0 + settings.prnu * rng.standard_normal((ny, nx))).astype(np.float32)
        nhot = round(settings.hot_pixel_fraction * nx * ny)
        self.hot_index = rng.choice(nx * ny, size=nhot, replace=False)
        self.hot_factor = rng.uniform(50.0, 500.0, size=nhot).astype(np.float32)
        yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
        r2 = ((xx - (nx - 1) / 2) ** 2 + (yy - (ny - 1) / 2) ** 2) / (
            ((nx - 1) / 2) ** 2 + ((ny - 1) / 2) ** 2
        )
        self.vignetting = (1.0 - settings.vignetting * r2).astype(np.float32)
        self.r2 = r2

    def throughput(self) -> np.ndarray:
        """Relative sensitivity of every science pixel (vignetting x response)."""
        throughput: np.ndarray = self.vignetting * self.response
        return throughput


def star_electrons(vmag: np.ndarray, exptime_s: float, settings: RenderSettings) -> np.ndarray:
    """Electrons collected from stars of V magnitude ``vmag`` in ``exptime_s`` seconds."""
    return settings.zero_point_e_per_s * exptime_s * 10.0 ** (-0.4 * np.asarray(vmag, float))


def sky_electrons_per_pixel(
    model: CameraModel, exptime_s: float, settings: RenderSettings, *, extra_mag: float = 0.0
) -> float:
    """Sky electrons per pixel on the axis; ``extra_mag`` brightens (negative) for twilight/Moon."""
    pixel_arcsec2 = (np.degrees(1.0 / model.focal_px) * 3600.0) ** 2
    mag_per_pixel = settings.sky_mag_arcsec2 + extra_mag - 2.5 * np.log10(pixel_arcsec2)
    return float(settings.zero_point_e_per_s * exptime_s * 10.0 ** (-0.4 * mag_per_pixel))


def _pixel_integrals(centre: np.ndarray, lo: np.ndarray, sigma: np.ndarray, n: int) -> np.ndarray:
    """Fraction of a 1-D Gaussian falling in pixels lo..lo+n-1; shape (..., n)."""
    edges = lo[..., None] + np.arange(n + 1) - 0.5 - centre[..., None]
    cdf = 0.5 * erf(edges / (_SQRT2 * sigma[..., None]))
    return np.diff(cdf, axis=-1)


def render_star_electrons(
    shape: tuple[int, int],
    stars: StarField,
    settings: RenderSettings,
    *,
    throughput: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An image (float32, electrons) holding only the trailed stars, and each star's total.

    Each star is drawn as ``trail_steps`` pixel-integrated Gaussians along its trail in a
    ``2*stamp_half+1`` stamp; the stamps are built for all stars at once and added with one
    ``bincount``. ``throughput`` (per pixel) multiplies the result. The second array holds
    the electrons each star deposited on the chip after throughput (NaN for stars not drawn):
    the truth a photometry should recover.
    """
    ny, nx = shape
    half = settings.stamp_half
    size = 2 * half + 1
    k = settings.trail_steps
    t = (np.arange(k) + 0.5) / k
    xs = stars.x0[:, None] + (stars.x1 - stars.x0)[:, None] * t  # (n, k)
    ys = stars.y0[:, None] + (stars.y1 - stars.y0)[:, None] * t
    xm, ym = stars.xmid, stars.ymid
    keep = (
        np.isfinite(xm)
        & np.isfinite(ym)
        & (xm > -half)
        & (xm < nx - 1 + half)
        & (ym > -half)
        & (ym < ny - 1 + half)
    )
    xs, ys, xm, ym = xs[keep], ys[keep], xm[keep], ym[keep]
    flux = stars.electrons[keep]
    r2 = ((xm - (nx - 1) / 2) ** 2 + (ym - (ny - 1) / 2) ** 2) / (
        ((nx - 1) / 2) ** 2 + ((ny - 1) / 2) ** 2
    )
    sigma = settings.psf_sigma_centre_px + (
        settings.psf_sigma_corner_px - settings.psf_sigma_centre_px
    ) * np.clip(r2, 0, 1)
    lox = np.round(xm).astype(np.int64) - half
    loy = np.round(ym).astype(np.int64) - half
    sig_k = np.broadcast_to(sigma[:, None], xs.shape)
    px = _pixel_integrals(xs, np.broadcast_to(lox[:, None], xs.shape), sig_k, size)  # (n, k, size)
    py = _pixel_integrals(ys, np.broadcast_to(loy[:, None], ys.shape), sig_k, size)
    stamps = np.einsum("nki,nkj->nji", px, py) * (flux / k)[:, None, None]  # (n, y, x)
    gx = lox[:, None, None] + np.arange(size)[None, None, :]
    gy = loy[:, None, None] + np.arange(size)[None, :, None]
    inside = (gx >= 0) & (gx < nx) & (gy >= 0) & (gy < ny)
    flat = np.where(inside, gy * nx + gx, 0)
    if throughput is not None:
        stamps = stamps * np.where(inside, throughput.ravel()[flat], 0.0)
    else:
        stamps = np.where(inside, stamps, 0.0)
    image = np.bincount(flat.ravel(), weights=stamps.ravel(), minlength=nx * ny)
    totals = np.full(stars.electrons.shape, np.nan)
    totals[keep] = stamps.sum(axis=(1, 2))
    return image.reshape(ny, nx).astype(np.float32), totals


def photons_to_raw(
    electrons: np.ndarray,
    sensor: SensorConfig,
    *,
    dark_e: np.ndarray | float,
    rng: np.random.Generator,
    light: bool = True,
) -> np.ndarray:
    """Add noise, bias and overscan; return the full readout as uint16 ADU.

    ``electrons`` is the expected signal of the science region (stars + sky, after
    throughput; zeros for a dark or bias frame), ``dark_e`` the expected dark electrons.
    """
    expected = (electrons if light else 0.0) + dark_e
    expected = np.broadcast_to(np.asarray(expected, np.float32), (sensor.ysize, sensor.xsize))
    noise = rng.standard_normal((sensor.ny, sensor.nx), dtype=np.float32)
    # Overscan and everything outside the science region read bias plus read noise only.
    raw = sensor.bias_adu + noise * np.float32(sensor.read_noise_e / sensor.gain_e_per_adu)
    rows, cols = sensor.science_slices
    sigma_e = np.sqrt(np.maximum(expected, 0.0) + np.float32(sensor.read_noise_e**2))
    raw[rows, cols] = sensor.bias_adu + (expected + noise[rows, cols] * sigma_e) / np.float32(
        sensor.gain_e_per_adu
    )
    np.clip(raw, 0, sensor.full_well_adu, out=raw)
    return np.round(raw).astype(np.uint16)
