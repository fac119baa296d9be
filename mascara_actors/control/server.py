"""The control server: the station's owner-only Unix socket, serving many clients at once.

::

    async with ControlServer(state_dir / "control.sock", handler) as server:
        server.publish(event, camera="LPC")   # never waits for a client
        ...

Commands go to a :class:`ControlHandler`; what it returns is the reply's ``result``, what
it raises (a :class:`~mascara_actors.errors.MascaraError` such as
:class:`~mascara_actors.control.errors.UnknownCamera`) the reply's ``error``. The wire format
is in :mod:`mascara_actors.control.protocol`, the whole story in ``docs/control-socket.md``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup

from mascara_actors.control._connection import Connection, Counters
from mascara_actors.control._unix import bind_owner_only, peer_credentials, release
from mascara_actors.control.client import within
from mascara_actors.control.protocol import (
    MAX_LINE_BYTES,
    Command,
    CommandName,
    encode_error,
    encode_event,
    encode_reply,
)
from mascara_actors.errors import MascaraError
from mascara_actors.messages import Event

__all__ = ["ControlHandler", "ControlServer", "ControlStatistics"]

log = logging.getLogger(__name__)


class ControlHandler(Protocol):
    """What the station does for each command; ``camera`` is a camera's id, or None for the
    whole station.

    Each method returns the reply's ``result`` (any JSON value: dicts, lists, strings,
    numbers, None) or raises: :class:`~mascara_actors.control.errors.UnknownCamera` for a
    camera the station does not have, another
    :class:`~mascara_actors.errors.MascaraError` whose message tells the operator what to
    do. Any other exception is a bug: logged, and answered with "see the station log". A
    method should return promptly (start long work and report it through events); commands
    of one client run concurrently, at most ``max_pending`` at a time.
    """

    async def status(self, camera: str | None) -> object:
        """The state of one camera or of the station."""
        ...

    async def pause(self, camera: str | None) -> object:
        """Hold the reduction (frames keep being taken and spooled)."""
        ...

    async def resume(self, camera: str | None) -> object:
        """Resume a paused reduction."""
        ...

    async def take_darks(self, camera: str | None) -> object:
        """Take a series of darks."""
        ...

    async def end_night(self, camera: str | None) -> object:
        """End the science now, as at dawn."""
        ...

    async def stop(self, camera: str | None) -> object:
        """Stop the station (or one camera's pipeline), saving what was measured."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlStatistics:
    """A snapshot of the control server's activity since it started."""

    clients: int
    """Clients connected now."""
    connections: int
    """Clients accepted (peer check passed)."""
    refused_peers: int
    """Connections closed because the peer was another user."""
    commands: int
    """Commands handed to the handler."""
    bad_lines: int
    """Lines answered with a protocol error (bad JSON, unknown command, too long ...)."""
    events_published: int
    """Calls of :meth:`ControlServer.publish`."""
    events_dropped: int
    """Event lines dropped for clients that fell behind, summed over clients."""
    events_too_long: int
    """Events not sent because their line exceeded the line limit."""


class ControlServer:
    """The control socket of a station, an async context manager.

    Parameters
    ----------
    path
        The socket file. Its directory is created if needed and made 0700 (give the station
        a state directory of its own; a symbolic link there is refused); the socket is
        created 0600.
    handler
        Runs the commands.
    buffer_lines
        Event lines held per client before the oldest are dropped.
    max_clients
        Clients at once; one more gets an error reply and is closed.
    max_pending
        Commands per client in progress or with a reply not yet sent; the client's next
        command is read once one completes.
    close_grace_s
        Seconds a client gets, when it or the server ends the connection, to receive what
        is queued for it.

    Raises (on entering)
    --------------------
    SocketInUse
        Another station serves the same path.
    ControlError
        The path cannot be made an owner-only socket (too long, not a socket, foreign
        directory, a directory that is a symbolic link).

    Notes
    -----
    A client receives the events published after it connected (``status`` tells it the
    state so far). On leaving the context the server stops accepting, cancels the commands
    in progress (their replies are not sent), gives each client ``close_grace_s`` to receive
    what is queued, then closes; the socket file is removed, its lock file stays. A ``stop``
    handler should therefore return at once and let the supervisor close the server after.
    """

    def __init__(
        self,
        path: Path | str,
        handler: ControlHandler,
        *,
        buffer_lines: int = 1000,
        max_clients: int = 32,
        max_pending: int = 32,
        close_grace_s: float = 1.0,
    ) -> None:
        for name, value in (
            ("buffer_lines", buffer_lines),
            ("max_clients", max_clients),
            ("max_pending", max_pending),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1")
        if close_grace_s < 0:
            raise ValueError("close_grace_s must be >= 0")
        self.path = Path(path)
        self._commands: dict[CommandName, Callable[[str | None], Awaitable[object]]] = {
            "status": handler.status,
            "pause": handler.pause,
            "resume": handler.resume,
            "take_darks": handler.take_darks,
            "end_night": handler.end_night,
            "stop": handler.stop,
        }
        self._buffer_lines = buffer_lines
        self._max_clients = max_clients
        self._max_pending = max_pending
        self._grace_s = close_grace_s
        self._uid = os.geteuid()
        self._clients: set[Connection] = set()
        self._counters = Counters()
        self._numbers = itertools.count(1)
        self._stack: AsyncExitStack | None = None
        self._listener: SocketListener | None = None
        self._closing = False

    # -- lifetime ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("a ControlServer can be entered once")
        async with AsyncExitStack() as stack:
            bound = await anyio.to_thread.run_sync(lambda: bind_owner_only(self.path))
            stack.push_async_callback(self._shielded, lambda: release(bound))
            stack.callback(bound.sock.close)  # the listener owns it once made
            listener = self._listener = await SocketListener.from_socket(bound.sock)
            stack.push_async_callback(self._shielded_close, listener)
            tg = await stack.enter_async_context(anyio.create_task_group())
            # The accept loop and each connection run where a cancellation from outside (a
            # station that stops) does not reach them: __aexit__ closes the listener and
            # finishes each connection instead, and they end by themselves.
            tg.start_soon(within, anyio.CancelScope(shield=True), self._accept_loop, listener,
                          tg)
            self._stack = stack.pop_all()
        log.info("control: listening on %s (owner uid %d only)", self.path, self._uid)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop accepting, give each client ``close_grace_s`` to receive what is queued,
        close, and remove the socket file."""
        assert self._stack is not None, "ControlServer was not entered"
        assert self._listener is not None
        # Closing (not cancelling) ends a pending accept and a pending receive cleanly: see
        # the note in _connection.Connection.
        self._closing = True
        await self._shielded_close(self._listener)
        for conn in list(self._clients):
            conn.finish()
        try:
            return await self._stack.__aexit__(exc_type, exc, tb)
        finally:
            log.info("control: closed %s", self.path)

    @staticmethod
    async def _shielded(function: Callable[[], None]) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(function)

    @staticmethod
    async def _shielded_close(listener: SocketListener) -> None:
        with anyio.CancelScope(shield=True):
            await listener.aclose()

    # -- the station's side --------------------------------------------------------------

    def publish(self, event: Event, camera: str | None = None) -> None:
        """Send ``event`` (reported by ``camera``, None for the station) to every client.

        Never waits: each client has a buffer of ``buffer_lines`` lines; when it is full
        the oldest is dropped and the client later gets a ``dropped`` notice. Call from the
        event loop's thread.
        """
        self._counters.events_published += 1
        if not self._clients:
            return
        try:
            line = encode_event(event, camera)
        except (TypeError, ValueError):
            log.exception("control: event %s cannot be written as JSON; not sent", event.kind)
            return
        if len(line) > MAX_LINE_BYTES + 1:
            self._counters.events_too_long += 1
            log.warning(
                "control: %s event of %d bytes is over the %d-byte line limit; not sent",
                event.kind,
                len(line),
                MAX_LINE_BYTES,
            )
            return
        for conn in self._clients:
            conn.offer_event(line)

    def statistics(self) -> ControlStatistics:
        """What the server has done so far (cheap; safe to call at any time)."""
        c = self._counters
        return ControlStatistics(
            clients=len(self._clients),
            connections=c.connections,
            refused_peers=c.refused_peers,
            commands=c.commands,
            bad_lines=c.bad_lines,
            events_published=c.events_published,
            events_dropped=c.events_dropped,
            events_too_long=c.events_too_long,
        )

    # -- serving -------------------------------------------------------------------------

    async def _accept_loop(self, listener: SocketListener, tg: TaskGroup) -> None:
        """Accept clients until the listener is closed."""
        while True:
            try:
                stream = await listener.accept()
            except anyio.ClosedResourceError:
                return
            except (OSError, anyio.BrokenResourceError) as exc:  # e.g. out of descriptors
                log.warning("control: accepting a client failed: %s", exc)
                await anyio.sleep(0.1)
                continue
            tg.start_soon(within, anyio.CancelScope(shield=True), self._serve, stream,
                          next(self._numbers))

    async def _serve(self, stream: SocketStream, number: int) -> None:
        """One connection: the peer check, then the client's session."""
        # The supervisor's rule applies: one client's failure must never reach the server's
        # task group, so anything unexpected is logged here and ends this connection only.
        try:
            raw = stream.extra(SocketAttribute.raw_socket)
            peer = peer_credentials(raw)
            label = f"client #{number} ({peer or 'peer unknown'})"
            if peer is not None and peer.uid != self._uid:
                self._counters.refused_peers += 1
                log.warning(
                    "control: refused %s: only uid %d may use this socket", label, self._uid
                )
                return
            if len(self._clients) >= self._max_clients:
                log.warning("control: refused %s: %d clients already", label, self._max_clients)
                message = f"too many clients ({self._max_clients}); close one and retry"
                with contextlib.suppress(OSError):  # a fresh socket takes a line at once
                    raw.send(encode_error(None, message))
                return
            conn = Connection(
                stream,
                label=label,
                dispatch=self._dispatch,
                counters=self._counters,
                buffer_lines=self._buffer_lines,
                max_pending=self._max_pending,
                grace_s=self._grace_s,
            )
            self._counters.connections += 1
            self._clients.add(conn)
            log.info("control: %s connected", label)
            if self._closing:  # accepted as the server closes: it ends at once
                conn.finish()
            try:
                await conn.run()
            finally:
                self._clients.discard(conn)
                log.info(
                    "control: %s left (%d events dropped for it, %d bad lines from it)",
                    label,
                    conn.dropped,
                    conn.bad_lines,
                )
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        except Exception:
            log.exception("control: client #%d failed", number)
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _dispatch(self, command: Command, client: str) -> bytes:
        """Run ``command`` through the handler; its reply line."""
        self._counters.commands += 1
        where = f" {command.camera}" if command.camera is not None else ""
        # every console asks status once a second: at INFO it would bury what operators did
        level = logging.DEBUG if command.cmd == "status" else logging.INFO
        log.log(level, "control: %s%s (id %r) from %s", command.cmd, where, command.id, client)
        try:
            result = await self._commands[command.cmd](command.camera)
            return encode_reply(command.id, result)
        except MascaraError as exc:
            log.log(level, "control: %s%s from %s refused: %s", command.cmd, where, client, exc)
            return encode_error(command.id, str(exc))
        except Exception as exc:  # a handler's bug must not end the connection
            log.exception("control: %s%s from %s failed", command.cmd, where, client)
            return encode_error(
                command.id,
                f"{command.cmd} failed inside the station ({type(exc).__name__}); "
                "see the station log",
            )
