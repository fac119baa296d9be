"""The Rice bit-stream decoder of 16-bit FITS tiles, compiled by numba.

A Rice tile (FITS tile compression, RICE_1, the algorithm of cfitsio's ``ricecomp.c``) holds
its first pixel as two big-endian bytes, then blocks of ``blocksize`` pixels. Each block
starts with a 4-bit code: 0 means every pixel equals the last one, 15 means 16 raw bits a
pixel follow, any other code k gives ``fs = k - 1``: each pixel is then the difference to the
previous pixel, folded to unsigned (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...), written as its
high bits in unary (that many zeros, then a one) and its low ``fs`` bits as they are.

astropy decodes with cfitsio's C, which reads one byte at a time and counts leading zeros
with a 256-entry table: 56 ms for a raw frame of 11 million pixels on this project's host,
a fifth of all the CPU a frame costs in an archive run (`docs/performance.md`); imagecodecs
wraps the same C. Here 64 bits at a time are read with one unaligned load, refilled without
a branch, and each unary run is counted with one count-leading-zeros instruction: 29 ms for
the same frame, the same pixels bit for bit (tests compare with astropy).

The caller gives the tiles' bytes in one buffer followed by :data:`PAD` spare bytes, which
the decoder may read (never use) past a damaged tile's end before it notices.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["PAD", "decode_rice_rows"]

PAD = 512
"""Bytes after the last tile the decoder may read: more than a block of 32 pixels at 64
bits each, what it can read past a damaged tile before its check at the block's end."""

_U = np.uint64


def _leading_zeros_typing(typingctx: Any, word: Any) -> tuple[Any, Any]:
    """Count of leading zero bits of a uint64 (64 for 0): one instruction."""

    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> Any:
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 0))

    return types.uint64(types.uint64), codegen


def _load_be64_typing(typingctx: Any, buf: Any, index: Any) -> tuple[Any, Any]:
    """The eight bytes ``buf[index:index + 8]`` as a big-endian uint64: one unaligned load
    and a byte swap, where eight loads and shifts cost twice the whole decode."""

    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> Any:
        array = context.make_array(sig.args[0])(context, builder, value=args[0])
        pointer = builder.bitcast(builder.gep(array.data, [args[1]]),
                                  ir.IntType(64).as_pointer())
        return builder.bswap(builder.load(pointer, align=1))

    return types.uint64(buf, types.int64), codegen


# numba's compile-time functions, called from compiled code only
_leading_zeros: Any = intrinsic(_leading_zeros_typing)
_load_be64: Any = intrinsic(_load_be64_typing)


@numba.njit(inline="always")
def _refill(buf: np.ndarray, pos: int, bits: Any, valid: int) -> tuple[Any, int, int]:
    """The bit buffer refilled to 56-63 valid bits, without a branch: (bits, pos, valid),
    ``valid`` bits at the top of ``bits``, the next from byte ``pos``."""
    bits |= _load_be64(buf, pos) >> _U(valid)
    return bits, pos + ((63 - valid) >> 3), valid | 56


@numba.njit(inline="always")
def _next_pixel(last: Any, folded: Any) -> Any:
    """The pixel (16 bits, stored value) after ``last`` whose difference folded to unsigned
    (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...) is ``folded``."""
    return (last + ((folded >> _U(1)) ^ (_U(0) - (folded & _U(1))))) & _U(0xFFFF)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _decode(buf: np.ndarray, starts: np.ndarray, sizes: np.ndarray, out: np.ndarray,
            blocksize: int) -> int:  # pragma: no cover - compiled; covered through its caller
    """Decode tile ``r`` (bytes ``buf[starts[r]:starts[r] + sizes[r]]``) into ``out[r]``,
    shifted by BZERO 32768; -1 when every tile decoded, else the first damaged tile."""
    rows, columns = out.shape
    stream_end = buf.shape[0] - PAD
    for row in range(rows):
        start = starts[row]
        end = start + sizes[row]
        if sizes[row] < 3 or start < 0 or end > stream_end:
            return row
        last = (_U(buf[start]) << _U(8)) | _U(buf[start + 1])
        # the bit buffer (see _refill)
        pos = start + 2
        bits = _U(0)
        valid = 0
        i = 0
        while i < columns:
            bits, pos, valid = _refill(buf, pos, bits, valid)
            fs = int(bits >> _U(60)) - 1
            bits <<= _U(4)
            valid -= 4
            stop = min(i + blocksize, columns)
            if fs < 0:
                value = np.uint16((last & _U(0xFFFF)) ^ _U(0x8000))
                for j in range(i, stop):
                    out[row, j] = value
            elif fs == 14:
                for j in range(i, stop):
                    bits, pos, valid = _refill(buf, pos, bits, valid)
                    folded = bits >> _U(48)
                    bits <<= _U(16)
                    valid -= 16
                    last = _next_pixel(last, folded)
                    out[row, j] = np.uint16(last ^ _U(0x8000))
            else:
                low = _U(fs)
                for j in range(i, stop):
                    bits, pos, valid = _refill(buf, pos, bits, valid)
                    zeros = int(_leading_zeros(bits))
                    if zeros + 1 + fs > valid:  # a unary run longer than the buffer holds
                        zeros = 0
                        while True:
                            run = int(_leading_zeros(bits))
                            if run < valid:
                                break
                            zeros += valid  # all zeros: a buffer of new bits
                            bits, pos, valid = _refill(buf, pos, _U(0), 0)
                            if (pos << 3) - valid > end << 3:  # the zeros ran past the tile
                                return row
                        zeros += run
                        bits <<= _U(run + 1)
                        valid -= run + 1
                        bits, pos, valid = _refill(buf, pos, bits, valid)
                    else:
                        bits <<= _U(zeros + 1)
                        valid -= zeros + 1
                    folded = (_U(zeros) << low) | ((bits >> _U(1)) >> _U(63 - fs))
                    bits <<= low
                    valid -= fs
                    last = _next_pixel(last, folded)
                    out[row, j] = np.uint16(last ^ _U(0x8000))
            if ((pos << 3) - valid + 7) >> 3 > end:  # the block read past its tile
                return row
            i = stop
        if ((pos << 3) - valid + 7) >> 3 != end:  # bytes left over: as cfitsio, damaged
            return row
    return -1


def decode_rice_rows(buf: np.ndarray, starts: np.ndarray, sizes: np.ndarray, columns: int,
                     blocksize: int) -> np.ndarray:
    """The uint16 pixels (BZERO 32768 added) of 16-bit Rice tiles of one image row each.

    ``buf`` is uint8, the tiles' bytes then :data:`PAD` spare bytes; tile ``r`` is
    ``buf[starts[r]:starts[r] + sizes[r]]`` (int64 arrays). ValueError names the first tile
    whose bit stream does not end with its bytes (damaged or cut short).
    """
    out = np.empty((len(starts), columns), dtype=np.uint16)
    bad = _decode(buf, starts, sizes, out, blocksize)
    if bad >= 0:
        raise ValueError(f"damaged compressed pixels: the Rice tile of image row {bad + 1} "
                         f"does not end with its {sizes[bad]} bytes")
    return out
