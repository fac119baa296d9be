"""The parent's side of the simulated camera: start the device process, wait, clean up.

``with DeviceProcess(cfg) as dev:`` (or ``async with``) runs ``python -m hw.sim.device
--config-json ...`` in a child process, returns once the device has published its pty link
and readout port (``<workdir>/device.json``), and stops it on the way out (SIGTERM, then
SIGKILL). The device's log goes to ``<workdir>/device.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.to_thread

from hw.sim.device_config import READY_FILE, DeviceConfig
from mascara_actors.errors import CameraError

__all__ = ["DEVICE_MODULE", "DeviceProcess"]

DEVICE_MODULE = "hw.sim.device"
"""The module the device process runs (``python -m``); it names the process in ``ps``."""


class DeviceProcess:
    """Start :func:`hw.sim.device.run_device` in a child process and clean it up.

    ``with DeviceProcess(cfg) as dev:`` (or ``async with``) returns once the device has
    published its pty link and readout port; leaving stops it (SIGTERM, then SIGKILL).

    Parameters
    ----------
    config : DeviceConfig
        The device; its ``workdir`` also receives ``device.log``.
    startup_timeout_s : float, optional
        Seconds to wait for the ready file.
    """

    def __init__(self, config: DeviceConfig, *, startup_timeout_s: float = 20.0) -> None:
        self.config = config
        self.startup_timeout_s = startup_timeout_s
        self.workdir = Path(config.workdir)
        self._proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    @property
    def tty_path(self) -> str:
        """Stable path of the device's serial port (a symlink to its pty)."""
        return str(self.info["tty"])

    @property
    def readout_address(self) -> tuple[str, int]:
        """(host, port) of the readout server."""
        return str(self.info["readout_host"]), int(self.info["readout_port"])

    @property
    def pid(self) -> int:
        """Process id of the device."""
        assert self._proc is not None
        return self._proc.pid

    def _spawn(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / READY_FILE
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with open(self.workdir / "device.log", "ab") as logfile:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", DEVICE_MODULE, "--config-json", self.config.to_json()],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                env=env,
            )

    def _check_ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            log_text = (self.workdir / "device.log").read_text(errors="replace")[-2000:]
            raise CameraError(
                f"simulated device exited with code {self._proc.returncode} during start-up; "
                f"its log ({self.workdir / 'device.log'}) ends with:\n{log_text}"
            )
        try:
            self.info = json.loads((self.workdir / READY_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return True

    def _timeout_error(self) -> CameraError:
        return CameraError(
            f"simulated device did not publish {self.workdir / READY_FILE} within "
            f"{self.startup_timeout_s} s; see {self.workdir / 'device.log'}"
        )

    def start(self) -> Self:
        """Spawn the device and wait (blocking) until it is ready."""
        self._spawn()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._check_ready():
            if time.monotonic() > deadline:
                self.stop()
                raise self._timeout_error()
            time.sleep(0.02)
        return self

    async def astart(self) -> Self:
        """Spawn the device and wait (without blocking the event loop) until it is ready."""
        await anyio.to_thread.run_sync(self._spawn)
        deadline = time.monotonic() + self.startup_timeout_s
        while not await anyio.to_thread.run_sync(self._check_ready):
            if time.monotonic() > deadline:
                await anyio.to_thread.run_sync(self.stop)
                raise self._timeout_error()
            await anyio.sleep(0.02)
        return self

    def stop(self, *, timeout_s: float = 5.0) -> int | None:
        """Stop the device: SIGTERM, wait up to ``timeout_s``, then SIGKILL. Returns its code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def signal(self, signum: int) -> None:
        """Send a signal to the device process (tests: SIGSTOP/SIGCONT to freeze it)."""
        assert self._proc is not None
        self._proc.send_signal(signum)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)
