"""Only the station's owner may use its control socket (issue 16): a 0600 socket in a 0700
directory, and a peer-uid check behind them; one station per socket; a stale socket file is
replaced, anything else at the path is left alone."""

from __future__ import annotations

import logging
import os
import pwd
import socket
import stat
import sys
from pathlib import Path

import anyio
import pytest

from mascara_actors.app.supervisor import station_state_dir
from mascara_actors.control import (
    ControlClient,
    ControlError,
    ControlServer,
    ForeignListener,
    SocketInUse,
)
from tests.mascara_actors.control.support import (
    NOBODY,
    FakeStation,
    ListenerOfAnotherUser,
    connect_as,
    wait_for,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.backends("asyncio", "trio"),
    # forking from a process with threads (Python 3.12 warns); the child only connects
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "this test runs a process of another user (uid 65534) and so must run as root "
            f"(uid 0); it runs as uid {os.geteuid()}: run the suite as root (as CI does)"
        )


async def _mode(path: Path) -> int:
    return stat.S_IMODE((await anyio.Path(path).stat()).st_mode)


async def test_the_socket_is_0600_in_a_0700_directory_and_goes_when_closed(
    socket_path: Path,
) -> None:
    await anyio.Path(socket_path.parent).mkdir(mode=0o755)  # an existing, open directory
    async with ControlServer(socket_path, FakeStation()):
        info = await anyio.Path(socket_path).stat()
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == os.geteuid()
        assert await _mode(socket_path.parent) == 0o700
    assert not await anyio.Path(socket_path).exists()


async def test_a_missing_directory_is_made_0700(socket_path: Path) -> None:
    deep = socket_path.parent / "a" / "b" / "control.sock"
    async with ControlServer(deep, FakeStation()):
        assert await _mode(deep.parent) == 0o700
        assert await _mode(deep) == 0o600


async def test_another_user_cannot_connect(socket_path: Path, station: FakeStation) -> None:
    _require_root()
    async with ControlServer(socket_path, station) as server:
        result = await anyio.to_thread.run_sync(
            connect_as, NOBODY, socket_path, b'{"id": 1, "cmd": "stop"}\n'
        )
        assert result == "PermissionError"
        stats = server.statistics()
        assert (stats.connections, stats.refused_peers, stats.commands) == (0, 0, 0)
        async with ControlClient(socket_path) as owner:  # the owner still can
            assert (await owner.send("status")).ok
    assert station.calls == [("status", None)]


async def test_the_peer_check_refuses_another_user_even_past_open_permissions(
    socket_path: Path, station: FakeStation, caplog: pytest.LogCaptureFixture
) -> None:
    """Should the permissions be opened by mistake, the uid check still closes the door."""
    _require_root()
    with caplog.at_level(logging.WARNING, "mascara_actors.control"):
        async with ControlServer(socket_path, station) as server:
            await anyio.Path(socket_path.parent).chmod(0o755)
            await anyio.Path(socket_path).chmod(0o666)
            result = await anyio.to_thread.run_sync(
                connect_as, NOBODY, socket_path, b'{"id": 1, "cmd": "stop"}\n'
            )
            assert result == "connected, received 0 bytes"
            await wait_for(lambda: server.statistics().refused_peers == 1)
            stats = server.statistics()
            assert (stats.connections, stats.commands) == (0, 0)
    assert station.calls == []
    assert "refused client #1 (pid" in caplog.text
    assert f"uid {NOBODY}): only uid 0 may use this socket" in caplog.text


async def test_the_client_refuses_a_socket_served_by_another_user(socket_path: Path) -> None:
    """Whoever can write a directory above the socket can listen at its path: the console
    must not send that process a command, nor believe its answers."""
    _require_root()
    await anyio.Path(socket_path.parent).mkdir(mode=0o755)
    await anyio.to_thread.run_sync(os.chown, socket_path.parent, NOBODY, NOBODY)
    impostor = await anyio.to_thread.run_sync(ListenerOfAnotherUser, NOBODY, socket_path)
    try:
        with pytest.raises(ForeignListener) as refused:
            async with ControlClient(socket_path) as client:
                await client.send("status", timeout_s=0.5)
    finally:
        outcome = await anyio.to_thread.run_sync(impostor.outcome)
    assert str(refused.value) == (
        f"the control socket {socket_path} is served by process {impostor.pid} of uid "
        f"{NOBODY} ({pwd.getpwuid(NOBODY).pw_name}), not by this user (uid 0); nothing was "
        "sent to it. If the station runs as that user, run the console as that user; if not, "
        "another user has put a socket of their own at this path: make the station's output "
        "directory and its parents writable by the station's user only, then start the "
        "station again"
    )
    assert outcome == "accepted, received 0 bytes"


async def test_the_console_says_whose_socket_it_is_and_starts_no_station(
        socket_path: Path) -> None:
    """Another user's socket where the station's should be is not "no station here": the
    console says so instead of starting a station beside it."""
    _require_root()
    out = socket_path.parent.parent / "out"  # below a directory any user may reach
    state = station_state_dir(out)
    await anyio.Path(state).mkdir(mode=0o755, parents=True)
    await anyio.to_thread.run_sync(os.chown, state, NOBODY, NOBODY)
    socket_path = state / "control.sock"
    impostor = await anyio.to_thread.run_sync(ListenerOfAnotherUser, NOBODY, socket_path)
    try:
        console = await anyio.run_process(
            [sys.executable, "-m", "mascara_actors.cli", "console", "--out", str(out)],
            check=False)
    finally:
        outcome = await anyio.to_thread.run_sync(impostor.outcome)
    err = console.stderr.decode()
    assert console.returncode == 2, err
    assert f"the control socket {socket_path} is served by process {impostor.pid}" in err
    assert "starting one" not in err
    assert sorted(p.name for p in state.iterdir()) == ["control.sock"]
    assert outcome == "accepted, received 0 bytes"


async def test_a_second_server_on_the_same_path_refuses(
    socket_path: Path, station: FakeStation
) -> None:
    async with ControlServer(socket_path, station):
        with pytest.raises(SocketInUse, match=r"^another station holds .*control\.sock\.lock"):
            async with ControlServer(socket_path, FakeStation()):
                pass
        async with ControlClient(socket_path) as client:  # the first goes on
            assert (await client.send("status")).ok
    assert station.calls == [("status", None)]


async def test_a_process_listening_on_the_path_is_not_displaced(socket_path: Path) -> None:
    await anyio.Path(socket_path.parent).mkdir(mode=0o700)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await anyio.to_thread.run_sync(other.bind, str(socket_path))
        other.listen(1)
        with pytest.raises(SocketInUse, match=r"^a process already listens on "):
            async with ControlServer(socket_path, FakeStation()):
                pass
        assert await anyio.Path(socket_path).exists()
    finally:
        other.close()


async def test_a_stale_socket_file_is_replaced(
    socket_path: Path, station: FakeStation, caplog: pytest.LogCaptureFixture
) -> None:
    """A killed station leaves its socket file (and its lock file, unlocked) behind."""
    async with ControlServer(socket_path, FakeStation()):
        pass
    await anyio.Path(socket_path.parent).mkdir(exist_ok=True)

    def leave_a_stale_socket() -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(socket_path))
        sock.close()  # the file stays, nobody listens

    await anyio.to_thread.run_sync(leave_a_stale_socket)
    with caplog.at_level(logging.WARNING, "mascara_actors.control"):
        async with ControlServer(socket_path, station), ControlClient(socket_path) as client:
            assert (await client.send("status")).ok
            assert await _mode(socket_path) == 0o600
    assert "replacing the stale socket" in caplog.text


async def test_a_file_that_is_not_a_socket_is_left_alone(socket_path: Path) -> None:
    await anyio.Path(socket_path.parent).mkdir(mode=0o700)
    await anyio.Path(socket_path).write_text("not a socket")
    with pytest.raises(ControlError, match=r"control\.sock exists and is not a socket: move it"):
        async with ControlServer(socket_path, FakeStation()):
            pass
    assert await anyio.Path(socket_path).read_text() == "not a socket"


async def test_a_directory_of_another_user_is_refused(socket_path: Path) -> None:
    _require_root()
    directory = anyio.Path(socket_path.parent)
    await directory.mkdir(mode=0o755)
    await anyio.to_thread.run_sync(os.chown, socket_path.parent, NOBODY, NOBODY)
    with pytest.raises(ControlError, match=rf"belongs to uid {NOBODY}, not to this station's"):
        async with ControlServer(socket_path, FakeStation()):
            pass
    assert await _mode(socket_path.parent) == 0o755  # untouched


@pytest.mark.parametrize("target", ["a directory", "nothing"])
async def test_a_state_directory_that_is_a_symbolic_link_is_refused(
    socket_path: Path, target: str
) -> None:
    """Whoever can change the link would choose where the socket goes and which directory
    the server makes 0700."""
    victim = socket_path.parent.parent / "victim"
    if target == "a directory":
        await anyio.Path(victim).mkdir()
        await anyio.Path(victim).chmod(0o755)
    await anyio.Path(socket_path.parent).symlink_to(victim)
    with pytest.raises(ControlError) as refused:
        async with ControlServer(socket_path, FakeStation()):
            pass
    assert str(refused.value) == (
        f"the control socket's directory {socket_path.parent} is a symbolic link: the station "
        "does not follow it; make it a real directory of the station's user, or give the "
        "station another state directory"
    )
    if target == "a directory":
        assert await _mode(victim) == 0o755  # untouched, and nothing made in it
        assert [path async for path in anyio.Path(victim).iterdir()] == []
    else:
        assert not await anyio.Path(victim).exists()


async def test_a_path_too_long_for_a_unix_socket_is_refused(socket_path: Path) -> None:
    long_path = socket_path.parent / ("d" * 90) / "control.sock"
    with pytest.raises(ControlError, match=r"bytes long; Unix sockets allow 107: give the"):
        async with ControlServer(long_path, FakeStation()):
            pass
