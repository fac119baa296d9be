"""Ending a Unix socket stream's pending receive by shutting the socket down, not by
cancelling it: the case where the socket turns readable in the very loop iteration in which
the receive is ended (the race behind a console test's ``InvalidStateError`` on asyncio)."""

from __future__ import annotations

import socket

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import UNIXSocketStream

from mascara_actors.control.client import STREAM_ENDED, shut_down

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
