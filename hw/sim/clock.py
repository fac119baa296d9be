"""The simulated device's clock: UTC that starts where it is told and runs fast."""

from __future__ import annotations

import time

import anyio

from mascara_actors.sidereal import REFERENCE_SITE, jd_now

__all__ = ["DeviceClock"]


class DeviceClock:
    """Device time: ``start_jd`` at creation, then ``speed`` device seconds per real second.

    Parameters
    ----------
    start_jd
        Device time now, JD (UTC); None for the host's clock.
    speed
        Device seconds per real second (> 0).
    """

    def __init__(self, start_jd: float | None, speed: float) -> None:
        self._mono0 = time.monotonic()
        self.start_jd = start_jd if start_jd is not None else jd_now()
        """Device time at creation, JD (UTC)."""
        self.speed = speed
        """Device seconds per real second."""

    def jd_now(self) -> float:
        """Device time, JD (UTC)."""
        return self.start_jd + self.speed * (time.monotonic() - self._mono0) / 86400.0

    def lstseq_now(self) -> int:
        """The slot the device clock is in."""
        return self.lstseq_at(self.jd_now())

    @staticmethod
    def lstseq_at(jd: float) -> int:
        """The slot of device time ``jd``."""
        return int(REFERENCE_SITE.local_sidereal_time(jd).lstseq)

    def real_s(self, device_s: float) -> float:
        """Real seconds that ``device_s`` device seconds take."""
        return device_s / self.speed

    async def sleep_until(self, jd: float) -> None:
        """Sleep until device time ``jd`` (at once if it has passed)."""
        await anyio.sleep(max(0.0, (jd - self.jd_now()) * 86400.0 / self.speed))
