"""Binned image files: ``binned/bin_{lstseq:08d}{CAM}.fits`` (reference/legacy-pipeline.md 6).

One Rice-compressed float32 image (``CompImageHDU``, ``RICE_1``, 167 x 167 tiles) after an
empty primary HDU, in ADU per exposure (the mean of the frames), NaN where no frame covered
the pixel. The legacy files quantise each tile with a step of its own noise / 32 (cfitsio's
``quantize_level = 32``); here one step serves the whole image, the noise of its quietest
tile / 32 (:func:`quantize_step`), so no tile is stored coarser than the legacy rule would
store it (within the 5 % by which the two noise estimates may differ), and cfitsio need not
estimate the noise of every tile again (two thirds of the write). Header keys (MASCARA names):

======== ===================================================================
NIMAGES  frames co-added
LSTSEQ   lstseq of the reference (middle) slot; LST, JD: its start (hours, JD UTC)
LSTMID   mean start LST of the frames, hours, averaged on the circle (legacy: plain mean,
         wrong across 0 h)
JDMID    mean mid-exposure JD (UTC) of the frames
LSTALIGN LST the image is aligned to (mid-exposure of the reference slot), hours
JDALIGN  JD (UTC) at LSTALIGN
SETIDX   set number, lstseq // 50
SETFLAG  set flag bits (mascara_actors.binning.SetFlag); NREFUSED frames refused
EXPTIME  mean exposure time, s; CCDTEMP mean CCD temperature, deg C
SITE-OBS, CAMERA, IMAGETYP = 'BINIMAGE'
======== ===================================================================

The WCS is a plain TAN projection (no distortion terms) fitted by least squares to a grid
of 15 x 10 pixels mapped through the camera model at LSTALIGN, with RA/Dec converted from
the equinox of date to ICRS by the IAU 2006 precession matrix (nutation, about 20", is
left out). A TAN projection cannot follow the lens distortion of a 53-degree field: the
fit is good near the centre and off by up to ``WCSMAXPX`` pixels (header key, the largest
residual of the fit, typically tens of pixels in the corners); ``WCSRMSPX`` holds the RMS.
Use the camera model, not the WCS, for photometry.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import erfa
import numpy as np
from astropy.io import fits

from mascara_actors.atomic_files import atomic_write_bytes
from mascara_actors.binning import BinnedSet
from mascara_actors.camera_model import CameraModel
from mascara_actors.errors import FrameError, StorageError
from mascara_actors.fits_layout import open_fits
from mascara_actors.rice_rows import CODEC_ERRORS

__all__ = [
    "BinnedImage",
    "binned_filename",
    "binned_header",
    "quantize_step",
    "read_binned",
    "write_binned",
]

log = logging.getLogger(__name__)

IMAGETYP = "BINIMAGE"
_TILE = (167, 167)
_QUANTIZE_LEVEL = 32.0
"""Quantisation step = noise / this (the legacy files' ``quantize_level``)."""
_NOISE_ROW_STEP = 4
"""Every 4th row of a tile enters its noise estimate (within 5 % of cfitsio's own)."""
_NOISE3 = 0.6052697
"""Gaussian sigma over the median of ``|2 f[i] - f[i-2] - f[i+2]|`` (cfitsio's noise3)."""


def binned_filename(lstseq: int, camera_letter: str) -> str:
    """``bin_{lstseq:08d}{CAM}.fits`` (at least 8 digits)."""
    return f"bin_{int(lstseq):08d}{camera_letter}.fits"


def _tan_wcs(model: CameraModel, lst_hours: float, jd: float) -> tuple[fits.Header, float, float]:
    """TAN WCS cards fitted to the model at ``lst_hours``; (cards, RMS, max residual) px."""
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import fit_wcs_from_points

    gx, gy = np.meshgrid(np.linspace(0, model.nx - 1, 15), np.linspace(0, model.ny - 1, 10))
    x, y = gx.ravel(), gy.ravel()
    ra, dec = model.pixel_to_radec(x, y, lst_hours)
    ok = np.isfinite(ra) & np.isfinite(dec)
    r, d = np.radians(ra[ok]), np.radians(dec[ok])
    vec = np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)
    # Date -> ICRS: the transpose of the bias-precession matrix (rows are vectors here).
    icrs = vec @ erfa.pmat06(2400000.5, jd - 2400000.5)
    ra_i = np.degrees(np.arctan2(icrs[:, 1], icrs[:, 0])) % 360.0
    dec_i = np.degrees(np.arcsin(np.clip(icrs[:, 2], -1, 1)))
    sky = SkyCoord(ra_i, dec_i, unit="deg", frame="icrs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's fit may warn about its own convergence
        w = fit_wcs_from_points((x[ok], y[ok]), sky, proj_point="center", projection="TAN")
        px, py = w.world_to_pixel(sky)
    res = np.hypot(px - x[ok], py - y[ok])
    header = w.to_header()
    return header, float(np.sqrt(np.mean(res**2))), float(res.max())


def quantize_step(image: np.ndarray, tile: int = _TILE[0]) -> float | None:
    """One quantisation step for a whole float image, ADU: the smallest noise of its
    ``tile`` x ``tile`` tiles / 32; None when no tile has a usable estimate (all NaN, or no
    noise at all), and cfitsio then quantises tile by tile.

    A tile's noise is cfitsio's third-order estimate (``noise3``: 0.605 times the median of
    ``|2 f[i] - f[i-2] - f[i+2]|`` along rows) on every 4th of its rows, NaN left out; tiles
    with fewer than half their samples finite do not count.
    """
    ny, nx = image.shape
    if nx < 5:
        return None
    nty, ntx = -(-ny // tile), -(-nx // tile)
    rows = np.arange(nty)[:, None] * tile + np.arange(0, tile, _NOISE_ROW_STEP)[None, :]
    sample = np.full((*rows.shape, ntx * tile), np.nan, np.float32)
    sample[rows < ny, :nx] = image[rows[rows < ny]]
    f = sample.reshape(nty, rows.shape[1], ntx, tile)
    d = np.abs(2.0 * f[..., 2:-2] - f[..., :-4] - f[..., 4:])
    d = d.transpose(0, 2, 1, 3).reshape(nty * ntx, -1)
    usable = np.count_nonzero(~np.isnan(d), axis=1) >= d.shape[1] // 2
    if not usable.any():
        return None
    noise = _NOISE3 * float(np.nanmedian(d[usable], axis=1).min())
    return noise / _QUANTIZE_LEVEL if noise > 0.0 else None


def binned_header(binned: BinnedSet, model: CameraModel) -> fits.Header:
    """The FITS header of a binned image (keys in the module docstring)."""
    h = fits.Header()
    h["NIMAGES"] = (binned.nimages, "frames co-added")
    h["LSTSEQ"] = (binned.lstseq, "reference (middle) slot")
    h["LST"] = (binned.lst, "[h] LST, start of reference")
    h["JD"] = (binned.jd, "[d] JD UTC, start of reference")
    h["LSTMID"] = (binned.lstmid, "[h] mean LST of the frames")
    h["JDMID"] = (binned.jdmid, "[d] mean mid-exposure JD UTC")
    h["LSTALIGN"] = (binned.lst_align, "[h] LST of the alignment")
    h["JDALIGN"] = (binned.jd_align, "[d] JD UTC at LSTALIGN")
    h["SETIDX"] = (binned.setidx, "lstseq // 50")
    h["SETFLAG"] = (binned.flag, "binning.SetFlag bits")
    h["NREFUSED"] = (binned.nrefused, "frames refused")
    h["EXPTIME"] = (binned.exptime, "[s] mean exposure time")
    h["CCDTEMP"] = (binned.ccdtemp, "[C] mean CCD temperature")
    h["SITE-OBS"] = (binned.site, "site")
    h["CAMERA"] = (binned.camera, "camera letter")
    h["IMAGETYP"] = (IMAGETYP, "binned image")
    h["BUNIT"] = ("ADU", "per exposure")
    wcs, rms, worst = _tan_wcs(model, binned.lst_align, binned.jd_align)
    h.update(wcs)
    h["WCSRMSPX"] = (round(rms, 3), "[px] RMS error of the WCS")
    h["WCSMAXPX"] = (round(worst, 3), "[px] largest error of the WCS")
    return h


def write_binned(directory: str | Path, binned: BinnedSet, model: CameraModel) -> Path:
    """Write the binned image of ``binned`` atomically into ``directory``; its path.

    Raises
    ------
    FrameError
        The set has no image (too few frames: check ``binned.flag``).
    StorageError
        The file could not be written (nothing partial is left).
    """
    if binned.image is None:
        raise FrameError(f"set {binned.setidx} has no binned image ({binned.nimages} frames, "
                         f"flag {binned.flag}): write only sets with binned.binned True")
    header = binned_header(binned, model)
    image = np.ascontiguousarray(binned.image, np.float32)
    step = quantize_step(image)
    hdu = fits.CompImageHDU(
        data=image,
        header=header,
        compression_type="RICE_1",
        tile_shape=_TILE,
        # cfitsio takes a negative level as the step itself, ADU
        quantize_level=_QUANTIZE_LEVEL if step is None else -step,
    )
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    path = Path(directory) / binned_filename(binned.lstseq, binned.camera)
    atomic_write_bytes(path, _without_gzip_times(buf.getvalue()))
    log.info("binned image %s: %d frames", path.name, binned.nimages)
    return path


# A gzip member header (RFC 1952): magic, deflate, no flags, MTIME (4 bytes), XFL, OS.
_GZIP_HEADER = re.compile(rb"\x1f\x8b\x08\x00(....)(?=[\x00\x02\x04][\x00-\x0d\xff])", re.DOTALL)


def _without_gzip_times(data: bytes) -> bytes:
    """``data`` with the time stamps of its gzip members zeroed.

    Tiles that do not quantize (all NaN: no frame covered them) are stored gzip-compressed
    by astropy, with the time of writing in each member's header; zeroed, the same image
    gives the same bytes whenever it is written (a resumed night equals an uninterrupted
    one). A match of the header pattern inside compressed data is guarded against: the
    image must read back identical, else the bytes are kept as they were.
    """
    fixed = _GZIP_HEADER.sub(lambda m: m.group(0)[:4] + b"\0\0\0\0", data)
    if fixed == data:
        return data
    with fits.open(io.BytesIO(data)) as a, fits.open(io.BytesIO(fixed)) as b:
        same = np.array_equal(a[1].data, b[1].data, equal_nan=True)
    return fixed if same else data


@dataclass(frozen=True, slots=True)
class BinnedImage:
    """A binned image read back: float32 ADU per exposure and its header."""

    image: np.ndarray
    header: fits.Header


_UNREADABLE: tuple[type[Exception], ...] = (
    FrameError, OSError, ValueError, IndexError, TypeError, *CODEC_ERRORS)
"""A file cut short, not FITS, or with damaged tiles."""


def read_binned(path: str | Path) -> BinnedImage:
    """Read a binned image file; StorageError if it is not one."""
    path = Path(path)
    try:
        with open_fits(path) as hdul:
            hdu = hdul[1] if len(hdul) > 1 else hdul[0]
            image = np.asarray(hdu.data, np.float32).copy()
            header = hdu.header.copy()
    except _UNREADABLE as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise StorageError(f"{path}: cannot read a binned image ({reason}); is the file "
                           "complete and a bin_*.fits file?") from exc
    if header.get("IMAGETYP") != IMAGETYP:
        raise StorageError(f"{path}: IMAGETYP is {header.get('IMAGETYP')!r}, not {IMAGETYP!r}: "
                           "not a binned image")
    return BinnedImage(image=image, header=header)
