"""The reference site: LST, ``lstidx`` and ``lstseq`` of instants, and ``lstseq2date``.

:class:`SiteReference` holds the longitude and the epoch of the slot counter (the La Palma
reference site for every station, :data:`REFERENCE_SITE`); its
:meth:`~SiteReference.local_sidereal_time` is vectorised (a million times take a few tens
of milliseconds) and :func:`lstseq2date` is its exact inverse.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from mascara_actors.errors import ConfigError, TimeError
from mascara_actors.sidereal.gmst import (
    DJ00,
    ERA_AT_J2000,
    GMST06_TURNS_PER_DAY_POWERS,
    SIDEREAL_RATE,
    sidereal_day_parts,
    sidereal_day_parts_linear,
)
from mascara_actors.sidereal.instants import JD_MAX, JD_MIN, TICKS_PER_DAY, ut1_jd
from mascara_actors.sidereal.slots import SLOT_SIDEREAL_S, as_lstseq, slots_per_day
from mascara_actors.sidereal.utc import JD_UNIX_EPOCH, Sparse, leap_day_offsets

__all__ = [
    "LSTSEQ_EPOCH",
    "REFERENCE_LONGITUDE_DEG",
    "REFERENCE_SITE",
    "LocalSiderealTime",
    "SiteReference",
    "lstseq2date",
]

REFERENCE_LONGITUDE_DEG = -17.88
"""Longitude of the reference site whose LST drives lstseq, degrees east (La Palma)."""
LSTSEQ_EPOCH = datetime(2013, 1, 1, tzinfo=UTC)
"""``t0`` of the counter (UTC): lstseq 0 is the first slot of the sidereal day holding it."""

_LST_BELOW_24 = math.nextafter(24.0, 0.0)
_US_PER_DAY = TICKS_PER_DAY["us"]
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
            jd1, jd2, scalar, fix = ut1_jd(self.epoch)
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
        jd1, jd2, scalar, fix = ut1_jd(date, ut1_from_iers=ut1_from_iers)
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
        nslots = slots_per_day(texp)
        jd1, jd2, scalar, fix = ut1_jd(date, ut1_from_iers=ut1_from_iers)
        shape = np.shape(jd1)
        parts = sidereal_day_parts_linear if quick else sidereal_day_parts
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
    nslots = slots_per_day(texp)
    seq = np.asarray(as_lstseq(lstseq))
    scalar = seq.ndim == 0
    jd1, jd2 = _slot_start_estimate(seq, nslots, reference)

    def seq_of(date: np.ndarray) -> np.ndarray:
        return np.asarray(reference.local_sidereal_time(date, texp).lstseq)

    if format == "jd":
        to_erfa = leap_day_offsets(jd1, jd2, to_clock=False)
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
    half_days = np.round((jd1 - JD_UNIX_EPOCH) * 2.0).astype(np.int64)
    us = half_days * (_US_PER_DAY // 2) + np.ceil(jd2 * _US_PER_DAY).astype(np.int64)
    us = _first_in_slot(
        us, seq, lambda x: seq_of(x.view("datetime64[us]")), lambda x: x + 1, lambda x: x - 1
    )
    stamps = us.view("datetime64[us]")
    if scalar:
        return stamps[()].item().replace(tzinfo=UTC)
    return stamps


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
    offset = ERA_AT_J2000 + GMST06_TURNS_PER_DAY_POWERS[0] + reference._longitude_turns
    du = (target_whole + (target_frac - offset)) / SIDEREAL_RATE
    jd2 = du - np.floor(du)
    jd1 = (du - jd2) + DJ00
    bad = ~((jd1 >= JD_MIN) & (jd1 < JD_MAX))
    if np.any(bad):
        raise TimeError(
            f"lstseq={seq[bad].flat[0]} lies outside years 1-9999; check that it is a slot "
            f"number of the counter starting at {reference.epoch!r}"
        )
    for _ in range(2):
        whole, frac = sidereal_day_parts(jd1, jd2, reference._longitude_turns)
        error = (target_whole - whole.reshape(jd1.shape)) + (target_frac - frac.reshape(jd1.shape))
        jd2 = jd2 + error / SIDEREAL_RATE
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


def _shape_out(arr: np.ndarray, scalar: bool) -> Any:
    return arr[()] if scalar else arr


def _exact_parts(
    jd1: np.ndarray, jd2: Any, fix: Sparse | None, lon_turns: float
) -> tuple[np.ndarray, np.ndarray]:
    """`sidereal_day_parts` of `ut1_jd`'s output, flat, with the sparse ``fix`` applied."""
    jd1 = np.ravel(jd1)
    whole, frac = sidereal_day_parts(jd1, jd2 if np.ndim(jd2) == 0 else np.ravel(jd2), lon_turns)
    if fix is not None:
        index, days = fix
        whole[index], frac[index] = sidereal_day_parts(jd1[index], days, lon_turns)
    return whole, frac


# Built last: its __post_init__ uses the helpers above.
REFERENCE_SITE = SiteReference()
"""The default reference: longitude -17.88 deg east, epoch 2013-01-01T00:00:00 UTC."""
