"""The simulated device's command interpreter: each protocol command and its reply.

Every command gets exactly one reply (``OK`` with the results, or ``ERR`` with an
:class:`~hw.protocol.ErrorCode` and a reason), whatever goes wrong inside. A command whose
sequence number and content equal one of the last 32 (within 10 s) is answered from a
cache, not executed again, so a host may safely retry after a lost reply. Reply faults
(:mod:`hw.sim.faults`) are applied on the way out; faults armed by a ``FAULT`` command start
after its own reply.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from hw.protocol import ERR, OK, ErrorCode, FrameType, Message, format_kv
from hw.sim.clock import DeviceClock
from hw.sim.cooling import CcdCooling
from hw.sim.device_config import DeviceConfig
from hw.sim.faults import FAULTS, FaultInjector
from hw.sim.frame_server import FrameServer
from hw.sim.pty_port import PtyPort
from hw.sim.sequencer import ExposureSequencer

__all__ = ["CommandSet"]

log = logging.getLogger(__name__)

_REPLY_CACHE = 32
# a repeat after this many real seconds is a new command (a restarted host reusing a number)
_REPLY_CACHE_S = 10.0
_MAX_ARM = 1_000_000


class _Refused(Exception):
    """A command refused with an error code (the reply is ``ERR,<code>,<text>``)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code


def _one_float(name: str, args: tuple[str, ...]) -> float:
    try:
        (text,) = args
        value = float(text)
    except ValueError:
        raise _Refused(ErrorCode.BADARG, f"{name} takes one number, got {args}") from None
    if not math.isfinite(value):
        raise _Refused(ErrorCode.BADARG, f"{name} value {text} is not finite")
    return value


class CommandSet:
    """Execute the commands read on the control line against the device's parts.

    Parameters
    ----------
    config
        The device configuration (identity, shape, speed).
    clock, cooling, sequencer, frames, faults, port
        The parts of the device the commands act on, and the port replies go out on.
    """

    def __init__(
        self,
        config: DeviceConfig,
        *,
        clock: DeviceClock,
        cooling: CcdCooling,
        sequencer: ExposureSequencer,
        frames: FrameServer,
        faults: FaultInjector,
        port: PtyPort,
    ) -> None:
        self._cfg = config
        self._clock = clock
        self._cooling = cooling
        self._sequencer = sequencer
        self._frames = frames
        self._faults = faults
        self._port = port
        self.counts = dict.fromkeys(("commands", "cached", "ignored"), 0)
        self._cache: OrderedDict[int, tuple[Message, bytes, float]] = OrderedDict()

    def on_command(self, msg: Message) -> None:
        """Execute one command and answer it (or replay a cached answer)."""
        if self._faults.muted():
            self.counts["ignored"] += 1
            return
        cached = self._cache.get(msg.seq)
        if cached is not None and cached[0] == msg and time.monotonic() < cached[2]:
            self.counts["cached"] += 1
            self._send_reply(cached[1])
            return
        self.counts["commands"] += 1
        try:
            args = self._execute(msg.kind, msg.args)
            reply = Message(msg.seq, OK, (msg.kind, *args))
        except _Refused as exc:
            reply = Message(msg.seq, ERR, (exc.code, Message.sanitise(str(exc))))
        except Exception as exc:  # the device must answer whatever goes wrong
            log.exception("command %r failed", msg)
            reply = Message(msg.seq, ERR, (ErrorCode.INTERNAL, Message.sanitise(repr(exc))))
        data = reply.encode()
        self._cache[msg.seq] = (msg, data, time.monotonic() + _REPLY_CACHE_S)
        while len(self._cache) > _REPLY_CACHE:
            self._cache.popitem(last=False)
        self._send_reply(data)
        self._faults.arm_deferred()  # faults armed by this command start after its reply
        down_s = self._faults.take_vanish()
        if down_s is not None:
            self._port.vanish(down_s)

    def _send_reply(self, data: bytes) -> None:
        damaged = self._faults.damage_reply(data)
        if damaged is not None:
            self._port.write(damaged)

    def _execute(self, kind: str, args: tuple[str, ...]) -> tuple[str, ...]:
        handler: Callable[..., tuple[str, ...]] | None = getattr(
            self, "_cmd_" + kind.rstrip("?").lower(), None
        )
        if handler is None:
            raise _Refused(ErrorCode.UNKNOWN, f"command {kind} not supported")
        try:
            inspect.signature(handler).bind(*args)
        except TypeError:
            raise _Refused(ErrorCode.BADARG, f"{kind} does not take arguments {args}") from None
        return handler(*args)

    # -- the commands (docs/camera-protocol.md) --------------------------------------------

    def _cmd_idn(self) -> tuple[str, ...]:
        ny, nx = self._cfg.shape
        return format_kv(
            {
                "vendor": "MASCARA-SIM",
                "model": "simulated-ccd",
                "serial": f"SIM{self._cfg.seed:04d}",
                "firmware": "1.0",
                "camera": self._cfg.camera,
                "ny": ny,
                "nx": nx,
            }
        )

    def _cmd_status(self) -> tuple[str, ...]:
        jd = self._clock.jd_now()
        seq, frames, cooling = self._sequencer, self._frames, self._cooling
        return format_kv(
            {
                "state": seq.state,
                "lstseq": self._clock.lstseq_at(jd),
                "jd": f"{jd:.10f}",
                "next": seq.next_lstseq if seq.armed else -1,
                "remaining": seq.remaining,
                "type": seq.frame_type.value,
                "ccdtemp": f"{cooling.ccdtemp_c(jd):.4f}",
                "setpoint": f"{cooling.setpoint_c:.3f}",
                "cooler": "ON" if cooling.cooler_on else "OFF",
                "readout": "ON" if frames.readout_on else "OFF",
                "speed": self._cfg.speed,
                "rendered": frames.counts["rendered"],
                "sent": frames.counts["sent"],
                "dropped": frames.counts["dropped"],
            }
        )

    def _cmd_cooler(self, *args: str) -> tuple[str, ...]:
        if args not in (("ON",), ("OFF",)):
            raise _Refused(ErrorCode.BADARG, f"COOLER takes ON or OFF, got {args}")
        self._cooling.retarget(cooler_on=args[0] == "ON")
        return args

    def _cmd_setpoint(self, *args: str) -> tuple[str, ...]:
        value = _one_float("SETPOINT", args)
        if not -80.0 <= value <= 40.0:
            raise _Refused(ErrorCode.BADARG, f"SETPOINT {value} C outside -80..40 C")
        self._cooling.retarget(setpoint_c=value)
        return (f"{value:.3f}",)

    def _cmd_temp(self) -> tuple[str, ...]:
        return (f"{self._cooling.ccdtemp_c():.3f}",)

    def _cmd_arm(self, *args: str) -> tuple[str, ...]:
        if len(args) not in (2, 3) or not all(a.lstrip("-").isdigit() for a in args[:2]):
            raise _Refused(
                ErrorCode.BADARG, f"ARM takes <first_lstseq> <count> [<frame type>], got {args}"
            )
        try:
            frame_type = FrameType(args[2]) if len(args) == 3 else FrameType.LIGHT
        except ValueError:
            raise _Refused(
                ErrorCode.BADARG, f"ARM frame type {args[2]!r} is not one of {list(FrameType)}"
            ) from None
        first, count = int(args[0]), int(args[1])
        if not 1 <= count <= _MAX_ARM:
            raise _Refused(ErrorCode.BADARG, f"ARM count {count} outside 1..1000000")
        if self._sequencer.armed is not None:
            raise _Refused(ErrorCode.BUSY, "already armed; send ABORT first")
        now = self._clock.lstseq_now()
        if first <= now:
            raise _Refused(ErrorCode.LATE, f"slot {first} already started (now {now})")
        self._sequencer.start(first, count, frame_type)
        return (str(first), str(count), frame_type.value)

    def _cmd_abort(self) -> tuple[str, ...]:
        return (str(self._sequencer.abort()),)

    def _cmd_readout(self, *args: str) -> tuple[str, ...]:
        if args not in (("START",), ("STOP",)):
            raise _Refused(ErrorCode.BADARG, f"READOUT takes START or STOP, got {args}")
        self._frames.readout_on = args[0] == "START"
        return args

    def _cmd_fault(self, *args: str) -> tuple[str, ...]:
        if not 1 <= len(args) <= 2 or args[0].lower() not in FAULTS:
            raise _Refused(
                ErrorCode.BADARG, f"FAULT takes <name> [value], name in {sorted(FAULTS)}"
            )
        value = _one_float("FAULT", args[1:]) if len(args) == 2 else None
        self._faults.defer(args[0].lower(), value)
        return args
