"""The index of the blind solve: every triangle of the bright stars, cached beside the catalogue.

:class:`BlindIndex` holds the triangles of the Hipparcos stars V <= :data:`INDEX_VMAX`
without a bright neighbour, and a lookup tree over their keys. It is built once (1-2 s)
and cached as ``.npy`` with a JSON sidecar, like the catalogue
(:mod:`mascara_actors.catalogue.cache`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from mascara_actors.blind_solve.triangles import (
    MIN_FLATNESS,
    SIDE_GAP,
    SIDE_MAX_DEG,
    SIDE_MIN_DEG,
    scaled_keys,
    triangles,
)
from mascara_actors.catalogue import Catalogue
from mascara_actors.catalogue.cache import load_checked_npy, save_npy_cache
from mascara_actors.errors import StorageError
from mascara_actors.offline import default_cache_dir
from mascara_actors.spherical import unit_vectors

__all__ = ["INDEX_DTYPE", "INDEX_FORMAT_VERSION", "INDEX_VMAX", "BlindIndex", "index_stars"]

log = logging.getLogger(__name__)


#: Version of the cached index layout and rules; bump it when they change.
INDEX_FORMAT_VERSION = 1
#: Index stars: V <= this, unblended. The brightest ``IMAGE_STARS`` detections of a frame
#: reach V ~ 5.5-6 (fainter in the vignetted corners): 0.5-1 mag of margin.
INDEX_VMAX = 6.5

_INDEX_STEM = "blind_index"
_INDEX_EPOCH_JD = 2460676.5  # 2025-01-01: star motions since then are far below the tolerance
INDEX_DTYPE = np.dtype([("hip", "<i4", (3,)), ("key", "<f4", (3,))])


def index_stars(catalogue: Catalogue) -> Catalogue:
    """The stars of the index: V <= :data:`INDEX_VMAX`, without a bright neighbour."""
    sel = catalogue.select(vmax=INDEX_VMAX)
    return sel.select(hip=sel.hip[sel["blend"] == 0])


def _fingerprint(stars: Catalogue) -> str:
    """SHA-256 of what the index depends on: the stars, their positions and the rules."""
    digest = hashlib.sha256()
    for name in ("hip", "ra_deg", "dec_deg", "pmra_masyr", "pmdec_masyr", "vmag"):
        digest.update(np.ascontiguousarray(stars[name]).tobytes())
    rules = (INDEX_VMAX, SIDE_MIN_DEG, SIDE_MAX_DEG, SIDE_GAP, MIN_FLATNESS, _INDEX_EPOCH_JD)
    digest.update(json.dumps(rules).encode())
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class BlindIndex:
    """Triangles of bright stars for the blind solve, with a lookup tree over their keys.

    Build it with :meth:`load` (cached) or :meth:`build`.
    """

    stars: Catalogue
    """The index stars (V <= INDEX_VMAX, unblended), HIP order."""
    triangles: np.ndarray
    """(t, 3) rows into ``stars``, the vertex opposite the shortest side first."""
    keys: np.ndarray
    """(t, 3) shape ratios and ln(longest side / deg)."""
    tree: cKDTree = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tree", cKDTree(scaled_keys(self.keys)))

    def __len__(self) -> int:
        return len(self.triangles)

    @classmethod
    def build(cls, catalogue: Catalogue) -> BlindIndex:
        """Build the index from the full catalogue (about 2 s)."""
        stars = index_stars(catalogue)
        ra, dec = stars.positions_icrs_at(_INDEX_EPOCH_JD)
        tri, keys = triangles(unit_vectors(ra, dec))
        # The cache keeps float32 keys; a fresh index uses the same values.
        return cls(stars, tri.astype(np.int32), keys.astype(np.float32).astype(float))

    @classmethod
    def load(
        cls, catalogue: Catalogue, cache_dir: str | os.PathLike[str] | None = None
    ) -> BlindIndex:
        """The index of ``catalogue`` from the cache, rebuilt when missing, stale or corrupt.

        The cache is ``blind_index.npy`` (``allow_pickle=False``) plus ``blind_index.json``
        (format version, a fingerprint of the stars and rules, the ``.npy`` SHA-256) in
        ``cache_dir`` (default the catalogue's cache directory), both written atomically.
        An unwritable cache directory is logged and the index returned anyway.
        """
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        stars = index_stars(catalogue)
        fingerprint = _fingerprint(stars)
        memo_key = (fingerprint, str(cache))
        if memo_key in _LOADED:
            return _LOADED[memo_key]
        index = cls._load(stars, catalogue, cache, fingerprint)
        _LOADED.clear()  # one index per process is all a solver needs
        _LOADED[memo_key] = index
        return index

    @classmethod
    def _load(
        cls, stars: Catalogue, catalogue: Catalogue, cache: Path, fingerprint: str
    ) -> BlindIndex:
        t0 = time.perf_counter()
        table = _read_index(cache, fingerprint)
        if table is not None:
            rows = np.searchsorted(stars.hip, table["hip"])
            rows = np.minimum(rows, len(stars) - 1)
            if np.array_equal(stars.hip[rows], table["hip"]):
                index = cls(stars, rows.astype(np.int32), table["key"].astype(float))
                log.info("blind index loaded from %s in %.2f s", cache, time.perf_counter() - t0)
                return index
            log.warning("blind index in %s names stars not in the catalogue; rebuilding", cache)
        index = cls.build(catalogue)
        try:
            _write_index(cache, index, fingerprint)
        except (OSError, StorageError) as exc:
            log.warning("cannot write the blind index cache in %s (%s); continuing", cache, exc)
        log.info(
            "blind index built (%d triangles of %d stars) in %.2f s",
            len(index),
            len(stars),
            time.perf_counter() - t0,
        )
        return index


#: The index last loaded in this process, by (fingerprint, cache directory): a second
#: solve (the CLI, the next night of a worker) skips the 0.5 s of loading.
_LOADED: dict[tuple[str, str], BlindIndex] = {}


def _index_paths(cache_dir: Path) -> tuple[Path, Path]:
    return cache_dir / f"{_INDEX_STEM}.npy", cache_dir / f"{_INDEX_STEM}.json"


def _read_index(cache_dir: Path, fingerprint: str) -> np.ndarray | None:
    """The cached triangle table if intact and made from these stars and rules, else None."""
    npy_path, sidecar_path = _index_paths(cache_dir)
    try:
        meta = json.loads(sidecar_path.read_text(encoding="utf-8"))
        blob = npy_path.read_bytes()
    except FileNotFoundError:
        log.info("no blind index cache in %s; building it", cache_dir)
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("blind index cache in %s is unreadable (%s); rebuilding", cache_dir, exc)
        return None
    if not isinstance(meta, dict) or meta.get("format_version") != INDEX_FORMAT_VERSION:
        log.info("blind index cache in %s has another format; rebuilding", cache_dir)
        return None
    if meta.get("fingerprint") != fingerprint:
        log.info(
            "blind index cache in %s is stale (catalogue or rules changed); rebuilding", cache_dir
        )
        return None
    table = load_checked_npy(blob, meta.get("npy_sha256"), npy_path, "blind index cache", log)
    if table is None:
        return None
    if table.dtype != INDEX_DTYPE or table.ndim != 1 or len(table) != meta.get("n_triangles"):
        log.warning("blind index cache %s has the wrong layout; rebuilding", npy_path)
        return None
    return table


def _write_index(cache_dir: Path, index: BlindIndex, fingerprint: str) -> None:
    npy_path, sidecar_path = _index_paths(cache_dir)
    table = np.empty(len(index), INDEX_DTYPE)
    table["hip"] = index.stars.hip[index.triangles]
    table["key"] = index.keys
    meta = {
        "format_version": INDEX_FORMAT_VERSION,
        "fingerprint": fingerprint,
        "n_stars": len(index.stars),
        "n_triangles": len(index),
    }
    save_npy_cache(npy_path, sidecar_path, table, meta)


