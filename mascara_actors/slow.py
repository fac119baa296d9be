"""Slow photometry: the stars down to V = 10 measured once per set on its binned image.

The binned image (:mod:`mascara_actors.binning`) is aligned to ``lst_align``, the middle
of the reference slot, so every star is placed by the set's camera model at that LST, with
catalogue positions precessed to ``jd_align``. Photometry is that of the fast reduction
(:func:`mascara_actors.photometry.measure`: same sky annulus, estimator and flag rules),
with the slow apertures (2.5, 3.5, 4.5, 5.5 px by default). Each star gets one record
(``slow_record_dtype``) whose ``lstseq`` is the reference (middle) slot, as the legacy slow
files; the set gets one slow station row (``slow_station_dtype``).

Noise: the image is the mean of ``nimages`` frames, so the photon noise of a star's mean
flux is ``flux / (gain * nimages)`` ADU^2; :func:`measure_binned` passes
``gain * nimages`` as the effective gain. The sky scatter is measured on the binned image
itself, but resampling moved part of each pixel's noise into its neighbours, so the sky
terms of the error are multiplied by ``binned.noise_factor`` (>= 1, from the half-pixel
phases the frames were resampled with).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields

import numpy as np

from mascara_actors.binning import BinnedSet
from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import PhotometryConfig
from mascara_actors.ephemeris import EphemerisTable
from mascara_actors.errors import FrameError
from mascara_actors.photometry import measure, sky_estimator
from mascara_actors.records import slow_record_dtype, slow_station_dtype
from mascara_actors.reduce import photometry_records

__all__ = ["SlowResult", "measure_binned", "slow_station_row"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SlowResult:
    """The slow photometry of one set. Arrays are read-only."""

    records: np.ndarray
    """One ``slow_record_dtype()`` record (with ``id``) per star measured."""
    station: np.ndarray
    """One row of ``slow_station_dtype``."""

    def __post_init__(self) -> None:
        for f in fields(self):
            getattr(self, f.name).flags.writeable = False


def slow_station_row(
    binned: BinnedSet, model: CameraModel, *, ephemeris: EphemerisTable | None = None
) -> np.ndarray:
    """The slow station row of a set (Sun and Moon at the reference JD; NaN without
    ``ephemeris``)."""
    row = np.zeros(1, slow_station_dtype)
    r = row[0]
    r["lstseq"] = binned.lstseq
    r["setidx"] = binned.setidx
    r["nimages"] = binned.nimages
    for name in ("exptime", "lst", "jd", "lstmid", "jdmid", "ccdtemp"):
        r[name] = getattr(binned, name)
    sunmoon = ("sunra", "sundec", "sunalt", "moonra", "moondec", "moonalt", "moonph")
    if ephemeris is None or not math.isfinite(binned.jd):
        for name in (*sunmoon, "moonx", "moony"):
            r[name] = np.nan
        return row
    sm = ephemeris.at(binned.jd)
    for name in sunmoon:
        r[name] = getattr(sm, name)[0]
    mx, my = model.radec_to_pixel(sm.moonra, sm.moondec, binned.lst_align)
    on = bool(model.on_chip(mx, my)[0])
    r["moonx"] = mx[0] if on else np.nan
    r["moony"] = my[0] if on else np.nan
    return row


def measure_binned(
    image: np.ndarray,
    binned: BinnedSet,
    model: CameraModel,
    stars: Catalogue,
    phot: PhotometryConfig,
    *,
    aflag: int = 0,
    ephemeris: EphemerisTable | None = None,
    flat: np.ndarray | None = None,
) -> SlowResult:
    """Slow photometry of a binned image: one record per star with V <= ``phot.slow_vmax``.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        The binned image, ADU per exposure (``binned.image`` or read back from its file).
    binned
        The set's record (times, number of frames, camera).
    model
        The set's camera model.
    stars
        The catalogue (or a subset); stars fainter than ``phot.slow_vmax`` are left out.
    phot
        Photometry settings: slow apertures, sky radii, estimator, gain, saturation, margins.
    aflag
        Astrometry flag of the set, copied into every record.
    ephemeris
        Sun and Moon table of the site, for the station row and the Moon flag.
    flat
        The master flat the set's frames were divided by (science region), or None: a
        binned pixel lies within tens of pixels of the detector pixels it was made of, and
        a flat is smooth on that scale (see :func:`~mascara_actors.photometry.measure`).

    Raises
    ------
    FrameError
        The image does not have the model's size, or the set has no frames.
    """
    image = np.asarray(image)
    if image.shape != (model.ny, model.nx):
        raise FrameError(
            f"binned image of set {binned.setidx} is {image.shape}, the camera "
            f"model is {(model.ny, model.nx)}: use the set's own model"
        )
    if binned.nimages < 1:
        raise FrameError(f"set {binned.setidx} has no frames: nothing to measure")
    sel = stars.select(vmax=phot.slow_vmax)
    ra, dec = sel.positions_at(binned.jd_align)
    ha = binned.lst_align * 15.0 - ra
    x, y = model.hadec_to_pixel(ha, dec)
    on = np.flatnonzero(model.on_chip(x, y, margin=phot.edge_margin_px))
    x, y, ha = x[on], y[on], ha[on]
    station = slow_station_row(binned, model, ephemeris=ephemeris)
    mx, my = float(station["moonx"][0]), float(station["moony"][0])
    moon_xy = (mx, my) if math.isfinite(mx) and math.isfinite(my) else None
    result = measure(
        image,
        x,
        y,
        apertures=tuple(phot.slow_apertures_px),
        sky_radii=(phot.sky_radii_px[0], phot.sky_radii_px[1]),
        gain=phot.gain_e_per_adu * binned.nimages,
        saturation=phot.saturation_adu,
        flat=flat,
        sky_estimator=sky_estimator(phot.sky_estimator, minsky=phot.min_sky_pixels),
        moon_xy=moon_xy,
        moon_radius=phot.moon_radius_px,
    )
    naper = len(phot.slow_apertures_px)
    # Sky-noise terms of the error, scaled for the noise the resampling spread over pixels.
    area = np.pi * np.asarray(phot.slow_apertures_px, float) ** 2
    esky2 = result.esky[:, None] ** 2
    nsky = np.maximum(result.nsky, 1)[:, None]
    sky_var = area * esky2 + area**2 * esky2 / nsky
    eflux = np.sqrt(result.eflux**2 + (binned.noise_factor - 1.0) * sky_var)
    rec = photometry_records(
        result,
        slow_record_dtype(naper),
        ids=sel.hip[on],
        lstseq=binned.lstseq,
        aflag=aflag,
        ha_deg=ha,
        dec_deg=dec[on],
        latitude_deg=model.latitude_deg,
        ccdtemp=binned.ccdtemp,
        exptime=binned.exptime,
        jdmid=binned.jd_align,
        lst_hours=binned.lst,
        eflux=eflux,
    )
    log.debug(
        "set %d: %d slow stars, %d flagged",
        binned.setidx,
        rec.size,
        int(np.count_nonzero(rec["flag"])),
    )
    return SlowResult(records=rec, station=station)
