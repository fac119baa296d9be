"""The station supervisor: every camera's night, one process each, under one supervisor
with one control socket.

::

    supervisor = StationSupervisor(out_dir, {"LPN": argv_of_lpn, "LPE": argv_of_lpe})
    await supervisor.run()      # until every night is done or the station is stopped

Each camera's night runs in a process of its own (:class:`~.camera_process.CameraProcess`:
``mascara-actors live --camera ID --supervisor-fd FD``), so the cores are shared out and a
camera whose pipeline dies is restarted, with backoff, without the others noticing. The
events of every camera come to the supervisor over each process's channel; it keeps each
camera's :class:`~mascara_actors.night_state.NightState` and publishes the events on the
control socket (:mod:`mascara_actors.control`, ``docs/control-socket.md``), whose commands
it carries out (:class:`StationSupervisor` is the socket's ``ControlHandler``).

Its state directory is ``OUT/state/station/`` (mode 0700): ``control.sock``,
``station.lock`` (held while it runs: a second station on the same output directory is
refused with :class:`StationInUse`), and one log per camera process (``LPN.log`` ...).

With ``handle_signals`` (the ``station`` command) SIGHUP is ignored (the station outlives
its terminal; so do the camera processes, which run in sessions of their own), and the first
SIGINT or SIGTERM stops every camera's night for a restart (what was measured is saved;
running the station again resumes the nights), a second one stops them at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from mascara_actors.app.camera_channel import CameraCommand
from mascara_actors.app.camera_process import CameraProcess, CameraUnavailable, RestartPolicy
from mascara_actors.control import ControlServer, UnknownCamera, owner_only_directory
from mascara_actors.errors import MascaraError
from mascara_actors.messages import Event

__all__ = ["StationInUse", "StationLock", "StationSupervisor", "station_state_dir"]

log = logging.getLogger(__name__)


def station_state_dir(out_dir: Path) -> Path:
    """The supervisor's state directory for the output directory ``out_dir``."""
    return Path(out_dir) / "state" / "station"


class StationInUse(MascaraError):
    """Another station already runs on this output directory."""


class StationLock:
    """``station.lock`` in the state directory: held (``flock``) while a station runs.

    The kernel drops it when the holder dies, however it dies. The holder writes
    ``pid@host`` into it, so that a refused second station can say who holds it.
    """

    def __init__(self, state_dir: Path, *, out_dir: Path) -> None:
        self.path = Path(state_dir) / "station.lock"
        self.out_dir = Path(out_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (blocking file work: call it in a worker thread); StationInUse when
        another station holds it, ControlError when the state directory is a symbolic link
        or not this user's (the control socket's own check)."""
        owner_only_directory(self.path.parent)  # before the lock file is opened in it
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StationInUse(
                f"another station runs on {self.out_dir} (process {holder} holds "
                f"{self.path}): stop it first (the stop command on its control socket "
                f"{self.path.with_name('control.sock')}, or SIGTERM), or give this one "
                "another --out"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class StationSupervisor:
    """The station: one process per camera, one control socket; see the module docstring.

    Parameters
    ----------
    out_dir
        The output directory the cameras' nights go to (``OUT/{night}{SITE}{CAM}/``); the
        supervisor's state directory is ``OUT/state/station/``.
    cameras
        Camera id -> the command line of its process, given the descriptor number of its
        end of the channel (see :class:`~.camera_process.CameraProcess`).
    site
        The site's name, for the status.
    policy, env, stop_grace_s
        As for :class:`~.camera_process.CameraProcess`.
    handle_signals
        Ignore SIGHUP; stop on SIGINT and SIGTERM (main thread only).
    """

    def __init__(
        self,
        out_dir: Path,
        cameras: Mapping[str, Callable[[int], Sequence[str]]],
        *,
        site: str = "",
        policy: RestartPolicy | None = None,
        env: Mapping[str, str] | None = None,
        stop_grace_s: float = 300.0,
        handle_signals: bool = False,
    ) -> None:
        if not cameras:
            raise ValueError("a station needs at least one camera")
        self.out_dir = Path(out_dir).absolute()
        self.state_dir = station_state_dir(self.out_dir)
        self.socket_path = self.state_dir / "control.sock"
        self.site = site
        self.handle_signals = handle_signals
        self.cameras = {
            camera: CameraProcess(
                camera,
                argv,
                log_path=self.state_dir / f"{camera}.log",
                publish=self._publish,
                policy=policy,
                env=env,
                stop_grace_s=stop_grace_s,
            )
            for camera, argv in cameras.items()
        }
        self.stopped_by: str | None = None
        """What stopped the station (``SIGINT``, ``SIGTERM``, ``the stop command``), if
        anything did."""
        self.started: float | None = None
        self.ready = anyio.Event()
        """Set once the control socket listens and the cameras' processes are starting."""
        self._server: ControlServer | None = None

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every camera's night until each is done or stopped.

        Raises
        ------
        StationInUse
            Another station runs on the same output directory.
        ControlError
            The control socket cannot be made (see :class:`~mascara_actors.control.ControlServer`).
        """
        lock = StationLock(self.state_dir, out_dir=self.out_dir)
        await anyio.to_thread.run_sync(lock.acquire)
        try:
            if self.handle_signals:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
            async with ControlServer(self.socket_path, self) as server:
                self._server = server
                self.started = time.time()
                log.info(
                    "station %s: cameras %s, output %s, control socket %s (pid %d)",
                    self.site or "?",
                    ", ".join(self.cameras),
                    self.out_dir,
                    self.socket_path,
                    os.getpid(),
                )
                async with anyio.create_task_group() as tg:
                    if self.handle_signals:
                        tg.start_soon(self._on_signals)
                    async with anyio.create_task_group() as nights:
                        for camera in self.cameras.values():
                            nights.start_soon(camera.run)
                        self.ready.set()
                    tg.cancel_scope.cancel()
                self._server = None
                log.info("station: every camera's night is %s",
                         "stopped" if self.stopped_by else "over")
                for line in self.outcome():
                    log.info("station: %s", line)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lock.release)

    def outcome(self) -> list[str]:
        """One line per camera: how its night ended, what it reduced, where it is."""
        lines = []
        for name, cam in self.cameras.items():
            s = cam.state
            where = cam.status.get("night_dir") or self.out_dir
            lines.append(
                f"{name}: {cam.process_state}, {cam.last_exit or 'never started'}; "
                f"{s.frames_reduced} frames reduced, {s.frames_failed} failed, "
                f"{cam.restarts} restarts; {where}"
            )
        return lines

    def stop_all(self, reason: str) -> None:
        """Stop every camera's night for a restart (asked again: at once); the supervisor
        ends once every camera process has."""
        if self.stopped_by is None:
            self.stopped_by = reason
            log.warning("station: %s: stopping every camera's night for a restart", reason)
        else:
            log.warning("station: %s again: every camera's night stops at once", reason)
        for camera in self.cameras.values():
            camera.request_stop()

    async def _on_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.stop_all(signal.Signals(signum).name)

    def _publish(self, event: Event, camera: str) -> None:
        if self._server is not None:
            self._server.publish(event, camera)

    # -- the control socket's commands (ControlHandler) -------------------------------------

    def _camera(self, camera: str) -> CameraProcess:
        try:
            return self.cameras[camera]
        except KeyError:
            raise UnknownCamera(camera, self.cameras) from None

    async def status(self, camera: str | None) -> object:
        if camera is not None:
            return self._camera(camera).describe()
        return {
            "station": {
                "site": self.site,
                "out_dir": str(self.out_dir),
                "pid": os.getpid(),
                "started": self.started,
                "uptime_s": None if self.started is None else round(time.time() - self.started),
                "stopping": self.stopped_by,
                "cameras": list(self.cameras),
            },
            "cameras": {name: cam.describe() for name, cam in self.cameras.items()},
        }

    async def _each(self, camera: str | None, cmd: CameraCommand) -> object:
        """``cmd`` for one camera (its result), or for every camera at once (per camera
        ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ...}``)."""
        if camera is not None:
            return await self._camera(camera).command(cmd)
        results: dict[str, dict[str, Any]] = {}

        async def one(cam: CameraProcess) -> None:
            try:
                results[cam.camera] = {"ok": True, "result": await cam.command(cmd)}
            except MascaraError as exc:
                results[cam.camera] = {"ok": False, "error": str(exc)}

        async with anyio.create_task_group() as tg:
            for cam in self.cameras.values():
                tg.start_soon(one, cam)
        return {name: results[name] for name in self.cameras}

    async def pause(self, camera: str | None) -> object:
        return await self._each(camera, "pause")

    async def resume(self, camera: str | None) -> object:
        return await self._each(camera, "resume")

    async def take_darks(self, camera: str | None) -> object:
        return await self._each(camera, "take_darks")

    async def end_night(self, camera: str | None) -> object:
        return await self._each(camera, "end_night")

    async def stop(self, camera: str | None) -> object:
        """Stop one camera's night for a restart (it is not restarted), or the station's."""
        if camera is None:
            self.stop_all("the stop command")
            return {"stopping": list(self.cameras)}
        cam = self._camera(camera)
        if cam.process_state in ("done", "stopped"):
            raise CameraUnavailable(f"camera {camera}'s pipeline {cam.ended()}")
        cam.request_stop()
        return (
            f"camera {camera}'s night stops for a restart (what was measured is saved); "
            "the other cameras go on"
        )
