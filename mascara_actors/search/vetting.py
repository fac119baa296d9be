"""Vetting: the criteria a peak must pass to be a transit candidate.

They follow the legacy dozen, which were SuperWASP's (Collier Cameron et al. 2006) as the
MASCARA team used them (Talens et al. 2017, 2018): each removes a kind of false alarm the
periodogram alone cannot tell from a planet. The thresholds are in :class:`Thresholds`; each
criterion's meaning is in :data:`CRITERIA` (written into the candidates file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mascara_actors.search.measure import TransitMeasure
from mascara_actors.search.peaks import alias_free

__all__ = ["CRITERIA", "Thresholds", "central_duration", "criteria_text", "vet"]


@dataclass(frozen=True)
class Thresholds:
    """Where each criterion cuts."""

    sde: float = 1.0
    snr: float = 10.0
    anti_transit: float = 1.5
    ntransits: int = 2
    single_night: float = 0.8
    depth_max: float = 0.05
    odd_even: float = 3.0
    secondary: float = 3.0
    ellipsoidal: float = 5.0
    in_transit_excess: float = 3.0
    duration_excess: float = 2.0
    alias_tolerance: float = 0.005
    sidebands: tuple[float, ...] = ()
    """Frequencies (1/day) down to which the calibration leaks the sidereal day (the search
    sets them from its files: :func:`~.peaks.calibration_sidebands`)."""
    sideband_width: float = 0.0
    """How far, 1/day, the band from the sidereal day to each sideband reaches beyond the
    sideband (the search sets it to 1 over the season's baseline, its resolution)."""
    sideband_snr: float = 20.0
    """A peak in a sideband's band passes only with at least this S/N. The calibration's
    leak makes dips there of S/N up to about 14 in quiet stars (800 of the benchmark
    season's stars without a transit, searched without this band masked); a 2 % transit
    there shows S/N 50 to 130 and most 1 % ones 40 to 75."""


CRITERIA: dict[str, str] = {
    "sde": "signal detection efficiency of the peak >= {sde}: above the bulk of the "
           "periodogram (a low bar: with a few hours a night a deep transit lifts the whole "
           "periodogram, a box catching one of its transits at any period; the S/N decides)",
    "snr": "depth over its error, correlated noise included, >= {snr}",
    "anti_transit": "the best dip gains >= {anti_transit} times the chi-square of the best "
                    "bump of the same duration at this period (systematics make both)",
    "ntransits": ">= {ntransits} transits observed with at least 3 points each",
    "single_night": "no single transit brings more than {single_night} of the signal's "
                    "chi-square (one bad night is not a period)",
    "depth": "depth <= {depth_max}: deeper is an eclipsing binary, not a planet",
    "odd_even": "odd and even transits agree within {odd_even} sigma (a binary at twice "
                "the period has unequal eclipses)",
    "secondary": "no dip at phase 0.5 deeper than {secondary} sigma (a planet's secondary "
                 "eclipse is far below MASCARA's noise)",
    "ellipsoidal": "no cos(4 pi phase) variation out of transit above {ellipsoidal} sigma "
                   "(a tidally distorted star: a massive companion)",
    "in_transit": "the fraction of points in transit is at most {in_transit_excess} times "
                  "duration / period (not a dip made of the data's own gaps)",
    "duration": "duration at most {duration_excess} times that of a central transit of a "
                "Jupiter across a star of the host's spectral class",
    "alias": "period further than {alias_tolerance} (fractionally) from every multiple and "
             "fraction of the sidereal day, and, unless its S/N is at least {sideband_snr}, "
             "frequency outside the band the calibration leaks the sidereal day into, "
             "widened by {sideband_width:.4f} per day (from the sidereal day down to "
             "1/sidereal day - 1/T for calibrated files of T days, the median), whose leaked "
             "dips reach S/N 14",
    "blend": "no neighbour within the blend radius shows the dip more significantly",
}

# Main-sequence radius (solar) and mass (solar) per spectral class; unknown: an A star,
# the commonest host among MASCARA's bright stars. Most stars redder than G brighter than
# V = 8.4 are giants, so K and M get no less than the Sun.
_STAR = {"O": (8.0, 20.0), "B": (3.5, 5.0), "A": (1.8, 2.0), "F": (1.3, 1.3),
         "G": (1.0, 1.0), "K": (1.0, 1.0), "M": (1.0, 1.0), "?": (1.8, 2.0)}
_RSUN_AU = 0.0046505
_RJUP_RSUN = 0.10045


def central_duration(period: float, sptype: str) -> float:
    """Days: first to last contact of a Jupiter crossing the middle of a main-sequence star
    of class ``sptype`` on a circular orbit of ``period`` days."""
    radius, mass = _STAR.get(sptype, _STAR["?"])
    a_au = (mass * (period / 365.25) ** 2) ** (1.0 / 3.0)
    x = min((radius + _RJUP_RSUN) * _RSUN_AU / a_au, 1.0)
    return period / math.pi * math.asin(x)


def vet(m: TransitMeasure, *, sde: float, sptype: str, blend_snr: float,
        limits: Thresholds | None = None) -> dict[str, bool]:
    """Pass or fail per criterion of :data:`CRITERIA`."""
    t = limits or Thresholds()
    return {
        "sde": sde >= t.sde,
        "snr": m.snr >= t.snr,
        "anti_transit": m.anti_transit_ratio >= t.anti_transit,
        "ntransits": m.ntransits >= t.ntransits,
        "single_night": m.single_night_fraction <= t.single_night,
        "depth": 0 < m.depth <= t.depth_max,
        "odd_even": m.odd_even_sigma <= t.odd_even,
        "secondary": m.secondary_sigma <= t.secondary,
        "ellipsoidal": m.ellipsoidal_sigma <= t.ellipsoidal,
        "in_transit": m.in_transit_fraction <= t.in_transit_excess * m.duration / m.period,
        "duration": m.duration <= t.duration_excess * central_duration(m.period, sptype),
        "alias": bool(alias_free(np.array([m.period]), t.alias_tolerance,
                                 () if m.snr >= t.sideband_snr else t.sidebands,
                                 t.sideband_width)[0]),
        "blend": blend_snr < m.snr,
    }


def criteria_text(limits: Thresholds | None = None) -> dict[str, str]:
    """:data:`CRITERIA` with the thresholds filled in."""
    t = limits or Thresholds()
    values = {k: getattr(t, k) for k in t.__dataclass_fields__}
    return {k: v.format(**values) for k, v in CRITERIA.items()}
