"""Bad input on the socket (issue 16): each gets an error reply where one is possible and a
closed connection where not; the server and its other clients never notice."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketAttribute

from mascara_actors.control import MAX_LINE_BYTES, ControlClient, ControlServer, EventNotice
from tests.mascara_actors.control.support import FakeStation, frame_event, raw_client, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.backends("asyncio", "trio")]

STATUS = b'{"id": 99, "cmd": "status"}\n'


@asynccontextmanager
async def watched_server(path: Path, station: FakeStation) -> AsyncIterator[ControlServer]:
    """A server with a well-behaved client attached that must see every event published
    while the test runs, and that must still be answered when the test is over."""
    async with ControlServer(path, station) as server, ControlClient(path) as witness:
        await wait_for(lambda: server.statistics().clients == 1)
        yield server
        for lstseq in range(50):
            server.publish(frame_event(lstseq), "LPC")
        seen = [await witness.next_event() for _ in range(50)]
        assert [item.event["lstseq"] for item in seen if isinstance(item, EventNotice)] == list(
            range(50)
        )
        assert (await witness.send("status")).ok
        async with ControlClient(path) as newcomer:  # a new client is served too
            assert (await newcomer.send("status", "LPN")).ok


@pytest.mark.parametrize(
    ("line", "reply_id", "error"),
    [
        (b"\x8f\x00\xc3(random \xff bytes\n", None, "not UTF-8 text (byte 0x8f at offset 0)"),
        (b"{not json\n", None, "invalid JSON (Expecting property name"),
        (b"[1, 2, 3]\n", None, "expected a JSON object, got an array"),
        (b"42\n", None, "expected a JSON object, got an integer"),
        (b'{"cmd": "status"}\n', None, '"id" is missing'),
        (b'{"id": 3, "cmd": "reboot"}\n', 3, '"cmd" "reboot" is not a command; commands: status'),
        (b'{"id": 4, "cmd": "pause", "camera": "LPX"}\n', 4, "no camera 'LPX' at this station"),
        (b'{"id": 5, "cmd": "pause", "camera": ["LPC"]}\n', 5, '"camera" must be a camera id'),
        (b"[" * 60_000 + b"\n", None, "invalid JSON (nested too deeply)"),
        (b'{"id": ' + b"9" * 6000 + b', "cmd": "stop"}\n', None, "invalid JSON (Exceeds"),
        (b'{"id": "\\ud800", "cmd": "status"}\n', None, '"id" holds a lone surrogate (\\ud800)'),
        (b'{"id": 6, "cmd": "\\udfff"}\n', 6, "a key or a string holds a lone surrogate (\\udfff)"),
        (b'{"id": 7, "cmd": "status", "\\ud800": 1}\n', 7, "a key or a string holds a lone"),
        (b'{"id": 8, "cmd": "pause", "camera": "L\\udc8f"}\n', 8, "a key or a string holds"),
    ],
    ids=[
        "random-bytes",
        "invalid-json",
        "array",
        "number",
        "no-id",
        "unknown-command",
        "unknown-camera",
        "camera-not-a-string",
        "deep-nesting",
        "huge-integer",
        "lone-surrogate-id",
        "lone-surrogate-cmd",
        "lone-surrogate-key",
        "lone-surrogate-camera",
    ],
)
async def test_a_bad_line_gets_an_error_reply_and_the_connection_goes_on(
    socket_path: Path, station: FakeStation, line: bytes, reply_id: int | None, error: str
) -> None:
    async with watched_server(socket_path, station) as server:
        async with raw_client(socket_path) as client:
            assert await client.send(line)
            reply = await client.line()
            assert reply["reply"] == reply_id
            assert reply["ok"] is False
            assert reply["error"].startswith(error), reply["error"]
            assert await client.send(STATUS)  # the same connection still works
            assert (await client.line())["ok"] is True
        assert ("stop", None) not in station.calls
        assert server.statistics().bad_lines == (0 if reply_id == 4 else 1)


async def test_a_line_over_64_kib_gets_an_error_then_the_connection_is_closed(
    socket_path: Path, station: FakeStation
) -> None:
    async with watched_server(socket_path, station), raw_client(socket_path) as client:
        async with anyio.create_task_group() as tg:
            # the server stops reading at 64 KiB: the rest may hit a closed socket
            tg.start_soon(client.send, b'{"id": 1, "cmd": "stop", "x": "' + b"y" * 200_000)
            lines = await client.rest()
        assert lines == [
            {
                "reply": None,
                "ok": False,
                "error": "line longer than 65536 bytes; the connection is closed",
            }
        ]
    assert station.calls.count(("stop", None)) == 0


@pytest.mark.parametrize("size", [MAX_LINE_BYTES, MAX_LINE_BYTES + 1])
async def test_the_line_limit_holds_to_the_byte(
    socket_path: Path, station: FakeStation, size: int
) -> None:
    command = b'{"id": 1, "cmd": "status"}'
    line = command + b" " * (size - len(command)) + b"\n"
    async with watched_server(socket_path, station), raw_client(socket_path) as client:
        for start in range(0, len(line), 4096):  # in pieces, as a slow client sends
            assert await client.send(line[start : start + 4096])
        reply = await client.line()
        assert reply["ok"] is (size == MAX_LINE_BYTES)


async def test_a_client_that_disconnects_mid_line_is_forgotten(
    socket_path: Path, station: FakeStation, caplog: pytest.LogCaptureFixture
) -> None:
    async with watched_server(socket_path, station) as server:
        async with raw_client(socket_path) as client:
            await client.send(b'{"id": 1, "cmd": "st')
            await wait_for(lambda: server.statistics().clients == 2)
        await wait_for(lambda: server.statistics().clients == 1)  # the witness only
    assert station.calls.count(("stop", None)) == 0


async def test_a_half_line_before_end_of_stream_is_answered_and_ignored(
    socket_path: Path, station: FakeStation
) -> None:
    async with watched_server(socket_path, station), raw_client(socket_path) as client:
        await client.send(b'{"id": 1, "cmd": "status"}\n{"id": 2, "cmd": "stop"}')
        await client.stream.send_eof()  # as socat does at the end of its input
        lines = await client.rest()
        assert lines[0] == {"reply": 1, "ok": True, "result": lines[0]["result"]}
        assert lines[1] == {
            "reply": None,
            "ok": False,
            "error": "the stream ended inside a line (24 bytes without a newline); it is "
            "ignored: end every command with a newline",
        }
        assert len(lines) == 2
    assert ("stop", None) not in station.calls


async def test_blank_lines_are_ignored(socket_path: Path, station: FakeStation) -> None:
    async with watched_server(socket_path, station), raw_client(socket_path) as client:
        await client.send(b"\n\r\n   \n" + STATUS)
        assert (await client.line())["reply"] == 99


async def test_a_client_that_sends_without_reading_stalls_only_itself(
    socket_path: Path, station: FakeStation, caplog: pytest.LogCaptureFixture
) -> None:
    async with watched_server(socket_path, station) as server, raw_client(socket_path) as flood:
        async with anyio.create_task_group() as tg:
            # 20,000 commands and never a read: the server answers max_pending of them,
            # then reads no more from this client until it reads its replies.
            tg.start_soon(flood.send, STATUS * 20_000)
            await wait_for(lambda: server.statistics().commands >= 32)
            async with ControlClient(socket_path) as other:
                with anyio.fail_after(2):
                    assert (await other.send("pause", "LPE")).ok
            # end the flood by shutting the socket (cancelling a pending send on asyncio can
            # upset anyio's Unix streams; see mascara_actors.control._connection)
            flood.stream.extra(SocketAttribute.raw_socket).shutdown(socket.SHUT_RDWR)
        assert server.statistics().commands < 20_000


async def test_a_connection_of_pure_noise_harms_nothing(
    socket_path: Path, station: FakeStation, caplog: pytest.LogCaptureFixture
) -> None:
    noise = bytes(range(256)) * 64  # 16 KiB, a few newlines among them
    with caplog.at_level(logging.WARNING, "mascara_actors.control"):
        async with watched_server(socket_path, station), raw_client(socket_path) as client:
            await client.send(noise)
            await client.stream.send_eof()
            lines = await client.rest()
            assert lines
            assert all(line["ok"] is False for line in lines)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_client_sending_only_bad_lines_is_answered_each_time_but_logged_a_few_times(
    socket_path: Path, station: FakeStation, caplog: pytest.LogCaptureFixture
) -> None:
    """A runaway script once wrote 17,000 log lines a second: only a client's first 5 bad
    lines are logged, the rest are counted when it leaves; every one is still answered."""
    with caplog.at_level(logging.INFO, "mascara_actors.control"):
        async with ControlServer(socket_path, station) as server:
            async with raw_client(socket_path) as client:
                await client.send(b"\x8f garbage\n" * 200)  # more than max_pending (32)
                replies = [await client.line() for _ in range(200)]
                await client.send(STATUS)
                assert (await client.line())["ok"] is True  # the connection goes on
            await wait_for(lambda: server.statistics().clients == 0)
            assert server.statistics().bad_lines == 200
    error = (
        "not UTF-8 text (byte 0x8f at offset 0); send one JSON object per line, e.g. "
        '{"id": 1, "cmd": "status"}'
    )
    assert {(r["reply"], r["ok"], r["error"]) for r in replies} == {(None, False, error)}
    me = f"client #1 (pid {os.getpid()} uid {os.geteuid()})"
    logged = [m for m in caplog.messages if me in m and "bad line" in m]
    assert logged == [f"control: {me} sent a bad line: {error}"] * 5 + [
        f"control: {me} keeps sending bad lines; the next ones are answered and counted, not "
        "logged (the count comes when it leaves)",
        f"control: {me} left (0 events dropped for it, 200 bad lines from it)",
    ]
