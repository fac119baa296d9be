"""Master bias, dark and flat frames, and their FITS files.

A master is the full readout as float32 (ADU; a flat: relative response), with the header
that says what it was made from. Files are named ``{lstseq:08d}{CAM}master{kind}.fits`` and
written atomically.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from mascara_actors.atomic_files import atomic_write_bytes
from mascara_actors.calibration.combine import COMBINE_METHOD
from mascara_actors.errors import CalibrationError, FrameError
from mascara_actors.fits_layout import check_fits_layout

__all__ = ["MASTER_KINDS", "MasterFrame", "master_filename", "read_master", "write_master"]

MASTER_KINDS = ("bias", "dark", "flat")


@dataclass(frozen=True, slots=True, eq=False)
class MasterFrame:
    """A master bias, dark or flat: the full readout (float32, ADU; flat: relative response).

    The master dark holds bias plus dark current for ``exptime`` seconds. The master flat
    is 1 outside the science region, where it has no meaning.
    """

    data: np.ndarray
    kind: str
    """``bias``, ``dark`` or ``flat``."""
    camera: str
    """Camera letter (N, E, S, W or C)."""
    site: str
    nobs: int
    """Frames combined."""
    exptime: float
    """Mean exposure time of the frames, seconds."""
    ccdtemp: float
    """Mean CCD temperature of the frames, degrees C."""
    lstseq: int
    """lstseq of the first frame used."""
    x0: int
    xsize: int
    y0: int
    ysize: int
    method: str = COMBINE_METHOD
    darkfile: int = 0
    """Flat only: lstseq of the master dark subtracted from each flat (0: none)."""
    sources: tuple[str, ...] = ()
    """File names of the frames combined, in the order given: the provenance, kept in the
    file's header as ``SRC0001``, ``SRC0002`` ... (empty for a file written without it)."""
    left_out: tuple[str, ...] = ()
    """Frames given but left out of the combine (``leave_out=True``), each as
    ``"file: reason"``; not kept in the file."""

    def science(self) -> np.ndarray:
        """The science region (a view)."""
        return self.data[self.y0 : self.y0 + self.ysize, self.x0 : self.x0 + self.xsize]

    @property
    def filename(self) -> str:
        """``{lstseq:08d}{CAM}master{kind}.fits``."""
        return master_filename(self.lstseq, self.camera, self.kind)

    @property
    def region(self) -> tuple[int, int, int, int]:
        """``(X0, XSIZE, Y0, YSIZE)`` of the science region, pixels."""
        return self.x0, self.xsize, self.y0, self.ysize


def master_filename(lstseq: int, camera_letter: str, kind: str) -> str:
    """File name of a master frame, e.g. ``00123456Cmasterdark.fits``."""
    if kind not in MASTER_KINDS:
        raise ValueError(f"kind must be one of {MASTER_KINDS}, got {kind!r}")
    return f"{int(lstseq):08d}{camera_letter}master{kind}.fits"


def write_master(path: str | Path, master: MasterFrame) -> Path:
    """Write ``master`` as a float32 FITS file, atomically (temporary file + rename).

    ``path`` may be a directory, in which case the file is ``path / master.filename``.
    Returns the path written. Raises :class:`StorageError` when the write fails.
    """
    path = Path(path)
    if path.is_dir():
        path = path / master.filename
    hdr = fits.Header()
    hdr["IMAGETYP"] = ("MASTER" + master.kind.upper(), "master calibration frame")
    hdr["NOBS"] = (master.nobs, "frames combined")
    hdr["METHOD"] = (master.method, "combine method")
    hdr["SITE-OBS"] = master.site
    hdr["CAMERA"] = master.camera
    hdr["EXPTIME"] = (master.exptime, "mean exposure time, s")
    hdr["CCDTEMP"] = (master.ccdtemp, "mean CCD temperature, deg C")
    hdr["LSTSEQ"] = (master.lstseq, "lstseq of the first frame used")
    for key in ("X0", "XSIZE", "Y0", "YSIZE"):
        hdr[key] = getattr(master, key.lower())
    if master.kind == "flat":
        hdr["DARKFILE"] = (master.darkfile, "lstseq of the master dark subtracted")
    for i, name in enumerate(master.sources, start=1):
        hdr[f"SRC{i:04d}"] = (name, "frame combined")
    buf = io.BytesIO()
    fits.PrimaryHDU(np.asarray(master.data, np.float32), header=hdr).writeto(buf)
    return atomic_write_bytes(path, buf.getvalue())


def read_master(path: str | Path) -> MasterFrame:
    """Read a master written by :func:`write_master`; CalibrationError names what is wrong."""
    path = Path(path)
    try:
        check_fits_layout(path)  # astropy would leak the open file of a truncated one
    except FrameError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise CalibrationError(f"{path}: unreadable master frame ({reason}); rebuild it") from None
    try:
        with fits.open(path, memmap=False) as hdul:
            data = np.asarray(hdul[0].data, dtype=np.float32)
            hdr = hdul[0].header
            imagetyp = str(hdr.get("IMAGETYP", "")).lower()
            kind = imagetyp.removeprefix("master")
            if kind == imagetyp or kind not in MASTER_KINDS:
                raise CalibrationError(
                    f"{path}: IMAGETYP={hdr.get('IMAGETYP')!r} is not MASTERBIAS, MASTERDARK "
                    "or MASTERFLAT; pass a file written by write_master"
                )
            master = MasterFrame(
                data=data,
                kind=kind,
                camera=str(hdr["CAMERA"]),
                site=str(hdr["SITE-OBS"]),
                nobs=int(hdr["NOBS"]),
                exptime=float(hdr["EXPTIME"]),
                ccdtemp=float(hdr["CCDTEMP"]),
                lstseq=int(hdr["LSTSEQ"]),
                x0=int(hdr["X0"]),
                xsize=int(hdr["XSIZE"]),
                y0=int(hdr["Y0"]),
                ysize=int(hdr["YSIZE"]),
                method=str(hdr.get("METHOD", "unknown")),
                darkfile=int(hdr.get("DARKFILE", 0)),
                sources=_sources_of(hdr),
            )
    except CalibrationError:
        raise
    except KeyError as exc:
        raise CalibrationError(
            f"{path}: master header incomplete ({exc.args[0] if exc.args else exc}); rebuild "
            "the master") from None
    except (OSError, ValueError, TypeError, IndexError, EOFError) as exc:
        raise CalibrationError(f"{path}: unreadable master frame ({exc}); rebuild it") from None
    if data.ndim != 2 or master.y0 + master.ysize > data.shape[0] or (
        master.x0 + master.xsize > data.shape[1]
    ):
        raise CalibrationError(
            f"{path}: science region {master.region} does not fit the image of shape "
            f"{data.shape}; rebuild the master"
        )
    return master


def _sources_of(hdr: fits.Header) -> tuple[str, ...]:
    """The ``SRC0001``, ``SRC0002`` ... file names of a master's header, in order."""
    names: list[str] = []
    while (key := f"SRC{len(names) + 1:04d}") in hdr:
        names.append(str(hdr[key]))
    return tuple(names)
