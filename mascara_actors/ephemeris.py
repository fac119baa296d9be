"""Sun and Moon for night control, station records and the simulated sky (astropy, offline)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, get_body
from astropy.time import Time

from mascara_actors.config import SiteConfig
from mascara_actors.offline import configure_astropy_offline

__all__ = ["SunMoon", "night_date", "site_location", "sun_altitude", "sun_moon"]

configure_astropy_offline()


@dataclass(frozen=True, slots=True)
class SunMoon:
    """Sun and Moon at some times, degrees (RA/Dec geocentric of date, alt topocentric)."""

    sunra: np.ndarray
    sundec: np.ndarray
    sunalt: np.ndarray
    moonra: np.ndarray
    moondec: np.ndarray
    moonalt: np.ndarray
    moonph: np.ndarray
    """Fraction of the Moon's disc illuminated, 0-1."""


def site_location(site: SiteConfig) -> EarthLocation:
    """The site as an astropy EarthLocation (from the config numbers, never a download)."""
    return EarthLocation.from_geodetic(
        site.longitude_deg * u.deg, site.latitude_deg * u.deg, site.height_m * u.m
    )


def _times(jd_utc: float | np.ndarray) -> Time:
    return Time(np.atleast_1d(np.asarray(jd_utc, float)), format="jd", scale="utc")


def sun_moon(jd_utc: float | np.ndarray, site: SiteConfig) -> SunMoon:
    """Sun and Moon positions at the JDs ``jd_utc`` (UTC), vectorised, arrays of float32."""
    t = _times(jd_utc)
    loc = site_location(site)
    frame = AltAz(obstime=t, location=loc)
    sun = get_body("sun", t, loc)
    moon = get_body("moon", t, loc)
    sun_altaz = sun.transform_to(frame)
    moon_altaz = moon.transform_to(frame)
    elongation = sun.separation(moon).rad
    phase = (1.0 - np.cos(elongation)) / 2.0
    f = np.float32
    return SunMoon(
        sunra=sun.ra.deg.astype(f),
        sundec=sun.dec.deg.astype(f),
        sunalt=sun_altaz.alt.deg.astype(f),
        moonra=moon.ra.deg.astype(f),
        moondec=moon.dec.deg.astype(f),
        moonalt=moon_altaz.alt.deg.astype(f),
        moonph=np.asarray(phase, f),
    )


def sun_altitude(jd_utc: float | np.ndarray, site: SiteConfig) -> np.ndarray:
    """Altitude of the Sun's centre, degrees, at the JDs ``jd_utc``."""
    t = _times(jd_utc)
    loc = site_location(site)
    return get_body("sun", t, loc).transform_to(AltAz(obstime=t, location=loc)).alt.deg


def night_date(jd_utc: float, site: SiteConfig, *, horizon_deg: float = 0.0) -> date:
    """UTC date of the sunset that began the night containing ``jd_utc``.

    The Sun's altitude is sampled every 5 minutes over the preceding day and the last
    downward crossing of ``horizon_deg`` is taken, so a night keeps its date after UTC
    midnight (the legacy bug fixed in lsreduce aafe892).
    """
    grid = jd_utc - np.arange(0, 24 * 12 + 1)[::-1] / (24 * 12)
    alt = sun_altitude(grid, site)
    down = np.nonzero((alt[:-1] >= horizon_deg) & (alt[1:] < horizon_deg))[0]
    if down.size == 0:
        # Polar day or night does not happen at these sites; fall back to the local date.
        return Time(jd_utc, format="jd", scale="utc").to_datetime().date()
    crossing = grid[down[-1] + 1]
    return Time(crossing, format="jd", scale="utc").to_datetime().date()
