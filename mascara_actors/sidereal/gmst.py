"""The mean sidereal time model: ``S(t)`` from IAU 2006 GMST (ERFA ``gmst06``), and its rate.

``S`` is counted in sidereal days (turns) from the ERA zero point near J2000, continuous,
with ``S mod 1 = LST / 24 h``; UT1 is the given clock JD (UT1 = UTC unless asked otherwise).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "DJ00",
    "ERA_AT_J2000",
    "GMST06_TURNS_PER_DAY_POWERS",
    "SIDEREAL_DAY_S",
    "SIDEREAL_RATE",
    "lst_mid_hours",
    "sidereal_day_parts",
    "sidereal_day_parts_linear",
]

# IAU 2006 Earth rotation angle and GMST (ERFA era00 / gmst06).
DJ00 = 2451545.0  # JD of J2000.0
ERA_AT_J2000 = 0.7790572732640  # turns
_ERA_EXCESS_RATE = 0.00273781191135448  # turns per UT1 day beyond one turn
_GMST06_ARCSEC = (0.014506, 4612.156534, 1.3915817, -0.00000044, -0.000029956, -0.0000000368)
_ARCSEC_PER_TURN = 1296000.0
_DAYS_PER_CENTURY = 36525.0
# Mean sidereal rate at J2000, sidereal days per solar day: ERA rate plus the linear
# precession term of gmst06.
SIDEREAL_RATE = 1.0 + _ERA_EXCESS_RATE + _GMST06_ARCSEC[1] / _ARCSEC_PER_TURN / _DAYS_PER_CENTURY
SIDEREAL_DAY_S = 86400.0 / SIDEREAL_RATE
"""Mean sidereal day at J2000, solar (SI) seconds: 86164.0905 s (shorter by 5 us/century)."""
# the gmst06 polynomial in turns and powers of days (not centuries): saves a pass
GMST06_TURNS_PER_DAY_POWERS = tuple(
    c / _ARCSEC_PER_TURN / _DAYS_PER_CENTURY**k for k, c in enumerate(_GMST06_ARCSEC)
)

# gmst06 wants TT only for its precession polynomial, whose steepest term is 4612 arcsec per
# century = 0.126 arcsec per day. Taking TT = UTC + 69.184 s (TAI-UTC = 37 s, true since
# 2017) errs by under 100 s even back to 1972 or after a few future leap seconds, which
# moves GMST by 0.126 arcsec/day * 100 s / 86400 s/day = 1.5e-4 arcsec = 1e-5 s of LST.
_TT_MINUS_UTC_DAYS = 69.184 / 86400.0

# The ratio the mid-exposure LST has always been computed with: the IAU 1982 value. It
# differs from SIDEREAL_RATE (IAU 2006 at J2000) by 6e-12, that is 5e-15 h over half an
# exposure, far below anything measurable; but those last bits of the mid-exposure LST reach
# the light curves and the binned images, which stay byte-identical across refactors.
# Moving to SIDEREAL_RATE is a deliberate change of the output files, to be made as such.
_MID_EXPOSURE_SIDEREAL_PER_SOLAR = 1.002737909350795


def lst_mid_hours(lst_hours: float, jd: float, jdmid: float) -> float:
    """LST at mid-exposure, hours: the start LST advanced by the solar time to ``jdmid``.

    ``lst_hours`` is the LST at the start of the exposure (``jd``); ``jd`` and ``jdmid`` are
    Julian dates. Not wrapped: the last slot of a sidereal day may give 24 h and a few
    seconds (take ``% 24.0`` where an LST in [0, 24) is needed).
    """
    return lst_hours + (jdmid - jd) * 24.0 * _MID_EXPOSURE_SIDEREAL_PER_SOLAR


def sidereal_day_parts(jd1: Any, jd2: Any, lon_turns: float) -> tuple[np.ndarray, np.ndarray]:
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
        tt_days -= DJ00 - _TT_MINUS_UTC_DAYS
    else:
        tt_days = jd1 - (DJ00 - _TT_MINUS_UTC_DAYS)
    # precession polynomial in TT days since J2000 (TT approximated, see above), in turns
    p0, p1, p2, p3, p4, p5 = GMST06_TURNS_PER_DAY_POWERS
    poly = tt_days * p5
    for c in (p4, p3, p2, p1):
        poly += c
        poly *= tt_days
    # S = whole + frac + excess * (whole + frac) + ERA(J2000) + lon + poly; whole stays exact
    whole -= DJ00
    frac *= 1.0 + _ERA_EXCESS_RATE
    frac += poly
    np.multiply(whole, _ERA_EXCESS_RATE, out=poly)
    poly += p0 + ERA_AT_J2000 + lon_turns
    frac += poly
    carry = np.floor(frac)
    frac -= carry
    whole += carry
    return whole, frac


def sidereal_day_parts_linear(
    jd1: Any, jd2: Any, lon_turns: float
) -> tuple[np.ndarray, np.ndarray]:
    """``S(t)`` from a linear formula in a single-float JD (the ``quick`` path).

    Drops the t^2 and higher precession terms: 1.39 t^2 arcsec is 16 ms of LST in 2040,
    and reaches one slot (6.4 s) only 8 centuries from J2000.
    """
    days = np.atleast_1d(np.asarray(jd1, dtype=np.float64)) + jd2
    days -= DJ00
    days *= SIDEREAL_RATE
    days += ERA_AT_J2000 + _GMST06_ARCSEC[0] / _ARCSEC_PER_TURN + lon_turns
    whole = np.floor(days)
    days -= whole
    return whole, days
