"""A camera's process under the station supervisor: the night's events, its phase and the
operator's commands over the channel of :mod:`~mascara_actors.app.camera_channel`.

``mascara-actors live --supervisor-fd FD`` runs its night through :func:`run_supervised`:
the same night as ``live`` (calibrations, science, resume after a restart, exit status), with

- every event the night's state applies sent to the supervisor (:class:`ForwardingState`);
- the station's phase, the camera link and the night's directory sent when they change;
- the camera watched (link events) as the console does;
- ``pause``, ``resume``, ``take_darks`` and ``end_night`` from the supervisor carried out;
- the night stopped for a restart, as on SIGINT, when the channel closes (the supervisor is
  gone), so that no night runs on unsupervised.

Nothing here waits on the supervisor: events queue (up to :data:`OUT_BUFFER` lines; beyond,
the oldest are kept and new ones dropped with a warning in the log) and the night goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup, UNIXSocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from mascara_actors.actors.gate import PauseGate
from mascara_actors.app.camera_channel import (
    MAX_LINE_BYTES,
    ChannelError,
    CommandLine,
    decode_command_line,
    encode_event,
    encode_reply,
    encode_status,
    finite,
)
from mascara_actors.app.reports import StationReport
from mascara_actors.app.station import Station
from mascara_actors.catalogue import Catalogue
from mascara_actors.control.client import STREAM_ENDED, shut_down, within
from mascara_actors.messages import Event
from mascara_actors.night_state import NightState

__all__ = ["OUT_BUFFER", "STATUS_PERIOD_S", "ForwardingState", "run_supervised"]

log = logging.getLogger(__name__)

OUT_BUFFER = 10_000
"""Lines waiting for the supervisor before new events are dropped."""

STATUS_PERIOD_S = 0.5
"""How often the phase and the camera link are checked for a change, seconds."""

_DRAIN_S = 5.0
"""At the end of the night, how long the lines still queued get to reach the supervisor."""


@dataclass(eq=False)
class ForwardingState(NightState):
    """A :class:`NightState` that hands every event it applies to ``forward`` as well."""

    forward: Callable[[Event], None] | None = field(default=None, repr=False)

    def apply(self, ev: Event) -> None:
        super().apply(ev)
        if self.forward is not None:
            self.forward(ev)


class _Refused(Exception):
    """A command the station cannot carry out now (the reply says why)."""


async def run_supervised(station: Station, catalogue: Catalogue, channel_fd: int) -> StationReport:
    """Run ``station``'s night (its ``state`` a :class:`ForwardingState`), talking to the
    supervisor over the socket ``channel_fd``; returns the night's report."""
    if not isinstance(station.state, ForwardingState):
        raise TypeError("a supervised station needs a ForwardingState")
    sock = socket.socket(fileno=channel_fd)
    sock.set_inheritable(False)  # the camera device and the workers must not hold it open
    stream = await UNIXSocketStream.from_socket(sock)
    if station.gate is None:
        station.gate = PauseGate()
    return await _Uplink(station, station.state, stream).run(catalogue)


class _Uplink:
    def __init__(
        self, station: Station, state: ForwardingState, stream: UNIXSocketStream
    ) -> None:
        self.station = station
        self.stream = stream
        self._out, self._queued = anyio.create_memory_object_stream[bytes](OUT_BUFFER)
        self._dropped = 0
        self._sent_status: dict[str, Any] | None = None
        self._ending = False
        """The night is over: the channel is being shut down from this side."""
        self._read_done = anyio.Event()
        state.forward = self._on_event

    def _on_event(self, event: Event) -> None:
        self._put(encode_event(event))

    def _put(self, line: bytes) -> None:
        try:
            self._out.send_nowait(line)
        except anyio.WouldBlock:
            self._dropped += 1
            if self._dropped in (1, 10, 100) or self._dropped % 1000 == 0:
                log.warning("supervisor: %d lines dropped (it does not read)", self._dropped)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    async def run(self, catalogue: Catalogue) -> StationReport:
        written = anyio.Event()
        report: StationReport | None = None
        # No cancellation reaches the reader (a night stopped at once cancels this): it ends
        # when the channel is shut down below (see shut_down).
        reading = anyio.CancelScope(shield=True)
        async with self.stream, anyio.create_task_group() as tg:
            tg.start_soon(self._write, written)
            tg.start_soon(within, reading, self._read, tg)
            tg.start_soon(self._report_status)
            tg.start_soon(self.station.watch.run)
            try:
                report = await self.station.run(catalogue)
            finally:
                with anyio.CancelScope(shield=True):
                    self._send_status_if_changed()
                    self._out.close()
                    with anyio.move_on_after(_DRAIN_S):
                        await written.wait()
                    # the reader (and a writer still blocked) end by themselves: never
                    # cancel a pending receive (see shut_down)
                    self._ending = True
                    shut_down(self.stream)
                    with anyio.move_on_after(_DRAIN_S):
                        await self._read_done.wait()
                reading.cancel()  # a reader the shutdown did not end (never seen)
                tg.cancel_scope.cancel()
        assert report is not None  # station.run returned
        return report

    async def _write(self, written: anyio.Event) -> None:
        try:
            async with self._queued:
                async for line in self._queued:
                    await self.stream.send(line)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.warning("supervisor: the channel is closed; events are no longer sent")
        finally:
            written.set()

    async def _read(self, tg: TaskGroup) -> None:
        lines = BufferedByteReceiveStream(self.stream)
        try:
            while True:
                line = await lines.receive_until(b"\n", MAX_LINE_BYTES)
                try:
                    command = decode_command_line(line)
                except ChannelError as exc:
                    log.error("supervisor: %s", exc)
                    continue
                tg.start_soon(self._carry_out, command)
        except (anyio.DelimiterNotFound, *STREAM_ENDED):
            pass
        finally:
            self._read_done.set()
        if not self.station.stop.is_set() and not self._ending:
            log.warning(
                "supervisor: the channel closed (the station supervisor is gone): stopping "
                "the night for a restart"
            )
            self.station.stop.set()

    async def _carry_out(self, command: CommandLine) -> None:
        log.info("supervisor: %s (id %d)", command.cmd, command.id)
        try:
            line = encode_reply(command.id, result=await self._execute(command.cmd))
        except _Refused as exc:
            line = encode_reply(command.id, error=str(exc))
        except Exception as exc:  # a bug: the reply says so, the night goes on
            log.exception("supervisor: %s failed", command.cmd)
            line = encode_reply(
                command.id,
                error=f"{command.cmd} failed in the camera's process ({type(exc).__name__}: "
                f"{exc}); see its log",
            )
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self._out.send(line)

    async def _execute(self, cmd: str) -> object:
        station, gate = self.station, self.station.gate
        assert gate is not None
        if cmd == "pause":
            already = gate.paused
            gate.pause()
            return (
                "already paused" if already
                else "paused: the camera goes on, its frames wait on disk"
            )
        if cmd == "resume":
            was = gate.paused
            gate.resume()
            return "resumed" if was else "not paused"
        if cmd == "take_darks":
            return await station.take_darks()
        if cmd == "end_night":
            if not station.end_night():
                raise _Refused(f"end night: not now, the station is {station.phase}")
            return "the science ends now, as at dawn: the end-of-night chain follows"
        raise _Refused(f"unknown command {cmd!r}")

    def _status(self) -> dict[str, Any]:
        station = self.station
        stats = station.stats
        return {
            "pid": os.getpid(),
            "phase": station.phase,
            "link": station.watch.link(),
            "ccdtemp_c": finite(station.watch.ccdtemp()),
            "night_dir": None if station.night_dir is None else str(station.night_dir),
            "camera_lost": station.camera_lost,
            "night_over": station.night_over,
            "frames_from_camera": stats.frames,
            "frames_missing": stats.missing,
            "paused": station.gate is not None and station.gate.paused,
            "dropped_lines": self._dropped,
        }

    def _send_status_if_changed(self) -> None:
        status = self._status()
        if status != self._sent_status:
            self._sent_status = status
            self._put(encode_status(status))

    async def _report_status(self) -> None:
        while True:
            self._send_status_if_changed()
            await anyio.sleep(STATUS_PERIOD_S)
