"""Running an archive's camera-nights on Dask distributed: one task per camera-night.

:func:`archive_client` gives a client of a ``LocalCluster`` on this machine (one worker
process per core, one thread each: a night's reduction is one core's work) or of the
scheduler at an address. The local cluster speaks TLS with a certificate made for this run
and held in memory, so only this process and its workers can join it; its HTTP listeners
serve nothing unless the dashboard is asked for (which any user of the machine can read).
What this software logs on the workers is logged by the command (Dask's log forwarding).

:class:`ArchiveRun` submits the nights, follows them (camera-nights done, frames reduced
from each night's event log), writes the manifest as each night ends, and stops: the first
SIGINT or SIGTERM asks every running night to finish its current set (the stop file), the
second abandons them (their complete sets are on disk, nothing is half-written).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import dask
from distributed import Client, Future, LocalCluster, Worker, WorkerPlugin, as_completed
from distributed.comm import registry
from distributed.comm.addressing import parse_address
from distributed.comm.core import connect
from distributed.scheduler import KilledWorker
from distributed.security import Security

from mascara_actors.app.archive.manifest import manifest_path, write_manifest
from mascara_actors.app.archive.scan import CameraNight
from mascara_actors.app.archive.scan_memory import archive_state_dir
from mascara_actors.app.archive.task import NightOutcome, NightTask
from mascara_actors.errors import ConfigError, StorageError
from mascara_actors.numpy_dispatch import VARIABLE, dispatch_environment
from mascara_actors.storage import event_log_path
from mascara_actors.storage.provenance import SOFTWARE

__all__ = [
    "SCHEDULER_TIMEOUT_S",
    "ArchiveRun",
    "Progress",
    "archive_client",
    "check_scheduler",
]

log = logging.getLogger(__name__)

SCHEDULER_TIMEOUT_S = 3.0
"""How long a scheduler address has to answer: the connection and Dask's handshake."""

_POLL_S = 0.5
_ONE_ARENA = {"MALLOC_ARENA_MAX": "1"}
"""The environment a worker process must start with to keep the memory its nights free.

A Dask task runs in a thread of the worker's pool, which glibc gives an arena of its own;
such an arena holds blocks of tens of MB in heaps of its own that it unmaps as soon as they
are empty, so every frame paid for fresh pages again (a fifth of a night's CPU in the
kernel), whatever :func:`~mascara_actors.actors.process_memory.prepare_process_memory`
says later. With one arena the task thread uses the process heap, which that function
keeps. It has to be in the environment when the process starts: glibc reads it once."""
_FRAME_EVENTS = (b'"kind":"FrameReducedEvent"', b'"kind":"FrameFailed"')


@contextmanager
def archive_client(
    scheduler: str | None = None,
    *,
    workers: int | None = None,
    retries: int = 2,
    dashboard: bool = False,
) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, or of a new local cluster of ``workers``
    processes (default: one per core); checks that every worker runs this software.

    Raises
    ------
    ConfigError
        No Dask scheduler answers at ``scheduler`` within :data:`SCHEDULER_TIMEOUT_S` (a
        closed port, or one that answers but not in Dask's protocol), the address is of a
        scheme Dask does not speak (the dashboard's ``http://``), or a worker runs another
        version of the software.
    """
    # Importing distributed sets its loggers to INFO, and with the command's handler already
    # on the root logger its scheduler's chatter (a dozen lines a run) reached the terminal
    # whatever -v said: the command's level decides here too.
    level = logging.getLogger().getEffectiveLevel()
    logging.getLogger("distributed").setLevel(level)
    if scheduler is not None:
        with _scheduler_client(scheduler) as client:
            _check_workers(client)
            _warn_of_the_schedulers_retries(client, scheduler, retries)
            _forward_logs(client, level)
            yield client
        return
    security = Security.temporary()
    settings: dict[str, Any] = {
        "distributed.scheduler.allowed-failures": retries,
        "distributed.nanny.pre-spawn-environ": {
            **dask.config.get("distributed.nanny.pre-spawn-environ"), **_ONE_ARENA,
            **dispatch_environment()},
    }
    if not dashboard:
        # The workers' statistical profiler samples every thread 100 times a second for the
        # dashboard's Profile page: 2 % of a night's CPU, for a page nobody can open.
        settings |= {"distributed.scheduler.http.routes": [],
                     "distributed.worker.http.routes": [],
                     "distributed.worker.profile.enabled": False}
    # The workers ignore the terminal's Ctrl-C (sent to the whole process group): this
    # process alone decides how a run stops. Ignored signals stay ignored in a child.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with dask.config.set(settings):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                security=security,
                dashboard_address="127.0.0.1:0" if dashboard else None,
                # the scheduler listens for HTTP even without a dashboard: on loopback, on a
                # free port (not Dask's 8787, which another run may hold)
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.ERROR,
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    with cluster, Client(cluster, security=security, set_as_default=False) as client:
        # What goes wrong in a worker reaches the run as its night's outcome. The workers'
        # own log added, at the end of some runs, the traceback of a heartbeat that raced
        # the scheduler's close. With -v they log as the command does.
        client.register_plugin(
            _WorkerLogLevel(logging.CRITICAL if level >= logging.WARNING else level, level))
        _check_workers(client)
        _forward_logs(client, level)
        yield client


def check_scheduler(scheduler: str) -> Security:
    """The security settings to reach the Dask scheduler at ``scheduler`` (Dask's TLS
    settings, ``~/.config/dask``), once it has answered Dask's handshake within
    :data:`SCHEDULER_TIMEOUT_S`; :class:`ConfigError` saying what to do otherwise. The
    command asks before its scan, which takes minutes on an archive of years."""
    scheme = parse_address(scheduler)[0]
    try:
        registry.get_backend(scheme)
    except ValueError:
        raise ConfigError(_not_dask(scheduler, scheme)) from None
    security = Security()
    try:
        # Client waits for the scheduler's handshake for ever: a port that answers but not
        # as Dask does (a dashboard, another service) hung the command without a word.
        asyncio.run(asyncio.wait_for(_handshake(scheduler, security), SCHEDULER_TIMEOUT_S))
    except (OSError, TimeoutError, ValueError) as exc:  # ValueError: no port in the address
        raise _no_scheduler(scheduler, exc) from None
    return security


def _scheduler_client(scheduler: str) -> Client:
    """A client of the scheduler at ``scheduler``, once it has answered Dask's handshake."""
    security = check_scheduler(scheduler)
    try:
        return Client(scheduler, security=security, timeout=SCHEDULER_TIMEOUT_S,
                      set_as_default=False)
    except (OSError, TimeoutError) as exc:  # gone since its handshake
        raise _no_scheduler(scheduler, exc) from None


def _no_scheduler(scheduler: str, exc: Exception) -> ConfigError:
    why = str(exc) or "no reply in Dask's protocol"  # the deadline's TimeoutError says none
    return ConfigError(
        f"no Dask scheduler answers at {scheduler} within {SCHEDULER_TIMEOUT_S:.0f} s "
        f"({why}): start one with `dask scheduler`, its workers with `dask worker "
        "ADDRESS`, and pass the address it prints (tcp://HOST:8786); leave --scheduler "
        "out to run on this machine"
    )


async def _handshake(address: str, security: Security) -> None:
    """Connect to ``address`` and exchange Dask's handshake, then hang up."""
    comm = await connect(address, timeout=SCHEDULER_TIMEOUT_S,
                         **security.get_connection_args("client"))
    comm.abort()


def _not_dask(address: str, scheme: str) -> str:
    """Why ``address``, of a scheme Dask does not speak, is no scheduler's."""
    if scheme in ("http", "https"):
        what = f"{scheme}:// is a web page's address (the dashboard's)"
    else:
        what = f"Dask does not speak {scheme}://"
    return (f"--scheduler {address}: {what}; give the scheduler's, tcp://HOST:8786 as "
            "`dask scheduler` prints it")


_OUR_LOGGERS = ("mascara_actors", "hw")


def _forward_logs(client: Client, level: int) -> None:
    """What the nights log on the workers, from ``level`` up, is logged by this command, as
    it logs its own lines (above its progress bar), not on the workers' stderr: a remote
    worker's is read by nobody, and a local one's lines broke through the bar."""
    for name in _OUR_LOGGERS:
        client.forward_logging(name, level=level)


class _WorkerLogLevel(WorkerPlugin):
    """The level of Dask's loggers and of this software's in each worker process of the
    local cluster, kept by a worker that restarts (``silence_logs`` reaches only the nanny's
    logger there)."""

    name = "mascara-actors-log-level"

    def __init__(self, dask_level: int, level: int) -> None:
        self.dask_level = dask_level
        self.level = level

    def setup(self, worker: Worker) -> None:
        logging.getLogger("distributed").setLevel(self.dask_level)
        for name in _OUR_LOGGERS:
            logging.getLogger(name).setLevel(self.level)


def _warn_of_the_schedulers_retries(client: Client, scheduler: str, retries: int) -> None:
    """Say so when the scheduler at ``scheduler`` tries a task whose worker died another
    number of times than ``retries``."""
    # Its distributed.scheduler.allowed-failures decides, for every client of it, and a
    # client cannot change it. Retrying here instead (resubmitting a night whose worker
    # died) would not replace it but multiply it: (allowed + 1) x (retries + 1) tries. So
    # the run says what the scheduler does, here and in the manifest (_outcome). Asked
    # with dask's own function: the scheduler's machine need not have this package.
    allowed = int(client.run_on_scheduler(dask.config.get,
                                          "distributed.scheduler.allowed-failures"))
    if allowed != retries:
        log.warning(
            "the scheduler at %s tries a night whose worker dies %d more times, not --retries "
            "%d (its distributed.scheduler.allowed-failures, which a client cannot change): "
            "start `dask scheduler` with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=%d in "
            "its environment for that", scheduler, allowed, retries, retries)


def _worker_setup() -> tuple[str, dict[str, str]]:
    """What :func:`_check_workers` asks each worker: its software, and the settings its
    environment lacks (:data:`_ONE_ARENA`; numpy's fast sort, on a CPU that needs it)."""
    missing = {k: v for k, v in _ONE_ARENA.items() if os.environ.get(k) != v}
    return SOFTWARE, missing | dispatch_environment()


_WHY_SETTING = {
    **dict.fromkeys(_ONE_ARENA, "fresh memory for every frame"),
    VARIABLE: "numpy's AVX-512 sort is slow on their CPU, AMD Zen 4; and their products differ "
              "in the last bits from a `--replay`'s",
}


def _check_workers(client: Client) -> None:
    setups: dict[str, tuple[str, object]] = client.run(_worker_setup)
    # A worker of another release may answer in another form (a bool before December
    # 2026): its settings are then unknown, and the version check below refuses it.
    lacks = {addr: missing for addr, (_, missing) in setups.items() if isinstance(missing, dict)}
    for name, why in _WHY_SETTING.items():
        lacking = sorted(addr for addr, missing in lacks.items() if name in missing)
        if lacking:
            setting = f"{name}={lacks[lacking[0]][name]}"
            log.warning(
                "%d of %d workers (%s) were started without %s in their environment: their "
                "nights run slower (%s); start them as `%s dask worker ADDRESS`",
                len(lacking), len(setups), ", ".join(lacking), setting, why, setting)
    other = {addr: v for addr, (v, _) in setups.items() if v != SOFTWARE}
    if other:
        listed = ", ".join(f"{addr} runs {v}" for addr, v in sorted(other.items()))
        raise ConfigError(
            f"workers run another version of the software ({listed}); this is {SOFTWARE}: "
            "install the same version on every worker, or their nights would mix versions"
        )


@dataclass(slots=True)
class Progress:
    """What the run has done so far (read by the progress bar)."""

    nights: int
    frames: int
    nights_done: int = 0
    frames_done: int = 0
    """Frames reduced or failed by this run, from the nights' event logs."""
    stopping: bool = False


class _FrameCounter:
    """Frames reduced in this run, counted from the new lines of each night's event log."""

    def __init__(self, out: Path, nights: Sequence[CameraNight]) -> None:
        self._logs = [event_log_path(out / n.key) for n in nights]
        self._offsets = [self._size(p) for p in self._logs]
        self.count = 0

    @staticmethod
    def _size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    def poll(self, finished: set[int], *, limit: int | None = None) -> int:
        """The count, after reading what the first ``limit`` unfinished nights (in the order
        they were submitted, roughly the order they run in) logged since the last poll."""
        running = [i for i in range(len(self._logs)) if i not in finished][:limit]
        for i in running:
            path = self._logs[i]
            if self._size(path) <= self._offsets[i]:
                continue
            with path.open("rb") as f:
                f.seek(self._offsets[i])
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1  # a line being written is counted next time
            self._offsets[i] += end
            self.count += sum(chunk[:end].count(e) for e in _FRAME_EVENTS)
        return self.count


class ArchiveRun:
    """One run over the chosen camera-nights of an archive into ``out`` (``thorough``:
    every product of the complete nights is hashed to verify them).

    The longest nights (most science frames in the archive) are submitted first, those of
    equal length by date and camera: a run in date order could leave one long night to the
    end, its worker busy for half an hour while the others wait idle; longest first, the run
    ends on short nights. (Submission order, not a Dask priority: on a shared scheduler this
    run's nights do not jump ahead of other clients' work.)

    When the manifest cannot be written (a full output disk, where the nights' products
    cannot be written either), the run stops as at a first Ctrl-C: running nights finish
    their current set, the others do not begin; :attr:`manifest_failure` says why. A stop
    that cannot reach the nights (the disk takes no stop file either), or a signal while
    stopping, abandons them instead.
    """

    def __init__(
        self,
        nights: Sequence[CameraNight],
        *,
        root: Path,
        out: Path,
        config_dir: Path,
        command: Sequence[str],
        retries: int = 2,
        thorough: bool = False,
    ) -> None:
        self.nights = tuple(sorted(nights, key=lambda n: (-n.science, n.night, n.camera_id)))
        self.out = out
        self.retries = retries
        started = datetime.now(UTC)
        self.manifest = manifest_path(out, started)
        self.run_id = uuid.uuid4().hex[:8]
        self.stop_file = archive_state_dir(out) / f"stop-{self.run_id}"
        # absolute: the workers of a cluster run in directories of their own
        self._tasks = [
            NightTask(n.absolute(), out.absolute(), config_dir.absolute(), tuple(command),
                      self.stop_file.absolute(), root.absolute(), thorough)
            for n in self.nights
        ]
        self.progress = Progress(nights=len(nights), frames=sum(n.science for n in nights))
        self.abandoned: str | None = None
        """Why the running nights were abandoned (not waited for); None when they were not."""
        self.stopped_by: signal.Signals | None = None
        """The signal that stopped the run (SIGINT or SIGTERM); None when none did."""
        self.manifest_failure: Exception | None = None
        """Why the manifest could not be written, the first time (which stopped the run)."""
        self.manifest_error: Exception | None = None
        """Why the manifest's latest version could not be written; None once it was."""

    def run(self, client: Client, on_progress: Callable[[Progress], None]) -> list[NightOutcome]:
        """Reduce every night on ``client``'s cluster; returns an outcome per night (nights
        abandoned are ``failed`` with the reason: :attr:`abandoned`)."""
        self.stop_file.parent.mkdir(parents=True, exist_ok=True)
        self.manifest.parent.mkdir(parents=True, exist_ok=True)
        counter = _FrameCounter(self.out, self.nights)
        futures: dict[Future[NightOutcome], NightTask] = {
            client.submit(
                _reduce_on_worker,
                task,
                key=f"night-{task.night.key}-{self.run_id}",
                retries=self.retries,
                pure=False,
            ): task
            for task in self._tasks
        }
        done: dict[str, NightOutcome] = {}
        finished: set[int] = set()
        index = {t.night.key: i for i, t in enumerate(self._tasks)}
        pending = as_completed(futures, loop=client.loop)
        workers = max(len(client.scheduler_info()["workers"]), 1)
        with self._signal_handlers():
            while not pending.is_empty() and self.abandoned is None:
                batch = pending.next_batch(block=False)
                # read the logs before the nights just ended leave the poll: their last lines
                self.progress.frames_done = counter.poll(finished, limit=4 * workers)
                for future in batch:
                    outcome = self._outcome(future, futures[future])
                    done[outcome.key] = outcome
                    finished.add(index[outcome.key])
                if batch:
                    self._save_manifest(done)
                self.progress.nights_done = len(done)
                on_progress(self.progress)
                if not pending.is_empty():
                    time.sleep(_POLL_S)
        if self.abandoned is not None:
            client.cancel(list(futures))
            for task in self._tasks:
                if task.night.key not in done:
                    done[task.night.key] = _abandoned(task, self.abandoned)
            self._save_manifest(done)
        self.progress.frames_done = counter.poll(set())
        self.stop_file.unlink(missing_ok=True)
        return sorted(done.values(), key=lambda o: (o.night, o.camera))

    def _save_manifest(self, done: dict[str, NightOutcome]) -> None:
        """Write the manifest; when it cannot be, stop the run (once) and keep the error."""
        try:
            write_manifest(self.manifest, done.values())
        except (StorageError, OSError) as exc:
            if self.manifest_failure is None:
                log.error("the manifest cannot be written (%s): the run stops", exc)
                self.manifest_failure = exc
                if not self.progress.stopping:
                    self._ask_stop()
            self.manifest_error = exc
        else:
            self.manifest_error = None

    def _ask_stop(self) -> None:
        """Running nights finish their current set and the others do not begin (the stop
        file); when the output disk takes no stop file, they are abandoned."""
        self.progress.stopping = True
        try:
            self.stop_file.touch()
        except OSError:
            self.abandoned = "abandoned: the output disk took no stop file"

    @contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        def handler(signum: int, _frame: FrameType | None) -> None:
            if self.progress.stopping:  # a second signal, or one after the manifest failed
                self.abandoned = "abandoned by a signal while the run was stopping"
            else:
                self.stopped_by = signal.Signals(signum)
                self._ask_stop()

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _outcome(self, future: Future[NightOutcome], task: NightTask) -> NightOutcome:
        """The night's outcome; a task that kept failing (its worker died, an error) too."""
        n = task.night
        if future.status == "finished":
            result: NightOutcome = future.result()
            return result
        try:
            exc = future.exception()
        except Exception as err:  # a cancelled future raises its cancellation
            exc = err
        # A night whose workers died was tried again as often as the scheduler allows (a
        # remote one's setting, not --retries); one that raised, --retries times.
        retries = (f"{exc.allowed_failures} retries: the scheduler's allowed-failures"
                   if isinstance(exc, KilledWorker) else f"{self.retries} retries")
        return NightOutcome(
            night=n.night,
            camera=n.camera_id,
            status="failed",
            frames=n.science,
            error=f"{type(exc).__name__}: {exc} (after {retries})",
        )


def _reduce_on_worker(task: NightTask) -> NightOutcome:
    """The task Dask runs: :func:`~mascara_actors.app.archive.night.reduce_camera_night`."""
    # Imported where the night runs: this client then starts without the pipeline (0.8 s).
    from mascara_actors.actors.process_memory import prepare_process_memory
    from mascara_actors.app.archive.night import reduce_camera_night

    # Here, not in the LocalCluster's worker environment: the workers a user starts with
    # `dask worker` reduce nights too. Without it, 11-13 % of a night's wall time went to
    # the page faults of fresh memory for every frame's arrays. Its allocator part holds
    # for this thread only when the worker started with one arena (_ONE_ARENA).
    prepare_process_memory()
    return reduce_camera_night(task)


def _abandoned(task: NightTask, why: str) -> NightOutcome:
    return NightOutcome(
        night=task.night.night,
        camera=task.night.camera_id,
        status="failed",
        frames=task.night.science,
        error=f"{why}: its complete sets are on disk; run the same command again to finish it",
    )
