"""What each directory of a raw archive holds: :func:`walk_archive`.

A raw frame's name gives its lstseq, camera letter and kind (``00123456C.fits``,
``00123456Cdark.fits.fz``). Frames of one camera letter in one directory are split into
runs where they are more than :data:`NIGHT_GAP_SLOTS` apart (a day lies between two
nights); one header per run names its site (``SITE-OBS``). A directory's facts
(:class:`DirectoryFacts`) are the same whatever the configuration, so the scan's memory
(:mod:`~mascara_actors.app.archive.scan_memory`) keeps them for the next run.

Reported, never fatal: FITS files whose names are not raw-frame names (foreign files), runs
whose frames cannot be read at all, directories that cannot be listed. The output directory
is not searched when it lies under the root: its products are not raw frames, and a
re-reduction must not read what it writes. Nor are the ``binned/`` directories of
camera-night directories (a station's output holds its raw frames beside its products):
one line says how many were passed over.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mascara_actors.app.archive.scan_memory import ScanMemory
from mascara_actors.app.archive.words import counted
from mascara_actors.errors import FrameError, StorageError
from mascara_actors.rawframe import parse_raw_filename, read_raw_header
from mascara_actors.storage import NightId, binned_dir

__all__ = ["NIGHT_GAP_SLOTS", "DirectoryFacts", "RunFacts", "walk_archive"]

NIGHT_GAP_SLOTS = 1500
"""Frames of a camera further apart than this many slots (2.7 h) are of different nights."""

_FITS_SUFFIXES = (".fits", ".fits.gz", ".fits.fz", ".fit", ".fts")
_HEADERS_TRIED = 5
"""Frames of a run whose headers are tried for its site before the run is left out."""


@dataclass(frozen=True, slots=True)
class RunFacts:
    """The raw frames of one camera letter in one directory within an lstseq range."""

    letter: str
    first: int
    """lstseq of the run's first frame."""
    last: int
    """lstseq of its last frame."""
    count: int
    """Raw frames in the run."""
    science: int
    """Science frames among them."""
    middle: int
    """The middle lstseq of its science frames (of all its frames when it has none)."""
    first_science: int | None
    """lstseq of its first science frame, None when it has none."""
    darks: tuple[tuple[int, str], ...]
    """(lstseq, file name) of its dark frames."""
    site: str | None
    """``SITE-OBS`` of the first header that reads; None when none of the first
    :data:`_HEADERS_TRIED` does (``unreadable`` says why)."""
    unreadable: str = ""
    """Why none of those headers read (the first error), or empty."""


@dataclass(frozen=True, slots=True)
class DirectoryFacts:
    """What one directory holds: its subdirectories, its runs of raw frames and its
    foreign FITS files (names only)."""

    subdirs: tuple[str, ...]
    runs: tuple[RunFacts, ...]
    foreign: tuple[str, ...]

    @property
    def files(self) -> int:
        """Raw frames in the directory."""
        return sum(r.count for r in self.runs)

    def to_json(self) -> list[Any]:
        """The facts as plain lists, for the scan's memory."""
        return [list(self.subdirs), [_run_json(r) for r in self.runs], list(self.foreign)]

    @classmethod
    def from_json(cls, held: Any) -> DirectoryFacts | None:
        """The facts as :meth:`to_json` gave them; None when ``held`` is not that (a
        damaged or tampered memory: the directory is then read again)."""
        try:
            subdirs, runs, foreign = held
            return cls(tuple(map(_name, subdirs)), tuple(_run_from_json(r) for r in runs),
                       tuple(map(_name, foreign)))
        except (TypeError, ValueError, OverflowError):
            return None


def _run_json(r: RunFacts) -> list[Any]:
    return [r.letter, r.first, r.last, r.count, r.science, r.middle, r.first_science,
            [list(d) for d in r.darks], r.site]


def _run_from_json(held: Any) -> RunFacts:
    letter, first, last, count, science, middle, first_science, darks, site = held
    if letter not in _LETTERS or not (site is None or isinstance(site, str)):
        raise ValueError("a run's camera letter or site")
    return RunFacts(letter, _lstseq(first), _lstseq(last), _lstseq(count), _lstseq(science),
                    _lstseq(middle), None if first_science is None else _lstseq(first_science),
                    tuple((_lstseq(lstseq), _name(name)) for lstseq, name in darks), site)


_LETTERS = frozenset("NESWC")


def _lstseq(value: Any) -> int:
    """A count or an lstseq from the memory (whole, not negative, not absurd)."""
    if not isinstance(value, int) or not 0 <= value < 10**12:
        raise ValueError(f"{value!r} is not an lstseq or a count")
    return value


def _name(value: Any) -> str:
    """A file or directory name from the memory: one name, never a path."""
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or \
            os.sep in value:
        raise ValueError(f"{value!r} is not a name in a directory")
    return value


def walk_archive(root: Path, memory: ScanMemory, problems: list[str], *,
                 exclude: tuple[int, int] | None
                 ) -> Iterator[tuple[Path, DirectoryFacts, bool]]:
    """Every directory under ``root`` (``root`` first, then each subdirectory in name
    order, depth first, symbolic links to directories not followed) with what it holds, and
    whether that came from ``memory`` (the directory unchanged since the last scan) rather
    than from reading it now (then kept in ``memory``). The directory with the (device,
    inode) ``exclude`` is not searched; what is left out is added to ``problems``."""
    started = time.time()
    products: list[Path] = []
    stack = [(root, "")]
    while stack:
        directory, relative = stack.pop()
        try:
            st = directory.stat()
        except OSError as exc:
            problems.append(f"{directory}: cannot be searched ({exc.strerror or exc})")
            continue
        stamp = ScanMemory.stamp(st)
        if exclude is not None and stamp[:2] == exclude:
            problems.append(f"{directory}: the output directory (--out), not searched for "
                            "raw frames")
            continue
        held = memory.directory(relative, stamp)
        facts = DirectoryFacts.from_json(held) if held is not None else None
        reused = facts is not None
        if facts is None:
            try:
                facts = _read_directory(directory)
            except OSError as exc:
                problems.append(f"{directory}: cannot be listed ({exc.strerror or exc}): "
                                "its frames are left out")
                continue
        if not any(r.unreadable for r in facts.runs):
            # a run none of whose frames read is read again next time: it may be mended
            memory.keep_directory(relative, stamp, facts.to_json(), started=started)
        subdirs = list(facts.subdirs)
        products_here = binned_dir(directory)
        if products_here.name in subdirs and _is_night_dir(directory):
            subdirs.remove(products_here.name)
            products.append(products_here)
        stack.extend((directory / name, f"{relative}{name}/") for name in reversed(subdirs))
        problems.extend(
            f"{directory / name}: a FITS file whose name is not a raw frame's "
            "({lstseq:08d}{CAM}[dark|bias|flat].fits[.gz|.fz])" for name in facts.foreign
        )
        problems.extend(f"{directory}: {counted(r.count, 'frame')} of camera {r.letter}: "
                        f"{r.unreadable}" for r in facts.runs if r.unreadable)
        yield directory, facts, reused
    if products:
        more = f" and {len(products) - 1} more like it" if len(products) > 1 else ""
        problems.append(f"{products[0]}{more}: the binned images and masters of a reduced "
                        "night, not searched for raw frames")


def _read_directory(directory: Path) -> DirectoryFacts:
    """What ``directory`` holds, read now (one header per run)."""
    subdirs: list[str] = []
    foreign: list[str] = []
    by_letter: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    with os.scandir(directory) as entries:
        for entry in entries:
            kind = _kind(entry)
            if kind == "directory":
                subdirs.append(entry.name)
            if kind != "file":
                continue
            parsed = parse_raw_filename(entry.name)
            if parsed is not None:
                by_letter[parsed[1]].append((parsed[0], parsed[2], entry.name))
            elif entry.name.lower().endswith(_FITS_SUFFIXES):
                foreign.append(entry.name)
    runs = []
    for letter, frames in sorted(by_letter.items()):
        frames.sort()
        start = 0
        for i in range(1, len(frames) + 1):
            if i == len(frames) or frames[i][0] - frames[i - 1][0] > NIGHT_GAP_SLOTS:
                runs.append(_run(directory, letter, frames[start:i]))
                start = i
    return DirectoryFacts(tuple(sorted(subdirs)), tuple(runs), tuple(sorted(foreign)))


def _kind(entry: os.DirEntry[str]) -> str:
    """``directory`` to search, ``file`` (or a symbolic link to one) to look at, or
    ``other``: a symbolic link to a directory, not followed (as ``os.walk`` does not)."""
    try:
        if entry.is_dir():
            return "other" if entry.is_symlink() else "directory"
    except OSError:
        pass
    return "file"


def _run(directory: Path, letter: str, frames: list[tuple[int, str, str]]) -> RunFacts:
    """The facts of the run ``frames`` (lstseq, kind, name; sorted)."""
    site, errors = None, []
    for _, _, name in frames[:_HEADERS_TRIED]:
        try:
            site = read_raw_header(directory / name).site
            break
        except FrameError as exc:
            errors.append(str(exc))
    science = [lstseq for lstseq, kind, _ in frames if kind == "science"]
    lstseqs = science or [lstseq for lstseq, _, _ in frames]
    return RunFacts(
        letter=letter,
        first=frames[0][0],
        last=frames[-1][0],
        count=len(frames),
        science=len(science),
        middle=lstseqs[len(lstseqs) // 2],
        first_science=science[0] if science else None,
        darks=tuple((lstseq, name) for lstseq, kind, name in frames if kind == "dark"),
        site=site,
        unreadable="" if site is not None else
        f"none of the first {len(errors)} can be read (first: {errors[0]})",
    )


def _is_night_dir(path: Path) -> bool:
    """Whether ``path`` is named as a camera-night directory (``20260320LPC``)."""
    try:
        NightId.from_dir(path)
    except StorageError:
        return False
    return True
