"""The dark table: the camera's master darks, newest first, that later nights fall back on.

The dark table (the seed's ``getDarkFilename`` / ``updateDarkFilename``) is the text file
``{table_dir}/darktable{CAM}.dat``: one master-dark path per line, newest first, at most
``nmax`` lines, rewritten atomically. Science reduction uses the first line.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mascara_actors.atomic_files import atomic_write_text
from mascara_actors.errors import CalibrationError, StorageError

__all__ = [
    "dark_from_table",
    "dark_table_path",
    "get_dark_filename",
    "read_dark_table",
    "update_dark_filename",
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


def dark_from_table(camera_letter: str, state_dir: Path) -> tuple[str | None, str]:
    """The newest master dark of the camera's dark table (None when there is none), and a
    note for the operator saying which dark the science is calibrated with."""
    try:
        path = get_dark_filename(camera_letter, state_dir)
    except CalibrationError:
        return None, "no dark table: subtracting the overscan level"
    return path, f"using {path} from the dark table"
