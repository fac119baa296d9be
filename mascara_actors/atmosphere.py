"""The atmosphere over a station: airmass, and the scintillation noise it adds to a star.

- :func:`altitude_deg`: a star's altitude from its hour angle, declination and the latitude.
- :func:`airmass`: Kasten & Young (1989), good to the horizon.
- :func:`scintillation`: Young (1967), the relative flux noise of an exposure through a
  small pupil, ``0.09 D^(-2/3) X^1.75 exp(-h / 8000 m) / sqrt(2 t)`` (D in cm, t in s): for
  MASCARA's 17 mm pupils, 6.4 s exposures and 2,400 m, 1.3 % at the zenith; it dominates
  the noise of the brightest stars and is not in the photometry's flux errors.
"""

from __future__ import annotations

import numpy as np

__all__ = ["airmass", "altitude_deg", "scintillation"]


def altitude_deg(ha_deg: np.ndarray, dec_deg: np.ndarray, lat_deg: float) -> np.ndarray:
    """Altitude (degrees) of a star at hour angle ``ha_deg`` and declination ``dec_deg``."""
    ha, dec, lat = np.radians(ha_deg), np.radians(dec_deg), np.radians(lat_deg)
    sin_alt = np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(ha)
    out: np.ndarray = np.degrees(np.arcsin(np.clip(sin_alt, -1.0, 1.0)))
    return out


def airmass(alt_deg: np.ndarray) -> np.ndarray:
    """Relative airmass at true altitude ``alt_deg`` (Kasten & Young 1989); alt >= 0."""
    alt = np.maximum(np.asarray(alt_deg, float), 0.0)
    out: np.ndarray = 1.0 / (np.sin(np.radians(alt)) + 0.50572 * (alt + 6.07995) ** -1.6364)
    return out


def scintillation(x: np.ndarray, *, pupil_m: float, height_m: float, exptime_s: np.ndarray
                  ) -> np.ndarray:
    """Scintillation noise (fraction of the flux) at airmass ``x`` (Young 1967)."""
    d_cm = 100.0 * pupil_m
    out: np.ndarray = (0.09 * d_cm ** (-2.0 / 3.0) * np.asarray(x, float) ** 1.75
                       * np.exp(-height_m / 8000.0) / np.sqrt(2.0 * np.asarray(exptime_s)))
    return out
