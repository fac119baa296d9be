"""Calibration frames: image statistics, master bias/dark/flat, and frame calibration.

What the legacy reduction did, and what changes here (reference/legacy-pipeline.md
sections 2, 3 and 8.1):

- :func:`image_statistics` gives the per-exposure station fields ``imnzero``, ``imnsat``,
  ``imstd``, ``immed`` and the overscan levels ``oversca0..3`` (top, left, bottom, right).
- Masters are built from sequences with a robust combine (a sigma-clipped mean about the
  per-pixel median, :data:`COMBINE_METHOD`), never a plain mean over outliers, streamed in
  row blocks of float32 so that 20 full-size frames need a few frames' worth of memory.
  The master dark includes the bias, as in legacy; the master flat is
  ``(flat - dark) / median`` per frame, combined and normalised to median 1 over the
  science region.
- :class:`Calibrator` subtracts the master dark (or, without one, the master bias or the
  median overscan level, and says so), divides by the master flat when there is one (legacy
  never did) and crops to the science region.

All pixel values are ADU; rows and columns are those of the full raw readout unless a name
says "science region".
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from mascara_actors.config import CalibrationConfig, load_config
from mascara_actors.errors import CalibrationError, FrameError
from mascara_actors.fits_layout import check_fits_layout
from mascara_actors.rawframe import (
    RawFrame,
    RawHeader,
    check_name_agrees,
    check_raw_pixels,
)
from mascara_actors.storage.atomic import atomic_write_bytes

__all__ = [
    "CLIP_NSIGMA",
    "COMBINE_METHOD",
    "EXPTIME_RTOL",
    "FLAT_MIN",
    "MASTER_KINDS",
    "STAT_SATURATION_ADU",
    "CalibratedFrame",
    "Calibrator",
    "ImageStatistics",
    "MasterFrame",
    "image_statistics",
    "master_bias",
    "master_dark",
    "master_filename",
    "master_flat",
    "read_master",
    "write_master",
]

log = logging.getLogger(__name__)

STAT_SATURATION_ADU = 64000
"""Raw pixels above this count as saturated in ``imnsat`` (legacy value), ADU."""
EXPTIME_RTOL = 0.01
"""Exposure times within this fraction of each other count as equal."""
CLIP_NSIGMA = 4.0
"""Clipping threshold of the master combine, in per-pixel robust sigmas."""
COMBINE_METHOD = "clipmean4"
"""The ``METHOD`` header value: mean after clipping at 4 sigma about the per-pixel median."""
FLAT_MIN = 0.05
"""Master-flat pixels below this response (median = 1) are dead: calibrated to NaN."""
MASTER_KINDS = ("bias", "dark", "flat")

_STAT_SAMPLES = 500_000  # regular-grid subsample for immed/imstd: ~5 ms on a full frame
_BLOCK_BYTES = 16 * 2**20  # float32 stack per row block during a combine
_IQR_TO_SIGMA = 1.0 / 1.349


# --- image statistics --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageStatistics:
    """Per-exposure image statistics of a raw frame (station record fields)."""

    imnzero: int
    """Raw pixels equal to 0 in the whole readout (overscan included)."""
    imnsat: int
    """Raw pixels above :data:`STAT_SATURATION_ADU` in the whole readout."""
    imstd: float
    """Standard deviation of the raw readout, ADU (NaN pixels ignored)."""
    immed: float
    """Median of the raw readout, ADU (NaN pixels ignored)."""
    oversca0: float
    """Median of the top overscan strip ``raw[uy:, lx:ux]``, ADU; NaN when empty."""
    oversca1: float
    """Median of the left strip ``raw[ly:uy, :lx]``, ADU; NaN when empty."""
    oversca2: float
    """Median of the bottom strip ``raw[:ly, lx:ux]``, ADU; NaN when empty."""
    oversca3: float
    """Median of the right strip ``raw[ly:uy, ux:]``, ADU; NaN when empty."""

    @property
    def overscan_level(self) -> float:
        """Median of the non-empty strip levels, ADU; NaN when the frame has no overscan."""
        return _median_of_levels(self.oversca0, self.oversca1, self.oversca2, self.oversca3)

    def as_record(self) -> dict[str, float | int]:
        """The fields by their station-record names."""
        return {name: getattr(self, name) for name in self.__slots__}


def _median_of_levels(*levels: float) -> float:
    finite = [v for v in levels if math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan


def _overscan_slices(h: RawHeader | MasterFrame) -> tuple[tuple[slice, slice], ...]:
    lx, ux, ly, uy = h.x0, h.x0 + h.xsize, h.y0, h.y0 + h.ysize
    return (
        (slice(uy, None), slice(lx, ux)),  # top
        (slice(ly, uy), slice(None, lx)),  # left
        (slice(None, ly), slice(lx, ux)),  # bottom
        (slice(ly, uy), slice(ux, None)),  # right
    )


def _finite_values(a: np.ndarray) -> np.ndarray:
    return a[np.isfinite(a)] if np.issubdtype(a.dtype, np.floating) else a.ravel()


def _median(a: np.ndarray) -> float:
    """Median of the finite values of ``a`` (NaN when there are none)."""
    v = _finite_values(a)
    if not v.size:
        return math.nan
    if v.dtype in (np.uint8, np.uint16):
        # Exact and several times faster than a partition: count every ADU value.
        cum = np.cumsum(np.bincount(v.ravel()))
        lo = np.searchsorted(cum, (v.size - 1) // 2, side="right")
        hi = np.searchsorted(cum, v.size // 2, side="right")
        return (float(lo) + float(hi)) / 2.0
    return float(np.median(v))


def _overscan_levels(data: np.ndarray, h: RawHeader | MasterFrame) -> tuple[float, ...]:
    return tuple(_median(data[s]) for s in _overscan_slices(h))


def _region(h: RawHeader) -> tuple[int, int, int, int]:
    return h.x0, h.xsize, h.y0, h.ysize


def _check_region(data: np.ndarray, h: RawHeader, source: str) -> None:
    if data.ndim != 2 or h.y0 + h.ysize > data.shape[0] or h.x0 + h.xsize > data.shape[1]:
        raise FrameError(
            f"{source}: science region X0={h.x0} XSIZE={h.xsize} Y0={h.y0} YSIZE={h.ysize} "
            f"does not fit the image of shape {data.shape}; check the header"
        )


def image_statistics(raw: RawFrame) -> ImageStatistics:
    """Image statistics of a raw frame, as the legacy station record holds them.

    ``imnzero`` and ``imnsat`` count every pixel of the readout. ``immed`` and ``imstd`` are
    computed on a regular grid of about 500,000 pixels (every k-th row and column), which
    keeps this under ~30 ms on a full 2720 x 4072 frame; the subsampled median and standard
    deviation differ from the exact ones by far less than the frame-to-frame changes they
    are meant to show. The overscan medians use every strip pixel. NaN pixels (possible in
    float frames) are ignored; a statistic with no finite pixel is NaN.
    """
    data, h = raw.data, raw.header
    _check_region(data, h, _source_name(raw))
    step = max(1, math.ceil(math.sqrt(data.size / _STAT_SAMPLES)))
    sample = _finite_values(data[::step, ::step])
    immed = _median(sample)
    imstd = float(np.std(sample, dtype=np.float64)) if sample.size else math.nan
    top, left, bottom, right = _overscan_levels(data, h)
    # A min/max pass is cheaper than building a mask, and most frames have neither.
    # (NaN, possible in float frames, fails both tests and falls through to the count.)
    lo, hi = data.min(), data.max()
    return ImageStatistics(
        imnzero=0 if lo > 0 else int(np.count_nonzero(data == 0)),
        imnsat=0 if hi <= STAT_SATURATION_ADU else int(
            np.count_nonzero(data > STAT_SATURATION_ADU)),
        imstd=imstd,
        immed=immed,
        oversca0=top,
        oversca1=left,
        oversca2=bottom,
        oversca3=right,
    )


# --- master frames -----------------------------------------------------------------------


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
    names = []
    while (key := f"SRC{len(names) + 1:04d}") in hdr:
        names.append(str(hdr[key]))
    return tuple(names)


# --- reading frames in row blocks ---------------------------------------------------------


def _source_name(raw: RawFrame) -> str:
    return str(raw.path) if raw.path is not None else f"frame lstseq {raw.header.lstseq}"


@dataclass(frozen=True, slots=True)
class _Source:
    """One input frame of a combine: its header, and its rows on demand (ADU)."""

    name: str
    header: RawHeader
    shape: tuple[int, ...]
    rows: Callable[[int, int], np.ndarray]


def _open_source(item: RawFrame | str | Path, stack: contextlib.ExitStack,
                 scratch: Callable[[], Path]) -> _Source:
    """A frame in memory, or a file read in row sections.

    A compressed file (``.gz``, ``.fz``) is unpacked once to a scratch file in
    ``scratch()``: row sections of it cost a full decompression each (gzip) or twice a
    full read (Rice tiles).
    """
    if isinstance(item, RawFrame):
        pixels = item.data
        name = _source_name(item)
        _check_region(pixels, item.header, name)
        return _Source(name, item.header, pixels.shape, lambda r0, r1: pixels[r0:r1])
    path = Path(item)
    name = str(path)
    compressed = path.name.endswith((".gz", ".fz"))
    try:
        check_fits_layout(path)  # a truncated file would fail only half-way through a combine
    except FrameError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise FrameError(f"{name}: unreadable FITS file ({reason})") from None
    try:
        hdul = fits.open(path, memmap=False)
        with contextlib.ExitStack() as closer:
            closer.callback(hdul.close)
            hdu = next((h for h in hdul if h.is_image and len(h.shape) == 2), None)
            if hdu is None:
                raise FrameError(f"{name}: no 2-D image in the file")
            check_raw_pixels(hdu.header, name)
            header = RawHeader.from_fits(hdu.header, source=name)
            check_name_agrees(path, header)
            shape = tuple(hdu.shape)
            if header.y0 + header.ysize > shape[0] or header.x0 + header.xsize > shape[1]:
                raise FrameError(f"{name}: science region {_region(header)} does not fit the "
                                 f"image of shape {shape}")
            if not compressed:
                stack.push(closer.pop_all())  # keep the file open for the sections
                section = hdu.section
                return _Source(name, header, shape, lambda r0, r1: section[r0:r1])
            data = np.asarray(hdu.data)
    except (FrameError, CalibrationError):
        raise
    except (OSError, ValueError, TypeError, IndexError, EOFError) as exc:
        raise FrameError(f"{name}: unreadable FITS file ({exc})") from None
    fd, tmp = tempfile.mkstemp(suffix=".u16", dir=scratch())
    with open(fd, "wb") as f:
        data.tofile(f)
    dtype, nx = data.dtype, shape[1]
    del data

    def rows(r0: int, r1: int) -> np.ndarray:
        return np.fromfile(tmp, dtype=dtype, count=(r1 - r0) * nx,
                           offset=r0 * nx * dtype.itemsize).reshape(r1 - r0, nx)

    return _Source(name, header, shape, rows)


_AGREEMENT: tuple[tuple[str, Callable[[_Source], str]], ...] = (
    ("camera", lambda s: f"camera {s.header.camera} at {s.header.site}"),
    ("image shape", lambda s: f"shape {s.shape}"),
    ("science region", lambda s: f"(X0, XSIZE, Y0, YSIZE) = {_region(s.header)}"),
)


def _too_few(found: int, kind: str, need: int, left_out: Sequence[str] | None) -> CalibrationError:
    """The error for too few frames, naming the first frames left out (if any)."""
    usable = ""
    if left_out:
        listed = "; ".join(left_out[:3]) + (" ..." if len(left_out) > 3 else "")
        usable = f" (after leaving out {len(left_out)}: {listed})"
    return CalibrationError(
        f"found {found} {kind} frame(s){usable}, need at least {need} for a master {kind} "
        f"(reduction.calibration.min_{kind}); record a longer {kind} sequence or lower "
        f"min_{kind} in config/reduction.toml"
    )


def _screen(sources: Sequence[_Source], kind: str, need: int, rtol: float,
            left_out: list[str] | None) -> list[_Source]:
    """The frames that belong in one master of ``kind``.

    They must be ``kind`` frames of one camera, one image shape and science region and, for
    darks, one exposure time (within ``rtol`` of the median); the majority sets the common
    value. With ``left_out`` None the first problem raises CalibrationError naming the odd
    files; otherwise the odd frames are left out, each added to ``left_out`` as
    ``"file: reason"``. Fewer than ``need`` frames left raise CalibrationError.
    """
    if left_out is None and len(sources) < need:
        raise _too_few(len(sources), kind, need, None)
    kept = list(sources)
    wrong = [s for s in kept if s.header.imagetyp != kind]
    if wrong:
        if left_out is None:
            listed = ", ".join(f"{s.name} (IMAGETYP {s.header.imagetyp!r})" for s in wrong[:5])
            raise CalibrationError(f"not {kind} frames: {listed}; pass only {kind} frames")
        left_out += [f"{s.name}: IMAGETYP {s.header.imagetyp!r}, not a {kind} frame"
                     for s in wrong]
        kept = [s for s in kept if s.header.imagetyp == kind]
    for what, key in _AGREEMENT:
        if not kept:
            break
        values = [key(s) for s in kept]
        common, _ = Counter(values).most_common(1)[0]
        odd = [(s, v) for s, v in zip(kept, values, strict=True) if v != common]
        if not odd:
            continue
        if left_out is None:
            listed = "; ".join(f"{s.name} has {v}" for s, v in odd[:5])
            raise CalibrationError(
                f"frames disagree on {what}: {listed}, the other frames have {common}; "
                "remove the odd frame(s) from the sequence"
            )
        left_out += [f"{s.name}: {v}, the other frames have {common}" for s, v in odd]
        kept = [s for s, v in zip(kept, values, strict=True) if v == common]
    if kind == "dark" and kept:
        times = np.array([s.header.exptime for s in kept])
        ref = float(np.median(times))
        far = np.abs(times - ref) > rtol * max(abs(ref), 1e-3)
        if far.any():
            odd_t = [(s, t) for s, t, f in zip(kept, times, far, strict=True) if f]
            if left_out is None:
                listed = "; ".join(f"{s.name} has EXPTIME {t:g} s" for s, t in odd_t[:5])
                raise CalibrationError(
                    f"dark exposure times differ: {listed}, the median is {ref:g} s (tolerance "
                    f"{rtol:.0%}); remove the odd frame(s) or make one master per exposure time"
                )
            left_out += [f"{s.name}: EXPTIME {t:g} s, the median of the darks is {ref:g} s"
                         for s, t in odd_t]
            kept = [s for s, f in zip(kept, far, strict=True) if not f]
    if len(kept) < need:
        raise _too_few(len(kept), kind, need, left_out)
    return kept


# --- the robust combine -------------------------------------------------------------------


def _sorted_quantile(s: np.ndarray, valid: np.ndarray | int, q: float) -> np.ndarray:
    """Quantile ``q`` along axis 0 of ``s`` sorted with NaN last; ``valid`` non-NaN counts."""
    if isinstance(valid, int):
        pos = (valid - 1) * q
        lo = math.floor(pos)
        hi = min(lo + 1, valid - 1)
        return s[lo] + (s[hi] - s[lo]) * np.float32(pos - lo)
    pos = (np.maximum(valid, 1) - 1) * q
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(valid, 1) - 1)
    a = np.take_along_axis(s, lo[None], axis=0)[0]
    b = np.take_along_axis(s, hi[None], axis=0)[0]
    return a + (b - a) * (pos - lo).astype(np.float32)


def _clipped_mean(stack: np.ndarray, nsigma: float = CLIP_NSIGMA) -> np.ndarray:
    """Robust mean along axis 0: clip at ``nsigma`` robust sigmas about the median.

    The sigma of each pixel is its interquartile range / 1.349 over the frames. At least
    half the frames always survive (those between the quartiles), so a pixel is NaN only
    when it is NaN in every frame.
    """
    s = np.sort(stack, axis=0)  # NaN sorts last
    n = s.shape[0]
    valid: np.ndarray | int = n
    if np.isnan(s[-1]).any():
        valid = np.count_nonzero(~np.isnan(s), axis=0)
    med = _sorted_quantile(s, valid, 0.5)
    limit = (_sorted_quantile(s, valid, 0.75) - _sorted_quantile(s, valid, 0.25)) * np.float32(
        nsigma * _IQR_TO_SIGMA
    )
    keep = s >= med - limit  # NaN compares False
    keep &= s <= med + limit
    total = np.sum(s, axis=0, where=keep, dtype=np.float32)
    count = np.count_nonzero(keep, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(np.float32)


def _combine(sources: Sequence[_Source],
             prepare: Callable[[int, np.ndarray, int, int], None] | None = None) -> np.ndarray:
    """Robust combine of the full readouts, streamed in row blocks of float32.

    ``prepare(i, rows, r0, r1)`` may modify frame ``i``'s float32 rows ``r0:r1`` in place
    before the combine (dark subtraction and normalisation of flats).
    """
    ny, nx = sources[0].shape
    n = len(sources)
    block = max(1, min(ny, _BLOCK_BYTES // (4 * n * nx)))
    out = np.empty((ny, nx), np.float32)
    stack = np.empty((n, block, nx), np.float32)
    for r0 in range(0, ny, block):
        r1 = min(ny, r0 + block)
        part = stack[:, : r1 - r0]
        for i, src in enumerate(sources):
            part[i] = src.rows(r0, r1)
            if prepare is not None:
                prepare(i, part[i], r0, r1)
        out[r0:r1] = _clipped_mean(part.reshape(n, -1)).reshape(r1 - r0, nx)
    return out


def _make_master(items: Iterable[RawFrame | str | Path], kind: str, need: int, *,
                 exptime_rtol: float = EXPTIME_RTOL, dark: MasterFrame | None = None,
                 bias: MasterFrame | None = None, leave_out: bool = False) -> MasterFrame:
    left_out: list[str] | None = [] if leave_out else None
    with contextlib.ExitStack() as stack:
        scratch_dir: list[Path] = []

        def scratch() -> Path:
            if not scratch_dir:
                scratch_dir.append(Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="mascara-master-"))))
            return scratch_dir[0]

        opened: list[_Source] = []
        for item in items:
            try:
                opened.append(_open_source(item, stack, scratch))
            except (FrameError, CalibrationError) as exc:
                if left_out is None:
                    raise
                left_out.append(str(exc))  # the message starts with the file's name
        sources = _screen(opened, kind, need, exptime_rtol, left_out)
        prepare = None
        darkfile = 0
        if kind == "flat":
            prepare, darkfile, sources = _flat_preparation(sources, dark, bias, exptime_rtol,
                                                           need, left_out)
        data = _combine(sources, prepare)
        h0 = sources[0].header
        if kind == "flat":
            data = _normalise_flat(data, h0)
        master = MasterFrame(
            data=data,
            kind=kind,
            camera=h0.camera,
            site=h0.site,
            nobs=len(sources),
            exptime=float(np.mean([s.header.exptime for s in sources])),
            ccdtemp=float(np.mean([s.header.ccdtemp for s in sources])),
            lstseq=min(s.header.lstseq for s in sources),
            x0=h0.x0,
            xsize=h0.xsize,
            y0=h0.y0,
            ysize=h0.ysize,
            darkfile=darkfile,
            sources=tuple(Path(s.name).name for s in sources),
            left_out=tuple(left_out or ()),
        )
    log.info("master %s %s from %d frames", kind, master.filename, master.nobs)
    for entry in master.left_out:
        log.warning("left out of the master %s: %s", kind, entry)
    return master


def _min_frames(calibration: CalibrationConfig | None, kind: str) -> int:
    cal = calibration if calibration is not None else load_config().reduction.calibration
    return int(getattr(cal, f"min_{kind}"))


def master_bias(frames: Iterable[RawFrame | str | Path], *,
                calibration: CalibrationConfig | None = None,
                leave_out: bool = False) -> MasterFrame:
    """Master bias: robust combine of bias frames (full readout, ADU).

    Parameters
    ----------
    frames
        Bias frames, in memory or as paths (``.fits``, ``.fits.gz``, ``.fits.fz``); paths
        are read in row blocks, so memory stays at a few frames' worth. A file must be a
        raw frame (uint16, its header agreeing with a raw-frame name).
    calibration
        ``reduction.calibration`` of the config (``min_bias``); default: the configuration
        in the default config directory.
    leave_out
        False (default): any frame that cannot be read or does not belong raises. True:
        such frames are left out of the combine with a warning, each listed in the
        master's ``left_out``; CalibrationError only when fewer than ``min_bias`` remain.

    Raises
    ------
    CalibrationError
        Fewer than ``min_bias`` frames; frames that are not bias frames or disagree on
        camera, image shape or science region (the message names the odd file).
    FrameError
        A file cannot be read (not with ``leave_out``).
    """
    return _make_master(frames, "bias", _min_frames(calibration, "bias"), leave_out=leave_out)


def master_dark(frames: Iterable[RawFrame | str | Path], *,
                calibration: CalibrationConfig | None = None,
                exptime_rtol: float = EXPTIME_RTOL, leave_out: bool = False) -> MasterFrame:
    """Master dark: robust combine of dark frames; it holds bias plus dark current (ADU).

    As :func:`master_bias` (minimum ``min_dark``); in addition every frame's EXPTIME must
    be within ``exptime_rtol`` (fraction) of the median exposure time, otherwise
    CalibrationError names the odd file (or, with ``leave_out``, it is left out).
    """
    return _make_master(frames, "dark", _min_frames(calibration, "dark"),
                        exptime_rtol=exptime_rtol, leave_out=leave_out)


def master_flat(frames: Iterable[RawFrame | str | Path], dark: MasterFrame, *,
                calibration: CalibrationConfig | None = None,
                bias: MasterFrame | None = None,
                exptime_rtol: float = EXPTIME_RTOL, leave_out: bool = False) -> MasterFrame:
    """Master flat: relative pixel response, median 1 over the science region.

    Each flat has the master ``dark`` subtracted (scaled to its exposure time as in
    :meth:`Calibrator.calibrate` when the exposure times differ by more than
    ``exptime_rtol``; a master bias may be passed as ``dark`` and is used unscaled), is
    divided by its own median over the science region (a regular-grid subsample), and the
    frames are combined robustly; the result is renormalised to median 1 over the science
    region and set to 1 outside it. With ``leave_out`` (see :func:`master_bias`), a flat
    without light is left out too.

    Raises
    ------
    CalibrationError
        As :func:`master_bias` (minimum ``min_flat``); the dark does not match the flats'
        camera, shape or science region; a flat has no light (median <= 0 after the dark).
    """
    return _make_master(frames, "flat", _min_frames(calibration, "flat"),
                        exptime_rtol=exptime_rtol, dark=dark, bias=bias, leave_out=leave_out)


# --- dark model and flat preparation -------------------------------------------------------


def _bias_term(dark: MasterFrame, bias: MasterFrame | None) -> np.ndarray | float:
    """The bias inside a master dark: the master bias, else the dark's overscan level."""
    if bias is not None:
        return bias.data
    return _median_of_levels(*_overscan_levels(dark.data, dark))


def _dark_ratio(dark: MasterFrame, exptime: float, rtol: float) -> float:
    """Factor that scales the dark current of ``dark`` to ``exptime`` (1: use as is)."""
    if dark.kind != "dark" or dark.exptime <= 0 or abs(exptime - dark.exptime) <= (
        rtol * dark.exptime
    ):
        return 1.0
    return exptime / dark.exptime


def _scaled_dark(dark: MasterFrame, bias: np.ndarray | float, ratio: float,
                 rows: slice, cols: slice) -> np.ndarray:
    b = bias[rows, cols] if isinstance(bias, np.ndarray) else np.float32(bias)
    return b + (dark.data[rows, cols] - b) * np.float32(ratio)


def _check_master_matches(master: MasterFrame, camera: str, site: str,
                          shape: tuple[int, ...], region: tuple[int, int, int, int],
                          what: str, error: type[Exception]) -> None:
    if (master.camera, master.site) != (camera, site):
        raise error(f"{what} is camera {camera} at {site}, but the master {master.kind} "
                    f"{master.filename} is camera {master.camera} at {master.site}; use a "
                    "master of the same camera")
    if master.data.shape != tuple(shape) or master.region != region:
        raise error(f"{what} has shape {tuple(shape)} and science region (X0, XSIZE, Y0, "
                    f"YSIZE) {region}, but the master {master.kind} {master.filename} has "
                    f"{master.data.shape} and {master.region}; make a master {master.kind} "
                    "in the same readout mode")


def _flat_preparation(sources: Sequence[_Source], dark: MasterFrame | None,
                      bias: MasterFrame | None, rtol: float, need: int,
                      left_out: list[str] | None,
                      ) -> tuple[Callable[[int, np.ndarray, int, int], None], int, list[_Source]]:
    """How each flat is prepared for the combine, the dark's lstseq, and the flats kept.

    A flat without light (median <= 0 after the dark) raises CalibrationError, or with
    ``left_out`` (a list) is left out and listed there.
    """
    if dark is None or dark.kind not in ("dark", "bias"):
        raise CalibrationError(
            "master_flat needs a master dark (or master bias) to subtract, got "
            f"{'None' if dark is None else 'a master ' + dark.kind}; build the master dark first"
        )
    h0 = sources[0].header
    _check_master_matches(dark, h0.camera, h0.site, sources[0].shape, _region(h0),
                          f"the flats ({sources[0].name} ...)", CalibrationError)
    ratios = [_dark_ratio(dark, s.header.exptime, rtol) for s in sources]
    bias_level: np.ndarray | float = 0.0
    if any(r != 1.0 for r in ratios):
        bias_level = _bias_term(dark, bias)
        if not isinstance(bias_level, np.ndarray) and not math.isfinite(bias_level):
            raise CalibrationError(
                f"flat exposure times differ from the master dark's {dark.exptime:g} s and the "
                "dark has no overscan to take the bias level from; pass bias= or a dark of the "
                "flats' exposure time")
    full = slice(None)

    def dark_rows(ratio: float, r0: int, r1: int) -> np.ndarray:
        if ratio == 1.0:
            return dark.data[r0:r1]
        return _scaled_dark(dark, bias_level, ratio, slice(r0, r1), full)

    # Each flat's level: median of (flat - dark) on a regular grid of the science region.
    step = max(1, math.ceil(math.sqrt(h0.xsize * h0.ysize / _STAT_SAMPLES)))
    sci_rows = range(h0.y0, h0.y0 + h0.ysize, step)
    block = max(step, (_BLOCK_BYTES // (4 * sources[0].shape[1])) // step * step)
    levels = np.empty(len(sources))
    for i, src in enumerate(sources):
        samples = []
        for r0 in range(sci_rows.start, sci_rows.stop, block):
            r1 = min(sci_rows.stop, r0 + block)
            rows = (np.asarray(src.rows(r0, r1), np.float32) - dark_rows(ratios[i], r0, r1))
            samples.append(_finite_values(rows[::step, h0.x0 : h0.x0 + h0.xsize : step]))
        values = np.concatenate(samples)
        levels[i] = np.median(values) if values.size else math.nan
        if not levels[i] > 0:
            if left_out is None:
                raise CalibrationError(
                    f"{src.name}: flat level after dark subtraction is {levels[i]:.1f} ADU; a "
                    "flat needs light (shutter open, lamp or twilight sky on): remove it")
            left_out.append(f"{src.name}: flat level after dark subtraction is "
                            f"{levels[i]:.1f} ADU, no light")
    keep = [i for i in range(len(sources)) if levels[i] > 0]
    if len(keep) < len(sources):
        if len(keep) < need:
            raise _too_few(len(keep), "flat", need, left_out)
        sources = [sources[i] for i in keep]
        ratios = [ratios[i] for i in keep]
        levels = levels[keep]
    inv_levels = (1.0 / levels).astype(np.float32)

    def prepare(i: int, rows: np.ndarray, r0: int, r1: int) -> None:
        rows -= dark_rows(ratios[i], r0, r1)
        rows *= inv_levels[i]

    return prepare, dark.lstseq if dark.kind == "dark" else 0, list(sources)


def _normalise_flat(data: np.ndarray, h: RawHeader) -> np.ndarray:
    rows, cols = slice(h.y0, h.y0 + h.ysize), slice(h.x0, h.x0 + h.xsize)
    sci = data[rows, cols]
    level = _median(sci)
    if not level > 0:
        raise CalibrationError(f"master flat has median {level} over the science region; "
                               "check the flat frames")
    out = np.ones_like(data)
    np.multiply(sci, np.float32(1.0 / level), out=out[rows, cols])
    return out


# --- calibrating frames --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class CalibratedFrame:
    """A calibrated science region and how it was calibrated."""

    image: np.ndarray
    """Science region, float32, ADU (flat-fielded when ``flatfile`` is not 0)."""
    correction: str
    """What was subtracted: ``dark`` (master dark), ``bias`` (master bias, no dark) or
    ``overscan`` (median overscan level, no dark and no bias)."""
    darkfile: int
    """lstseq of the master dark used; 0 when none was (station field ``darkfile``)."""
    flatfile: int
    """lstseq of the master flat used; 0 when none was."""
    dark_scale: float
    """Factor applied to the dark current (frame EXPTIME / dark EXPTIME; 1 when equal)."""


@dataclass(frozen=True, slots=True, eq=False)
class Calibrator:
    """Calibrates raw frames with an optional master dark, flat and bias.

    :meth:`calibrate` subtracts, in order of preference, the master dark (which includes
    the bias, as in legacy), the master bias, or the median overscan level of the frame;
    then divides by the master flat when there is one, and crops to the science region.

    When a frame's EXPTIME differs from the dark's by more than :data:`EXPTIME_RTOL`, the
    dark current is scaled linearly with exposure time: ``bias + (dark - bias) * t / t_dark``,
    where ``bias`` is the master bias if given, else the median overscan level of the master
    dark (assumes a flat bias structure).

    Raises
    ------
    CalibrationError
        A master of the wrong kind, or masters that disagree on camera, shape or region.
    """

    dark: MasterFrame | None = None
    flat: MasterFrame | None = None
    bias: MasterFrame | None = None
    _dark_sci: np.ndarray | None = field(init=False, repr=False, compare=False)
    _bias_sci: np.ndarray | None = field(init=False, repr=False, compare=False)
    _inv_flat: np.ndarray | None = field(init=False, repr=False, compare=False)
    _dark_bias: np.ndarray | np.float32 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        masters = [(m, k) for m, k in ((self.dark, "dark"), (self.flat, "flat"),
                                       (self.bias, "bias")) if m is not None]
        for m, k in masters:
            if m.kind != k:
                raise CalibrationError(f"{k}= must be a master {k}, got master {m.kind} "
                                       f"{m.filename}")
        if masters:
            ref = masters[0][0]
            for m, _ in masters[1:]:
                _check_master_matches(m, ref.camera, ref.site, ref.data.shape, ref.region,
                                      f"master {ref.kind} {ref.filename}", CalibrationError)
        def sci(m: MasterFrame) -> np.ndarray:
            return np.ascontiguousarray(m.science(), np.float32)

        set_ = object.__setattr__
        set_(self, "_dark_sci", sci(self.dark) if self.dark is not None else None)
        set_(self, "_bias_sci", sci(self.bias) if self.bias is not None else None)
        inv = None
        if self.flat is not None:
            f = sci(self.flat)
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = np.where(np.isfinite(f) & (f >= FLAT_MIN), 1.0 / f, np.nan)
            inv = inv.astype(np.float32)
        set_(self, "_inv_flat", inv)
        dark_bias: np.ndarray | np.float32 = np.float32(math.nan)
        if self.dark is not None:
            dark_bias = (self._bias_sci if self._bias_sci is not None else np.float32(
                _median_of_levels(*_overscan_levels(self.dark.data, self.dark))))
        set_(self, "_dark_bias", dark_bias)

    def calibrate(self, raw: RawFrame, *, stats: ImageStatistics | None = None,
                  out: np.ndarray | None = None) -> CalibratedFrame:
        """Calibrated science region of ``raw`` (a new float32 array, ADU).

        NaN pixels of a float frame stay NaN; flat pixels below :data:`FLAT_MIN` give NaN.
        ``raw`` is never modified. ``stats`` (from :func:`image_statistics` of this frame)
        saves recomputing the overscan level when no dark and no bias are loaded. ``out``, a
        C-contiguous float32 array of the science-region shape, receives the result instead
        of a new array: a worker that reuses one buffer saves the page faults of a fresh
        43 MB allocation per full frame (a quarter of the time or more, measured).

        Raises
        ------
        FrameError
            For this frame only: the science region does not fit the image, every science
            pixel is 0 (failed readout), a master's camera, shape or science region differs
            from the frame's, the dark must be scaled but its bias level is unknown, or there
            is nothing to subtract (no dark, no bias, no overscan).
        """
        h = raw.header
        name = _source_name(raw)
        _check_region(raw.data, h, name)
        for m in (self.dark, self.bias, self.flat):
            if m is not None:
                _check_master_matches(m, h.camera, h.site, raw.data.shape, _region(h),
                                      name, FrameError)
        sci = raw.science()
        if not np.any(sci):
            raise FrameError(f"{name}: every science pixel is 0 ADU, the readout failed; "
                             "the frame is skipped")
        if out is None:
            out = np.empty(sci.shape, np.float32)
        elif out.shape != sci.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 array of shape {sci.shape}, "
                             f"got {out.dtype} {out.shape}")
        ratio = 1.0
        if self.dark is not None and self._dark_sci is not None:
            ratio = _dark_ratio(self.dark, h.exptime, EXPTIME_RTOL)
            if ratio == 1.0:
                np.subtract(sci, self._dark_sci, out=out)
            else:
                b = self._dark_bias
                if not isinstance(b, np.ndarray) and not math.isfinite(b):
                    raise FrameError(
                        f"{name}: EXPTIME {h.exptime:g} s differs from the master dark's "
                        f"{self.dark.exptime:g} s and its bias level is unknown (no overscan, no "
                        "master bias); load a master bias or a dark of this exposure time")
                np.subtract(sci, b, out=out)
                out -= (self._dark_sci - b) * np.float32(ratio)
            correction, darkfile = "dark", self.dark.lstseq
        elif self._bias_sci is not None:
            np.subtract(sci, self._bias_sci, out=out)
            correction, darkfile = "bias", 0
        else:
            level = stats.overscan_level if stats is not None else _median_of_levels(
                *_overscan_levels(raw.data, h))
            if not math.isfinite(level):
                raise FrameError(f"{name}: no master dark or bias is loaded and the frame has "
                                 "no overscan to take the bias from; record darks")
            np.subtract(sci, np.float32(level), out=out)
            correction, darkfile = "overscan", 0
        if self._inv_flat is not None:
            np.multiply(out, self._inv_flat, out=out)
        flatfile = self.flat.lstseq if self.flat is not None else 0
        return CalibratedFrame(image=out, correction=correction, darkfile=darkfile,
                               flatfile=flatfile, dark_scale=ratio)
