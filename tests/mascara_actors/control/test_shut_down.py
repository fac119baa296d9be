"""Ending a Unix socket stream's pending receive by shutting the socket down, not by
cancelling it: the case where the socket turns readable in the very loop iteration in which
the receive is ended (the race behind a console test's ``InvalidStateError`` on asyncio)."""

from __future__ import annotations

import socket
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import UNIXSocketStream

from mascara_actors.control.client import STREAM_ENDED, ControlClient, shut_down
from mascara_actors.control.server import ControlServer
from tests.mascara_actors.control.support import FakeStation, cancel_as_it_turns_readable

pytestmark = [pytest.mark.anyio, pytest.mark.backends("asyncio", "trio")]


async def test_a_pending_receive_ends_cleanly_when_data_arrives_as_it_is_ended() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stream = await UNIXSocketStream.from_socket(ours)
    received: list[bytes] = []
    ended: list[str] = []

    async def reader() -> None:
        try:
            while True:
                received.append(await stream.receive())
        except STREAM_ENDED as exc:
            ended.append(type(exc).__name__)

    with theirs, anyio.fail_after(5):
        async with stream, anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0.05)  # the reader waits for the socket
            theirs.send(b"last line\n")
            # one checkpoint: the socket is readable in the iteration in which it is shut down
            await anyio.lowlevel.checkpoint()
            shut_down(stream)
    # everything sent is read, then the stream ends; the loop reported nothing (the anyio
    # test runner fails the test on any error a loop callback raised)
    assert b"".join(received) == b"last line\n"
    assert ended == ["EndOfStream"]


async def test_shut_down_on_a_stream_already_closed_by_its_peer_is_harmless() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stream = await UNIXSocketStream.from_socket(ours)
    async with stream:
        theirs.close()
        shut_down(stream)
        shut_down(stream)  # twice: ENOTCONN is swallowed
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()


@pytest.mark.backends("asyncio")
async def test_a_client_cancelled_from_outside_as_the_station_writes_reports_nothing(
        socket_path: Path) -> None:
    # A console quits by cancelling what runs its ControlClient while the station streams
    # events. The cancellation is delivered by a loop callback that runs, in one iteration,
    # just before the one the socket's readiness queued: the client's reader must not be
    # waiting in a receive that the cancellation ends.
    socket_path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(socket_path))
        server.listen()
        scope, entered = anyio.CancelScope(), anyio.Event()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_hold, scope, ControlClient(socket_path), entered)
                await entered.wait()
                station, _ = server.accept()
                with station:
                    await cancel_as_it_turns_readable(scope, station, b'{"event": "x"}\n')
    # the anyio test runner fails the test on any error a loop callback raised
    assert scope.cancel_called


async def _hold(scope: anyio.CancelScope, context: AbstractAsyncContextManager[object],
                entered: anyio.Event) -> None:
    """Enter ``context`` in ``scope`` and stay there until the scope is cancelled."""
    with scope:
        async with context:
            entered.set()
            await anyio.sleep_forever()


@pytest.mark.backends("asyncio")
async def test_a_server_cancelled_from_outside_as_a_client_writes_reports_nothing(
        socket_path: Path, station: FakeStation) -> None:
    # The station stops by cancelling what runs its ControlServer while a console sends: the
    # reader of that console's connection must not be waiting in a receive the
    # cancellation ends.
    scope, serving = anyio.CancelScope(), anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_hold, scope, ControlServer(socket_path, station), serving)
            await serving.wait()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as console:
                console.connect(str(socket_path))
                await cancel_as_it_turns_readable(scope, console,
                                                   b'{"id": 1, "cmd": "status"}\n')
    assert scope.cancel_called
