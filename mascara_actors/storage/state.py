"""Small state files, written atomically: the dark table and JSON state.

The dark table (the seed's ``getDarkFilename`` / ``updateDarkFilename``) is the text file
``{table_dir}/darktable{CAM}.dat``: one master-dark path per line, newest first, at most
``nmax`` lines. Science reduction uses the first line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

from mascara_actors.errors import CalibrationError, StorageError
from mascara_actors.storage.atomic import atomic_write_text

__all__ = [
    "dark_table_path",
    "get_dark_filename",
    "read_dark_table",
    "read_json_state",
    "update_dark_filename",
    "write_json_state",
]

log = logging.getLogger(__name__)


def dark_table_path(camera: str, table_dir: str | Path) -> Path:
    """``{table_dir}/darktable{camera}.dat``; ``camera`` is a letter or an id such as LPC."""
    if not (isinstance(camera, str) and re.fullmatch(r"[A-Za-z0-9]{1,8}", camera)):
        raise StorageError(f"camera={camera!r} must be a camera letter or id such as 'C' or "
                           "'LPC' (letters and digits)")
    return Path(table_dir) / f"darktable{camera}.dat"


def read_dark_table(camera: str, table_dir: str | Path) -> list[str]:
    """The master darks of ``camera``, newest first; empty when there is no table."""
    path = dark_table_path(camera, table_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot read the dark table {path}: {exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def get_dark_filename(camera: str, table_dir: str | Path) -> str:
    """Path of the newest master dark of ``camera``.

    Raises
    ------
    CalibrationError
        The table is missing or empty: no master dark has been made yet.
    """
    entries = read_dark_table(camera, table_dir)
    if not entries:
        path = dark_table_path(camera, table_dir)
        state = "is empty" if path.exists() else "does not exist"
        raise CalibrationError(
            f"the dark table {path} {state}: no master dark is known for camera {camera}; "
            "record a dark sequence so that a master dark is made (it is added to the "
            "table), or run without dark subtraction")
    return entries[0]


def update_dark_filename(camera: str, filename: str | Path, table_dir: str | Path, *,
                         nmax: int = 5) -> list[str]:
    """Put ``filename`` first in the dark table of ``camera`` and keep ``nmax`` entries.

    A path already in the table moves to the top instead of appearing twice. The table is
    rewritten atomically, so a crash leaves the old or the new table.

    Returns
    -------
    list of str
        The table after the update, newest first.
    """
    if int(nmax) != nmax or nmax < 1:
        raise StorageError(f"nmax={nmax!r} must be an integer >= 1")
    name = str(filename)
    if not name.strip() or "\n" in name or "\r" in name or name != name.strip():
        raise StorageError(f"dark filename {name!r} must be a non-empty path without line "
                           "breaks or surrounding spaces")
    path = dark_table_path(camera, table_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [name] + [e for e in read_dark_table(camera, table_dir) if e != name]
    entries = entries[: int(nmax)]
    atomic_write_text(path, "\n".join(entries) + "\n")
    log.info("dark table %s: newest is now %s (%d entries)", path, name, len(entries))
    return entries


def write_json_state(path: str | Path, state: Mapping[str, object]) -> Path:
    """Write a small JSON state file atomically (sorted keys, so equal states give equal files)."""
    try:
        text = json.dumps(dict(state), sort_keys=True, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"state for {path} is not plain JSON ({exc}): use numbers, "
                           "strings, lists and dicts") from exc
    return atomic_write_text(Path(path), text + "\n")


def read_json_state(path: str | Path, default: Mapping[str, object] | None = None
                    ) -> dict[str, object]:
    """Read a JSON state file; ``default`` (or ``{}``) when it does not exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return dict(default or {})
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StorageError(f"state file {path} is not valid JSON ({exc}); it was written "
                           "atomically, so something else changed it: remove it") from exc
    if not isinstance(value, dict):
        raise StorageError(f"state file {path} holds {type(value).__name__}, not an object")
    return value
