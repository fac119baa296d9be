"""The catalogue cache: the parsed table as ``.npy`` (never a pickle) with a JSON sidecar.

The sidecar holds the format version, the source's size, mtime and SHA-256, the blend
settings and the ``.npy``'s SHA-256; a cache is valid only when all of them match. The
``.npy`` is written first and the sidecar last, both atomically, so a crash in between
leaves a cache that is detected and rebuilt. :func:`save_npy_cache` and
:func:`load_checked_npy` are that scheme for any array cached beside the catalogue (the
blind-solve index uses them too).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from mascara_actors.atomic_files import atomic_write_bytes
from mascara_actors.catalogue.hip2 import CATALOGUE_DTYPE
from mascara_actors.errors import StorageError

__all__ = ["FORMAT_VERSION", "load_checked_npy", "read_cache", "save_npy_cache", "write_cache"]

log = logging.getLogger(__name__)

#: Version of the cached table layout; bump it whenever CATALOGUE_DTYPE or a derivation
#: changes, so that old caches are rebuilt rather than misread.
FORMAT_VERSION = 1

_CACHE_STEM = "hipparcos2"
_SIDECAR_KEYS = {
    "format_version": int,
    "source_size": int,
    "source_mtime_ns": int,
    "source_sha256": str,
    "blend_radius_arcsec": float,
    "blend_threshold": float,
    "n_stars": int,
    "npy_sha256": str,
}


def _sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def save_npy_cache(npy_path: Path, sidecar_path: Path, array: np.ndarray,
                   meta: dict[str, Any]) -> None:
    """Cache ``array`` as ``npy_path``, and ``meta`` plus the ``.npy``'s SHA-256 as the sidecar.

    The directory is made if needed. Both files are written atomically under temporary
    names of their own (several camera processes may build the same cache at once), the
    ``.npy`` first and the sidecar last: the sidecar's checksum is what makes a cache
    valid. Raises OSError or StorageError when the cache cannot be written.
    """
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    blob = buf.getvalue()
    meta = {**meta, "npy_sha256": hashlib.sha256(blob).hexdigest()}
    npy_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(npy_path, blob, shared=True)
    atomic_write_bytes(sidecar_path, json.dumps(meta, indent=1).encode(), shared=True)


def load_checked_npy(blob: bytes, sha256: object, npy_path: Path, what: str,
                     logger: logging.Logger) -> np.ndarray | None:
    """The array of the ``.npy`` bytes ``blob`` if their SHA-256 is ``sha256``, else None.

    No pickles are loaded. A wrong checksum or an unloadable file is logged to ``logger``
    as a warning naming ``what`` (e.g. ``"catalogue cache"``) at ``npy_path``.
    """
    if hashlib.sha256(blob).hexdigest() != sha256:
        logger.warning("%s %s is corrupt or truncated (checksum); rebuilding", what, npy_path)
        return None
    try:
        array: np.ndarray = np.load(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        logger.warning("%s %s does not load (%s); rebuilding", what, npy_path, exc)
        return None
    return array


def _cache_paths(cache_dir: Path) -> tuple[Path, Path]:
    return cache_dir / f"{_CACHE_STEM}.npy", cache_dir / f"{_CACHE_STEM}.json"


def _read_sidecar(sidecar_path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        log.info("no catalogue cache at %s; building it", sidecar_path.parent)
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("catalogue cache sidecar %s is corrupt (%s); rebuilding", sidecar_path, exc)
        return None
    if not isinstance(meta, dict) or any(
        not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool)
        for key, kind in _SIDECAR_KEYS.items()
    ):
        log.warning(
            "catalogue cache sidecar %s lacks fields or has wrong types; rebuilding", sidecar_path
        )
        return None
    return meta


def read_cache(
    cache_dir: Path, source: Path, *, blend_radius_arcsec: float, blend_threshold: float
) -> np.ndarray | None:
    """The cached table if it is intact and matches the source, else None (reason logged)."""
    npy_path, sidecar_path = _cache_paths(cache_dir)
    meta = _read_sidecar(sidecar_path)
    if meta is None:
        return None
    if meta["format_version"] != FORMAT_VERSION:
        log.info(
            "catalogue cache format %s, this code writes %s; rebuilding",
            meta["format_version"],
            FORMAT_VERSION,
        )
        return None
    if (meta["blend_radius_arcsec"], meta["blend_threshold"]) != (
        blend_radius_arcsec,
        blend_threshold,
    ):
        log.info(
            "catalogue cache has blend radius %s arcsec / threshold %s, %s / %s wanted; rebuilding",
            meta["blend_radius_arcsec"],
            meta["blend_threshold"],
            blend_radius_arcsec,
            blend_threshold,
        )
        return None
    stat = source.stat()
    if stat.st_size != meta["source_size"]:
        log.info("catalogue source %s changed size; rebuilding the cache", source)
        return None
    if stat.st_mtime_ns != meta["source_mtime_ns"]:
        # A reinstall touches the file without changing it: compare contents before
        # throwing the cache away.
        if _sha256_file(source) != meta["source_sha256"]:
            log.info("catalogue source %s changed; rebuilding the cache", source)
            return None
        meta = {**meta, "source_mtime_ns": stat.st_mtime_ns}
        with contextlib.suppress(OSError, StorageError):
            atomic_write_bytes(sidecar_path, json.dumps(meta, indent=1).encode(), shared=True)
    try:
        blob = npy_path.read_bytes()
    except OSError as exc:
        log.warning("catalogue cache %s is unreadable (%s); rebuilding", npy_path, exc)
        return None
    stars = load_checked_npy(blob, meta["npy_sha256"], npy_path, "catalogue cache", log)
    if stars is None:
        return None
    if stars.dtype != CATALOGUE_DTYPE or stars.shape != (meta["n_stars"],):
        log.warning("catalogue cache %s has the wrong layout; rebuilding", npy_path)
        return None
    stars.flags.writeable = False
    return stars


def write_cache(
    cache_dir: Path,
    source: Path,
    stars: np.ndarray,
    *,
    blend_radius_arcsec: float,
    blend_threshold: float,
) -> None:
    """Cache ``stars`` parsed from ``source`` in ``cache_dir`` (OSError, StorageError)."""
    npy_path, sidecar_path = _cache_paths(cache_dir)
    stat = source.stat()
    meta = {
        "format_version": FORMAT_VERSION,
        "source_path": str(source),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "source_sha256": _sha256_file(source),
        "blend_radius_arcsec": float(blend_radius_arcsec),
        "blend_threshold": float(blend_threshold),
        "n_stars": len(stars),
    }
    save_npy_cache(npy_path, sidecar_path, stars, meta)
