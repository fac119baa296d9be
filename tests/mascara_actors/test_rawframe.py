"""Raw frames that must not be reduced as if they were good (issue 13, item 4 and smaller ones).

Each test writes a real FITS file (a frame of the committed night, altered) and reads it
with :func:`read_raw`, as the reducer does: the frame is refused with a FrameError that
names the file and what is wrong, never reduced under a wrong lstseq or pixel type.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from mascara_actors.errors import FrameError
from mascara_actors.rawframe import (
    RAW_PIXELS,
    FrameNameMismatch,
    RawFrame,
    raw_filename,
    read_raw,
    read_raw_header,
    write_raw,
)
from mascara_actors.rice_rows import read_rice_rows

NIGHT = Path(__file__).resolve().parents[2] / "replay_data" / "night"
LSTSEQ = 65344245


@pytest.fixture(scope="module")
def frame() -> RawFrame:
    """Science frame 65344245 of the committed night (read-only)."""
    return read_raw(NIGHT / f"{LSTSEQ}C.fits.fz")


@pytest.mark.parametrize("ext", [".fits", ".fits.fz", ".fits.gz"])
def test_a_good_frame_reads_back_as_uint16(tmp_path: Path, frame: RawFrame, ext: str) -> None:
    data = frame.data.copy()
    data[0, :5] = [0, 1, 32767, 32768, 65535]  # both ends of the type and the BZERO wrap
    path = write_raw(tmp_path / raw_filename(LSTSEQ, "C", ext=ext), data, frame.header)
    back = read_raw(path)
    assert back.data.dtype == np.uint16
    assert np.array_equal(back.data, data)
    # the same pixels as astropy's own scaling of the stored integers
    with fits.open(path) as hdul:
        assert np.array_equal(back.data, hdul[-1].data)
    assert back.header == frame.header


@pytest.mark.parametrize(
    ("change", "key", "found", "named"),
    [
        pytest.param({"lstseq": LSTSEQ + 1}, "LSTSEQ", LSTSEQ + 1, LSTSEQ, id="lstseq"),
        pytest.param({"camera": "N"}, "CAMERA", "'N'", "'C'", id="camera"),
        pytest.param({"imagetyp": "dark"}, "IMAGETYP", "'dark'", "'science'", id="imagetyp"),
    ],
)
def test_a_header_that_contradicts_the_file_name_is_refused(
    tmp_path: Path, frame: RawFrame, change: dict, key: str, found: object, named: object
) -> None:
    path = tmp_path / raw_filename(LSTSEQ, "C", ext=".fits.fz")
    write_raw(path, frame.data, dataclasses.replace(frame.header, **change))
    with pytest.raises(FrameNameMismatch) as info:
        read_raw(path)
    message = str(info.value)
    assert message.startswith(f"{path}: header {key} {found} but the name says {named}")
    assert "\n" not in message
    assert isinstance(info.value, FrameError)  # fails alone, as any bad frame does


@pytest.mark.parametrize(("imagetyp", "exptime", "refused"), [
    ("science", 0.0, True), ("science", -6.4, True), ("dark", 0.0, True),
    ("bias", -1.0, True), ("bias", 0.0, False), ("science", 6.4, False)])
def test_an_exposure_time_that_cannot_be_is_refused(
    tmp_path: Path, frame: RawFrame, imagetyp: str, exptime: float, refused: bool
) -> None:
    """Reduced as good points before, a dark scaled to it (0 or -6.4 s)."""
    path = tmp_path / raw_filename(LSTSEQ, "C", imagetyp, ext=".fits")
    write_raw(path, frame.data, dataclasses.replace(frame.header, imagetyp=imagetyp,
                                                    exptime=exptime))
    if not refused:
        assert read_raw(path).header.exptime == exptime
        return
    with pytest.raises(FrameError, match=re.escape(
            f"{path}: EXPTIME {exptime:g} s: only a bias frame has no exposure time, and none "
            "has a negative one")):
        read_raw(path)


def test_a_name_that_is_not_a_raw_frame_name_is_not_checked(
    tmp_path: Path, frame: RawFrame
) -> None:
    header = dataclasses.replace(frame.header, lstseq=LSTSEQ + 7, camera="N")
    raw = read_raw(write_raw(tmp_path / "x.fits", frame.data, header))
    assert (raw.header.lstseq, raw.header.camera) == (LSTSEQ + 7, "N")


def _gzipped(tmp_path: Path, frame: RawFrame, edit: Callable[[bytes], bytes]) -> Path:
    """The frame as ``.fits.gz``, its gzip stream (``edit`` of its bytes) altered."""
    path = write_raw(tmp_path / raw_filename(LSTSEQ, "C", ext=".fits.gz"), frame.data,
                     frame.header)
    path.write_bytes(edit(path.read_bytes()))
    return path


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        pytest.param(lambda b: b[: len(b) // 2], "unreadable FITS file .*gzip", id="cut-short"),
        pytest.param(lambda b: b[:5000] + bytes(1000) + b[6000:], "unreadable FITS file .*gzip",
                     id="crc-mismatch"),
        pytest.param(lambda b: b[:5000] + bytes(range(256)) * 4 + b[6024:],
                     "unreadable FITS file .*gzip", id="invalid-deflate-data"),
        pytest.param(lambda b: gzip.compress(gzip.decompress(b)[:-2880]), "truncated",
                     id="whole-gzip-of-a-cut-fits"),
    ],
)
def test_a_bad_gzipped_frame_is_refused_by_name(
    tmp_path: Path, frame: RawFrame, edit: Callable[[bytes], bytes], reason: str
) -> None:
    path = _gzipped(tmp_path, frame, edit)
    with pytest.raises(FrameError, match=re.escape(str(path)) + ": .*" + reason):
        read_raw(path)


def test_a_gzipped_frame_header_is_read_from_the_start_of_the_stream(
    tmp_path: Path, frame: RawFrame
) -> None:
    whole = _gzipped(tmp_path, frame, lambda b: b)
    assert read_raw_header(whole) == frame.header
    (tmp_path / "cut").mkdir()
    cut = _gzipped(tmp_path / "cut", frame, lambda b: b[: len(b) // 2])
    assert read_raw_header(cut) == frame.header  # the pixels' half is never unpacked
    with pytest.raises(FrameError, match="gzip"):
        read_raw(cut)


def test_a_plain_fits_file_named_gz_is_read_as_plain(tmp_path: Path, frame: RawFrame) -> None:
    """Gzipped or not is decided by the file's first bytes, as astropy decides it."""
    plain = write_raw(tmp_path / raw_filename(LSTSEQ, "C"), frame.data, frame.header)
    named = plain.rename(tmp_path / raw_filename(LSTSEQ, "C", ext=".fits.gz"))
    assert read_raw_header(named) == frame.header
    assert np.array_equal(read_raw(named).data, frame.data)


def test_a_gzipped_header_with_a_bad_layout_keyword_is_refused(
    tmp_path: Path, frame: RawFrame
) -> None:
    """The header read from the stream's start gets the layout check a whole file gets."""
    def bad_naxis1(b: bytes) -> bytes:
        fits_bytes = bytearray(gzip.decompress(b))
        at = fits_bytes.index(b"NAXIS1  =")
        fits_bytes[at + 10:at + 30] = b"'abc'".rjust(20)
        return gzip.compress(bytes(fits_bytes))

    path = _gzipped(tmp_path, frame, bad_naxis1)
    for read in (read_raw_header, read_raw):
        with pytest.raises(FrameError, match="FITS keyword NAXIS1 is not an integer"):
            read(path)


def _corrupt_card(path: Path, key: str, char: bytes) -> None:
    """Put ``char`` inside the string value of card ``key`` of the primary header."""
    data = bytearray(path.read_bytes())
    start = data.index(key.ljust(8).encode() + b"= '")
    data[start + 12] = char[0]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("key", "char"),
    [("SITE-OBS", b"\x07"), ("UTC-OBS", b"\x00"), ("CAMERA", b"\x1b")],
    ids=["bell-in-site", "nul-in-utc", "escape-in-camera"],
)
def test_control_characters_in_a_card_name_the_file_and_the_key(
    tmp_path: Path, frame: RawFrame, key: str, char: bytes
) -> None:
    path = write_raw(tmp_path / raw_filename(LSTSEQ, "C"), frame.data, frame.header)
    _corrupt_card(path, key, char)
    with pytest.raises(FrameError) as info:
        read_raw(path)
    message = str(info.value)
    assert message.startswith(f"{path}: header card {key} is unparsable")
    assert "control characters" in message


@pytest.mark.parametrize(
    ("dtype", "found"),
    [
        (np.float32, "float32 (BITPIX -32, BZERO 0)"),
        (np.int16, "signed 16-bit (BITPIX 16, BZERO 0)"),
        (np.int32, "32-bit integers (BITPIX 32, BZERO 0)"),
    ],
    ids=["float32", "int16-without-bzero", "int32"],
)
def test_pixels_that_are_not_uint16_are_refused(
    tmp_path: Path, frame: RawFrame, dtype: type, found: str
) -> None:
    path = tmp_path / raw_filename(LSTSEQ, "C")
    cards = fits.Header(list(frame.header.to_cards().items()))
    data = np.minimum(frame.data, 30000).astype(dtype)  # values that fit every type
    fits.PrimaryHDU(data, header=cards).writeto(path)
    with pytest.raises(FrameError) as info:
        read_raw(path)
    assert str(info.value).startswith(f"{path}: pixels are {found}, but {RAW_PIXELS}")
    assert RAW_PIXELS == "raw frames are unsigned 16-bit: BITPIX 16 with BZERO 32768"


def test_a_rice_compressed_float_frame_is_refused(tmp_path: Path, frame: RawFrame) -> None:
    path = tmp_path / raw_filename(LSTSEQ, "C", ext=".fits.fz")
    cards = fits.Header(list(frame.header.to_cards().items()))
    hdu = fits.CompImageHDU(frame.data.astype(np.float32), header=cards, compression_type="RICE_1")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    with pytest.raises(FrameError, match=re.escape(f"{path}: pixels are float32")):
        read_raw(path)


# --- Rice row tiles: the fast decoder against astropy's general reader ---------------------


def _write_tiles(path: Path, frame: RawFrame, **layout: object) -> Path:
    cards = fits.Header(list(frame.header.to_cards().items()))
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(frame.data, header=cards, **layout)]
                 ).writeto(path)
    return path


def _heap(path: Path) -> tuple[int, int, int]:
    """File offsets of HDU 1's compressed table and of its heap; the heap's size (bytes)."""
    with fits.open(path, disable_image_compression=True) as hdul:
        start, header = hdul[1].fileinfo()["datLoc"], hdul[1].header
        table = header["NAXIS1"] * header["NAXIS2"]
        return start, start + header.get("THEAP", table), header["PCOUNT"]


def test_rice_row_tiles_decode_to_the_pixels_astropy_reads(tmp_path: Path, frame: RawFrame) -> None:
    data = frame.data.copy()
    data[0, :4] = [0, 1, 32768, 65535]  # both ends of the type and the BZERO wrap
    path = write_raw(tmp_path / raw_filename(LSTSEQ, "C", ext=".fits.fz"), data, frame.header)
    fast = read_rice_rows(path, 1)
    assert fast is not None
    assert fast.dtype == np.uint16
    with fits.open(path) as hdul:
        assert np.array_equal(fast, hdul[1].data)
    assert np.array_equal(read_raw(path).data, data)


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param({"compression_type": "RICE_1", "tile_shape": (16, 16)}, id="square-tiles"),
        pytest.param({"compression_type": "GZIP_1"}, id="gzip-tiles"),
    ],
)
def test_other_tile_layouts_are_read_by_astropy(
    tmp_path: Path, frame: RawFrame, layout: dict
) -> None:
    path = _write_tiles(tmp_path / raw_filename(LSTSEQ, "C", ext=".fits.fz"), frame, **layout)
    assert read_rice_rows(path, 1) is None
    assert np.array_equal(read_raw(path).data, frame.data)


def _rewrite_table(path: Path, *, wide: bool = False, gap: int = 0, drop: tuple[str, ...] = ()
                   ) -> None:
    """Rewrite HDU 1's compressed table in place: 64-bit (Q) descriptors when ``wide``, a
    ``gap``-byte gap before the heap (THEAP), header cards ``drop`` removed."""
    raw = path.read_bytes()
    with fits.open(path, disable_image_compression=True) as hdul:
        info, header = hdul[1].fileinfo(), hdul[1].header.copy()
    rows = header["NAXIS2"]
    table = header["NAXIS1"] * rows
    data = raw[info["datLoc"]:info["datLoc"] + table + header["PCOUNT"]]
    descriptors, heap = data[:table], data[table:]
    if wide:
        descriptors = np.frombuffer(descriptors, ">i4").astype(">i8").tobytes()
        header["TFORM1"] = header["TFORM1"].replace("P", "Q")
        header["NAXIS1"] = 16
    for key in drop:
        del header[key]
    if gap:
        header["THEAP"] = len(descriptors) + gap
    header["PCOUNT"] = gap + len(heap)
    body = descriptors + bytes(gap) + heap
    body += bytes(-len(body) % 2880)
    path.write_bytes(raw[:info["hdrLoc"]] + header.tostring(padding=True).encode() + body)


@pytest.mark.parametrize(
    ("change", "fast"),
    [
        pytest.param({"wide": True}, True, id="64-bit-descriptors"),
        pytest.param({"gap": 1000}, True, id="gap-before-the-heap"),
        pytest.param({"drop": ("ZNAME2", "ZVAL2")}, False, id="no-BYTEPIX-means-4"),
    ],
)
def test_rice_tables_as_the_convention_allows_decode_as_astropy_does(
    tmp_path: Path, frame: RawFrame, change: dict, fast: bool
) -> None:
    path = write_raw(tmp_path / raw_filename(LSTSEQ, "C", ext=".fits.fz"), frame.data,
                     frame.header)
    _rewrite_table(path, **change)
    assert (read_rice_rows(path, 1) is not None) == fast
    if fast:
        assert np.array_equal(read_raw(path).data, frame.data)
        with fits.open(path) as hdul:
            assert np.array_equal(hdul[1].data, frame.data)  # astropy agrees the file is right


def test_a_gzipped_rice_file_is_read_by_astropy(tmp_path: Path, frame: RawFrame) -> None:
    path = _write_tiles(tmp_path / raw_filename(LSTSEQ, "C", ext=".fits.gz"), frame,
                        compression_type="RICE_1")
    assert read_rice_rows(path, 1) is None  # its offsets are in the unpacked bytes
    assert np.array_equal(read_raw(path).data, frame.data)


def test_a_tile_pointing_outside_the_heap_makes_the_frame_unreadable(
    tmp_path: Path, frame: RawFrame
) -> None:
    path = write_raw(tmp_path / raw_filename(LSTSEQ, "C", ext=".fits.fz"), frame.data,
                     frame.header)
    start, _, size = _heap(path)
    raw = bytearray(path.read_bytes())
    raw[start + 4:start + 8] = size.to_bytes(4, "big")  # row 0 starts where the heap ends
    path.write_bytes(bytes(raw))
    with pytest.raises(FrameError, match=re.escape(
            f"{path}: unreadable FITS file (a tile descriptor points outside the heap)")):
        read_raw(path)


@pytest.mark.parametrize("where", ["before-the-file", "inside-the-table", "past-the-end"])
def test_a_heap_offset_outside_the_data_makes_the_frame_unreadable(
    tmp_path: Path, frame: RawFrame, where: str
) -> None:
    path = write_raw(tmp_path / raw_filename(LSTSEQ, "C", ext=".fits.fz"), frame.data,
                     frame.header)
    start, heap_at, size = _heap(path)
    theap = {"before-the-file": -16, "inside-the-table": 8,
             "past-the-end": heap_at - start + size + 8}[where]
    raw = path.read_bytes()
    with fits.open(path, disable_image_compression=True) as hdul:
        info, header = hdul[1].fileinfo(), hdul[1].header.copy()
    header["THEAP"] = theap
    card = header.tostring(padding=True).encode()
    assert len(card) == info["datLoc"] - info["hdrLoc"]  # the header keeps its size
    path.write_bytes(raw[:info["hdrLoc"]] + card + raw[info["datLoc"]:])
    with pytest.raises(FrameError, match=re.escape(
            f"{path}: unreadable FITS file (THEAP = {theap} puts the heap outside the "
            "table's data area)")):
        read_raw(path)


@pytest.mark.parametrize(
    ("layout", "error"),
    [
        pytest.param({}, "the Rice tile of image row 1 does not end with its", id="row-tiles"),
        pytest.param({"tile_shape": (16, 16)}, "decompression error", id="square-tiles"),
    ],
)
def test_damaged_rice_bytes_make_the_frame_unreadable(
    tmp_path: Path, frame: RawFrame, layout: dict, error: str
) -> None:
    path = _write_tiles(tmp_path / raw_filename(LSTSEQ, "C", ext=".fits.fz"), frame,
                        compression_type="RICE_1", **layout)
    _, heap_at, size = _heap(path)
    raw = bytearray(path.read_bytes())
    raw[heap_at:heap_at + size] = b"\xff" * size  # every tile's bit stream overruns its end
    path.write_bytes(bytes(raw))
    with pytest.raises(FrameError, match=re.escape(
            f"{path}: unreadable FITS file (damaged compressed pixels: {error}")):
        read_raw(path)
