"""Nightly combine (the seed's ``CombineH5``): per-set files -> one nightly light-curve file.

``{night_dir}/lightcurves/{kind}_{night}{SITE}{CAM}.hdf5`` has the legacy layout: a
``header`` group (attributes), ``station``, ``stars`` and ``astrometry`` groups with one
dataset per field, and ``lightcurves/{id}`` compound datasets (no ``id`` field) sorted by
lstseq with repeated lstseq removed.

Rules:

- Inputs are the existing nightly file (first, so what is written stays) and the valid
  per-set files of this night, camera and kind in setidx order; foreign, truncated and
  other-night files are reported by name and left alone.
- Stars with fewer than ``minobs`` points are left out; nobs, lstseqmin and lstseqmax are
  recomputed.
- Work goes by chunks of stars (at most ``chunk_stars`` stars and about ``chunk_records``
  records), so memory does not grow with the night.
- The output is written whole under a temporary name, verified, renamed into place; only
  then are the per-set files deleted (unless ``keep_sets``). Running again, with the sets
  gone or still there, gives the same content.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mascara_actors import __version__
from mascara_actors.atomic_files import fsync_dir, remove_stale_tmp
from mascara_actors.errors import StorageError
from mascara_actors.faults import phase
from mascara_actors.storage import layout as L
from mascara_actors.storage._h5 import dataset_length
from mascara_actors.storage._lightcurve_writes import star_chunks, write_curves, write_field_group
from mascara_actors.storage._merge import (
    drop_field,
    merge_records,
    merge_rows,
    merge_star_rows,
    star_counts,
)
from mascara_actors.storage._sources import NightlySource, SetSource, scan_sets
from mascara_actors.storage.atomic import atomic_hdf5
from mascara_actors.storage.layout import NightId
from mascara_actors.storage.locks import NightLock

__all__ = ["COMPRESSIONS", "CombineReport", "combine_night"]

log = logging.getLogger(__name__)

COMPRESSIONS = ("gzip", "lzf", None)
"""Accepted ``compression`` values: gzip (level 1, shuffled; readable everywhere), lzf
(faster, h5py only) or None."""


@dataclass(frozen=True, slots=True)
class CombineReport:
    """What one :func:`combine_night` did."""

    output: Path | None
    """The nightly file, or None when there was nothing to combine."""
    kind: str
    nsets: int
    """Per-set files merged."""
    nstars: int
    """Stars in the nightly file."""
    nrecords: int
    """Records in the nightly file."""
    nduplicates: int
    """Records dropped because their (id, lstseq) was already there."""
    nshort: int
    """Stars left out for having fewer than ``minobs`` points."""
    skipped: tuple[tuple[Path, str], ...]
    """Files left alone, with the reason."""
    removed: tuple[Path, ...]
    """Per-set files deleted after the nightly file was verified."""


def _header_attrs(nid: NightId, kind: str, minobs: int, user: dict[str, object]
                  ) -> list[tuple[str, object]]:
    values = {"site-obs": nid.site_obs, "cam-obs": nid.camera, "night": nid.night,
              "site": nid.site, "camera": nid.camera, "kind": kind,
              "format_version": L.FORMAT_VERSION, "software_version": __version__,
              "minobs": int(minobs)}
    fixed = [(k, values[k]) for k in L.NIGHTLY_FIXED_ATTRS]
    names = {k for k, _ in fixed}
    return fixed + [(k, user[k]) for k in sorted(user) if k not in names]


class _Verifier:
    """Reopens the written file and checks its counts before it is renamed into place."""

    def __init__(self, nstars: int, nrecords: int, nstation: int) -> None:
        self.expected = (nstars, nrecords, nstation)

    def __call__(self, tmp: Path) -> None:
        try:
            with h5py.File(tmp, "r") as f:
                lcs = f[L.GROUP_LIGHTCURVES]
                stars_nobs = f[L.GROUP_STARS]["nobs"][()] if "nobs" in f[L.GROUP_STARS] \
                    else None
                ids = f[L.GROUP_STARS]["id"][()] if "id" in f[L.GROUP_STARS] else []
                lengths = np.array([dataset_length(lcs, str(i))
                                    for i in np.asarray(ids).tolist()], dtype=np.int64)
                nstation = f[L.GROUP_STATION]["lstseq"].shape[0] \
                    if "lstseq" in f[L.GROUP_STATION] else 0
                got = (len(lcs), int(lengths.sum()), nstation)
        except (OSError, RuntimeError, KeyError) as exc:
            raise StorageError(f"the new nightly file {tmp} cannot be read back ({exc}); "
                               "it was not installed and the per-set files were kept") from exc
        if got != self.expected or (stars_nobs is not None
                                    and not np.array_equal(stars_nobs, lengths)):
            raise StorageError(f"the new nightly file {tmp} holds (stars, records, station "
                               f"rows) = {got}, expected {self.expected}; it was not installed "
                               "and the per-set files were kept")


def combine_night(
    night_dir: str | Path,
    kind: str,
    *,
    minobs: int = 51,
    compression: str | None = "gzip",
    chunk_stars: int = 500,
    chunk_records: int = 1_000_000,
    keep_sets: bool = False,
    threads: int | None = None,
    lock: NightLock | None = None,
) -> CombineReport:
    """Merge the per-set files of one camera-night into its nightly file.

    Parameters
    ----------
    night_dir : path-like
        ``{outdir}/{night}{SITE}{CAM}``; the name gives night, site and camera.
    kind : {"fast", "slow"}
    minobs : int
        Stars with fewer points are left out (default 51).
    compression : {"gzip", "lzf", None}
        Filter of the light-curve datasets (the small tables are stored plain).
    chunk_stars, chunk_records : int
        Bounds of one chunk of work: stars, and records (about 120 bytes each for fast).
    keep_sets : bool
        Keep the per-set files after the nightly file is verified (default: delete them).
    threads : int, optional
        Threads compressing gzip chunks (default: the number of CPUs); the file is the
        same whatever the number.
    lock : NightLock, optional
        The night's lock when the caller already holds it (the :class:`SetWriter`);
        otherwise the lock is taken here and a concurrent writer raises StorageError.

    Returns
    -------
    CombineReport

    Raises
    ------
    StorageError
        Lock held elsewhere, an unreadable or foreign existing nightly file, a failed write
        (nothing is installed or deleted then).
    """
    night_dir = Path(night_dir)
    nid = NightId.from_dir(night_dir)
    L.check_kind(kind)
    if int(minobs) != minobs or minobs < 1:
        raise StorageError(f"minobs={minobs!r} must be an integer >= 1")
    if compression not in COMPRESSIONS:
        raise StorageError(f"compression={compression!r} must be one of {COMPRESSIONS}")
    threads = (os.cpu_count() or 1) if threads is None else int(threads)
    if threads < 1:
        raise StorageError(f"threads={threads} must be >= 1")
    if chunk_stars < 1 or chunk_records < 1:
        raise StorageError(f"chunk_stars={chunk_stars} and chunk_records={chunk_records} "
                           "must be >= 1")
    own_lock = lock is None
    lock = NightLock(night_dir) if lock is None else lock
    if own_lock:
        lock.acquire()
    elif not lock.held or lock.night_dir.resolve() != night_dir.resolve():
        raise StorageError(f"the lock passed for {night_dir} is not held on that directory "
                           f"(it is for {lock.night_dir}, held={lock.held}): pass the "
                           "SetWriter's lock or none")
    try:
        return _combine_locked(night_dir, nid, kind, minobs=int(minobs),
                               compression=compression, chunk_stars=int(chunk_stars),
                               chunk_records=int(chunk_records), keep_sets=keep_sets,
                               threads=threads, clean_tmp=own_lock)
    finally:
        if own_lock:
            lock.release()


def _combine_locked(night_dir: Path, nid: NightId, kind: str, *, minobs: int,
                    compression: str | None, chunk_stars: int, chunk_records: int,
                    keep_sets: bool, threads: int, clean_tmp: bool) -> CombineReport:
    outdir = L.lightcurve_dir(night_dir)
    outdir.mkdir(parents=True, exist_ok=True)
    if clean_tmp:
        # we took the lock ourselves, so any tmp file here is a crashed writer's (a
        # SetWriter cleaned up when it opened, and may be writing one now)
        remove_stale_tmp(outdir)
        remove_stale_tmp(L.tmp_dir(night_dir))
    out_path = L.nightly_file_path(night_dir, kind)
    sources, skipped = scan_sets(night_dir, kind, nid)
    skipped_t = tuple(skipped)
    if not sources:
        if out_path.exists():
            log.info("%s: no per-set files of kind %s; %s is up to date", night_dir, kind,
                     out_path.name)
            return CombineReport(out_path, kind, 0, *_summary(out_path), 0, 0, skipped_t, ())
        log.warning("%s: no per-set files of kind %s and no nightly file: nothing to do",
                    night_dir, kind)
        return CombineReport(None, kind, 0, 0, 0, 0, 0, skipped_t, ())

    nightly = NightlySource(out_path, nid, kind) if out_path.exists() else None
    with contextlib.ExitStack() as stack:
        if nightly is not None:
            stack.callback(nightly.close)
        for s in sources:
            stack.callback(s.close)
        pool = (stack.enter_context(ThreadPoolExecutor(threads))
                if compression == "gzip" and threads > 1 else None)
        result = _write_nightly(out_path, nid, kind, sources, nightly, minobs=minobs,
                                compression=compression, chunk_stars=chunk_stars,
                                chunk_records=chunk_records, pool=pool)
    nstars, nrecords, nduplicates, nshort = result
    phase("combined", kind)
    removed: list[Path] = []
    if not keep_sets:
        for s in sources:
            with contextlib.suppress(FileNotFoundError):
                s.path.unlink()
            removed.append(s.path)
        fsync_dir(L.tmp_dir(night_dir))
    log.info("%s: combined %d sets into %s (%d stars, %d records, %d duplicates, "
             "%d stars under minobs=%d)", night_dir, len(sources), out_path.name, nstars,
             nrecords, nduplicates, nshort, minobs)
    return CombineReport(out_path, kind, len(sources), nstars, nrecords, nduplicates, nshort,
                         skipped_t, tuple(removed))


def _summary(path: Path) -> tuple[int, int]:
    try:
        with h5py.File(path, "r") as f:
            nobs = f[L.GROUP_STARS]["nobs"][()] if "nobs" in f[L.GROUP_STARS] else np.zeros(0)
            return len(f[L.GROUP_LIGHTCURVES]), int(np.sum(nobs))
    except (OSError, RuntimeError, KeyError) as exc:
        raise StorageError(f"the existing nightly file {path} cannot be read ({exc}); it is "
                           "left alone: move it away") from exc


def _check_nightly_layout(out_path: Path, nightly: NightlySource, lc_dtype: np.dtype,
                          stars_dtype: np.dtype, station_dtype: np.dtype,
                          astro_dtype: np.dtype | None) -> None:
    """Refuse an existing nightly file whose records have another layout than the per-set
    files', or whose tables have other fields or the same in another order: numpy converts
    one table into another field by field in order, whatever the names, so values would
    land in the wrong columns."""
    if nightly.lc_dtype is not None and nightly.lc_dtype != lc_dtype:
        raise StorageError(f"the existing nightly file {out_path} stores records of another "
                           "layout than the per-set files; move it away and combine again")
    tables = [("stars", nightly.stars.dtype, stars_dtype),
              ("station", nightly.station.dtype, station_dtype)]
    if nightly.astrometry is not None and astro_dtype is not None:
        tables.append(("astrometry", nightly.astrometry.dtype, astro_dtype))
    for name, theirs, ours in tables:
        if theirs.names != ours.names:
            raise StorageError(f"the existing nightly file {out_path} has other {name} fields "
                               f"than the per-set files ({theirs.names} against {ours.names}); "
                               "move it away and combine again")


def _write_nightly(out_path: Path, nid: NightId, kind: str, sources: list[SetSource],
                   nightly: NightlySource | None, *, minobs: int, compression: str | None,
                   chunk_stars: int, chunk_records: int, pool: ThreadPoolExecutor | None
                   ) -> tuple[int, int, int, int]:
    rec_dtype = sources[0].record_dtype
    lc_dtype, stars_dtype, station_dtype, astro_dtype = sources[0].schema
    astro_dtype = next((s.schema[3] for s in sources if s.schema[3] is not None), astro_dtype)
    if nightly is not None:
        _check_nightly_layout(out_path, nightly, lc_dtype, stars_dtype, station_dtype,
                              astro_dtype)

    # small tables first: station, stars, astrometry
    station = merge_rows(([nightly.station.astype(station_dtype)] if nightly else [])
                         + [s.read_station() for s in sources], "lstseq")
    star_rows = np.empty(0, dtype=stars_dtype)
    astro_parts: list[np.ndarray | None] = []
    if nightly is not None and nightly.astrometry is not None:
        if astro_dtype is None:
            astro_dtype = nightly.astrometry.dtype
        astro_parts.append(nightly.astrometry.astype(astro_dtype))
    for s in sources:
        star_rows = merge_star_rows([star_rows, s.read_stars().astype(stars_dtype)])
        astro_parts.append(s.read_astrometry())
    if nightly is not None and len(nightly.stars):
        star_rows = merge_star_rows([nightly.stars.astype(stars_dtype), star_rows])
    astrometry = merge_rows([a for a in astro_parts if a is not None and len(a)], "lstseq") \
        if any(a is not None and len(a) for a in astro_parts) else None

    # star ids and upper bounds of their record counts, to cut the work into chunks
    all_ids = np.concatenate([s.index_ids for s in sources]
                             + ([nightly.ids] if nightly else []))
    all_counts = np.concatenate([s.index_count for s in sources]
                                + ([nightly.counts] if nightly else []))
    ids, inverse = np.unique(all_ids, return_inverse=True)
    counts = np.bincount(inverse, weights=all_counts, minlength=len(ids)).astype(np.int64)
    chunks = [ids[part] for part in star_chunks(counts, chunk_stars, chunk_records)]

    head = _header_attrs(nid, kind, minobs, nightly.header if nightly else sources[0].header)
    kept_ids: list[np.ndarray] = []
    kept_nobs: list[np.ndarray] = []
    kept_bounds: list[np.ndarray] = []
    nrecords = nduplicates = nshort = 0

    def verify(tmp: Path) -> None:
        _Verifier(int(sum(len(k) for k in kept_ids)), nrecords, len(station))(tmp)

    with atomic_hdf5(out_path, verify=verify) as out:
        f = out.file
        header = f.create_group(L.GROUP_HEADER, track_order=True)
        for key, value in head:
            header.attrs[key] = value
        write_field_group(f, L.GROUP_STATION, station)
        lcs = f.create_group(L.GROUP_LIGHTCURVES, track_order=True)
        for chunk in chunks:
            parts = [nightly.read_ids(chunk, rec_dtype)] if nightly else []
            parts += [s.read_ids(chunk) for s in sources]
            merged, ndup = merge_records(parts)
            nduplicates += ndup
            cid, start, count, bounds = star_counts(merged)
            ok = count >= minobs
            nshort += int(np.count_nonzero(~ok))
            curves = drop_field(merged, "id")
            stars_ok = list(zip(cid[ok].tolist(), start[ok].tolist(), count[ok].tolist(),
                                strict=True))
            write_curves(lcs, [(i, curves[a:a + n]) for i, a, n in stars_ok], compression,
                         pool)
            kept_ids.append(cid[ok])
            kept_nobs.append(count[ok])
            kept_bounds.append(bounds[ok])
            nrecords += int(count[ok].sum())
            del merged, curves, parts
            out.check()
        ids_out = np.concatenate(kept_ids) if kept_ids else np.empty(0, np.int64)
        stars = _final_stars(star_rows, ids_out, np.concatenate(kept_nobs) if kept_nobs
                             else np.empty(0, np.int64),
                             np.concatenate(kept_bounds) if kept_bounds
                             else np.empty((0, 2), np.uint64), out_path)
        write_field_group(f, L.GROUP_STARS, stars)
        if astrometry is not None:
            write_field_group(f, L.GROUP_ASTROMETRY, astrometry)
    return len(ids_out), nrecords, nduplicates, nshort


def _final_stars(star_rows: np.ndarray, ids: np.ndarray, nobs: np.ndarray,
                 bounds: np.ndarray, out_path: Path) -> np.ndarray:
    pos = np.searchsorted(star_rows["id"], ids)
    pos = np.minimum(pos, max(len(star_rows) - 1, 0))
    if len(ids) and (len(star_rows) == 0 or not np.array_equal(star_rows["id"][pos], ids)):
        raise StorageError(f"{out_path}: some stars with light curves have no star row; the "
                           "per-set files are inconsistent")
    stars = star_rows[pos] if len(ids) else star_rows[:0]
    names = stars.dtype.names or ()
    if "nobs" in names:
        stars["nobs"] = nobs
    if "lstseqmin" in names:
        stars["lstseqmin"] = bounds[:, 0]
    if "lstseqmax" in names:
        stars["lstseqmax"] = bounds[:, 1]
    return stars
