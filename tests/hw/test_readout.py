"""Frame readout: header layout, verification, resynchronisation, and a real TCP link."""

from __future__ import annotations

import itertools
import struct
import zlib

import anyio
import anyio.abc
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hw.readout import (
    HEADER,
    MAGIC,
    FrameHeader,
    FrameParser,
    ReadoutReceiver,
    encode_frame,
    send_frame,
)

pytestmark = pytest.mark.backends("asyncio", "trio")


# -- helpers and named strategies ------------------------------------------------------------


def make_frame(lstseq: int, shape: tuple[int, int] = (6, 10)) -> tuple[FrameHeader, np.ndarray]:
    """A fresh header and pixel array; the pixels depend on lstseq (full uint16 range)."""
    rng = np.random.default_rng(lstseq)
    pixels = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    header = FrameHeader(lstseq, 2457000.5 + lstseq / 13500, 6.38, 0.8, -10.5, *shape)
    return header, pixels


def wire(header: FrameHeader, pixels: np.ndarray) -> bytes:
    head, payload = encode_frame(header, pixels)
    return head + bytes(payload)


def frame_shapes() -> st.SearchStrategy[tuple[int, int]]:
    """Small frame shapes, pixels (ny, nx)."""
    return st.tuples(st.integers(1, 12), st.integers(1, 12))


def junk() -> st.SearchStrategy[bytes]:
    """Bytes between frames, sometimes holding (parts of) the magic."""
    pieces = st.one_of(st.binary(max_size=50), st.just(MAGIC), st.just(MAGIC[:5]))
    return st.lists(pieces, max_size=3).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def parse(chunks: list[bytes], parser: FrameParser | None = None) -> list:
    parser = parser or FrameParser()
    return [f for c in chunks for f in parser.feed(c)]


# -- layout ----------------------------------------------------------------------------------


def test_header_layout_matches_the_documented_offsets() -> None:
    header, pixels = make_frame(47001234, (3, 5))
    head, payload = encode_frame(header, pixels)
    assert len(head) == HEADER.size == 76
    assert head[:8] == MAGIC
    assert struct.unpack_from("<HH", head, 8) == (1, 76)
    assert struct.unpack_from("<q", head, 12) == (47001234,)
    assert struct.unpack_from("<dddd", head, 20) == (header.jd_start, 6.38, 0.8, -10.5)
    assert struct.unpack_from("<IIQ", head, 52) == (3, 5, 30)
    assert struct.unpack_from("<I", head, 68) == (zlib.crc32(pixels.astype("<u2").tobytes()),)
    assert struct.unpack_from("<I", head, 72) == (zlib.crc32(head[:72]),)
    assert bytes(payload) == pixels.astype("<u2").tobytes()


def test_big_endian_pixels_are_sent_little_endian() -> None:
    header, pixels = make_frame(5)
    (frame,) = FrameParser().feed(wire(header, pixels.astype(">u2")))
    np.testing.assert_array_equal(frame.pixels, pixels)


@pytest.mark.parametrize(
    ("pixels", "match"),
    [
        (np.zeros((6, 9), np.uint16), r"^pixels shape \(6, 9\) differs from header shape"),
        (np.zeros((6, 10), np.int32), r"^pixels dtype int32 must be uint16"),
    ],
)
def test_encode_rejects_mismatched_pixels(pixels: np.ndarray, match: str) -> None:
    header, _ = make_frame(1)
    with pytest.raises(ValueError, match=match):
        encode_frame(header, pixels)


# -- parser properties -----------------------------------------------------------------------


@settings(max_examples=60)
@given(
    st.lists(st.tuples(junk(), frame_shapes()), min_size=1, max_size=5),
    st.lists(st.integers(0, 3000), max_size=10),
)
def test_frames_between_garbage_arrive_bit_exact(
    parts: list[tuple[bytes, tuple[int, int]]], cuts: list[int]
) -> None:
    frames = [make_frame(k, shape) for k, (_, shape) in enumerate(parts)]
    stream = b"".join(j + wire(h, p) for (j, _), (h, p) in zip(parts, frames, strict=True))
    got = parse(split(stream, cuts))
    assert [f.header for f in got] == [h for h, _ in frames]
    for f, (_, p) in zip(got, frames, strict=True):
        assert f.pixels.dtype == np.uint16
        np.testing.assert_array_equal(f.pixels, p)


@settings(max_examples=60)
@given(frame_shapes(), st.data())
def test_a_frame_cut_short_loses_only_itself(shape: tuple[int, int], data: st.DataObject) -> None:
    cut_head, cut_pixels = make_frame(1, shape)
    bad = wire(cut_head, cut_pixels)
    keep = data.draw(st.integers(HEADER.size, len(bad) - 1), label="keep")
    good = [make_frame(k, shape) for k in (2, 3)]
    stream = bad[:keep] + b"".join(wire(h, p) for h, p in good)
    # the bytes cut off may happen to be those that follow (the last pixel byte equal to
    # the next frame's first magic byte): then the stream holds frame 1 whole, and the next
    # frame is the one cut short
    assume(stream[:len(bad)] != bad)
    parser = FrameParser()
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")
    got = parse(split(stream, cuts), parser)
    assert [f.header.lstseq for f in got] == [2, 3]
    stats = parser.stats
    assert stats.dropped == 1
    if len(bad) - keep >= len(MAGIC):  # the next magic lies wholly inside the payload
        assert stats.short == 1
    assert stats.frames == 2


@settings(max_examples=60)
@given(frame_shapes(), st.data())
def test_any_corrupted_byte_drops_only_that_frame(
    shape: tuple[int, int], data: st.DataObject
) -> None:
    frames = [make_frame(k, shape) for k in (1, 2, 3)]
    raw = bytearray(wire(*frames[1]))
    pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
    raw[pos] ^= data.draw(st.integers(1, 255), label="xor")
    stream = wire(*frames[0]) + bytes(raw) + wire(*frames[2])
    parser = FrameParser()
    got = parse([stream], parser)
    assert [f.header.lstseq for f in got] == [1, 3]
    np.testing.assert_array_equal(got[1].pixels, frames[2][1])
    stats = parser.stats
    # a damaged magic hides the frame (its bytes are garbage); a damaged header is rejected;
    # damaged pixels fail the payload checksum
    assert stats.bad_header + stats.corrupt + stats.short >= 1 or pos < len(MAGIC)
    assert stats.garbage_bytes >= len(raw) - HEADER.size
    assert stats.frames == 2


# -- parser examples -------------------------------------------------------------------------


def test_corrupt_payload_is_counted_as_corrupt() -> None:
    header, pixels = make_frame(7, (40, 40))
    raw = bytearray(wire(header, pixels))
    raw[HEADER.size + 100] ^= 0xFF
    parser = FrameParser()
    assert parser.feed(bytes(raw)) == []
    assert (parser.stats.corrupt, parser.stats.short, parser.stats.frames) == (1, 0, 0)


def test_link_closing_inside_a_frame_counts_it_short() -> None:
    header, pixels = make_frame(7)
    parser = FrameParser()
    assert parser.feed(wire(header, pixels)[:-5]) == []
    assert parser.in_frame
    parser.eof()
    assert not parser.in_frame
    assert parser.stats.short == 1
    (frame,) = parser.feed(wire(*make_frame(8)))
    assert frame.header.lstseq == 8


def test_header_claiming_an_impossible_size_is_rejected() -> None:
    header, pixels = make_frame(3)
    head = bytearray(wire(header, pixels)[: HEADER.size])
    struct.pack_into("<Q", head, 60, 2 * 6 * 10 + 2)  # payload_len != 2 ny nx
    struct.pack_into("<I", head, 72, zlib.crc32(bytes(head[:72])))
    parser = FrameParser()
    (frame,) = parser.feed(bytes(head) + wire(*make_frame(4)))
    assert frame.header.lstseq == 4
    assert parser.stats.bad_header == 1


def test_payload_larger_than_the_limit_is_rejected() -> None:
    header, pixels = make_frame(3, (20, 20))
    parser = FrameParser(max_payload_bytes=100)
    assert parser.feed(wire(header, pixels)) == []
    assert parser.stats.bad_header == 1


def test_parser_holds_no_more_than_a_magic_of_garbage() -> None:
    parser = FrameParser()
    parser.feed(b"x" * 10_000 + MAGIC[:3])
    assert len(parser._buf) == len(MAGIC) - 1
    assert parser.stats.garbage_bytes == 10_000 + 3 - (len(MAGIC) - 1)


# -- a real TCP link -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_receiver_gets_frames_and_survives_a_cut_link() -> None:
    """Frames 0-2 on a first connection, frame 3 cut off by closing it, 4-5 after reconnect."""
    frames = [make_frame(k, (100, 120)) for k in range(6)]
    connections: list[int] = []

    async def serve(stream: anyio.abc.SocketStream) -> None:
        connections.append(1)
        async with stream:
            if len(connections) == 1:
                for h, p in frames[:3]:
                    await send_frame(stream, h, p)
                await stream.send(wire(*frames[3])[:5000])
            else:
                for h, p in frames[4:]:
                    await send_frame(stream, h, p)
                await anyio.sleep(10)

    with anyio.fail_after(20):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)
            async with ReadoutReceiver("127.0.0.1", port, backoff_initial_s=0.01) as rx:
                got = [await rx.frames.receive() for _ in range(5)]
                stats = rx.stats
            tg.cancel_scope.cancel()
    assert [f.header.lstseq for f in got] == [0, 1, 2, 4, 5]
    for f in got:
        np.testing.assert_array_equal(f.pixels, frames[f.header.lstseq][1])
    assert (stats.frames, stats.short, stats.connects, stats.disconnects) == (5, 1, 2, 1)


@pytest.mark.anyio
async def test_receiver_keeps_trying_until_the_server_appears() -> None:
    # find a free port, close it, and start listening there only later
    probe = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = probe.extra(anyio.abc.SocketAttribute.local_port)
    await probe.aclose()
    header, pixels = make_frame(11)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await send_frame(stream, header, pixels)
            await anyio.sleep(10)

    with anyio.fail_after(20):
        async with ReadoutReceiver("127.0.0.1", port, backoff_initial_s=0.01) as rx:
            await anyio.sleep(0.1)
            assert rx.stats.connects == 0
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
            async with listener, anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, serve)
                frame = await rx.frames.receive()
                tg.cancel_scope.cancel()
    assert frame.header == header
    np.testing.assert_array_equal(frame.pixels, pixels)
