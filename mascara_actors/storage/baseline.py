"""Baselines: a camera's nightly fast files merged into one file (legacy ``make_baseline``).

``build_baseline(files, out)`` keeps the layout of the nightly files (``header`` attributes,
``station``, ``stars``, ``lightcurves/{id}`` sorted by lstseq, ``astrometry`` when any night
has one) and adds what a calibration needs to know where the data came from:

- ``filelist``: the nightly files (absolute paths), in night order, as the legacy baselines;
- ``sources``: one row per nightly file: ``path``, ``night``, ``nstars``, ``nrecords``,
  ``nstation``;
- header attributes ``baseline`` (1), ``nights`` (the nights, YYYYMMDD), ``nnights``,
  ``lstmin`` and ``lstmax`` (first and last lstseq); ``night`` is the first night.

The ``stars`` table keeps the first row of each star (catalogue data) with ``nobs``,
``lstseqmin`` and ``lstseqmax`` over all nights and ``jdstart`` the earliest. The work goes
by chunks of stars (at most ``chunk_stars`` stars and about ``chunk_records`` records), so
memory does not grow with the number of nights; the file is written whole under a
temporary name, checked and renamed into place.

:class:`BaselineFile` reads a baseline (or a single nightly file) for the calibration.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from mascara_actors import __version__
from mascara_actors.errors import StorageError
from mascara_actors.storage import layout as L
from mascara_actors.storage._h5 import (
    create_dataset,
    create_deflated_dataset,
    dataset_length,
    deflate_chunks,
    read_dataset,
)
from mascara_actors.storage._merge import merge_rows, merge_star_rows
from mascara_actors.storage._sources import attr_value, read_field_group
from mascara_actors.storage.atomic import atomic_hdf5

__all__ = [
    "REQUIRED_FIELDS",
    "BaselineFile",
    "BaselineReport",
    "NightlyInfo",
    "build_baseline",
    "inspect_nightly",
]

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("lstseq", "flux0", "eflux0", "x", "y", "pflag", "aflag")
"""Light-curve fields a baseline and the calibration need."""

_SOURCES_DTYPE = np.dtype([("path", "S1024"), ("night", "S8"), ("nstars", "u4"),
                           ("nrecords", "u8"), ("nstation", "u4")])
_LC_CHUNK = 4096
_GZIP_LEVEL = 1
_COMPRESSIONS = ("gzip", "lzf", None)


@dataclass(frozen=True, slots=True)
class NightlyInfo:
    """What a nightly (or baseline) file holds, checked on opening."""

    path: Path
    camera_id: str
    """Site code + camera letter, e.g. ``LPC``."""
    nights: tuple[str, ...]
    kind: str
    lc_dtype: np.dtype | None
    """dtype of the stored light curves (None when the file has no star)."""
    is_baseline: bool
    header: dict[str, Any]


def _describe_open_error(path: Path, exc: Exception) -> StorageError:
    if not path.exists():
        return StorageError(f"{path} does not exist: check the path")
    return StorageError(f"{path} cannot be opened as HDF5 ({exc}): it is not a nightly "
                        "light-curve file of mascara-actors (truncated, or another format)")


def _inspect_open(f: h5py.File, path: Path) -> NightlyInfo:
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
    kind = str(head.get("kind", ""))
    lcs = f[L.GROUP_LIGHTCURVES]
    lc_dtype = None
    for key in lcs:
        lc_dtype = lcs[key].dtype
        break
    if lc_dtype is not None:
        absent = [n for n in REQUIRED_FIELDS if n not in (lc_dtype.names or ())]
        if absent:
            raise StorageError(f"{path} stores light curves without the fields {absent} (an "
                               "older layout): reduce the night again with this version")
    is_baseline = bool(head.get("baseline", 0)) or "filelist" in f
    if is_baseline:
        raw = head.get("nights", [])
        nights = tuple(str(n.decode() if isinstance(n, bytes) else n)
                       for n in np.atleast_1d(raw))
    else:
        nights = (str(head.get("night", "")),)
    return NightlyInfo(path, f"{site}{cam}", nights, kind, lc_dtype, is_baseline, head)


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
        raise _describe_open_error(path, exc) from exc
    with f:
        return _inspect_open(f, path)


@dataclass(frozen=True, slots=True)
class BaselineReport:
    """What :func:`build_baseline` wrote."""

    output: Path
    nights: tuple[str, ...]
    nstars: int
    nrecords: int
    nstation: int


def _chunks(counts: np.ndarray, chunk_stars: int, chunk_records: int) -> list[slice]:
    out, start, total = [], 0, 0
    for i, c in enumerate(counts.tolist()):
        if i > start and (i - start >= chunk_stars or total + c > chunk_records):
            out.append(slice(start, i))
            start, total = i, 0
        total += c
    if len(counts) > start:
        out.append(slice(start, len(counts)))
    return out


def _check_sources(files: Sequence[str | Path]) -> list[NightlyInfo]:
    if len(files) < 2:
        raise StorageError(f"a baseline merges several nights of one camera; got {len(files)} "
                           "file(s): give the nightly files of at least two nights (the "
                           "calibration wants about 15)")
    seen: dict[Path, Path] = {}
    infos = []
    for p in files:
        path = Path(p)
        key = path.resolve()
        if key in seen:
            raise StorageError(f"{path} is given twice: give each nightly file once")
        seen[key] = path
        info = inspect_nightly(path)
        if info.is_baseline:
            raise StorageError(f"{path} is already a baseline ({len(info.nights)} nights); "
                               "give the nightly files it was made from instead")
        if info.kind != "fast":
            raise StorageError(f"{path} holds {info.kind!r} light curves; a baseline merges "
                               "the fast (per-exposure) nightly files")
        infos.append(info)
    first = infos[0]
    for info in infos[1:]:
        if info.camera_id != first.camera_id:
            raise StorageError(f"nights of two cameras are mixed: {info.path} is camera "
                               f"{info.camera_id}, {first.path} is {first.camera_id}; build "
                               "one baseline per camera")
        if first.lc_dtype is not None and info.lc_dtype is not None \
                and info.lc_dtype != first.lc_dtype:
            raise StorageError(f"{info.path} stores light-curve records of another layout than "
                               f"{first.path}: reduce both nights with the same version")
    by_night: dict[str, Path] = {}
    for info in infos:
        night = info.nights[0]
        if night in by_night:
            raise StorageError(f"night {night} is given twice ({by_night[night]} and "
                               f"{info.path}): give each night once")
        by_night[night] = info.path
    return sorted(infos, key=lambda i: i.nights[0])


def build_baseline(
    files: Sequence[str | Path],
    out: str | Path,
    *,
    compression: str | None = "gzip",
    chunk_stars: int = 500,
    chunk_records: int = 2_000_000,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BaselineReport:
    """Merge the nightly fast files of one camera into the baseline ``out``.

    Parameters
    ----------
    files
        Nightly files ``fast_{night}{SITE}{CAM}.hdf5`` of one camera, at least two nights,
        in any order.
    out
        The baseline file to write (replaced if it exists; its directory must exist).
    compression
        Filter of the light-curve datasets: ``"gzip"`` (default), ``"lzf"`` or None.
    chunk_stars, chunk_records
        Bounds of one chunk of work (stars, records).
    threads
        Threads compressing gzip chunks (default: the number of CPUs).
    progress
        Called with (stars done, stars in all) after each chunk.

    Raises
    ------
    StorageError
        Naming the file: a foreign or older-layout file, nights of two cameras, a night given
        twice, nights that overlap, a failed write (nothing is left behind then).
    """
    if compression not in _COMPRESSIONS:
        raise StorageError(f"compression={compression!r} must be one of {_COMPRESSIONS}")
    out = Path(out)
    if not out.parent.is_dir():
        raise StorageError(f"the directory of {out} does not exist: create it first")
    infos = _check_sources(files)
    if any(out.resolve() == i.path.resolve() for i in infos):
        raise StorageError(f"{out} is one of the input files: write the baseline elsewhere")
    threads = (os.cpu_count() or 1) if threads is None else max(1, int(threads))
    with contextlib.ExitStack() as stack:
        handles = []
        for info in infos:
            try:
                f = stack.enter_context(h5py.File(info.path, "r"))
            except (OSError, RuntimeError) as exc:
                raise _describe_open_error(info.path, exc) from exc
            handles.append(f)
        pool = (stack.enter_context(ThreadPoolExecutor(threads))
                if compression == "gzip" and threads > 1 else None)
        return _build(infos, handles, out, compression=compression,
                      chunk_stars=max(1, chunk_stars), chunk_records=max(1, chunk_records),
                      pool=pool, progress=progress)


def _read_tables(info: NightlyInfo, f: h5py.File
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    try:
        station = read_field_group(f[L.GROUP_STATION])
        stars = read_field_group(f[L.GROUP_STARS])
        astro = read_field_group(f[L.GROUP_ASTROMETRY]) if L.GROUP_ASTROMETRY in f else None
    except (OSError, RuntimeError, KeyError, StorageError) as exc:
        raise StorageError(f"{info.path}: cannot read its tables ({exc}); the file is damaged: "
                           "combine the night again") from exc
    return station, stars, astro


def _build(infos: list[NightlyInfo], handles: list[h5py.File], out: Path, *,
           compression: str | None, chunk_stars: int, chunk_records: int,
           pool: ThreadPoolExecutor | None,
           progress: Callable[[int, int], None] | None) -> BaselineReport:
    tables = [_read_tables(i, f) for i, f in zip(infos, handles, strict=True)]
    for n in range(len(infos) - 1):
        sa, sb = tables[n][0], tables[n + 1][0]
        if len(sa) and len(sb) and int(sa["lstseq"].max()) >= int(sb["lstseq"].min()):
            raise StorageError(f"{infos[n].path} and {infos[n + 1].path} overlap in time "
                               f"(lstseq up to {int(sa['lstseq'].max())} and from "
                               f"{int(sb['lstseq'].min())}): give each night once")
    station_dtype = tables[0][0].dtype
    stars_dtype = tables[0][1].dtype
    for info, (station, stars, _) in zip(infos, tables, strict=True):
        if station.dtype != station_dtype or stars.dtype != stars_dtype:
            raise StorageError(f"{info.path} has station or star tables of another layout than "
                               f"{infos[0].path}: reduce both nights with the same version")
    station = merge_rows([t[0] for t in tables], "lstseq")
    star_rows = merge_star_rows([t[1] for t in tables])
    astro_parts = [t[2] for t in tables if t[2] is not None and len(t[2])]
    astrometry = None
    if astro_parts and all(a.dtype == astro_parts[0].dtype for a in astro_parts):
        astrometry = merge_rows(astro_parts, "lstseq")
    elif astro_parts:
        log.warning("astrometry tables of different layouts; the baseline keeps none")

    lc_dtype = next((i.lc_dtype for i in infos if i.lc_dtype is not None), None)
    ids = star_rows["id"].astype(np.int64) if len(star_rows) else np.empty(0, np.int64)
    # records per star and night, from the dataset lengths (the truth, not the tables)
    counts = np.zeros((len(infos), len(ids)), np.int64)
    for n, f in enumerate(handles):
        lcs = f[L.GROUP_LIGHTCURVES]
        present = set(lcs.keys())
        for k, i in enumerate(ids.tolist()):
            key = str(i)
            if key in present:
                counts[n, k] = dataset_length(lcs, key)
    total = counts.sum(axis=0)
    chunks = _chunks(total, chunk_stars, chunk_records)
    nrecords = int(total.sum())
    nights = tuple(i.nights[0] for i in infos)
    head = dict(infos[0].header)
    lstmin = int(station["lstseq"].min()) if len(station) else 0
    lstmax = int(station["lstseq"].max()) if len(station) else 0
    head.update({"baseline": 1, "nights": np.array(nights, dtype="S8"),
                 "nnights": len(nights), "lstmin": lstmin, "lstmax": lstmax,
                 "night": nights[0], "software_version": __version__})
    sources = np.zeros(len(infos), _SOURCES_DTYPE)
    sources["path"] = [str(i.path.resolve()).encode() for i in infos]
    sources["night"] = [n.encode() for n in nights]
    sources["nstars"] = [len(t[1]) for t in tables]
    sources["nrecords"] = counts.sum(axis=1)
    sources["nstation"] = [len(t[0]) for t in tables]

    def verify(tmp: Path) -> None:
        try:
            with h5py.File(tmp, "r") as f:
                lcs = f[L.GROUP_LIGHTCURVES]
                got = sum(dataset_length(lcs, k) for k in lcs)
                nst = len(lcs)
        except (OSError, RuntimeError, KeyError) as exc:
            raise StorageError(f"the new baseline {tmp} cannot be read back ({exc}); it was "
                               "not installed") from exc
        if (nst, got) != (int(np.count_nonzero(total)), nrecords):
            raise StorageError(f"the new baseline {tmp} holds {nst} stars and {got} records, "
                               f"expected {int(np.count_nonzero(total))} and {nrecords}; it "
                               "was not installed")

    done = 0
    with atomic_hdf5(out, verify=verify) as ah:
        f = ah.file
        header = f.create_group(L.GROUP_HEADER, track_order=True)
        for key in sorted(head):
            header.attrs[key] = head[key]
        create_dataset(f, "filelist", np.array(sources["path"]))
        create_dataset(f, "sources", sources)
        for name, rows in ((L.GROUP_STATION, station),):
            group = f.create_group(name, track_order=True)
            for field in rows.dtype.names or ():
                create_dataset(group, field, rows[field])
        lcs_out = f.create_group(L.GROUP_LIGHTCURVES, track_order=True)
        for part in chunks:
            chunk_ids = ids[part]
            curves = []
            for k, i in enumerate(chunk_ids.tolist()):
                pieces = []
                for n, fin in enumerate(handles):
                    if counts[n, part.start + k]:
                        try:
                            pieces.append(read_dataset(fin[L.GROUP_LIGHTCURVES], str(i),
                                                       lc_dtype))
                        except (OSError, RuntimeError, KeyError) as exc:
                            raise StorageError(f"{infos[n].path}: cannot read the light "
                                               f"curve of star {i} ({exc}); the file is "
                                               "damaged: combine the night again") from exc
                curves.append(np.concatenate(pieces) if pieces else None)
            _write_curves(lcs_out, chunk_ids, curves, compression, pool)
            ah.check()
            done += len(chunk_ids)
            if progress is not None:
                progress(done, len(ids))
        kept = total > 0
        stars = star_rows[kept]
        names = stars.dtype.names or ()
        if "nobs" in names:
            stars["nobs"] = total[kept]
        group = f.create_group(L.GROUP_STARS, track_order=True)
        for field in names:
            create_dataset(group, field, stars[field])
        if astrometry is not None:
            group = f.create_group(L.GROUP_ASTROMETRY, track_order=True)
            for field in astrometry.dtype.names or ():
                create_dataset(group, field, astrometry[field])
    log.info("baseline %s: %d nights, %d stars, %d records", out, len(nights),
             int(kept.sum()), nrecords)
    return BaselineReport(out, nights, int(kept.sum()), nrecords, len(station))


def _write_curves(group: h5py.Group, ids: np.ndarray, curves: list[np.ndarray | None],
                  compression: str | None, pool: ThreadPoolExecutor | None) -> None:
    items = [(int(i), c) for i, c in zip(ids.tolist(), curves, strict=True)
             if c is not None and len(c)]
    if pool is not None:
        deflate = functools.partial(deflate_chunks, chunk=_LC_CHUNK, level=_GZIP_LEVEL,
                                    shuffle=True)
        for (i, c), payload in zip(items, pool.map(deflate, (c for _, c in items)),
                                   strict=True):
            create_deflated_dataset(group, str(i), c.dtype, len(c), payload,
                                    chunk=_LC_CHUNK, level=_GZIP_LEVEL, shuffle=True)
        return
    for i, c in items:
        if compression is None:
            create_dataset(group, str(i), c)
        else:
            create_dataset(group, str(i), c, chunks=(_LC_CHUNK,), compression=compression,
                           level=_GZIP_LEVEL, shuffle=True)


class BaselineFile:
    """A baseline (or a single nightly file) opened for reading; a context manager.

    Raises
    ------
    StorageError
        Naming the file: missing, not HDF5, foreign, an older layout.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except (OSError, RuntimeError) as exc:
            raise _describe_open_error(self.path, exc) from exc
        try:
            self.info = _inspect_open(self._file, self.path)
            self.stars = read_field_group(self._file[L.GROUP_STARS])
            self.station = read_field_group(self._file[L.GROUP_STATION])
        except (StorageError, OSError, RuntimeError, KeyError) as exc:
            self._file.close()
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"{self.path} cannot be read ({exc}): the file is damaged") \
                from exc
        if len(self.stars) == 0 or "id" not in (self.stars.dtype.names or ()):
            self._file.close()
            raise StorageError(f"{self.path} holds no star: nothing to calibrate")
        self.filelist: list[str] = []
        if "filelist" in self._file:
            self.filelist = [p.decode() if isinstance(p, bytes) else str(p)
                             for p in self._file["filelist"][()]]

    @property
    def header(self) -> dict[str, Any]:
        return self.info.header

    @property
    def nights(self) -> tuple[str, ...]:
        return self.info.nights

    @property
    def camera_id(self) -> str:
        return self.info.camera_id

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> BaselineFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def lightcurve_dtype(self) -> np.dtype:
        """dtype of the stored light curves."""
        if self.info.lc_dtype is None:
            raise StorageError(f"{self.path} holds no light curve")
        return self.info.lc_dtype

    def read(self, ids: Sequence[int] | np.ndarray, fields: Sequence[str]
             ) -> tuple[np.ndarray, np.ndarray]:
        """The records of stars ``ids`` (only ``fields``), concatenated, and their counts.

        Raises
        ------
        StorageError
            A field is not stored, or a light curve cannot be read.
        """
        stored = self.lightcurve_dtype()
        unknown = [n for n in fields if n not in (stored.names or ())]
        if unknown:
            raise StorageError(f"{self.path}: fields {unknown} are not stored; stored fields: "
                               f"{list(stored.names or ())}")
        dtype = np.dtype([(n, stored.fields[n][0]) for n in fields])
        lcs = self._file[L.GROUP_LIGHTCURVES]
        parts, counts = [], []
        for i in np.asarray(ids, np.int64).tolist():
            key = str(i)
            if key not in lcs:
                counts.append(0)
                continue
            try:
                data = read_dataset(lcs, key, dtype)
            except (OSError, RuntimeError) as exc:
                raise StorageError(f"{self.path}: cannot read the light curve of star {i} "
                                   f"({exc}); the file is damaged") from exc
            parts.append(data)
            counts.append(len(data))
        data = np.concatenate(parts) if parts else np.empty(0, dtype)
        return data, np.asarray(counts, np.int64)

