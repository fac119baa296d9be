"""Where a star is on the sky of the calibration: its cloud patch and its hour angle.

- Sky patches: HEALPix ``nside = 8`` (768 pixels of about 54 deg2, ring order, through
  ``astropy_healpix``), indexed by the star's catalogue position, as the legacy clouds grid
  (legacy-pipeline.md section 10.4).
- Hour angle of a star on exposure ``lstseq``: from the LST at the middle of the slot
  (the lstseq clock runs at the reference longitude; ``lon_offset`` moves it to the site),
  degrees, growing westwards, wrapped to [-180, 180).
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy_healpix import healpix_to_lonlat, lonlat_to_healpix

from mascara_actors.sidereal import SLOT_SIDEREAL_S, lstidx

__all__ = [
    "NPATCH",
    "NSIDE",
    "patch_centres",
    "patch_of",
    "slot_hour_angle",
    "slot_mid_lst_hours",
    "wrap_ha",
]

NSIDE = 8
"""HEALPix resolution of the cloud patches (768 pixels, ring order)."""
NPATCH = 12 * NSIDE * NSIDE
"""Number of cloud patches on the sky."""


def wrap_ha(ha_deg: np.ndarray | float) -> np.ndarray:
    """Hour angle wrapped to [-180, 180) degrees."""
    out: np.ndarray = (np.asarray(ha_deg, float) + 180.0) % 360.0 - 180.0
    return out


def patch_of(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """HEALPix nside-8 pixel (ring order) of sky positions in degrees, as int64."""
    ra = np.asarray(ra_deg, float) % 360.0
    dec = np.clip(np.asarray(dec_deg, float), -90.0, 90.0)
    return np.asarray(lonlat_to_healpix(ra * u.deg, dec * u.deg, NSIDE, order="ring"), np.int64)


def patch_centres(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RA, dec) of the centres of HEALPix nside-8 pixels (ring order), degrees."""
    lon, lat = healpix_to_lonlat(np.asarray(patches, np.int64), NSIDE, order="ring")
    return np.asarray(lon.deg, float), np.asarray(lat.deg, float)


def slot_mid_lst_hours(lstseq: np.ndarray | int) -> np.ndarray:
    """LST (reference longitude) at the middle of each exposure slot, hours in [0, 24)."""
    out: np.ndarray = (lstidx(lstseq) + 0.5) * SLOT_SIDEREAL_S / 3600.0
    return out


def slot_hour_angle(lstseq: np.ndarray | int, ra_deg: np.ndarray | float, lon_offset_deg: float
                    ) -> np.ndarray:
    """Hour angle (degrees, [-180, 180)) at the middle of slots ``lstseq`` of stars at
    ``ra_deg``, for a site ``lon_offset_deg`` east of the reference longitude (arrays
    broadcast)."""
    return wrap_ha(15.0 * slot_mid_lst_hours(lstseq) + lon_offset_deg - np.asarray(ra_deg))
