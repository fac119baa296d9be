"""The camera side of a live run: check the camera, start its readout, arm it, poll it while
no frame comes, re-arm it, release it.

At the start the camera must be the configured one (letter and full readout shape); a
sequence left armed by an earlier host is aborted, the readout stream started and the camera
armed ahead of its clock (:meth:`~hw.driver.CameraDriver.arm_next`) or from a given first
slot. While no frame comes the camera is polled: a counted run whose last slot is well past
is ended, a camera found idle (a power cycle, an ``ABORT`` from elsewhere) is armed again,
and a camera silent for the timeout is given up (:mod:`hw.live.watchdog`). At the end the
armed exposures are aborted and the readout stopped, unless the camera was given up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from hw.driver import CameraDriver, CameraIdentity, CameraStatus
from hw.live.slots import SlotLedger
from hw.live.watchdog import Watchdog
from hw.protocol import CommandRejected, ErrorCode, FrameType
from mascara_actors.config import SensorConfig
from mascara_actors.errors import CameraDisconnected, CameraError, CameraTimeout, ConfigError

__all__ = ["MAX_ARM", "CameraSequence", "check_identity"]

log = logging.getLogger(__name__)

MAX_ARM = 1_000_000
"""Most exposures one ``ARM`` can ask for (docs/camera-protocol.md)."""

# A frame is read out within the slot after its exposure; it may wait a few more slots in
# the camera's queue (max_queued_frames) before the link delivers it.
_GRACE_SLOTS = 4
_ARM_ATTEMPTS = 3

_T = TypeVar("_T")


def check_identity(ident: CameraIdentity, *, camera: str, sensor: SensorConfig) -> None:
    """Raise :class:`~mascara_actors.errors.ConfigError` unless the camera ``ident`` is
    camera ``camera`` reading out the full frame of ``sensor``."""
    if ident.camera != camera:
        raise ConfigError(
            f"the camera on this link identifies as camera {ident.camera!r} "
            f"(serial {ident.serial}), but camera {camera!r} was configured: check "
            "the cabling or the camera id"
        )
    full = (sensor.ny, sensor.nx)
    if (ident.ny, ident.nx) != full:
        raise ConfigError(
            f"camera {ident.camera} reads out {ident.ny} x {ident.nx} pixels (ny x nx) but "
            f"sensor {sensor.name!r} is configured with {full[0]} x {full[1]}: choose "
            "the camera's sensor in cameras.toml"
        )


class CameraSequence:
    """One run's armed sequence on one camera.

    Parameters
    ----------
    driver
        An open camera.
    camera, sensor
        What the camera must be (see :func:`check_identity`).
    frame_type
        What to expose.
    lead_slots
        Slots between the camera's clock and a sequence armed ahead of it.
    retry_s
        Real seconds between tries of a command the camera does not answer.
    slots
        The run's slots: its count, the slot due, where re-arms are noted.
    watchdog
        The camera's signs of life.
    """

    def __init__(
        self,
        driver: CameraDriver,
        *,
        camera: str,
        sensor: SensorConfig,
        frame_type: FrameType,
        lead_slots: int,
        retry_s: float,
        slots: SlotLedger,
        watchdog: Watchdog,
    ) -> None:
        self.driver = driver
        self.camera = camera
        self.sensor = sensor
        self.frame_type = frame_type
        self.lead_slots = lead_slots
        self.retry_s = retry_s
        self.slots = slots
        self.watchdog = watchdog
        self.armed = False
        self.readout_started = False
        self.arms = 0
        """Sequences armed."""
        self.link_errors = 0
        """Polls or re-arms that failed because the camera was silent or away."""

    # -- start and end -----------------------------------------------------------------------

    async def start(self, first_lstseq: int | None) -> CameraIdentity:
        """Check the camera, start the readout, arm the first sequence (from
        ``first_lstseq``, None: ahead of the camera clock); the camera's identity."""
        ident = await self._until_answered(self.driver.identify)
        check_identity(ident, camera=self.camera, sensor=self.sensor)
        status = await self._until_answered(self.driver.status)
        self.watchdog.heard()
        if status.state != "IDLE":
            cancelled = await self.driver.abort()
            log.warning(
                "camera %s was %s (next slot %s): aborted its %d exposures to arm afresh",
                self.camera,
                status.state,
                status.next_lstseq,
                cancelled,
            )
        await self.driver.start_readout()
        self.readout_started = True
        self.slots.begin(await self._arm(first_lstseq, self.slots.count or MAX_ARM))
        return ident

    async def release(self) -> None:
        """Abort the armed exposures and stop the readout; failures are logged only."""
        if self.watchdog.lost:
            log.warning(
                "camera %s was given up: its armed exposures and readout are left as they are",
                self.camera,
            )
        elif self.armed:
            try:
                await self.driver.abort()
            except CameraError as exc:
                log.warning(
                    "could not abort the armed exposures of camera %s: %s", self.camera, exc
                )
        if self.readout_started and not self.watchdog.lost:
            try:
                await self.driver.stop_readout()
            except CameraError as exc:
                log.warning("could not stop the readout of camera %s: %s", self.camera, exc)

    async def _arm(self, first: int | None, n: int) -> int:
        """Arm ``n`` slots from ``first`` (None: ahead of the camera clock); the first slot."""
        attempt = 0
        while True:
            attempt += 1
            try:
                if first is None:
                    got = await self.driver.arm_next(
                        n, lead_slots=self.lead_slots, frame_type=self.frame_type
                    )
                else:
                    await self.driver.arm(first, n, self.frame_type)
                    got = first
            except CommandRejected as exc:
                # arm_next races the camera clock: a slow round trip can make its slot LATE
                if exc.code != ErrorCode.LATE or first is not None or attempt >= _ARM_ATTEMPTS:
                    raise
                log.warning("arming was late (%s); trying again", exc)
                continue
            self.armed = True
            self.arms += 1
            return got

    async def _until_answered(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()``, tried again every ``retry_s`` while the camera is silent or away, until
        the camera timeout (without one: the first error is raised)."""
        while True:
            try:
                return await call()
            except (CameraTimeout, CameraDisconnected) as exc:
                if self.watchdog.timeout_s is None:
                    raise
                self.link_errors += 1
                self.watchdog.last_error = str(exc)
                self.watchdog.check()
                log.warning("camera %s does not answer (%s); trying again", self.camera, exc)
                await anyio.sleep(self.retry_s)

    # -- no frame for a while ----------------------------------------------------------------

    async def poll(self) -> None:
        """No frame for a while: end a finished count, re-arm a camera that went idle, give
        up a camera silent for the timeout (:class:`~hw.live.watchdog.CameraLost`)."""
        status = await self._status()
        if status is None:
            return
        last = self.slots.last
        if last is not None and status.lstseq > last + _GRACE_SLOTS:
            self.watchdog.heard()
            self.slots.end(f"the camera clock is at slot {status.lstseq}")
        elif status.state != "IDLE":
            self._busy(status)
        else:
            self.watchdog.heard()
            await self._rearm(status)

    async def _status(self) -> CameraStatus | None:
        """The camera's status; None (counted, and CameraLost after the timeout) when it
        does not answer before the timeout."""
        # the last poll before the timeout waits no longer than the timeout itself
        wait = max(self.watchdog.time_left(), 0.1)
        status = None
        error = self.watchdog.last_error or f"no answer to a status poll within {wait:.1f} s"
        with anyio.move_on_after(wait):
            try:
                status = await self.driver.status()
            except CameraError as exc:  # the driver reconnects; try again at the next poll
                error = f"no answer to a status poll: {exc}"
        if status is None:
            self.watchdog.last_error = error
            self.link_errors += 1
            log.warning("camera %s did not answer a status poll: %s", self.camera, error)
            self.watchdog.check()
        return status

    def _busy(self, status: CameraStatus) -> None:
        """The camera is armed: a sign of it unless the frames it owes do not come."""
        if status.lstseq <= self.slots.awaited + _GRACE_SLOTS:
            self.watchdog.heard()
            return
        # it answers, but the frames do not come: the readout side is gone (or the frames
        # are late); given up only after the timeout without a frame
        since = self.slots.expected - 1
        if not self.watchdog.last_error:
            log.info(
                "camera %s answers (clock at slot %d) but no frame came since slot %d",
                self.camera,
                status.lstseq,
                since,
            )
        self.watchdog.last_error = (
            f"the camera answers (clock at slot {status.lstseq}, {status.state}, "
            f"{status.frames_sent} frames sent) but no frame came since slot {since}: check "
            "its readout link"
        )
        self.watchdog.check()

    async def _rearm(self, status: CameraStatus) -> None:
        """The camera (``status``) lost its sequence (power cycle, an ABORT from elsewhere):
        arm it again ahead of its clock."""
        last = self.slots.last
        start = status.lstseq + self.lead_slots
        n = MAX_ARM if last is None else min(last - start + 1, MAX_ARM)
        if n < 1:
            return  # the count ends within the lead: the clock check of poll will end it
        log.warning(
            "camera %s is idle at slot %d with frames still wanted: arming again from %d",
            self.camera,
            status.lstseq,
            start,
        )
        try:
            await self._arm(start, n)
        except CameraError as exc:
            self.link_errors += 1
            log.warning("re-arming camera %s failed: %s; trying again later", self.camera, exc)
            return
        self.slots.rearm(
            start,
            f"the camera lost its armed sequence (found idle at slot {status.lstseq}) and was "
            f"armed again from slot {start}",
        )
