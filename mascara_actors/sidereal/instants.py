"""Instants in any supported form, as two-part UT1 Julian dates.

datetime, ``numpy.datetime64``, astropy ``Time``, JD floats, ISO strings, or arrays of
these; naive datetimes are UTC, aware ones are converted. The split into whole days and a
fraction keeps the arithmetic error of LST below a microsecond.
"""

from __future__ import annotations

import logging
import numbers
import sys
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np

from mascara_actors.errors import TimeError
from mascara_actors.offline import configure_astropy_offline
from mascara_actors.sidereal.utc import JD_UNIX_EPOCH, Sparse, leap_day_corrections

__all__ = ["JD_MAX", "JD_MIN", "TICKS_PER_DAY", "UtcJD", "ut1_jd"]

log = logging.getLogger(__name__)

JD_MIN = 1721425.5  # 0001-01-01, the calendar range of datetime
JD_MAX = 5373484.5  # 10000-01-01
TICKS_PER_DAY = {
    "D": 1,
    "h": 24,
    "m": 1440,
    "s": 86400,
    "ms": 86_400_000,
    "us": 86_400_000_000,
    "ns": 86_400_000_000_000,
}


class UtcJD(NamedTuple):
    """UTC instants as a two-part JD in the ERFA convention, before the UT1 model.

    ``to_clock`` holds the days to add on leap-second days to get the clock JD (``day +
    seconds of the UTC day / 86400``, what UT1 = UTC means), sparse as ``(flat indices,
    days)``, or None when all are zero. ``jd2`` is the float 0.0 when the input was one
    float (no array on the hot path).
    """

    jd1: np.ndarray
    jd2: Any
    scalar: bool
    to_clock: Sparse | None = None


def ut1_jd(
    date: Any, *, ut1_from_iers: bool = False
) -> tuple[np.ndarray, Any, bool, Sparse | None]:
    """UT1 as a two-part JD ``(jd1, jd2, is_scalar, fix)`` for any supported instant(s).

    ``fix``: when ``jd2`` is the float 0.0 (one float per instant, the hot path), the few
    instants on leap-second days are not folded into ``jd1`` (that would round by up to
    20 microseconds) but returned as ``(flat indices, days to add as a second part)``, for
    `_exact_parts` to recompute; otherwise None and any correction is in ``jd2``.
    """
    jd1, jd2, scalar, to_clock = _utc_jd(date)
    if ut1_from_iers:
        # looked up at the ERFA JD, which tells the leap second from the next day's first
        jd2 = jd2 + _ut1_minus_utc_days(jd1, jd2)
    if to_clock is None or (np.ndim(jd2) == 0 and jd2 == 0.0):
        return jd1, jd2, scalar, to_clock
    jd2 = np.array(np.broadcast_to(jd2, np.shape(jd1)), dtype=np.float64)
    jd2.reshape(-1)[to_clock[0]] += to_clock[1]
    return jd1, jd2, scalar, None


def _utc_jd(date: Any) -> UtcJD:
    """Convert any supported instant(s) to UTC Julian dates (see `UtcJD`)."""
    # an astropy Time can only exist once astropy.time is imported: no import cost otherwise
    astropy_time = sys.modules.get("astropy.time")
    if astropy_time is not None and isinstance(date, astropy_time.Time):
        return _from_astropy(date)
    if isinstance(date, datetime):
        return _from_datetime64(np.datetime64(_naive_utc(date), "us"), scalar=True)
    if isinstance(date, str):
        return _parse_string(date)
    if isinstance(date, bool | np.bool_) or not isinstance(
        date, np.ndarray | np.generic | numbers.Real | list | tuple
    ):
        raise TimeError(
            f"date={date!r} of type {type(date).__name__} is not a time; pass a datetime, "
            "numpy.datetime64, astropy Time, JD float, ISO string, or an array of these"
        )
    try:
        arr = np.asarray(date)
    except (ValueError, TypeError) as exc:
        raise TimeError(f"date={date!r} is not a regular array of times: {exc}") from exc
    kind = arr.dtype.kind
    if kind == "M":
        return _from_datetime64(arr, scalar=arr.ndim == 0)
    if kind == "f" and arr.dtype.itemsize < 8:
        raise TimeError(
            f"Julian dates of dtype {arr.dtype} resolve only about 6 hours near JD 2.46e6; "
            "pass float64"
        )
    if kind in "fiu":
        jd = arr.astype(np.float64, copy=False)
        _check_jd_range(jd, arr)
        return UtcJD(jd, 0.0, arr.ndim == 0, leap_day_corrections(jd, 0.0, to_clock=True))
    if kind == "U" or (kind == "O" and arr.ndim > 0):
        return _from_elements(arr)
    raise TimeError(
        f"date={date!r} (dtype {arr.dtype}) is not a time; pass a datetime, "
        "numpy.datetime64, astropy Time, JD float, ISO string, or an array of these"
    )


def _check_jd_range(jd: np.ndarray, shown: Any = None) -> None:
    """Raise TimeError unless every JD is finite and within years 1-9999.

    ``shown`` is what the caller passed (same shape as ``jd``), to name the bad value.
    """
    if jd.size == 0:
        return
    # NaN propagates through min and max and fails both comparisons
    if jd.min() >= JD_MIN and jd.max() < JD_MAX:
        return
    bad = ~((jd >= JD_MIN) & (jd < JD_MAX))
    value = (jd if shown is None else np.asarray(shown))[bad].flat[0]
    if not np.isfinite(jd[bad].flat[0]):
        raise TimeError(f"date={value!r} is not a finite time (NaN or infinite)")
    raise TimeError(
        f"date={value!r} is outside years 1-9999 (UTC JD {JD_MIN} to {JD_MAX}); "
        "floats are read as UTC Julian dates"
    )


def _from_datetime64(arr: np.ndarray | np.datetime64, *, scalar: bool) -> UtcJD:
    """Calendar (clock) readings: no leap seconds, so ERFA and clock JDs agree."""
    unit, count = np.datetime_data(arr.dtype)
    if unit == "generic":
        raise TimeError(f"date={arr!r} is NaT or has no time unit; it is not a time")
    if unit in ("Y", "M", "W"):
        arr = arr.astype("datetime64[D]")
    elif unit not in TICKS_PER_DAY or TICKS_PER_DAY[unit] % count:
        arr = arr.astype("datetime64[ns]")
    unit, count = np.datetime_data(arr.dtype)
    if np.isnat(arr).any():
        raise TimeError(f"date={np.asarray(arr)[np.isnat(arr)].flat[0]!r} is NaT (not a time)")
    days, rest = np.divmod(arr.view(np.int64), TICKS_PER_DAY[unit] // count)
    jd1 = days + JD_UNIX_EPOCH
    jd2 = rest / (TICKS_PER_DAY[unit] // count)
    _check_jd_range(jd1, arr)
    return UtcJD(jd1, jd2, scalar)


def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(tzinfo=None)


def _from_astropy(time: Any) -> UtcJD:
    configure_astropy_offline()
    try:
        utc = time.utc
    except Exception as exc:  # astropy raises several types for unconvertible scales
        raise TimeError(f"astropy Time {time!r} cannot be converted to UTC: {exc}") from exc
    jd1 = np.asarray(utc.jd1, dtype=np.float64)
    jd2 = np.asarray(utc.jd2, dtype=np.float64)
    _check_jd_range(jd1 + jd2)
    return UtcJD(jd1, jd2, bool(time.isscalar), leap_day_corrections(jd1, jd2, to_clock=True))


def _parse_string(text: str) -> UtcJD:
    """One UTC instant from a string: ISO 8601 first, astropy's string formats second."""
    stripped = text.strip()
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        pass
    else:
        return _from_datetime64(np.datetime64(_naive_utc(parsed), "us"), scalar=True)
    from astropy.time import Time

    configure_astropy_offline()
    try:
        time = Time(stripped, scale="utc")
    except Exception as exc:  # astropy's parsers raise ValueError, TypeError and others
        raise TimeError(
            f"date string {text!r} is not an ISO 8601 time (e.g. '2015-06-08T23:10:00Z')"
        ) from exc
    if not time.isscalar:
        raise TimeError(f"date string {text!r} is not a single time")
    return _from_astropy(time)


def _from_elements(arr: np.ndarray) -> UtcJD:
    """Object or string arrays, converted element by element (input parsing, not hot)."""
    jd1 = np.empty(arr.shape, dtype=np.float64)
    jd2 = np.empty(arr.shape, dtype=np.float64)
    to_clock = np.zeros(arr.shape, dtype=np.float64)
    for index, value in np.ndenumerate(arr):
        item = value.item() if isinstance(value, np.generic) else value
        if isinstance(item, list | tuple | np.ndarray):
            raise TimeError(f"nested element {item!r} of a date array is not a time")
        part = _utc_jd(item)
        if not part.scalar:
            raise TimeError(f"element {item!r} of a date array is not a single time")
        jd1[index] = part.jd1
        jd2[index] = part.jd2
        if part.to_clock is not None:
            to_clock[index] = part.to_clock[1][0]
    flat = np.flatnonzero(to_clock)
    sparse = (flat, to_clock.reshape(-1)[flat]) if flat.size else None
    return UtcJD(jd1, jd2, arr.ndim == 0, sparse)


def _ut1_minus_utc_days(jd1: np.ndarray, jd2: Any) -> np.ndarray:
    """UT1-UTC from astropy's bundled IERS table, days. Never downloads."""
    from astropy.utils import iers

    configure_astropy_offline()
    table = iers.earth_orientation_table.get()
    jd2_full = np.broadcast_to(np.asarray(jd2, dtype=np.float64), np.shape(jd1))
    dut1, status = table.ut1_utc(jd1, jd2_full, return_status=True)
    outside = np.asarray(status) < 0
    if np.any(outside):
        first = (np.asarray(jd1) + jd2_full)[outside].flat[0]
        mjd = table["MJD"].value
        raise TimeError(
            f"UTC JD {first!r} is outside the bundled IERS table (MJD {mjd[0]:.0f} to "
            f"{mjd[-1]:.0f}); update astropy-iers-data, or use ut1_from_iers=False "
            "(UT1 = UTC, error < 0.9 s of LST)"
        )
    if np.any(np.asarray(status) == iers.FROM_IERS_A_PREDICTION):
        log.debug("UT1-UTC for some times comes from IERS-A predictions (bundled table)")
    return np.asarray(dut1.to_value("s")) / 86400.0
