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

:class:`~mascara_actors.storage.baseline_file.BaselineFile` reads a baseline for the
calibration.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mascara_actors import __version__
from mascara_actors.errors import StorageError
from mascara_actors.storage import layout as L
from mascara_actors.storage._h5 import create_dataset, dataset_length, read_dataset
from mascara_actors.storage._lightcurve_writes import star_chunks, write_curves, write_field_group
from mascara_actors.storage._merge import merge_rows, merge_star_rows
from mascara_actors.storage._sources import read_field_group
from mascara_actors.storage.atomic import atomic_hdf5
from mascara_actors.storage.nightly_info import NightlyInfo, inspect_nightly, open_error

__all__ = ["BaselineReport", "build_baseline"]

log = logging.getLogger(__name__)

_SOURCES_DTYPE = np.dtype([("path", "S1024"), ("night", "S8"), ("nstars", "u4"),
                           ("nrecords", "u8"), ("nstation", "u4")])
_COMPRESSIONS = ("gzip", "lzf", None)
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class BaselineReport:
    """What :func:`build_baseline` wrote."""

    output: Path
    nights: tuple[str, ...]
    nstars: int
    nrecords: int
    nstation: int


@dataclass(frozen=True)
class _Night:
    """One nightly file opened for the merge, with its small tables."""

    info: NightlyInfo
    file: h5py.File
    station: np.ndarray
    stars: np.ndarray
    astrometry: np.ndarray | None


@dataclass(frozen=True)
class _Merged:
    """The merged small tables and the records per star and night."""

    station: np.ndarray
    stars: np.ndarray
    astrometry: np.ndarray | None
    ids: np.ndarray
    counts: np.ndarray
    """(nights, stars): records of each star in each night (from the dataset lengths)."""


# The nightly header attributes that say how the fluxes were measured (photometry apertures
# and sky annulus, px; exposure time, s; aperture method) and stored: nights that differ in
# any of them have fluxes on different scales, which the calibration would take for clouds.
# The site, versions and night differ harmlessly and are not compared.
_ALIKE_ATTRS = ("aper", "skyrad", "aperture_method", "exptime", "format_version")


def _same_attr(a: object, b: object) -> bool:
    """Whether two header attribute values are the same (numbers to 1e-9, relative)."""
    if a is None or b is None:
        return a is None and b is None
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        return False
    if np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number):
        return bool(np.allclose(x, y, rtol=1e-9, atol=0.0))
    return bool(np.array_equal(x, y))


def _show(value: object) -> str:
    if value is None:
        return "absent"
    if isinstance(value, np.ndarray):
        return str(value.tolist())
    return repr(value)


def _check_sources(files: Sequence[str | Path]) -> list[NightlyInfo]:
    if len(files) < 2:
        raise StorageError(f"a baseline merges several nights of one camera; got {len(files)} "
                           "file(s): give the nightly files of at least two nights (the "
                           "calibration wants about 15)")
    seen: set[Path] = set()
    infos = []
    for p in files:
        path = Path(p)
        if path.resolve() in seen:
            raise StorageError(f"{path} is given twice: give each nightly file once")
        seen.add(path.resolve())
        info = inspect_nightly(path)
        if info.is_baseline:
            raise StorageError(f"{path} is already a baseline ({len(info.nights)} nights); "
                               "give the nightly files it was made from instead")
        if info.kind != "fast":
            raise StorageError(f"{path} holds {info.kind!r} light curves; a baseline merges "
                               "the fast (per-exposure) nightly files")
        infos.append(info)
    _check_alike(infos)
    return sorted(infos, key=lambda i: i.nights[0])


def _check_alike(infos: list[NightlyInfo]) -> None:
    """One camera, one record layout, one photometry (:data:`_ALIKE_ATTRS`), each night
    once."""
    first = infos[0]
    by_night: dict[str, Path] = {}
    for info in infos:
        if info.camera_id != first.camera_id:
            raise StorageError(f"nights of two cameras are mixed: {info.path} is camera "
                               f"{info.camera_id}, {first.path} is {first.camera_id}; build "
                               "one baseline per camera")
        if first.lc_dtype is not None and info.lc_dtype is not None \
                and info.lc_dtype != first.lc_dtype:
            raise StorageError(f"{info.path} stores light-curve records of another layout than "
                               f"{first.path}: reduce both nights with the same version")
        for key in _ALIKE_ATTRS:
            mine, theirs = info.header.get(key), first.header.get(key)
            if not _same_attr(mine, theirs):
                raise StorageError(
                    f"{info.path} and {first.path} were reduced differently: their header "
                    f"attribute {key!r} is {_show(mine)} and {_show(theirs)}; the fluxes of a "
                    "baseline must be measured alike: reduce the odd night again with the "
                    "settings of the others, or build one baseline per setting")
        night = info.nights[0]
        if night in by_night:
            raise StorageError(f"night {night} is given twice ({by_night[night]} and "
                               f"{info.path}): give each night once")
        by_night[night] = info.path


def build_baseline(
    files: Sequence[str | Path],
    out: str | Path,
    *,
    compression: str | None = "gzip",
    chunk_stars: int = 500,
    chunk_records: int = 2_000_000,
    threads: int | None = None,
    progress: Progress | None = None,
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
        nights = []
        for info in infos:
            try:
                f = stack.enter_context(h5py.File(info.path, "r"))
            except (OSError, RuntimeError) as exc:
                raise open_error(info.path, exc) from exc
            nights.append(_open_night(info, f))
        pool = (stack.enter_context(ThreadPoolExecutor(threads))
                if compression == "gzip" and threads > 1 else None)
        merged = _merge(nights)
        _write(out, nights, merged, compression=compression,
               chunks=star_chunks(merged.counts.sum(axis=0), max(1, chunk_stars),
                                  max(1, chunk_records)),
               pool=pool, progress=progress)
    nstars = int(np.count_nonzero(merged.counts.sum(axis=0)))
    report = BaselineReport(out, tuple(n.info.nights[0] for n in nights), nstars,
                            int(merged.counts.sum()), len(merged.station))
    log.info("baseline %s: %d nights, %d stars, %d records", out, len(report.nights),
             report.nstars, report.nrecords)
    return report


def _open_night(info: NightlyInfo, f: h5py.File) -> _Night:
    try:
        station = read_field_group(f[L.GROUP_STATION])
        stars = read_field_group(f[L.GROUP_STARS])
        astro = read_field_group(f[L.GROUP_ASTROMETRY]) if L.GROUP_ASTROMETRY in f else None
    except (OSError, RuntimeError, KeyError, StorageError) as exc:
        raise StorageError(f"{info.path}: cannot read its tables ({exc}); the file is damaged: "
                           "combine the night again") from exc
    return _Night(info, f, station, stars, astro)


def _merge(nights: list[_Night]) -> _Merged:
    """Merge the small tables (checking that the nights do not overlap and share a layout)
    and count the records of each star in each night."""
    for a, b in itertools.pairwise(nights):
        if len(a.station) and len(b.station) \
                and int(a.station["lstseq"].max()) >= int(b.station["lstseq"].min()):
            raise StorageError(f"{a.info.path} and {b.info.path} overlap in time "
                               f"(lstseq up to {int(a.station['lstseq'].max())} and from "
                               f"{int(b.station['lstseq'].min())}): give each night once")
    first = nights[0]
    for night in nights:
        if night.station.dtype != first.station.dtype or night.stars.dtype != first.stars.dtype:
            raise StorageError(f"{night.info.path} has station or star tables of another layout "
                               f"than {first.info.path}: reduce both nights with the same "
                               "version")
    astro_parts = [a for a in (n.astrometry for n in nights) if a is not None and len(a)]
    astrometry = None
    if astro_parts and all(a.dtype == astro_parts[0].dtype for a in astro_parts):
        astrometry = merge_rows(astro_parts, "lstseq")
    elif astro_parts:
        log.warning("astrometry tables of different layouts; the baseline keeps none")
    stars = merge_star_rows([n.stars for n in nights])
    ids = stars["id"].astype(np.int64) if len(stars) else np.empty(0, np.int64)
    # records per star and night, from the dataset lengths (the truth, not the tables)
    counts = np.zeros((len(nights), len(ids)), np.int64)
    for n, night in enumerate(nights):
        lcs = night.file[L.GROUP_LIGHTCURVES]
        present = set(lcs.keys())
        for k, key in enumerate(str(i) for i in ids.tolist()):
            if key in present:
                counts[n, k] = dataset_length(lcs, key)
    return _Merged(merge_rows([n.station for n in nights], "lstseq"), stars, astrometry, ids,
                   counts)


def _header(nights: list[_Night], station: np.ndarray) -> dict[str, Any]:
    names = tuple(n.info.nights[0] for n in nights)
    head = dict(nights[0].info.header)
    head.update({"baseline": 1, "nights": np.array(names, dtype="S8"), "nnights": len(names),
                 "lstmin": int(station["lstseq"].min()) if len(station) else 0,
                 "lstmax": int(station["lstseq"].max()) if len(station) else 0,
                 "night": names[0], "software_version": __version__})
    return head


def _sources(nights: list[_Night], counts: np.ndarray) -> np.ndarray:
    sources = np.zeros(len(nights), _SOURCES_DTYPE)
    sources["path"] = [str(n.info.path.resolve()).encode() for n in nights]
    sources["night"] = [n.info.nights[0].encode() for n in nights]
    sources["nstars"] = [len(n.stars) for n in nights]
    sources["nrecords"] = counts.sum(axis=1)
    sources["nstation"] = [len(n.station) for n in nights]
    return sources


def _verifier(nstars: int, nrecords: int) -> Callable[[Path], None]:
    """Reopens the written file and checks its counts before it is renamed into place."""

    def verify(tmp: Path) -> None:
        try:
            with h5py.File(tmp, "r") as f:
                lcs = f[L.GROUP_LIGHTCURVES]
                got = (len(lcs), sum(dataset_length(lcs, k) for k in lcs))
        except (OSError, RuntimeError, KeyError) as exc:
            raise StorageError(f"the new baseline {tmp} cannot be read back ({exc}); it was "
                               "not installed") from exc
        if got != (nstars, nrecords):
            raise StorageError(f"the new baseline {tmp} holds {got[0]} stars and {got[1]} "
                               f"records, expected {nstars} and {nrecords}; it was not "
                               "installed")

    return verify


def _star_curves(nights: list[_Night], merged: _Merged, part: slice
                 ) -> list[tuple[int, np.ndarray]]:
    """The light curves of the stars ``part``, all nights concatenated (stars with none
    are left out)."""
    lc_dtype = next((n.info.lc_dtype for n in nights if n.info.lc_dtype is not None), None)
    curves = []
    for k, i in enumerate(merged.ids[part].tolist(), start=part.start or 0):
        pieces = []
        for n, night in enumerate(nights):
            if not merged.counts[n, k] or lc_dtype is None:
                continue
            try:
                pieces.append(read_dataset(night.file[L.GROUP_LIGHTCURVES], str(i), lc_dtype))
            except (OSError, RuntimeError, KeyError) as exc:
                raise StorageError(f"{night.info.path}: cannot read the light curve of star "
                                   f"{i} ({exc}); the file is damaged: combine the night "
                                   "again") from exc
        if pieces:
            curves.append((int(i), np.concatenate(pieces)))
    return curves


def _write(out: Path, nights: list[_Night], merged: _Merged, *, compression: str | None,
           chunks: list[slice], pool: ThreadPoolExecutor | None,
           progress: Progress | None) -> None:
    total = merged.counts.sum(axis=0)
    kept = total > 0
    verify = _verifier(int(np.count_nonzero(kept)), int(total.sum()))
    with atomic_hdf5(out, verify=verify) as ah:
        f = ah.file
        header = f.create_group(L.GROUP_HEADER, track_order=True)
        head = _header(nights, merged.station)
        for key in sorted(head):
            header.attrs[key] = head[key]
        sources = _sources(nights, merged.counts)
        create_dataset(f, "filelist", np.array(sources["path"]))
        create_dataset(f, "sources", sources)
        write_field_group(f, L.GROUP_STATION, merged.station)
        lcs_out = f.create_group(L.GROUP_LIGHTCURVES, track_order=True)
        # first and last lstseq of each star over all nights, from its merged light curve
        span = np.zeros((len(merged.ids), 2), np.int64)
        index = {int(i): k for k, i in enumerate(merged.ids.tolist())}
        for part in chunks:
            curves = _star_curves(nights, merged, part)
            for i, curve in curves:
                if len(curve):
                    span[index[i]] = curve["lstseq"].min(), curve["lstseq"].max()
            write_curves(lcs_out, curves, compression, pool)
            del curves
            ah.check()
            if progress is not None:
                progress(part.stop, len(merged.ids))
        stars = merged.stars[kept]
        names = stars.dtype.names or ()
        if "nobs" in names:
            stars["nobs"] = total[kept]
        for k, name in enumerate(("lstseqmin", "lstseqmax")):
            if name in names:
                stars[name] = span[kept, k]
        write_field_group(f, L.GROUP_STARS, stars)
        if merged.astrometry is not None:
            write_field_group(f, L.GROUP_ASTROMETRY, merged.astrometry)
