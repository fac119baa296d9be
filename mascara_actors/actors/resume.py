"""What an earlier run of a camera-night left on disk, so that a restart finishes it.

A set is *done* only when each of its products is on disk and verified: its fast photometry
(a per-set file that opens and checks, or its frames in the nightly fast file) and its slow
side (a slow per-set file, or its row in the nightly slow file; a set too short to bin has
a slow row whose ``setflag`` says so, and no image). A set whose fast photometry is on disk
but whose slow side is not is binned again from its raw frames and stored solution, without
reducing them again; every other set not done is reduced from scratch. So a night stopped
at any moment, in any order of its products, ends with the same files as an uninterrupted
run.

A per-set file that does not verify (truncated, foreign, random bytes) never makes its set
look done: :func:`resume_point` with ``repair=True`` (under the night's lock) renames it to
``*.hdf5.corrupt``, says so, and the set is made again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mascara_actors.errors import StorageError
from mascara_actors.messages import StoredSolution
from mascara_actors.sidereal import set_index
from mascara_actors.storage import NightFile, SetFile, list_set_files, nightly_file_path

__all__ = [
    "ResumePoint",
    "missing_products",
    "resume_point",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """What an earlier run of a camera-night left on disk."""

    fast_sets: frozenset[int] = frozenset()
    """Sets whose fast photometry is on disk and verified."""
    slow_sets: frozenset[int] = frozenset()
    """Sets whose slow side (binned image and slow photometry, or the record that the set
    has none) is on disk and verified."""
    solutions: dict[int, StoredSolution] = field(default_factory=dict)
    """The astrometric solution of each set with fast photometry, by set index."""
    frame_aflags: dict[int, int] = field(default_factory=dict)
    """lstseq -> astrometry flag of every frame of the sets to bin again."""
    notes: tuple[str, ...] = ()
    """What was found wrong (files set aside), for the operator."""

    @property
    def done_sets(self) -> frozenset[int]:
        """Sets with every product on disk: their frames are not touched again."""
        return self.fast_sets & self.slow_sets

    @property
    def rebin_sets(self) -> frozenset[int]:
        """Sets whose fast photometry is on disk but whose binned side is not."""
        return frozenset(s for s in self.fast_sets - self.slow_sets if s in self.solutions)

    def skips(self, lstseq: int) -> bool:
        """True when the frame ``lstseq`` belongs to a set already done."""
        return int(set_index(lstseq)) in self.done_sets

    def rebins(self, lstseq: int) -> bool:
        """True when the frame ``lstseq`` is to be binned again, not reduced."""
        return lstseq in self.frame_aflags


def _set_aside(path: Path, reason: str, notes: list[str], repair: bool) -> None:
    if repair:
        os.replace(path, path.with_name(path.name + ".corrupt"))
        notes.append(f"{path} does not verify ({reason}): set aside as {path.name}.corrupt; "
                     "its set is made again")
    else:
        notes.append(f"{path} does not verify ({reason}): its set is made again")
    log.warning("%s", notes[-1])


def _station_aflags(station: np.ndarray, solution: StoredSolution | None) -> dict[int, int]:
    lstseq = station["lstseq"].astype(np.int64)
    if "aflag" in (station.dtype.names or ()):
        aflag = station["aflag"].astype(int)
    else:  # files written before the station row had it: the set's flag
        aflag = np.full(lstseq.size, 0 if solution is None else solution.aflag)
    return dict(zip(lstseq.tolist(), aflag.tolist(), strict=True))


def resume_point(night_dir: Path, *, repair: bool = False) -> ResumePoint:
    """Read what is on disk for the night in ``night_dir`` (nothing: an empty ResumePoint).

    Parameters
    ----------
    night_dir
        The camera-night directory.
    repair
        Rename per-set files that do not verify to ``*.corrupt`` (only under the night's
        lock, :class:`~mascara_actors.storage.SetWriter`); otherwise they are only reported.
    """
    night_dir = Path(night_dir)
    notes: list[str] = []
    fast: set[int] = set()
    slow: set[int] = set()
    solutions: dict[int, StoredSolution] = {}
    stations: dict[int, np.ndarray] = {}

    nightly = nightly_file_path(night_dir, "fast")
    if nightly.exists():
        try:
            with NightFile(nightly) as nf:
                station = nf.station
                astrometry = nf.astrometry
        except StorageError as exc:
            notes.append(f"{exc}; its sets are reduced again")
        else:
            sets = set_index(station["lstseq"]).astype(np.int64)
            for s in np.unique(sets).tolist():
                fast.add(s)
                stations[s] = station[sets == s]
            for row in astrometry if astrometry is not None else ():
                solutions[int(row["setidx"])] = StoredSolution.from_row(row)
    nightly_slow = nightly_file_path(night_dir, "slow")
    if nightly_slow.exists():
        try:
            with NightFile(nightly_slow) as nf:
                slow.update(np.unique(nf.station["setidx"]).astype(np.int64).tolist())
        except StorageError as exc:
            notes.append(f"{exc}; its sets are binned again")

    for setidx, path in list_set_files(night_dir, "fast").items():
        try:
            with SetFile(path, "fast") as set_file:
                rows = set_file.astrometry()
                stations[setidx] = set_file.station()
        except StorageError as exc:
            _set_aside(path, str(exc), notes, repair)
            continue
        fast.add(setidx)
        for row in rows if rows is not None else ():
            solutions[int(row["setidx"])] = StoredSolution.from_row(row)
    for setidx, path in list_set_files(night_dir, "slow").items():
        try:
            with SetFile(path, "slow") as set_file:
                set_file.station()
        except StorageError as exc:
            _set_aside(path, str(exc), notes, repair)
            continue
        slow.add(setidx)

    aflags: dict[int, int] = {}
    for s in fast - slow:
        if s in stations and s in solutions:
            aflags.update(_station_aflags(stations[s], solutions.get(s)))
    return ResumePoint(
        fast_sets=frozenset(fast),
        slow_sets=frozenset(slow),
        solutions=solutions,
        frame_aflags=aflags,
        notes=tuple(notes),
    )


def missing_products(night_dir: Path, reduced_sets: set[int]) -> tuple[str, ...]:
    """What the night lacks, read back from the disk: the fast and slow side of each set of
    ``reduced_sets`` (sets with at least one frame reduced), and the two nightly files."""
    on_disk = resume_point(night_dir)
    missing = [f"set {s}: fast photometry" for s in sorted(reduced_sets - on_disk.fast_sets)]
    missing += [
        f"set {s}: binned image and slow photometry"
        for s in sorted(reduced_sets - on_disk.slow_sets)
    ]
    if reduced_sets or on_disk.fast_sets:
        for kind in ("fast", "slow"):
            path = nightly_file_path(night_dir, kind)
            if not path.exists():
                missing.append(f"the nightly {kind} file {path}")
    return tuple(missing)
