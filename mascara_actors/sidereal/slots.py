"""The lstseq arithmetic: slots of 6.4 sidereal seconds, sidereal days and sets of 50.

``lstday = lstseq // 13500``, ``lstidx = lstseq % 13500 = floor(LST_hours * 3600 / 6.4)``,
a set of 50 exposures is ``lstseq // 50`` (DESIGN.md section 2). Every slot number given
here is checked (integers, or integral floats) and returned as int64.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from mascara_actors.errors import TimeError
from mascara_actors.sidereal.gmst import SIDEREAL_DAY_S

__all__ = [
    "SET_SIZE",
    "SLOTS_PER_SIDEREAL_DAY",
    "SLOT_SIDEREAL_S",
    "as_lstseq",
    "lstday",
    "lstidx",
    "set_index",
    "slot_length_solar_s",
    "slots_per_day",
]

SLOTS_PER_SIDEREAL_DAY = 13500
"""Exposure slots per sidereal day."""
SLOT_SIDEREAL_S = 6.4
"""Length of one exposure slot, sidereal seconds (86400 / 13500)."""
SET_SIZE = 50
"""Exposures per set (binning, astrometry): one set is 320 sidereal seconds."""


def slot_length_solar_s(texp: float = SLOT_SIDEREAL_S) -> float:
    """Length of one slot in solar (SI) seconds.

    Parameters
    ----------
    texp : float, optional
        Slot length, sidereal seconds (default 6.4); 86400 must be a whole multiple of it.

    Returns
    -------
    float
        Solar seconds: 6.38253 s for 6.4 sidereal seconds.
    """
    slots_per_day(texp)
    return float(texp) * SIDEREAL_DAY_S / 86400.0


def lstday(lstseq: Any, texp: float = SLOT_SIDEREAL_S) -> Any:
    """Sidereal-day counter of slot numbers: ``lstseq // (86400 / texp)``.

    Parameters
    ----------
    lstseq : int or array of int
        Slot sequence numbers.
    texp : float, optional
        Slot length, sidereal seconds (default 6.4, i.e. 13500 slots per day).

    Returns
    -------
    numpy.int64 or numpy.ndarray of int64
    """
    return as_lstseq(lstseq) // slots_per_day(texp)


def lstidx(lstseq: Any, texp: float = SLOT_SIDEREAL_S) -> Any:
    """Slot within the sidereal day: ``lstseq % (86400 / texp)``, in [0, 13500) by default.

    Parameters
    ----------
    lstseq : int or array of int
        Slot sequence numbers.
    texp : float, optional
        Slot length, sidereal seconds (default 6.4).

    Returns
    -------
    numpy.int64 or numpy.ndarray of int64
    """
    return as_lstseq(lstseq) % slots_per_day(texp)


def set_index(lstseq: Any) -> Any:
    """Index of the set of `SET_SIZE` (50) exposures a slot belongs to: ``lstseq // 50``.

    The one place in the project where sets are cut; 270 sets per sidereal day.

    Parameters
    ----------
    lstseq : int or array of int
        Slot sequence numbers (6.4 sidereal-second slots).

    Returns
    -------
    numpy.int64 or numpy.ndarray of int64
    """
    return as_lstseq(lstseq) // SET_SIZE



def slots_per_day(texp: Any) -> int:
    """Number of slots per sidereal day for a slot of ``texp`` sidereal seconds."""
    if isinstance(texp, bool | np.bool_) or not isinstance(texp, numbers.Real):
        raise TimeError(f"texp={texp!r} must be a number of sidereal seconds, e.g. 6.4")
    value = float(texp)
    if not math.isfinite(value) or value <= 0.0:
        raise TimeError(f"texp={texp!r} must be a positive, finite number of sidereal seconds")
    n = 86400.0 / value
    nslots = round(n)
    if nslots < 1 or abs(n - nslots) > 1e-9 * nslots:
        raise TimeError(
            f"texp={texp!r} sidereal seconds does not divide the sidereal day (86400 s) into "
            "a whole number of slots; use a divisor such as 6.4 (13500 slots per day)"
        )
    return nslots


def as_lstseq(lstseq: Any) -> Any:
    """Validate slot numbers (integers, or integral floats) and return them as int64."""
    if isinstance(lstseq, bool | np.bool_):
        raise TimeError(f"lstseq={lstseq!r} must be an integer slot number, not a bool")
    try:
        arr = np.asarray(lstseq)
    except (ValueError, TypeError) as exc:
        raise TimeError(f"lstseq={lstseq!r} is not an integer or array of integers") from exc
    kind = arr.dtype.kind
    if kind == "f":
        flat = np.atleast_1d(arr)
        ok = np.isfinite(flat) & (np.abs(flat) < 2.0**62)
        ok[ok] = flat[ok] == np.round(flat[ok])
        if not ok.all():
            raise TimeError(f"lstseq={flat[~ok][0]!r} is not a whole slot number")
    elif kind == "u":
        if arr.size and arr.max() > np.iinfo(np.int64).max:
            raise TimeError(f"lstseq={arr.max()} does not fit in int64")
    elif kind != "i":
        raise TimeError(
            f"lstseq={lstseq!r} must be an integer or an array of integers, got dtype {arr.dtype}"
        )
    out = arr.astype(np.int64)
    return out[()] if out.ndim == 0 else out
