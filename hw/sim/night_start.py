"""When a simulated night starts: the first slot after the Sun sinks below an altitude.

Used to place simulated nights (``mascara-actors simulate``, the simulated camera of
``mascara-actors live``) at the right time of a given date.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from mascara_actors.config import CameraConfig
from mascara_actors.ephemeris import sun_altitude
from mascara_actors.night_window import first_slot_past
from mascara_actors.sidereal import unix_to_jd

__all__ = ["choose_start_lstseq"]

_GRID_STEP_D = 10.0 / 1440.0  # the Sun moves < 2.5 deg in 10 minutes: one crossing per step


def choose_start_lstseq(
    camera_config: CameraConfig, date: dt.date | dt.datetime | str, *, sun_alt_deg: float = -12.0
) -> int:
    """The first slot of a night whose start has the Sun below ``sun_alt_deg``.

    The night is the one whose sunset (the Sun's centre crossing the horizon downwards) falls
    on the UTC date ``date``, as :func:`mascara_actors.ephemeris.night_date` dates nights.
    The Sun's altitude is sampled every 10 minutes over 36 hours from that date's 00:00 UTC
    (one vectorised call), the crossing of ``sun_alt_deg`` nearest that sunset is
    bracketed, and the ~95 slots inside the bracket are checked in a second call.

    Parameters
    ----------
    camera_config
        The camera; only its site is used.
    date
        The night's date (UTC date of the evening's sunset): a ``date``, a ``datetime``
        (its date is used) or an ISO string such as ``"2026-03-20"`` or ``"20260320"``.
    sun_alt_deg
        Solar altitude, degrees, between -18 and +10 (default -12, nautical twilight).

    Returns
    -------
    int
        The lstseq of the first slot that starts with the Sun below ``sun_alt_deg``.

    Raises
    ------
    ValueError
        For a malformed date, an altitude out of range, or a date with no sunset at the
        site (polar day or night).
    """
    if not -18.0 <= float(sun_alt_deg) <= 10.0:
        raise ValueError(f"sun_alt_deg must be between -18 and 10 degrees, got {sun_alt_deg!r}")
    night = _as_date(date)
    site = camera_config.site
    jd0 = unix_to_jd((night - dt.date(1970, 1, 1)).days * 86400.0)
    grid = jd0 + np.arange(0, round(1.5 / _GRID_STEP_D) + 1) * _GRID_STEP_D
    alt = sun_altitude(grid, site)
    # The night's sunset: the downward horizon crossing (interpolated) on the night's date.
    sets = np.flatnonzero((alt[:-1] >= 0.0) & (alt[1:] < 0.0))
    t_set = grid[sets] + _GRID_STEP_D * alt[sets] / (alt[sets] - alt[sets + 1])
    sets = sets[(t_set >= jd0) & (t_set < jd0 + 1.0)]
    downs = np.flatnonzero((alt[:-1] >= sun_alt_deg) & (alt[1:] < sun_alt_deg))
    if sets.size == 0 or downs.size == 0:
        raise ValueError(
            f"the Sun does not set below {sun_alt_deg} deg at {site.name} on {night}: "
            "choose another date or altitude"
        )
    k = int(downs[np.argmin(np.abs(downs - sets[0]))])
    # Between two samples the Sun sinks monotonically: the first slot starting below the
    # altitude is in the bracket, whose first slot starts at or before grid[k].
    return first_slot_past(site, float(grid[k]), float(grid[k + 1]), sun_alt_deg, rising=False)


def _as_date(value: dt.date | dt.datetime | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(
            f"night date {value!r} is not a date: give YYYY-MM-DD or YYYYMMDD"
        ) from None
