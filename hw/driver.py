"""What the camera actor needs from a camera, and the real-hardware implementation.

A camera is put together from small capabilities (pyobs style), each an ABC whose docstring
is its contract:

* :class:`Identifying`: who the camera is, what it is doing (:class:`CameraIdentity`,
  :class:`CameraStatus`).
* :class:`Cooling`: cooler on/off, set-point and CCD temperature (:class:`CoolingState`).
* :class:`Exposing`: arm exposures locked to lstseq slots, abort.
* :class:`ReadingOut`: start/stop the frame stream and receive verified frames.

:class:`CameraDriver` is all four plus ``async with``. :class:`SerialCamera` implements it
over a serial control line (:mod:`hw.serial_link`) and a readout link
(:mod:`hw.readout`). The simulated camera and the recorded-night source are its peers.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from anyio.abc import AsyncResource
from anyio.streams.memory import MemoryObjectReceiveStream

from hw.protocol import FrameType, Message, parse_kv
from hw.readout import ReadoutFrame, ReadoutReceiver, ReadoutStats
from hw.serial_link import LinkStats, SerialLink
from mascara_actors.errors import CameraError

__all__ = [
    "CameraDriver",
    "CameraIdentity",
    "CameraStatus",
    "Cooling",
    "CoolingState",
    "Exposing",
    "Identifying",
    "ReadingOut",
    "SerialCamera",
    "SerialCameraStats",
]

log = logging.getLogger(__name__)

CameraState = Literal["IDLE", "ARMED", "EXPOSING"]


@dataclass(frozen=True, slots=True)
class CameraIdentity:
    """Who the camera is.

    Attributes
    ----------
    vendor, model, serial, firmware : str
        As reported by the camera.
    camera : str
        Station camera letter (N, E, S, W or C).
    ny, nx : int
        Full readout shape, pixels (rows, columns), overscan included.
    """

    vendor: str
    model: str
    serial: str
    firmware: str
    camera: str
    ny: int
    nx: int


@dataclass(frozen=True, slots=True)
class CoolingState:
    """The CCD cooler.

    Attributes
    ----------
    cooler_on : bool
        Whether the cooler runs.
    setpoint_c : float
        Set-point, degrees Celsius.
    ccdtemp_c : float
        Current CCD temperature, degrees Celsius.
    """

    cooler_on: bool
    setpoint_c: float
    ccdtemp_c: float


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """A snapshot of the camera.

    Attributes
    ----------
    state : {"IDLE", "ARMED", "EXPOSING"}
        ARMED: waiting for the first armed slot; EXPOSING: inside the armed sequence.
    lstseq : int
        The slot the camera clock is in now.
    jd : float
        Camera clock, JD (UTC).
    next_lstseq : int or None
        Next slot to be exposed, None when idle.
    remaining : int
        Armed exposures not yet taken.
    cooling : CoolingState
        The cooler.
    readout_on : bool
        Whether frames are streamed on the readout link.
    frames_sent, frames_dropped : int
        The camera's own counters of streamed and dropped frames.
    speed : float
        Camera seconds per real second (1 for a real camera; the simulator's clock factor).
    """

    state: CameraState
    lstseq: int
    jd: float
    next_lstseq: int | None
    remaining: int
    cooling: CoolingState
    readout_on: bool
    frames_sent: int
    frames_dropped: int
    speed: float = 1.0


class Identifying(ABC):
    """A camera that says who it is and what it does."""

    @abstractmethod
    async def identify(self) -> CameraIdentity:
        """Vendor, model, serial, firmware, camera letter and frame shape."""

    @abstractmethod
    async def status(self) -> CameraStatus:
        """The current state, clock, cooling and counters."""


class Cooling(ABC):
    """A camera with a regulated CCD cooler."""

    @abstractmethod
    async def set_cooler(self, on: bool) -> None:
        """Switch the cooler on or off."""

    @abstractmethod
    async def set_setpoint(self, setpoint_c: float) -> None:
        """Set the CCD set-point, degrees Celsius (the camera may refuse values it cannot reach)."""

    @abstractmethod
    async def ccd_temperature(self) -> float:
        """Current CCD temperature, degrees Celsius."""

    @abstractmethod
    async def cooling_state(self) -> CoolingState:
        """Cooler switch, set-point and temperature."""


class Exposing(ABC):
    """A camera that exposes back to back, locked to lstseq slots."""

    @abstractmethod
    async def arm(
        self, first_lstseq: int, count: int, frame_type: FrameType = FrameType.LIGHT
    ) -> None:
        """Expose ``count`` consecutive slots starting with ``first_lstseq``.

        ``frame_type`` says what: science (``LIGHT``), or a calibration frame with the
        shutter closed (``DARK``, ``BIAS``) or on the twilight sky (``FLAT``).

        Raises
        ------
        CommandRejected
            Code ``BUSY`` if already armed (abort first), ``LATE`` if the first slot has
            already started.
        """

    @abstractmethod
    async def abort(self) -> int:
        """Stop the armed sequence; return how many exposures were cancelled."""


class ReadingOut(ABC):
    """A camera that streams its frames on a readout link."""

    @abstractmethod
    async def start_readout(self) -> None:
        """Stream every frame read out from now on."""

    @abstractmethod
    async def stop_readout(self) -> None:
        """Stop streaming; the camera counts the frames it discards."""

    @property
    @abstractmethod
    def frames(self) -> MemoryObjectReceiveStream[ReadoutFrame]:
        """Verified frames, in arrival order; corrupt or short frames never appear here."""


class CameraDriver(Identifying, Cooling, Exposing, ReadingOut, AsyncResource):
    """A complete camera: identify/status, cooling, exposing, readout, and ``async with``.

    ``aclose()`` closes every link; closing twice is a no-op.
    """

    async def arm_next(
        self, count: int, *, lead_slots: int = 2, frame_type: FrameType = FrameType.LIGHT
    ) -> int:
        """Arm ``count`` slots starting ``lead_slots`` after the current one; return the first.

        ``lead_slots`` (>= 1) must cover the round trip to the camera.
        """
        if lead_slots < 1:
            raise ValueError(f"lead_slots must be >= 1, got {lead_slots}")
        first = (await self.status()).lstseq + lead_slots
        await self.arm(first, count, frame_type)
        return first


@dataclass(frozen=True, slots=True)
class SerialCameraStats:
    """Counters of both links of a :class:`SerialCamera`."""

    control: LinkStats
    readout: ReadoutStats


class SerialCamera(CameraDriver):
    """A camera on a serial control line plus a TCP readout link.

    Use as ``async with SerialCamera(tty, (host, port)) as cam: ...``. Both links reconnect
    by themselves; commands raise :class:`~mascara_actors.errors.CameraTimeout` or
    :class:`~mascara_actors.errors.CameraDisconnected` when the camera stays silent or away,
    and :class:`~hw.protocol.CommandRejected` when it refuses.

    Parameters
    ----------
    tty_path : str
        Serial port path (``/dev/ttyUSB0``, or the simulator's ``ttyCAM`` link).
    readout_address : tuple of (str, int)
        Host and TCP port of the readout link.
    timeout_s, retries : optional
        Per-attempt reply timeout (seconds) and extra attempts of each command.
    max_buffered_frames : int, optional
        Frames held for the consumer before the readout link applies back-pressure.
    max_buffered_events : int, optional
        Events held for the consumer; beyond it the oldest is dropped (counted).
    """

    def __init__(
        self,
        tty_path: str,
        readout_address: tuple[str, int],
        *,
        timeout_s: float = 0.5,
        retries: int = 3,
        max_buffered_frames: int = 4,
        max_buffered_events: int = 64,
    ) -> None:
        self.link = SerialLink(
            tty_path, timeout_s=timeout_s, retries=retries, max_buffered_events=max_buffered_events
        )
        self.readout = ReadoutReceiver(*readout_address, max_buffered_frames=max_buffered_frames)
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.link)
            await stack.enter_async_context(self.readout)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the readout and control links; a second call is a no-op."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    @property
    def frames(self) -> MemoryObjectReceiveStream[ReadoutFrame]:
        return self.readout.frames

    @property
    def events(self) -> MemoryObjectReceiveStream[Message]:
        """Asynchronous camera events (``EXPOSED``, ``DONE``, ``DROPPED``, ``TEMP``)."""
        return self.link.events

    @property
    def stats(self) -> SerialCameraStats:
        """Counters of the control and readout links."""
        return SerialCameraStats(self.link.stats, self.readout.stats)

    async def identify(self) -> CameraIdentity:
        kv = await self._kv("IDN")
        try:
            return CameraIdentity(
                vendor=kv["vendor"],
                model=kv["model"],
                serial=kv["serial"],
                firmware=kv["firmware"],
                camera=kv["camera"],
                ny=int(kv["ny"]),
                nx=int(kv["nx"]),
            )
        except (KeyError, ValueError) as exc:
            raise _malformed("IDN", kv, exc) from exc

    async def status(self) -> CameraStatus:
        kv = await self._kv("STATUS")
        try:
            state = kv["state"]
            if state not in ("IDLE", "ARMED", "EXPOSING"):
                raise ValueError(f"unknown state {state!r}")
            nxt = int(kv["next"])
            return CameraStatus(
                state=state,  # type: ignore[arg-type]  # checked just above
                lstseq=int(kv["lstseq"]),
                jd=_finite(kv["jd"]),
                next_lstseq=None if nxt < 0 else nxt,
                remaining=int(kv["remaining"]),
                cooling=CoolingState(
                    cooler_on=kv["cooler"] == "ON",
                    setpoint_c=_finite(kv["setpoint"]),
                    ccdtemp_c=_finite(kv["ccdtemp"]),
                ),
                readout_on=kv["readout"] == "ON",
                frames_sent=int(kv["sent"]),
                frames_dropped=int(kv["dropped"]),
                speed=_finite(kv.get("speed", "1")),
            )
        except (KeyError, ValueError) as exc:
            raise _malformed("STATUS", kv, exc) from exc

    async def set_cooler(self, on: bool) -> None:
        await self.link.request("COOLER", "ON" if on else "OFF")

    async def set_setpoint(self, setpoint_c: float) -> None:
        if not math.isfinite(setpoint_c):
            raise ValueError(f"setpoint_c={setpoint_c} must be a finite temperature in C")
        await self.link.request("SETPOINT", f"{setpoint_c:.3f}")

    async def ccd_temperature(self) -> float:
        reply = await self.link.request("TEMP?")
        try:
            return _finite(reply.args[1])
        except (IndexError, ValueError) as exc:
            raise _malformed("TEMP?", reply.args, exc) from exc

    async def cooling_state(self) -> CoolingState:
        return (await self.status()).cooling

    async def arm(
        self, first_lstseq: int, count: int, frame_type: FrameType = FrameType.LIGHT
    ) -> None:
        if count < 1:
            raise ValueError(f"count={count} must be >= 1 exposure")
        kind = FrameType(frame_type)
        # science keeps the two-argument form that every firmware understands
        extra = () if kind is FrameType.LIGHT else (kind.value,)
        await self.link.request("ARM", str(int(first_lstseq)), str(int(count)), *extra)
        log.info("armed %d %s exposures from lstseq %d", count, kind.value, first_lstseq)

    async def abort(self) -> int:
        reply = await self.link.request("ABORT")
        try:
            return int(reply.args[1])
        except (IndexError, ValueError) as exc:
            raise _malformed("ABORT", reply.args, exc) from exc

    async def start_readout(self) -> None:
        await self.link.request("READOUT", "START")

    async def stop_readout(self) -> None:
        await self.link.request("READOUT", "STOP")

    async def _kv(self, kind: str) -> dict[str, str]:
        reply = await self.link.request(kind)
        return parse_kv(reply.args[1:])


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not finite")
    return value


def _malformed(kind: str, values: object, exc: Exception) -> CameraError:
    return CameraError(
        f"camera sent a malformed {kind} reply {values!r} ({exc}); check the firmware version "
        "against docs/camera-protocol.md"
    )
