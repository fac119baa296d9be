"""A night's master frames from its calibration sequence.

Used by the replay of a recorded night (its calibration files) and by a live station (the
dusk and dawn sequences it takes). Masters are written to the night's ``binned/``
directory as ``{lstseq:08d}{CAM}master{kind}.fits``; a new master dark goes to the top of
the camera's dark table (``state/darktable{ID}.dat``), which later nights fall back on.

One bad calibration frame never stops a night: frames that cannot be read (zero bytes,
truncated, a damaged header) or do not belong (another camera, image shape or exposure
time, a header that contradicts the file name) are left out of the master with a warning
naming the file, as long as ``min_*`` frames remain; otherwise the kind gets no master from
this sequence (the dark falls back on the dark table) and the notes say why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mascara_actors.calibration.build import master_bias, master_dark, master_flat
from mascara_actors.calibration.dark_table import (
    adopt_legacy_table,
    dark_from_table,
    update_dark_filename,
)
from mascara_actors.calibration.master_files import MasterFrame, read_master, write_master
from mascara_actors.config import CalibrationConfig, CameraConfig
from mascara_actors.errors import CalibrationError, FrameError

__all__ = ["Masters", "make_masters"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Masters:
    """The masters a night's science is calibrated with (paths, None when there is none)."""

    dark: str | None
    """Master dark: made from this sequence, else the newest of the dark table."""
    flat: str | None
    """Master flat made from this sequence (needs a dark)."""
    bias: str | None
    """Master bias made from this sequence (kept for the record; the dark holds the bias)."""
    made: tuple[str, ...] = ()
    """Kinds of master made from this sequence (``bias``, ``dark``, ``flat``)."""
    notes: tuple[str, ...] = ()
    """Remarks for the operator (which dark is used and why, frames left out)."""
    left_out: tuple[str, ...] = ()
    """Calibration frames left out of the masters, each ``"file: reason"``."""


def _mismatch(path: Path, master: MasterFrame) -> str | None:
    """Why the file at ``path`` is not ``master`` as made now (None when it is)."""
    try:
        old = read_master(path)
    except CalibrationError as exc:
        return f"it is not a readable master ({exc})"
    if old.kind != master.kind:
        return f"it is a master {old.kind}, not a master {master.kind}"
    if (old.camera, old.site) != (master.camera, master.site):
        return f"it is of camera {old.camera} at {old.site}, not {master.camera} at {master.site}"
    if old.data.shape != master.data.shape or old.region != master.region:
        return (f"it has shape {old.data.shape} and science region {old.region}, not "
                f"{master.data.shape} and {master.region}")
    if not old.sources:
        return "it does not record the frames it was made from"
    if old.sources != master.sources:
        return (f"it was made from {len(old.sources)} other frames ({_names(old.sources)}), "
                f"not from {_names(master.sources)}")
    if not np.array_equal(old.data, master.data, equal_nan=True):
        return "its pixels differ from the master made from the same frames"
    return None


def _names(names: Sequence[str]) -> str:
    return ", ".join(names[:3]) + (f" ... ({len(names)} in all)" if len(names) > 3 else "")


def _write(master: MasterFrame, binned: Path, notes: list[str]) -> str:
    """Write ``master`` into ``binned``, or keep the file already there if it is this master.

    A restart makes the same master from the same frames and keeps the file; any other file
    at the path (unreadable, another kind, shape or provenance, other pixels) is replaced,
    atomically, with a warning and a note.
    """
    path = binned / master.filename
    if path.exists():
        problem = _mismatch(path, master)
        if problem is None:
            return str(path)
        note = f"replaced {path}: {problem}"
        log.warning("%s", note)
        notes.append(note)
    write_master(path, master)
    return str(path)


def _attempt(kind: str, make: Callable[[], MasterFrame], notes: list[str],
             left_out: list[str]) -> MasterFrame | None:
    """``make()``, its left-out frames noted; None, with the reason noted, when it fails."""
    try:
        master = make()
    except (CalibrationError, FrameError) as exc:
        note = f"no master {kind} from this sequence: {exc}"
        log.warning("%s", note)
        notes.append(note)
        return None
    for entry in master.left_out:  # calibration logged each one as a warning
        notes.append(f"left out of the master {kind}: {entry}")
    left_out += master.left_out
    return master


def make_masters(
    *,
    bias: Sequence[Path] = (),
    dark: Sequence[Path] = (),
    flat: Sequence[Path] = (),
    camera: CameraConfig,
    calibration: CalibrationConfig,
    binned_dir: Path,
    state_dir: Path,
) -> Masters:
    """Make the masters of one calibration sequence (blocking: run it in a worker thread).

    Parameters
    ----------
    bias, dark, flat
        Raw calibration frames of one camera. A kind with fewer frames than its
        ``min_*`` in ``calibration`` makes no master. Frames that cannot be read or do not
        belong are left out with a warning (see the module docstring).
    camera
        The camera, for its dark table.
    calibration
        ``reduction.calibration`` of the config (minimum counts, dark-table length).
    binned_dir
        Where the masters are written (the night's ``binned/``).
    state_dir
        Where the dark table lives.
    """
    binned_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    made: list[str] = []
    left_out: list[str] = []
    bias_path = None
    if len(bias) >= calibration.min_bias:
        mbias = _attempt("bias", lambda: master_bias(
            bias, calibration=calibration, leave_out=True), notes, left_out)
        if mbias is not None:
            bias_path = _write(mbias, binned_dir, notes)
            made.append("bias")
    dark_path: str | None = None
    mdark = None
    if len(dark) >= calibration.min_dark:
        mdark = _attempt("dark", lambda: master_dark(
            dark, calibration=calibration, leave_out=True), notes, left_out)
    if mdark is not None:
        dark_path = _write(mdark, binned_dir, notes)
        adopt_legacy_table(camera, state_dir)
        update_dark_filename(camera.id, dark_path, state_dir, nmax=calibration.dark_history)
        made.append("dark")
    else:
        dark_path, note = dark_from_table(camera, state_dir)
        notes.append(f"no master dark from the night's {len(dark)} dark files: {note}")
    flat_path = None
    if len(flat) >= calibration.min_flat and dark_path is not None:
        try:
            flat_dark = mdark if mdark is not None else read_master(dark_path)
        except CalibrationError as exc:
            note = f"no master flat from this sequence: its dark cannot be used ({exc})"
            log.warning("%s", note)
            notes.append(note)
        else:
            mflat = _attempt("flat", lambda: master_flat(
                flat, flat_dark, calibration=calibration, leave_out=True), notes, left_out)
            if mflat is not None:
                flat_path = _write(mflat, binned_dir, notes)
                made.append("flat")
    if made:
        log.info("masters made from the calibration sequence: %s", ", ".join(made))
    return Masters(dark_path, flat_path, bias_path, tuple(made), tuple(notes), tuple(left_out))
