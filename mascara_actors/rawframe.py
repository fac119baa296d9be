"""Raw frames: file names, header keys, reading and writing (DESIGN.md section 3).

A raw frame is a FITS file of uint16 pixels (BITPIX 16, BZERO 32768) holding the full
readout, overscan included; the science region is ``data[Y0:Y0+YSIZE, X0:X0+XSIZE]``. Names
start with the zero-padded lstseq (at least 8 digits, more after 2033):
``{lstseq:08d}{CAM}.fits`` for science frames, ``{lstseq:08d}{CAM}{kind}.fits`` for
``dark``, ``bias`` and ``flat`` frames; ``.fits.gz`` and ``.fits.fz`` (Rice) too.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError

from mascara_actors.atomic_files import atomic_write_bytes
from mascara_actors.errors import FrameError
from mascara_actors.fits_layout import gzip_primary_header, open_fits, unpack_gzip
from mascara_actors.rice_rows import CODEC_ERRORS, read_rice_rows
from mascara_actors.sidereal import (
    SIDEREAL_DAY_S,
    SLOT_SIDEREAL_S,
    jd_to_datetime,
    lstidx,
    lstseq2date,
)

__all__ = [
    "FRAME_KINDS",
    "RAW_PIXELS",
    "FrameNameMismatch",
    "RawFrame",
    "RawHeader",
    "check_name_agrees",
    "check_raw_pixels",
    "parse_raw_filename",
    "raw_filename",
    "raw_pixels",
    "read_raw",
    "read_raw_header",
    "write_raw",
]

FRAME_KINDS = ("science", "dark", "bias", "flat")
UTC_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_NAME = re.compile(
    r"^(?P<lstseq>\d{8,})(?P<cam>[NESWC])(?P<kind>dark|bias|flat)?\.fits(\.gz|\.fz)?$"
)
_REQUIRED = (
    "LSTSEQ",
    "LSTIDX",
    "LST",
    "JD",
    "JDMID",
    "UTC-OBS",
    "EXPTIME",
    "CCDTEMP",
    "SITE-OBS",
    "CAMERA",
    "IMAGETYP",
    "X0",
    "XSIZE",
    "Y0",
    "YSIZE",
)
RAW_PIXELS = "raw frames are unsigned 16-bit: BITPIX 16 with BZERO 32768"
"""The pixel type every raw frame must have, as the refusal says it."""
_HEADER_TROUBLE = (VerifyError, ValueError, TypeError, KeyError, UnicodeError, Warning)
"""What astropy raises for a damaged card (Warning: when warnings are errors)."""
_PIXEL_KINDS = {"8": "8-bit", "16": "signed 16-bit", "32": "32-bit integers",
                "64": "64-bit integers", "-32": "float32", "-64": "float64"}


class FrameNameMismatch(FrameError):
    """A raw frame's header contradicts its file name (LSTSEQ, CAMERA or IMAGETYP).

    The name is what placed the file in the night, so neither can be trusted: the frame is
    skipped, alone.
    """


def raw_filename(
    lstseq: int, camera_letter: str, kind: str = "science", *, ext: str = ".fits"
) -> str:
    """File name of a raw frame, e.g. ``00123456C.fits`` or ``00123456Cdark.fits.fz``."""
    if kind not in FRAME_KINDS:
        raise ValueError(f"kind must be one of {FRAME_KINDS}, got {kind!r}")
    if ext not in (".fits", ".fits.gz", ".fits.fz"):
        raise ValueError(f"ext must be .fits, .fits.gz or .fits.fz, got {ext!r}")
    suffix = "" if kind == "science" else kind
    return f"{lstseq:08d}{camera_letter}{suffix}{ext}"


def parse_raw_filename(name: str) -> tuple[int, str, str] | None:
    """``(lstseq, camera letter, kind)`` of a raw file name, or None when it is not one."""
    m = _NAME.match(os.path.basename(name))
    if m is None:
        return None
    return int(m["lstseq"]), m["cam"], m["kind"] or "science"


@dataclass(frozen=True, slots=True)
class RawHeader:
    """The header keys the reduction needs, typed (units in the names or docstring)."""

    lstseq: int
    lstidx: int
    lst: float
    """LST at the start of the exposure, hours."""
    jd: float
    """JD (UTC) at the start of the exposure."""
    jdmid: float
    """JD (UTC) at mid-exposure: star positions belong to this time."""
    utc: datetime
    exptime: float
    """Exposure time, seconds."""
    ccdtemp: float
    """CCD temperature, degrees C."""
    site: str
    camera: str
    imagetyp: str
    x0: int
    xsize: int
    y0: int
    ysize: int
    dwldtime: float = 0.0
    margtime: float = 0.0

    @classmethod
    def from_fits(cls, header: fits.Header, *, source: str = "frame") -> RawHeader:
        """Parse and check a FITS header; FrameError names the file and the bad key.

        Any problem with a card (missing, unparsable as control characters make it, a value
        of the wrong type) becomes a :class:`FrameError` naming ``source`` and the key.
        """
        try:
            missing = [k for k in _REQUIRED if k not in header]
        except _HEADER_TROUBLE as exc:
            raise FrameError(
                f"{source}: damaged header ({exc}); check what writes the headers"
            ) from None
        if missing:
            raise FrameError(f"{source}: header lacks {missing}; is it a MASCARA raw frame?")

        def get(key: str, convert: Any, what: str, default: Any = None) -> Any:
            try:
                if default is not None and key not in header:
                    return default
                value = header[key]
            except _HEADER_TROUBLE:
                raise FrameError(
                    f"{source}: header card {key} is unparsable (control characters or a "
                    "malformed value); check what writes the headers"
                ) from None
            if isinstance(value, str) and not value.isprintable():
                raise FrameError(
                    f"{source}: header key {key} = {value!r} holds control characters; "
                    "check what writes the headers"
                )
            try:
                return convert(value)
            except (TypeError, ValueError, OverflowError):
                raise FrameError(
                    f"{source}: header key {key} = {value!r} is not {what}; check what "
                    "writes the headers"
                ) from None

        def utc(value: Any) -> datetime:
            return datetime.strptime(str(value).replace("T", " "), UTC_FORMAT)

        def text(value: Any) -> str:
            if not isinstance(value, str):
                raise TypeError(value)
            return value.strip()

        number, integer = "a number", "an integer"
        values: dict[str, Any] = {
            "lstseq": get("LSTSEQ", int, integer),
            "lstidx": get("LSTIDX", int, integer),
            "lst": get("LST", float, number),
            "jd": get("JD", float, number),
            "jdmid": get("JDMID", float, number),
            "utc": get("UTC-OBS", utc, f"a UTC time as {UTC_FORMAT}"),
            "exptime": get("EXPTIME", float, number),
            "ccdtemp": get("CCDTEMP", float, number),
            "site": get("SITE-OBS", text, "a string"),
            "camera": get("CAMERA", text, "a string"),
            "imagetyp": get("IMAGETYP", text, "a string").lower(),
            "x0": get("X0", int, integer),
            "xsize": get("XSIZE", int, integer),
            "y0": get("Y0", int, integer),
            "ysize": get("YSIZE", int, integer),
            "dwldtime": get("DWLDTIME", float, number, 0.0),
            "margtime": get("MARGTIME", float, number, 0.0),
        }
        if not all(np.isfinite([values["lst"], values["jd"], values["jdmid"], values["exptime"]])):
            raise FrameError(f"{source}: LST, JD, JDMID and EXPTIME must be finite numbers")
        if values["exptime"] < 0 or (values["exptime"] == 0 and values["imagetyp"] != "bias"):
            raise FrameError(f"{source}: EXPTIME {values['exptime']:g} s: only a bias frame "
                             "has no exposure time, and none has a negative one")
        if values["imagetyp"] not in FRAME_KINDS:
            raise FrameError(
                f"{source}: IMAGETYP {values['imagetyp']!r} is not one of {FRAME_KINDS}"
            )
        return cls(**values)

    @classmethod
    def of_exposure(
        cls,
        lstseq: int,
        *,
        jd: float,
        exptime: float,
        ccdtemp: float,
        site: str,
        camera: str,
        imagetyp: str,
        x0: int,
        xsize: int,
        y0: int,
        ysize: int,
        dwldtime: float = 0.0,
        margtime: float = 0.0,
    ) -> RawHeader:
        """The header of the exposure of slot ``lstseq`` that started at ``jd`` (UTC JD).

        The one place where the time keys of a raw frame are derived (the live camera and
        the simulator both call it): ``LSTIDX`` is ``lstseq``'s slot of the sidereal day;
        ``LST`` is that slot's start (``LSTIDX`` x 6.4 sidereal seconds, exact by the
        definition of lstseq) plus the sidereal time from the slot's start to ``jd``, which
        is nothing for a camera that opens on the slot boundary, as the simulated one does;
        ``JDMID = JD + EXPTIME / 2``; ``UTC-OBS`` is ``jd`` as a calendar time
        (:func:`~mascara_actors.sidereal.jd_to_datetime`, leap-second days included).

        Parameters
        ----------
        lstseq
            The slot.
        jd
            Exposure start, JD (UTC).
        exptime
            Exposure time, seconds (0 for a bias).
        ccdtemp
            CCD temperature, degrees C.
        site, camera, imagetyp
            ``SITE-OBS``, ``CAMERA`` (letter) and ``IMAGETYP`` (science, dark, bias, flat).
        x0, xsize, y0, ysize
            The science region, pixels.
        dwldtime, margtime
            Readout and margin times, seconds.
        """
        lstseq = int(lstseq)
        slot = int(lstidx(lstseq))
        after_start_h = (jd - float(lstseq2date(lstseq, format="jd"))) * 24.0
        lst = slot * SLOT_SIDEREAL_S / 3600.0 + after_start_h * (86400.0 / SIDEREAL_DAY_S)
        return cls(
            lstseq=lstseq,
            lstidx=slot,
            lst=lst % 24.0,
            jd=jd,
            jdmid=jd + exptime / 2.0 / 86400.0,
            utc=jd_to_datetime(jd).replace(tzinfo=None),
            exptime=exptime,
            ccdtemp=ccdtemp,
            site=site,
            camera=camera,
            imagetyp=imagetyp,
            x0=x0,
            xsize=xsize,
            y0=y0,
            ysize=ysize,
            dwldtime=dwldtime,
            margtime=margtime,
        )

    def to_cards(self) -> dict[str, Any]:
        """The header as FITS keyword values."""
        return {
            "LSTSEQ": self.lstseq,
            "LSTIDX": self.lstidx,
            "LST": self.lst,
            "JD": self.jd,
            "JDMID": self.jdmid,
            "UTC-OBS": self.utc.strftime(UTC_FORMAT),
            "EXPTIME": self.exptime,
            "CCDTEMP": self.ccdtemp,
            "SITE-OBS": self.site,
            "CAMERA": self.camera,
            "IMAGETYP": self.imagetyp,
            "X0": self.x0,
            "XSIZE": self.xsize,
            "Y0": self.y0,
            "YSIZE": self.ysize,
            "DWLDTIME": self.dwldtime,
            "MARGTIME": self.margtime,
        }


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A raw frame: full readout (uint16, ADU) and its header."""

    data: np.ndarray
    header: RawHeader
    path: Path | None = None

    def science(self) -> np.ndarray:
        """The science region (a view), uint16 ADU."""
        h = self.header
        return self.data[h.y0 : h.y0 + h.ysize, h.x0 : h.x0 + h.xsize]


def check_name_agrees(path: str | Path, header: RawHeader) -> None:
    """Refuse a raw frame whose header contradicts its file name.

    Only names that parse as raw-frame names (:func:`parse_raw_filename`) are checked: the
    header's LSTSEQ, CAMERA and IMAGETYP must be the lstseq, camera letter and kind the name
    gives. Other names (a temporary file, ``x.fits``) are not checked.

    Raises
    ------
    FrameNameMismatch
        Naming the file and, for each key that disagrees, both values.
    """
    parsed = parse_raw_filename(Path(path).name)
    if parsed is None:
        return
    lstseq, camera, kind = parsed
    wrong = [
        f"{key} {got!r} but the name says {want!r}"
        for key, got, want in (
            ("LSTSEQ", header.lstseq, lstseq),
            ("CAMERA", header.camera, camera),
            ("IMAGETYP", header.imagetyp, kind),
        )
        if got != want
    ]
    if wrong:
        raise FrameNameMismatch(
            f"{path}: header {'; '.join(wrong)}: the file name and the header must agree; "
            "rename the file or fix its header"
        )


def check_raw_pixels(header: fits.Header, source: str) -> None:
    """Refuse pixels that are not unsigned 16-bit (:data:`RAW_PIXELS`) from the header.

    ``header`` is the image HDU's header (for a Rice-compressed frame, the image header that
    astropy shows, not the table's). FrameError names ``source``, the type found and the
    type expected.
    """
    try:
        bitpix = header.get("BITPIX")
        bzero = header.get("BZERO", 0)
        bscale = header.get("BSCALE", 1)
    except _HEADER_TROUBLE:
        raise FrameError(
            f"{source}: header cards BITPIX/BZERO/BSCALE are unparsable; {RAW_PIXELS}"
        ) from None
    if bitpix != 16 or bzero != 32768 or bscale != 1:
        found = f"BITPIX {bitpix}, BZERO {bzero}" + (f", BSCALE {bscale}" if bscale != 1 else "")
        kind = "scaled 16-bit" if bitpix == 16 and bzero == 32768 else _PIXEL_KINDS.get(
            str(bitpix), "of an unknown type")
        raise FrameError(
            f"{source}: pixels are {kind} ({found}), but {RAW_PIXELS}; was the file written "
            "by another program?"
        )


def read_raw(path: str | Path) -> RawFrame:
    """Read a raw frame (plain, gzip or Rice); FrameError names the file on any problem.

    Refused, each with a FrameError naming the file: a truncated or unreadable file, a
    damaged header (the key is named), pixels that are not unsigned 16-bit
    (:data:`RAW_PIXELS`), a science region that does not fit, and a header whose LSTSEQ,
    CAMERA or IMAGETYP disagrees with a raw-frame file name (:class:`FrameNameMismatch`,
    see :func:`check_name_agrees`).
    """
    path = Path(path)
    raw, data = _read(path, pixels=True)
    assert data is not None
    if data.ndim != 2:
        raise FrameError(f"{path}: image must be 2-D, got shape {data.shape}")
    if data.dtype != np.uint16:  # the header said uint16; astropy must agree
        raise FrameError(f"{path}: pixel type {data.dtype}, but {RAW_PIXELS}")
    if raw.y0 + raw.ysize > data.shape[0] or raw.x0 + raw.xsize > data.shape[1]:
        raise FrameError(
            f"{path}: science region X0={raw.x0} XSIZE={raw.xsize} Y0={raw.y0} YSIZE={raw.ysize} "
            f"does not fit the {data.shape[1]} x {data.shape[0]} image"
        )
    return RawFrame(data=data, header=raw, path=path)


def read_raw_header(path: str | Path) -> RawHeader:
    """The header of a raw frame, its pixels not read (to scan an archive); refused as
    :func:`read_raw` refuses, but for what only the pixels show (and, for a gzipped frame,
    a stream cut short or damaged after the header: only the start is unpacked)."""
    return _read(Path(path), pixels=False)[0]


def raw_pixels(path: Path, hdul: fits.HDUList, hdu: Any, content: bytes | None = None,
               ) -> np.ndarray:
    """The uint16 pixels of image HDU ``hdu`` of ``hdul``, opened from ``path``, whose header
    :func:`check_raw_pixels` passed: Rice row tiles by the fast decoder
    (:mod:`~mascara_actors.rice_rows`), the primary image of a gzipped file straight from
    its unpacked bytes ``content`` (``hdul`` opened from them; astropy would copy them
    through its file layer first, a quarter of such a read), anything else by astropy,
    scaled or not (``hdul`` opened with ``scaled=False``: the stored int16 are shifted by
    BZERO here, in half astropy's time).

    ValueError for damaged compressed data, as for the other ways a file can be unreadable.
    """
    try:
        if content is not None and hdu is hdul[0]:
            # the layout check of unpack_gzip saw these bytes hold the whole image
            start = int(hdu.fileinfo()["datLoc"])
            count = math.prod(hdu.shape)
            return _unsigned(np.frombuffer(content, ">i2", count, start).reshape(hdu.shape))
        if isinstance(hdu, fits.CompImageHDU):
            data = read_rice_rows(path, hdul.index(hdu))
            if data is not None:
                return data
        return _unsigned(np.asarray(hdu.data))
    except CODEC_ERRORS as exc:
        raise ValueError(f"damaged compressed pixels: {exc}") from None


def _unsigned(stored: np.ndarray) -> np.ndarray:
    """uint16 pixels from 16-bit integers stored with BZERO 32768 (returned as they are when
    already scaled). Adding 32768 to an int16 is flipping its sign bit; one ufunc pass
    flips it and puts the bytes in native order: 1.8 ms for a full big-endian frame, against
    18 ms for astropy's cast-then-subtract and 7.7 ms for a byte swap in place then a flip."""
    if stored.dtype.kind != "i":
        return stored
    bits = stored.view(np.dtype(np.uint16).newbyteorder(stored.dtype.byteorder))
    pixels: np.ndarray = np.bitwise_xor(bits, np.uint16(0x8000), dtype=np.uint16)
    return pixels


def _read(path: Path, *, pixels: bool) -> tuple[RawHeader, np.ndarray | None]:
    data = None
    try:
        header = None
        if not pixels:
            header = gzip_primary_header(path)  # None unless gzipped
            if header is not None and not header.get("NAXIS", 0):
                header = None  # the image is in an extension: astropy finds it
        if header is not None:
            check_raw_pixels(header, str(path))
        else:
            content = unpack_gzip(path) if pixels else None
            with open_fits(path, scaled=False, content=content) as hdul:
                hdu = next((h for h in hdul if h.is_image and h.header.get("NAXIS", 0)), None)
                if hdu is None:
                    raise FrameError(f"{path}: no image data in the file")
                header = hdu.header.copy()
                check_raw_pixels(header, str(path))
                if pixels:
                    data = raw_pixels(path, hdul, hdu, content)
    except FrameError:
        raise
    except (OSError, ValueError, TypeError, IndexError, EOFError, VerifyError) as exc:
        raise FrameError(f"{path}: unreadable FITS file ({exc})") from None
    raw = RawHeader.from_fits(header, source=str(path))
    check_name_agrees(path, raw)
    return raw, data


def write_raw(
    path: str | Path, data: np.ndarray, header: RawHeader, *, extra: dict[str, Any] | None = None
) -> Path:
    """Write a raw frame atomically (fsync, rename); the compression follows the suffix.

    ``.fits``: plain; ``.gz``: the whole file gzipped; ``.fz``: Rice-compressed image tiles.
    Raises StorageError (and leaves no partial file) when the write fails.
    """
    path = Path(path)
    if data.dtype != np.uint16:
        raise ValueError(f"raw frames are uint16, got {data.dtype}")
    cards = fits.Header()
    for key, value in {**header.to_cards(), **(extra or {})}.items():
        cards[key] = value
    if path.name.endswith(".fz"):
        hdul = fits.HDUList(
            [fits.PrimaryHDU(), fits.CompImageHDU(data, header=cards, compression_type="RICE_1")]
        )
    else:
        hdul = fits.HDUList([fits.PrimaryHDU(data, header=cards)])
    buf = io.BytesIO()
    hdul.writeto(buf)
    data_bytes = buf.getvalue()
    if path.name.endswith(".gz"):
        data_bytes = gzip.compress(data_bytes, mtime=0)  # mtime 0: the same frame, the same bytes
    return atomic_write_bytes(path, data_bytes)
