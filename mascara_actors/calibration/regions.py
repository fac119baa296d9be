"""Readout geometry: the science region and the overscan strips of a raw readout.

Rows and columns are those of the full raw readout; ``(X0, XSIZE, Y0, YSIZE)`` place the
science region in it, as the raw and master headers say.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from mascara_actors.errors import FrameError
from mascara_actors.rawframe import RawFrame

__all__ = ["ReadoutRegion", "check_region", "frame_name", "overscan_slices", "science_region"]


class ReadoutRegion(Protocol):
    """Anything that places a science region in a readout (a raw header, a master frame)."""

    @property
    def x0(self) -> int: ...
    @property
    def xsize(self) -> int: ...
    @property
    def y0(self) -> int: ...
    @property
    def ysize(self) -> int: ...


def overscan_slices(h: ReadoutRegion) -> tuple[tuple[slice, slice], ...]:
    """The top, left, bottom and right overscan strips, as (rows, columns) slices."""
    lx, ux, ly, uy = h.x0, h.x0 + h.xsize, h.y0, h.y0 + h.ysize
    return (
        (slice(uy, None), slice(lx, ux)),  # top
        (slice(ly, uy), slice(None, lx)),  # left
        (slice(None, ly), slice(lx, ux)),  # bottom
        (slice(ly, uy), slice(ux, None)),  # right
    )


def science_region(h: ReadoutRegion) -> tuple[int, int, int, int]:
    """``(X0, XSIZE, Y0, YSIZE)`` of the science region, pixels."""
    return h.x0, h.xsize, h.y0, h.ysize


def check_region(data: np.ndarray, h: ReadoutRegion, source: str) -> None:
    """Raise FrameError naming ``source`` when the science region does not fit ``data``."""
    if data.ndim != 2 or h.y0 + h.ysize > data.shape[0] or h.x0 + h.xsize > data.shape[1]:
        raise FrameError(
            f"{source}: science region X0={h.x0} XSIZE={h.xsize} Y0={h.y0} YSIZE={h.ysize} "
            f"does not fit the image of shape {data.shape}; check the header"
        )


def frame_name(raw: RawFrame) -> str:
    """How messages name a frame: its path, else its lstseq."""
    return str(raw.path) if raw.path is not None else f"frame lstseq {raw.header.lstseq}"
