"""What made a reduced night: ``{night_dir}/provenance.json``.

Every reduction of a camera-night (``--replay``, the archive) records the software version,
the hash of the configuration, the command, the masters it used and, once the night is
complete, the SHA-256 of each of its products (the nightly files and the binned images,
masters included), with its size and modification time. That record is how a re-reduction
knows a night is done (its products verify) and how it refuses to mix two reductions: a
night directory holds the products of one software version and one configuration, never of
two.

A product whose size and modification time are those recorded is taken to be the one
recorded without reading it (as ``rsync`` and ``git`` decide a file has not changed): a
full night's products are 3 GB, six seconds of hashing, and a resumed re-reduction of years
of archive finds tens of thousands of nights complete. Any other product is hashed, and
``thorough`` verification hashes every one (what a copy that kept the times, but not the
bytes, needs).

The record is written whole or not at all (:func:`~mascara_actors.atomic_files.atomic_write_text`):
``started`` before the first product is written, ``complete`` after the last.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mascara_actors import __version__
from mascara_actors.atomic_files import atomic_write_text
from mascara_actors.errors import StorageError
from mascara_actors.storage.layout import binned_dir, lightcurve_dir

__all__ = [
    "PROVENANCE_NAME",
    "SOFTWARE",
    "Provenance",
    "check_complete",
    "complete_provenance",
    "config_hash",
    "product_files",
    "read_provenance",
    "record_masters",
    "start_provenance",
    "verify_products",
]

PROVENANCE_NAME = "provenance.json"
SOFTWARE = f"mascara-actors {__version__}"
"""The software that reduces here, as the records name it."""

@dataclass(frozen=True, slots=True)
class Provenance:
    """One night's record (the fields of ``provenance.json``)."""

    software: str
    config_hash: str
    config_dir: str
    command: tuple[str, ...]
    started_utc: str
    status: str = "started"
    """``started`` while products are being made, ``complete`` once they all are."""
    masters: dict[str, str] = field(default_factory=dict)
    """Kind (``dark``, ``flat``, ``bias``) -> file name in ``binned/``."""
    raw_frames: int = 0
    """Science frames of the recorded night."""
    finished_utc: str | None = None
    products: dict[str, str] = field(default_factory=dict)
    """Path relative to the night directory -> SHA-256 (hex), once complete."""
    stamps: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Path relative to the night directory -> (size in bytes, modification time in ns)
    when its SHA-256 was taken; a product that changed while it was hashed has none."""

    def made_here(self, config_hash: str) -> bool:
        """Made by this software (:data:`SOFTWARE`) with the configuration of this hash."""
        return (self.software, self.config_hash) == (SOFTWARE, config_hash)

    def describe(self) -> str:
        """``mascara-actors 0.1.0, configuration 3f2a...`` (for messages)."""
        return f"{self.software}, configuration {self.config_hash[:12]}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def config_hash(directory: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a configuration directory: every file's relative name and bytes."""
    root = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(_sha256(path).encode())
    return digest.hexdigest()


def product_files(night_dir: Path) -> list[Path]:
    """The night's products: nightly files (``lightcurves/*.hdf5``) and binned images and
    masters (``binned/*.fits``), sorted."""
    return sorted([*lightcurve_dir(night_dir).glob("*.hdf5"),
                   *binned_dir(night_dir).glob("*.fits")])


def read_provenance(night_dir: Path) -> Provenance | None:
    """The night's record, or None when it has none.

    Raises
    ------
    StorageError
        If the record cannot be read (damaged, or not a record of this software's layout).
    """
    path = night_dir / PROVENANCE_NAME
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(
            f"{path}: cannot read the night's provenance record ({exc}): move the night "
            "directory away and reduce it again"
        ) from exc
    try:
        return Provenance(
            software=str(data["software"]),
            config_hash=str(data["config_hash"]),
            config_dir=str(data["config_dir"]),
            command=tuple(str(a) for a in data["command"]),
            started_utc=str(data["started_utc"]),
            status=str(data["status"]),
            masters={str(k): str(v) for k, v in data["masters"].items()},
            raw_frames=int(data["raw_frames"]),
            finished_utc=data["finished_utc"],
            products={str(k): str(v) for k, v in data["products"].items()},
            # records of this version made before stamps were kept: every product hashed
            stamps={str(k): (int(size), int(mtime))
                    for k, (size, mtime) in data.get("stamps", {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StorageError(
            f"{path}: not a provenance record of this software (missing or bad {exc}): move "
            "the night directory away and reduce it again"
        ) from exc


def _write(night_dir: Path, record: Provenance) -> None:
    text = json.dumps(asdict(record), indent=2) + "\n"
    atomic_write_text(night_dir / PROVENANCE_NAME, text)


def start_provenance(
    night_dir: Path,
    *,
    config_dir: Path,
    command: Sequence[str],
) -> Provenance:
    """Check that ``night_dir`` may take this reduction, and record that it started.

    A night directory with no products, or with products of the same software and
    configuration (an interrupted or earlier run: it resumes), may; the record keeps its
    first start time and its masters.

    Raises
    ------
    StorageError
        If the directory holds products of another software version or configuration, or
        products without a record (made before records were kept, or by hand): the two are
        never mixed, and the message says what to do. Also if the night is complete and
        its products changed since (:func:`verify_products`): resuming would record them
        complete again, as if they had been made so.
    """
    record = Provenance(
        software=SOFTWARE,
        config_hash=config_hash(config_dir),
        config_dir=str(config_dir),
        command=tuple(command),
        started_utc=_now(),
    )
    existing = read_provenance(night_dir)
    if existing is None:
        if product_files(night_dir):
            raise StorageError(
                f"{night_dir} holds reduced products but no {PROVENANCE_NAME} (made by an "
                "older version, or by hand): they are not mixed with a new reduction. Reduce "
                f"into another --out, or move {night_dir} away to reduce the night again"
            )
    elif not existing.made_here(record.config_hash):
        raise StorageError(
            f"{night_dir} holds a reduction by {existing.describe()}; this is "
            f"{record.describe()}: the two are never mixed. Reduce into another --out, or "
            f"move {night_dir} away to reduce the night again"
        )
    else:
        if existing.status == "complete":
            check_complete(night_dir, existing)
        record = replace(record, started_utc=existing.started_utc, masters=existing.masters)
    night_dir.mkdir(parents=True, exist_ok=True)
    _write(night_dir, record)
    return record


def record_masters(night_dir: Path, record: Provenance, masters: dict[str, str]) -> Provenance:
    """Add the masters the night uses (kind -> file name) to its record."""
    record = replace(record, masters=dict(masters))
    _write(night_dir, record)
    return record


def complete_provenance(night_dir: Path, record: Provenance, *, raw_frames: int) -> Provenance:
    """Record the night complete, with the SHA-256, size and modification time of each of
    its products."""
    products, stamps = {}, {}
    for path in product_files(night_dir):
        name = path.relative_to(night_dir).as_posix()
        before = _stamp(path)
        products[name] = _sha256(path)
        if _stamp(path) == before:
            stamps[name] = before
    record = replace(
        record,
        status="complete",
        raw_frames=raw_frames,
        finished_utc=_now(),
        products=products,
        stamps=stamps,
    )
    _write(night_dir, record)
    return record


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def check_complete(night_dir: Path, record: Provenance, *, thorough: bool = False) -> None:
    """Refuse a night recorded complete whose products changed since (:func:`verify_products`,
    ``thorough`` as there): reducing into it again would record them complete, as if they
    had been made so.

    Raises
    ------
    StorageError
        Naming the first product that does not verify, and what to do.
    """
    problems = verify_products(night_dir, record, thorough=thorough)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StorageError(f"complete, but {problems[0]}{more}: move {night_dir} away to "
                           "reduce the night again")


def verify_products(night_dir: Path, record: Provenance, *,
                    thorough: bool = False) -> list[str]:
    """What does not match the record (empty: the night is complete and its products are
    the ones it recorded). A product with the size and modification time recorded is not
    read unless ``thorough`` (the module docstring says why)."""
    if record.status != "complete":
        return [f"{night_dir}: the reduction did not complete"]
    problems = []
    on_disk = {p.relative_to(night_dir).as_posix() for p in product_files(night_dir)}
    for name in sorted(on_disk - set(record.products)):
        problems.append(f"{night_dir / name}: not in the record")
    for name, digest in sorted(record.products.items()):
        path = night_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif ((thorough or _stamp(path) != record.stamps.get(name))
              and _sha256(path) != digest):
            problems.append(f"{path}: changed since it was made")
    return problems
