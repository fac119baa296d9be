"""One star's season of calibrated binned points, read from the calibrated files of one
camera, as the search sees them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mascara_actors.decorrelation.bins import BIN_DTYPE
from mascara_actors.errors import StorageError
from mascara_actors.search.errors import SearchError
from mascara_actors.search.settings import SIDEREAL_DAY
from mascara_actors.sidereal import SLOTS_PER_SIDEREAL_DAY, lstseq2date
from mascara_actors.storage.calibrated import CalibratedFile

__all__ = ["RawPoints", "SeasonInputs", "StarLightCurve", "open_season", "read_points"]


@dataclass(frozen=True)
class StarLightCurve:
    """A star's binned points (one per set of 50 exposures), time-ordered, after the
    detrending: ``flux`` is relative flux, 1 out of transit."""

    hip: int
    camera: str
    jd: np.ndarray
    """Mid-time of each bin, JD (UTC)."""
    lst: np.ndarray
    """Local sidereal time of each bin, hours."""
    flux: np.ndarray
    flux_err: np.ndarray


@dataclass(frozen=True)
class SeasonInputs:
    """The calibrated files of one camera that a search reads, and the ones it set aside."""

    camera: str
    files: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...]
    """(file, why) for each file left out."""
    stars: np.ndarray
    """HIP numbers in any of ``files``, ascending."""
    lstseq: tuple[int, int]
    """The first and last exposure of ``files``."""
    file_days: tuple[float, ...] = ()
    """Days from the first exposure of each file to its last (each was calibrated alone)."""
    file_spans: tuple[tuple[int, int], ...] = ()
    """The first and last exposure (lstseq) of each file."""

    @property
    def nights(self) -> int:
        """Nights the files span: the nights from each file's first exposure to its last,
        a night covered by two files counted once (the nights lost to weather within a
        file's span count; the weeks between two files do not)."""
        if not self.file_spans:
            return max(round(self.baseline_days), 1)
        spans = sorted(self.file_spans)
        total, (lo, hi) = 0, spans[0]
        for a, b in spans[1:]:
            if a - hi < SLOTS_PER_SIDEREAL_DAY:  # overlapping or on the next night
                hi = max(hi, b)
                continue
            total += _span_nights(lo, hi)
            lo, hi = a, b
        return total + _span_nights(lo, hi)

    @property
    def baseline_days(self) -> float:
        """Days from the first exposure to the last."""
        return (self.lstseq[1] - self.lstseq[0]) / SLOTS_PER_SIDEREAL_DAY * SIDEREAL_DAY

    @property
    def first_jd(self) -> float:
        """JD (UTC) of the first exposure."""
        return float(lstseq2date(self.lstseq[0], format="jd"))


def open_season(paths: Sequence[str | Path]) -> SeasonInputs:
    """Check the calibrated files: unreadable ones and those of another camera than most
    (ties: the first file's) are set aside with the reason.

    Raises
    ------
    SearchError
        When no file is left.
    """
    readable: list[tuple[Path, str, np.ndarray, tuple[int, int]]] = []
    skipped: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        try:
            with CalibratedFile(path) as f:
                head = f.header
                span = (int(head["lstmin"]), int(head["lstmax"]))
                readable.append((path, str(head.get("camera", "?")), f.ids(), span))
        except (StorageError, OSError, KeyError) as exc:
            skipped.append((path, f"cannot be read: {exc}"))
    if not readable:
        raise SearchError("no calibrated light-curve file could be read: give files made by "
                          "mascara-actors calibrate (calibrated_*.hdf5); "
                          + _reasons(skipped))
    counts = Counter(r[1] for r in readable)
    camera = max(counts, key=lambda c: (counts[c], -[r[1] for r in readable].index(c)))
    kept = [r for r in readable if r[1] == camera]
    skipped += [(r[0], f"camera {r[1]}, not {camera}: search each camera on its own")
                for r in readable if r[1] != camera]
    stars = np.unique(np.concatenate([r[2] for r in kept]))
    lstseq = (min(r[3][0] for r in kept), max(r[3][1] for r in kept))
    days = tuple((r[3][1] - r[3][0]) / SLOTS_PER_SIDEREAL_DAY * SIDEREAL_DAY for r in kept)
    return SeasonInputs(camera, tuple(r[0] for r in kept), tuple(skipped), stars, lstseq, days,
                        tuple(r[3] for r in kept))


def _span_nights(first: int, last: int) -> int:
    """Nights from exposure ``first`` to exposure ``last`` (lstseq) of one stretch of data:
    its whole days and the night it starts on."""
    return int((last - first) // SLOTS_PER_SIDEREAL_DAY) + 1


_REASONS_SHOWN = 3
"""Files whose reason a "no file could be read" error gives (then how many more)."""


def _reasons(skipped: Sequence[tuple[Path, str]]) -> str:
    """The first files' reasons, then a count of the others: enough to tell a wrong
    directory from a damaged file, without a page per file for a glob of hundreds."""
    if not skipped:
        return "no file given"
    # the name only: most reasons give the whole path already
    shown = "; ".join(f"{path.name}: {why}" for path, why in skipped[:_REASONS_SHOWN])
    more = len(skipped) - _REASONS_SHOWN
    return shown + (f"; and {more} more files that cannot be read" if more > 0 else "")


@dataclass(frozen=True)
class RawPoints:
    """A star's good binned points from every file, time-ordered."""

    jd: np.ndarray
    lst: np.ndarray
    mag: np.ndarray
    emag: np.ndarray

    def __len__(self) -> int:
        return len(self.jd)

    @property
    def nights(self) -> int:
        """Nights with points (JD changes date at noon UTC)."""
        return len(np.unique(np.floor(self.jd)))


def read_points(files: Sequence[CalibratedFile], hip: int, min_nobs: int) -> RawPoints:
    """The star's points with no calibration flag, at least ``min_nobs`` exposures, a finite
    JD, LST and magnitude and a positive error; a set read twice (overlapping files) counts
    once."""
    parts = []
    for f in files:
        try:
            parts.append(f.lightcurve(hip))
        except StorageError:
            continue
    rec = np.concatenate(parts) if parts else np.zeros(0, BIN_DTYPE)
    good = ((rec["cflag"] == 0) & (rec["nobs"] >= min_nobs) & np.isfinite(rec["mag"])
            & np.isfinite(rec["emag"]) & (rec["emag"] > 0) & np.isfinite(rec["jd"])
            & np.isfinite(rec["lst"]))
    rec = rec[good]
    _, first = np.unique(rec["setidx"], return_index=True)
    rec = rec[first]  # sorted by set index, hence by time
    return RawPoints(rec["jd"].astype(float), rec["lst"].astype(float),
                     rec["mag"].astype(float), rec["emag"].astype(float))
