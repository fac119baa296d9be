"""The simulated camera *device*: a separate process behind a real pty and a readout socket.

It behaves like the camera electronics, not like a driver: the host talks to it only through
the serial protocol (:mod:`hw.protocol`) on a pseudo-terminal, opened by path exactly like
``/dev/ttyUSB0``, and receives frames on a TCP readout socket (:mod:`hw.readout`).
:class:`SimulatedDevice` puts it together from one part per concern:

* :mod:`hw.sim.clock`: device time starts at ``start_jd`` (UTC) and runs ``speed`` times
  faster than real time;
* :mod:`hw.sim.cooling`: the CCD temperature follows the cooler;
* :mod:`hw.sim.sequencer`: exposures locked to lstseq slots (``ARM``, ``ABORT``);
* :mod:`hw.sim.frame_server`: rendering through the pluggable frame source
  (:mod:`hw.sim.exposure`) and the readout link;
* :mod:`hw.sim.pty_port` and :mod:`hw.sim.commands`: the control line and its commands;
* :mod:`hw.sim.faults`: the faults it injects on request.

Start it with :class:`hw.sim.process.DeviceProcess` (``with``/``async with``), which runs
``python -m hw.sim.device --config-json ...`` in a child process and waits for
``<workdir>/device.json`` (``{"tty", "pts", "readout_host", "readout_port", "pid"}``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

import anyio
import anyio.abc

from hw.sim.clock import DeviceClock
from hw.sim.commands import CommandSet
from hw.sim.cooling import CcdCooling
from hw.sim.device_config import READY_FILE, TTY_LINK, DeviceConfig
from hw.sim.exposure import load_renderer
from hw.sim.faults import FaultInjector
from hw.sim.frame_server import FrameServer
from hw.sim.pty_port import PtyPort
from hw.sim.sequencer import ExposureSequencer

__all__ = ["SimulatedDevice", "main", "run_device"]

log = logging.getLogger(__name__)


class SimulatedDevice:
    """The simulated camera, run inside the device process by :func:`run_device`.

    The frame source is loaded first (the sky renderer warms up for seconds): the device
    clock starts once it is ready.
    """

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config
        self.workdir = Path(config.workdir)
        render = load_renderer(config)
        self.clock = DeviceClock(config.start_jd, config.speed)
        self.cooling = CcdCooling(
            self.clock,
            ambient_c=config.ambient_c,
            start_temp_c=config.start_temp_c,
            tau_s=config.tau_s,
            max_cooling_c=config.max_cooling_c,
        )
        self.faults = FaultInjector(config.faults, seed=config.seed)
        self.port = PtyPort(self.workdir / TTY_LINK, on_open=self._publish)
        self.frames = FrameServer(
            render,
            shape=config.shape,
            readout_s=config.readout_s,
            max_queued=config.max_queued_frames,
            faults=self.faults,
            emit=self.port.emit,
        )
        self.sequencer = ExposureSequencer(
            self.clock,
            self.cooling,
            exposure_s=config.exposure_s,
            readout_s=config.readout_s,
            camera=config.camera,
            emit=self.port.emit,
            exposed=self.frames.exposed,
        )
        self.commands = CommandSet(
            config,
            clock=self.clock,
            cooling=self.cooling,
            sequencer=self.sequencer,
            frames=self.frames,
            faults=self.faults,
            port=self.port,
        )
        self.readout_port = 0

    async def temperature_events(self) -> None:
        """``EVT TEMP`` every ``temp_event_interval_s`` device seconds (none if 0)."""
        interval = self.config.temp_event_interval_s
        if interval <= 0:
            return
        while True:
            await anyio.sleep(max(0.1, self.clock.real_s(interval)))
            self.port.emit("TEMP", f"{self.cooling.ccdtemp_c():.3f}")

    def _publish(self) -> None:
        """Write the ready file atomically once the pty and the readout port exist."""
        if not self.readout_port:
            return
        info = {
            "tty": str(self.port.link_path),
            "pts": self.port.pts,
            "readout_host": "127.0.0.1",
            "readout_port": self.readout_port,
            "pid": os.getpid(),
        }
        tmp = self.workdir / (READY_FILE + ".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(self.workdir / READY_FILE)

    async def run(self) -> None:
        """Run every task of the device until SIGTERM/SIGINT or the parent process dies."""
        parent = os.getppid()
        listener = await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=self.config.readout_port
        )
        self.readout_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        try:
            async with listener, anyio.create_task_group() as tg:
                await tg.start(self.sequencer.run)
                tg.start_soon(listener.serve, self.frames.handle)
                tg.start_soon(self.port.serve, self.commands.on_command)
                tg.start_soon(self.frames.render_frames)
                tg.start_soon(self.temperature_events)
                tg.start_soon(_watch_parent, parent, tg.cancel_scope)
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        log.info("signal %d: shutting down", signum)
                        break
                tg.cancel_scope.cancel()
        finally:
            for path in (self.port.link_path, self.workdir / READY_FILE):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            counts = {
                **self.commands.counts,
                **self.frames.counts,
                "write_drops": self.port.write_drops,
            }
            log.info("device stopped; counts %s", counts)


async def _watch_parent(parent: int, scope: anyio.CancelScope) -> None:
    """Stop the device when the process that started it has gone (no orphans)."""
    while os.getppid() == parent:
        await anyio.sleep(0.5)
    log.warning("parent process %d is gone; stopping", parent)
    scope.cancel()


def run_device(config: DeviceConfig) -> None:
    """Run the simulated camera in this process until SIGTERM/SIGINT (blocking)."""
    Path(config.workdir).mkdir(parents=True, exist_ok=True)
    anyio.run(SimulatedDevice(config).run, backend="trio")


def main(argv: list[str] | None = None) -> int:
    """``python -m hw.sim.device --config-json '{...}'``: run a simulated camera."""
    parser = argparse.ArgumentParser(prog="python -m hw.sim.device", description=main.__doc__)
    parser.add_argument("--config-json", required=True, help="DeviceConfig as JSON")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    run_device(DeviceConfig.from_json(args.config_json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
