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

One module per concept: :mod:`.slots` (the lstseq arithmetic: lstday, lstidx, sets),
:mod:`.gmst` (the sidereal time model and rate), :mod:`.utc` (UTC Julian dates, the clock,
leap-second days), :mod:`.instants` (any supported input as a two-part JD) and
:mod:`.site` (the reference site: LST, lstidx and lstseq of instants, and back).
"""

from mascara_actors.sidereal.gmst import SIDEREAL_DAY_S, lst_mid_hours
from mascara_actors.sidereal.site import (
    LSTSEQ_EPOCH,
    REFERENCE_LONGITUDE_DEG,
    REFERENCE_SITE,
    LocalSiderealTime,
    SiteReference,
    lstseq2date,
)
from mascara_actors.sidereal.slots import (
    SET_SIZE,
    SLOT_SIDEREAL_S,
    SLOTS_PER_SIDEREAL_DAY,
    lstday,
    lstidx,
    set_index,
    slot_length_solar_s,
)
from mascara_actors.sidereal.utc import JD_UNIX_EPOCH, jd_now, jd_to_datetime, unix_to_jd

__all__ = [
    "JD_UNIX_EPOCH",
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
    "lst_mid_hours",
    "lstday",
    "lstidx",
    "lstseq2date",
    "set_index",
    "slot_length_solar_s",
    "unix_to_jd",
]
