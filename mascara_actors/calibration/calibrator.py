"""Calibrating science frames: :class:`Calibrator` and the :class:`CalibratedFrame` it gives.

The calibrator subtracts the master dark (or, without one, the master bias or the median
overscan level, and says so), divides by the master flat when there is one (legacy never
did) and crops to the science region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mascara_actors.calibration.dark_model import EXPTIME_RTOL, check_master_matches, dark_ratio
from mascara_actors.calibration.master_files import MasterFrame
from mascara_actors.calibration.regions import check_region, frame_name, science_region
from mascara_actors.calibration.statistics import (
    ImageStatistics,
    median_of_levels,
    overscan_levels,
)
from mascara_actors.errors import CalibrationError, FrameError
from mascara_actors.rawframe import RawFrame

__all__ = ["FLAT_MIN", "CalibratedFrame", "Calibrator"]

FLAT_MIN = 0.05
"""Master-flat pixels below this response (median = 1) are dead: calibrated to NaN."""


def _subtract(sci: np.ndarray, level: np.ndarray | np.float32, out: np.ndarray) -> None:
    """``out = sci - level`` (float32 ``level`` and ``out``), bit for bit as one ufunc.

    Pixels that convert to float32 exactly (16-bit raw frames) are copied in first and the
    subtraction runs on float32 alone: 35 % faster than the mixed-type ufunc, which casts
    through small buffers (issue 17).
    """
    if np.result_type(sci.dtype, np.float32) == np.float32:
        out[...] = sci
        np.subtract(out, level, out=out)
    else:
        np.subtract(sci, level, out=out)


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
    finite: bool = False
    """True when no pixel can be NaN (an integer readout and masters without NaN): a
    consumer may skip its own pass looking for NaN."""


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
    _flat_sci: np.ndarray | None = field(init=False, repr=False, compare=False)
    _dark_bias: np.ndarray | np.float32 = field(init=False, repr=False, compare=False)
    _finite: bool = field(init=False, repr=False, compare=False)

    @property
    def flat_science(self) -> np.ndarray | None:
        """The master flat over the science region (float32, about 1), which
        :meth:`calibrate` divides by; None without a flat. The photometry needs it: the
        detector saturates, and counts photons, before the flat."""
        return self._flat_sci

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
                check_master_matches(m, ref.camera, ref.site, ref.data.shape, ref.region,
                                     f"master {ref.kind} {ref.filename}", CalibrationError)
        def sci(m: MasterFrame) -> np.ndarray:
            return np.ascontiguousarray(m.science(), np.float32)

        set_ = object.__setattr__
        set_(self, "_dark_sci", sci(self.dark) if self.dark is not None else None)
        set_(self, "_bias_sci", sci(self.bias) if self.bias is not None else None)
        inv = f = None
        if self.flat is not None:
            f = sci(self.flat)
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = np.where(np.isfinite(f) & (f >= FLAT_MIN), 1.0 / f, np.nan)
            inv = inv.astype(np.float32)
        set_(self, "_inv_flat", inv)
        set_(self, "_flat_sci", f)
        dark_bias: np.ndarray | np.float32 = np.float32(math.nan)
        if self.dark is not None:
            dark_bias = (self._bias_sci if self._bias_sci is not None else np.float32(
                median_of_levels(*overscan_levels(self.dark.data, self.dark))))
        set_(self, "_dark_bias", dark_bias)
        # Checked once here, so that calibrated frames can say they hold no NaN.
        set_(self, "_finite", all(
            bool(np.isfinite(a).all()) for a in (self._dark_sci, self._bias_sci, inv, dark_bias)
            if isinstance(a, np.ndarray)))

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
        name = frame_name(raw)
        check_region(raw.data, h, name)
        for m in (self.dark, self.bias, self.flat):
            if m is not None:
                check_master_matches(m, h.camera, h.site, raw.data.shape, science_region(h),
                                     name, FrameError)
        sci = raw.science()
        # With no zero anywhere in the readout (stats say so), the science region cannot be
        # all zero: the frame is not read once more to check.
        if (stats is None or stats.imnzero > 0) and not np.any(sci):
            raise FrameError(f"{name}: every science pixel is 0 ADU, the readout failed; "
                             "the frame is skipped")
        if out is None:
            out = np.empty(sci.shape, np.float32)
        elif out.shape != sci.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 array of shape {sci.shape}, "
                             f"got {out.dtype} {out.shape}")
        ratio = 1.0
        if self.dark is not None and self._dark_sci is not None:
            ratio = dark_ratio(self.dark, h.exptime, EXPTIME_RTOL)
            if ratio == 1.0:
                _subtract(sci, self._dark_sci, out)
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
            _subtract(sci, self._bias_sci, out)
            correction, darkfile = "bias", 0
        else:
            level = stats.overscan_level if stats is not None else median_of_levels(
                *overscan_levels(raw.data, h))
            if not math.isfinite(level):
                raise FrameError(f"{name}: no master dark or bias is loaded and the frame has "
                                 "no overscan to take the bias from; record darks")
            _subtract(sci, np.float32(level), out)
            correction, darkfile = "overscan", 0
        if self._inv_flat is not None:
            np.multiply(out, self._inv_flat, out=out)
        flatfile = self.flat.lstseq if self.flat is not None else 0
        return CalibratedFrame(image=out, correction=correction, darkfile=darkfile,
                               flatfile=flatfile, dark_scale=ratio,
                               finite=self._finite and raw.data.dtype.kind in "ui")
