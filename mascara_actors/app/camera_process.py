"""One camera's pipeline process under the station supervisor: started, heard, restarted.

:class:`CameraProcess` runs a camera's night as a process of its own (``mascara-actors live
--camera ID --supervisor-fd FD``), started by exec (never a bare fork: it inherits only its
end of the channel and its log file, no socket or lock of the supervisor), in a session of
its own (a terminal's Ctrl-C or hang-up never reaches it; the supervisor decides), with its
output appended to its log file. Over the channel (:mod:`~mascara_actors.app.camera_channel`)
it hears the night's events, which it applies to the camera's :class:`NightState` and hands
to ``publish``, and it forwards the operator's commands.

**Restarts.** A process that ends other than by finishing its night (exit 0, or exit 1
once its status said the night is over: the dawn sequence ran, a product is missing) or by
being asked to stop is restarted after a delay that doubles with each death in a row
(:class:`RestartPolicy`: 1, 2, 4 ... 60 s; a run of ``healthy_s`` or more starts the count
again). The restarted night resumes where the dead one stopped (the station's resume logic:
the raw frames on disk are reduced first, the sets done are skipped). Each death is a
warning event of the camera (published, applied, and appended to the night's event log so
that the summary tells of it); what is left of the dead process (its camera device, its
workers: the members of its process group) is killed before the restart. A failure of the
supervisor's own handling of a camera (a bug) is logged and stays with that camera: a line it
cannot take is skipped; anything worse kills and restarts that camera's process only.

**Stopping.** :meth:`CameraProcess.request_stop` sends SIGINT (the night stops for a
restart, saving what was measured); a second request sends SIGTERM (the process stops at
once); after ``stop_grace_s`` the process group is killed.
"""

# Over 500 lines: one process's life (start, hear, command, stop, restart) as methods of one
# object sharing its state.

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import anyio
import anyio.to_thread
from anyio.abc import ByteStream, Process, TaskGroup, UNIXSocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from mascara_actors.actors import summariser
from mascara_actors.app.camera_channel import (
    MAX_LINE_BYTES,
    CameraCommand,
    ChannelError,
    EventLine,
    ReplyLine,
    StatusLine,
    decode_camera_line,
    encode_command,
    finite,
)
from mascara_actors.control.client import STREAM_ENDED, ReplyWaiter, shut_down, within
from mascara_actors.errors import MascaraError
from mascara_actors.messages import Event, FrameFailed, FrameReducedEvent, WarningEvent
from mascara_actors.night_state import NightState
from mascara_actors.storage import event_log_path

__all__ = [
    "CameraCommandFailed",
    "CameraProcess",
    "CameraUnavailable",
    "ProcessState",
    "RestartPolicy",
    "describe_exit",
]

log = logging.getLogger(__name__)

ProcessState = Literal["starting", "running", "restarting", "stopping", "done", "stopped"]
"""Where a camera's process is: ``done`` (its night finished, exit 0) and ``stopped`` (asked
to stop) are final."""

_READ_AFTER_EXIT_S = 2.0
"""After the process exits, how long its last lines get to arrive, seconds."""

_EXIT_MEANINGS = {
    0: "the night is done",
    1: "the night ended early or incomplete",
    2: "a configuration or input error",
    130: "stopped by SIGINT",
    143: "stopped by SIGTERM",
}


class CameraUnavailable(MascaraError):
    """A command for a camera whose pipeline process cannot take it now."""


class CameraCommandFailed(MascaraError):
    """The camera's process answered a command with an error (its message)."""


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When a camera's process that died is started again."""

    first_s: float = 1.0
    """Delay before the first restart, seconds."""
    max_s: float = 60.0
    """Longest delay, seconds."""
    healthy_s: float = 300.0
    """A run at least this long was healthy: the next death waits ``first_s`` again."""

    def delay(self, deaths: int) -> float:
        """The delay after ``deaths`` deaths in a row (1, 2, 4 ... ``max_s`` seconds)."""
        return float(min(self.max_s, self.first_s * 2.0 ** max(0, deaths - 1)))


def describe_exit(code: int) -> str:
    """How a process ended, in words (``killed by SIGKILL``, ``exit status 1 (...)``)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    meaning = _EXIT_MEANINGS.get(code)
    return f"exit status {code}" + (f": {meaning}" if meaning else "")


class CameraProcess:
    """One camera's night as a process of its own; see the module docstring.

    Parameters
    ----------
    camera
        The camera's id (``LPN`` ...).
    argv
        The command line of the camera's process, given the descriptor number of its end of
        the channel.
    log_path
        The process's stdout and stderr are appended to it (a line marks each start).
    publish
        Takes each event of the camera (and the warning of each death) with the camera id.
    policy
        When to restart.
    env
        The environment of the process (default: the supervisor's).
    stop_grace_s
        After a stop request, seconds the process gets before its group is killed.
    command_timeout_s
        Seconds a command other than ``take_darks`` waits for its reply.
    """

    def __init__(
        self,
        camera: str,
        argv: Callable[[int], Sequence[str]],
        *,
        log_path: Path,
        publish: Callable[[Event, str], None],
        policy: RestartPolicy | None = None,
        env: Mapping[str, str] | None = None,
        stop_grace_s: float = 300.0,
        command_timeout_s: float = 30.0,
    ) -> None:
        self.camera = camera
        self.argv = argv
        self.log_path = Path(log_path)
        self.publish = publish
        self.policy = policy if policy is not None else RestartPolicy()
        self.env = dict(env) if env is not None else None
        self.stop_grace_s = stop_grace_s
        self.command_timeout_s = command_timeout_s
        self.state = NightState()
        """The camera's night as its events tell it, over all its processes tonight (a frame
        reduced again after a restart is counted once)."""
        self.status: dict[str, Any] = {}
        """The latest status line of its process (phase, link, night directory ...)."""
        self.process_state: ProcessState = "starting"
        self.pid: int | None = None
        self.starts = 0
        self.restarts = 0
        self.last_exit: str | None = None
        """How the latest process ended, in words."""
        self.paused = False
        """The operator paused this camera's reduction (re-applied after a restart)."""
        self._next_start: float | None = None
        self._stop = anyio.Event()
        self._stop_requests = 0
        self._process: Process | None = None
        self._channel: ByteStream | None = None
        self._send_lock = anyio.Lock()
        self._waiters: dict[int, ReplyWaiter[ReplyLine]] = {}
        self._ids = itertools.count(1)
        self._frames_seen: set[int] = set()

    # -- the operator's side -----------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The camera for the ``status`` command (JSON values; None where unknown)."""
        s = self.state
        errors = [p for p in s.problems if p[1] == "error"]
        next_in = None
        if self._next_start is not None:
            next_in = round(max(0.0, self._next_start - time.monotonic()), 1)
        return {
            "camera": self.camera,
            "process": {
                "state": self.process_state,
                "pid": self.pid,
                "starts": self.starts,
                "restarts": self.restarts,
                "last_exit": self.last_exit,
                "next_start_in_s": next_in,
                "log": str(self.log_path),
            },
            "phase": self._phase(next_in),
            "night": s.night or None,
            "night_dir": self.status.get("night_dir"),
            "lstseq": s.last_lstseq,
            "frames_expected": s.frames_expected,
            "frames_reduced": s.frames_reduced,
            "frames_failed": s.frames_failed,
            "frames_from_camera": self.status.get("frames_from_camera"),
            "sets_saved": s.sets_saved,
            "sets_binned": s.sets_binned,
            "stars": s.last_nstars,
            "stars_flagged": s.last_nflagged,
            "stars_measured": s.stars_measured,
            "residual_px": finite(s.astrometry_dr),
            "aflag": s.aflag,
            "latency_s": finite(s.last_latency_s),
            "paused": self.paused,
            "spooled": s.spooled,
            "queue_depths": dict(s.queue_depths),
            "link": {"answering": s.camera_answering, "detail": self.status.get("link")},
            "ccdtemp_c": self.status.get("ccdtemp_c"),
            "errors": len(errors),
            "warnings": s.warnings,
            "last_error": errors[-1][3] if errors else None,
            "fatal": s.fatal,
            "nightly_files": list(s.nightly_files),
            "calibration": s.calibration,
            "sets_calibrated": s.sets_calibrated,
        }

    def _phase(self, next_in: float | None) -> str:
        """What the camera does now, in words."""
        state = self.process_state
        phase = self.status.get("phase")
        if state in ("running", "stopping") and isinstance(phase, str):
            return phase if state == "running" else f"stopping ({phase})"
        if state == "done":
            return phase if isinstance(phase, str) else "night done"
        if state == "restarting":
            return f"restarting its pipeline in {next_in or 0:.0f} s ({self.last_exit})"
        if state == "starting":
            return "starting its pipeline"
        return f"{state} ({self.last_exit})" if self.last_exit else state

    async def command(self, cmd: CameraCommand) -> object:
        """Carry out ``cmd`` in the camera's process; its result.

        ``pause`` and ``resume`` while the process is away (restarting) are kept and applied
        when it is back. Raises :class:`CameraUnavailable` when the process cannot take the
        command, :class:`CameraCommandFailed` when it refuses it.
        """
        channel = self._channel
        if channel is None or self.process_state != "running":
            if cmd in ("pause", "resume") and self.process_state in ("starting", "restarting"):
                self.paused = cmd == "pause"
                return (
                    f"{cmd}d: camera {self.camera}'s pipeline is {self.process_state}; it "
                    f"will be {'paused' if self.paused else 'running'} when it is back"
                )
            raise CameraUnavailable(self._why_unavailable(cmd))
        request = next(self._ids)
        waiter = self._waiters[request] = ReplyWaiter[ReplyLine]()
        try:
            try:
                async with self._send_lock:
                    await channel.send(encode_command(request, cmd))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise CameraUnavailable(self._why_unavailable(cmd)) from None
            timeout = None if cmd == "take_darks" else self.command_timeout_s
            with anyio.move_on_after(timeout):
                await waiter.done.wait()
        finally:
            self._waiters.pop(request, None)
        reply = waiter.reply
        if reply is None:
            if waiter.done.is_set():
                raise CameraUnavailable(
                    f"camera {self.camera}'s pipeline process ended before it answered "
                    f"{cmd}; it restarts (see {self.log_path}); send the command again then"
                )
            raise CameraUnavailable(
                f"camera {self.camera}'s pipeline did not answer {cmd} within "
                f"{self.command_timeout_s:g} s; see {self.log_path}"
            )
        if not reply.ok:
            raise CameraCommandFailed(f"camera {self.camera}: {reply.error}")
        if cmd in ("pause", "resume"):
            self.paused = cmd == "pause"
        return reply.result

    def _why_unavailable(self, cmd: str) -> str:
        state = self.process_state
        if state == "restarting" and self._next_start is not None:
            when = max(0.0, self._next_start - time.monotonic())
            return (
                f"camera {self.camera}'s pipeline is restarting (its process {self.last_exit}; "
                f"next start in {when:.0f} s): send {cmd} again once it runs"
            )
        if state == "starting":
            return f"camera {self.camera}'s pipeline is starting: send {cmd} again once it runs"
        return f"camera {self.camera}'s pipeline {self.ended()}: nothing to {cmd}"

    def ended(self) -> str:
        """How the camera's pipeline ended (or is ending), in words."""
        return {
            "done": "has finished its night",
            "stopping": "is stopping",
        }.get(self.process_state, f"has {self.process_state}")

    def request_stop(self) -> None:
        """Stop the camera's night for a restart: SIGINT to its process (no more restarts);
        asked again, SIGTERM (stop at once)."""
        self._stop_requests += 1
        self._stop.set()
        if self.process_state in ("starting", "running"):
            self.process_state = "stopping"
        self._signal(signal.SIGINT if self._stop_requests == 1 else signal.SIGTERM)

    def _signal(self, signum: signal.Signals) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        log.info("camera %s: %s to its pipeline (pid %d)", self.camera, signum.name, process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)

    # -- the process ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the camera's night to its end, restarting its process as it dies, until the
        night is done or a stop is requested."""
        deaths = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                code = await self._run_once()
            except Exception:  # a bug of ours must not reach the other cameras
                log.exception("camera %s: the supervisor failed with its pipeline", self.camera)
                self.last_exit = "lost by the supervisor (a bug: see the station log)"
                code = -1
            ran = time.monotonic() - started
            if code == 0 or (code == 1 and self.status.get("night_over")):
                # exit 1 after the dawn sequence (a product missing): over, though incomplete;
                # a restart would only wait for the next night
                self.process_state = "done"
                log.info("camera %s: the night is %s", self.camera,
                         "done" if code == 0 else "over, incomplete (not restarted)")
                return
            if self._stop.is_set():
                break
            deaths = 1 if ran >= self.policy.healthy_s else deaths + 1
            delay = self.policy.delay(deaths)
            self.restarts += 1
            self.process_state = "restarting"
            self._next_start = time.monotonic() + delay
            await self._report_death(ran, delay)
            with anyio.move_on_after(delay):
                await self._stop.wait()
            self._next_start = None
        self.process_state = "stopped"
        log.info("camera %s: stopped (%s)", self.camera, self.last_exit or "before it started")

    async def _run_once(self) -> int:
        """Start the process, hear it until it exits; its exit status (negative: signal)."""
        self.process_state = "starting"
        self.starts += 1
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                process = await self._spawn(theirs.fileno())
            finally:
                theirs.close()
        except BaseException as exc:
            ours.close()
            if not isinstance(exc, OSError):
                raise
            self.last_exit = f"could not be started: {exc}"
            log.error("camera %s: its pipeline could not be started: %s", self.camera, exc)
            return 127
        self._process, self.pid = process, process.pid
        log.info(
            "camera %s: pipeline started, pid %d (log %s)", self.camera, process.pid, self.log_path
        )
        if self._stop.is_set():  # asked to stop while it started
            self._signal(signal.SIGINT)
        channel: UNIXSocketStream | None = None
        heard = anyio.Event()
        try:
            channel = self._channel = await UNIXSocketStream.from_socket(ours)
            # No cancellation reaches the reader: it ends when the channel does (the process
            # closed it, or it is shut down below). On asyncio a cancelled receive may meet
            # the channel's readiness in the same loop iteration, which the loop reports as
            # an error (see mascara_actors.control.client.shut_down).
            hearing = anyio.CancelScope(shield=True)
            async with anyio.create_task_group() as tg:
                tg.start_soon(within, hearing, self._hear, channel, heard, tg)
                tg.start_soon(self._kill_if_slow_to_stop)
                try:
                    code = await process.wait()
                    with anyio.move_on_after(_READ_AFTER_EXIT_S):
                        await heard.wait()
                finally:
                    # something it started still holds the channel, or the supervisor is
                    # being cancelled
                    if not heard.is_set():
                        shut_down(channel)
                        with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                            await heard.wait()
                        hearing.cancel()  # a reader the shutdown did not end (never seen)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                self._channel = None
                for waiter in self._waiters.values():
                    waiter.done.set()
                if channel is not None:
                    await channel.aclose()
                else:
                    ours.close()
                if process.returncode is None:  # the supervisor itself is being cancelled
                    self._kill_group(process.pid)
                    await process.wait()
                # What is left of the process (its camera device, its workers) is in its
                # process group, which outlives it while any member does (so its id cannot
                # be reused meanwhile).
                self._kill_group(process.pid)
                await process.aclose()
                self._process = None
        self.last_exit = describe_exit(code)
        log.log(
            logging.INFO if code == 0 or self._stop.is_set() else logging.WARNING,
            "camera %s: pipeline pid %d ended: %s",
            self.camera,
            process.pid,
            self.last_exit,
        )
        return code

    async def _spawn(self, fd: int) -> Process:
        argv = list(self.argv(fd))

        def open_log() -> IO[bytes]:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            logfile = self.log_path.open("ab")
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            logfile.write(
                f"==== {stamp} camera {self.camera}: pipeline start {self.starts} ====\n".encode()
            )
            logfile.flush()
            return logfile

        logfile = await anyio.to_thread.run_sync(open_log)
        try:
            return await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                pass_fds=(fd,),
                start_new_session=True,
                env=self.env,
            )
        finally:
            await anyio.to_thread.run_sync(logfile.close)

    @staticmethod
    def _kill_group(pgid: int) -> None:
        """SIGKILL to the process group ``pgid`` (the camera process's session) if any of it
        is left."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    async def _kill_if_slow_to_stop(self) -> None:
        await self._stop.wait()
        await anyio.sleep(self.stop_grace_s)
        process = self._process
        if process is not None and process.returncode is None:
            log.error(
                "camera %s: its pipeline (pid %d) did not stop within %g s: killed",
                self.camera,
                process.pid,
                self.stop_grace_s,
            )
            self._kill_group(process.pid)

    async def _pause_again(self) -> None:
        """The operator paused this camera before its process restarted: pause it again."""
        try:
            await self.command("pause")
        except MascaraError as exc:
            log.warning("camera %s: could not pause it again after its restart: %s",
                        self.camera, exc)

    async def _hear(self, channel: ByteStream, heard: anyio.Event, tg: TaskGroup) -> None:
        """Take the process's lines until it closes the channel. Its first status line says
        that it runs its night and takes commands."""
        lines = BufferedByteReceiveStream(channel)
        try:
            while True:
                line = await lines.receive_until(b"\n", MAX_LINE_BYTES)
                try:
                    self._take(decode_camera_line(line), tg)
                except ChannelError as exc:
                    log.error("camera %s: %s", self.camera, exc)
                except Exception:  # a bug: this line is lost, the camera is still heard
                    log.exception("camera %s: a line could not be taken: %r", self.camera,
                                  line[:200])
        except anyio.DelimiterNotFound:
            log.error("camera %s: a line over %d bytes; no longer heard until it restarts",
                      self.camera, MAX_LINE_BYTES)
        except STREAM_ENDED:
            pass
        finally:
            heard.set()

    def _take(self, item: EventLine | StatusLine | ReplyLine, tg: TaskGroup) -> None:
        """One line of the camera's process."""
        if isinstance(item, EventLine):
            if self._first_time(item.event):
                self.state.apply(item.event)
            self.publish(item.event, self.camera)
        elif isinstance(item, StatusLine):
            self.status = item.status
            if self.process_state == "starting":
                self.process_state = "running"
                if self.paused:
                    tg.start_soon(self._pause_again)
        else:
            waiter = self._waiters.get(item.id)
            if waiter is not None:
                waiter.reply = item
                waiter.done.set()

    def _log_tail(self) -> str:
        """The last line the dead process wrote to its log (blocking: run it in a thread),
        "" when it wrote nothing since it started."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 4096))
                tail = fh.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        lines = [line.strip() for line in tail if line.strip()]
        if not lines or lines[-1].startswith("==== "):  # only its start line
            return ""
        return lines[-1][:300]

    def _first_time(self, event: Event) -> bool:
        """False for a frame already counted: after a restart the frames of the set that was
        open are reduced again (same results); the camera's state counts each frame once."""
        if isinstance(event, FrameReducedEvent | FrameFailed):
            if event.lstseq in self._frames_seen:
                return False
            self._frames_seen.add(event.lstseq)
        return True

    async def _report_death(self, ran_s: float, delay_s: float) -> None:
        """A warning event of the camera: published, applied, and in the night's event log."""
        last_words = await anyio.to_thread.run_sync(self._log_tail)
        message = (
            f"camera {self.camera}'s pipeline (pid {self.pid}) {self.last_exit} after "
            f"{ran_s:.0f} s; restart {self.restarts} in {delay_s:g} s, the night resumes where "
            f"it stopped (log: {self.log_path}"
            + (f", ending: {last_words!r})" if last_words else ")")
        )
        log.warning("%s", message)
        event = WarningEvent(source="station", message=message)
        night_dir = self.status.get("night_dir")
        if isinstance(night_dir, str):
            await summariser.record(
                [event], log_path=event_log_path(night_dir), state=self.state
            )
        else:
            self.state.apply(event)
        self.publish(event, self.camera)

