"""The night's calibrated points, one file per set, written as each set is saved.

``{night}/calibrated/set_{setidx:09d}.hdf5`` (kept with the night's products; the raw per-set
files in ``tmp/`` are merged into the nightly file at dawn):

- ``header`` attributes: ``kind = "live_calibrated"``, ``setidx``, ``camera``, ``maps`` (the
  calibration of earlier nights it was made with), ``format_version``, ``software_version``;
- ``points``: one row per calibrated point (HIP ``id``, ``lstseq``, calibrated ``mag``,
  ``emag``, ``trans``, ``clouds``, ``use``);
- ``bins``: one row per star, the set's mean (``id`` and the fields of the calibrated light
  curves' bins, plus ``efloor``, the photometric error alone);
- ``clouds``: one row per sky patch and exposure (``patch``, ``lstseq``, ``value``,
  ``sigma``, ``nstars``).

The dtypes are :mod:`mascara_actors.decorrelation.live`'s; this module only moves the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mascara_actors import __version__
from mascara_actors.errors import StorageError
from mascara_actors.storage import layout as L
from mascara_actors.storage._h5 import create_dataset
from mascara_actors.storage._sources import attr_value
from mascara_actors.storage.atomic import atomic_hdf5

__all__ = ["LiveNight", "list_live_sets", "live_set_path", "read_live_night", "write_live_set"]

KIND = "live_calibrated"
_TABLES = ("points", "bins", "clouds")


def live_set_path(night_dir: Path, setidx: int) -> Path:
    """``{night}/calibrated/set_{setidx:09d}.hdf5``."""
    return Path(night_dir) / "calibrated" / f"set_{int(setidx):09d}.hdf5"


def write_live_set(night_dir: Path, setidx: int, *, camera: str, maps: Path,
                   points: np.ndarray, bins: np.ndarray, clouds: np.ndarray) -> Path:
    """Write one set's calibrated tables, whole or not at all (StorageError)."""
    path = live_set_path(night_dir, setidx)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_hdf5(path) as ah:
        f = ah.file
        head = f.create_group(L.GROUP_HEADER)
        for key, value in (("kind", KIND), ("setidx", int(setidx)), ("camera", camera),
                           ("maps", str(maps)), ("format_version", L.FORMAT_VERSION),
                           ("software_version", __version__)):
            head.attrs[key] = value
        for name, table in zip(_TABLES, (points, bins, clouds), strict=True):
            create_dataset(f, name, table)
    return path


def list_live_sets(night_dir: Path) -> dict[int, Path]:
    """The calibrated set files of a night, by set index."""
    out: dict[int, Path] = {}
    for p in sorted((Path(night_dir) / "calibrated").glob("set_*.hdf5")):
        stem = p.stem.removeprefix("set_")
        if stem.isdigit():
            out[int(stem)] = p
    return out


@dataclass(frozen=True)
class LiveNight:
    """The calibrated sets of a night, their bins and clouds joined."""

    maps: str
    """The calibration they were made with (of the last set)."""
    sets: tuple[int, ...]
    bins: np.ndarray
    clouds: np.ndarray


def read_live_night(night_dir: Path) -> LiveNight | None:
    """The night's calibrated sets, None when it has none (StorageError naming a file that
    is not one)."""
    found = list_live_sets(night_dir)
    if not found:
        return None
    bins, clouds, maps = [], [], ""
    for path in found.values():
        try:
            with h5py.File(path, "r") as f:
                head = f[L.GROUP_HEADER].attrs
                if attr_value(head.get("kind")) != KIND:
                    raise StorageError(f"{path} is not a calibrated set file")
                maps = str(attr_value(head.get("maps")))
                bins.append(f["bins"][()])
                clouds.append(f["clouds"][()])
        except (OSError, KeyError) as exc:
            raise StorageError(f"cannot read the calibrated set {path}: {exc}") from exc
    return LiveNight(maps, tuple(found), np.concatenate(bins), np.concatenate(clouds))
