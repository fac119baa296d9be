"""The control server with real clients on a real socket: commands and their replies, the
event stream to several clients, a client that never reads, closing."""

from __future__ import annotations

import logging
import os
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import anyio.abc
import pytest

from mascara_actors.control import (
    ControlClient,
    ControlError,
    ControlServer,
    Disconnected,
    Dropped,
    EventNotice,
    Reply,
)
from tests.mascara_actors.control.support import (
    CAMERAS,
    FakeStation,
    frame_event,
    raw_client,
    wait_for,
)

pytestmark = [pytest.mark.anyio, pytest.mark.backends("asyncio", "trio")]


async def collect(client: ControlClient, n: int, into: list[EventNotice | Dropped]) -> None:
    """Append the client's next ``n`` items (events or drop notices) to ``into``."""
    async for item in client.events():
        into.append(item)
        if len(into) == n:
            return


def lstseqs(items: list[EventNotice | Dropped]) -> list[int]:
    return [item.event["lstseq"] for item in items if isinstance(item, EventNotice)]


async def test_each_command_reaches_the_handler_and_its_reply_carries_its_id(
    socket_path: Path, station: FakeStation
) -> None:
    async with ControlServer(socket_path, station), ControlClient(socket_path) as client:
        status = await client.send("status")
        assert status == Reply(id=1, ok=True, result={"cameras": list(CAMERAS), "paused": []})
        assert (await client.send("pause", camera="LPC")).unwrap() == ["LPC"]
        assert (await client.send("status", "LPC")).result["paused"] is True
        assert (await client.send("resume", "LPC")).unwrap() == []
        assert (await client.send("take_darks", "LPE")).unwrap() == "darks taken"
        assert (await client.send("stop")).unwrap() == "stopping"
    assert station.calls == [
        ("status", None),
        ("pause", "LPC"),
        ("status", "LPC"),
        ("resume", "LPC"),
        ("take_darks", "LPE"),
        ("stop", None),
    ]


async def test_a_refused_or_failed_command_is_an_error_reply_and_the_connection_goes_on(
    socket_path: Path, station: FakeStation, caplog: pytest.LogCaptureFixture
) -> None:
    async with ControlServer(socket_path, station), ControlClient(socket_path) as client:
        unknown = await client.send("pause", camera="LPX")
        assert unknown == Reply(
            id=1,
            ok=False,
            error="no camera 'LPX' at this station (cameras: LPC, LPE, LPN, LPS, LPW); "
            'name one of them, or leave "camera" out for the whole station',
        )
        refused = await client.send("resume", camera="LPS")
        assert refused.error == "LPS is not paused: nothing to resume"
        with caplog.at_level(logging.ERROR, "mascara_actors.control"):
            bug = await client.send("end_night")
        assert bug.error == (
            "end_night failed inside the station (RuntimeError); see the station log"
        )
        assert "a bug in the station" in caplog.text  # the traceback is in the log
        assert (await client.send("status", "LPS")).ok


async def test_a_slow_command_holds_no_other(socket_path: Path, station: FakeStation) -> None:
    station.darks_done = anyio.Event()
    darks: list[Reply] = []
    async with (
        ControlServer(socket_path, station),
        ControlClient(socket_path) as client,
        anyio.create_task_group() as tg,
    ):

        async def take_darks() -> None:
            darks.append(await client.send("take_darks", "LPC"))

        tg.start_soon(take_darks)
        await wait_for(lambda: ("take_darks", "LPC") in station.calls)
        assert (await client.send("pause", "LPN")).ok  # answered while darks run
        async with ControlClient(socket_path) as other:
            assert (await other.send("status")).ok
        assert darks == []
        station.darks_done.set()
    assert darks[0].result == "darks taken"


async def test_every_command_is_logged_with_its_client_status_at_debug(
    socket_path: Path, station: FakeStation, caplog: pytest.LogCaptureFixture
) -> None:
    """Each console polls status once a second: at INFO it would fill the station log."""
    with caplog.at_level(logging.DEBUG, "mascara_actors.control"):
        async with ControlServer(socket_path, station), ControlClient(socket_path) as client:
            await client.send("pause", "LPW")
            await client.send("status")
            await client.send("status", "LPX")
            await client.send("resume", "LPX")
    me = f"client #1 (pid {os.getpid()} uid {os.geteuid()})"
    levels = {record.getMessage(): record.levelno for record in caplog.records}
    assert levels[f"control: pause LPW (id 1) from {me}"] == logging.INFO
    assert levels[f"control: status (id 2) from {me}"] == logging.DEBUG
    assert levels[f"control: status LPX (id 3) from {me}"] == logging.DEBUG
    assert levels[f"control: resume LPX (id 4) from {me}"] == logging.INFO
    refused = [(m.split(": no camera")[0], lv) for m, lv in levels.items() if "refused" in m]
    assert refused == [
        (f"control: status LPX from {me} refused", logging.DEBUG),
        (f"control: resume LPX from {me} refused", logging.INFO),
    ]
    assert levels[f"control: {me} connected"] == logging.INFO


async def test_several_clients_get_every_event_in_order(
    socket_path: Path, station: FakeStation
) -> None:
    n = 2000
    results: list[list[EventNotice | Dropped]] = [[], [], []]
    async with ControlServer(socket_path, station) as server:
        async with (
            ControlClient(socket_path) as a,
            ControlClient(socket_path) as b,
            ControlClient(socket_path) as c,
            anyio.create_task_group() as tg,
        ):
            for client, into in zip((a, b, c), results, strict=True):
                tg.start_soon(collect, client, n, into)
            await wait_for(lambda: server.statistics().clients == 3)
            for lstseq in range(n):
                server.publish(frame_event(lstseq), CAMERAS[lstseq % 5])
                if lstseq % 20 == 0:
                    await anyio.sleep(0)  # the station publishes from a running loop
        assert server.statistics().events_dropped == 0
    for items in results:
        assert lstseqs(items) == list(range(n))
        assert [item.camera for item in items] == [CAMERAS[i % 5] for i in range(n)]  # type: ignore[union-attr]
    assert results[0][7].to_event() == frame_event(7)  # type: ignore[union-attr]


async def test_a_client_that_never_reads_slows_nothing_and_gets_the_newest_events(
    socket_path: Path, station: FakeStation
) -> None:
    n, buffer_lines = 10_000, 1000
    reader_items: list[EventNotice | Dropped] = []
    async with (
        ControlServer(socket_path, station, buffer_lines=buffer_lines) as server,
        raw_client(socket_path) as stuck,  # connects, then reads nothing for a while
    ):
        async with ControlClient(socket_path) as reader, anyio.create_task_group() as tg:
            tg.start_soon(collect, reader, n, reader_items)
            await wait_for(lambda: server.statistics().clients == 2)
            started = time.perf_counter()
            # publish is not a coroutine: it cannot wait for a client, stuck or not
            for lstseq in range(n):
                server.publish(frame_event(lstseq), "LPC")
                if lstseq % 10 == 0:
                    await anyio.sleep(0)
            # the reader is never held up by the stuck client
            with anyio.fail_after(10):
                while len(reader_items) < n:
                    await anyio.sleep(0.01)
            elapsed = time.perf_counter() - started
        assert elapsed < 10.0
        assert lstseqs(reader_items) == list(range(n))
        assert not any(isinstance(item, Dropped) for item in reader_items)

        # The stuck client now reads: what had left before it stalled, one drop notice,
        # then the newest events; nothing out of order, every event accounted for.
        got: list[int] = []
        dropped: list[int] = []
        while len(got) < n - sum(dropped) and (not got or got[-1] != n - 1):
            line = await stuck.line()
            if "dropped" in line:
                dropped.append(line["dropped"])
            else:
                got.append(line["event"]["lstseq"])
        assert len(dropped) == 1
        assert got == sorted(got)
        assert len(got) + dropped[0] == n
        assert got[-buffer_lines:] == list(range(n - buffer_lines, n))
        assert server.statistics().events_dropped == dropped[0]


async def test_a_client_that_never_reads_does_not_hold_up_closing(
    socket_path: Path, station: FakeStation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mascara_actors.control")
    async with AsyncExitStack() as outlives_the_server:
        async with ControlServer(socket_path, station, close_grace_s=0.2) as server:
            stuck = await outlives_the_server.enter_async_context(raw_client(socket_path))
            await stuck.send(b'{"id": 1, "cmd": "status"}\n')
            await wait_for(lambda: server.statistics().clients == 1)
            for lstseq in range(5000):  # more than the socket holds: the writer blocks
                server.publish(frame_event(lstseq), "LPC")
                if lstseq % 100 == 0:
                    await anyio.sleep(0)
            started = time.perf_counter()
        assert time.perf_counter() - started < 2.0
        assert not await anyio.Path(socket_path).exists()
    assert "control: client #1 (pid" in caplog.text
    assert "does not read; closing it" in caplog.text


async def test_a_client_that_falls_behind_is_told_how_many_events_it_missed(
    socket_path: Path, station: FakeStation
) -> None:
    async with (
        ControlServer(socket_path, station) as server,
        ControlClient(socket_path, event_buffer=10) as client,
    ):
        await wait_for(lambda: server.statistics().clients == 1)
        for lstseq in range(100):
            server.publish(frame_event(lstseq), "LPC")
        assert (await client.send("status")).ok  # replies come whatever the events do
        await wait_for(lambda: client.events_dropped == 90)
        items = [await client.next_event() for _ in range(11)]
        assert items[0] == Dropped(count=90)
        assert lstseqs(items[1:]) == list(range(90, 100))  # type: ignore[arg-type]


async def test_too_many_clients_get_an_error_and_the_others_go_on(
    socket_path: Path, station: FakeStation
) -> None:
    async with (
        ControlServer(socket_path, station, max_clients=2) as server,
        ControlClient(socket_path) as a,
        ControlClient(socket_path) as b,
    ):
        await wait_for(lambda: server.statistics().clients == 2)
        async with raw_client(socket_path) as third:
            assert await third.rest() == [
                {"reply": None, "ok": False, "error": "too many clients (2); close one and retry"}
            ]
        async with ControlClient(socket_path) as late:
            await wait_for(lambda: not late.connected)
            with pytest.raises(Disconnected, match=r"too many clients \(2\); close one"):
                await late.send("status")
        assert (await a.send("status")).ok
        assert (await b.send("status")).ok


async def test_a_stop_is_answered_before_the_server_closes_and_the_socket_goes(
    socket_path: Path, station: FakeStation
) -> None:
    async def serve(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        """As the supervisor will: serve until the stop command, then close."""
        async with ControlServer(socket_path, station) as server:
            task_status.started()
            await station.stopped.wait()
            server.publish(frame_event(1), None)

    async with anyio.create_task_group() as tg:
        await tg.start(serve)
        async with ControlClient(socket_path) as client:
            assert (await client.send("stop")).result == "stopping"
            items = [item async for item in client.events()]  # ends: the server closed
            assert lstseqs(items) == [1]
            with pytest.raises(Disconnected, match=r"^the station closed the control connection"):
                await client.send("status")
    assert not await anyio.Path(socket_path).exists()
    assert await anyio.Path(socket_path.parent).exists()


async def test_a_client_says_what_is_wrong_when_no_station_listens(socket_path: Path) -> None:
    with pytest.raises(ControlError, match=r"^no control socket at .*: is the station running"):
        async with ControlClient(socket_path):
            pass
    async with ControlServer(socket_path, FakeStation()):
        pass
    await anyio.Path(socket_path.parent).mkdir(exist_ok=True)

    def leave_a_stale_socket() -> None:
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(socket_path))
        sock.close()

    await anyio.to_thread.run_sync(leave_a_stale_socket)
    with pytest.raises(ControlError, match=r"^nobody listens on .* \(a stale socket"):
        async with ControlClient(socket_path):
            pass
