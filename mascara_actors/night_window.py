"""When a station night starts and stops: lstseq slots from the Sun's altitude.

The night starts with the first slot that *starts* with the Sun below ``sun_alt_start_deg``
and stops before the first slot that starts with the Sun above ``sun_alt_stop_deg``
(``[night]`` in ``reduction.toml``; +5 degrees at both ends, as the legacy pipeline's
``twilight``). The dusk calibration sequence goes just before the start, the dawn one just
after the stop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from mascara_actors.config import NightConfig, SiteConfig
from mascara_actors.ephemeris import night_date, sun_altitude, sun_altitude_near
from mascara_actors.sidereal import REFERENCE_SITE, lstseq2date, slot_length_solar_s

__all__ = ["FRAMES_SUN_ALT_DEG", "NightWindow", "first_slot_past", "frames_window", "night_window"]

_GRID_STEP_D = 5.0 / 1440.0  # the Sun moves at most 1.25 degrees in altitude in 5 minutes


@dataclass(frozen=True, slots=True)
class NightWindow:
    """The science slots of one night at one site."""

    night: date
    """UTC date of the evening's sunset (the night directory's date)."""
    start_lstseq: int
    """First science slot: the first to start with the Sun below the start altitude."""
    stop_lstseq: int
    """First slot after the night: the first to start with the Sun above the stop altitude."""

    @property
    def slots(self) -> int:
        """Science slots in the night."""
        return self.stop_lstseq - self.start_lstseq

    @property
    def start_jd(self) -> float:
        """Start of the first science slot, JD (UTC)."""
        return float(lstseq2date(self.start_lstseq, format="jd"))

    @property
    def stop_jd(self) -> float:
        """End of the last science slot, JD (UTC)."""
        return float(lstseq2date(self.stop_lstseq, format="jd"))

    def phase(self, lstseq: int) -> str:
        """``"before"`` the night, ``"night"`` or ``"after"`` it, for slot ``lstseq``."""
        if lstseq < self.start_lstseq:
            return "before"
        return "night" if lstseq < self.stop_lstseq else "after"


def first_slot_past(site: SiteConfig, jd_lo: float, jd_hi: float, alt_deg: float, *,
                    rising: bool) -> int:
    """First slot starting with the Sun past ``alt_deg`` in a bracket that crosses it once.

    Parameters
    ----------
    site
        The observatory.
    jd_lo, jd_hi
        JD (UTC) before and after the crossing; the Sun must cross ``alt_deg`` exactly
        once between them (a few minutes apart).
    alt_deg
        Altitude, degrees.
    rising
        True: the first slot starting with the Sun at or above ``alt_deg``; False: the
        first starting below it.
    """
    seq = REFERENCE_SITE.local_sidereal_time(np.array([jd_lo, jd_hi])).lstseq
    candidates = np.arange(int(seq[0]), int(seq[1]) + 2)
    starts = np.asarray(lstseq2date(candidates, format="jd"), float)
    alt = sun_altitude(starts, site)
    past = alt >= alt_deg if rising else alt < alt_deg
    if not past.any():
        raise ValueError(f"the Sun does not cross {alt_deg} deg between JD {jd_lo} and {jd_hi}")
    return int(candidates[np.argmax(past)])


def night_window(site: SiteConfig, jd_utc: float, night: NightConfig) -> NightWindow:
    """The night in progress at ``jd_utc`` (JD, UTC), or the next one if it is day.

    Raises
    ------
    ValueError
        When the Sun does not cross the configured altitudes within the next day and a half
        (polar day or night, which does not happen at the configured sites).
    """
    grid = jd_utc + np.arange(-round(1.0 / _GRID_STEP_D), round(1.5 / _GRID_STEP_D) + 1) \
        * _GRID_STEP_D
    start_alt, stop_alt = night.sun_alt_start_deg, night.sun_alt_stop_deg
    alt = sun_altitude_near(grid, site, (start_alt, stop_alt))
    downs = np.flatnonzero((alt[:-1] >= start_alt) & (alt[1:] < start_alt))
    ups = np.flatnonzero((alt[:-1] < stop_alt) & (alt[1:] >= stop_alt))
    slot_days = slot_length_solar_s() / 86400.0
    for k in ups:
        if grid[k + 1] + slot_days <= jd_utc:
            continue  # the stop slot starts at most a slot after the crossing: long past
        stop = first_slot_past(site, grid[k], grid[k + 1], stop_alt, rising=True)
        if float(lstseq2date(stop, format="jd")) <= jd_utc:
            continue  # this dawn has passed: the next night is wanted
        before = downs[downs < k]
        if before.size == 0:
            break
        d = int(before[-1])
        start = first_slot_past(site, grid[d], grid[d + 1], start_alt, rising=False)
        mid = 0.5 * (float(lstseq2date(start, format="jd")) + float(lstseq2date(stop, format="jd")))
        return NightWindow(night_date(mid, site), start, stop)
    raise ValueError(
        f"the Sun does not go below {start_alt} deg and back above {stop_alt} deg at "
        f"{site.name} around JD {jd_utc:.3f}: check [night] in reduction.toml"
    )


FRAMES_SUN_ALT_DEG = 10.0
"""A recorded night holds the frames taken with the Sun below this altitude (the highest a
station may be configured to observe at) in the night of most of its frames."""


def frames_window(site: SiteConfig, night: NightConfig, lstseqs: Sequence[int]) -> NightWindow:
    """The night most of the slots ``lstseqs`` belong to, from Sun +10 deg at dusk to +10 deg
    at dawn (:data:`FRAMES_SUN_ALT_DEG`): a frame outside it is of another night."""
    middle = sorted(lstseqs)[len(lstseqs) // 2]
    wide = dataclasses.replace(
        night, sun_alt_start_deg=FRAMES_SUN_ALT_DEG, sun_alt_stop_deg=FRAMES_SUN_ALT_DEG
    )
    return night_window(site, float(lstseq2date(middle, format="jd")), wide)
