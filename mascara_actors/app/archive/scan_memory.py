"""What a scan of an archive leaves for the next run into the same output directory.

An archive of years holds a hundred million raw frames in tens of thousands of directories:
searching it again takes tens of minutes, and dating its thousands of site-days minutes of
every core, before a resumed run reduces its first night. :class:`ScanMemory` keeps, in
``OUT/state/archive/scan.json``:

- what each directory held (its subdirectories, its runs of raw frames, its foreign files),
  under its device, inode, modification and change times. Adding, removing or renaming a
  file changes the modification time; a tool that puts that time back (``rsync -a``,
  ``touch -r``) or a change of permissions changes the change time, which nothing sets
  back. So the next scan reads again only the directories that changed. A directory
  modified within :data:`SETTLE_S` of the scan is not kept: the clock of a file server, or
  a file system with times of a second or two, could hide a change made in the same tick;
- the night of each site and local day, under the hash of the configuration that dated it.

Both are kept for the software version that saw them (the rules that split runs and date
nights may change). It is a cache, never a record: what cannot be read in it is ignored, and
the scan reads everything again. ``--rescan`` ignores it on purpose: a frame overwritten in
place leaves its directory's times alone, and a file system that gives every directory a
fixed time (some that mount an object store) hides every change.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mascara_actors.atomic_files import atomic_write_bytes
from mascara_actors.errors import StorageError
from mascara_actors.storage.provenance import SOFTWARE, config_hash

__all__ = [
    "SCAN_MEMORY_NAME",
    "SETTLE_S",
    "ScanMemory",
    "Stamp",
    "archive_state_dir",
    "directory_identity",
]

log = logging.getLogger(__name__)

SCAN_MEMORY_NAME = "scan.json"
"""Its name in ``OUT/state/archive/``."""

SETTLE_S = 60.0
"""A directory modified less than this long before the scan began is read again next
time."""

_SCHEMA = 3
"""3: runs keep their science frames' lstseqs, and site-days are dated from science only
(a memory of 2 may hold a site-day dated from the morning's darks)."""
_NIGHT = re.compile(r"\d{8}")

Stamp = tuple[int, int, int, int]
"""(device, inode, modification time in ns, change time in ns) of a directory."""


def archive_state_dir(out: Path) -> Path:
    """``OUT/state/archive``: what archive runs into ``out`` leave for each other (the
    scan's memory, the request to stop)."""
    return out / "state" / "archive"


def directory_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a directory, None when there is none: the same directory
    whatever the path to it (symbolic links, ``..``); the first two of its :data:`Stamp`."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass
class ScanMemory:
    """What the last scan saw (read from ``path``), and what this one sees (to save there)."""

    path: Path | None
    """Where it is kept; None keeps nothing (a dry run)."""
    software: str
    """The software that scans (its version)."""
    config: str
    """Hash of the configuration the nights are dated with."""
    root: tuple[int, int] | None = None
    """(device, inode) of the archive root the directories are relative to."""
    note: str = ""
    """Why the last scan's memory was not used, when it was there and was not."""
    _seen: dict[str, Any] = field(default_factory=dict, init=False)
    _days_seen: dict[str, str] = field(default_factory=dict, init=False)
    _dirs: dict[str, Any] = field(default_factory=dict, init=False)
    _days: dict[str, str] = field(default_factory=dict, init=False)

    @classmethod
    def load(cls, out: Path, config_dir: Path, root: Path, *, trust: bool = True,
             keep: bool = True) -> ScanMemory:
        """The memory that the last scan of ``root`` left in the output directory ``out``
        for this software and the configuration in ``config_dir`` (nothing when ``trust`` is
        False, or it is missing, of another root or software, or unreadable: :attr:`note`
        says why when it was there); ``keep`` False never writes it."""
        software, config = SOFTWARE, config_hash(config_dir)
        path = archive_state_dir(out) / SCAN_MEMORY_NAME
        identity = directory_identity(root)
        if identity is None:
            return cls(None, software, config)  # the scan says what is wrong with the root
        memory = cls(path if keep else None, software, config, root=identity)
        if not trust:
            return memory
        try:
            saved = json.loads(path.read_text())
            dirs, days = saved["directories"], saved["nights"]
            if not isinstance(dirs, dict) or not isinstance(days, dict):
                raise TypeError("not a mapping")
            same = (saved["schema"], saved["software"]) == (_SCHEMA, software)
            same_root = saved["root"] == list(memory.root or ())
        except FileNotFoundError:
            return memory
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
            memory.note = (f"the last scan's memory {path} cannot be read ({exc}): every "
                           "directory is searched again")
            return memory
        if not same:
            memory.note = (f"the last scan's memory {path} is of another version of the "
                           "software: every directory is searched again")
        elif not same_root:
            memory.note = (f"the last scan's memory {path} is of another archive root: every "
                           "directory is searched again")
        else:
            memory._seen = dirs
            if saved.get("config") == config:
                memory._days_seen = {k: v for k, v in days.items()
                                     if isinstance(v, str) and _NIGHT.fullmatch(v)}
        return memory

    def directory(self, relative: str, stamp: Stamp) -> Any | None:
        """What the last scan kept of the directory ``relative`` to the root, as it saved it,
        when the directory's ``stamp`` is the same now; None otherwise."""
        entry = self._seen.get(relative)
        if not isinstance(entry, dict) or entry.get("stamp") != list(stamp):
            return None
        return entry.get("held")

    def keep_directory(self, relative: str, stamp: Stamp, held: Any, *,
                       started: float) -> None:
        """Keep ``held`` (JSON-able) for the directory, unless it changed within
        :data:`SETTLE_S` of ``started`` (seconds since the epoch)."""
        if stamp[2] < (started - SETTLE_S) * 1e9:
            self._dirs[relative] = {"stamp": list(stamp), "held": held}

    def night(self, site: str, day: int) -> str | None:
        """The night (``YYYYMMDD``) the last scan gave the site-day, if it did."""
        return self._days_seen.get(f"{site}/{day}")

    def keep_night(self, site: str, day: int, night: str) -> None:
        """Keep the night (``YYYYMMDD``) of the site and local day (a Julian day number)."""
        self._days[f"{site}/{day}"] = night

    def save(self) -> None:
        """Write what this scan saw (whole, or not at all); a failure is said in the log, not
        raised: the next scan then reads everything again."""
        if self.path is None:
            return
        text = json.dumps({"schema": _SCHEMA, "software": self.software,
                           "root": list(self.root or ()), "config": self.config,
                           "directories": self._dirs, "nights": self._days},
                          separators=(",", ":"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # a name of its own for the temporary file: two runs may share an output
            atomic_write_bytes(self.path, text.encode(), durable=False, shared=True)
        except (OSError, StorageError) as exc:
            log.warning("the scan's memory %s could not be written (%s): the next run will "
                        "search every directory again", self.path, exc)

    @staticmethod
    def stamp(st: os.stat_result) -> Stamp:
        """The stamp of a directory from its ``stat``."""
        return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns
