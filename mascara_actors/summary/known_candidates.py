"""The known transit candidates a night observed, with their predicted transits that night.

The candidates are the rows of a transit search's ``candidates.csv`` (see
:mod:`mascara_actors.search.candidates`) that passed the vetting; the file is named by
``summary.candidates`` of ``reduction.toml``. A candidate is *observed* when its HIP has a
light curve in the night's fast nightly file. Its transits that night are the windows
``epoch + n * period +- duration / 2`` that overlap the night's observed span (first
exposure start to last exposure end), and its points in transit those whose mid-exposure
time falls in any window of its ephemeris.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from mascara_actors.search.candidates import Candidate, read_candidates
from mascara_actors.sidereal import jd_to_datetime
from mascara_actors.storage import NightFile

__all__ = ["KnownCandidates", "ObservedCandidate", "observed_candidates", "read_known",
           "utc_window"]

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True, kw_only=True)
class ObservedCandidate:
    """A known candidate whose star the night observed."""

    hip: int
    vmag: float
    period: float
    """Days."""
    depth: float
    """Relative flux (0.01 = 1 %)."""
    duration: float
    """Days."""
    transits: tuple[tuple[float, float], ...]
    """(start, end) JD (UTC) of each predicted transit overlapping the night's span."""
    points: int
    """The star's points in the nightly file."""
    points_in_transit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownCandidates:
    """The summary's section on the known candidates."""

    path: Path
    """The candidates file of the configuration."""
    error: str = ""
    """Why there is no list: ``candidates file X cannot be read: why``, or the candidates'
    light curves could not be read from the nightly file ("" when listed)."""
    observed: tuple[ObservedCandidate, ...] = ()
    """The candidates that passed the vetting and whose star is in the night, in file order
    (most significant first)."""


def read_known(path: Path) -> tuple[list[Candidate], str]:
    """The rows of ``path`` that passed the vetting, and "" or why the file cannot be read."""
    try:
        rows = read_candidates(path)
    except (OSError, ValueError, TypeError, KeyError, csv.Error) as exc:
        # a file the search is rewriting, or one from another version, must only cost the
        # summary this section: TypeError/KeyError are missing columns, ValueError bad numbers
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        error = f"candidates file {path} cannot be read: {why}"
        log.warning("night summary: %s", error)
        return [], error
    return [c for c in rows if c.passed], ""


def _span(nf: NightFile) -> tuple[float, float] | None:
    """First exposure start and last exposure end of the night, JD (UTC)."""
    station = nf.station
    names = station.dtype.names or ()
    if len(station) == 0 or "jd" not in names:
        return None
    start = station["jd"]
    end = start + (station["exptime"] / 86400.0 if "exptime" in names else 0.0)
    ok = np.isfinite(start) & np.isfinite(end)
    if not ok.any():
        return None
    return float(start[ok].min()), float(end[ok].max())


def _transits(c: Candidate, span: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    t0, t1 = span
    half = c.duration / 2.0
    # windows that overlap the span: epoch + n P + half >= t0 and epoch + n P - half <= t1
    n_first = math.ceil((t0 - half - c.epoch) / c.period)
    n_last = math.floor((t1 + half - c.epoch) / c.period)
    mids = c.epoch + np.arange(n_first, n_last + 1) * c.period
    return tuple((float(m - half), float(m + half)) for m in mids)


def _usable(c: Candidate) -> bool:
    return (math.isfinite(c.period) and c.period > 0 and math.isfinite(c.epoch)
            and math.isfinite(c.duration) and c.duration >= 0)


def observed_candidates(nf: NightFile, rows: list[Candidate]) -> tuple[ObservedCandidate, ...]:
    """The candidates of ``rows`` whose star has a light curve in ``nf``, in their order.

    Raises
    ------
    StorageError
        A light curve of the file cannot be read (as :meth:`NightFile.lightcurve`).
    """
    if not rows:
        return ()
    hips = np.array([c.hip for c in rows], dtype=np.int64)
    inside = np.isin(hips, nf.ids())
    span = _span(nf)
    # mid-exposure where the file has it; an older layout only has the exposure start
    time_field = "jdmid" if "jdmid" in nf.fields() else "jd"
    times: dict[int, np.ndarray] = {}
    out = []
    for c, seen in zip(rows, inside, strict=True):
        if not seen:
            continue
        if c.hip not in times:
            times[c.hip] = nf.lightcurve(c.hip, [time_field])[time_field]
        t = times[c.hip]
        if _usable(c):
            transits = _transits(c, span) if span is not None else ()
            # folded on the period, so one comparison covers every transit of the ephemeris
            offset = np.abs((t - c.epoch + c.period / 2.0) % c.period - c.period / 2.0)
            in_transit = int(np.count_nonzero(offset <= c.duration / 2.0))
        else:
            transits, in_transit = (), 0
        out.append(ObservedCandidate(hip=c.hip, vmag=c.vmag, period=c.period, depth=c.depth,
                                     duration=c.duration, transits=transits, points=len(t),
                                     points_in_transit=in_transit))
    return tuple(out)


def utc_window(start_jd: float, end_jd: float) -> str:
    """``YYYY-MM-DD HH:MM:SS - HH:MM:SS UTC`` (the end with its date when it differs), to the
    nearest second."""
    start, end = _utc(start_jd), _utc(end_jd)
    end_text = end.strftime("%H:%M:%S" if end.date() == start.date() else "%Y-%m-%d %H:%M:%S")
    return f"{start:%Y-%m-%d %H:%M:%S} - {end_text} UTC"


def _utc(jd: float) -> datetime:
    # a JD holds ~40 us: rounded, not truncated, the displayed second is stable
    stamp = jd_to_datetime(jd)
    return (stamp + timedelta(microseconds=500_000)).replace(microsecond=0)
