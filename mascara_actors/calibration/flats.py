"""The flats of a master flat: dark subtracted, each divided by its level; the normalisation.

The master flat is ``(flat - dark) / median`` per frame, combined and normalised to median 1
over the science region (and 1 outside it, where it has no meaning).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from mascara_actors.calibration.combine import BLOCK_BYTES
from mascara_actors.calibration.dark_model import (
    bias_term,
    check_master_matches,
    dark_ratio,
    scaled_dark,
)
from mascara_actors.calibration.master_files import MasterFrame
from mascara_actors.calibration.regions import science_region
from mascara_actors.calibration.sources import Source, too_few
from mascara_actors.calibration.statistics import STAT_SAMPLES, finite_median, finite_values
from mascara_actors.errors import CalibrationError
from mascara_actors.rawframe import RawHeader

__all__ = ["flat_preparation", "normalise_flat"]


def flat_preparation(sources: Sequence[Source], dark: MasterFrame | None,
                     bias: MasterFrame | None, rtol: float, need: int,
                     left_out: list[str] | None,
                     ) -> tuple[Callable[[int, np.ndarray, int, int], None], int, list[Source]]:
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
    check_master_matches(dark, h0.camera, h0.site, sources[0].shape, science_region(h0),
                         f"the flats ({sources[0].name} ...)", CalibrationError)
    ratios = [dark_ratio(dark, s.header.exptime, rtol) for s in sources]
    bias_level: np.ndarray | float = 0.0
    if any(r != 1.0 for r in ratios):
        bias_level = bias_term(dark, bias)
        if not isinstance(bias_level, np.ndarray) and not math.isfinite(bias_level):
            raise CalibrationError(
                f"flat exposure times differ from the master dark's {dark.exptime:g} s and the "
                "dark has no overscan to take the bias level from; pass bias= or a dark of the "
                "flats' exposure time")
    full = slice(None)

    def dark_rows(ratio: float, r0: int, r1: int) -> np.ndarray:
        if ratio == 1.0:
            return dark.data[r0:r1]
        return scaled_dark(dark, bias_level, ratio, slice(r0, r1), full)

    # Each flat's level: median of (flat - dark) on a regular grid of the science region.
    step = max(1, math.ceil(math.sqrt(h0.xsize * h0.ysize / STAT_SAMPLES)))
    sci_rows = range(h0.y0, h0.y0 + h0.ysize, step)
    block = max(step, (BLOCK_BYTES // (4 * sources[0].shape[1])) // step * step)
    levels = np.empty(len(sources))
    for i, src in enumerate(sources):
        samples = []
        for r0 in range(sci_rows.start, sci_rows.stop, block):
            r1 = min(sci_rows.stop, r0 + block)
            rows = (np.asarray(src.rows(r0, r1), np.float32) - dark_rows(ratios[i], r0, r1))
            samples.append(finite_values(rows[::step, h0.x0 : h0.x0 + h0.xsize : step]))
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
            raise too_few(len(keep), "flat", need, left_out)
        sources = [sources[i] for i in keep]
        ratios = [ratios[i] for i in keep]
        levels = levels[keep]
    inv_levels = (1.0 / levels).astype(np.float32)

    def prepare(i: int, rows: np.ndarray, r0: int, r1: int) -> None:
        rows -= dark_rows(ratios[i], r0, r1)
        rows *= inv_levels[i]

    return prepare, dark.lstseq if dark.kind == "dark" else 0, list(sources)


def normalise_flat(data: np.ndarray, h: RawHeader) -> np.ndarray:
    rows, cols = slice(h.y0, h.y0 + h.ysize), slice(h.x0, h.x0 + h.xsize)
    sci = data[rows, cols]
    level = finite_median(sci)
    if not level > 0:
        raise CalibrationError(f"master flat has median {level} over the science region; "
                               "check the flat frames")
    out = np.ones_like(data)
    np.multiply(sci, np.float32(1.0 / level), out=out[rows, cols])
    return out
