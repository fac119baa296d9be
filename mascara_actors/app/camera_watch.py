"""The console's view of a camera: its status, polled every few seconds beside the night.

:class:`CameraWatch` keeps the camera's latest status (its clock, the CCD temperature) for
the console, and reports a camera that stops answering, and its return, as
:class:`~mascara_actors.messages.CameraLink` events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import anyio

from hw.driver import CameraDriver, CameraStatus
from mascara_actors.errors import CameraError
from mascara_actors.messages import CameraLink, Event
from mascara_actors.sidereal import jd_to_datetime

__all__ = ["CameraWatch"]

log = logging.getLogger(__name__)


class CameraWatch:
    """Polls ``driver`` while :meth:`run` runs; ``report`` takes its events."""

    def __init__(
        self, driver: CameraDriver, camera_id: str, report: Callable[[Event], None]
    ) -> None:
        self.driver, self.camera_id, self.report = driver, camera_id, report
        self.status: CameraStatus | None = None
        """The camera's latest answer."""
        self.link_problem: str | None = None
        """Why the camera does not answer, while it does not."""
        self._status_at = 0.0
        self._watching = False

    async def run(self, period_s: float = 2.0) -> None:
        """Poll the camera every ``period_s`` seconds until cancelled."""
        self._watching = True
        try:
            while True:
                await self._poll()
                await anyio.sleep(period_s)
        finally:
            self._watching = False

    async def _poll(self) -> None:
        try:
            status = await self.driver.status()
        except CameraError as exc:
            if self.link_problem is None:
                self.link_problem = str(exc)
                log.error("camera %s is not answering: %s", self.camera_id, exc)
                self.report(CameraLink(answering=False, detail=str(exc)))
            return
        if self.link_problem is not None:
            log.warning("camera %s answers again", self.camera_id)
            self.report(CameraLink(answering=True, detail="the camera answers"))
        self.link_problem = None
        self.status, self._status_at = status, time.monotonic()

    def clock(self) -> datetime:
        """The camera's clock now (UTC), extrapolated from its latest status; the host's
        clock until the camera has answered."""
        status = self.status
        if status is None:
            return datetime.now(UTC)
        jd = status.jd + status.speed * (time.monotonic() - self._status_at) / 86400.0
        return jd_to_datetime(jd)

    def link(self) -> str:
        """The camera link in a few words, for the console."""
        if self.link_problem is not None:
            return f"NOT ANSWERING ({self.link_problem})"
        status = self.status
        if status is None:
            return "connecting"
        if not self._watching:
            return "not watched"
        return f"{status.state.lower()}, readout {'on' if status.readout_on else 'off'}"

    def ccdtemp(self) -> float:
        """The CCD temperature of the latest status, degrees Celsius (NaN before one)."""
        return float("nan") if self.status is None else self.status.cooling.ccdtemp_c
