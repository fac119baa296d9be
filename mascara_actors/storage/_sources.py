"""Readers of stored files used by the combine and the star-file finaliser.

:class:`SetSource` is one validated per-set file, :class:`NightlySource` an existing nightly
file; both give records (with ``id``) for a list of star ids, and their star, station and
astrometry rows. :func:`scan_sets` finds the per-set files of a night and sorts out the
foreign, truncated and other-night ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from mascara_actors.errors import StorageError
from mascara_actors.storage import layout as L
from mascara_actors.storage._h5 import dataset_length, read_dataset, read_rows
from mascara_actors.storage.layout import NightId

__all__ = [
    "NightlySource",
    "SetSource",
    "attr_value",
    "read_field_group",
    "scan_sets",
]

log = logging.getLogger(__name__)


def attr_value(value: object) -> object:
    """An HDF5 attribute as a plain Python value (bytes decoded, 0-d arrays unwrapped)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return attr_value(value[()])
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_field_group(group: h5py.Group) -> np.ndarray:
    """Rebuild a structured array from a group holding one dataset per field."""
    names = list(group.keys())
    if not names:
        return np.empty(0)
    dtype = np.dtype([(n, group[n].dtype, group[n].shape[1:]) for n in names])
    n = group[names[0]].shape[0]
    out = np.empty(n, dtype=dtype)
    for name in names:
        ds = group[name]
        if ds.shape[0] != n:
            raise StorageError(f"{group.file.filename}: field {group.name}/{name} has "
                               f"{ds.shape[0]} rows, not {n}: the file is corrupt")
        out[name] = ds[()]
    return out


@dataclass
class SetSource:
    """One validated per-set file; its index is held in memory, records are read on demand."""

    path: Path
    kind: str
    setidx: int
    record_dtype: np.dtype
    index_ids: np.ndarray
    index_start: np.ndarray
    index_count: np.ndarray
    header: dict[str, object]
    schema: tuple[np.dtype, np.dtype, np.dtype, np.dtype | None]
    """(records without id, stars, station, astrometry or None)."""
    _file: h5py.File | None = field(default=None, repr=False)

    @classmethod
    def open_checked(cls, path: Path, nid: NightId, kind: str) -> SetSource:
        """Validate ``path`` as a per-set file of ``nid``/``kind``; StorageError says why not."""
        named = L.parse_set_file_name(path)
        if named is None:
            raise StorageError("its name is not {kind}_{setidx:09d}.hdf5")
        try:
            f = h5py.File(path, "r")
        except (OSError, RuntimeError) as exc:
            raise StorageError(f"cannot be opened as HDF5 (truncated or not HDF5): {exc}") from exc
        with f:
            missing = [a for a in L.SET_ATTRS if a not in f.attrs]
            if missing:
                raise StorageError(f"attributes {missing} are missing: not a per-set file")
            attrs = {a: attr_value(f.attrs[a]) for a in L.SET_ATTRS}
            if attrs["format_version"] != L.FORMAT_VERSION:
                raise StorageError(f"format_version {attrs['format_version']} is not "
                                   f"{L.FORMAT_VERSION}, the one this version reads")
            mine = {"night": nid.night, "site": nid.site, "camera": nid.camera, "kind": kind,
                    "setidx": named[1]}
            other = {k: attrs[k] for k in mine if attrs[k] != mine[k]}
            if other:
                raise StorageError(f"it belongs elsewhere: {other} (expected "
                                   f"{ {k: mine[k] for k in other} })")
            needed = [L.SET_RECORDS, L.SET_INDEX, L.SET_STARS, L.SET_STATION]
            absent = [d for d in needed if d not in f]
            if absent:
                raise StorageError(f"datasets {absent} are missing")
            try:
                rec = f[L.SET_RECORDS]
                index = f[L.SET_INDEX][()]
                stars_dt = f[L.SET_STARS].dtype
                station_dt = f[L.SET_STATION].dtype
                astro_dt = f[L.SET_ASTROMETRY].dtype if L.SET_ASTROMETRY in f else None
                header = ({k: attr_value(v) for k, v in f[L.SET_HEADER].attrs.items()}
                          if L.SET_HEADER in f else {})
                nrec = rec.shape[0]
                rec_dt = rec.dtype
            except (OSError, RuntimeError, KeyError) as exc:
                raise StorageError(f"cannot be read: {exc}") from exc
        for name, dt in (("records", rec_dt), ("stars", stars_dt)):
            if "id" not in (dt.names or ()):
                raise StorageError(f"its {name} have no 'id' field")
        if "lstseq" not in (rec_dt.names or ()) or "lstseq" not in (station_dt.names or ()):
            raise StorageError("its records or station have no 'lstseq' field")
        if int(index["count"].sum()) != nrec:
            raise StorageError(f"its index counts {int(index['count'].sum())} records, "
                               f"the file holds {nrec}")
        lc_dt = np.dtype([(n, rec_dt.fields[n][0]) for n in rec_dt.names if n != "id"])
        return cls(path=path, kind=kind, setidx=named[1], record_dtype=rec_dt,
                   index_ids=index["id"].astype(np.int64),
                   index_start=index["start"].astype(np.int64),
                   index_count=index["count"].astype(np.int64),
                   header=header, schema=(lc_dt, stars_dt, station_dt, astro_dt))

    def open(self) -> h5py.File:
        """Open the file (kept open until :meth:`close`)."""
        if self._file is None:
            try:
                self._file = h5py.File(self.path, "r")
            except (OSError, RuntimeError) as exc:
                raise StorageError(f"cannot open {self.path} again: {exc}") from exc
        return self._file

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()

    def _read(self, name: str) -> np.ndarray:
        try:
            data: np.ndarray = self.open()[name][()]
        except (OSError, RuntimeError, KeyError) as exc:
            raise StorageError(f"cannot read {name} of {self.path}: {exc}") from exc
        return data

    def read_stars(self) -> np.ndarray:
        return self._read(L.SET_STARS)

    def read_station(self) -> np.ndarray:
        return self._read(L.SET_STATION)

    def read_astrometry(self) -> np.ndarray | None:
        return self._read(L.SET_ASTROMETRY) if self.schema[3] is not None else None

    def read_ids(self, ids: np.ndarray) -> np.ndarray:
        """Records (with id) of the stars ``ids`` (sorted), in stored (id, lstseq) order.

        Runs of neighbouring stars are read as one slice, so a contiguous id range costs
        one read.
        """
        pos = np.flatnonzero(np.isin(self.index_ids, ids))
        if len(pos) == 0:
            return np.empty(0, dtype=self.record_dtype)
        breaks = np.flatnonzero(np.diff(pos) != 1) + 1
        first = pos[np.r_[0, breaks]]
        last = pos[np.r_[breaks - 1, len(pos) - 1]]
        lo = self.index_start[first]
        hi = self.index_start[last] + self.index_count[last]
        ds = self.open()[L.SET_RECORDS]
        try:
            parts = [read_rows(ds, a, b, self.record_dtype)
                     for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]
        except (OSError, RuntimeError) as exc:
            raise StorageError(f"cannot read records of {self.path}: {exc}") from exc
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def scan_sets(
    night_dir: Path, kind: str, nid: NightId
) -> tuple[list[SetSource], list[tuple[Path, str]]]:
    """The usable per-set files of one night and kind, sorted by setidx, and the rest.

    Returns
    -------
    sources : list of SetSource
        Valid files of this night, camera and kind, with one common schema (that of the
        lowest setidx).
    skipped : list of (path, reason)
        Files in the per-set directory that were left alone, with the reason.
    """
    directory = L.tmp_dir(night_dir)
    sources: list[SetSource] = []
    skipped: list[tuple[Path, str]] = []
    if not directory.is_dir():
        return sources, skipped
    for path in sorted(directory.glob("*.hdf5")):
        named = L.parse_set_file_name(path)
        if named is not None and named[0] != kind:
            continue
        try:
            sources.append(SetSource.open_checked(path, nid, kind))
        except StorageError as exc:
            skipped.append((path, str(exc)))
    sources.sort(key=lambda s: s.setidx)
    if sources:
        ref = sources[0].schema
        astro_ref = next((s.schema[3] for s in sources if s.schema[3] is not None), None)
        good = []
        for s in sources:
            astro_ok = s.schema[3] is None or s.schema[3] == astro_ref
            if s.schema[:3] == ref[:3] and astro_ok:
                good.append(s)
            else:
                skipped.append((s.path, f"its record layout differs from {sources[0].path.name}"))
        sources = good
    for path, reason in skipped:
        log.warning("left alone %s: %s", path, reason)
    return sources, skipped


class NightlySource:
    """An existing nightly file, read as one more input of the combine (it comes first)."""

    def __init__(self, path: Path, nid: NightId, kind: str) -> None:
        self.path = path
        try:
            self._file = h5py.File(path, "r")
        except (OSError, RuntimeError) as exc:
            raise StorageError(
                f"the existing nightly file {path} cannot be opened ({exc}); it is left "
                "alone: move it away to combine the per-set files into a new one") from exc
        try:
            f = self._file
            head = f[L.GROUP_HEADER].attrs
            self.header = {k: attr_value(v) for k, v in head.items()}
            mine = {"night": nid.night, "site": nid.site, "camera": nid.camera, "kind": kind}
            other = {k: self.header.get(k) for k in mine if self.header.get(k) != mine[k]}
            if other:
                raise StorageError(f"the existing nightly file {path} belongs elsewhere "
                                   f"({other}); it is left alone: move it away")
            version = self.header.get("format_version")
            if version != L.FORMAT_VERSION:
                raise StorageError(
                    f"the existing nightly file {path} has format_version {version} (software "
                    f"{self.header.get('software_version')}), not {L.FORMAT_VERSION}, the one "
                    "this version writes; it is left alone: move it away and combine again")
            self.stars = read_field_group(f[L.GROUP_STARS])
            self.station = read_field_group(f[L.GROUP_STATION])
            self.astrometry = (read_field_group(f[L.GROUP_ASTROMETRY])
                               if L.GROUP_ASTROMETRY in f else None)
            self.lc_group = f[L.GROUP_LIGHTCURVES]
            self.ids = (self.stars["id"].astype(np.int64) if len(self.stars)
                        else np.empty(0, np.int64))
            self.counts = np.array([dataset_length(self.lc_group, str(i))
                                    for i in self.ids.tolist()], dtype=np.int64)
            self.lc_dtype: np.dtype | None = (
                self.lc_group[str(self.ids[0])].dtype if len(self.ids) else None)
        except StorageError:
            self._file.close()
            raise
        except (OSError, RuntimeError, KeyError) as exc:
            self._file.close()
            raise StorageError(f"the existing nightly file {path} is incomplete ({exc}); it "
                               "is left alone: move it away and combine again") from exc

    def read_ids(self, ids: np.ndarray, record_dtype: np.dtype) -> np.ndarray:
        """Records of ``ids`` with the ``id`` field put back, as ``record_dtype``."""
        present = self.ids[np.isin(self.ids, ids)]
        if len(present) == 0 or self.lc_dtype is None:  # no ids: no light-curve dtype either
            return np.empty(0, dtype=record_dtype)
        try:
            curves = [read_dataset(self.lc_group, str(i), self.lc_dtype)
                      for i in present.tolist()]
        except (OSError, RuntimeError, KeyError) as exc:
            raise StorageError(f"cannot read light curves of {self.path}: {exc}") from exc
        lc = np.concatenate(curves)
        out = np.empty(len(lc), dtype=record_dtype)
        for name in lc.dtype.names or ():
            out[name] = lc[name]
        out["id"] = np.repeat(present, [len(c) for c in curves])
        return out

    def close(self) -> None:
        self._file.close()
