"""Worker processes for the CPU-heavy jobs, deaf to the terminal's signals.

The reducer and the binner each run their jobs in one :class:`Worker`: by default a child
process fed over its stdin/stdout pipes (length-prefixed pickles of ``(function, args)``,
in memory only, never on disk), so the event loop stays free.

Why not ``anyio.to_process``: its workers install Python's SIGINT handler at start-up and
ignore it only once a job says so, so a Ctrl-C at the terminal (sent to the whole process
group) or systemd's SIGTERM (sent to every process of the service) killed a worker in the
middle of a binning job, and the night ended in a traceback. Here the child's very first
instruction ignores SIGINT and SIGTERM (:data:`_BOOTSTRAP`); the supervisor alone handles
signals, finishes the jobs in hand and closes the workers' pipes, on which they exit. The
child's stderr goes to ``/dev/null`` for the same reason: nothing it prints can reach the
operator's terminal. SIGKILL still reaches it (the process group dies as a whole).

A job that kills its process (out of memory, a crash in a C library) is run once more on a
fresh process; a second death raises :class:`anyio.BrokenWorkerProcess` to the caller.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar, cast

import anyio
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import ByteReceiveStream, ByteSendStream, Process
from anyio.streams.buffered import BufferedByteReceiveStream

from mascara_actors.actors.process_memory import prepare_process_memory

__all__ = ["WORKER_MODES", "Worker", "failure_reason", "resolve", "serve"]

log = logging.getLogger(__name__)

R = TypeVar("R")

WORKER_MODES = ("process", "thread", "inline")
"""Where a :class:`Worker` runs its jobs: ``process`` (the default: one child process, the
event loop stays free), ``thread`` (a thread of this process; debugging) or ``inline`` (on
the event loop itself, blocking it: only for tests on a virtual clock, where the work must
take no virtual time)."""

_HEADER = struct.Struct("<cQ")  # status byte (R: return, E: exception), payload length

# The child's first instructions: ignore the signals, then serve. Nothing is imported before
# the signals are ignored, so no window is left in which a Ctrl-C could kill a fresh worker.
_BOOTSTRAP = (
    "import signal; "
    "signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "from mascara_actors.actors.worker import serve; serve()"
)


def resolve(job: Callable[..., R] | str) -> Callable[..., R]:
    """The function a job names: itself, or ``"module:function"`` imported."""
    if not isinstance(job, str):
        return job
    module, _, name = job.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def serve(stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
    """The child's loop: read a job, run it, write its result; return at end of input."""
    prepare_process_memory()
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    # Jobs that print must not corrupt the replies.
    sys.stdout = open("/dev/null", "w")  # noqa: SIM115 - lives as long as the process
    while True:
        head = stdin.read(8)
        if len(head) < 8:
            return  # the supervisor closed the pipe (or died): exit
        (length,) = struct.unpack("<Q", head)
        job, args = pickle.loads(stdin.read(length))
        try:
            result = resolve(job)(*args)
            status, payload = b"R", pickle.dumps(result, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            try:
                status, payload = b"E", pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
            except Exception:  # an exception that does not pickle: send its text
                text = RuntimeError(f"{type(exc).__name__}: {exc}")
                status, payload = b"E", pickle.dumps(text, pickle.HIGHEST_PROTOCOL)
        stdout.write(_HEADER.pack(status, len(payload)) + payload)
        stdout.flush()


def failure_reason(exc: BaseException) -> str:
    """What went wrong with a job, in one line for the operator."""
    from mascara_actors.errors import MascaraError

    if isinstance(exc, MascaraError):
        return str(exc)
    if isinstance(exc, anyio.BrokenWorkerProcess):
        return "the worker process died twice on this job"
    return f"{type(exc).__name__}: {exc}"


class Worker:
    """Runs jobs one at a time, in a child process by default (see the module docstring).

    Parameters
    ----------
    name
        What the jobs are for (``reducer``, ``binner``), for log messages.
    mode
        One of :data:`WORKER_MODES`.

    Attributes
    ----------
    restarts
        Child processes that died during a job and were replaced (total).
    """

    def __init__(self, name: str, *, mode: str = "process") -> None:
        if mode not in WORKER_MODES:
            raise ValueError(f"mode must be one of {WORKER_MODES}, got {mode!r}")
        self.name = name
        self.mode = mode
        self.restarts = 0
        self._lock = anyio.Lock()
        self._process: Process | None = None
        self._stdout: BufferedByteReceiveStream | None = None

    async def run(self, fn: Callable[..., R] | str, *args: Any) -> R:
        """``fn(*args)`` in the worker; its exception is raised here. ``fn`` may be named
        ``"module:function"``, so that only the worker imports its module.

        Raises
        ------
        anyio.BrokenWorkerProcess
            The child process died twice on this job.
        """
        if self.mode == "inline":
            await anyio.lowlevel.checkpoint()
            return resolve(fn)(*args)
        if self.mode == "thread":
            async with self._lock:
                return await anyio.to_thread.run_sync(resolve(fn), *args)
        request = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        async with self._lock:
            try:
                return cast(R, await self._exchange(request))
            except anyio.BrokenWorkerProcess:
                # The process died under the job: one more try on a fresh one; a job that
                # kills it again fails alone.
                self.restarts += 1
                log.warning(
                    "%s worker process died; starting a new one (restart %d)",
                    self.name,
                    self.restarts,
                )
                return cast(R, await self._exchange(request))

    async def warm_up(self, fn: Callable[..., Any] | str, *args: Any) -> None:
        """Start the process and run ``fn(*args)`` in it ahead of the real jobs (building
        a session, say), so the first job does not wait for it. Best effort: a failure
        is left for the first real job to meet; nothing is retried or counted."""
        if self.mode != "process":
            return
        request = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        async with self._lock:
            try:
                await self._exchange(request)
            except Exception as exc:
                log.debug("%s worker warm-up failed: %s", self.name, exc)

    async def _exchange(self, request: bytes) -> Any:
        if self._process is None or self._process.returncode is not None:
            await self._start()
        assert self._process is not None
        assert self._stdout is not None
        stdin: ByteSendStream = self._process.stdin  # type: ignore[assignment]
        try:
            await stdin.send(struct.pack("<Q", len(request)) + request)
            status, length = _HEADER.unpack(await self._stdout.receive_exactly(_HEADER.size))
            payload = await self._stdout.receive_exactly(length)
        except BaseException as exc:
            # Cancelled mid-job, or the child died: this process is of no further use.
            await self._kill()
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise
            raise anyio.BrokenWorkerProcess(f"the {self.name} worker process died") from exc
        result = pickle.loads(payload)
        if status == b"E":
            raise result
        return result

    async def _start(self) -> None:
        self._process = await anyio.open_process(
            # the name only labels the process (ps, /proc/PID/cmdline)
            [sys.executable, "-c", _BOOTSTRAP, f"mascara-actors-{self.name}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        stdout: ByteReceiveStream = self._process.stdout  # type: ignore[assignment]
        self._stdout = BufferedByteReceiveStream(stdout)

    async def _kill(self) -> None:
        process, self._process, self._stdout = self._process, None, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.aclose()

    async def aclose(self) -> None:
        """Close the child's input (it exits after the job in hand) and wait for it."""
        process, self._process, self._stdout = self._process, None, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.stdin is not None:
                await process.stdin.aclose()
            with anyio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
            await process.aclose()

    async def __aenter__(self) -> Worker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
