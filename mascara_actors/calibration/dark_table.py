"""The dark table: the camera's master darks, newest first, that later nights fall back on.

The dark table (the seed's ``getDarkFilename`` / ``updateDarkFilename``) is the text file
``{table_dir}/darktable{ID}.dat``, ID the camera id (``LPC``): one master-dark path per line,
newest first, at most ``nmax`` lines, rewritten atomically. Science reduction uses the first
line.

Tables were once named by the camera letter alone (``darktableC.dat``, the legacy name):
one archive output holding the nights of both sites then gave a La Silla night a La Palma
master, and each of its frames failed. :func:`adopt_legacy_table` carries such a table over
to the camera's own, with only the masters of that camera and site.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from astropy.io import fits

from mascara_actors.atomic_files import atomic_write_text
from mascara_actors.config import CameraConfig
from mascara_actors.errors import CalibrationError, StorageError

__all__ = [
    "adopt_legacy_table",
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


def adopt_legacy_table(camera: CameraConfig, table_dir: str | Path) -> list[str]:
    """Start the camera's table from the legacy one named by its letter, once.

    When ``darktable{ID}.dat`` does not exist and ``darktable{letter}.dat`` does, the masters
    of the latter whose header names this camera's site and letter are written to the former
    (newest first, as they were); the legacy table is left for the cameras of the other
    site. A master that cannot be read is left out with a warning.

    Returns
    -------
    list of str
        The camera's table after the carry-over (empty when it has none).
    """
    entries = read_dark_table(camera.id, table_dir)
    if entries or dark_table_path(camera.id, table_dir).exists():
        return entries
    legacy = read_dark_table(camera.letter, table_dir)
    kept = [e for e in legacy if _is_dark_of(e, camera)]
    if kept:
        atomic_write_text(dark_table_path(camera.id, table_dir), "\n".join(kept) + "\n")
        log.info("dark table %s: %d of the %d masters of %s are of camera %s, carried over",
                 dark_table_path(camera.id, table_dir), len(kept), len(legacy),
                 dark_table_path(camera.letter, table_dir), camera.id)
    return kept


def _is_dark_of(path: str, camera: CameraConfig) -> bool:
    """Whether the FITS header of ``path`` is that of a master dark of ``camera``."""
    try:
        head = fits.getheader(path)
    except (OSError, ValueError, IndexError) as exc:
        log.warning("dark table: %s left out: it cannot be read (%s)", path, exc)
        return False
    return (str(head.get("IMAGETYP", "")).upper() == "MASTERDARK"
            and head.get("SITE-OBS") == camera.site.name and head.get("CAMERA") == camera.letter)


def dark_from_table(camera: CameraConfig, state_dir: Path) -> tuple[str | None, str]:
    """The newest master dark of the camera's dark table (None when there is none), and a
    note for the operator saying which dark the science is calibrated with."""
    entries = adopt_legacy_table(camera, state_dir)
    if not entries:
        return None, "no dark table: subtracting the overscan level"
    return entries[0], f"using {entries[0]} from the dark table"
