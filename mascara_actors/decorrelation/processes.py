"""Running the patch workers: one per process (spawned), or in this process when alone.

The parent sends each worker a command (:mod:`.worker`) over a pipe and waits for all of
them, passing on their progress ticks. A worker that fails sends its error back: a
:class:`~mascara_actors.errors.StorageError` (a file it could not read or write, named;
an OSError is made one) stays a StorageError, another
:class:`~mascara_actors.errors.MascaraError` (bad input, named) becomes a
:class:`~mascara_actors.decorrelation.errors.DecorrelationError`, both with the worker's own
message; anything else is a bug and raised as RuntimeError; a worker that dies (killed, out
of memory) is said to have died.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import TypeVar

from mascara_actors.decorrelation.errors import DecorrelationError
from mascara_actors.decorrelation.worker import (
    Command,
    FinishedPatches,
    IngestSummary,
    IterationSums,
    PatchWorker,
    Tick,
    WorkerSetup,
)
from mascara_actors.errors import MascaraError, StorageError

__all__ = ["Workers"]

log = logging.getLogger(__name__)

_R = TypeVar("_R", IngestSummary, IterationSums, FinishedPatches)


def _worker_main(conn: Connection, setup: WorkerSetup) -> None:
    """A worker process: commands in, ticks and results out, until "stop" or EOF."""
    worker = PatchWorker(setup)
    conn.send(("ready", None))
    while True:
        try:
            command = conn.recv()
        except EOFError:
            return
        if command == "stop":
            return
        try:
            result = worker.run(command, tick=lambda: conn.send(("tick", None)))
            conn.send(("done", result))
        except BaseException as exc:
            log.debug("worker error: %s", traceback.format_exc())
            conn.send(_report(exc))


def _report(exc: BaseException) -> tuple[str, str]:
    """What a worker sends back for ``exc``: its kind and its message."""
    if isinstance(exc, StorageError):
        return "storage", str(exc)
    if isinstance(exc, MascaraError):
        return "input", str(exc)
    if isinstance(exc, OSError):
        # the worker turns its scratch files' errors into StorageError; any other file it
        # could not read or write is named here, so the command still ends with one line
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return "storage", (f"a calibration worker could not read or write {where}"
                           f"{exc.strerror or exc}; check that disk and run the command again")
    return "error", f"a calibration worker failed: {type(exc).__name__}: {exc}"


def _failure(kind: str, text: str) -> Exception:
    if kind == "storage":
        return StorageError(text)
    if kind == "input":
        return DecorrelationError(text)
    return RuntimeError(text)


class Workers:
    """One :class:`PatchWorker` per setup: in spawned processes, or here when only one."""

    def __init__(self, setups: Sequence[WorkerSetup]) -> None:
        self.local: PatchWorker | None = None
        self.procs: list[tuple[mp.process.BaseProcess, Connection]] = []
        if len(setups) == 1:
            self.local = PatchWorker(setups[0])
            return
        ctx = mp.get_context("spawn")
        for setup in setups:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, setup), daemon=True)
            proc.start()
            child.close()
            self.procs.append((proc, parent))
        try:
            for _, conn in self.procs:
                kind, payload = self._receive(conn)
                if kind != "ready":
                    raise _failure(kind, str(payload))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _receive(conn: Connection) -> tuple[str, object]:
        try:
            kind, payload = conn.recv()
        except EOFError:
            raise RuntimeError("a calibration worker died (killed, or out of memory?)") \
                from None
        return str(kind), payload

    def run(self, commands: Sequence[Command], result_type: type[_R], tick: Tick
            ) -> list[_R]:
        """Run ``commands[k]`` on worker k; their results, checked to be ``result_type``."""
        if self.local is not None:
            try:
                results: list[object] = [self.local.run(commands[0], tick)]
            except OSError as exc:  # as from a worker process: a StorageError naming the file
                raise StorageError(_report(exc)[1]) from exc
        else:
            results = self._run_remote(commands, tick)
        checked = [r for r in results if isinstance(r, result_type)]
        if len(checked) != len(results):
            raise RuntimeError(f"a calibration worker sent something else than "
                               f"{result_type.__name__}")
        return checked

    def _run_remote(self, commands: Sequence[Command], tick: Tick) -> list[object]:
        for (_, conn), command in zip(self.procs, commands, strict=True):
            conn.send(command)
        results: dict[int, object] = {}
        pending = {id(conn): n for n, (_, conn) in enumerate(self.procs)}
        conns = {id(conn): conn for _, conn in self.procs}
        while pending:
            for ready in wait([conns[k] for k in pending]):
                conn = conns[id(ready)]
                kind, payload = self._receive(conn)
                if kind == "tick":
                    tick()
                    continue
                n = pending.pop(id(conn))
                if kind != "done":
                    raise _failure(kind, str(payload))
                results[n] = payload
        return [results[n] for n in range(len(self.procs))]

    def close(self) -> None:
        """Stop the worker processes (terminated if they do not stop within 10 s)."""
        for _, conn in self.procs:
            with contextlib.suppress(OSError):
                conn.send("stop")
        for proc, conn in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            conn.close()
        self.procs = []
