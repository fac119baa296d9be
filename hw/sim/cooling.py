"""The simulated CCD's temperature: a first-order approach to the cooler's target."""

from __future__ import annotations

import math

from hw.sim.clock import DeviceClock

__all__ = ["CcdCooling"]


class CcdCooling:
    """The CCD temperature, following the cooler.

    The temperature approaches its target exponentially with time constant ``tau_s``
    (device seconds): the set-point when the cooler is on (but at most ``max_cooling_c``
    below ambient), the ambient temperature when it is off. The cooler starts off, with a
    set-point of 0 C.

    Parameters
    ----------
    clock
        The device clock.
    ambient_c
        Ambient temperature, degrees Celsius.
    start_temp_c
        CCD temperature at the clock's start, degrees Celsius; None for ambient.
    tau_s
        Time constant, device seconds (> 0).
    max_cooling_c
        Largest cooling below ambient, kelvin.
    """

    def __init__(
        self,
        clock: DeviceClock,
        *,
        ambient_c: float,
        start_temp_c: float | None,
        tau_s: float,
        max_cooling_c: float,
    ) -> None:
        self._clock = clock
        self.ambient_c = ambient_c
        self.tau_s = tau_s
        self.max_cooling_c = max_cooling_c
        self.cooler_on = False
        self.setpoint_c = 0.0
        self._ref_c = ambient_c if start_temp_c is None else start_temp_c
        self._ref_jd = clock.start_jd

    def target_c(self) -> float:
        """Where the temperature is heading, degrees Celsius."""
        if not self.cooler_on:
            return self.ambient_c
        return max(self.setpoint_c, self.ambient_c - self.max_cooling_c)

    def ccdtemp_c(self, jd: float | None = None) -> float:
        """CCD temperature at device time ``jd`` (default now), degrees Celsius."""
        jd = self._clock.jd_now() if jd is None else jd
        dt = max(0.0, (jd - self._ref_jd) * 86400.0)
        target = self.target_c()
        return target + (self._ref_c - target) * math.exp(-dt / self.tau_s)

    def retarget(self, *, cooler_on: bool | None = None, setpoint_c: float | None = None) -> None:
        """Switch the cooler or move its set-point, from the temperature reached now."""
        now = self._clock.jd_now()
        self._ref_c, self._ref_jd = self.ccdtemp_c(now), now
        if cooler_on is not None:
            self.cooler_on = cooler_on
        if setpoint_c is not None:
            self.setpoint_c = setpoint_c
