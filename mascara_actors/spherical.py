"""Unit vectors on the sphere from right ascension (or hour angle) and declination."""

from __future__ import annotations

import numpy as np

__all__ = ["unit_vectors"]


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Cartesian unit vectors ``(..., 3)`` of (RA, dec) in degrees: x to RA 0, z to the pole."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)
