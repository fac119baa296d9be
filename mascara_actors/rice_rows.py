"""Fast decoding of Rice-compressed raw frames stored one image row per tile.

That is the layout fpack and astropy write by default, and the one of every ``.fits.fz`` raw
frame. astropy decodes a tile-compressed image tile by tile with about 10 microseconds of
Python per tile; a raw frame has 2,720 row tiles, so the loop cost a third of the frame's
read (profile in issue 17). Here the tile descriptors are read with numpy and every row is
decoded in one call of :mod:`~mascara_actors.rice_decoder`, twice as fast as astropy's C.

Any other layout (other tile shapes or codecs, quantised floats, null-pixel or fallback
columns) gives None, and the caller reads the HDU with astropy's general reader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

try:  # the error of astropy's (private) tile decoders, for the layouts it reads
    from astropy.io.fits.hdu.compressed._compression import CfitsioException
except ImportError:  # pragma: no cover - depends on the astropy release
    CfitsioException = None

__all__ = ["CODEC_ERRORS", "read_rice_rows"]

CODEC_ERRORS: tuple[type[Exception], ...] = (
    (CfitsioException,) if CfitsioException is not None else ()
)
"""What astropy's tile decoders raise on damaged compressed bytes (not a ValueError)."""

_DESCRIPTOR = {"P": ">i4", "Q": ">i8"}
"""Heap descriptor (element count, byte offset) of a variable-length column, per TFORM."""


def read_rice_rows(path: Path, index: int) -> np.ndarray | None:
    """The uint16 pixels (BZERO 32768) of the tile-compressed HDU ``index`` of ``path``.

    None when the HDU is not 16-bit Rice with one row per tile, or the whole file is
    gzipped; ValueError when its table or heap does not fit the file or a tile's bytes are
    damaged (the caller reports the file as unreadable).
    """
    with fits.open(path, memmap=False, disable_image_compression=True) as hdul:
        hdu = hdul[index]
        header = hdu.header
        info = hdu.fileinfo()
    if info["file"].compression is not None:  # datLoc is then in the unpacked bytes
        return None
    start = info["datLoc"]
    layout = _row_tiles(header)
    if layout is None:
        return None
    ny, nx, descriptor, blocksize = layout
    table_bytes = header["NAXIS1"] * ny
    size = table_bytes + header["PCOUNT"]  # the table, then the heap (after a gap, if THEAP says)
    # numba's start (0.25 s) is paid by the processes that read Rice frames, not by all
    from mascara_actors.rice_decoder import PAD, decode_rice_rows

    buf = np.empty(size + PAD, dtype=np.uint8)
    buf[size:] = 0
    with path.open("rb") as fh:
        fh.seek(start)
        got = fh.readinto(buf[:size].data)
    if got < size:
        raise ValueError("the compressed table is cut short")
    tiles = buf[:table_bytes].view(descriptor).reshape(ny, 2).astype(np.int64)
    sizes, offsets = np.ascontiguousarray(tiles.T)  # one compiled form: contiguous
    heap = int(header.get("THEAP", table_bytes))
    if not table_bytes <= heap <= size:
        raise ValueError(f"THEAP = {heap} puts the heap outside the table's data area")
    if (sizes < 0).any() or (offsets < 0).any() or (sizes + offsets > size - heap).any():
        raise ValueError("a tile descriptor points outside the heap")
    return decode_rice_rows(buf, offsets + heap, sizes, nx, blocksize)


def _row_tiles(header: fits.Header) -> tuple[int, int, str, int] | None:
    """(rows, columns, descriptor dtype, Rice block size) of a 16-bit Rice image with one
    row per tile, else None."""
    form = str(header.get("TFORM1", ""))
    kind = form.lstrip("0123456789")[:1]
    simple = (
        header.get("ZIMAGE") is True
        and header.get("ZCMPTYPE") in ("RICE_1", "RICE_ONE")
        and header.get("ZBITPIX") == 16
        and header.get("ZNAXIS") == 2
        and header.get("TFIELDS") == 1
        and header.get("TTYPE1") == "COMPRESSED_DATA"
        and kind in _DESCRIPTOR
        and header.get("NAXIS1") == 2 * np.dtype(_DESCRIPTOR[kind]).itemsize
        and form.lstrip("0123456789")[1:2] == "B"
        and header.get("ZTILE1", header.get("ZNAXIS1")) == header.get("ZNAXIS1")
        and header.get("ZTILE2", 1) == 1
        and header.get("NAXIS2") == header.get("ZNAXIS2")
        and header.get("BZERO") == 32768
        and header.get("BSCALE", 1) == 1
        and "ZBLANK" not in header
        and _setting(header, "BYTEPIX", 4) == 2
    )
    blocksize = _setting(header, "BLOCKSIZE", 32)
    if not simple or blocksize is None:
        return None
    return int(header["ZNAXIS2"]), int(header["ZNAXIS1"]), _DESCRIPTOR[kind], blocksize


def _setting(header: fits.Header, name: str, default: int) -> int | None:
    """A compression parameter: the ZVALi whose ZNAMEi is ``name`` (FITS tile compression);
    None when that ZVALi is missing or not an integer."""
    i = 1
    while f"ZNAME{i}" in header:
        if str(header[f"ZNAME{i}"]).upper() == name:
            value = header.get(f"ZVAL{i}")
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        i += 1
    return default
