"""Calibration frames: image statistics, master bias/dark/flat, frame calibration, dark table.

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
- :func:`make_masters` makes a night's masters from its calibration sequence; a new master
  dark goes to the top of the camera's dark table (:func:`update_dark_filename`), which
  later nights fall back on (:func:`dark_from_table`).

All pixel values are ADU; rows and columns are those of the full raw readout unless a name
says "science region".

One module per concept: :mod:`.regions` (readout geometry), :mod:`.statistics` (image
statistics), :mod:`.sources` (input frames, read in row blocks and screened),
:mod:`.combine` (the robust combine), :mod:`.master_files` (master frames and their files),
:mod:`.dark_model` (dark-current scaling, master checks), :mod:`.flats` (flat preparation),
:mod:`.build` (``master_bias`` / ``master_dark`` / ``master_flat``), :mod:`.calibrator`,
:mod:`.masters` (a night's masters) and :mod:`.dark_table`.
"""

from mascara_actors.calibration.build import master_bias, master_dark, master_flat
from mascara_actors.calibration.calibrator import FLAT_MIN, CalibratedFrame, Calibrator
from mascara_actors.calibration.combine import CLIP_NSIGMA, COMBINE_METHOD
from mascara_actors.calibration.dark_model import EXPTIME_RTOL
from mascara_actors.calibration.dark_table import (
    adopt_legacy_table,
    dark_from_table,
    dark_table_path,
    get_dark_filename,
    read_dark_table,
    update_dark_filename,
)
from mascara_actors.calibration.master_files import (
    MASTER_KINDS,
    MasterFrame,
    master_filename,
    read_master,
    write_master,
)
from mascara_actors.calibration.masters import Masters, make_masters
from mascara_actors.calibration.statistics import (
    STAT_SATURATION_ADU,
    ImageStatistics,
    image_statistics,
)

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
    "Masters",
    "adopt_legacy_table",
    "dark_from_table",
    "dark_table_path",
    "get_dark_filename",
    "image_statistics",
    "make_masters",
    "master_bias",
    "master_dark",
    "master_filename",
    "master_flat",
    "read_dark_table",
    "read_master",
    "update_dark_filename",
    "write_master",
]
