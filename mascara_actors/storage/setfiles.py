"""Per-set files (the seed's ``tmpdbSave``): one HDF5 file per set of 50, written whole.

``{night_dir}/tmp/{kind}_{setidx:09d}.hdf5`` holds, for one set: ``records`` (every record
with its ``id``, sorted by (id, lstseq)), ``index`` (id, start, count per star, so one
star's rows are one slice), ``stars``, ``station``, optionally ``astrometry``, the caller's
``header`` attributes, and the identity attributes (night, site, camera, kind, setidx,
format_version). A crash leaves the file complete or absent, never half written.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import anyio.to_thread
import numpy as np

from mascara_actors.atomic_files import remove_stale_tmp
from mascara_actors.errors import StorageError
from mascara_actors.storage import layout as L
from mascara_actors.storage.atomic import atomic_hdf5
from mascara_actors.storage.combine import CombineReport, combine_night
from mascara_actors.storage.layout import NightId
from mascara_actors.storage.locks import NightLock

__all__ = ["SetWriter", "list_set_files"]

log = logging.getLogger(__name__)

_INDEX_DTYPE = np.dtype([("id", "i4"), ("start", "u8"), ("count", "u8")])


def list_set_files(night_dir: str | Path, kind: str) -> dict[int, Path]:
    """The per-set files of ``kind`` present in a night directory, by setidx.

    Only names are looked at: a file under its final name is complete by construction.
    """
    L.check_kind(kind)
    directory = L.tmp_dir(Path(night_dir))
    found: dict[int, Path] = {}
    if directory.is_dir():
        for p in sorted(directory.glob(f"{kind}_*.hdf5")):
            named = L.parse_set_file_name(p)
            if named is not None:
                found[named[1]] = p
    return found


def _require_fields(name: str, arr: np.ndarray, fields: tuple[str, ...]) -> None:
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None or arr.ndim != 1:
        raise StorageError(f"{name} must be a 1-d structured numpy array, got "
                           f"{type(arr).__name__} {getattr(arr, 'dtype', '')}")
    missing = [f for f in fields if f not in arr.dtype.names]
    if missing:
        raise StorageError(f"{name} have no field {missing}; their fields are "
                           f"{list(arr.dtype.names)}")


def _index(sorted_records: np.ndarray) -> np.ndarray:
    ids, start, count = np.unique(sorted_records["id"], return_index=True, return_counts=True)
    index = np.empty(len(ids), dtype=_INDEX_DTYPE)
    index["id"], index["start"], index["count"] = ids, start, count
    return index


class SetWriter:
    """The one writer of a camera-night's per-set files.

    Opening takes the night's lock (a second writer gets StorageError naming the holder)
    and removes the ``*.tmp`` files a crashed writer left behind. Use it as a context
    manager (``with`` or ``async with``); closing releases the lock and is idempotent.

    Parameters
    ----------
    night_dir : path-like
        ``{outdir}/{night}{SITE}{CAM}``; created if missing.
    header : mapping, optional
        Attributes copied into every per-set file and from there into the nightly file's
        ``header`` group: ``lat``, ``lon`` (deg), ``height`` (m), ``aper`` (px), ``skyrad``
        (px), ``exptime`` (s), versions... Values: numbers, strings or numeric arrays.
    """

    def __init__(self, night_dir: str | Path, *, header: Mapping[str, object] | None = None
                 ) -> None:
        self.night_dir = Path(night_dir)
        self.night = NightId.from_dir(self.night_dir)
        self.header = dict(header or {})
        self.lock = NightLock(self.night_dir)

    # -- lifetime ------------------------------------------------------------------------

    def open(self) -> SetWriter:
        """Lock the night and clean up after a crashed writer."""
        self.lock.acquire()
        try:
            for d in (L.tmp_dir(self.night_dir), L.lightcurve_dir(self.night_dir)):
                d.mkdir(parents=True, exist_ok=True)
                remove_stale_tmp(d)
        except BaseException:
            self.lock.release()
            raise
        return self

    def close(self) -> None:
        """Release the lock. Every set already returned by :meth:`write_set` is on disk."""
        self.lock.release()

    async def aclose(self) -> None:
        """Async :meth:`close` (files are complete once written; nothing to flush)."""
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> SetWriter:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> SetWriter:
        # taking the lock makes directories and a file: not on the event loop
        return await anyio.to_thread.run_sync(self.open)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    # -- writing -------------------------------------------------------------------------

    def completed_sets(self, kind: str) -> np.ndarray:
        """setidx of the sets of ``kind`` already on disk, ascending (for resuming)."""
        return np.array(sorted(list_set_files(self.night_dir, kind)), dtype=np.int64)

    def write_set(
        self,
        kind: str,
        setidx: int,
        records: np.ndarray,
        *,
        stars: np.ndarray,
        station: np.ndarray,
        astrometry: np.ndarray | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write one set's file whole and rename it into place.

        Parameters
        ----------
        kind : {"fast", "slow"}
        setidx : int
            Number of the set (``lstseq // 50``); names the file.
        records : structured array
            Every record of the set, any dtype with ``id`` and ``lstseq`` fields, any order.
        stars : structured array
            One row per star (with ``id``); every id of ``records`` must have one.
        station : structured array
            Rows with ``lstseq`` (one per exposure for fast, one per set for slow).
        astrometry : structured array, optional
            Rows with ``lstseq`` (the set's solution), absent when the set was not solved.
        overwrite : bool
            Replace an existing file of the same set. Off by default: a set on disk is
            never silently replaced (skip the sets listed by :meth:`completed_sets`).

        Returns
        -------
        pathlib.Path
            The per-set file.

        Raises
        ------
        StorageError
            Writer not open, bad input, the set exists, or the write failed (then no file
            was created and earlier files are untouched).
        """
        if not self.lock.held:
            raise StorageError(f"the SetWriter of {self.night_dir} is not open: use "
                               "`with SetWriter(night_dir) as writer:` before write_set")
        path = L.set_file_path(self.night_dir, kind, setidx)
        _require_fields("records", records, ("id", "lstseq"))
        _require_fields("stars", stars, ("id",))
        _require_fields("station", station, ("lstseq",))
        if astrometry is not None:
            _require_fields("astrometry", astrometry, ("lstseq",))
        star_ids = stars["id"]
        if len(np.unique(star_ids)) != len(star_ids):
            raise StorageError(f"set {setidx}: stars has repeated ids; give one row per star")
        orphans = np.setdiff1d(records["id"], star_ids)
        if len(orphans):
            raise StorageError(f"set {setidx}: records of ids {orphans[:10].tolist()} have no "
                               "row in stars; give a star row for every id measured")
        if path.exists() and not overwrite:
            raise StorageError(f"{path} exists: set {setidx} is already on disk; skip the "
                               "sets listed by completed_sets() or pass overwrite=True")
        order = np.lexsort((records["lstseq"], records["id"]))
        sorted_records = records[order]
        attrs = {**self.night.attrs(), "kind": kind, "setidx": int(setidx),
                 "format_version": L.FORMAT_VERSION}
        try:
            with atomic_hdf5(path) as out:
                f = out.file
                for key in L.SET_ATTRS:
                    f.attrs[key] = attrs[key]
                head = f.create_group(L.SET_HEADER, track_order=True)
                for key in sorted(self.header):
                    head.attrs[key] = self.header[key]
                f.create_dataset(L.SET_RECORDS, data=sorted_records)
                f.create_dataset(L.SET_INDEX, data=_index(sorted_records))
                f.create_dataset(L.SET_STARS, data=stars)
                f.create_dataset(L.SET_STATION, data=station)
                if astrometry is not None:
                    f.create_dataset(L.SET_ASTROMETRY, data=astrometry)
        except TypeError as exc:
            raise StorageError(f"set {setidx}: a field or header value cannot be stored in "
                               f"HDF5 ({exc}); use numbers or byte strings") from exc
        log.debug("wrote %s (%d records, %d stars)", path, len(records), len(stars))
        return path

    async def write_set_async(self, kind: str, setidx: int, records: np.ndarray, *,
                              stars: np.ndarray, station: np.ndarray,
                              astrometry: np.ndarray | None = None,
                              overwrite: bool = False) -> Path:
        """:meth:`write_set` in a worker thread, so the event loop keeps running."""

        call = functools.partial(self.write_set, kind, setidx, records, stars=stars,
                                 station=station, astrometry=astrometry, overwrite=overwrite)
        return await anyio.to_thread.run_sync(call)

    def combine(self, kind: str, *, minobs: int = 51, compression: str | None = "gzip",
                chunk_stars: int = 500, chunk_records: int = 1_000_000,
                keep_sets: bool = False, threads: int | None = None) -> CombineReport:
        """:func:`~mascara_actors.storage.combine.combine_night` under this writer's lock
        (same options)."""
        if not self.lock.held:
            raise StorageError(f"the SetWriter of {self.night_dir} is not open: open it "
                               "before combining, or call combine_night() directly")
        return combine_night(self.night_dir, kind, minobs=minobs, compression=compression,
                             chunk_stars=chunk_stars, chunk_records=chunk_records,
                             keep_sets=keep_sets, threads=threads, lock=self.lock)
