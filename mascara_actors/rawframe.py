"""Raw frames: file names, header keys, reading and writing (DESIGN.md section 3).

A raw frame is a FITS file of uint16 pixels (BITPIX 16, BZERO 32768) holding the full
readout, overscan included; the science region is ``data[Y0:Y0+YSIZE, X0:X0+XSIZE]``. Names
start with the zero-padded lstseq (at least 8 digits, more after 2033):
``{lstseq:08d}{CAM}.fits`` for science frames, ``{lstseq:08d}{CAM}{kind}.fits`` for
``dark``, ``bias`` and ``flat`` frames; ``.fits.gz`` and ``.fits.fz`` (Rice) too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from mascara_actors.errors import FrameError
from mascara_actors.fits_layout import check_fits_layout

__all__ = [
    "FRAME_KINDS",
    "RawFrame",
    "RawHeader",
    "parse_raw_filename",
    "raw_filename",
    "read_raw",
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
        """Parse and check a FITS header; FrameError names the file and the missing keys."""
        missing = [k for k in _REQUIRED if k not in header]
        if missing:
            raise FrameError(f"{source}: header lacks {missing}; is it a MASCARA raw frame?")
        try:
            utc = datetime.strptime(str(header["UTC-OBS"]).replace("T", " "), UTC_FORMAT)
            values: dict[str, Any] = {
                "lstseq": int(header["LSTSEQ"]),
                "lstidx": int(header["LSTIDX"]),
                "lst": float(header["LST"]),
                "jd": float(header["JD"]),
                "jdmid": float(header["JDMID"]),
                "utc": utc,
                "exptime": float(header["EXPTIME"]),
                "ccdtemp": float(header["CCDTEMP"]),
                "site": str(header["SITE-OBS"]),
                "camera": str(header["CAMERA"]),
                "imagetyp": str(header["IMAGETYP"]).lower(),
                "x0": int(header["X0"]),
                "xsize": int(header["XSIZE"]),
                "y0": int(header["Y0"]),
                "ysize": int(header["YSIZE"]),
                "dwldtime": float(header.get("DWLDTIME", 0.0)),
                "margtime": float(header.get("MARGTIME", 0.0)),
            }
        except (TypeError, ValueError) as exc:
            raise FrameError(f"{source}: malformed header value: {exc}") from None
        if not all(np.isfinite([values["lst"], values["jd"], values["jdmid"], values["exptime"]])):
            raise FrameError(f"{source}: LST, JD, JDMID and EXPTIME must be finite numbers")
        if values["imagetyp"] not in FRAME_KINDS:
            raise FrameError(
                f"{source}: IMAGETYP {values['imagetyp']!r} is not one of {FRAME_KINDS}"
            )
        return cls(**values)

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


def read_raw(path: str | Path) -> RawFrame:
    """Read a raw frame (plain, gzip or Rice); FrameError names the file on any problem."""
    path = Path(path)
    check_fits_layout(path)
    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = next((h for h in hdul if h.data is not None), None)
            if hdu is None:
                raise FrameError(f"{path}: no image data in the file")
            data = np.asarray(hdu.data)
            header = hdu.header.copy()
    except FrameError:
        raise
    except (OSError, ValueError, TypeError, IndexError, EOFError) as exc:
        raise FrameError(f"{path}: unreadable FITS file ({exc})") from None
    raw = RawHeader.from_fits(header, source=str(path))
    if data.ndim != 2:
        raise FrameError(f"{path}: image must be 2-D, got shape {data.shape}")
    if raw.y0 + raw.ysize > data.shape[0] or raw.x0 + raw.xsize > data.shape[1]:
        raise FrameError(
            f"{path}: science region X0={raw.x0} XSIZE={raw.xsize} Y0={raw.y0} YSIZE={raw.ysize} "
            f"does not fit the {data.shape[1]} x {data.shape[0]} image"
        )
    if data.dtype != np.uint16:
        if not np.issubdtype(data.dtype, np.number):
            raise FrameError(f"{path}: pixel type {data.dtype} is not numeric")
        data = data.astype(np.float32)
    return RawFrame(data=data, header=raw, path=path)


def write_raw(
    path: str | Path, data: np.ndarray, header: RawHeader, *, extra: dict[str, Any] | None = None
) -> Path:
    """Write a raw frame atomically; the compression follows the suffix (.fits, .gz, .fz)."""
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
    tmp = path.with_name(".part-" + path.name)  # keeps the suffix that picks the compression
    hdul.writeto(tmp, overwrite=True)
    os.replace(tmp, path)
    return path
