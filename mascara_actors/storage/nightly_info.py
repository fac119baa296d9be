"""What a nightly light-curve file (or a baseline of several) holds, checked on opening.

The errors name the file and say what to do: a missing file, a file that is not HDF5, a
foreign HDF5 file, a file of an older layout (reduce the night again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mascara_actors.errors import StorageError
from mascara_actors.storage import layout as L
from mascara_actors.storage._sources import attr_value

__all__ = ["REQUIRED_FIELDS", "NightlyInfo", "inspect_nightly", "open_error", "read_info"]

REQUIRED_FIELDS = ("lstseq", "flux0", "eflux0", "x", "y", "pflag", "aflag")
"""Light-curve fields a baseline and the calibration need."""


@dataclass(frozen=True, slots=True)
class NightlyInfo:
    """What a nightly (or baseline) file holds."""

    path: Path
    camera_id: str
    """Site code + camera letter, e.g. ``LPC``."""
    nights: tuple[str, ...]
    kind: str
    lc_dtype: np.dtype | None
    """dtype of the stored light curves (None when the file has no star)."""
    is_baseline: bool
    header: dict[str, Any]


def open_error(path: Path, exc: Exception) -> StorageError:
    """The StorageError for a file that h5py could not open."""
    if not path.exists():
        return StorageError(f"{path} does not exist: check the path")
    return StorageError(f"{path} cannot be opened as HDF5 ({exc}): it is not a nightly "
                        "light-curve file of mascara-actors (truncated, or another format)")


def _nights(head: dict[str, Any], is_baseline: bool) -> tuple[str, ...]:
    if not is_baseline:
        return (str(head.get("night", "")),)
    raw = head.get("nights", [])
    return tuple(str(n.decode() if isinstance(n, bytes) else n)
                 for n in np.atleast_1d(np.asarray(raw)))


def read_info(f: h5py.File, path: Path) -> NightlyInfo:
    """Check the open file ``f`` (at ``path``) and say what it holds."""
    missing = [g for g in (L.GROUP_HEADER, L.GROUP_STATION, L.GROUP_STARS, L.GROUP_LIGHTCURVES)
               if g not in f]
    if missing:
        raise StorageError(f"{path} is not a nightly light-curve file of mascara-actors: groups "
                           f"{missing} are missing (a foreign HDF5 file?); give the "
                           "lightcurves/fast_{night}{SITE}{CAM}.hdf5 files of the nights")
    head = {k: attr_value(v) for k, v in f[L.GROUP_HEADER].attrs.items()}
    version = head.get("format_version")
    if version != L.FORMAT_VERSION:
        got = "no format_version" if version is None else f"format_version {version}"
        raise StorageError(f"{path} has the layout of another version ({got}; this version "
                           f"reads format_version {L.FORMAT_VERSION}): reduce the night again "
                           "with this version (mascara-actors --replay) to use it")
    site, cam = head.get("site"), head.get("camera")
    if not (isinstance(site, str) and isinstance(cam, str) and len(site) == 2 and len(cam) == 1):
        raise StorageError(f"{path} has no site/camera header attributes: it is not a nightly "
                           "file of mascara-actors")
    lcs = f[L.GROUP_LIGHTCURVES]
    lc_dtype = next((lcs[key].dtype for key in lcs), None)
    if lc_dtype is not None:
        absent = [n for n in REQUIRED_FIELDS if n not in (lc_dtype.names or ())]
        if absent:
            raise StorageError(f"{path} stores light curves without the fields {absent} (an "
                               "older layout): reduce the night again with this version")
    is_baseline = bool(head.get("baseline", 0)) or "filelist" in f
    return NightlyInfo(path, f"{site}{cam}", _nights(head, is_baseline),
                       str(head.get("kind", "")), lc_dtype, is_baseline, head)


def inspect_nightly(path: str | Path) -> NightlyInfo:
    """Check that ``path`` is a nightly light-curve file (or baseline) of this version.

    Raises
    ------
    StorageError
        Naming the file: missing, not HDF5, foreign, an older layout.
    """
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, RuntimeError) as exc:
        raise open_error(path, exc) from exc
    with f:
        return read_info(f, path)
