"""A client of the control socket: send commands, read the station's events.

::

    async with ControlClient(state_dir / "control.sock") as client:
        status = (await client.send("status")).unwrap()
        await client.send("pause", camera="LPC")
        async for item in client.events():   # EventNotice or Dropped
            ...

Replies are matched to commands by id, so commands may be sent from several tasks at once
while another task reads the events.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pwd
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from mascara_actors.control._unix import peer_credentials
from mascara_actors.control.errors import (
    ControlError,
    Disconnected,
    ForeignListener,
    ProtocolError,
)
from mascara_actors.control.protocol import (
    MAX_LINE_BYTES,
    Command,
    CommandName,
    Dropped,
    EventNotice,
    Reply,
    decode_server_line,
    encode_command,
)

__all__ = ["STREAM_ENDED", "ControlClient", "ReplyWaiter", "shut_down", "within"]

R = TypeVar("R")

STREAM_ENDED = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)
"""What a reader of a line stream gets when its peer has gone: the stream closed, cut
inside a line, or reset. (A line over the limit is ``anyio.DelimiterNotFound``.)"""

log = logging.getLogger(__name__)


def shut_down(stream: SocketStream, how: int = socket.SHUT_RDWR) -> None:
    """End the pending receive (end of stream) and, with ``SHUT_RDWR``, the pending send
    (broken pipe) on a Unix socket stream, so that its reader and writer stop by themselves.

    Do this rather than cancel them. On asyncio, anyio's Unix socket streams (4.16) wait for
    the socket with ``loop.add_reader(sock, future.set_result)``: when the socket becomes
    ready in the loop iteration in which the pending receive is cancelled, the callback sets
    the result of a future already done, and the loop reports ``InvalidStateError``.
    """
    with contextlib.suppress(OSError):  # already shut down, or closed by the peer
        stream.extra(SocketAttribute.raw_socket).shutdown(how)


async def within(scope: anyio.CancelScope, task: Callable[..., Awaitable[None]],
                 *args: Any) -> None:
    """``task(*args)`` inside ``scope``.

    A reader runs so in a shielded scope: a cancellation from outside never ends its pending
    receive (the race :func:`shut_down` describes). Its owner ends it by shutting the socket
    down (or closing the listener), and cancels ``scope`` only if that has not ended it.
    """
    with scope:
        await task(*args)


def _user_name(uid: int) -> str:
    """The login name of ``uid``, for messages."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "unknown user"


def _check_listener(stream: SocketStream, path: Path) -> None:
    """ForeignListener unless the process listening at ``path`` runs as this user (its
    ``SO_PEERCRED``; not checked where the platform cannot tell).

    Whoever can write a directory above the socket can put a socket of their own at its
    path; a console must not send it commands, nor believe its answers.
    """
    peer = peer_credentials(stream.extra(SocketAttribute.raw_socket))
    uid = os.geteuid()
    if peer is None or peer.uid == uid:
        return
    raise ForeignListener(
        f"the control socket {path} is served by process {peer.pid} of uid {peer.uid} "
        f"({_user_name(peer.uid)}), not by this user (uid {uid}); nothing was sent to it. "
        "If the station runs as that user, run the console as that user; if not, another "
        "user has put a socket of their own at this path: make the station's output "
        "directory and its parents writable by the station's user only, then start the "
        "station again"
    )


class ReplyWaiter(Generic[R]):
    """A command waiting for its reply: ``reply`` is set, then ``done``."""

    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reply: R | None = None


class ControlClient:
    """One connection to a station's control socket, an async context manager.

    Parameters
    ----------
    path
        The station's socket file.
    event_buffer
        Events held for :meth:`events` before the oldest are dropped (reported there as
        :class:`~mascara_actors.control.protocol.Dropped`), so a caller that never reads
        events still gets its replies.

    Raises (on entering)
    --------------------
    ControlError
        No station listens at ``path``, this user may not use its socket, or the process
        listening there is another user's (``SO_PEERCRED``, Linux).
    """

    def __init__(self, path: Path | str, *, event_buffer: int = 10_000) -> None:
        if event_buffer < 1:
            raise ValueError("event_buffer must be >= 1")
        self.path = Path(path)
        self._event_buffer = event_buffer
        self._events: deque[EventNotice | Dropped] = deque()
        self._dropped = 0
        self._dropped_total = 0
        self._events_wake: anyio.Event | None = None
        self._waiting: dict[int, ReplyWaiter[Reply]] = {}
        self._ids = itertools.count(1)
        self._closed_because = ""
        self._gone = False
        self._stream: SocketStream | None = None
        self._send_lock: anyio.Lock | None = None
        self._stack: AsyncExitStack | None = None
        self._reader_done = anyio.Event()
        # The reader is never cancelled from outside (a console that quits cancels what runs
        # this client): __aexit__ ends it by shutting the socket down (see shut_down).
        self._reader_scope = anyio.CancelScope(shield=True)

    async def __aenter__(self) -> Self:
        try:
            stream = await anyio.connect_unix(self.path)
        except FileNotFoundError:
            raise ControlError(
                f"no control socket at {self.path}: is the station running? "
                "(start it with `mascara-actors station`)"
            ) from None
        except ConnectionRefusedError:
            raise ControlError(
                f"nobody listens on {self.path} (a stale socket of a station that was "
                "killed): start the station again"
            ) from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {self.path}: only the station's own user may use its "
                "control socket"
            ) from None
        async with AsyncExitStack() as stack:
            stack.push_async_callback(stream.aclose)
            _check_listener(stream, self.path)  # before a byte is sent
            self._stream = stream
            self._send_lock = anyio.Lock()
            tg = await stack.enter_async_context(anyio.create_task_group())
            tg.start_soon(within, self._reader_scope, self._read_lines, stream)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Close the connection (the station goes on)."""
        assert self._stack is not None, "ControlClient was not entered"
        assert self._stream is not None
        shut_down(self._stream)  # the reader ends by itself: never cancel it (see shut_down)
        with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
            await self._reader_done.wait()
        self._reader_scope.cancel()  # a reader the shutdown did not end (never seen)
        return await self._stack.__aexit__(exc_type, exc, tb)

    @property
    def events_dropped(self) -> int:
        """Events this client missed so far: dropped by the station (it fell behind on the
        socket) or here (more than ``event_buffer`` were waiting)."""
        return self._dropped_total

    @property
    def connected(self) -> bool:
        """False once the station closed the connection."""
        return self._stream is not None and not self._gone

    async def send(
        self, cmd: CommandName, camera: str | None = None, *, timeout_s: float = 30.0
    ) -> Reply:
        """Send a command and wait for its reply (``ok`` or not: see :meth:`Reply.unwrap`).

        Raises
        ------
        Disconnected
            The connection ended before the reply came.
        TimeoutError
            No reply within ``timeout_s`` seconds.
        """
        if self._stream is None or self._send_lock is None:
            raise RuntimeError("enter the ControlClient (async with) before sending")
        if self._gone:
            raise Disconnected(self._disconnected_message())
        request_id = next(self._ids)
        waiter = self._waiting[request_id] = ReplyWaiter[Reply]()
        line = encode_command(Command(id=request_id, cmd=cmd, camera=camera))
        try:
            with anyio.fail_after(timeout_s):
                async with self._send_lock:
                    await self._stream.send(line)
                await waiter.done.wait()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise Disconnected(self._disconnected_message()) from exc
        finally:
            del self._waiting[request_id]
        if waiter.reply is None:
            raise Disconnected(self._disconnected_message())
        return waiter.reply

    def events(self) -> AsyncIterator[EventNotice | Dropped]:
        """The station's events as they come, until the connection ends.

        A :class:`Dropped` item says how many events were left out just before it (by the
        station, or here when the caller fell more than ``event_buffer`` behind). One
        consumer at a time; leaving the loop early needs no clean-up.
        """
        return _Events(self)

    async def next_event(self) -> EventNotice | Dropped | None:
        """The next event or drop notice, waiting for it; None once the connection ended."""
        while True:
            if self._dropped:
                count, self._dropped = self._dropped, 0
                return Dropped(count=count)
            if self._events:
                return self._events.popleft()
            if self._gone:
                return None
            self._events_wake = anyio.Event()
            await self._events_wake.wait()

    # -- reading -------------------------------------------------------------------------

    def _disconnected_message(self) -> str:
        reason = f": {self._closed_because}" if self._closed_because else ""
        return f"the station closed the control connection at {self.path}{reason}"

    def _push(self, item: EventNotice | Dropped) -> None:
        if isinstance(item, Dropped):
            self._dropped_total += item.count
        if len(self._events) >= self._event_buffer:
            lost = self._events.popleft()
            self._dropped += lost.count if isinstance(lost, Dropped) else 1
            self._dropped_total += 0 if isinstance(lost, Dropped) else 1
        self._events.append(item)
        if self._events_wake is not None:
            self._events_wake.set()

    def _route(self, reply: Reply) -> None:
        waiter = self._waiting.get(reply.id) if isinstance(reply.id, int) else None
        if waiter is not None:
            waiter.reply = reply
            waiter.done.set()
        elif reply.id is None:  # the station refusing the connection (too many clients)
            log.warning("control: the station says: %s", reply.error)
            self._closed_because = reply.error
        else:  # the reply to a command that timed out
            log.info("control: late reply to command %r ignored", reply.id)

    async def _read_lines(self, stream: SocketStream) -> None:
        receiver = BufferedByteReceiveStream(stream)
        try:
            while True:
                line = await receiver.receive_until(b"\n", MAX_LINE_BYTES + 1)
                try:
                    item = decode_server_line(line)
                except ProtocolError as exc:
                    log.warning("control: ignoring a line from the station: %s", exc)
                    continue
                if isinstance(item, Reply):
                    self._route(item)
                else:
                    self._push(item)
        except STREAM_ENDED:
            pass
        except anyio.DelimiterNotFound:
            log.warning("control: the station sent a line over %d bytes; closing", MAX_LINE_BYTES)
        finally:
            self._gone = True
            self._reader_done.set()
            for waiter in self._waiting.values():
                waiter.done.set()
            if self._events_wake is not None:
                self._events_wake.set()


class _Events:
    """The async iterator of :meth:`ControlClient.events` (a class, not an async generator,
    so that breaking out of the loop leaves nothing to close)."""

    def __init__(self, client: ControlClient) -> None:
        self._client = client

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> EventNotice | Dropped:
        item = await self._client.next_event()
        if item is None:
            raise StopAsyncIteration
        return item
