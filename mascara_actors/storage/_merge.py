"""Pure numpy merging of record arrays: sort, drop duplicates keeping the first, recount."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib import recfunctions as rfn

__all__ = ["drop_field", "merge_records", "merge_rows", "merge_star_rows", "star_counts"]


def _concat(parts: Sequence[np.ndarray]) -> np.ndarray:
    parts = [p for p in parts if p is not None]
    return np.concatenate(parts) if parts else np.empty(0)


def merge_records(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
    """Concatenate record arrays, sort by (id, lstseq) and drop repeated (id, lstseq).

    Parameters
    ----------
    parts : sequence of structured arrays
        Same dtype, with ``id`` and ``lstseq`` fields. On a repeated (id, lstseq) the record
        of the earliest part (and earliest position in it) is kept.

    Returns
    -------
    merged : numpy.ndarray
        Sorted by id, then lstseq; (id, lstseq) unique.
    nduplicates : int
        Records dropped.
    """
    dtype = parts[0].dtype
    # moving records as opaque bytes is twice as fast as field by field
    raw = np.concatenate([_void(p) for p in parts])
    if len(raw) == 0:
        return raw.view(dtype), 0
    recs = raw.view(dtype)
    order = np.lexsort((recs["lstseq"], recs["id"]))  # stable: earlier parts first on ties
    recs = raw[order].view(dtype)
    keep = np.ones(len(recs), dtype=bool)
    keep[1:] = (recs["id"][1:] != recs["id"][:-1]) | (recs["lstseq"][1:] != recs["lstseq"][:-1])
    ndup = int(len(keep) - np.count_nonzero(keep))
    if ndup:
        recs = recs.view(_void_dtype(dtype))[keep].view(dtype)
    return recs, ndup


def _void_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype((np.void, dtype.itemsize))


def _void(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr).view(_void_dtype(arr.dtype))


def merge_rows(parts: Sequence[np.ndarray], key: str) -> np.ndarray:
    """Concatenate rows, sort by ``key`` and keep the first row of each key value."""
    rows = _concat(parts)
    if len(rows) == 0:
        return rows
    order = np.lexsort((np.arange(len(rows)), rows[key]))
    rows = rows[order]
    keep = np.ones(len(rows), dtype=bool)
    keep[1:] = rows[key][1:] != rows[key][:-1]
    return rows[keep]


def merge_star_rows(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Merge per-star header rows by ``id``: first row wins, ``jdstart`` is the earliest."""
    rows = _concat(parts)
    if len(rows) == 0:
        return rows
    order = np.lexsort((np.arange(len(rows)), rows["id"]))
    rows = rows[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows["id"][1:] != rows["id"][:-1]
    out = rows[first]
    if "jdstart" in (rows.dtype.names or ()):
        # fmin ignores the NaN of a star row written before its first exposure was timed
        out["jdstart"] = np.fmin.reduceat(rows["jdstart"], np.flatnonzero(first))
    return out


def star_counts(merged: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per star of merged records (sorted by id, lstseq): ids, start rows, counts, and
    (lstseqmin, lstseqmax) as a (n, 2) array."""
    ids, starts, counts = np.unique(merged["id"], return_index=True, return_counts=True)
    lstseq = merged["lstseq"]
    bounds = np.stack([lstseq[starts], lstseq[starts + counts - 1]], axis=1) if len(ids) \
        else np.empty((0, 2), dtype=lstseq.dtype)
    return ids, starts, counts, bounds


def drop_field(recs: np.ndarray, name: str) -> np.ndarray:
    """A packed copy of ``recs`` without field ``name``."""
    names = [n for n in recs.dtype.names or () if n != name]
    return rfn.repack_fields(recs[names])
