"""What each directory of a raw archive holds: :func:`walk_archive`.

A raw frame's name gives its lstseq, camera letter and kind (``00123456C.fits``,
``00123456Cdark.fits.fz``). Frames of one camera letter in one directory are split into
runs where they are more than :data:`NIGHT_GAP_SLOTS` apart (a day lies between two
nights); a run's first and last headers name its site (``SITE-OBS``), and when they differ
(the same camera letter of two sites in one directory) every header is read to split the run
by site. A run keeps its science frames' lstseqs as spans (a night's thousands in a few
pairs), so that a frame found twice (a backup copy) is counted once. A directory's facts
(:class:`DirectoryFacts`) are the same whatever the configuration, so the scan's memory
(:mod:`~mascara_actors.app.archive.scan_memory`) keeps them for the next run.

Reported, never fatal: FITS files whose names are not raw-frame names (foreign files), runs
whose frames cannot be read at all, directories that cannot be listed. The output directory
is not searched when it lies under the root: its products are not raw frames, and a
re-reduction must not read what it writes. Nor are the ``binned/`` directories of
camera-night directories (a station's output holds its raw frames beside its products):
one line says how many were passed over. Symbolic links to directories are followed (nights
kept on other disks are linked into archives), each directory searched once whatever the
links and mounts that lead to it; a link that leads nowhere is reported.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mascara_actors.app.archive.scan_memory import ScanMemory
from mascara_actors.app.archive.words import counted
from mascara_actors.errors import FrameError, StorageError
from mascara_actors.rawframe import parse_raw_filename, read_raw_header
from mascara_actors.storage import NightId, binned_dir

__all__ = ["NIGHT_GAP_SLOTS", "DirectoryFacts", "RunFacts", "Spans", "distinct", "walk_archive"]

NIGHT_GAP_SLOTS = 1500
"""Frames of a camera further apart than this many slots (2.7 h) are of different nights."""

_FITS_SUFFIXES = (".fits", ".fits.gz", ".fits.fz", ".fit", ".fts")
_HEADERS_TRIED = 5
"""Frames of a run whose headers are tried for its site before the run is left out."""
_CALIBRATION_KINDS = frozenset(("bias", "dark", "flat"))

Spans = tuple[tuple[int, int], ...]
"""Distinct lstseqs, sorted, as (first, last) spans of consecutive ones."""
Frame = tuple[int, str, str]
"""(lstseq, kind, file name) of a raw frame, as its name gives them."""


@dataclass(frozen=True, slots=True)
class RunFacts:
    """The raw frames of one camera letter in one directory within an lstseq range."""

    letter: str
    first: int
    """lstseq of the run's first frame."""
    last: int
    """lstseq of its last frame."""
    count: int
    """Raw frames (files) in the run."""
    science_lstseqs: Spans
    """lstseqs of its science frames."""
    calibration: tuple[Frame, ...]
    """(lstseq, kind, file name) of its bias, dark and flat frames, sorted."""
    site: str | None
    """``SITE-OBS`` of its headers; None when none of the first :data:`_HEADERS_TRIED`
    reads (``unreadable`` says why)."""
    unreadable: str = ""
    """Why none of those headers read (the first error), or empty."""

    @property
    def science(self) -> int:
        """Science frames among them, one per lstseq."""
        return distinct(self.science_lstseqs)

    @property
    def first_science(self) -> int | None:
        """lstseq of its first science frame, None when it has none."""
        return self.science_lstseqs[0][0] if self.science_lstseqs else None

    @property
    def middle(self) -> int | None:
        """The middle lstseq of its science frames, None when it has none."""
        k = self.science // 2
        for first, last in self.science_lstseqs:
            if k <= last - first:
                return first + k
            k -= last - first + 1
        return None

    @property
    def darks(self) -> tuple[tuple[int, str], ...]:
        """(lstseq, file name) of its dark frames."""
        return tuple((lstseq, name) for lstseq, kind, name in self.calibration
                     if kind == "dark")


@dataclass(frozen=True, slots=True)
class DirectoryFacts:
    """What one directory holds: its subdirectories, its runs of raw frames and its
    foreign FITS files (names only)."""

    subdirs: tuple[str, ...]
    runs: tuple[RunFacts, ...]
    foreign: tuple[str, ...]
    dangling: tuple[tuple[str, str], ...] = ()
    """(name, what it is) of its entries left out: symbolic links that lead nowhere, and
    entries with a raw frame's name that are no regular file (reading a pipe blocks the
    night until something writes to it). Not in :meth:`to_json`:
    such a directory is never kept in the memory, since mounting the disk a link leads to
    mends the link and leaves the directory's times alone."""

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
    return [r.letter, r.first, r.last, r.count, [list(s) for s in r.science_lstseqs],
            [list(c) for c in r.calibration], r.site]


def _run_from_json(held: Any) -> RunFacts:
    letter, first, last, count, science, calibration, site = held
    if letter not in _LETTERS or not (site is None or isinstance(site, str)):
        raise ValueError("a run's camera letter or site")
    return RunFacts(letter, _lstseq(first), _lstseq(last), _lstseq(count),
                    tuple(_span(s) for s in science),
                    tuple(_calibration(c) for c in calibration), site)


def _span(held: Any) -> tuple[int, int]:
    first, last = map(_lstseq, held)
    if first > last:
        raise ValueError(f"{held!r} is not a span of lstseqs")
    return first, last


def _calibration(held: Any) -> Frame:
    lstseq, kind, name = held
    if kind not in _CALIBRATION_KINDS:
        raise ValueError(f"{kind!r} is not a kind of calibration frame")
    return _lstseq(lstseq), kind, _name(name)


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


def distinct(spans: Iterable[tuple[int, int]]) -> int:
    """How many distinct lstseqs ``spans`` hold (those of several runs may overlap)."""
    total, end = 0, -1
    for first, last in sorted(spans):
        if last > end:
            total += last - max(first, end + 1) + 1
            end = last
    return total


def walk_archive(root: Path, memory: ScanMemory, problems: list[str], *,
                 exclude: tuple[int, int] | None
                 ) -> Iterator[tuple[Path, DirectoryFacts, bool]]:
    """Every directory under ``root`` (``root`` first, then each subdirectory in name
    order, depth first, symbolic links to directories followed) with what it holds, and
    whether that came from ``memory`` (the directory unchanged since the last scan) rather
    than from reading it now (then kept in ``memory``). Each directory is searched once,
    however many links lead to it (so a link to a directory above it makes no loop). The
    directory with the (device, inode) ``exclude`` is not searched; what is left out is added
    to ``problems``."""
    started = time.time()
    products: list[Path] = []
    searched: dict[tuple[int, int], Path] = {}
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
        if stamp[:2] in searched:
            problems.append(f"{directory}: the same directory as {searched[stamp[:2]]} "
                            "(linked or mounted twice): searched once")
            continue
        searched[stamp[:2]] = directory
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
        if not facts.dangling and not any(r.unreadable for r in facts.runs):
            # a run none of whose frames read, or a link that leads nowhere, is read again
            # next time: it may be mended
            memory.keep_directory(relative, stamp, facts.to_json(), started=started)
        subdirs = list(facts.subdirs)
        products_here = binned_dir(directory)
        if products_here.name in subdirs and _is_night_dir(directory):
            subdirs.remove(products_here.name)
            products.append(products_here)
        stack.extend((directory / name, f"{relative}{name}/") for name in reversed(subdirs))
        problems.extend(_foreign_files(directory, facts.foreign))
        problems.extend(f"{directory / name}: {what}: left out" for name, what in facts.dangling)
        problems.extend(f"{directory}: {counted(r.count, 'frame')} of camera {r.letter}: "
                        f"{r.unreadable}" for r in facts.runs if r.unreadable)
        yield directory, facts, reused
    if products:
        more = f" and {len(products) - 1} more like it" if len(products) > 1 else ""
        problems.append(f"{products[0]}{more}: the binned images and masters of a reduced "
                        "night, not searched for raw frames")


_FOREIGN_LISTED = 3
"""Foreign FITS files of a directory named one a line; more are counted in one line."""


def _foreign_files(directory: Path, names: Sequence[str]) -> list[str]:
    """What the scan says of the FITS files in ``directory`` whose names are not raw
    frames': a line each, or one line for many (a directory of thousands)."""
    pattern = "({lstseq:08d}{CAM}[dark|bias|flat].fits[.gz|.fz])"
    if len(names) <= _FOREIGN_LISTED:
        lines = [f"{directory / n}: a FITS file whose name is not a raw frame's {pattern}"
                 for n in names]
    else:
        lines = [f"{directory}: {len(names)} FITS files whose names are not raw frames' "
                 f"{pattern}, {names[0]} the first"]
    if any(_raw_but_for_case(n) for n in names):
        lines[-1] += ("; some would be raw frames with lower-case extensions (.fits, .gz, "
                      ".fz): rename them so")
    return lines


def _raw_but_for_case(name: str) -> bool:
    """Whether ``name`` is a raw frame's name but for the case of its extensions."""
    stem, dot, extensions = name.partition(".")
    return bool(dot) and parse_raw_filename(f"{stem}.{extensions.lower()}") is not None


def _read_directory(directory: Path) -> DirectoryFacts:
    """What ``directory`` holds, read now (two headers per run)."""
    subdirs: list[str] = []
    foreign: list[str] = []
    dangling: list[tuple[str, str]] = []
    by_letter: dict[str, list[Frame]] = defaultdict(list)
    with os.scandir(directory) as entries:
        for entry in entries:
            if _is_directory(entry):
                subdirs.append(entry.name)
                continue
            nowhere = _leads_nowhere(entry) if entry.is_symlink() else ""
            if nowhere:
                dangling.append((entry.name, nowhere))
                continue
            parsed = parse_raw_filename(entry.name)
            if parsed is not None and not entry.is_file():
                # opening a pipe blocks until something writes to it: the night would hang
                dangling.append((entry.name, "not a regular file (a pipe, socket or device)"))
            elif parsed is not None:
                by_letter[parsed[1]].append((parsed[0], parsed[2], entry.name))
            elif entry.name.lower().endswith(_FITS_SUFFIXES):
                foreign.append(entry.name)
    runs = []
    for letter, frames in sorted(by_letter.items()):
        frames.sort()
        start = 0
        for i in range(1, len(frames) + 1):
            if i == len(frames) or frames[i][0] - frames[i - 1][0] > NIGHT_GAP_SLOTS:
                runs.extend(_run_facts(directory, letter, frames[start:i]))
                start = i
    return DirectoryFacts(tuple(sorted(subdirs)), tuple(runs), tuple(sorted(foreign)),
                          tuple(sorted(dangling)))


def _is_directory(entry: os.DirEntry[str]) -> bool:
    """Whether ``entry`` is a directory to search, or a symbolic link to one."""
    try:
        return entry.is_dir()
    except OSError:
        return False  # looked at as a file (as ever): its name says whether it is a frame


def _leads_nowhere(entry: os.DirEntry[str]) -> str:
    """What the symbolic link ``entry`` is when it leads nowhere, in words; empty when it
    leads to something."""
    try:
        entry.stat()  # what is_dir() found is cached: no second system call per file
    except OSError as exc:
        return (f"a symbolic link to {os.readlink(entry.path)}, which cannot be reached "
                f"({exc.strerror or exc})")
    return ""


def _run_facts(directory: Path, letter: str, frames: list[Frame]) -> list[RunFacts]:
    """The facts of the run ``frames`` (sorted): one run, unless its first and last headers
    that read name different sites; then its frames are split by the site of each header."""
    errors: list[str] = []
    site = _site(directory, frames[:_HEADERS_TRIED], errors)
    if site is None:
        return [_facts(letter, frames, None,
                       f"none of the first {len(errors)} can be read (first: {errors[0]})")]
    # the last frame only: a run's frames are one site's but in the rare mixed directory,
    # and a million-frame scan reads two headers a run, not a dozen (one unreadable last
    # frame, the night cut short, leaves the run whole)
    last = frames[-1:] if len(frames) > len(errors) + 1 else []
    if _site(directory, last, []) in (None, site):
        return [_facts(letter, frames, site)]
    return [_facts(letter, part, part_site)
            for part_site, part in _split_by_site(directory, frames, site)]


def _site(directory: Path, frames: Iterable[Frame], errors: list[str]) -> str | None:
    """``SITE-OBS`` of the first of ``frames`` whose header reads (the errors of those that
    do not are added to ``errors``); None when none does."""
    for _, _, name in frames:
        try:
            return read_raw_header(directory / name).site
        except FrameError as exc:
            errors.append(str(exc))
    return None


def _split_by_site(directory: Path, frames: list[Frame],
                   site: str) -> list[tuple[str, list[Frame]]]:
    """``frames`` in runs of consecutive frames of one site, every header read (a frame whose
    header does not read goes with the one before it, or with ``site``: the reduction will
    find it bad)."""
    parts: list[tuple[str, list[Frame]]] = []
    for frame in frames:
        frame_site = _site(directory, [frame], []) or (parts[-1][0] if parts else site)
        if parts and parts[-1][0] == frame_site:
            parts[-1][1].append(frame)
        else:
            parts.append((frame_site, [frame]))
    return parts


def _facts(letter: str, frames: list[Frame], site: str | None,
           unreadable: str = "") -> RunFacts:
    """The facts of the run ``frames`` (sorted) of ``site``."""
    return RunFacts(
        letter=letter,
        first=frames[0][0],
        last=frames[-1][0],
        count=len(frames),
        science_lstseqs=_spans([lstseq for lstseq, kind, _ in frames if kind == "science"]),
        calibration=tuple(f for f in frames if f[1] != "science"),
        site=site,
        unreadable=unreadable,
    )


def _spans(lstseqs: list[int]) -> Spans:
    """Sorted ``lstseqs`` (repeats allowed) as :data:`Spans`."""
    if not lstseqs:
        return ()
    # comprehensions, not a loop per frame: a few hundredths of a second per million frames
    gaps = [(before, after) for before, after in itertools.pairwise(lstseqs)
            if after - before > 1]
    return tuple(zip([lstseqs[0], *(after for _, after in gaps)],
                     [*(before for before, _ in gaps), lstseqs[-1]], strict=True))


def _is_night_dir(path: Path) -> bool:
    """Whether ``path`` is named as a camera-night directory (``20260320LPC``)."""
    try:
        NightId.from_dir(path)
    except StorageError:
        return False
    return True
