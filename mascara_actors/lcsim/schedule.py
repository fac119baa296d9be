"""Which exposure slots each simulated night covers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mascara_actors.config import CameraConfig, Config
from mascara_actors.errors import ConfigError
from mascara_actors.lcsim.settings import LightCurveSimulation
from mascara_actors.night_window import NightWindow, night_window
from mascara_actors.sidereal import SET_SIZE, slot_length_solar_s, unix_to_jd

__all__ = ["NightSlots", "night_schedule"]


@dataclass(frozen=True, slots=True)
class NightSlots:
    """The slots ``first <= lstseq < stop`` simulated in one night window."""

    window: NightWindow
    first: int
    stop: int

    def sets(self, every_set: int) -> range:
        """The set indices simulated (one in ``every_set``)."""
        return range(self.first // SET_SIZE, (self.stop - 1) // SET_SIZE + 1, every_set)


def night_schedule(config: Config, camera: CameraConfig, sim: LightCurveSimulation
                   ) -> list[NightSlots]:
    """The slots of each simulated night: the configured night window of each date (from
    local noon), or ``sim.hours`` of it (at most to its end) from ``sim.offset_hours`` after
    its start; an offset past the night's end raises ConfigError."""
    out = []
    slots_per_hour = 3600.0 / slot_length_solar_s()
    noon_utc_h = 12.0 - camera.site.longitude_deg / 15.0
    for i in range(sim.nights):
        date = sim.start + dt.timedelta(days=i)
        midnight = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)
        jd = unix_to_jd(midnight.timestamp() + noon_utc_h * 3600.0)
        win = night_window(camera.site, jd, config.reduction.night)
        first, stop = win.start_lstseq, win.stop_lstseq
        if sim.hours is not None:
            offset = round(sim.offset_hours * slots_per_hour)
            if offset >= stop - first:
                raise ConfigError(
                    f"offset_hours={sim.offset_hours}: the night of {date} at {camera.site.name} "
                    f"is {(stop - first) / slots_per_hour:.1f} h long; start within it")
            first += offset
            stop = min(stop, first + max(1, round(sim.hours * slots_per_hour)))
        out.append(NightSlots(win, first, stop))
    return out
