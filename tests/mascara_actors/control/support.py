"""What the control-socket tests share: a fake station behind the socket, a raw client that
sends any bytes, the events they publish, a process of another user (connecting, or
listening), a cancellation timed to meet a socket's readiness."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from mascara_actors.control import UnknownCamera
from mascara_actors.errors import MascaraError
from mascara_actors.messages import FrameReducedEvent

CAMERAS = ("LPN", "LPE", "LPS", "LPW", "LPC")
NOBODY = 65534
"""uid and gid of ``nobody``: the other user of the security tests."""


def frame_event(lstseq: int) -> FrameReducedEvent:
    """A typical event (about 250 bytes on the wire); ``lstseq`` numbers the stream."""
    return FrameReducedEvent(
        time=1.7e9 + lstseq,
        lstseq=lstseq,
        nstars=812,
        nflagged=17,
        latency_s=0.42,
        timings={"calibrate": 0.05, "astrometry": 0.11, "photometry": 0.2},
        sky=1234.5,
        ccdtemp=-9.8,
        path=f"/data/raw/LPC/{lstseq}.fits.gz",
    )


class FakeStation:
    """A command handler that records each call; ``take_darks`` waits for ``darks_done``
    when it is set, ``end_night`` has a bug (RuntimeError), ``stop`` sets ``stopped``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.paused: set[str] = set()
        self.darks_done: anyio.Event | None = None
        self.stopped = anyio.Event()

    def _camera(self, cmd: str, camera: str | None) -> None:
        if camera is not None and camera not in CAMERAS:
            raise UnknownCamera(camera, CAMERAS)
        self.calls.append((cmd, camera))

    async def status(self, camera: str | None) -> object:
        self._camera("status", camera)
        if camera is None:
            return {"cameras": list(CAMERAS), "paused": sorted(self.paused)}
        return {"camera": camera, "paused": camera in self.paused, "lstseq": 65344200}

    async def pause(self, camera: str | None) -> object:
        self._camera("pause", camera)
        self.paused.update([camera] if camera else CAMERAS)
        return sorted(self.paused)

    async def resume(self, camera: str | None) -> object:
        self._camera("resume", camera)
        if camera is not None and camera not in self.paused:
            raise MascaraError(f"{camera} is not paused: nothing to resume")
        self.paused.difference_update([camera] if camera else CAMERAS)
        return sorted(self.paused)

    async def take_darks(self, camera: str | None) -> object:
        self._camera("take_darks", camera)
        if self.darks_done is not None:
            await self.darks_done.wait()
        return "darks taken"

    async def end_night(self, camera: str | None) -> object:
        self._camera("end_night", camera)
        raise RuntimeError("a bug in the station")

    async def stop(self, camera: str | None) -> object:
        self._camera("stop", camera)
        self.stopped.set()
        return "stopping"


class RawClient:
    """A connection that sends any bytes and reads raw lines (test code: no checks)."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.receiver = BufferedByteReceiveStream(stream)

    @classmethod
    async def connect(cls, path: Path) -> RawClient:
        return cls(await anyio.connect_unix(path))

    async def send(self, data: bytes) -> bool:
        """Send ``data``; False when the server has closed the connection."""
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    async def line(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """The next line, parsed."""
        with anyio.fail_after(timeout_s):
            return json.loads(await self.receiver.receive_until(b"\n", 1 << 20))  # type: ignore[no-any-return]

    async def rest(self, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Every line until the server closes the connection (fails after ``timeout_s``)."""
        lines: list[dict[str, Any]] = []
        with anyio.fail_after(timeout_s):
            while True:
                try:
                    raw = await self.receiver.receive_until(b"\n", 1 << 20)
                except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
                    return lines
                lines.append(json.loads(raw))

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def raw_client(path: Path) -> AsyncIterator[RawClient]:
    """A :class:`RawClient` connected to ``path``, closed on leaving."""
    client = await RawClient.connect(path)
    try:
        yield client
    finally:
        await client.aclose()


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds; TimeoutError after ``timeout_s``."""
    with anyio.fail_after(timeout_s):
        while not predicate():
            await anyio.sleep(0.01)


def connect_as(uid: int, path: Path, payload: bytes = b"") -> str:
    """What a process of user ``uid`` (gid the same, no groups) gets when it connects to
    ``path`` and sends ``payload``: ``PermissionError``, ``OSError <errno>`` or
    ``connected, received <n> bytes`` (read until the server closed). Blocking: forks a
    child that drops root; run it in a worker thread."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into the test runner
        os.close(read_end)
        _child(write_end, lambda: _connect_as(uid, path, payload))
    os.close(write_end)
    return _outcome(read_end, pid)


def _connect_as(uid: int, path: Path, payload: bytes) -> str:
    """The work of :func:`connect_as`'s child."""
    _become(uid)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    try:
        sock.connect(os.fspath(path))
    except PermissionError:
        return "PermissionError"
    except OSError as exc:
        return f"OSError {exc.errno}"
    with contextlib.suppress(OSError):
        sock.sendall(payload)
    return f"connected, received {_received(sock)} bytes"


def _child(report: int, work: Callable[[], str]) -> NoReturn:
    """Run ``work`` in a forked child, write what it returns (or how it failed) to
    ``report`` and end the child, whatever happens."""
    try:
        os.write(report, work().encode())
    except BaseException as exc:  # report anything to the parent
        os.write(report, f"child failed: {exc!r}".encode())
    finally:
        os._exit(0)


def _become(uid: int) -> None:
    """Drop root for user ``uid`` (gid the same, no groups), in a forked child."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _received(sock: socket.socket) -> int:
    """Bytes read from ``sock`` until its other end closes it (or the connection fails)."""
    received = 0
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            received += len(chunk)
    return received


def _outcome(read_end: int, pid: int, start: bytes = b"") -> str:
    """What a forked child wrote to its pipe (after ``start``), once it has ended."""
    chunks = [start]
    while chunk := os.read(read_end, 4096):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


class ListenerOfAnotherUser:
    """A forked process of user ``uid`` (gid the same, no groups) that listens at ``path``
    (its directory must let that user in) and takes one connection. Blocking: make it and
    call :meth:`outcome` in a worker thread."""

    def __init__(self, uid: int, path: Path) -> None:
        self._read_end, write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never return into the test runner
            os.close(self._read_end)
            _child(write_end, lambda: _listen_as(uid, path, write_end))
        os.close(write_end)
        ready = os.read(self._read_end, 4096)
        if ready != b"listening":
            raise RuntimeError(f"the listener of uid {uid} did not start: {self.outcome(ready)}")

    def outcome(self, start: bytes = b"") -> str:
        """``accepted, received <n> bytes`` (read until its client closed), ``accept: <error>``
        or ``child failed: <error>``; waits for the process to end."""
        return _outcome(self._read_end, self.pid, start)


def _listen_as(uid: int, path: Path, report: int) -> str:
    """The work of :class:`ListenerOfAnotherUser`'s child: writes ``listening`` once it
    listens, then takes one connection."""
    _become(uid)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(os.fspath(path))
    server.listen(1)  # SO_PEERCRED on a client's side names who called listen()
    os.write(report, b"listening")
    server.settimeout(5.0)
    try:
        conn, _ = server.accept()
    except OSError as exc:
        return f"accept: {exc!r}"
    conn.settimeout(5.0)
    return f"accepted, received {_received(conn)} bytes"


async def cancel_as_it_turns_readable(scope: anyio.CancelScope, peer: socket.socket,
                                      line: bytes) -> None:
    """Once the other end waits for the socket, send ``line`` from ``peer`` and cancel
    ``scope`` from a callback of the loop iteration in which the socket turns readable."""
    await anyio.sleep(0.05)
    peer.send(line)
    asyncio.get_running_loop().call_soon(scope.cancel)
    await anyio.sleep(0.05)
