"""Blends: the flux of a star's neighbours inside a photometric aperture, over its own."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from mascara_actors.spherical import unit_vectors

__all__ = ["BLEND_THRESHOLD", "blend_values"]

#: ``blend`` is set when the neighbours add more than this fraction of the star's own flux.
#: At 0.1 the aperture holds > 10 % foreign light: the star's magnitude is off by > 0.1 mag
#: and a transit is diluted by > 9 %, which is when a light curve needs a second look.
BLEND_THRESHOLD = 0.1


def blend_values(
    ra_deg: np.ndarray, dec_deg: np.ndarray, vmag: np.ndarray, *, radius_arcsec: float
) -> np.ndarray:
    """Summed flux of each star's neighbours within a radius, over the star's own flux.

    Fluxes are ``10 ** (-0.4 * V)``. A star with no neighbour inside the radius gets 0; a
    star with an equally bright neighbour gets 1; a faint star next to one 2.5 mag brighter
    gets 10. Pairs come from a KD-tree on unit vectors (chord length ``2 sin(r / 2)``), so
    the cost grows with the number of pairs, not with the square of the number of stars.

    Parameters
    ----------
    ra_deg, dec_deg
        Positions, degrees (any one frame and epoch).
    vmag
        V magnitudes, mag.
    radius_arcsec
        Aperture radius, arcsec; a MASCARA fast aperture of 4.5 px at 77.3"/px is about 350".

    Returns
    -------
    ndarray of float64
        Blend value per star, dimensionless.
    """
    if not (math.isfinite(radius_arcsec) and 0.0 <= radius_arcsec < 180.0 * 3600.0):
        raise ValueError(
            f"radius_arcsec = {radius_arcsec!r} must be finite and in [0, 648000) arcsec"
        )
    ra_deg, dec_deg = np.asarray(ra_deg, dtype=np.float64), np.asarray(dec_deg, np.float64)
    flux = 10.0 ** (-0.4 * np.asarray(vmag, dtype=np.float64))
    neighbour_flux = np.zeros_like(flux)
    chord = 2.0 * math.sin(math.radians(radius_arcsec / 3600.0) / 2.0)
    if flux.size > 1 and chord > 0.0:
        pairs = cKDTree(unit_vectors(ra_deg, dec_deg)).query_pairs(chord, output_type="ndarray")
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            neighbour_flux += np.bincount(i, weights=flux[j], minlength=flux.size)
            neighbour_flux += np.bincount(j, weights=flux[i], minlength=flux.size)
    return neighbour_flux / flux
