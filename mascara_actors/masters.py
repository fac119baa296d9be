"""A night's master frames from its calibration sequence, and the dark table.

Used by the replay of a recorded night (its calibration files) and by a live station (the
dusk and dawn sequences it takes). Masters are written to the night's ``binned/``
directory as ``{lstseq:08d}{CAM}master{kind}.fits``; a new master dark goes to the top of
the camera's dark table (``state/darktable{CAM}.dat``), which later nights fall back on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mascara_actors.calibration import (
    MasterFrame,
    master_bias,
    master_dark,
    master_flat,
    read_master,
    write_master,
)
from mascara_actors.config import CalibrationConfig
from mascara_actors.errors import CalibrationError
from mascara_actors.storage import get_dark_filename, update_dark_filename

__all__ = ["Masters", "dark_from_table", "make_masters"]

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
    """Remarks for the operator (which dark is used and why)."""


def dark_from_table(camera_letter: str, state_dir: Path) -> tuple[str | None, str]:
    """The newest master dark of the camera's dark table (None when there is none), and a
    note for the operator saying which dark the science is calibrated with."""
    try:
        path = str(get_dark_filename(camera_letter, state_dir))
    except CalibrationError:
        return None, "no dark table: subtracting the overscan level"
    return path, f"using {path} from the dark table"


def _write(master: MasterFrame, binned: Path) -> str:
    path = binned / master.filename
    if not path.exists():  # the same frames give the same master: a restart re-uses it
        write_master(path, master)
    return str(path)


def make_masters(
    *,
    bias: Sequence[Path] = (),
    dark: Sequence[Path] = (),
    flat: Sequence[Path] = (),
    camera_letter: str,
    calibration: CalibrationConfig,
    binned_dir: Path,
    state_dir: Path,
) -> Masters:
    """Make the masters of one calibration sequence (blocking: run it in a worker thread).

    Parameters
    ----------
    bias, dark, flat
        Raw calibration frames of one camera. A kind with fewer frames than its
        ``min_*`` in ``calibration`` makes no master.
    camera_letter
        The camera (N, E, S, W or C), for the dark table.
    calibration
        ``reduction.calibration`` of the config (minimum counts, dark-table length).
    binned_dir
        Where the masters are written (the night's ``binned/``).
    state_dir
        Where the dark table lives.

    Raises
    ------
    CalibrationError
        A frame that does not belong (another camera, shape or exposure time).
    """
    binned_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    made: list[str] = []
    bias_path = None
    if len(bias) >= calibration.min_bias:
        bias_path = _write(master_bias(bias, calibration=calibration), binned_dir)
        made.append("bias")
    dark_path: str | None = None
    if len(dark) >= calibration.min_dark:
        dark_path = _write(master_dark(dark, calibration=calibration), binned_dir)
        update_dark_filename(camera_letter, dark_path, state_dir, nmax=calibration.dark_history)
        made.append("dark")
    else:
        dark_path, note = dark_from_table(camera_letter, state_dir)
        notes.append(f"{len(dark)} darks: {note}")
    flat_path = None
    if len(flat) >= calibration.min_flat and dark_path is not None:
        master = master_flat(flat, read_master(dark_path), calibration=calibration)
        flat_path = _write(master, binned_dir)
        made.append("flat")
    if made:
        log.info("masters made from the calibration sequence: %s", ", ".join(made))
    return Masters(dark_path, flat_path, bias_path, tuple(made), tuple(notes))
