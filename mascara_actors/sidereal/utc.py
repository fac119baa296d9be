"""UTC Julian dates and the clock: Unix time, the host clock, datetimes, leap-second days.

Julian dates follow the ERFA/astropy UTC convention: on a day that ends with a leap second
the JD fraction spans 86401 s (``erfa.utctai``; leap seconds from ERFA's bundled table as
astropy updates it, never downloaded). A *clock* JD is ``day + seconds / 86400``, what a
POSIX clock or a calendar reading gives, and what UT1 = UTC means; the two differ only on
leap-second days, by at most one second.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

__all__ = [
    "JD_UNIX_EPOCH",
    "Sparse",
    "jd_now",
    "jd_to_datetime",
    "leap_day_corrections",
    "leap_day_offsets",
    "unix_to_jd",
]

JD_UNIX_EPOCH = 2440587.5
"""Julian date of the Unix epoch, 1970-01-01T00:00:00 UTC."""


def unix_to_jd(seconds: float) -> float:
    """Unix time (seconds since 1970-01-01T00:00 UTC, 86400 a day) as a clock JD.

    No leap-second stretch: :func:`jd_now` gives the ERFA-convention JD of the host clock.
    """
    return seconds / 86400.0 + JD_UNIX_EPOCH


def jd_now() -> float:
    """The host's clock now, as a UTC JD in the ERFA convention (like every float here).

    The POSIX clock counts 86400 s a day; on a day ending with a leap second its reading is
    stretched to the 86401 s ERFA fraction (the exact inverse of `jd_to_datetime`), so LST
    and lstseq of ``jd_now()`` are those of the clock's time of day. Within the leap second
    itself the host clock repeats or smears a second, which no conversion can undo.
    """
    return _clock_to_utc_jd(unix_to_jd(time.time()))


def jd_to_datetime(jd_utc: float) -> datetime:
    """A UTC JD (ERFA convention) as a timezone-aware UTC datetime, to the microsecond.

    On a day ending with a leap second the JD fraction spans 86401 s and is converted as
    such; the leap second itself (which ``datetime`` cannot hold) reads as the first second
    of the next day, the clock reading that UT1 = UTC gives it (same LST).
    """
    jd = float(jd_utc)
    stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=jd - JD_UNIX_EPOCH)
    to_clock = leap_day_offsets(np.asarray(jd), 0.0, to_clock=True)
    return stamp if to_clock is None else stamp + timedelta(days=float(to_clock))



_LEAP_CACHE: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}
_LEAP_MARGIN_DAYS = 1e-8  # ~1 ms: far above the rounding of jd1 + jd2 (< 1e-9 day)


def _leap_days() -> tuple[np.ndarray, np.ndarray]:
    """UTC JD at the start of each day ending with a leap second, and its extra seconds.

    From ERFA's table (which astropy extends from its bundled file), 1972 onwards.
    """
    import erfa

    table = erfa.leap_seconds.get()
    key = (len(table), float(table["tai_utc"][-1]))
    cached = _LEAP_CACHE.get(key)
    if cached is None:
        modern = table[table["year"] >= 1972]
        djm0, djm = erfa.cal2jd(modern["year"], modern["month"], 1)
        cached = ((djm0 + djm)[1:] - 1.0, np.diff(modern["tai_utc"]))
        _LEAP_CACHE.clear()
        _LEAP_CACHE[key] = cached
    return cached


Sparse = tuple[np.ndarray, np.ndarray]
"""``(index, days)``: values at flat indices of an otherwise zero array."""


def leap_day_offsets(jd1: np.ndarray, jd2: Any, *, to_clock: bool) -> np.ndarray | None:
    """`leap_day_corrections` as an array of the inputs' shape, or None if all zero."""
    sparse = leap_day_corrections(jd1, jd2, to_clock=to_clock)
    if sparse is None:
        return None
    shape = np.broadcast_shapes(np.shape(jd1), np.shape(jd2))
    offsets = np.zeros(shape)
    offsets.reshape(-1)[sparse[0]] = sparse[1]
    return offsets


def leap_day_corrections(jd1: np.ndarray, jd2: Any, *, to_clock: bool) -> Sparse | None:
    """Days to add to convert between ERFA UTC JDs and clock JDs, or None if all zero.

    Returned sparse, as ``(flat indices, days)``: only times on leap-second days need one.

    On a day ending with a leap second, ERFA's UTC JD fraction ``f`` spans 86400 + extra
    seconds: the instant is ``f * (86400 + extra)`` seconds into the day, so its clock JD
    (``day + seconds / 86400``, what UT1 = UTC means, as ERFA ``utcut1`` with dut1 = 0)
    is ``day + f * (86400 + extra) / 86400``. The leap second thus reads as the first second
    of the next day, which then repeats it.

    ``to_clock=True`` converts ERFA -> clock. ``to_clock=False`` converts a clock JD back;
    a clock reading in that repeated second is read as the next day's (the later of its two
    instants), so that the slot starting there holds for a whole slot from the returned
    instant on. The day is told from the two-part sum (``(jd1 - day) + jd2``), not from
    ``jd1 + jd2`` rounded, which would put the last ~20 microseconds of a leap second in
    the next day. The loop runs over the few leap days within the inputs' range, not over
    times.
    """
    single = np.ndim(jd2) == 0 and jd2 == 0.0
    jd = np.asarray(jd1 if single else jd1 + jd2)
    shape = jd.shape
    if jd.size == 0:
        return None
    jd = jd.reshape(-1)  # flat indices; 1-d masks can be refined in place
    starts, extras = _leap_days()
    # jd1 + jd2 rounds by half a float step (~2e-10 day): select candidates with a margin
    near = (starts + (1.0 + _LEAP_MARGIN_DAYS) >= jd.min()) & (
        starts - _LEAP_MARGIN_DAYS <= jd.max()
    )
    indices: list[np.ndarray] = []
    days: list[np.ndarray] = []
    for start, extra in zip(starts[near], extras[near], strict=True):
        length = 86400.0 + extra
        if single:
            # jd - start is exact for any JD of the day (Sterbenz): no margin needed
            inside = (jd >= start) & (jd < start + 1.0)
            if not inside.any():
                continue
            fraction = jd[inside] - start
        else:
            inside = (jd >= start - _LEAP_MARGIN_DAYS) & (jd < start + 1.0 + _LEAP_MARGIN_DAYS)
            if not inside.any():
                continue
            fraction = (np.broadcast_to(jd1, shape).reshape(-1)[inside] - start) + (
                np.broadcast_to(jd2, shape).reshape(-1)[inside]
            )
            keep = (fraction >= 0.0) & (fraction < 1.0)
            inside[inside] = keep
            fraction = fraction[keep]
        if not to_clock:
            # clock readings of that day (a negative leap second shortens it)
            keep = fraction < min(1.0, length / 86400.0)
            inside[inside] = keep
            fraction = fraction[keep]
        if not inside.any():
            continue
        scale = length / 86400.0 if to_clock else 86400.0 / length
        indices.append(np.flatnonzero(inside))
        days.append(fraction * (scale - 1.0))
    if not indices:
        return None
    if len(indices) == 1:
        return indices[0], days[0]
    return np.concatenate(indices), np.concatenate(days)


def _clock_to_utc_jd(clock_jd: float) -> float:
    """A clock JD (``day + seconds / 86400``) as a UTC JD in the ERFA convention."""
    to_erfa = leap_day_offsets(np.asarray(clock_jd), 0.0, to_clock=False)
    return float(clock_jd if to_erfa is None else clock_jd + to_erfa)
