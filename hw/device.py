"""The simulated camera *device*: a separate process behind a real pty and a readout socket.

It behaves like the camera electronics, not like a driver: the host talks to it only through
the serial protocol (:mod:`hw.protocol`) on a pseudo-terminal, opened by path exactly like
``/dev/ttyUSB0``, and receives frames on a TCP readout socket (:mod:`hw.readout`).

* **Clock.** Device time starts at ``start_jd`` (UTC) and runs ``speed`` times faster than
  real time. Exposures are locked to lstseq slots (:mod:`mascara_actors.sidereal`): after
  ``ARM first count`` the device exposes slot ``s`` from its start for ``exptime_s``, reads it
  out for ``readout_s`` (device seconds), emits ``EVT EXPOSED`` and streams the frame.
* **Cooling.** The CCD temperature approaches its target exponentially with time constant
  ``tau_s`` (device seconds): the set-point when the cooler is on (but at most
  ``max_cooling_c`` below ambient), the ambient temperature when it is off.
* **Pixels** come from a pluggable frame source named ``"module:factory"``: the factory is
  called once as ``factory(shape=(ny, nx), seed=seed, **render_options)`` and returns
  ``render(lstseq, meta) -> ndarray[uint16] of shape (ny, nx)`` (``meta`` is an
  :class:`ExposureMeta`). The default is :func:`seeded_pattern`: seeded noise with the lstseq
  written into the first four pixels.
* **Faults**, from the constructor (``faults={"badcrc": 2}``) or the hidden command
  ``FAULT,<name>[,<value>]``: ``garbage`` (junk bytes before the next reply), ``badcrc``
  (next reply with a wrong checksum), ``dropreply`` (next reply not sent), ``mute`` (ignore
  commands for ``value`` real seconds), ``vanish`` (close the pty, come back after ``value``
  real seconds on the same path), ``shortframe`` (next frame cut short, stream continues),
  ``corruptframe`` (next frame's payload damaged), ``cutlink`` (next frame cut short and the
  readout connection closed), ``clear`` (cancel pending faults). Counts default to 1.
* **Same path after a vanish.** A pty's ``/dev/pts/N`` name cannot be chosen, so the device
  publishes a stable symlink ``<workdir>/ttyCAM`` to it (like udev's ``/dev/serial/by-id``
  links) and re-points it when it comes back. The driver reopens that path with backoff.
* **Repeated commands.** A command whose sequence number and content equal one of the last
  32 (within 10 s) is answered from a cache, not executed again, so a host may safely retry
  after a lost reply.

Start it with :class:`DeviceProcess` (``with``/``async with``), which runs :func:`main`
(``python -m hw.device --config-json ...``) in a child process and waits for
``<workdir>/device.json`` (``{"tty", "pts", "readout_host", "readout_port", "pid"}``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import time
import tty
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import numpy as np
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hw.protocol import (
    COMMANDS,
    ERR,
    EVT,
    OK,
    ErrorCode,
    FrameType,
    LineParser,
    Message,
    format_kv,
)
from hw.readout import FrameHeader, encode_frame
from mascara_actors.errors import CameraError
from mascara_actors.sidereal import REFERENCE_SITE, jd_now, lstseq2date, slot_length_solar_s

__all__ = [
    "FAULTS",
    "DeviceConfig",
    "DeviceProcess",
    "ExposureMeta",
    "decode_pattern_lstseq",
    "run_device",
    "seeded_pattern",
]

log = logging.getLogger(__name__)

FAULTS = frozenset(
    {
        "garbage",
        "badcrc",
        "dropreply",
        "mute",
        "vanish",
        "shortframe",
        "corruptframe",
        "cutlink",
        "clear",
    }
)
_SECONDS_FAULTS = frozenset({"mute", "vanish"})
_READY_FILE = "device.json"
_TTY_LINK = "ttyCAM"
_REPLY_CACHE = 32
# a repeat after this many real seconds is a new command (a restarted host reusing a number)
_REPLY_CACHE_S = 10.0
_JUNK = bytes(b for b in range(256) if b not in b"$\n")
# not ``-m hw.device``: that would load this module twice (as __main__ and for the renderer)
_ENTRY = "import sys; from hw.device import main; sys.exit(main(sys.argv[1:]))"


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DeviceConfig:
    """Everything the simulated device needs; JSON-serialisable (it crosses a process).

    Attributes
    ----------
    workdir : str
        Directory for the pty link ``ttyCAM``, the ready file ``device.json`` and the log.
    start_jd : float or None
        Device clock at start-up, JD (UTC); None for the host's current time.
    speed : float
        Device seconds per real second (> 0).
    camera : str
        Camera letter reported by IDN (N, E, S, W or C).
    shape : tuple of int
        Frame shape (ny, nx), pixels, overscan included.
    exptime_s : float or None
        Exposure time, seconds (solar); None for the whole slot (6.3825 s).
    readout_s : float
        Readout duration, device seconds (solar); must be shorter than a slot.
    ambient_c, start_temp_c : float
        Ambient temperature and CCD temperature at start-up, degrees Celsius.
    tau_s : float
        Time constant of the CCD temperature, device seconds.
    max_cooling_c : float
        Largest cooling below ambient, kelvin.
    temp_event_interval_s : float
        Device seconds between ``EVT TEMP`` events; 0 disables them.
    render : str
        Frame source ``"module:factory"`` (see the module docstring).
    render_options : dict
        Extra keyword arguments for the factory (JSON values).
    seed : int
        Seed of the frame source and of the garbage generator.
    faults : dict
        Faults armed at start-up, name to count (or seconds for ``mute``/``vanish``).
    readout_port : int
        TCP port of the readout server on 127.0.0.1; 0 picks a free one.
    max_queued_frames : int
        Frames held for the readout link; beyond it the oldest is dropped (counted).
    """

    workdir: str
    start_jd: float | None = None
    speed: float = 1.0
    camera: str = "C"
    shape: tuple[int, int] = (64, 96)
    exptime_s: float | None = None
    readout_s: float = 1.0
    ambient_c: float = 15.0
    start_temp_c: float | None = None
    tau_s: float = 120.0
    max_cooling_c: float = 45.0
    temp_event_interval_s: float = 60.0
    render: str = "hw.device:seeded_pattern"
    render_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    faults: dict[str, float] = field(default_factory=dict)
    readout_port: int = 0
    max_queued_frames: int = 4

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed={self.speed} must be a finite number > 0")
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"shape={self.shape} must be (ny, nx) with both >= 1")
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))
        slot = slot_length_solar_s()
        if self.exptime_s is not None and not 0 < self.exptime_s <= slot:
            raise ValueError(f"exptime_s={self.exptime_s} must be in (0, {slot:.4f}] s")
        if not 0 <= self.readout_s < slot:
            raise ValueError(f"readout_s={self.readout_s} must be in [0, {slot:.4f}) s")
        if self.tau_s <= 0:
            raise ValueError(f"tau_s={self.tau_s} must be > 0 device seconds")
        unknown = set(self.faults) - FAULTS
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; choose from {sorted(FAULTS)}")

    def to_json(self) -> str:
        """The configuration as a JSON string."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DeviceConfig:
        """Inverse of :meth:`to_json`."""
        values = json.loads(text)
        values["shape"] = tuple(values["shape"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ExposureMeta:
    """What the frame source is told about one exposure.

    Attributes
    ----------
    lstseq : int
        The slot.
    jd_start : float
        Exposure start, JD (UTC).
    exptime_s : float
        Exposure time, seconds (solar).
    ccdtemp_c : float
        CCD temperature during the exposure, degrees Celsius.
    camera : str
        Camera letter.
    frame_type : str
        A :class:`~hw.protocol.FrameType` value: ``LIGHT`` (science), ``DARK`` and ``BIAS``
        (shutter closed), ``FLAT`` (twilight flat field).
    """

    lstseq: int
    jd_start: float
    exptime_s: float
    ccdtemp_c: float
    camera: str
    frame_type: str = FrameType.LIGHT


Renderer = Callable[[int, ExposureMeta], np.ndarray]


def seeded_pattern(*, shape: tuple[int, int], seed: int = 0, level: int = 1000) -> Renderer:
    """Default frame source: cheap deterministic frames that tests can verify.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx), pixels; nx must be >= 4.
    seed : int
        Noise seed; frame ``s`` is the same for the same ``(seed, s)``.
    level : int
        Mean level, ADU (noise is uniform within +-100 ADU).

    Returns
    -------
    callable
        ``render(lstseq, meta)``: uint16 ADU; pixels ``[0, 0:4]`` hold the lstseq in
        16-bit words, least significant first (see :func:`decode_pattern_lstseq`).
    """
    ny, nx = shape
    if nx < 4:
        raise ValueError(f"seeded_pattern needs nx >= 4 to encode the lstseq, got shape {shape}")

    def render(lstseq: int, meta: ExposureMeta) -> np.ndarray:
        rng = np.random.default_rng([seed, lstseq])
        img = rng.integers(level - 100, level + 100, size=(ny, nx), dtype=np.uint16)
        img[0, :4] = [(lstseq >> (16 * k)) & 0xFFFF for k in range(4)]
        return img

    return render


def decode_pattern_lstseq(pixels: np.ndarray) -> int:
    """The lstseq written by :func:`seeded_pattern` into ``pixels[0, 0:4]``."""
    words = pixels[0, :4].astype(np.int64)
    return int(sum(int(w) << (16 * k) for k, w in enumerate(words)))


def _load_renderer(cfg: DeviceConfig) -> Renderer:
    module_name, _, attr = cfg.render.partition(":")
    if not attr:
        raise ValueError(f"render={cfg.render!r} must be 'module:factory'")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(shape=cfg.shape, seed=cfg.seed, **cfg.render_options)


# -- the device itself -----------------------------------------------------------------------


class _Device:
    """State and tasks of the simulated camera (runs inside the device process)."""

    def __init__(self, cfg: DeviceConfig) -> None:
        self.cfg = cfg
        self.workdir = Path(cfg.workdir)
        self.link_path = self.workdir / _TTY_LINK
        self.render = _load_renderer(cfg)
        self.rng = random.Random(cfg.seed)
        self.slot_s = slot_length_solar_s()
        self.exptime_s = cfg.exptime_s if cfg.exptime_s is not None else self.slot_s
        # clock: device JD = jd0 + speed * real elapsed
        self._mono0 = time.monotonic()
        self._jd0 = cfg.start_jd if cfg.start_jd is not None else jd_now()
        # cooling
        self.cooler_on = False
        self.setpoint_c = 0.0
        self._temp_ref_c = cfg.ambient_c if cfg.start_temp_c is None else cfg.start_temp_c
        self._temp_ref_jd = self._jd0
        # exposures and readout
        self.readout_on = False
        self.armed: tuple[int, int] | None = None  # (first, count)
        self.frame_type = FrameType.LIGHT
        self.next_lstseq = -1
        self.exposing = False
        self._expose_scope: anyio.CancelScope | None = None
        self._readout_scope: anyio.CancelScope | None = None
        self.counts = dict.fromkeys(
            ("commands", "cached", "ignored", "rendered", "sent", "dropped", "write_drops"), 0
        )
        # faults
        self.faults: dict[str, int] = {}
        self.mute_until = 0.0
        self.vanish_s: float | None = None
        self._deferred_faults: list[tuple[str, float | None]] = []
        for name, value in cfg.faults.items():
            self._arm_fault(name, value)
        # serial side
        self._master: int | None = None
        self._pty_scope: anyio.CancelScope | None = None
        self._evt_seq = 0
        self._cache: OrderedDict[int, tuple[Message, bytes, float]] = OrderedDict()
        self.readout_port = 0
        self.pts = ""
        self._tg: anyio.abc.TaskGroup | None = None
        qsend, qrecv = anyio.create_memory_object_stream[tuple[int, bytes, memoryview]](
            cfg.max_queued_frames
        )
        self._frames_send: MemoryObjectSendStream[tuple[int, bytes, memoryview]] = qsend
        self._frames_recv: MemoryObjectReceiveStream[tuple[int, bytes, memoryview]] = qrecv
        rsend, rrecv = anyio.create_memory_object_stream[ExposureMeta](cfg.max_queued_frames)
        self._render_send: MemoryObjectSendStream[ExposureMeta] = rsend
        self._render_recv: MemoryObjectReceiveStream[ExposureMeta] = rrecv

    # clock and temperature

    def jd_now(self) -> float:
        """Device time, JD (UTC)."""
        return self._jd0 + self.cfg.speed * (time.monotonic() - self._mono0) / 86400.0

    def lstseq_now(self) -> int:
        return int(REFERENCE_SITE.local_sidereal_time(self.jd_now()).lstseq)

    async def sleep_until(self, jd: float) -> None:
        """Sleep until device time ``jd``."""
        await anyio.sleep(max(0.0, (jd - self.jd_now()) * 86400.0 / self.cfg.speed))

    def _target_c(self) -> float:
        if not self.cooler_on:
            return self.cfg.ambient_c
        return max(self.setpoint_c, self.cfg.ambient_c - self.cfg.max_cooling_c)

    def ccdtemp_c(self, jd: float | None = None) -> float:
        """CCD temperature at device time ``jd`` (default now), degrees Celsius."""
        jd = self.jd_now() if jd is None else jd
        dt = max(0.0, (jd - self._temp_ref_jd) * 86400.0)
        target = self._target_c()
        return target + (self._temp_ref_c - target) * math.exp(-dt / self.cfg.tau_s)

    def _retarget(self, *, cooler_on: bool | None = None, setpoint_c: float | None = None) -> None:
        now = self.jd_now()
        self._temp_ref_c, self._temp_ref_jd = self.ccdtemp_c(now), now
        if cooler_on is not None:
            self.cooler_on = cooler_on
        if setpoint_c is not None:
            self.setpoint_c = setpoint_c

    # faults

    def _arm_fault(self, name: str, value: float | None) -> None:
        if name == "clear":
            self.faults.clear()
            self.mute_until = 0.0
        elif name == "mute":
            self.mute_until = time.monotonic() + (1.0 if value is None else float(value))
        elif name == "vanish":
            self.vanish_s = 1.0 if value is None else float(value)
        else:
            self.faults[name] = self.faults.get(name, 0) + (1 if value is None else int(value))

    def _take(self, name: str) -> bool:
        n = self.faults.get(name, 0)
        if n > 0:
            self.faults[name] = n - 1
            log.info("fault injected: %s", name)
            return True
        return False

    # serial side

    def _write(self, data: bytes) -> None:
        """Write to the pty without ever blocking; what does not fit is dropped (counted)."""
        master = self._master
        if master is None:
            self.counts["write_drops"] += 1
            return
        try:
            n = os.write(master, data)
        except OSError:
            n = 0
        if n < len(data):
            self.counts["write_drops"] += 1

    def emit(self, name: str, *args: object) -> None:
        """Send an asynchronous event ``EVT,<name>,<args>``."""
        self._evt_seq = self._evt_seq % 99_999 + 1
        self._write(Message(self._evt_seq, EVT, (name, *map(str, args))).encode())

    def _send_reply(self, data: bytes) -> None:
        if self._take("dropreply"):
            return
        if self._take("badcrc"):
            star = data.rindex(b"*")
            bad = b"0" if data[star + 1 : star + 2] != b"0" else b"1"
            data = data[: star + 1] + bad + data[star + 2 :]
        if self._take("garbage"):
            junk = bytes(self.rng.choice(_JUNK) for _ in range(self.rng.randrange(8, 64)))
            data = junk + b"$" + junk[:5] + data  # noise, then a line cut off by the reply
        self._write(data)

    def on_command(self, msg: Message) -> None:
        """Execute one command and answer it (or replay a cached answer)."""
        if time.monotonic() < self.mute_until:
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
        # faults armed by this command start after its own reply
        deferred, self._deferred_faults = self._deferred_faults, []
        for name, value in deferred:
            self._arm_fault(name, value)
        if self.vanish_s is not None and self._pty_scope is not None and self._tg is not None:
            self._tg.start_soon(self._vanish_soon, self._pty_scope)

    async def _vanish_soon(self, scope: anyio.CancelScope) -> None:
        # let the host read the reply first: closing a pty discards what it has not read
        await anyio.sleep(0.1)
        scope.cancel()

    def _execute(self, kind: str, args: tuple[str, ...]) -> tuple[str, ...]:
        handler = getattr(self, "_cmd_" + kind.rstrip("?").lower(), None)
        if handler is None:
            raise _Refused(ErrorCode.UNKNOWN, f"command {kind} not supported")
        try:
            inspect.signature(handler).bind(*args)
        except TypeError:
            raise _Refused(ErrorCode.BADARG, f"{kind} does not take arguments {args}") from None
        return handler(*args)

    def _cmd_idn(self) -> tuple[str, ...]:
        ny, nx = self.cfg.shape
        return format_kv(
            {
                "vendor": "MASCARA-SIM",
                "model": "simulated-ccd",
                "serial": f"SIM{self.cfg.seed:04d}",
                "firmware": "1.0",
                "camera": self.cfg.camera,
                "ny": ny,
                "nx": nx,
            }
        )

    def _cmd_status(self) -> tuple[str, ...]:
        jd = self.jd_now()
        state = "EXPOSING" if self.exposing else ("ARMED" if self.armed else "IDLE")
        remaining = 0
        if self.armed is not None:
            first, count = self.armed
            remaining = first + count - self.next_lstseq
        return format_kv(
            {
                "state": state,
                "lstseq": int(REFERENCE_SITE.local_sidereal_time(jd).lstseq),
                "jd": f"{jd:.10f}",
                "next": self.next_lstseq if self.armed else -1,
                "remaining": remaining,
                "type": self.frame_type.value,
                "ccdtemp": f"{self.ccdtemp_c(jd):.4f}",
                "setpoint": f"{self.setpoint_c:.3f}",
                "cooler": "ON" if self.cooler_on else "OFF",
                "readout": "ON" if self.readout_on else "OFF",
                "speed": self.cfg.speed,
                "rendered": self.counts["rendered"],
                "sent": self.counts["sent"],
                "dropped": self.counts["dropped"],
            }
        )

    def _cmd_cooler(self, *args: str) -> tuple[str, ...]:
        if args not in (("ON",), ("OFF",)):
            raise _Refused(ErrorCode.BADARG, f"COOLER takes ON or OFF, got {args}")
        self._retarget(cooler_on=args[0] == "ON")
        return args

    def _cmd_setpoint(self, *args: str) -> tuple[str, ...]:
        value = _one_float("SETPOINT", args)
        if not -80.0 <= value <= 40.0:
            raise _Refused(ErrorCode.BADARG, f"SETPOINT {value} C outside -80..40 C")
        self._retarget(setpoint_c=value)
        return (f"{value:.3f}",)

    def _cmd_temp(self) -> tuple[str, ...]:
        return (f"{self.ccdtemp_c():.3f}",)

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
        if not 1 <= count <= 1_000_000:
            raise _Refused(ErrorCode.BADARG, f"ARM count {count} outside 1..1000000")
        if self.armed is not None:
            raise _Refused(ErrorCode.BUSY, "already armed; send ABORT first")
        now = self.lstseq_now()
        if first <= now:
            raise _Refused(ErrorCode.LATE, f"slot {first} already started (now {now})")
        self.armed = (first, count)
        self.frame_type = frame_type
        self.next_lstseq = first
        assert self._tg is not None
        self._tg.start_soon(self._expose, first, count, frame_type)
        return (str(first), str(count), frame_type.value)

    def _cmd_abort(self) -> tuple[str, ...]:
        remaining = 0
        if self.armed is not None:
            first, count = self.armed
            remaining = first + count - self.next_lstseq
        if self._expose_scope is not None:
            self._expose_scope.cancel()
        self.armed, self.exposing, self._expose_scope = None, False, None
        return (str(remaining),)

    def _cmd_readout(self, *args: str) -> tuple[str, ...]:
        if args not in (("START",), ("STOP",)):
            raise _Refused(ErrorCode.BADARG, f"READOUT takes START or STOP, got {args}")
        self.readout_on = args[0] == "START"
        return args

    def _cmd_fault(self, *args: str) -> tuple[str, ...]:
        if not 1 <= len(args) <= 2 or args[0].lower() not in FAULTS:
            raise _Refused(
                ErrorCode.BADARG, f"FAULT takes <name> [value], name in {sorted(FAULTS)}"
            )
        value = _one_float("FAULT", args[1:]) if len(args) == 2 else None
        self._deferred_faults.append((args[0].lower(), value))
        return args

    async def serve_serial(self) -> None:
        """Serve the protocol on a pty; after a ``vanish`` fault, close it and come back."""
        parser = LineParser(COMMANDS)
        while True:
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo or line editing before the host configures the port
            os.set_blocking(master, False)
            self.pts = os.ttyname(slave)
            tmp = self.link_path.with_suffix(".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.pts)
            tmp.replace(self.link_path)
            self._master = master
            parser.reset()
            self._publish()
            log.info("serving the protocol on %s -> %s", self.link_path, self.pts)
            try:
                with anyio.CancelScope() as scope:
                    self._pty_scope = scope
                    while True:
                        await anyio.wait_readable(master)
                        try:
                            data = os.read(master, 4096)
                        except BlockingIOError:
                            continue
                        except OSError:
                            await anyio.sleep(0.01)
                            continue
                        for msg in parser.feed(data):
                            self.on_command(msg)
            finally:
                self._master, self._pty_scope = None, None
                anyio.notify_closing(master)
                os.close(master)
                os.close(slave)
            down_s, self.vanish_s = self.vanish_s or 0.0, None
            log.info("vanishing for %.2f s", down_s)
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()
            await anyio.sleep(down_s)

    # exposures

    async def _expose(self, first: int, count: int, frame_type: FrameType) -> None:
        exptime_s = 0.0 if frame_type is FrameType.BIAS else self.exptime_s
        with anyio.CancelScope() as scope:
            self._expose_scope = scope
            starts = np.atleast_1d(lstseq2date(np.arange(first, first + count)))
            day_s = 86400.0
            for k in range(count):
                s = first + k
                jd_start = float(starts[k])
                await self.sleep_until(jd_start)
                self.exposing = True
                jd_end = jd_start + exptime_s / day_s
                await self.sleep_until(jd_end)
                temp = self.ccdtemp_c(jd_end)
                self.emit("EXPOSED", s, f"{jd_start:.8f}")
                self.next_lstseq = s + 1
                await self.sleep_until(jd_end + self.cfg.readout_s / day_s)
                meta = ExposureMeta(s, jd_start, exptime_s, temp, self.cfg.camera, frame_type)
                self._put_latest(self._render_send, self._render_recv, meta, s)
            self.emit("DONE", first + count - 1)
        if self._expose_scope is scope:
            self.armed, self.exposing, self._expose_scope = None, False, None

    def _put_latest(
        self,
        send: MemoryObjectSendStream[Any],
        recv: MemoryObjectReceiveStream[Any],
        item: Any,
        lstseq: int,
    ) -> None:
        """Queue without blocking; when full, drop the oldest item (counted)."""
        try:
            send.send_nowait(item)
        except anyio.WouldBlock:
            old = recv.receive_nowait()
            self._dropped(old.lstseq if isinstance(old, ExposureMeta) else old[0], "overrun")
            send.send_nowait(item)

    def _dropped(self, lstseq: int, reason: str) -> None:
        self.counts["dropped"] += 1
        log.warning("frame %d dropped: %s", lstseq, reason)
        self.emit("DROPPED", lstseq, reason)

    async def render_frames(self) -> None:
        """Render exposed slots (in a thread) and queue them for the readout link."""
        async for meta in self._render_recv:
            try:
                pixels = await anyio.to_thread.run_sync(self.render, meta.lstseq, meta)
            except Exception:  # a broken frame source loses its frame, never the device
                log.exception("frame source failed on lstseq %d", meta.lstseq)
                self._dropped(meta.lstseq, "render")
                continue
            if pixels.shape != self.cfg.shape or pixels.dtype != np.uint16:
                log.error(
                    "frame source returned %s %s, expected uint16 %s",
                    pixels.dtype,
                    pixels.shape,
                    self.cfg.shape,
                )
                self._dropped(meta.lstseq, "render")
                continue
            self.counts["rendered"] += 1
            if not self.readout_on:
                self._dropped(meta.lstseq, "readout-off")
                continue
            header = FrameHeader(
                meta.lstseq,
                meta.jd_start,
                meta.exptime_s,
                self.cfg.readout_s,
                meta.ccdtemp_c,
                *self.cfg.shape,
            )
            head, payload = encode_frame(header, pixels)
            self._put_latest(
                self._frames_send, self._frames_recv, (meta.lstseq, head, payload), meta.lstseq
            )

    async def handle_readout(self, stream: anyio.abc.SocketStream) -> None:
        """One readout connection; a newer connection replaces it."""
        if self._readout_scope is not None:
            self._readout_scope.cancel()
        with anyio.CancelScope() as scope:
            self._readout_scope = scope
            log.info("readout client connected")
            async with stream:
                async for lstseq, head, payload in self._frames_recv:
                    try:
                        if await self._send_frame(stream, lstseq, head, payload):
                            return
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        self._dropped(lstseq, "link")
                        return

    async def _send_frame(
        self, stream: anyio.abc.SocketStream, lstseq: int, head: bytes, payload: memoryview
    ) -> bool:
        """Send one frame, applying readout faults; True if the link must be closed."""
        if self._take("cutlink"):
            await stream.send(head + bytes(payload[: len(payload) // 3]))
            self._dropped(lstseq, "cutlink")
            return True
        if self._take("shortframe"):
            await stream.send(head + bytes(payload[: len(payload) // 2]))
            self._dropped(lstseq, "short")
            return False
        if self._take("corruptframe"):
            bad = bytearray(payload)
            mid = len(bad) // 2
            bad[mid : mid + 8] = bytes(b ^ 0x5A for b in bad[mid : mid + 8])
            await stream.send(head + bytes(bad))
            self._dropped(lstseq, "corrupt")
            return False
        await stream.send(head)
        await stream.send(payload)  # type: ignore[arg-type]  # any buffer works
        self.counts["sent"] += 1
        return False

    async def temperature_events(self) -> None:
        interval = self.cfg.temp_event_interval_s
        if interval <= 0:
            return
        while True:
            await anyio.sleep(max(0.1, interval / self.cfg.speed))
            self.emit("TEMP", f"{self.ccdtemp_c():.3f}")

    def _publish(self) -> None:
        """Write the ready file atomically once the pty and the readout port exist."""
        if not self.readout_port:
            return
        info = {
            "tty": str(self.link_path),
            "pts": self.pts,
            "readout_host": "127.0.0.1",
            "readout_port": self.readout_port,
            "pid": os.getpid(),
        }
        tmp = self.workdir / (_READY_FILE + ".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(self.workdir / _READY_FILE)

    async def run(self) -> None:
        """Run every task of the device until SIGTERM/SIGINT or the parent process dies."""
        parent = os.getppid()
        listener = await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=self.cfg.readout_port
        )
        self.readout_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        try:
            async with listener, anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(listener.serve, self.handle_readout)
                tg.start_soon(self.serve_serial)
                tg.start_soon(self.render_frames)
                tg.start_soon(self.temperature_events)
                tg.start_soon(_watch_parent, parent, tg.cancel_scope)
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        log.info("signal %d: shutting down", signum)
                        break
                tg.cancel_scope.cancel()
        finally:
            for path in (self.link_path, self.workdir / _READY_FILE):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            log.info("device stopped; counts %s", self.counts)


class _Refused(Exception):
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


async def _watch_parent(parent: int, scope: anyio.CancelScope) -> None:
    """Stop the device when the process that started it has gone (no orphans)."""
    while os.getppid() == parent:
        await anyio.sleep(0.5)
    log.warning("parent process %d is gone; stopping", parent)
    scope.cancel()


def run_device(config: DeviceConfig) -> None:
    """Run the simulated camera in this process until SIGTERM/SIGINT (blocking)."""
    Path(config.workdir).mkdir(parents=True, exist_ok=True)
    anyio.run(_Device(config).run, backend="trio")


# -- the parent side -------------------------------------------------------------------------


class DeviceProcess:
    """Start :func:`run_device` in a child process and clean it up.

    ``with DeviceProcess(cfg) as dev:`` (or ``async with``) returns once the device has
    published its pty link and readout port; leaving stops it (SIGTERM, then SIGKILL).

    Parameters
    ----------
    config : DeviceConfig
        The device; its ``workdir`` also receives ``device.log``.
    startup_timeout_s : float, optional
        Seconds to wait for the ready file.
    """

    def __init__(self, config: DeviceConfig, *, startup_timeout_s: float = 20.0) -> None:
        self.config = config
        self.startup_timeout_s = startup_timeout_s
        self.workdir = Path(config.workdir)
        self._proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    @property
    def tty_path(self) -> str:
        """Stable path of the device's serial port (a symlink to its pty)."""
        return str(self.info["tty"])

    @property
    def readout_address(self) -> tuple[str, int]:
        """(host, port) of the readout server."""
        return str(self.info["readout_host"]), int(self.info["readout_port"])

    @property
    def pid(self) -> int:
        """Process id of the device."""
        assert self._proc is not None
        return self._proc.pid

    def _spawn(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / _READY_FILE
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with open(self.workdir / "device.log", "ab") as logfile:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, "--config-json", self.config.to_json()],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                env=env,
            )

    def _check_ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            log_text = (self.workdir / "device.log").read_text(errors="replace")[-2000:]
            raise CameraError(
                f"simulated device exited with code {self._proc.returncode} during start-up; "
                f"its log ({self.workdir / 'device.log'}) ends with:\n{log_text}"
            )
        try:
            self.info = json.loads((self.workdir / _READY_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return True

    def _timeout_error(self) -> CameraError:
        return CameraError(
            f"simulated device did not publish {self.workdir / _READY_FILE} within "
            f"{self.startup_timeout_s} s; see {self.workdir / 'device.log'}"
        )

    def start(self) -> Self:
        """Spawn the device and wait (blocking) until it is ready."""
        self._spawn()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._check_ready():
            if time.monotonic() > deadline:
                self.stop()
                raise self._timeout_error()
            time.sleep(0.02)
        return self

    async def astart(self) -> Self:
        """Spawn the device and wait (without blocking the event loop) until it is ready."""
        self._spawn()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._check_ready():
            if time.monotonic() > deadline:
                self.stop()
                raise self._timeout_error()
            await anyio.sleep(0.02)
        return self

    def stop(self, *, timeout_s: float = 5.0) -> int | None:
        """Stop the device: SIGTERM, wait up to ``timeout_s``, then SIGKILL. Returns its code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def signal(self, signum: int) -> None:
        """Send a signal to the device process (tests: SIGSTOP/SIGCONT to freeze it)."""
        assert self._proc is not None
        self._proc.send_signal(signum)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)


def main(argv: list[str] | None = None) -> int:
    """``python -m hw.device --config-json '{...}'``: run a simulated camera."""
    parser = argparse.ArgumentParser(prog="python -m hw.device", description=main.__doc__)
    parser.add_argument("--config-json", required=True, help="DeviceConfig as JSON")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    run_device(DeviceConfig.from_json(args.config_json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
