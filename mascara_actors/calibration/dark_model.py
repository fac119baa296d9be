"""The master dark applied to another exposure: dark-current scaling and master checks.

The master dark holds bias plus dark current (as in legacy). For an exposure time that
differs from the dark's by more than :data:`EXPTIME_RTOL`, the dark current is scaled
linearly: ``bias + (dark - bias) * t / t_dark``, the bias being the master bias if given,
else the median overscan level of the dark.
"""

from __future__ import annotations

import numpy as np

from mascara_actors.calibration.master_files import MasterFrame
from mascara_actors.calibration.statistics import median_of_levels, overscan_levels

__all__ = ["EXPTIME_RTOL", "bias_term", "check_master_matches", "dark_ratio", "scaled_dark"]

EXPTIME_RTOL = 0.01
"""Exposure times within this fraction of each other count as equal."""


def bias_term(dark: MasterFrame, bias: MasterFrame | None) -> np.ndarray | float:
    """The bias inside a master dark: the master bias, else the dark's overscan level."""
    if bias is not None:
        return bias.data
    return median_of_levels(*overscan_levels(dark.data, dark))


def dark_ratio(dark: MasterFrame, exptime: float, rtol: float) -> float:
    """Factor that scales the dark current of ``dark`` to ``exptime`` (1: use as is)."""
    if dark.kind != "dark" or dark.exptime <= 0 or abs(exptime - dark.exptime) <= (
        rtol * dark.exptime
    ):
        return 1.0
    return exptime / dark.exptime


def scaled_dark(dark: MasterFrame, bias: np.ndarray | float, ratio: float,
                rows: slice, cols: slice) -> np.ndarray:
    """The dark scaled by ``ratio`` (bias kept as is) over ``rows, cols``, float32 ADU."""
    b = bias[rows, cols] if isinstance(bias, np.ndarray) else np.float32(bias)
    return b + (dark.data[rows, cols] - b) * np.float32(ratio)


def check_master_matches(master: MasterFrame, camera: str, site: str,
                         shape: tuple[int, ...], region: tuple[int, int, int, int],
                         what: str, error: type[Exception]) -> None:
    """Raise ``error`` naming ``what`` unless ``master`` is of its camera, shape and region."""
    if (master.camera, master.site) != (camera, site):
        raise error(f"{what} is camera {camera} at {site}, but the master {master.kind} "
                    f"{master.filename} is camera {master.camera} at {master.site}; use a "
                    "master of the same camera")
    if master.data.shape != tuple(shape) or master.region != region:
        raise error(f"{what} has shape {tuple(shape)} and science region (X0, XSIZE, Y0, "
                    f"YSIZE) {region}, but the master {master.kind} {master.filename} has "
                    f"{master.data.shape} and {master.region}; make a master {master.kind} "
                    "in the same readout mode")
