"""Writing the light curves and tables of a nightly file or a baseline, by chunks of stars.

Shared by the nightly combine and the baselines: the work goes by chunks of stars (at most
``chunk_stars`` stars and about ``chunk_records`` records) so memory does not grow with the
night or the nights; light curves are compressed in worker threads when a pool is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np

from mascara_actors.storage._h5 import create_dataset, create_deflated_dataset, deflate_chunks

__all__ = ["GZIP_LEVEL", "LC_CHUNK", "star_chunks", "write_curves", "write_field_group"]

LC_CHUNK = 4096
"""Records per HDF5 chunk of a light curve (about 0.5 MB)."""
GZIP_LEVEL = 1
"""Deflate level of light curves (ISA-L's 0-3; zlib's level 4 gained 1 % in size for twice
the time on noisy floats)."""


def write_field_group(parent: h5py.Group, name: str, rows: np.ndarray) -> None:
    """A small table (a row per exposure or star): a group of uncompressed datasets, one per
    field."""
    group = parent.create_group(name, track_order=True)
    for field in rows.dtype.names or ():
        create_dataset(group, field, rows[field])


def star_chunks(counts: np.ndarray, chunk_stars: int, chunk_records: int) -> list[slice]:
    """Runs of stars (as slices of ``counts``, their records) of at most ``chunk_stars``
    stars and about ``chunk_records`` records (a star with more is a chunk of its own)."""
    out, start, total = [], 0, 0
    for i, c in enumerate(counts.tolist()):
        if i > start and (i - start >= chunk_stars or total + c > chunk_records):
            out.append(slice(start, i))
            start, total = i, 0
        total += c
    if len(counts) > start:
        out.append(slice(start, len(counts)))
    return out


DEFLATE_BATCH = 1 << 20
"""Bytes of light curves per compression task of the thread pool (a short light curve is
compressed faster than a task is handed over)."""


def _batches(curves: Sequence[tuple[int, np.ndarray]]) -> list[list[tuple[int, np.ndarray]]]:
    """Consecutive light curves in batches of about :data:`DEFLATE_BATCH` bytes (a curve
    alone when it holds more)."""
    out: list[list[tuple[int, np.ndarray]]] = []
    size = DEFLATE_BATCH
    for curve in curves:
        if size >= DEFLATE_BATCH:
            out.append([])
            size = 0
        out[-1].append(curve)
        size += curve[1].nbytes
    return out


def _deflate_batch(batch: list[tuple[int, np.ndarray]]) -> list[list[bytes]]:
    return [deflate_chunks(c, chunk=LC_CHUNK, level=GZIP_LEVEL, shuffle=True) for _, c in batch]


def write_curves(group: h5py.Group, curves: Sequence[tuple[int, np.ndarray]],
                 compression: str | None, pool: ThreadPoolExecutor | None) -> None:
    """``group[str(id)]`` for each (id, records). gzip is done here, not by HDF5's filter,
    by batches of about :data:`DEFLATE_BATCH` bytes, in the pool's threads when one is
    given (HDF5 writes stay in this thread): the bytes are the same with or without it."""
    if compression == "gzip":
        batches = _batches(curves)
        deflated = map(_deflate_batch, batches) if pool is None else pool.map(
            _deflate_batch, batches)
        for batch, payloads in zip(batches, deflated, strict=True):
            for (i, c), payload in zip(batch, payloads, strict=True):
                create_deflated_dataset(group, str(i), c.dtype, len(c), payload,
                                        chunk=LC_CHUNK, level=GZIP_LEVEL, shuffle=True)
        return
    for i, c in curves:
        if compression is None:
            create_dataset(group, str(i), c)
        else:  # lzf; shuffle groups the bytes of each field: noisy floats compress better
            create_dataset(group, str(i), c, chunks=(LC_CHUNK,), compression=compression,
                           shuffle=True)
