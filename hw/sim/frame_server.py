"""The simulated device's readout side: render exposed slots and stream them out.

Each exposure read out is rendered in a worker thread by the device's frame source, encoded
(:func:`hw.readout.encode_frame`) and queued for the one readout connection; a newer
connection replaces the old one. Neither queue ever blocks the device: when one is full the
oldest item is dropped and reported (``EVT DROPPED <lstseq> overrun``), as are frames the
source fails to render, frames read out while the readout is off, and frames damaged by a
readout fault (:mod:`hw.sim.faults`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.abc
import anyio.to_thread
import numpy as np
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hw.readout import FrameHeader, encode_frame
from hw.sim.exposure import ExposureMeta, Renderer
from hw.sim.faults import FaultInjector

__all__ = ["FrameServer"]

log = logging.getLogger(__name__)

_Encoded = tuple[int, bytes, memoryview]
"""(lstseq, encoded header, payload) of a frame ready to send."""


class FrameServer:
    """Render, queue and send the frames of one device.

    Parameters
    ----------
    render
        The frame source.
    shape
        Frame shape (ny, nx) the source must return.
    readout_s
        Readout time, device seconds (reported in each frame header).
    max_queued
        Size of each queue (exposures to render, frames to send).
    faults
        Readout faults to apply.
    emit
        Sends a device event (``DROPPED``).
    """

    def __init__(
        self,
        render: Renderer,
        *,
        shape: tuple[int, int],
        readout_s: float,
        max_queued: int,
        faults: FaultInjector,
        emit: Callable[..., None],
    ) -> None:
        self._render = render
        self._shape = shape
        self._readout_s = readout_s
        self._faults = faults
        self._emit = emit
        self.readout_on = False
        """``READOUT START``/``STOP``: frames read out while off are dropped."""
        self.counts = dict.fromkeys(("rendered", "sent", "dropped"), 0)
        self._conn_scope: anyio.CancelScope | None = None
        rsend, rrecv = anyio.create_memory_object_stream[ExposureMeta](max_queued)
        self._render_send: MemoryObjectSendStream[ExposureMeta] = rsend
        self._render_recv: MemoryObjectReceiveStream[ExposureMeta] = rrecv
        fsend, frecv = anyio.create_memory_object_stream[_Encoded](max_queued)
        self._frames_send: MemoryObjectSendStream[_Encoded] = fsend
        self._frames_recv: MemoryObjectReceiveStream[_Encoded] = frecv

    def exposed(self, meta: ExposureMeta) -> None:
        """Queue an exposure for rendering (never blocks; drops the oldest when full)."""
        try:
            self._render_send.send_nowait(meta)
        except anyio.WouldBlock:
            self.dropped(self._render_recv.receive_nowait().lstseq, "overrun")
            self._render_send.send_nowait(meta)

    def _queue_frame(self, frame: _Encoded) -> None:
        try:
            self._frames_send.send_nowait(frame)
        except anyio.WouldBlock:
            self.dropped(self._frames_recv.receive_nowait()[0], "overrun")
            self._frames_send.send_nowait(frame)

    def dropped(self, lstseq: int, reason: str) -> None:
        """Count, log and report a frame that will not be sent."""
        self.counts["dropped"] += 1
        log.warning("frame %d dropped: %s", lstseq, reason)
        self._emit("DROPPED", lstseq, reason)

    async def render_frames(self) -> None:
        """Render exposed slots (in a thread) and queue them for the readout link."""
        async for meta in self._render_recv:
            try:
                pixels = await anyio.to_thread.run_sync(self._render, meta.lstseq, meta)
            except Exception:  # a broken frame source loses its frame, never the device
                log.exception("frame source failed on lstseq %d", meta.lstseq)
                self.dropped(meta.lstseq, "render")
                continue
            if pixels.shape != self._shape or pixels.dtype != np.uint16:
                log.error(
                    "frame source returned %s %s, expected uint16 %s",
                    pixels.dtype,
                    pixels.shape,
                    self._shape,
                )
                self.dropped(meta.lstseq, "render")
                continue
            self.counts["rendered"] += 1
            if not self.readout_on:
                self.dropped(meta.lstseq, "readout-off")
                continue
            header = FrameHeader(
                meta.lstseq,
                meta.jd_start,
                meta.exptime_s,
                self._readout_s,
                meta.ccdtemp_c,
                *self._shape,
            )
            head, payload = encode_frame(header, pixels)
            self._queue_frame((meta.lstseq, head, payload))

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        """Serve one readout connection; a newer connection replaces it."""
        if self._conn_scope is not None:
            self._conn_scope.cancel()
        with anyio.CancelScope() as scope:
            self._conn_scope = scope
            log.info("readout client connected")
            async with stream:
                async for lstseq, head, payload in self._frames_recv:
                    try:
                        if await self._send_frame(stream, lstseq, head, payload):
                            return
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        self.dropped(lstseq, "link")
                        return

    async def _send_frame(
        self, stream: anyio.abc.SocketStream, lstseq: int, head: bytes, payload: memoryview
    ) -> bool:
        """Send one frame, applying readout faults; True if the link must be closed."""
        if self._faults.take("cutlink"):
            await stream.send(head + bytes(payload[: len(payload) // 3]))
            self.dropped(lstseq, "cutlink")
            return True
        if self._faults.take("shortframe"):
            await stream.send(head + bytes(payload[: len(payload) // 2]))
            self.dropped(lstseq, "short")
            return False
        if self._faults.take("corruptframe"):
            bad = bytearray(payload)
            mid = len(bad) // 2
            bad[mid : mid + 8] = bytes(b ^ 0x5A for b in bad[mid : mid + 8])
            await stream.send(head + bytes(bad))
            self.dropped(lstseq, "corrupt")
            return False
        await stream.send(head)
        await stream.send(payload)  # type: ignore[arg-type]  # any buffer works
        self.counts["sent"] += 1
        return False
