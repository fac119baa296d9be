"""Storage of the pipeline's products: the only package that imports h5py.

- :class:`SetWriter`: per-set files, written whole and renamed into place (``tmpdbSave``).
- :func:`combine_night`: the crash-safe, chunked, idempotent nightly combine (``CombineH5``).
- :func:`write_star_fits`, :class:`StarFileFinaliser`, :func:`export_stars`: per-star FITS
  tables (``LCtable``, ``SaveItAll``, ``CombinePkl``).
- :class:`NightFile`: reading API for users; :class:`SetFile` for a per-set file.
- :func:`read_json_state`, :func:`write_json_state`: small JSON state files.
- :class:`NightLock`: one writer per camera-night.
- :mod:`.baseline` (``build_baseline``), :mod:`.baseline_file` (``BaselineFile``) and
  :mod:`.nightly_info`: the nights of a camera merged for the calibration;
  :mod:`.calibrated`: the calibrated light curves and fitted maps.
"""

from mascara_actors.storage.atomic import (
    atomic_hdf5 as atomic_hdf5,
)
from mascara_actors.storage.combine import COMPRESSIONS as COMPRESSIONS
from mascara_actors.storage.combine import CombineReport as CombineReport
from mascara_actors.storage.combine import combine_night as combine_night
from mascara_actors.storage.layout import FORMAT_VERSION as FORMAT_VERSION
from mascara_actors.storage.layout import KINDS as KINDS
from mascara_actors.storage.layout import NightId as NightId
from mascara_actors.storage.layout import binned_dir as binned_dir
from mascara_actors.storage.layout import event_log_path as event_log_path
from mascara_actors.storage.layout import nightly_file_path as nightly_file_path
from mascara_actors.storage.layout import set_file_path as set_file_path
from mascara_actors.storage.locks import NightLock as NightLock
from mascara_actors.storage.reader import NightFile as NightFile
from mascara_actors.storage.reader import SetFile as SetFile
from mascara_actors.storage.setfiles import SetWriter as SetWriter
from mascara_actors.storage.setfiles import list_set_files as list_set_files
from mascara_actors.storage.starfiles import StarFileFinaliser as StarFileFinaliser
from mascara_actors.storage.starfiles import export_stars as export_stars
from mascara_actors.storage.starfiles import generic_header as generic_header
from mascara_actors.storage.starfiles import write_star_fits as write_star_fits
from mascara_actors.storage.state import read_json_state as read_json_state
from mascara_actors.storage.state import write_json_state as write_json_state

__all__ = [
    "COMPRESSIONS",
    "FORMAT_VERSION",
    "KINDS",
    "CombineReport",
    "NightFile",
    "NightId",
    "NightLock",
    "SetFile",
    "SetWriter",
    "StarFileFinaliser",
    "atomic_hdf5",
    "binned_dir",
    "combine_night",
    "event_log_path",
    "export_stars",
    "generic_header",
    "list_set_files",
    "nightly_file_path",
    "read_json_state",
    "set_file_path",
    "write_json_state",
    "write_star_fits",
]
