"""The simulated camera's exposures: armed sequences locked to lstseq slots.

After ``ARM first count [type]`` the device exposes slot ``s`` from its start for the
exposure time (none for a bias), reads it out for ``readout_s`` device seconds, emits
``EVT EXPOSED`` and hands the exposure to the frame server; ``EVT DONE`` follows the last
slot. ``ABORT`` stops the sequence at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import anyio
import anyio.abc
import numpy as np

from hw.protocol import FrameType
from hw.sim.clock import DeviceClock
from hw.sim.cooling import CcdCooling
from hw.sim.exposure import ExposureMeta
from mascara_actors.sidereal import lstseq2date

__all__ = ["ExposureSequencer"]

_DAY_S = 86400.0


class ExposureSequencer:
    """The armed sequence of one device and the task that exposes it.

    Parameters
    ----------
    clock, cooling
        The device clock and CCD temperature.
    exposure_s
        Exposure time of light, dark and flat frames, seconds (solar).
    readout_s
        Readout time, device seconds.
    camera
        Camera letter, for :class:`~hw.sim.exposure.ExposureMeta`.
    emit
        Sends a device event (``EXPOSED``, ``DONE``).
    exposed
        Receives each exposure once read out (the frame server's queue).
    """

    def __init__(
        self,
        clock: DeviceClock,
        cooling: CcdCooling,
        *,
        exposure_s: float,
        readout_s: float,
        camera: str,
        emit: Callable[..., None],
        exposed: Callable[[ExposureMeta], None],
    ) -> None:
        self._clock = clock
        self._cooling = cooling
        self._exposure_s = exposure_s
        self._readout_s = readout_s
        self._camera = camera
        self._emit = emit
        self._exposed = exposed
        self.armed: tuple[int, int] | None = None
        """(first slot, count) of the armed sequence, None when idle."""
        self.frame_type = FrameType.LIGHT
        self.next_lstseq = -1
        """Next slot to expose (the last armed sequence's, when idle)."""
        self.exposing = False
        self._scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def state(self) -> Literal["IDLE", "ARMED", "EXPOSING"]:
        """As ``STATUS`` reports it."""
        return "EXPOSING" if self.exposing else ("ARMED" if self.armed else "IDLE")

    @property
    def remaining(self) -> int:
        """Slots of the armed sequence not yet exposed (0 when idle)."""
        if self.armed is None:
            return 0
        first, count = self.armed
        return first + count - self.next_lstseq

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the exposing task (use ``await tg.start(sequencer.run)``); until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await anyio.sleep_forever()

    def start(self, first: int, count: int, frame_type: FrameType) -> None:
        """Arm ``count`` slots from ``first`` (the caller checked it is idle and in time)."""
        assert self._tg is not None, "ExposureSequencer.run is not running"
        self.armed = (first, count)
        self.frame_type = frame_type
        self.next_lstseq = first
        self._tg.start_soon(self._expose, first, count, frame_type)

    def abort(self) -> int:
        """Stop the armed sequence; the slots it had left."""
        remaining = self.remaining
        if self._scope is not None:
            self._scope.cancel()
        self.armed, self.exposing, self._scope = None, False, None
        return remaining

    async def _expose(self, first: int, count: int, frame_type: FrameType) -> None:
        exptime_s = 0.0 if frame_type is FrameType.BIAS else self._exposure_s
        with anyio.CancelScope() as scope:
            self._scope = scope
            starts = np.atleast_1d(lstseq2date(np.arange(first, first + count)))
            for k in range(count):
                s = first + k
                jd_start = float(starts[k])
                await self._clock.sleep_until(jd_start)
                self.exposing = True
                jd_end = jd_start + exptime_s / _DAY_S
                await self._clock.sleep_until(jd_end)
                temp = self._cooling.ccdtemp_c(jd_end)
                self._emit("EXPOSED", s, f"{jd_start:.8f}")
                self.next_lstseq = s + 1
                await self._clock.sleep_until(jd_end + self._readout_s / _DAY_S)
                self._exposed(ExposureMeta(s, jd_start, exptime_s, temp, self._camera, frame_type))
            self._emit("DONE", first + count - 1)
        if self._scope is scope:
            self.armed, self.exposing, self._scope = None, False, None
