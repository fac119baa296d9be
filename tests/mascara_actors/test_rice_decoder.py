"""The Rice decoder against cfitsio's, the reference (astropy's private binding of it).

Rows are encoded by cfitsio's encoder, then decoded by both; on damaged bit streams both
must refuse the tile or agree on its pixels (the decoder checks what cfitsio checks: at
each block's end, whether the stream ran past the tile's bytes, and at the tile's end,
whether bytes are left over).
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io.fits.hdu.compressed._compression import (
    CfitsioException,
    compress_rice_1_c,
    decompress_rice_1_c,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mascara_actors.rice_decoder import PAD, decode_rice_rows


def _stream(tiles: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tiles one after another in a padded buffer, their starts and sizes."""
    sizes = np.array([len(t) for t in tiles], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    buf = np.frombuffer(b"".join(tiles) + bytes(PAD), dtype=np.uint8).copy()
    return buf, starts, sizes


def _cfitsio(tile: bytes, columns: int, blocksize: int) -> np.ndarray | None:
    """cfitsio's pixels of one tile, shifted by BZERO as the decoder gives them; None when
    it refuses the tile."""
    try:
        stored = np.frombuffer(decompress_rice_1_c(tile, blocksize, 2, columns), np.int16)
    except CfitsioException:
        return None
    return stored.view(np.uint16) ^ np.uint16(0x8000)


def _ours(tile: bytes, columns: int, blocksize: int) -> np.ndarray | None:
    try:
        return decode_rice_rows(*_stream([tile]), columns, blocksize)[0]
    except ValueError:
        return None


# rows that take every kind of block: flat (code 0), raw 16-bit (code 15), small and large
# differences, and lone jumps whose unary runs outgrow a 64-bit word
_segment = st.one_of(
    st.tuples(st.integers(-32768, 32767), st.integers(1, 80)).map(
        lambda v: np.full(v[1], v[0], np.int16)),
    hnp.arrays(np.int16, st.integers(1, 80)),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 80), st.integers(0, 12)).map(
        lambda v: (1000 + np.random.default_rng(v[0]).normal(0, 2.0**v[2], v[1])
                   ).astype(np.int16)),
)
_rows = st.lists(_segment, min_size=1, max_size=8).map(np.concatenate)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_rows, min_size=1, max_size=4), blocksize=st.sampled_from([16, 32]))
def test_rows_decode_to_the_pixels_cfitsio_gives(rows: list[np.ndarray], blocksize: int
                                                  ) -> None:
    columns = min(len(r) for r in rows)
    rows = [r[:columns] for r in rows]
    tiles = [compress_rice_1_c(r.tobytes(), blocksize, 2) for r in rows]
    pixels = decode_rice_rows(*_stream(tiles), columns, blocksize)
    assert pixels.dtype == np.uint16
    assert np.array_equal(pixels, np.array(rows).view(np.uint16) ^ np.uint16(0x8000))
    for tile, row in zip(tiles, pixels, strict=True):
        assert np.array_equal(row, _cfitsio(tile, columns, blocksize))


def test_a_jump_longer_than_a_word_of_unary_zeros_decodes() -> None:
    row = np.full(64, 20, np.int16)
    row[40] = 30000  # a block of small differences but one: about 100 zeros in unary
    tile = compress_rice_1_c(row.tobytes(), 32, 2)
    assert _cfitsio(tile, 64, 32) is not None
    assert np.array_equal(_ours(tile, 64, 32), row.view(np.uint16) ^ np.uint16(0x8000))


@settings(max_examples=300, deadline=None)
@given(
    row=_rows,
    damage=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                    min_size=1, max_size=4),
    cut=st.floats(0, 1),
)
def test_damaged_tiles_are_refused_where_cfitsio_refuses_them(
    row: np.ndarray, damage: list[tuple[float, int]], cut: float
) -> None:
    tile = bytearray(compress_rice_1_c(row.tobytes(), 32, 2))
    for where, value in damage:
        tile[int(where * len(tile))] = value
    tile = tile[:max(3, round(cut * len(tile)))] if cut < 0.5 else tile
    reference = _cfitsio(bytes(tile), len(row), 32)
    ours = _ours(bytes(tile), len(row), 32)
    assert (ours is None) == (reference is None)
    if reference is not None:
        assert np.array_equal(ours, reference)


@pytest.mark.parametrize("fill", [0x00, 0xFF], ids=["zeros", "ones"])
def test_a_tile_of_one_byte_repeated_is_refused_without_reading_past_it(fill: int) -> None:
    """Zeros are one endless unary run; ones, raw blocks of 16 bits a pixel."""
    tile = bytes([fill]) * 40
    buf, starts, sizes = _stream([tile, tile])
    buf[len(tile) * 2:] = 0xAA  # the spare bytes: never taken for pixels
    with pytest.raises(ValueError, match="tile of image row 1 does not end with its 40 bytes"):
        decode_rice_rows(buf, starts, sizes, 4000, 32)
