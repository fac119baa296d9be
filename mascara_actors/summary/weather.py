"""Weather proxy: cloud fraction from measured versus expected (catalogue V) fluxes.

Each measured point gives a residual magnitude

    r = -2.5 log10(flux0 / exptime) - V - k (X - 1)

with X = 1 / sin(alt) the airmass and k a fixed extinction coefficient. On a clear night r is
the same zero point for every star and frame, up to colour terms, vignetting and noise. The
*clear-sky zero point* of the night is a low percentile of the per-frame medians of r (the
clearest frames). A star is *dimmed* in a frame when its residual exceeds the zero point by
more than a threshold (default 0.5 mag, i.e. below 63 % of the expected flux); the frame's
cloud fraction is the fraction of its measured stars that are dimmed, and its transmission
is ``10**(-0.4 (median r - zero point))``.

This is a relative proxy: a night that is cloudy from start to end has no clear frames to
set the zero point, and reports a low cloud fraction with a faint zero point instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypedDict, Unpack

import numpy as np

from mascara_actors.errors import StorageError
from mascara_actors.storage import NightFile

__all__ = ["WeatherProxy", "cloud_proxy", "weather_from_nightfile"]

log = logging.getLogger(__name__)

EXTINCTION_MAG_PER_AIRMASS = 0.15
"""Default V-band extinction coefficient (La Palma / La Silla, clear), mag per airmass."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WeatherProxy:
    """Per-frame transmission and cloud fraction of a night."""

    lstseq: np.ndarray
    """Frames with enough measured stars, ascending."""
    transmission: np.ndarray
    """Median measured / expected flux per frame, relative to the clear-sky zero point."""
    cloud_fraction: np.ndarray
    """Fraction of the frame's measured stars dimmed by more than the threshold."""
    zero_point_mag: float
    """Clear-sky zero point: instrumental mag of 1 ADU/s minus V (mag)."""
    threshold_mag: float
    npoints: int
    """Measured points used."""

    @property
    def night_cloud_fraction(self) -> float:
        """Mean cloud fraction over the frames (NaN without frames)."""
        return float(np.mean(self.cloud_fraction)) if len(self.lstseq) else float("nan")

    @property
    def clear_fraction(self) -> float:
        """Fraction of frames with transmission >= 0.8 (NaN without frames)."""
        if not len(self.lstseq):
            return float("nan")
        return float(np.mean(self.transmission >= 0.8))


def cloud_proxy(
    lstseq: np.ndarray,
    flux: np.ndarray,
    exptime: np.ndarray,
    alt_deg: np.ndarray,
    vmag: np.ndarray,
    *,
    extinction: float = EXTINCTION_MAG_PER_AIRMASS,
    threshold_mag: float = 0.5,
    clear_percentile: float = 10.0,
    min_stars: int = 5,
) -> WeatherProxy:
    """Cloud fraction and transmission per frame from flat arrays of measured points.

    Parameters
    ----------
    lstseq : array of int
        Frame of each point.
    flux : array of float
        Measured flux of each point, ADU per exposure.
    exptime : array of float
        Exposure time of each point, seconds.
    alt_deg : array of float
        Altitude of the star, degrees.
    vmag : array of float
        Catalogue V magnitude of the star of each point.
    extinction : float
        Extinction coefficient, mag per airmass.
    threshold_mag : float
        Dimming (mag) beyond which a star counts as clouded.
    clear_percentile : float
        Percentile of the per-frame median residuals taken as the clear-sky zero point.
    min_stars : int
        Frames with fewer usable points are left out.

    Returns
    -------
    WeatherProxy
    """
    lstseq = np.asarray(lstseq, dtype=np.int64)
    flux = np.asarray(flux, dtype=float)
    exptime = np.asarray(exptime, dtype=float)
    alt = np.asarray(alt_deg, dtype=float)
    vmag = np.asarray(vmag, dtype=float)
    ok = (flux > 0) & (exptime > 0) & (alt > 5) & np.isfinite(vmag)
    empty = WeatherProxy(lstseq=np.empty(0, np.int64), transmission=np.empty(0),
                         cloud_fraction=np.empty(0), zero_point_mag=float("nan"),
                         threshold_mag=threshold_mag, npoints=0)
    if not ok.any():
        return empty
    airmass = 1.0 / np.sin(np.radians(alt[ok]))
    resid = -2.5 * np.log10(flux[ok] / exptime[ok]) - vmag[ok] - extinction * (airmass - 1.0)
    frames, inverse, counts = np.unique(lstseq[ok], return_inverse=True, return_counts=True)
    # per-frame medians without a Python loop: sort by (frame, residual), take the middle
    sorted_resid = resid[np.lexsort((resid, inverse))]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    median = 0.5 * (sorted_resid[lo] + sorted_resid[hi])
    keep = counts >= min_stars
    if not keep.any():
        return empty
    zp = float(np.percentile(median[keep], clear_percentile))
    dimmed = (resid - zp) > threshold_mag
    ndimmed = np.bincount(inverse, weights=dimmed, minlength=len(frames))
    return WeatherProxy(
        lstseq=frames[keep],
        transmission=10.0 ** (-0.4 * (median[keep] - zp)),
        cloud_fraction=ndimmed[keep] / counts[keep],
        zero_point_mag=zp,
        threshold_mag=threshold_mag,
        npoints=int(ok.sum()),
    )


class CloudProxyOptions(TypedDict, total=False):
    """The keyword arguments of :func:`cloud_proxy`."""

    extinction: float
    threshold_mag: float
    clear_percentile: float
    min_stars: int


def weather_from_nightfile(
    nightfile: NightFile, *, max_stars: int = 400, **options: Unpack[CloudProxyOptions]
) -> WeatherProxy | None:
    """:func:`cloud_proxy` from the unflagged, unblended points of a nightly file.

    Parameters
    ----------
    nightfile : NightFile
        An open fast nightly file.
    max_stars : int
        Read at most this many stars (evenly spread in V) to bound the time on a full night.
    **options
        Passed to :func:`cloud_proxy`.

    Returns
    -------
    WeatherProxy or None
        None when the file holds no usable star.
    """
    stars = nightfile.stars
    if len(stars) == 0:
        return None
    use = stars[stars["blend"] == 0] if "blend" in (stars.dtype.names or ()) else stars
    if len(use) == 0:
        return None
    use = use[np.argsort(use["vmag"], kind="stable")]
    if len(use) > max_stars:
        use = use[np.linspace(0, len(use) - 1, max_stars).round().astype(int)]
    parts: list[tuple[np.ndarray, float]] = []
    try:
        for star in use:
            parts.append((nightfile.lightcurve(int(star["id"]),
                                               ["lstseq", "flux0", "exptime", "alt", "pflag"]),
                          float(star["vmag"])))
    except StorageError as exc:
        log.warning("weather proxy skipped: %s", exc)
        return None
    lc = np.concatenate([p[0] for p in parts])
    vmag = np.repeat([p[1] for p in parts], [len(p[0]) for p in parts])
    good = lc["pflag"] == 0
    return cloud_proxy(lc["lstseq"][good], lc["flux0"][good], lc["exptime"][good],
                       lc["alt"][good], vmag[good], **options)
