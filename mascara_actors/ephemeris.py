"""Sun and Moon for night control, station records and the simulated sky (astropy, offline)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, PrecessedGeocentric, get_body
from astropy.time import Time

from mascara_actors.config import SiteConfig
from mascara_actors.offline import configure_astropy_offline

__all__ = [
    "EphemerisTable",
    "SunMoon",
    "night_date",
    "site_location",
    "sun_altitude",
    "sun_altitude_near",
    "sun_moon",
]

configure_astropy_offline()


@dataclass(frozen=True, slots=True)
class SunMoon:
    """Sun and Moon at some times, degrees.

    RA/Dec are geocentric, mean equinox of date (the frame the camera model takes, like the
    catalogue's ``positions_at``); altitudes are topocentric without refraction.
    """

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
    of_date = PrecessedGeocentric(equinox=t, obstime=t)
    sun_d = sun.transform_to(of_date)
    moon_d = moon.transform_to(of_date)
    f = np.float32
    return SunMoon(
        sunra=sun_d.ra.deg.astype(f),
        sundec=sun_d.dec.deg.astype(f),
        sunalt=sun_altaz.alt.deg.astype(f),
        moonra=moon_d.ra.deg.astype(f),
        moondec=moon_d.dec.deg.astype(f),
        moonalt=moon_altaz.alt.deg.astype(f),
        moonph=np.asarray(phase, f),
    )


def sun_altitude(jd_utc: float | np.ndarray, site: SiteConfig) -> np.ndarray:
    """Altitude of the Sun's centre, degrees, at the JDs ``jd_utc``."""
    t = _times(jd_utc)
    loc = site_location(site)
    alt: np.ndarray = get_body("sun", t, loc).transform_to(AltAz(obstime=t, location=loc)).alt.deg
    return alt


_NEAR_STRIDE = 6
"""Grid points per interval at which :func:`sun_altitude_near` computes the altitude."""
_NEAR_MARGIN_DEG = 2.0
"""How far (deg) an interval's ends may lie from a level and still cross it, both ways: the
Sun's altitude bends away from a straight line by under 0.2 deg in half an hour at the
altitudes where nights begin and end."""


def sun_altitude_near(jd_utc: np.ndarray, site: SiteConfig, levels: tuple[float, ...]
                      ) -> np.ndarray:
    """The Sun's altitude (deg) on an even time grid ``jd_utc`` (JD, UTC), exact wherever
    it may cross one of ``levels`` (deg), so that the crossings found are those of
    :func:`sun_altitude` on the whole grid, for about a fifth of its cost.

    The altitude is computed at every sixth point, and between two of them only where
    their altitudes come within 2 degrees of a level; elsewhere it is interpolated, which
    keeps every point on the same side of every level. That assumes the Sun does not cross
    a level twice within six grid steps, which holds for grids of minutes and levels that
    the Sun passes at dusk and dawn (not within degrees of its highest or lowest altitude).
    """
    n = len(jd_utc)
    coarse = np.unique(np.r_[np.arange(0, n, _NEAR_STRIDE), n - 1])
    alt: np.ndarray = np.interp(np.arange(n), coarse, sun_altitude(jd_utc[coarse], site))
    ends = alt[coarse]
    lo, hi = np.minimum(ends[:-1], ends[1:]), np.maximum(ends[:-1], ends[1:])
    near = np.zeros(lo.size, bool)
    for level in levels:
        near |= (lo - _NEAR_MARGIN_DEG <= level) & (level <= hi + _NEAR_MARGIN_DEG)
    inner = [np.arange(a + 1, b) for a, b in zip(coarse[:-1][near], coarse[1:][near],
                                                 strict=True)]
    if inner:
        at = np.concatenate(inner)
        alt[at] = sun_altitude(jd_utc[at], site)
    return alt


def night_date(jd_utc: float, site: SiteConfig, *, horizon_deg: float = 0.0) -> date:
    """UTC date of the sunset that began the night containing ``jd_utc``.

    The Sun's altitude is sampled every 5 minutes over the preceding day and the last
    downward crossing of ``horizon_deg`` is taken, so a night keeps its date after UTC
    midnight (the legacy bug fixed in lsreduce aafe892).
    """
    grid = jd_utc - np.arange(0, 24 * 12 + 1)[::-1] / (24 * 12)
    alt = sun_altitude_near(grid, site, (horizon_deg,))
    down = np.nonzero((alt[:-1] >= horizon_deg) & (alt[1:] < horizon_deg))[0]
    # Polar day or night does not happen at these sites; without a sunset, the date of jd_utc.
    crossing = float(grid[down[-1] + 1]) if down.size else jd_utc
    night: date = Time(crossing, format="jd", scale="utc").to_datetime().date()
    return night


class EphemerisTable:
    """Sun and Moon on a 5-minute grid, interpolated: cheap per-frame look-ups.

    The Moon moves about 2.5 arcmin in 5 minutes, so linear interpolation is good to far
    better than a pixel; the grid is extended on demand, a day at a time. A coarser grid
    (``step_minutes``, a divisor of a day) costs less to build, for simulations.
    """

    def __init__(self, site: SiteConfig, *, step_minutes: float = 5.0) -> None:
        per_day = 1440.0 / step_minutes
        if not per_day.is_integer():
            raise ValueError(f"step_minutes={step_minutes} must divide a day (1440 minutes)")
        self.site = site
        self.step_days = step_minutes / 1440.0
        self._per_day = int(per_day)
        self._jd = np.empty(0)
        self._table: SunMoon | None = None

    def at(self, jd_utc: float | np.ndarray) -> SunMoon:
        """Interpolated Sun and Moon at ``jd_utc`` (a scalar gives one-element arrays)."""
        jd = np.atleast_1d(np.asarray(jd_utc, dtype=float))
        lo, hi = float(jd.min()), float(jd.max())
        if self._table is None or not (self._jd[0] <= lo and hi <= self._jd[-1]):
            # The grid is anchored to whole days of steps, not to the first time asked for,
            # so a restarted process interpolates between the very same points.
            per_day = self._per_day
            n0 = np.floor(lo / self.step_days) // per_day * per_day
            n1 = np.floor(hi / self.step_days) // per_day * per_day
            self._jd = (n0 + np.arange(-2, n1 - n0 + per_day + 2)) * self.step_days
            self._table = sun_moon(self._jd, self.site)
        table = self._table
        out = {}
        for name in ("sunra", "sundec", "sunalt", "moonra", "moondec", "moonalt", "moonph"):
            values = getattr(table, name).astype(float)
            if name.endswith("ra"):
                # unwrap RA so interpolation across 0/360 deg stays continuous
                values = np.degrees(np.unwrap(np.radians(values)))
                out[name] = np.interp(jd, self._jd, values) % 360.0
            else:
                out[name] = np.interp(jd, self._jd, values)
        return SunMoon(**{k: v.astype(np.float32) for k, v in out.items()})
