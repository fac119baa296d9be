"""Frame readout stream: a fixed binary header plus little-endian uint16 pixels, verified.

Every frame on the readout link (a TCP socket on 127.0.0.1 for the simulator, a USB bulk
pipe on real hardware) is a 76-byte header followed by ``ny * nx`` little-endian uint16
pixels. The header (all little-endian, see :data:`HEADER`) holds:

======  ===========  ===================================================================
offset  field        meaning
======  ===========  ===================================================================
0       magic        8 bytes, :data:`MAGIC`
8       version      uint16, :data:`VERSION`
10      header_len   uint16, 76
12      lstseq       int64, the exposure's lstseq slot
20      jd_start     float64, JD (UTC) of the exposure start
28      exptime_s    float64, exposure time, seconds (solar)
36      readout_s    float64, readout duration, seconds (solar)
44      ccdtemp_c    float64, CCD temperature at readout, degrees Celsius
52      ny, nx       2 x uint32, pixels (rows, columns)
60      payload_len  uint64, bytes of pixels = 2 * ny * nx
68      payload_crc  uint32, CRC-32 of the pixel bytes
72      header_crc   uint32, CRC-32 of header bytes 0-71
======  ===========  ===================================================================

:class:`FrameParser` verifies both checksums on arrival. A corrupt or short frame is counted
and dropped, never passed on; the parser resynchronises on the next :data:`MAGIC` (searching
inside a dropped payload too, so a frame cut short loses only itself).
:class:`ReadoutReceiver` runs the parser over a TCP connection and reconnects with backoff.
"""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import numpy as np
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hw._background import BackgroundLink

__all__ = [
    "HEADER",
    "MAGIC",
    "VERSION",
    "FrameHeader",
    "FrameParser",
    "ReadoutFrame",
    "ReadoutReceiver",
    "ReadoutStats",
    "encode_frame",
    "send_frame",
]

log = logging.getLogger(__name__)

MAGIC = b"\x89MFRAME\n"
VERSION = 1
#: Header layout; the last field is the CRC-32 of everything before it.
HEADER = struct.Struct("<8sHHqddddIIQII")
_CRC_OFFSET = HEADER.size - 4
#: Largest payload accepted (bytes); a header claiming more is treated as corrupt.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """What the camera says about one frame.

    Attributes
    ----------
    lstseq : int
        The exposure's lstseq slot.
    jd_start : float
        Exposure start, JD (UTC).
    exptime_s : float
        Exposure time, seconds (solar).
    readout_s : float
        Readout duration, seconds (solar).
    ccdtemp_c : float
        CCD temperature at readout, degrees Celsius.
    ny, nx : int
        Frame shape, pixels (rows, columns), overscan included.
    """

    lstseq: int
    jd_start: float
    exptime_s: float
    readout_s: float
    ccdtemp_c: float
    ny: int
    nx: int

    @property
    def payload_len(self) -> int:
        """Bytes of pixel data, ``2 * ny * nx``."""
        return 2 * self.ny * self.nx


@dataclass(frozen=True, slots=True)
class ReadoutFrame:
    """A verified frame: its header and its pixels (uint16 ADU, shape ``(ny, nx)``)."""

    header: FrameHeader
    pixels: np.ndarray


def encode_frame(header: FrameHeader, pixels: np.ndarray) -> tuple[bytes, memoryview]:
    """The header bytes and a zero-copy view of the payload for one frame.

    Parameters
    ----------
    header : FrameHeader
        Its ``ny, nx`` must equal ``pixels.shape``.
    pixels : ndarray of uint16, shape (ny, nx)
        ADU. Copied only if not already C-contiguous little-endian.

    Raises
    ------
    ValueError
        If the shape or dtype does not match.
    """
    if pixels.shape != (header.ny, header.nx):
        raise ValueError(
            f"pixels shape {pixels.shape} differs from header shape ({header.ny}, {header.nx})"
        )
    if pixels.dtype.kind != "u" or pixels.dtype.itemsize != 2:
        raise ValueError(f"pixels dtype {pixels.dtype} must be uint16; convert before sending")
    payload = np.ascontiguousarray(pixels, dtype="<u2")
    view = payload.data.cast("B")  # contiguous: its buffer is the payload's bytes
    head = HEADER.pack(
        MAGIC,
        VERSION,
        HEADER.size,
        header.lstseq,
        header.jd_start,
        header.exptime_s,
        header.readout_s,
        header.ccdtemp_c,
        header.ny,
        header.nx,
        header.payload_len,
        zlib.crc32(view),
        0,
    )[:_CRC_OFFSET]
    return head + struct.pack("<I", zlib.crc32(head)), view


async def send_frame(
    stream: anyio.abc.ByteSendStream, header: FrameHeader, pixels: np.ndarray
) -> None:
    """Encode one frame and send it whole (header, then payload without a copy)."""
    head, payload = encode_frame(header, pixels)
    await stream.send(head)
    await stream.send(payload)  # type: ignore[arg-type]  # any buffer works for socket streams


@dataclass(frozen=True, slots=True)
class ReadoutStats:
    """Counters of a readout stream.

    Attributes
    ----------
    frames : int
        Verified frames passed on.
    garbage_bytes : int
        Bytes skipped while searching for a frame start (remains of dropped frames included).
    bad_header : int
        Candidate headers rejected (checksum, version, impossible size).
    corrupt : int
        Frames whose payload checksum failed, with no new frame start inside the payload.
    short : int
        Frames cut short: the link closed inside them, or the next frame's magic lies inside
        their payload. (A frame cut so close to its end that the next magic is not wholly
        inside the payload counts as corrupt; either way it is dropped.)
    connects, disconnects : int
        Readout link connections made and lost (receiver only).
    """

    frames: int = 0
    garbage_bytes: int = 0
    bad_header: int = 0
    corrupt: int = 0
    short: int = 0
    connects: int = 0
    disconnects: int = 0

    @property
    def dropped(self) -> int:
        """Frames dropped: corrupt plus short."""
        return self.corrupt + self.short


class FrameParser:
    """Incremental, verifying parser of a readout byte stream.

    Parameters
    ----------
    max_payload_bytes : int, optional
        Largest frame accepted; headers claiming more are rejected as corrupt.
    """

    def __init__(self, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        self._max_payload = max_payload_bytes
        self._buf = bytearray()
        self._header: FrameHeader | None = None
        self._crc = 0
        self._payload: np.ndarray | None = None
        self._filled = 0
        self._counts = {"frames": 0, "garbage_bytes": 0, "bad_header": 0, "corrupt": 0, "short": 0}

    @property
    def stats(self) -> ReadoutStats:
        """A snapshot of the counters."""
        return ReadoutStats(**self._counts)

    @property
    def in_frame(self) -> bool:
        """True while a frame has started and not yet completed."""
        return self._payload is not None or self._buf.startswith(MAGIC)

    def eof(self) -> None:
        """The link closed: a frame in progress is counted as short and forgotten."""
        if self.in_frame:
            self._counts["short"] += 1
        self._counts["garbage_bytes"] += len(self._buf) if not self._buf.startswith(MAGIC) else 0
        self._buf.clear()
        self._payload = None
        self._header = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[ReadoutFrame]:
        """Consume ``data``; return the verified frames it completes, in order."""
        out: list[ReadoutFrame] = []
        view = memoryview(data).cast("B")
        pos = 0
        while True:
            payload = self._payload
            if payload is not None:
                k = min(payload.size - self._filled, len(view) - pos)
                if k > 0:
                    payload[self._filled : self._filled + k] = np.frombuffer(view, np.uint8, k, pos)
                    self._filled += k
                    pos += k
                if self._filled < payload.size:
                    return out
                frame = self._complete()
                if frame is not None:
                    out.append(frame)
                continue
            if pos < len(view):
                self._buf += view[pos:]
                pos = len(view)
            if not self._seek():
                return out

    def _seek(self) -> bool:
        """Find and accept the next valid header in the buffer; True if one was accepted."""
        buf = self._buf
        counts = self._counts
        while True:
            idx = buf.find(MAGIC)
            if idx < 0:
                # the magic may straddle chunks: keep its possible beginning
                drop = max(0, len(buf) - (len(MAGIC) - 1))
                counts["garbage_bytes"] += drop
                del buf[:drop]
                return False
            counts["garbage_bytes"] += idx
            del buf[:idx]
            if len(buf) < HEADER.size:
                return False
            header = self._parse_header(bytes(buf[: HEADER.size]))
            if header is None:
                counts["bad_header"] += 1
                counts["garbage_bytes"] += 1
                del buf[:1]
                continue
            del buf[: HEADER.size]
            n = header.payload_len
            payload = np.empty(n, dtype=np.uint8)
            k = min(n, len(buf))
            payload[:k] = np.frombuffer(buf, np.uint8, k)
            del buf[:k]
            self._header, self._payload, self._filled = header, payload, k
            return True

    def _parse_header(self, raw: bytes) -> FrameHeader | None:
        """Decode and check one candidate header; None if it is not a valid one."""
        fields = HEADER.unpack(raw)
        (_, version, header_len, lstseq, jd, exptime, readout, temp, ny, nx, n, crc, hcrc) = fields
        if hcrc != zlib.crc32(raw[:_CRC_OFFSET]):
            return None
        if version != VERSION or header_len != HEADER.size:
            log.warning("readout header version %d / length %d not supported", version, header_len)
            return None
        if n != 2 * ny * nx or not 0 < n <= self._max_payload:
            log.warning("readout header claims %d bytes for %d x %d pixels; dropped", n, ny, nx)
            return None
        self._crc = crc
        return FrameHeader(lstseq, jd, exptime, readout, temp, ny, nx)

    def _complete(self) -> ReadoutFrame | None:
        """Verify the completed payload; the frame, or None after arranging to resync."""
        payload, header = self._payload, self._header
        assert payload is not None
        assert header is not None
        self._payload, self._header = None, None
        if zlib.crc32(payload.data) == self._crc:
            self._counts["frames"] += 1
            pixels = payload.view("<u2").astype(np.uint16, copy=False)
            return ReadoutFrame(header, pixels.reshape(header.ny, header.nx))
        raw = payload.tobytes()
        if MAGIC in raw:
            self._counts["short"] += 1
            log.warning("readout frame lstseq %d cut short; dropped", header.lstseq)
        else:
            self._counts["corrupt"] += 1
            log.warning("readout frame lstseq %d failed its checksum; dropped", header.lstseq)
        # search the dropped payload for the next frame, ahead of what is still buffered
        self._buf[:0] = raw
        return None


class ReadoutReceiver(BackgroundLink):
    """Receive verified frames from a TCP readout link; reconnect with backoff.

    Use as ``async with ReadoutReceiver(host, port) as rx: async for frame in rx.frames: ...``.
    Frames wait in a bounded buffer; when it is full the receiver stops reading the socket,
    so a slow consumer pushes back on the camera (which counts what it must drop).

    Parameters
    ----------
    host, port : str, int
        Address of the camera's readout server.
    max_buffered_frames : int, optional
        Frames held for the consumer before back-pressure applies.
    backoff_initial_s, backoff_max_s : float, optional
        Reconnect delays, seconds; the delay doubles after each failed attempt.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_buffered_frames: int = 4,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        chunk_bytes: int = 1 << 20,
    ) -> None:
        self.host, self.port = host, port
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._chunk = chunk_bytes
        self._parser = FrameParser()
        self._connects = 0
        self._disconnects = 0
        self._max_frames = max_buffered_frames
        # the streams are made on entry: anyio warns about streams never closed
        self._send: MemoryObjectSendStream[ReadoutFrame] | None = None
        self._frames: MemoryObjectReceiveStream[ReadoutFrame] | None = None
        self._connected = anyio.Event()

    @property
    def stats(self) -> ReadoutStats:
        """Parser counters plus connects and disconnects."""
        s = self._parser.stats
        return ReadoutStats(
            frames=s.frames,
            garbage_bytes=s.garbage_bytes,
            bad_header=s.bad_header,
            corrupt=s.corrupt,
            short=s.short,
            connects=self._connects,
            disconnects=self._disconnects,
        )

    async def wait_connected(self) -> None:
        """Return once the first connection is up."""
        await self._connected.wait()

    @property
    def frames(self) -> MemoryObjectReceiveStream[ReadoutFrame]:
        """Verified frames in arrival order (available inside ``async with``)."""
        if self._frames is None:
            raise RuntimeError(
                "ReadoutReceiver.frames exists only inside 'async with ReadoutReceiver(...)'"
            )
        return self._frames

    def _open_streams(self) -> None:
        self._send, self._frames = anyio.create_memory_object_stream[ReadoutFrame](self._max_frames)

    def _streams(self) -> tuple[Any, ...]:
        return (self._send, self._frames)

    async def _run(self) -> None:
        delay = self._backoff[0]
        while True:
            try:
                stream = await anyio.connect_tcp(self.host, self.port)
            except OSError as exc:
                log.debug(
                    "readout %s:%d not reachable (%s); retry in %.2f s",
                    self.host,
                    self.port,
                    exc,
                    delay,
                )
                await anyio.sleep(delay)
                delay = min(2 * delay, self._backoff[1])
                continue
            delay = self._backoff[0]
            self._connects += 1
            self._connected.set()
            log.info("readout link %s:%d connected", self.host, self.port)
            async with stream:
                while True:
                    try:
                        chunk = await stream.receive(self._chunk)
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
                        log.warning("readout link lost (%r); reconnecting", exc)
                        break
                    for frame in self._parser.feed(chunk):
                        assert self._send is not None
                        try:
                            await self._send.send(frame)
                        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                            return  # the consumer closed the frame stream: nothing to do
            self._parser.eof()
            self._disconnects += 1
            await anyio.sleep(delay)
