"""Sidereal time keeping: LST, the exposure slot index ``lstidx`` and the sequence ``lstseq``.

A MASCARA camera exposes back to back in slots of 6.4 *sidereal* seconds, 13500 slots per
sidereal day, locked to the local mean sidereal time at a fixed reference longitude (the La
Palma reference site, the same for every station). The contract (DESIGN.md section 2):

- ``S(t)``: local mean sidereal time at the reference longitude in sidereal days, continuous
  (unwrapped), ``S mod 1 = LST / 24 h``. GMST is IAU 2006 (ERFA ``gmst06``); UT1 is taken
  equal to UTC unless asked otherwise (error < 0.9 s of LST, the same at every station).
- ``lstseq(t) = floor(13500 S(t)) - 13500 floor(S(t0))`` with ``t0 = 2013-01-01T00:00 UTC``,
  so lstseq 0 starts at the LST = 0 h crossing just before t0 (2012-12-31 about 18:29 UTC).
- ``lstday = lstseq // 13500``, ``lstidx = lstseq % 13500 = floor(LST_hours * 3600 / 6.4)``,
  a set of 50 exposures is ``lstseq // 50``.

Everything is pure and vectorised: a million times take a few tens of milliseconds. Julian
dates are split into whole days and a fraction, so the arithmetic error in LST stays below a
microsecond; the model error (UT1 = UTC) dominates.

Julian dates (floats, astropy ``Time``, `jd_now`, `lstseq2date`) follow the ERFA/astropy UTC
convention: on a day that ends with a leap second the JD fraction spans 86401 s (``erfa.utctai``;
leap seconds from ERFA's bundled table as astropy updates it, never downloaded). Calendar
inputs (datetime, datetime64, ISO strings) are clock readings. With UT1 = UTC the clock JD
is ``day + seconds / 86400``, so the LST of the leap second itself repeats the first second
of the next day, exactly as astropy (``delta_ut1_utc = 0``) and ERFA ``utcut1`` do: LST and
lstseq increase through the whole leap-second day, leap second included, and step back by
that one second at the next midnight.
"""

from __future__ import annotations

import logging
import math
import numbers
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

import numpy as np

from mascara_actors.errors import ConfigError, TimeError
from mascara_actors.offline import configure_astropy_offline

__all__ = [
    "LSTSEQ_EPOCH",
    "REFERENCE_LONGITUDE_DEG",
    "REFERENCE_SITE",
    "SET_SIZE",
    "SIDEREAL_DAY_S",
    "SLOTS_PER_SIDEREAL_DAY",
    "SLOT_SIDEREAL_S",
    "LocalSiderealTime",
    "SiteReference",
    "jd_now",
    "jd_to_datetime",
    "lstday",
    "lstidx",
    "lstseq2date",
    "set_index",
    "slot_length_solar_s",
]

log = logging.getLogger(__name__)

SLOTS_PER_SIDEREAL_DAY = 13500
"""Exposure slots per sidereal day."""
SLOT_SIDEREAL_S = 6.4
"""Length of one exposure slot, sidereal seconds (86400 / 13500)."""
SET_SIZE = 50
"""Exposures per set (binning, astrometry): one set is 320 sidereal seconds."""
REFERENCE_LONGITUDE_DEG = -17.88
"""Longitude of the reference site whose LST drives lstseq, degrees east (La Palma)."""
LSTSEQ_EPOCH = datetime(2013, 1, 1, tzinfo=UTC)
"""``t0`` of the counter (UTC): lstseq 0 is the first slot of the sidereal day holding it."""

# IAU 2006 Earth rotation angle and GMST (ERFA era00 / gmst06).
_DJ00 = 2451545.0  # JD of J2000.0
_ERA_AT_J2000 = 0.7790572732640  # turns
_ERA_EXCESS_RATE = 0.00273781191135448  # turns per UT1 day beyond one turn
_GMST06_ARCSEC = (0.014506, 4612.156534, 1.3915817, -0.00000044, -0.000029956, -0.0000000368)
_ARCSEC_PER_TURN = 1296000.0
_DAYS_PER_CENTURY = 36525.0
# Mean sidereal rate at J2000, sidereal days per solar day: ERA rate plus the linear
# precession term of gmst06.
_SIDEREAL_RATE = 1.0 + _ERA_EXCESS_RATE + _GMST06_ARCSEC[1] / _ARCSEC_PER_TURN / _DAYS_PER_CENTURY
SIDEREAL_DAY_S = 86400.0 / _SIDEREAL_RATE
"""Mean sidereal day at J2000, solar (SI) seconds: 86164.0905 s (shorter by 5 us/century)."""
# the gmst06 polynomial in turns and powers of days (not centuries): saves a pass
_GMST06_TURNS_PER_DAY_POWERS = tuple(
    c / _ARCSEC_PER_TURN / _DAYS_PER_CENTURY**k for k, c in enumerate(_GMST06_ARCSEC)
)

# gmst06 wants TT only for its precession polynomial, whose steepest term is 4612 arcsec per
# century = 0.126 arcsec per day. Taking TT = UTC + 69.184 s (TAI-UTC = 37 s, true since
# 2017) errs by under 100 s even back to 1972 or after a few future leap seconds, which
# moves GMST by 0.126 arcsec/day * 100 s / 86400 s/day = 1.5e-4 arcsec = 1e-5 s of LST.
_TT_MINUS_UTC_DAYS = 69.184 / 86400.0

_JD_UNIX_EPOCH = 2440587.5
_JD_MIN = 1721425.5  # 0001-01-01, the calendar range of datetime
_JD_MAX = 5373484.5  # 10000-01-01
_LST_BELOW_24 = math.nextafter(24.0, 0.0)
_TICKS_PER_DAY = {
    "D": 1,
    "h": 24,
    "m": 1440,
    "s": 86400,
    "ms": 86_400_000,
    "us": 86_400_000_000,
    "ns": 86_400_000_000_000,
}
_US_PER_DAY = _TICKS_PER_DAY["us"]
_MAX_NUDGES = 16
_BLOCK = 8192  # elements per pass of the hot path: 64 kB per float64 array


@dataclass(frozen=True, slots=True)
class LocalSiderealTime:
    """Local sidereal time of one or more instants at the reference site.

    Each field is a NumPy scalar for a scalar input and an array of the input's shape for an
    array input.

    Attributes
    ----------
    lst : numpy.float64 or numpy.ndarray
        Local mean sidereal time, hours of LST, in [0, 24).
    lstidx : numpy.int64 or numpy.ndarray
        Slot within the sidereal day, ``floor(lst * 3600 / texp)``, in [0, 86400 / texp).
    lstseq : numpy.int64 or numpy.ndarray
        Slots since the first slot of the sidereal day holding the site's epoch.
    """

    lst: Any
    lstidx: Any
    lstseq: Any


@dataclass(frozen=True)
class SiteReference:
    """The reference site whose local mean sidereal time drives the slot counter.

    Parameters
    ----------
    longitude_deg : float
        Longitude, degrees east (negative west), in [-180, 360). Default -17.88 (La Palma
        reference site, used by every station).
    epoch : datetime or any scalar `local_sidereal_time` accepts
        ``t0`` of lstseq (UTC; naive datetimes are UTC). Default 2013-01-01T00:00:00 UTC.

    Raises
    ------
    ConfigError
        If the longitude is not a finite number in range or the epoch is not one valid time.
    """

    longitude_deg: float = REFERENCE_LONGITUDE_DEG
    epoch: Any = LSTSEQ_EPOCH
    _epoch_sidereal_day: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lon = self.longitude_deg
        if (
            isinstance(lon, bool | np.bool_)
            or not isinstance(lon, numbers.Real)
            or not -180.0 <= float(lon) < 360.0
        ):
            raise ConfigError(
                f"reference longitude_deg={lon!r} must be a finite number of degrees east in "
                "[-180, 360); set the site longitude in the station config "
                f"(La Palma reference: {REFERENCE_LONGITUDE_DEG})"
            )
        try:
            jd1, jd2, scalar, fix = _ut1_jd(self.epoch)
        except TimeError as exc:
            raise ConfigError(f"lstseq epoch {self.epoch!r} is not a valid time: {exc}") from exc
        if not scalar:
            raise ConfigError(f"lstseq epoch must be a single instant, got {self.epoch!r}")
        whole, _ = _exact_parts(jd1, jd2, fix, self._longitude_turns)
        object.__setattr__(self, "_epoch_sidereal_day", int(whole.item()))

    @property
    def _longitude_turns(self) -> float:
        return float(self.longitude_deg) / 360.0

    def sidereal_days(self, date: Any, *, ut1_from_iers: bool = False) -> Any:
        """``S(t)``: continuous local mean sidereal time, in sidereal days.

        Parameters
        ----------
        date : datetime, numpy.datetime64, astropy.time.Time, float, str, or array of these
            UTC instants (see `local_sidereal_time`).
        ut1_from_iers : bool, optional
            Take UT1-UTC from astropy's bundled IERS table instead of UT1 = UTC.

        Returns
        -------
        numpy.float64 or numpy.ndarray
            ``S = ERA + GMST polynomial + longitude``, in turns (sidereal days) counted from
            the ERA zero point near J2000; ``S mod 1 = LST / 24 h``. Float64 keeps about
            0.2 microsecond of resolution this millennium; use `local_sidereal_time` for
            slot numbers.
        """
        jd1, jd2, scalar, fix = _ut1_jd(date, ut1_from_iers=ut1_from_iers)
        shape = np.shape(jd1)
        whole, frac = _exact_parts(jd1, jd2, fix, self._longitude_turns)
        return _shape_out((whole + frac).reshape(shape), scalar)

    def local_sidereal_time(
        self,
        date: Any,
        texp: float = SLOT_SIDEREAL_S,
        *,
        quick: bool = False,
        ut1_from_iers: bool = False,
    ) -> LocalSiderealTime:
        """LST, slot index and slot sequence number of UTC instants at this site.

        Parameters
        ----------
        date : datetime, numpy.datetime64, astropy.time.Time, float, str, or array of these
            UTC instants. Naive datetimes are UTC, aware ones are converted. Floats are UTC
            Julian dates (ERFA convention on leap-second days, as astropy ``Time.jd``).
            Strings are ISO 8601 (``2015-06-08T23:10:00``, optional ``Z`` or offset), or any
            string astropy ``Time`` parses (e.g. the leap second ``23:59:60``). Astropy times
            in other scales are converted to UTC.
        texp : float, optional
            Slot length, sidereal seconds; 86400 must be a whole multiple of it. Default 6.4.
        quick : bool, optional
            Use a linear formula in a single-float JD (no GMST polynomial). Within 0.1 s of
            LST of the full formula for 1900-2100 (16 ms over 2013-2040), so a slot number may
            be off by one that close to a slot boundary, never more (years 1200-2800).
        ut1_from_iers : bool, optional
            Take UT1-UTC from astropy's bundled IERS table (never downloaded) instead of
            UT1 = UTC. Raises `TimeError` for instants the table does not cover.

        Returns
        -------
        LocalSiderealTime
            ``lst`` (hours of LST in [0, 24)), ``lstidx`` and ``lstseq`` (int64); scalars
            for a scalar ``date``, arrays of its shape otherwise.

        Raises
        ------
        TimeError
            If ``texp`` does not divide the sidereal day, or ``date`` is NaN, infinite,
            unparsable, of an unsupported type or outside years 1-9999.
        """
        nslots = _slots_per_day(texp)
        jd1, jd2, scalar, fix = _ut1_jd(date, ut1_from_iers=ut1_from_iers)
        shape = np.shape(jd1)
        parts = _sidereal_day_parts_linear if quick else _sidereal_day_parts
        jd1 = np.ravel(jd1)
        split = bool(np.ndim(jd2))
        jd2 = np.ravel(jd2) if split else jd2
        lst = np.empty(jd1.shape)
        slot = np.empty(jd1.shape, dtype=np.int64)
        seq = np.empty(jd1.shape, dtype=np.int64)
        # blocks that stay in the L2 cache run twice as fast as whole-array passes
        for start in range(0, jd1.size, _BLOCK):
            block = slice(start, start + _BLOCK)
            part2 = jd2[block] if split else jd2
            whole, frac = parts(jd1[block], part2, self._longitude_turns)
            self._slots(whole, frac, texp, nslots, lst[block], slot[block], seq[block])
        if fix is not None:
            # the few instants on leap-second days, again with their exact second part
            index, days = fix
            whole, frac = parts(jd1[index], days, self._longitude_turns)
            out = (
                np.empty(index.shape),
                np.empty(index.shape, np.int64),
                np.empty(index.shape, np.int64),
            )
            self._slots(whole, frac, texp, nslots, *out)
            lst[index], slot[index], seq[index] = out
        return LocalSiderealTime(
            lst=_shape_out(lst.reshape(shape), scalar),
            lstidx=_shape_out(slot.reshape(shape), scalar),
            lstseq=_shape_out(seq.reshape(shape), scalar),
        )

    def _slots(
        self,
        whole: np.ndarray,
        frac: np.ndarray,
        texp: float,
        nslots: int,
        lst: np.ndarray,
        slot: np.ndarray,
        seq: np.ndarray,
    ) -> None:
        """LST hours, lstidx and lstseq from ``S = whole + frac`` into ``lst, slot, seq``.

        Consumes ``whole`` and ``frac`` (in-place operations: this is the hot path).
        """
        frac *= 24.0
        # frac < 1, but 24 * frac can round up to exactly 24.0
        np.minimum(frac, _LST_BELOW_24, out=lst)
        # the same operations, in the same order, as lstidx == floor(lst * 3600 / texp)
        idx = lst * 3600.0
        idx /= float(texp)
        np.floor(idx, out=idx)
        np.minimum(idx, nslots - 1, out=idx)
        slot[...] = idx
        whole -= self._epoch_sidereal_day
        whole *= nslots
        whole += idx  # whole slot numbers are exact in float64 up to 2**53
        seq[...] = whole


def jd_now() -> float:
    """The host's clock now, as a UTC JD in the ERFA convention (like every float here).

    The POSIX clock counts 86400 s a day; on a day ending with a leap second its reading is
    stretched to the 86401 s ERFA fraction (the exact inverse of `jd_to_datetime`), so LST
    and lstseq of ``jd_now()`` are those of the clock's time of day. Within the leap second
    itself the host clock repeats or smears a second, which no conversion can undo.
    """
    return _clock_to_utc_jd(time.time() / 86400.0 + _JD_UNIX_EPOCH)


def jd_to_datetime(jd_utc: float) -> datetime:
    """A UTC JD (ERFA convention) as a timezone-aware UTC datetime, to the microsecond.

    On a day ending with a leap second the JD fraction spans 86401 s and is converted as
    such; the leap second itself (which ``datetime`` cannot hold) reads as the first second
    of the next day, the clock reading that UT1 = UTC gives it (same LST).
    """
    jd = float(jd_utc)
    stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=jd - _JD_UNIX_EPOCH)
    to_clock = _leap_day_offsets(np.asarray(jd), 0.0, to_clock=True)
    return stamp if to_clock is None else stamp + timedelta(days=float(to_clock))


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
    _slots_per_day(texp)
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
    return _as_lstseq(lstseq) // _slots_per_day(texp)


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
    return _as_lstseq(lstseq) % _slots_per_day(texp)


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
    return _as_lstseq(lstseq) // SET_SIZE


def lstseq2date(
    lstseq: Any,
    texp: float = SLOT_SIDEREAL_S,
    *,
    format: Literal["jd", "calendar"] = "jd",
    reference: SiteReference | None = None,
) -> Any:
    """UTC start of slots: the inverse of ``local_sidereal_time(...).lstseq``.

    UT1 is taken equal to UTC, as `SiteReference.local_sidereal_time` does by default.

    The result is the *first representable* instant of the slot: the smallest float64 JD
    (``"jd"``) or the first whole microsecond (``"calendar"``) whose lstseq is ``lstseq``.
    Rounding the exact start to the output's resolution can land just before the slot, so
    the result is nudged up by one float64 step (about 40 microseconds at JD 2.46e6) or one
    microsecond when needed. Hence one step earlier is slot ``s - 1``, and
    ``lstseq(lstseq2date(s) + e) == s`` for ``0 <= e <= slot length - 1 ms``
    (`slot_length_solar_s`; the millisecond covers that resolution, the rounding of the sum
    and the 1/86400 stretch of JD fractions on leap-second days), on every day.

    Leap seconds: with UT1 = UTC the LST of a leap second repeats in the first second of the
    next day (as in astropy). A slot whose start falls in that repeated second is entered
    during the leap second, left at midnight and entered again one second later; its start
    is the later instant (in the next day), from which it lasts a whole slot, so the round
    trip holds for it too. The slot before it then also covers the leap second's tail.

    Parameters
    ----------
    lstseq : int or array of int
        Slot sequence numbers.
    texp : float, optional
        Slot length, sidereal seconds (default 6.4).
    format : {"jd", "calendar"}, optional
        ``"jd"``: UTC Julian date, float64 (ERFA convention). ``"calendar"``: a
        timezone-aware UTC ``datetime`` for a scalar, a ``datetime64[us]`` array (UTC) for
        an array.
    reference : SiteReference, optional
        Longitude and epoch of the counter (default: `REFERENCE_SITE`).

    Returns
    -------
    numpy.float64, datetime, or numpy.ndarray

    Raises
    ------
    TimeError
        If ``lstseq`` is not integral, ``texp`` does not divide the sidereal day, the
        format is unknown, or the slot falls outside years 1-9999.
    """
    if format not in ("jd", "calendar"):
        raise TimeError(f"format={format!r} is not one of 'jd', 'calendar'")
    if reference is None:
        reference = REFERENCE_SITE
    nslots = _slots_per_day(texp)
    seq = np.asarray(_as_lstseq(lstseq))
    scalar = seq.ndim == 0
    jd1, jd2 = _slot_start_estimate(seq, nslots, reference)

    def seq_of(date: np.ndarray) -> np.ndarray:
        return np.asarray(reference.local_sidereal_time(date, texp).lstseq)

    if format == "jd":
        to_erfa = _leap_day_offsets(jd1, jd2, to_clock=False)
        jd = jd1 + (jd2 if to_erfa is None else jd2 + to_erfa)
        jd = _first_in_slot(
            jd,
            seq,
            seq_of,
            lambda x: np.nextafter(x, np.inf),
            lambda x: np.nextafter(x, -np.inf),
        )
        return _shape_out(jd, scalar)

    # whole half-days in integers: microsecond counts pass 2**53 after year 2255
    half_days = np.round((jd1 - _JD_UNIX_EPOCH) * 2.0).astype(np.int64)
    us = half_days * (_US_PER_DAY // 2) + np.ceil(jd2 * _US_PER_DAY).astype(np.int64)
    us = _first_in_slot(
        us, seq, lambda x: seq_of(x.view("datetime64[us]")), lambda x: x + 1, lambda x: x - 1
    )
    stamps = us.view("datetime64[us]")
    if scalar:
        return stamps[()].item().replace(tzinfo=UTC)
    return stamps


# --------------------------------------------------------------------------- core arithmetic


def _sidereal_day_parts(jd1: Any, jd2: Any, lon_turns: float) -> tuple[np.ndarray, np.ndarray]:
    """``S(t)`` split into whole sidereal days (integral floats) and the fraction in [0, 1).

    IAU 2006 GMST (gmst06 = era00 + precession polynomial) plus the longitude, UT1 taken as
    the given clock JD. The integer days of both JD parts are split off first and enter only
    through the small ERA excess rate, so no digit is lost (rounding < 1 ns). Arrays are at
    least 1-d on return. Written with in-place operations: this is the hot path.
    """
    # at least 1-d: ufuncs turn 0-d arrays into scalars, which the in-place ops cannot use
    jd1 = np.atleast_1d(np.asarray(jd1, dtype=np.float64))
    whole = np.floor(jd1)
    frac = jd1 - whole
    if np.ndim(jd2) or jd2 != 0.0:
        jd2 = np.atleast_1d(np.asarray(jd2, dtype=np.float64))
        whole2 = np.floor(jd2)
        whole = whole + whole2
        frac += jd2
        frac -= whole2
        tt_days = jd1 + jd2
        tt_days -= _DJ00 - _TT_MINUS_UTC_DAYS
    else:
        tt_days = jd1 - (_DJ00 - _TT_MINUS_UTC_DAYS)
    # precession polynomial in TT days since J2000 (TT approximated, see above), in turns
    p0, p1, p2, p3, p4, p5 = _GMST06_TURNS_PER_DAY_POWERS
    poly = tt_days * p5
    for c in (p4, p3, p2, p1):
        poly += c
        poly *= tt_days
    # S = whole + frac + excess * (whole + frac) + ERA(J2000) + lon + poly; whole stays exact
    whole -= _DJ00
    frac *= 1.0 + _ERA_EXCESS_RATE
    frac += poly
    np.multiply(whole, _ERA_EXCESS_RATE, out=poly)
    poly += p0 + _ERA_AT_J2000 + lon_turns
    frac += poly
    carry = np.floor(frac)
    frac -= carry
    whole += carry
    return whole, frac


def _sidereal_day_parts_linear(
    jd1: Any, jd2: Any, lon_turns: float
) -> tuple[np.ndarray, np.ndarray]:
    """``S(t)`` from a linear formula in a single-float JD (the ``quick`` path).

    Drops the t^2 and higher precession terms: 1.39 t^2 arcsec is 16 ms of LST in 2040,
    and reaches one slot (6.4 s) only 8 centuries from J2000.
    """
    days = np.atleast_1d(np.asarray(jd1, dtype=np.float64)) + jd2
    days -= _DJ00
    days *= _SIDEREAL_RATE
    days += _ERA_AT_J2000 + _GMST06_ARCSEC[0] / _ARCSEC_PER_TURN + lon_turns
    whole = np.floor(days)
    days -= whole
    return whole, days


def _slot_start_estimate(
    seq: np.ndarray, nslots: int, reference: SiteReference
) -> tuple[np.ndarray, np.ndarray]:
    """Two-part clock JD (UT1 = UTC) of the exact start of slots, to a few nanoseconds.

    A linear first guess, then two Newton steps on the two-part forward computation of
    ``S``, so precision does not depend on how far the date is from J2000.
    """
    day, idx = np.divmod(seq, nslots)
    target_whole = (day + reference._epoch_sidereal_day).astype(np.float64)
    target_frac = idx / nslots
    offset = _ERA_AT_J2000 + _GMST06_TURNS_PER_DAY_POWERS[0] + reference._longitude_turns
    du = (target_whole + (target_frac - offset)) / _SIDEREAL_RATE
    jd2 = du - np.floor(du)
    jd1 = (du - jd2) + _DJ00
    bad = ~((jd1 >= _JD_MIN) & (jd1 < _JD_MAX))
    if np.any(bad):
        raise TimeError(
            f"lstseq={seq[bad].flat[0]} lies outside years 1-9999; check that it is a slot "
            f"number of the counter starting at {reference.epoch!r}"
        )
    for _ in range(2):
        whole, frac = _sidereal_day_parts(jd1, jd2, reference._longitude_turns)
        error = (target_whole - whole.reshape(jd1.shape)) + (target_frac - frac.reshape(jd1.shape))
        jd2 = jd2 + error / _SIDEREAL_RATE
    return jd1, jd2


def _first_in_slot(
    x: np.ndarray,
    seq: np.ndarray,
    seq_of: Callable[[np.ndarray], np.ndarray],
    step_up: Callable[[np.ndarray], np.ndarray],
    step_down: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Move ``x`` to the smallest representable value whose lstseq is ``seq``."""
    x = np.asarray(x)
    for _ in range(_MAX_NUDGES):
        early = seq_of(x) < seq
        if not early.any():
            break
        x = np.where(early, step_up(x), x)
    else:  # pragma: no cover - the estimate is good to a few nanoseconds
        raise TimeError("lstseq2date did not converge; report this lstseq as a bug")
    for _ in range(_MAX_NUDGES):
        before = step_down(x)
        inside = seq_of(before) == seq
        if not inside.any():
            break
        x = np.where(inside, before, x)
    else:  # pragma: no cover
        raise TimeError("lstseq2date did not converge; report this lstseq as a bug")
    return x


# --------------------------------------------------------------------------- leap seconds

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


_Sparse = tuple[np.ndarray, np.ndarray]
"""``(index, days)``: values at flat indices of an otherwise zero array."""


def _leap_day_offsets(jd1: np.ndarray, jd2: Any, *, to_clock: bool) -> np.ndarray | None:
    """`_leap_day_corrections` as an array of the inputs' shape, or None if all zero."""
    sparse = _leap_day_corrections(jd1, jd2, to_clock=to_clock)
    if sparse is None:
        return None
    shape = np.broadcast_shapes(np.shape(jd1), np.shape(jd2))
    offsets = np.zeros(shape)
    offsets.reshape(-1)[sparse[0]] = sparse[1]
    return offsets


def _leap_day_corrections(jd1: np.ndarray, jd2: Any, *, to_clock: bool) -> _Sparse | None:
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
    to_erfa = _leap_day_offsets(np.asarray(clock_jd), 0.0, to_clock=False)
    return float(clock_jd if to_erfa is None else clock_jd + to_erfa)


# --------------------------------------------------------------------------- input handling


def _slots_per_day(texp: Any) -> int:
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


def _as_lstseq(lstseq: Any) -> Any:
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


def _shape_out(arr: np.ndarray, scalar: bool) -> Any:
    return arr[()] if scalar else arr


class _UtcJD(NamedTuple):
    """UTC instants as a two-part JD in the ERFA convention, before the UT1 model.

    ``to_clock`` holds the days to add on leap-second days to get the clock JD (``day +
    seconds of the UTC day / 86400``, what UT1 = UTC means), sparse as ``(flat indices,
    days)``, or None when all are zero. ``jd2`` is the float 0.0 when the input was one
    float (no array on the hot path).
    """

    jd1: np.ndarray
    jd2: Any
    scalar: bool
    to_clock: _Sparse | None = None


def _ut1_jd(
    date: Any, *, ut1_from_iers: bool = False
) -> tuple[np.ndarray, Any, bool, _Sparse | None]:
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


def _exact_parts(
    jd1: np.ndarray, jd2: Any, fix: _Sparse | None, lon_turns: float
) -> tuple[np.ndarray, np.ndarray]:
    """`_sidereal_day_parts` of `_ut1_jd`'s output, flat, with the sparse ``fix`` applied."""
    jd1 = np.ravel(jd1)
    whole, frac = _sidereal_day_parts(jd1, jd2 if np.ndim(jd2) == 0 else np.ravel(jd2), lon_turns)
    if fix is not None:
        index, days = fix
        whole[index], frac[index] = _sidereal_day_parts(jd1[index], days, lon_turns)
    return whole, frac


def _utc_jd(date: Any) -> _UtcJD:
    """Convert any supported instant(s) to UTC Julian dates (see `_UtcJD`)."""
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
        return _UtcJD(jd, 0.0, arr.ndim == 0, _leap_day_corrections(jd, 0.0, to_clock=True))
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
    if jd.min() >= _JD_MIN and jd.max() < _JD_MAX:
        return
    bad = ~((jd >= _JD_MIN) & (jd < _JD_MAX))
    value = (jd if shown is None else np.asarray(shown))[bad].flat[0]
    if not np.isfinite(jd[bad].flat[0]):
        raise TimeError(f"date={value!r} is not a finite time (NaN or infinite)")
    raise TimeError(
        f"date={value!r} is outside years 1-9999 (UTC JD {_JD_MIN} to {_JD_MAX}); "
        "floats are read as UTC Julian dates"
    )


def _from_datetime64(arr: np.ndarray, *, scalar: bool) -> _UtcJD:
    """Calendar (clock) readings: no leap seconds, so ERFA and clock JDs agree."""
    unit, count = np.datetime_data(arr.dtype)
    if unit == "generic":
        raise TimeError(f"date={arr!r} is NaT or has no time unit; it is not a time")
    if unit in ("Y", "M", "W"):
        arr = arr.astype("datetime64[D]")
    elif unit not in _TICKS_PER_DAY or _TICKS_PER_DAY[unit] % count:
        arr = arr.astype("datetime64[ns]")
    unit, count = np.datetime_data(arr.dtype)
    if np.isnat(arr).any():
        raise TimeError(f"date={arr[np.isnat(arr)].flat[0]!r} is NaT (not a time)")
    days, rest = np.divmod(arr.view(np.int64), _TICKS_PER_DAY[unit] // count)
    jd1 = days + _JD_UNIX_EPOCH
    jd2 = rest / (_TICKS_PER_DAY[unit] // count)
    _check_jd_range(jd1, arr)
    return _UtcJD(jd1, jd2, scalar)


def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(tzinfo=None)


def _from_astropy(time: Any) -> _UtcJD:
    configure_astropy_offline()
    try:
        utc = time.utc
    except Exception as exc:  # astropy raises several types for unconvertible scales
        raise TimeError(f"astropy Time {time!r} cannot be converted to UTC: {exc}") from exc
    jd1 = np.asarray(utc.jd1, dtype=np.float64)
    jd2 = np.asarray(utc.jd2, dtype=np.float64)
    _check_jd_range(jd1 + jd2)
    return _UtcJD(jd1, jd2, bool(time.isscalar), _leap_day_corrections(jd1, jd2, to_clock=True))


def _parse_string(text: str) -> _UtcJD:
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


def _from_elements(arr: np.ndarray) -> _UtcJD:
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
    return _UtcJD(jd1, jd2, arr.ndim == 0, sparse)


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


# Built last: its __post_init__ uses the helpers above.
REFERENCE_SITE = SiteReference()
"""The default reference: longitude -17.88 deg east, epoch 2013-01-01T00:00:00 UTC."""
