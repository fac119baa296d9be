"""Async request/response link to the camera over a serial port (pyserial + anyio).

The port is opened by path (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``, or the simulator's
pty link) with ``serial.Serial(path, 115200, timeout=0)``. Reading never blocks: a reader task
waits with :func:`anyio.wait_readable` on the port's file descriptor and reads what is there;
writes are non-blocking with :func:`anyio.wait_writable`. So the link works on the asyncio
and trio backends, and cancellation is immediate.

* :meth:`SerialLink.request` sends a command, waits for the reply with the same sequence
  number, and retries with the *same* number after a timeout or a lost link; the camera
  answers a repeated number from its cache instead of executing the command twice.
* When the port disappears the reader task closes it and reopens the path with exponential
  backoff; requests made meanwhile wait for the link within their timeout and end with
  :class:`~mascara_actors.errors.CameraDisconnected` if it does not come back.
* Asynchronous events (``EVT``) go to :attr:`SerialLink.events`, a bounded stream that drops
  its oldest event (counted) rather than block the reader.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from typing import Any

import anyio
import serial
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hw._background import BackgroundLink
from hw.protocol import (
    ERR,
    EVT,
    MAX_SEQ,
    OK,
    CommandRejected,
    LineParser,
    Message,
    ParserStats,
)
from mascara_actors.errors import CameraDisconnected, CameraTimeout

__all__ = ["LinkStats", "SerialLink"]

log = logging.getLogger(__name__)


class _LinkDown(Exception):
    """Internal: the port went away while a request was waiting."""


@dataclass(frozen=True, slots=True)
class LinkStats:
    """Counters of a :class:`SerialLink`.

    Attributes
    ----------
    requests : int
        Requests started.
    retries : int
        Extra attempts (after a timeout or a lost link).
    timeouts : int
        Requests that ended in CameraTimeout.
    rejected : int
        Requests answered with ERR.
    unexpected : int
        Replies that matched no waiting request (stale or duplicate), and stray commands.
    events, events_dropped : int
        Events received, and events dropped because the events stream was full.
    connects, disconnects, open_failures : int
        Port openings, losses, and failed attempts to open it.
    parser : ParserStats
        Counters of the line parser (garbage, bad checksums ...).
    """

    requests: int
    retries: int
    timeouts: int
    rejected: int
    unexpected: int
    events: int
    events_dropped: int
    connects: int
    disconnects: int
    open_failures: int
    parser: ParserStats


class _Pending:
    """One request waiting for its reply."""

    __slots__ = ("done", "kind", "outcome")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.done = anyio.Event()
        self.outcome: Message | _LinkDown | None = None

    def resolve(self, outcome: Message | _LinkDown) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.done.set()

    def rearm(self) -> None:
        self.done = anyio.Event()
        self.outcome = None


class SerialLink(BackgroundLink):
    """Request/response and events over a serial port; reconnects by itself.

    Use as ``async with SerialLink(path) as link: reply = await link.request("IDN")``.

    Parameters
    ----------
    path : str
        Port path, opened with pyserial. It may not exist yet: the link keeps trying.
    baudrate : int, optional
        Bits per second (ignored by ptys).
    timeout_s : float, optional
        Seconds (solar) to wait for each reply attempt, link re-establishment included.
    retries : int, optional
        Extra attempts after the first one.
    backoff_initial_s, backoff_max_s : float, optional
        Reopen delays, seconds; doubled after each failed attempt.
    max_buffered_events : int, optional
        Capacity of :attr:`events`; beyond it the oldest event is dropped.
    """

    def __init__(
        self,
        path: str,
        *,
        baudrate: int = 115200,
        timeout_s: float = 0.5,
        retries: int = 3,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        max_buffered_events: int = 64,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.path = path
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.retries = retries
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._parser = LineParser()
        self._pending: dict[int, _Pending] = {}
        # random start: a restarted host must not reuse the sequence number the camera cached
        self._seq = random.randrange(1, MAX_SEQ)
        self._port: serial.Serial | None = None
        self._connected = anyio.Event()
        self._counts = dict.fromkeys(
            (
                "requests",
                "retries",
                "timeouts",
                "rejected",
                "unexpected",
                "events",
                "events_dropped",
                "connects",
                "disconnects",
                "open_failures",
            ),
            0,
        )
        self._max_events = max_buffered_events
        # the streams are made on entry: anyio warns about streams never closed
        self._evt_send: MemoryObjectSendStream[Message] | None = None
        self._evt_evict: MemoryObjectReceiveStream[Message] | None = None
        self._events: MemoryObjectReceiveStream[Message] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def events(self) -> MemoryObjectReceiveStream[Message]:
        """Asynchronous ``EVT`` messages, oldest first (available inside ``async with``)."""
        if self._events is None:
            raise RuntimeError("SerialLink.events exists only inside 'async with SerialLink(...)'")
        return self._events

    def _open_streams(self) -> None:
        send, recv = anyio.create_memory_object_stream[Message](self._max_events)
        self._evt_send, self._evt_evict, self._events = send, recv.clone(), recv

    def _streams(self) -> tuple[Any, ...]:
        return (self._evt_send, self._evt_evict, self._events)

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._port is not None

    @property
    def stats(self) -> LinkStats:
        """A snapshot of the counters."""
        return LinkStats(**self._counts, parser=self._parser.stats)

    async def wait_connected(self) -> None:
        """Return once the port is open."""
        while self._port is None:
            await self._connected.wait()

    # -- requests --------------------------------------------------------------------------

    async def request(
        self,
        kind: str,
        *args: str,
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> Message:
        """Send one command and return its ``OK`` reply.

        Parameters
        ----------
        kind : str
            Command name (see :data:`hw.protocol.COMMANDS`).
        *args : str
            Command arguments.
        timeout_s, retries : optional
            Override the link's defaults for this request.

        Raises
        ------
        CommandRejected
            The camera answered ``ERR`` (not retried).
        CameraTimeout
            No reply after all attempts.
        CameraDisconnected
            The port was gone for the last attempt.
        """
        timeout = self.timeout_s if timeout_s is None else timeout_s
        attempts = 1 + (self.retries if retries is None else retries)
        self._seq = self._seq % MAX_SEQ + 1
        seq = self._seq
        line = Message(seq, kind, tuple(args)).encode()
        pending = _Pending(kind)
        self._pending[seq] = pending
        self._counts["requests"] += 1
        failure: Exception | None = None
        try:
            for attempt in range(attempts):
                if attempt:
                    self._counts["retries"] += 1
                    log.info(
                        "retrying %s (seq %d), attempt %d of %d", kind, seq, attempt + 1, attempts
                    )
                pending.rearm()
                waiting_for = "the port"
                with anyio.move_on_after(timeout):
                    await self.wait_connected()
                    waiting_for = "a reply"
                    try:
                        await self._write(line)
                    except _LinkDown:
                        failure = CameraDisconnected(
                            f"port {self.path} went away while sending {kind}; the link is "
                            "reconnecting, retry later"
                        )
                        continue
                    await pending.done.wait()
                outcome = pending.outcome
                if outcome is None:
                    if waiting_for == "the port":
                        failure = CameraDisconnected(
                            f"port {self.path} not available within {timeout} s for {kind}; "
                            "check the cable/power or the device path"
                        )
                    else:
                        failure = CameraTimeout(
                            f"no reply to {kind} (seq {seq}) within {timeout} s after "
                            f"{attempt + 1} attempt(s); check that the camera is powered"
                        )
                    continue
                if isinstance(outcome, _LinkDown):
                    failure = CameraDisconnected(
                        f"port {self.path} went away while waiting for the reply to {kind}; "
                        "the link is reconnecting, retry later"
                    )
                    continue
                if outcome.kind == ERR:
                    self._counts["rejected"] += 1
                    code = outcome.args[0] if outcome.args else "?"
                    text = ",".join(outcome.args[1:])
                    raise CommandRejected(
                        f"camera rejected {kind} {' '.join(args)}: {code} {text}".strip(),
                        code=code,
                    )
                return outcome
        finally:
            del self._pending[seq]
        assert failure is not None
        if isinstance(failure, CameraTimeout):
            self._counts["timeouts"] += 1
        raise failure

    async def _write(self, data: bytes) -> None:
        """Write all of ``data`` without blocking the event loop."""
        view = memoryview(data)
        while view:
            port = self._port
            if port is None:
                raise _LinkDown
            fd = port.fileno()
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                try:
                    await anyio.wait_writable(fd)
                except anyio.ClosedResourceError as exc:
                    raise _LinkDown from exc
                continue
            except OSError as exc:
                raise _LinkDown from exc
            view = view[n:]

    # -- reader ----------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self._backoff[0]
        while True:
            try:
                port = serial.Serial(
                    self.path, self.baudrate, timeout=0, write_timeout=0, exclusive=True
                )
            except (OSError, ValueError) as exc:  # SerialException is an OSError
                self._counts["open_failures"] += 1
                log.debug("cannot open %s (%s); retry in %.2f s", self.path, exc, delay)
                await anyio.sleep(delay)
                delay = min(2 * delay, self._backoff[1])
                continue
            delay = self._backoff[0]
            try:
                port.reset_input_buffer()
                self._parser.reset()
                self._port = port
                self._counts["connects"] += 1
                self._connected.set()
                log.info("camera port %s open", self.path)
                await self._read(port)
            except OSError as exc:
                self._counts["disconnects"] += 1
                log.warning("camera port %s lost (%s); reopening with backoff", self.path, exc)
            finally:
                self._port = None
                self._connected = anyio.Event()
                for pending in self._pending.values():
                    pending.resolve(_LinkDown())
                anyio.notify_closing(port.fileno())
                port.close()
            await anyio.sleep(delay)

    async def _read(self, port: serial.Serial) -> None:
        fd = port.fileno()
        while True:
            await anyio.wait_readable(fd)
            data = port.read(port.in_waiting or 1)
            for msg in self._parser.feed(data):
                self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        if msg.kind == EVT:
            self._counts["events"] += 1
            assert self._evt_send is not None
            assert self._evt_evict is not None
            try:
                self._evt_send.send_nowait(msg)
            except anyio.WouldBlock:
                # no checkpoint between evicting and sending, so this cannot race
                self._evt_evict.receive_nowait()
                self._counts["events_dropped"] += 1
                self._evt_send.send_nowait(msg)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._counts["events_dropped"] += 1
            return
        pending = self._pending.get(msg.seq)
        if (
            pending is not None
            and pending.outcome is None
            and (msg.kind == ERR or (msg.kind == OK and msg.args[:1] == (pending.kind,)))
        ):
            pending.resolve(msg)
            return
        self._counts["unexpected"] += 1
        log.debug("unexpected message %r (no request waits for it)", msg)
