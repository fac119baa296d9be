"""One client of the control server: its bounded event buffer, its writer and its reader.

The station never waits for a client: :meth:`Connection.offer_event` only appends to a
buffer (the oldest event is dropped when it is full, and counted), and a writer task per
client sends what the buffer holds. Replies are never dropped; instead the reader takes no
new command while ``max_pending`` replies wait to be sent, so a client that sends without
reading stalls only itself.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from mascara_actors.control.errors import ProtocolError
from mascara_actors.control.protocol import (
    MAX_LINE_BYTES,
    Command,
    decode_command,
    encode_dropped,
    encode_error,
)

__all__ = ["Connection", "Counters"]

log = logging.getLogger(__name__)

_BATCH_BYTES = 256 * 1024
"""Most bytes handed to one ``send``, so that a stuck client holds little outside its buffer."""

LOGGED_BAD_LINES = 5
"""Bad lines of one client logged each; later ones are only counted, and the count logged
when it leaves (a runaway script sends thousands a second, each answered all the same)."""

Dispatch = Callable[[Command, str], Awaitable[bytes]]
"""Runs a command for a client (named by the string) and gives its reply line."""


@dataclass(slots=True)
class Counters:
    """The server's running totals, shared with its connections (mutable, loop thread only)."""

    connections: int = 0
    refused_peers: int = 0
    commands: int = 0
    bad_lines: int = 0
    events_published: int = 0
    events_dropped: int = 0
    events_too_long: int = 0


class Connection:
    """One connected client; :meth:`run` serves it until it leaves or :meth:`finish`.

    A pending socket operation is never cancelled: on asyncio, anyio's Unix socket streams
    (4.16) may then report ``InvalidStateError`` from a loop callback when the socket becomes
    ready in the same loop iteration. The connection is stopped by shutting its socket down
    instead, which wakes a pending receive (end of stream) or send (broken pipe).
    """

    def __init__(
        self,
        stream: SocketStream,
        *,
        label: str,
        dispatch: Dispatch,
        counters: Counters,
        buffer_lines: int,
        max_pending: int,
        grace_s: float,
    ) -> None:
        self.label = label
        """``client #3 (pid 1234 uid 1000)``, for the log."""
        self.dropped = 0
        """Events dropped for this client so far."""
        self.bad_lines = 0
        """Lines of this client refused so far (answered with an error)."""
        self._stream = stream
        self._socket: socket.socket = stream.extra(SocketAttribute.raw_socket)
        self._dispatch = dispatch
        self._counters = counters
        self._buffer_lines = buffer_lines
        self._max_pending = max_pending
        self._grace_s = grace_s
        self._events: deque[bytes] = deque()
        self._replies: deque[bytes] = deque()
        self._unreported = 0
        self._reply_slots = anyio.Semaphore(max_pending)
        self._wake = anyio.Event()
        self._stopping = False
        self._finishing = False
        self._writer_done = anyio.Event()
        self._handlers: TaskGroup | None = None

    # -- called by the server ------------------------------------------------------------

    def offer_event(self, line: bytes) -> None:
        """Queue one event line; never waits (the oldest event goes when the buffer is full)."""
        if len(self._events) >= self._buffer_lines:
            self._events.popleft()
            self._unreported += 1
            self.dropped += 1
            self._counters.events_dropped += 1
        self._events.append(line)
        self._wake.set()

    def finish(self) -> None:
        """Stop taking commands and cancel those in progress; what is queued is still sent
        (for up to ``grace_s``)."""
        self._stop(socket.SHUT_RD)

    async def run(self) -> None:
        """Serve the client: read commands, send replies and events, until either side ends."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write_loop)
            async with anyio.create_task_group() as handlers:
                self._handlers = handlers
                if await self._read_loop(handlers) or self._stopping:
                    handlers.cancel_scope.cancel()
            self._finishing = True  # no reply comes any more: the writer ends once it is idle
            self._wake.set()
            with anyio.move_on_after(self._grace_s):
                await self._writer_done.wait()
            if not self._writer_done.is_set():
                log.info("control: %s does not read; closing it", self.label)
                self._stop(socket.SHUT_RDWR)  # the writer's send fails: it ends
                with anyio.move_on_after(self._grace_s):
                    await self._writer_done.wait()
                tg.cancel_scope.cancel()  # last resort

    def _stop(self, how: int) -> None:
        """Shut the socket down (``how``), cancel the commands in progress, wake the reader."""
        self._stopping = True
        with contextlib.suppress(OSError):  # already closed by the peer
            self._socket.shutdown(how)
        if self._handlers is not None:
            self._handlers.cancel_scope.cancel()
        for _ in range(self._max_pending):  # a reader waiting for a reply slot goes on
            self._reply_slots.release()

    # -- writing -------------------------------------------------------------------------

    def _take_batch(self) -> tuple[bytes, int]:
        """Lines to send now (a drop notice first, then replies, then events), and how many
        of them are replies."""
        lines: list[bytes] = []
        size = 0
        if self._unreported:
            lines.append(encode_dropped(self._unreported))
            self._unreported = 0
        replies = 0
        while self._replies and size < _BATCH_BYTES:
            line = self._replies.popleft()
            lines.append(line)
            size += len(line)
            replies += 1
        while self._events and size < _BATCH_BYTES:
            line = self._events.popleft()
            lines.append(line)
            size += len(line)
        return b"".join(lines), replies

    async def _write_loop(self) -> None:
        try:
            while True:
                self._wake = anyio.Event()
                batch, replies = self._take_batch()
                if batch:
                    await self._stream.send(batch)
                    for _ in range(replies):
                        self._reply_slots.release()
                elif self._finishing:
                    return
                else:
                    await self._wake.wait()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            log.info("control: %s stopped receiving (%s)", self.label, type(exc).__name__)
            self._stop(socket.SHUT_RDWR)
        finally:
            self._writer_done.set()

    async def _queue_reply(self, line: bytes) -> None:
        """Queue a reply once fewer than ``max_pending`` wait to be sent."""
        await self._reply_slots.acquire()
        self._replies.append(line)
        self._wake.set()

    async def _refuse(self, message: str, request_id: int | str | None = None) -> None:
        """Answer a bad line with an error; log it if it is among the client's first few."""
        self._counters.bad_lines += 1
        self.bad_lines += 1
        if self.bad_lines <= LOGGED_BAD_LINES:
            log.info("control: %s sent a bad line: %s", self.label, message)
        elif self.bad_lines == LOGGED_BAD_LINES + 1:
            log.info(
                "control: %s keeps sending bad lines; the next ones are answered and counted, "
                "not logged (the count comes when it leaves)",
                self.label,
            )
        await self._queue_reply(encode_error(request_id, message))

    # -- reading -------------------------------------------------------------------------

    async def _read_loop(self, handlers: TaskGroup) -> bool:
        """Read and dispatch commands until the client stops sending; True when it broke
        the protocol so that the connection must close now."""
        receiver = BufferedByteReceiveStream(self._stream)
        while not self._stopping:
            try:
                # One byte over the limit: a line of exactly MAX_LINE_BYTES is always accepted,
                # a longer one always refused, however the bytes arrive.
                line = await receiver.receive_until(b"\n", MAX_LINE_BYTES + 1)
            except anyio.DelimiterNotFound:
                line = receiver.buffer  # over the limit; refused below
            except anyio.IncompleteRead:
                rest = receiver.buffer
                if rest.strip() and not self._stopping:
                    await self._refuse(
                        f"the stream ended inside a line ({len(rest)} bytes without a newline); "
                        "it is ignored: end every command with a newline"
                    )
                return False
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return False
            if self._stopping:
                return False
            if len(line) > MAX_LINE_BYTES:
                await self._refuse(
                    f"line longer than {MAX_LINE_BYTES} bytes; the connection is closed"
                )
                return True
            try:
                command = decode_command(line)
            except ProtocolError as exc:
                await self._refuse(str(exc), exc.request_id)
                continue
            if command is not None:
                await self._reply_slots.acquire()  # released once the reply is sent
                if not self._stopping:
                    handlers.start_soon(self._answer, command)
        return False

    async def _answer(self, command: Command) -> None:
        line = await self._dispatch(command, self.label)
        self._replies.append(line)
        self._wake.set()
