"""Where the sky of a set's reference frame falls in its other frames.

A MASCARA camera does not track, so between two exposures the sky turns by the LST
difference: a star at (HA, dec) in the reference frame sits at HA + 15 (LST_i - LST_ref) in
frame ``i``. LSTs are compared across 0 h (:func:`lst_difference_hours`).
"""

from __future__ import annotations

import numpy as np

from mascara_actors.camera_model import CameraModel
from mascara_actors.sidereal import SET_SIZE

__all__ = [
    "circular_mean_hours",
    "displacement_at",
    "displacement_at_hadec",
    "lst_difference_hours",
    "reference_lstseq",
]


def reference_lstseq(setidx: int, *, set_size: int = SET_SIZE) -> int:
    """lstseq of the reference (middle) frame of set ``setidx``: ``setidx * 50 + 25``."""
    return int(setidx) * set_size + set_size // 2


def lst_difference_hours(lst_hours: np.ndarray | float, lst_ref_hours: np.ndarray | float
                         ) -> np.ndarray:
    """``lst - lst_ref`` wrapped into [-12, 12) hours (correct across 0 h)."""
    return (np.asarray(lst_hours, float) - lst_ref_hours + 12.0) % 24.0 - 12.0


def circular_mean_hours(lst_hours: np.ndarray) -> float:
    """Mean of LSTs spanning less than 12 h, hours in [0, 24), correct across 0 h.

    The values are unwrapped about the first one, averaged, and wrapped back. The legacy
    ``LSTMID`` was a plain mean: 23.9 h and 0.1 h gave 12 h instead of 0 h.
    """
    lst = np.asarray(lst_hours, float)
    offsets = lst_difference_hours(lst, float(lst[0]))
    return float((lst[0] + offsets.mean()) % 24.0)


def displacement_at(
    model: CameraModel,
    x: np.ndarray,
    y: np.ndarray,
    *,
    lst_ref_hours: float,
    lst_hours: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Where reference-frame pixels fall in a frame taken at another LST.

    Parameters
    ----------
    model
        The camera model (fixed camera, so valid for every frame of the set).
    x, y
        Pixel positions in the reference frame, pixels.
    lst_ref_hours, lst_hours
        Mid-exposure LST of the reference frame and of the other frame, hours.

    Returns
    -------
    dx, dy : ndarray
        Displacement (position in the other frame - position in the reference), pixels;
        NaN where the sky position leaves the model's valid field.
    """
    ha, dec = model.pixel_to_hadec(x, y)
    dha = 15.0 * lst_difference_hours(lst_hours, lst_ref_hours)
    xi, yi = model.hadec_to_pixel(ha + dha, dec)
    return xi - np.asarray(x, float), yi - np.asarray(y, float)



def displacement_at_hadec(
    model: CameraModel,
    ha_deg: np.ndarray,
    dec_deg: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    lst_ref_hours: float,
    lst_hours: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`displacement_at` for pixels whose (HA, dec) at ``lst_ref_hours`` is known."""
    dha = 15.0 * float(lst_difference_hours(lst_hours, lst_ref_hours))
    xi, yi = model.hadec_to_pixel(ha_deg + dha, dec_deg)
    return xi - x, yi - y
