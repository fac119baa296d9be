"""The manifest of an archive run: one CSV row per camera-night, rewritten whole as each
night ends, so an interrupted run still has a manifest of what it did.

``{out}/manifests/archive-{YYYYmmddTHHMMSSZ}.csv``, columns :data:`COLUMNS`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import astuple, fields
from datetime import UTC, datetime
from pathlib import Path

from mascara_actors.app.archive.task import NightOutcome
from mascara_actors.atomic_files import atomic_write_text

__all__ = ["COLUMNS", "manifest_path", "read_manifest", "write_manifest"]

COLUMNS = tuple(f.name for f in fields(NightOutcome))
"""night, camera, status, frames, reduced, failed, warnings, wall_s, worker, error."""


def manifest_path(out: Path, started: datetime | None = None) -> Path:
    """Where a run started at ``started`` (default now, UTC) keeps its manifest."""
    stamp = (started or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return out / "manifests" / f"archive-{stamp}.csv"


def write_manifest(path: Path, outcomes: Iterable[NightOutcome]) -> None:
    """Write the rows (sorted by night, camera), whole or not at all."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for o in sorted(outcomes, key=lambda o: (o.night, o.camera)):
        writer.writerow(round(v, 2) if isinstance(v, float) else v for v in astuple(o))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buffer.getvalue())


def read_manifest(path: Path) -> list[dict[str, str]]:
    """The rows of a manifest, as text by column."""
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
