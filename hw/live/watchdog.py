"""When a live source gives its camera up: the signs of the camera and :class:`CameraLost`.

A camera shows it is there by a frame, or by answering a poll while no frame is overdue.
With a camera timeout, a camera that shows no such sign for that many real seconds is given
up: :class:`CameraLost` is raised, saying since when and the last error, and no more
commands are sent to it (:attr:`Watchdog.lost`).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from mascara_actors.errors import CameraError

__all__ = ["CameraLost", "Watchdog"]


class CameraLost(CameraError):
    """The camera stayed away longer than the camera timeout.

    Attributes
    ----------
    camera : str
        Camera letter.
    since : float
        Wall-clock time (UNIX seconds) of the last sign of the camera (a frame, or a poll
        answered while no frame was overdue).
    silent_s : float
        Real seconds from ``since`` to the moment it was given up.
    timeout_s : float
        The timeout, real seconds.
    last_error : str
        The last thing that went wrong (a poll that timed out, frames overdue).
    """

    def __init__(
        self, camera: str, *, since: float, silent_s: float, timeout_s: float, last_error: str
    ) -> None:
        self.camera = camera
        self.since = since
        self.silent_s = silent_s
        self.timeout_s = timeout_s
        self.last_error = last_error
        when = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M:%S")
        super().__init__(
            f"camera {camera} silent since {when} UTC ({silent_s:.1f} s, timeout {timeout_s:.1f}"
            f" s): {last_error}; check the camera's power and its control and readout links"
        )


class Watchdog:
    """The latest sign of one camera, and the decision to give it up.

    Parameters
    ----------
    camera
        Camera letter (for the error).
    timeout_s
        Real seconds without a sign before the camera is given up; None: never.
    """

    def __init__(self, camera: str, timeout_s: float | None) -> None:
        self.camera = camera
        self.timeout_s = timeout_s
        self._heard = time.monotonic()
        """Monotonic time of the latest sign of the camera."""
        self._heard_wall = time.time()
        self.last_error = ""
        """What went wrong since the latest sign of the camera ("" when nothing did)."""
        self.lost = False
        """True once the camera was given up: no more commands are sent to it."""

    def start(self) -> None:
        """The run starts: its silence is counted from now."""
        self.heard()

    def heard(self) -> None:
        """A sign of the camera: a frame, or a poll answered while no frame was overdue."""
        self._heard, self._heard_wall = time.monotonic(), time.time()
        self.last_error = ""

    def time_left(self) -> float:
        """Real seconds until the camera is given up (``inf`` without a timeout)."""
        if self.timeout_s is None:
            return math.inf
        return self._heard + self.timeout_s - time.monotonic()

    def check(self) -> None:
        """Raise :class:`CameraLost` once the camera has been silent for the timeout."""
        if self.timeout_s is None:
            return
        silent = time.monotonic() - self._heard
        if silent >= self.timeout_s:
            self.lost = True
            raise CameraLost(
                self.camera,
                since=self._heard_wall,
                silent_s=silent,
                timeout_s=self.timeout_s,
                last_error=self.last_error or "no sign of the camera",
            )
