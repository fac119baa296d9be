"""The numbers of a night summary, collected from the event log and the nightly file.

:func:`collect_summary` reads ``{night_dir}/logs/events.jsonl`` and, when present,
``{night_dir}/lightcurves/fast_{night}{SITE}{CAM}.hdf5``, and the known transit candidates
file when one is given; any of them may be missing, empty or cut short, and the summary then
says so instead of failing.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mascara_actors import messages as ev
from mascara_actors.errors import StorageError
from mascara_actors.sidereal import SLOT_SIDEREAL_S, slot_length_solar_s
from mascara_actors.storage import NightFile, NightId, event_log_path
from mascara_actors.summary.events_log import EventLog, read_event_log
from mascara_actors.summary.known_candidates import (
    KnownCandidates,
    ObservedCandidate,
    observed_candidates,
    read_known,
)
from mascara_actors.summary.weather import WeatherProxy, weather_from_nightfile

__all__ = [
    "NightSummary",
    "ProblemGroup",
    "collect_summary",
    "event_log_path",
    "frame_stats",
    "problem_pattern",
]

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?([eE][-+]?\d+)?")


def problem_pattern(message: str) -> str:
    """``message`` with every number replaced by ``#``: messages of the same problem on
    other frames (lstseq, sizes, file names of numbers) have the same pattern."""
    return _NUMBER.sub("#", message)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProblemGroup:
    """Errors or warnings with the same source and message (numbers aside)."""

    level: str
    """``error`` (a frame failed) or ``warning``."""
    source: str
    """Actor or stage that reported it (``reducer`` for failed frames)."""
    pattern: str
    """The message with every number replaced by ``#`` (the grouping key)."""
    count: int
    first_time: float
    """Wall clock of the first occurrence, UNIX seconds."""
    first_lstseq: int | None
    first_message: str
    """The first message in full."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NightSummary:
    """Everything the report shows about one camera-night.

    Per-frame arrays (``frame_*``) have one entry per reduced frame, sorted by lstseq; the
    astrometry arrays one per astrometry event. Counts are of distinct lstseq, so a night
    resumed after a crash counts each frame once.
    """

    night_dir: Path
    night: str
    site: str
    camera: str
    generated: datetime
    """When the summary was made (UTC)."""
    frames_expected: int
    """Science frames the source announced; when unknown (live), the lstseq span seen."""
    frames_taken: int
    """Distinct frames that reached the reducer (reduced or failed)."""
    frames_reduced: int
    frames_failed: int
    frames_in_file: int
    """Rows of the nightly file's station table (0 without a nightly file)."""
    sets_saved: int
    stars_in_file: int
    problems: tuple[ProblemGroup, ...]
    """Grouped errors and warnings, errors first, then by count."""
    frame_lstseq: np.ndarray
    frame_nstars: np.ndarray
    frame_nflagged: np.ndarray
    frame_sky: np.ndarray
    """Median sky of the frame's stars, ADU per pixel."""
    frame_ccdtemp: np.ndarray
    """deg C."""
    frame_latency_s: np.ndarray
    """Frame reaching the pipeline to its records, seconds."""
    astro_lstseq: np.ndarray
    astro_dr: np.ndarray
    """RMS radial residual of the astrometry, pixels."""
    astro_nused: np.ndarray
    astro_aflag: np.ndarray
    wall_s: float
    """Wall time of the run(s), seconds (NaN when unknown)."""
    weather: WeatherProxy | None
    nightly_file: Path | None
    log_path: Path
    log_missing: bool
    log_lines: int
    log_bad_lines: int
    log_unknown_kinds: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    """NightStarted events (more than one when the night was resumed)."""
    finished: bool = False
    """True when the log holds a NightFinished event."""
    sets_without_image: tuple[tuple[int, str], ...] = ()
    """(setidx, why) of the sets with no binned image and no slow photometry."""
    missing: tuple[str, ...] = ()
    """Products the last finished run could not make (a re-run makes them)."""
    calibration: str = ""
    """The calibration of earlier nights the last run calibrated the sets with ("" none)."""
    dark: str | None = None
    """The master dark of the last run (a file name; "" none; None: its log does not say)."""
    flat: str | None = None
    """The master flat of the last run, as :attr:`dark`."""
    sets_calibrated: int = 0
    """Sets calibrated live (clouds solved, calibrated points written)."""
    candidates: KnownCandidates | None = None
    """The known transit candidates the night observed; None when no candidates file was
    given (the report has no such section)."""

    @property
    def tag(self) -> str:
        """``{night}{SITE}{CAM}``."""
        return f"{self.night}{self.site}{self.camera}"

    @property
    def rate_fps(self) -> float:
        """Frames handled per second of wall time (NaN when unknown)."""
        if not (self.wall_s > 0):
            return float("nan")
        return self.frames_taken / self.wall_s

    @property
    def realtime_factor(self) -> float:
        """Processing rate over the camera cadence (one frame per 6.4 sidereal seconds)."""
        return self.rate_fps * slot_length_solar_s(SLOT_SIDEREAL_S)

    @property
    def astro_dr_median(self) -> float:
        """Median astrometric residual of the night, pixels (NaN without astrometry)."""
        return float(np.median(self.astro_dr)) if len(self.astro_dr) else float("nan")

    @property
    def astro_dr_max(self) -> float:
        return float(np.max(self.astro_dr)) if len(self.astro_dr) else float("nan")

    @property
    def errors(self) -> int:
        return sum(p.count for p in self.problems if p.level == "error")

    @property
    def warnings(self) -> int:
        return sum(p.count for p in self.problems if p.level == "warning")


def _stat(values: np.ndarray, fn: str) -> float:
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan")
    return float(getattr(np, fn)(values))


def frame_stats(summary: NightSummary) -> dict[str, tuple[float, float, float]]:
    """(min, median, max) of the per-frame quantities, NaN when there are no frames."""
    out = {}
    for name in ("nstars", "nflagged", "sky", "ccdtemp", "latency_s"):
        values = np.asarray(getattr(summary, f"frame_{name}"), dtype=float)
        out[name] = (_stat(values, "min"), _stat(values, "median"), _stat(values, "max"))
    return out


def _group_problems(failed: list[ev.FrameFailed],
                    warnings: list[ev.WarningEvent]) -> tuple[ProblemGroup, ...]:
    first: dict[tuple[str, str, str], tuple[float, int | None, str]] = {}
    counts: Counter[tuple[str, str, str]] = Counter()
    items: list[tuple[str, str, str, float, int | None]] = [
        ("error", "reducer", f.reason, f.time, f.lstseq) for f in failed
    ] + [("warning", w.source, w.message, w.time, w.lstseq) for w in warnings]
    for level, source, message, t, lstseq in items:
        key = (level, source, problem_pattern(message))
        counts[key] += 1
        if key not in first or t < first[key][0]:
            first[key] = (t, lstseq, message)
    groups = [
        ProblemGroup(level=k[0], source=k[1], pattern=k[2], count=n, first_time=first[k][0],
                     first_lstseq=first[k][1], first_message=first[k][2])
        for k, n in counts.items()
    ]
    groups.sort(key=lambda g: (g.level != "error", -g.count, g.first_time))
    return tuple(groups)


def _wall_s(log_: EventLog) -> float:
    finished = log_.of(ev.NightFinished)
    started = log_.of(ev.NightStarted)
    if finished and len(finished) >= len(started):
        return float(sum(f.wall_s for f in finished))
    if log_.events and started:
        # a run cut short: time from its first start to its last event
        return float(log_.events[-1].time - started[0].time)
    return float("nan")


def _frames(reduced: list[ev.FrameReducedEvent]) -> dict[str, np.ndarray]:
    # the last report of a frame wins (a resumed night may reduce a frame again)
    latest = {e.lstseq: e for e in reduced}
    rows = [latest[k] for k in sorted(latest)]
    return {
        "lstseq": np.array([e.lstseq for e in rows], dtype=np.int64),
        "nstars": np.array([e.nstars for e in rows], dtype=np.int64),
        "nflagged": np.array([e.nflagged for e in rows], dtype=np.int64),
        "sky": np.array([e.sky for e in rows], dtype=float),
        "ccdtemp": np.array([e.ccdtemp for e in rows], dtype=float),
        "latency_s": np.array([e.latency_s for e in rows], dtype=float),
    }


def _identity(night_dir: Path, started: list[ev.NightStarted]) -> tuple[str, str, str]:
    try:
        nid = NightId.from_dir(night_dir)
        return nid.night, nid.site, nid.camera
    except StorageError:
        pass
    if started:
        cam = started[-1].camera
        return started[-1].night, cam[:-1], cam[-1:]
    return night_dir.name, "", ""


def collect_summary(night_dir: str | Path, *, weather: bool = True,
                    weather_stars: int = 400,
                    candidates: str | Path | None = None) -> NightSummary:
    """Collect the numbers of one camera-night.

    Parameters
    ----------
    night_dir : path-like
        The camera-night directory ``{YYYYMMDD}{SITE}{CAM}``.
    weather : bool
        Compute the cloud-fraction proxy from the nightly file (reads up to
        ``weather_stars`` light curves).
    weather_stars : int
        Stars read for the weather proxy.
    candidates : path-like, optional
        A transit search's ``candidates.csv``: its rows that passed the vetting and whose
        star is in the nightly file are listed with their transits that night. An unreadable
        file is said in ``candidates.error``.

    Returns
    -------
    NightSummary
        Never raises for a missing, empty or partial log or nightly file; what was missing
        shows in the summary (``log_missing``, ``nightly_file is None``, zero frames).
    """
    night_dir = Path(night_dir)
    known_path = Path(candidates) if candidates is not None else None
    known_rows, known_error = read_known(known_path) if known_path is not None else ([], "")
    observed: tuple[ObservedCandidate, ...] = ()
    log_ = read_event_log(event_log_path(night_dir))
    started = log_.of(ev.NightStarted)
    reduced = log_.of(ev.FrameReducedEvent)
    failed = log_.of(ev.FrameFailed)
    warns = log_.of(ev.WarningEvent)
    astro = log_.of(ev.AstrometryDone)
    night, site, camera = _identity(night_dir, started)

    frames = _frames(reduced)
    reduced_ids = set(frames["lstseq"].tolist())
    failed_ids = {f.lstseq for f in failed} - reduced_ids
    seen = reduced_ids | failed_ids
    expected = max((s.frames_expected for s in started), default=0)
    if expected <= 0 and seen:
        expected = max(seen) - min(seen) + 1

    nightly: Path | None = None
    frames_in_file = stars_in_file = 0
    proxy: WeatherProxy | None = None
    if site and camera:
        # named from the identity, not the directory, so a renamed copy still finds it
        fast_path = night_dir / "lightcurves" / f"fast_{night}{site}{camera}.hdf5"
        if fast_path.exists():
            try:
                with NightFile(fast_path) as nf:
                    frames_in_file = len(nf.station)
                    stars_in_file = len(nf.stars)
                    if weather:
                        proxy = weather_from_nightfile(nf, max_stars=weather_stars)
                    try:
                        observed = observed_candidates(nf, known_rows)
                    except (StorageError, KeyError, ValueError) as exc:
                        # the candidates' section is an extra: it must not cost the rest
                        known_error = (f"light curves of the known candidates not read from "
                                       f"{fast_path}: {exc}")
                        log.warning("summary of %s: %s", night_dir, known_error)
                nightly = fast_path
            except (StorageError, OSError, KeyError, ValueError) as exc:
                # a damaged file (torn write, foreign layout) must not stop the summary
                log.warning("summary of %s without its nightly file %s: %s", night_dir,
                            fast_path, exc)
                nightly, frames_in_file, stars_in_file, proxy = None, 0, 0, None
                observed = ()

    astro_sorted = sorted(astro, key=lambda a: a.lstseq)
    return NightSummary(
        night_dir=night_dir,
        night=night,
        site=site,
        camera=camera,
        generated=datetime.now(UTC),
        frames_expected=int(expected),
        frames_taken=len(seen),
        frames_reduced=len(reduced_ids),
        frames_failed=len(failed_ids),
        frames_in_file=frames_in_file,
        sets_saved=len({(s.kind_, s.setidx) for s in log_.of(ev.SetSaved)}),
        stars_in_file=stars_in_file,
        problems=_group_problems(failed, warns),
        frame_lstseq=frames["lstseq"],
        frame_nstars=frames["nstars"],
        frame_nflagged=frames["nflagged"],
        frame_sky=frames["sky"],
        frame_ccdtemp=frames["ccdtemp"],
        frame_latency_s=frames["latency_s"],
        astro_lstseq=np.array([a.lstseq for a in astro_sorted], dtype=np.int64),
        astro_dr=np.array([a.dr for a in astro_sorted], dtype=float),
        astro_nused=np.array([a.nused for a in astro_sorted], dtype=np.int64),
        astro_aflag=np.array([a.aflag for a in astro_sorted], dtype=np.int64),
        wall_s=_wall_s(log_),
        weather=proxy,
        nightly_file=nightly,
        log_path=log_.path,
        log_missing=log_.missing,
        log_lines=log_.lines,
        log_bad_lines=log_.bad_lines,
        log_unknown_kinds=log_.unknown_kinds,
        runs=len(started),
        calibration=started[-1].calibration if started else "",
        dark=started[-1].dark if started else None,
        flat=started[-1].flat if started else None,
        sets_calibrated=len({c.setidx for c in log_.of(ev.SetCalibrated)}),
        finished=bool(log_.of(ev.NightFinished)),
        sets_without_image=_sets_without_image(log_),
        missing=tuple(log_.of(ev.NightFinished)[-1].missing) if log_.of(ev.NightFinished)
        else (),
        candidates=None if known_path is None else KnownCandidates(
            path=known_path, error=known_error, observed=observed),
    )


def _sets_without_image(log_: EventLog) -> tuple[tuple[int, str], ...]:
    """The sets whose last binning made no image (too few frames) or failed, with why; a
    set binned by a later run (a resumed night) is not listed."""
    why: dict[int, str] = {}
    for e in log_.events:
        if isinstance(e, ev.SetBinned):
            if e.reason:
                why[e.setidx] = e.reason
            else:
                why.pop(e.setidx, None)
        elif isinstance(e, ev.ProductFailed) and e.setidx is not None:
            why[e.setidx] = f"{e.product} not written: {e.reason}"
    return tuple(sorted(why.items()))
