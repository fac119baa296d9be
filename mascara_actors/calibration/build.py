"""Masters from sequences of frames: :func:`master_bias`, :func:`master_dark`, :func:`master_flat`.

The frames are screened (:mod:`.sources`), combined robustly (:mod:`.combine`) and, for a
flat, dark-subtracted and normalised first (:mod:`.flats`). The master dark includes the
bias, as in legacy (reference/legacy-pipeline.md sections 3 and 8.1).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mascara_actors.calibration.combine import combine_frames
from mascara_actors.calibration.dark_model import EXPTIME_RTOL
from mascara_actors.calibration.flats import flat_preparation, normalise_flat
from mascara_actors.calibration.master_files import MasterFrame
from mascara_actors.calibration.sources import Scratch, Source, open_source, screen
from mascara_actors.config import CalibrationConfig, load_config
from mascara_actors.errors import CalibrationError, FrameError
from mascara_actors.rawframe import RawFrame

__all__ = ["master_bias", "master_dark", "master_flat"]

log = logging.getLogger(__name__)


def _make_master(items: Iterable[RawFrame | str | Path], kind: str, need: int, *,
                 exptime_rtol: float = EXPTIME_RTOL, dark: MasterFrame | None = None,
                 bias: MasterFrame | None = None, leave_out: bool = False) -> MasterFrame:
    left_out: list[str] | None = [] if leave_out else None
    with contextlib.ExitStack() as stack:
        scratch = Scratch(stack)
        opened: list[Source] = []
        for item in items:
            try:
                opened.append(open_source(item, stack, scratch))
            except (FrameError, CalibrationError) as exc:
                if left_out is None:
                    raise
                left_out.append(str(exc))  # the message starts with the file's name
        sources = screen(opened, kind, need, exptime_rtol, left_out)
        prepare = None
        darkfile = 0
        if kind == "flat":
            prepare, darkfile, sources = flat_preparation(sources, dark, bias, exptime_rtol,
                                                          need, left_out)
        data = combine_frames(sources, prepare)
        h0 = sources[0].header
        if kind == "flat":
            data = normalise_flat(data, h0)
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
