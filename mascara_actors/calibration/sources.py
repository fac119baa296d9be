"""The input frames of a master: opened for reading in row blocks, and screened.

A frame is in memory or a file; a file is read in row sections, so that a combine of 20
full-size frames needs a few frames' worth of memory. A compressed file is decompressed once:
into memory while the frames decompressed so far fit in :data:`MEMORY_BYTES`, into a scratch
file after. :func:`screen` keeps the frames that belong in one master (kind, camera, image
shape, science region, exposure time) and says why the others do not.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mascara_actors.calibration.regions import check_region, frame_name, science_region
from mascara_actors.errors import CalibrationError, FrameError
from mascara_actors.fits_layout import open_fits, unpack_gzip
from mascara_actors.rawframe import (
    RawFrame,
    RawHeader,
    check_name_agrees,
    check_raw_pixels,
    raw_pixels,
)

__all__ = ["MEMORY_BYTES", "Scratch", "Source", "open_source", "screen", "too_few"]

MEMORY_BYTES = 256 * 2**20
"""Decompressed frames of one master kept in memory, bytes (12 full-size raw frames): the ten
darks of an archive night stay in memory instead of costing half a second of writes to
scratch files and reads back. No more: a station that stores its frames compressed makes
its dawn masters while the night's last set and nightly files are written, near the
process's peak (1.2 GB)."""


@dataclass(frozen=True, slots=True)
class Source:
    """One input frame of a combine: its header, and its rows on demand (ADU)."""

    name: str
    header: RawHeader
    shape: tuple[int, ...]
    rows: Callable[[int, int], np.ndarray]


class Scratch:
    """Where the frames of one master wait, decompressed, for the combine: in memory up to
    ``memory_bytes`` (default :data:`MEMORY_BYTES`), then in files of a temporary directory
    removed with ``stack``."""

    def __init__(self, stack: contextlib.ExitStack, memory_bytes: int | None = None) -> None:
        self._stack = stack
        self._room = MEMORY_BYTES if memory_bytes is None else memory_bytes
        self._dir: Path | None = None

    def keep(self, data: np.ndarray) -> Callable[[int, int], np.ndarray]:
        """Rows ``r0:r1`` of ``data`` on demand, from memory or from a scratch file."""
        if data.nbytes <= self._room:
            self._room -= data.nbytes
            return lambda r0, r1: data[r0:r1]
        if self._dir is None:
            self._dir = Path(self._stack.enter_context(
                tempfile.TemporaryDirectory(prefix="mascara-master-")))
        fd, tmp = tempfile.mkstemp(suffix=".u16", dir=self._dir)
        with open(fd, "wb") as f:
            data.tofile(f)
        dtype, nx = data.dtype, data.shape[1]

        def rows(r0: int, r1: int) -> np.ndarray:
            return np.fromfile(tmp, dtype=dtype, count=(r1 - r0) * nx,
                               offset=r0 * nx * dtype.itemsize).reshape(r1 - r0, nx)

        return rows


def open_source(item: RawFrame | str | Path, stack: contextlib.ExitStack,
                scratch: Scratch) -> Source:
    """A frame in memory, or a file read in row sections.

    A compressed file (``.gz``, ``.fz``) is unpacked once and kept in ``scratch``: row
    sections of it would cost a full decompression each (gzip) or twice a full read (Rice
    tiles).
    """
    if isinstance(item, RawFrame):
        pixels = item.data
        name = frame_name(item)
        check_region(pixels, item.header, name)
        return Source(name, item.header, pixels.shape, lambda r0, r1: pixels[r0:r1])
    path = Path(item)
    name = str(path)
    compressed = path.name.endswith((".gz", ".fz"))
    try:
        # checked whole first: a truncated file would fail only half-way through a combine
        content = unpack_gzip(path) if compressed else None
        hdul = open_fits(path, content=content)
    except (FrameError, OSError, ValueError, TypeError, IndexError, EOFError) as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise FrameError(f"{name}: unreadable FITS file ({reason})") from None
    try:
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
                raise FrameError(f"{name}: science region {science_region(header)} does not fit "
                                 f"the image of shape {shape}")
            if not compressed:
                stack.push(closer.pop_all())  # keep the file open for the sections
                section = hdu.section
                return Source(name, header, shape, lambda r0, r1: section[r0:r1])
            data = raw_pixels(path, hdul, hdu, content)
    except (FrameError, CalibrationError):
        raise
    except (OSError, ValueError, TypeError, IndexError, EOFError) as exc:
        raise FrameError(f"{name}: unreadable FITS file ({exc})") from None
    return Source(name, header, shape, scratch.keep(data))


_AGREEMENT: tuple[tuple[str, Callable[[Source], str]], ...] = (
    ("camera", lambda s: f"camera {s.header.camera} at {s.header.site}"),
    ("image shape", lambda s: f"shape {s.shape}"),
    ("science region", lambda s: f"(X0, XSIZE, Y0, YSIZE) = {science_region(s.header)}"),
)


def too_few(found: int, kind: str, need: int, left_out: Sequence[str] | None) -> CalibrationError:
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


def screen(sources: Sequence[Source], kind: str, need: int, rtol: float,
           left_out: list[str] | None) -> list[Source]:
    """The frames that belong in one master of ``kind``.

    They must be ``kind`` frames of one camera, one image shape and science region and, for
    darks, one exposure time (within ``rtol`` of the median); the majority sets the common
    value. With ``left_out`` None the first problem raises CalibrationError naming the odd
    files; otherwise the odd frames are left out, each added to ``left_out`` as
    ``"file: reason"``. Fewer than ``need`` frames left raise CalibrationError.
    """
    if left_out is None and len(sources) < need:
        raise too_few(len(sources), kind, need, None)
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
        raise too_few(len(kept), kind, need, left_out)
    return kept
