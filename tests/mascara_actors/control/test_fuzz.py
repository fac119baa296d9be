"""Arbitrary byte streams on the socket while a client receives a steady stream of events
(issue 16): every line gets its answer, and the event stream loses nothing.

One server runs for the whole hypothesis run, in an event loop of its own (a blocking
portal), publishing five events every millisecond to a witness client; each example opens a
connection, sends its bytes and ends it in one of two ways.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import given, settings
from hypothesis import strategies as st

from mascara_actors.control import (
    COMMANDS,
    MAX_LINE_BYTES,
    Command,
    ControlClient,
    ControlServer,
    Dropped,
    EventNotice,
)
from mascara_actors.control.errors import ProtocolError
from mascara_actors.control.protocol import decode_command, encode_command
from tests.mascara_actors.control.support import (
    CAMERAS,
    FakeStation,
    frame_event,
    raw_client,
    wait_for,
)

pytestmark = pytest.mark.backends("asyncio", "trio")


# -- what a client may send -----------------------------------------------------------------


def commands() -> st.SearchStrategy[bytes]:
    """Valid command lines, for known cameras, unknown ones or the whole station (all of
    which succeed for a known camera: not ``resume``, whose answer depends on what was
    paused before, nor ``end_night``, which fails in the fake station)."""
    return st.builds(
        lambda i, cmd, camera: encode_command(Command(id=i, cmd=cmd, camera=camera)),
        st.integers(-(2**40), 2**40) | st.text(max_size=8),
        st.sampled_from([c for c in COMMANDS if c not in ("resume", "end_night")]),
        st.none() | st.sampled_from(CAMERAS) | st.text(max_size=4),
    )


def json_lines() -> st.SearchStrategy[bytes]:
    """Any JSON value on a line (mostly not a command)."""
    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    )
    return values.map(lambda v: json.dumps(v).encode() + b"\n")


def chunks() -> st.SearchStrategy[list[bytes | int]]:
    """What one connection sends: pieces of lines, whole lines, noise, now and then a line
    at or over the 64 KiB limit (an integer ``n`` stands for ``n`` bytes of ``a``, to keep
    the examples readable)."""
    piece = st.one_of(
        st.binary(max_size=80),
        commands(),
        json_lines(),
        st.just(b"\n"),
        st.sampled_from([MAX_LINE_BYTES - 30, MAX_LINE_BYTES + 1, 80_000]),
    )
    return st.lists(piece, max_size=10)


def as_bytes(pieces: list[bytes | int]) -> list[bytes]:
    return [b"a" * piece if isinstance(piece, int) else piece for piece in pieces]


def expected_answers(data: bytes) -> tuple[int, set[int | str]]:
    """Lines the server must answer when ``data`` is sent then the stream ends, and the ids
    of the commands among them that must succeed."""
    *lines, rest = data.split(b"\n")
    answers, ok_ids = 0, set[int | str]()
    for line in lines:
        if len(line) > MAX_LINE_BYTES:
            return answers + 1, ok_ids  # answered, then the connection is closed
        if line.strip():
            answers += 1
            try:
                command = decode_command(line)
            except ProtocolError:
                continue
            if command is not None and command.camera in (None, *CAMERAS):
                ok_ids.add(command.id)
    if len(rest) > MAX_LINE_BYTES or rest.strip():
        answers += 1
    return answers, ok_ids


# -- the running station --------------------------------------------------------------------


@dataclass
class Rig:
    """A server publishing events steadily, and a witness that reads them."""

    path: Path
    server: ControlServer
    published: int = 0
    seen: list[EventNotice | Dropped] = field(default_factory=list)

    async def publish_steadily(self, stop: anyio.Event) -> None:
        """Five events (one per camera) every millisecond, as a busy station might."""
        while not stop.is_set():
            for camera in CAMERAS:
                self.server.publish(frame_event(self.published), camera)
                self.published += 1
            await anyio.sleep(0.001)

    async def witness(self, client: ControlClient) -> None:
        async for item in client.events():
            self.seen.append(item)

    async def feed(self, data: list[bytes], half_close: bool) -> list[dict[str, Any]]:
        """Send ``data`` on a new connection; with ``half_close`` end the stream and return
        every reply until the server closes, else disconnect at once."""
        async with raw_client(self.path) as client:
            for chunk in data:
                if not await client.send(chunk):
                    break  # the server closed it (a line over the limit)
            if not half_close:
                return []
            with suppress(anyio.BrokenResourceError, OSError):
                await client.stream.send_eof()
            lines = await client.rest(timeout_s=10)
            return [line for line in lines if "reply" in line]  # not the events


@asynccontextmanager
async def running(path: Path) -> AsyncIterator[Rig]:
    """The rig for the length of the test; on leaving, the witness must have every event
    published and still be answered."""
    async with (
        ControlServer(path, FakeStation()) as server,
        ControlClient(path, event_buffer=100_000) as witness,
        anyio.create_task_group() as tg,
    ):
        rig = Rig(path, server)
        stop = anyio.Event()
        tg.start_soon(rig.witness, witness)
        await wait_for(lambda: server.statistics().clients == 1)  # the witness is listening
        tg.start_soon(rig.publish_steadily, stop)
        yield rig
        stop.set()
        with anyio.move_on_after(10):
            while len(rig.seen) < rig.published:
                await anyio.sleep(0.01)
        assert len(rig.seen) == rig.published, (
            f"the witness saw {len(rig.seen)} of {rig.published} events; {server.statistics()}"
        )
        assert (await witness.send("status")).ok
        tg.cancel_scope.cancel()


def test_arbitrary_bytes_never_disturb_the_station(anyio_backend: str, socket_path: Path) -> None:
    with (
        start_blocking_portal(anyio_backend) as portal,
        portal.wrap_async_context_manager(running(socket_path)) as rig,
    ):

        @settings(max_examples=50, deadline=None, database=None)
        @given(data=chunks(), half_close=st.booleans())
        def one_connection(data: list[bytes | int], half_close: bool) -> None:
            sent = as_bytes(data)
            answers = portal.call(rig.feed, sent, half_close)
            if not half_close:
                return
            expected, ok_ids = expected_answers(b"".join(sent))
            assert len(answers) == expected, answers
            assert {a["reply"] for a in answers if a["ok"]} == ok_ids

        one_connection()
    assert rig.published > 0
    events = [item for item in rig.seen if isinstance(item, EventNotice)]
    assert len(events) == len(rig.seen), "the witness was told of dropped events"
    assert [item.event["lstseq"] for item in events] == list(range(rig.published))
