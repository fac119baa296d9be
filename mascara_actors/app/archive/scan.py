"""Finding the camera-nights of a raw archive: every frame under a root, grouped by camera and
night, whatever the directories.

:func:`~mascara_actors.app.archive.listing.walk_archive` gives what each directory holds:
runs of raw frames of one camera letter, each with the site its header names, so its camera
id (``LPC``). A run's night is that of its site and local day (noon to noon), which
:func:`~mascara_actors.night_window.frames_window` gives from the site-day's science frames,
as for ``--replay`` (once per site-day, in a pool of processes when there are many).
Calibration frames never date a site-day: darks taken in the morning, the Sun up, are of the
night they end, though a night window from them alone is the next one. Runs of the same
camera and night in other directories join; a frame found in two places (a backup copy) is
counted once, as the reduction takes it once. With a
:class:`~mascara_actors.app.archive.scan_memory.ScanMemory`, the directories unchanged since
the last scan and the site-days it dated are not read or dated again.

Reported, never fatal: what the walk leaves out (foreign files, unreadable runs, the output
directory, a station's products) and runs whose site is not configured. Frames that are
corrupt or truncated further in a run are found by the reduction, which goes on without
them.

Nothing here holds a list of every frame: an archive of tens of thousands of camera-nights
has a hundred million of them (a third of a GB of memory per million paths). A night names
where its frames lie (:class:`FrameRun`: a directory, a camera letter, an lstseq range) and
the worker that reduces it lists them (:meth:`CameraNight.frames`); only the darks are
named one by one.
"""

from __future__ import annotations

import fnmatch
import logging
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from hw.recorded import BorrowedDarks
from mascara_actors.app.archive.listing import RunFacts, distinct, walk_archive
from mascara_actors.app.archive.scan_memory import ScanMemory, directory_identity
from mascara_actors.app.archive.words import counted
from mascara_actors.config import CameraConfig, Config, NightConfig, SiteConfig
from mascara_actors.errors import ConfigError
from mascara_actors.night_window import frames_window
from mascara_actors.rawframe import parse_raw_filename
from mascara_actors.sidereal import REFERENCE_SITE, lstseq2date

__all__ = ["ArchiveScan", "CameraNight", "FrameRun", "scan_archive"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrameRun:
    """The raw frames of one camera letter in one directory within an lstseq range."""

    directory: Path
    letter: str
    first: int
    """lstseq of the run's first frame."""
    last: int
    """lstseq of its last frame."""

    def paths(self) -> list[Path]:
        """The run's raw frames as the directory holds them now, sorted."""
        out = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                parsed = parse_raw_filename(entry.name)
                if (parsed is not None and parsed[1] == self.letter
                        and self.first <= parsed[0] <= self.last and entry.is_file()):
                    out.append(self.directory / entry.name)
        return sorted(out)


@dataclass(frozen=True, slots=True)
class CameraNight:
    """One camera's night in the archive: where its raw frames lie."""

    camera_id: str
    """Site code and letter, e.g. ``LPC``."""
    night: str
    """``YYYYMMDD``, the date the night began (as the output directory names it)."""
    runs: tuple[FrameRun, ...]
    """Where its raw frames (science and calibration) lie: :meth:`frames` lists them."""
    science: int
    """Science frames among them."""
    darks: tuple[Path, ...]
    """Dark frames among them taken before the science (what its master dark is made of),
    else all of its darks."""
    borrowed: BorrowedDarks | None = None
    """Another night's darks, when this night has too few (set by :func:`scan_archive`)."""

    @property
    def key(self) -> str:
        """``{night}{camera}``, e.g. ``20260320LPC``: the name of its output directory."""
        return f"{self.night}{self.camera_id}"

    def frames(self) -> tuple[Path, ...]:
        """Every raw frame of the night (science and calibration), sorted: listed from its
        directories (a few ms for a night of thousands)."""
        return tuple(sorted(p for run in self.runs for p in run.paths()))

    def absolute(self) -> CameraNight:
        """The night with every path absolute (a worker of a cluster runs in a directory of
        its own)."""
        borrowed = self.borrowed
        if borrowed is not None:
            borrowed = replace(borrowed, paths=tuple(p.absolute() for p in borrowed.paths))
        return replace(
            self,
            runs=tuple(replace(run, directory=run.directory.absolute()) for run in self.runs),
            darks=tuple(p.absolute() for p in self.darks),
            borrowed=borrowed,
        )


@dataclass(frozen=True, slots=True)
class ArchiveScan:
    """What :func:`scan_archive` found."""

    nights: tuple[CameraNight, ...]
    """Camera-nights with science frames, by night then camera."""
    problems: tuple[str, ...]
    """Files, runs and directories left out, one line each, naming the file and why."""
    files: int
    """Raw frames found."""
    available: tuple[tuple[str, str], ...] = ()
    """(camera id, night) of every camera-night with science frames, before the
    ``nights`` and ``cameras`` filters: what there was to choose from."""
    directories: int = 0
    """Directories searched."""
    unchanged: int = 0
    """Directories among them unchanged since the last scan (not read again)."""


@dataclass(frozen=True, slots=True)
class _Run:
    """A run of frames with its camera, once its directory has been read."""

    frames: FrameRun
    camera: CameraConfig
    facts: RunFacts


def scan_archive(
    root: str | os.PathLike[str],
    config: Config,
    *,
    nights: str | None = None,
    cameras: Iterable[str] | None = None,
    exclude: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
    memory: ScanMemory | None = None,
) -> ArchiveScan:
    """Every camera-night under ``root`` (any depth), those of ``nights`` (a pattern on
    ``YYYYMMDD`` such as ``202603*``) and ``cameras`` (ids such as ``LPC``) only; the
    directory ``exclude`` (the output directory) is not searched, and may not be ``root``
    itself. ``progress`` is told how far the scan is, in a few words, as it goes (an archive
    of years takes minutes). ``memory`` (:class:`ScanMemory`) gives what the last scan
    saw, and is given what this one sees: it is not saved here.

    A night with fewer darks than ``min_dark`` borrows those of the camera's nearest night
    that has enough (the earlier one on a tie), as a station would use its dark table.

    Raises
    ------
    ConfigError
        If ``root`` is not a directory, or is ``exclude``.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"archive {root} is not a directory: pass the root of the raw frames")
    if exclude is not None and directory_identity(Path(exclude)) == directory_identity(root):
        raise ConfigError(f"--out {exclude} is the archive itself: give another directory "
                          "(the products would lie among the raw frames)")
    wanted = {c.upper() for c in cameras} if cameras is not None else None
    problems: list[str] = []
    say = progress if progress is not None else _quiet
    if memory is None:
        memory = ScanMemory(None, "", "")
    runs, nfiles, searched, unchanged = _runs(root, config, problems,
                                              Path(exclude) if exclude is not None else None,
                                              say, memory)
    site_days, run_days = _site_days(runs)
    nights_of = {key: night for key in site_days
                 if (night := memory.night(*key)) is not None}
    undated = {key: (site, _midnight(site, key[1]) if lstseq is None else lstseq)
               for key, (site, lstseq) in site_days.items() if key not in nights_of}
    nights_of |= _date_nights(undated, config.reduction.night,
                              lambda i: say(f"{nfiles:,} raw frames: dating the nights, "
                                            f"{i:,} of {len(undated):,} site-days"))
    for key, night in nights_of.items():
        memory.keep_night(*key, night)
    by_night: dict[tuple[str, str], list[_Run]] = defaultdict(list)
    for run, key in zip(runs, run_days, strict=True):
        by_night[(run.camera.id, nights_of[key])].append(run)
    found = [_camera_night(camera_id, night, night_runs, problems)
             for (camera_id, night), night_runs in sorted(by_night.items(),
                                                          key=lambda kv: kv[0][::-1])]
    found = _lend_darks(found, config.reduction.calibration.min_dark)
    chosen = tuple(
        n for n in found
        if n.science
        and (wanted is None or n.camera_id in wanted)
        and (nights is None or fnmatch.fnmatchcase(n.night, nights))
    )
    return ArchiveScan(nights=chosen, problems=tuple(problems), files=nfiles,
                       available=tuple((n.camera_id, n.night) for n in found if n.science),
                       directories=searched, unchanged=unchanged)


def _quiet(_: str) -> None:
    return None


SiteDay = tuple[str, int]
"""A site's name and a local day (noon to noon), as a Julian day number."""


def _site_days(runs: Sequence[_Run]) -> tuple[dict[SiteDay, tuple[SiteConfig, int | None]],
                                              list[SiteDay]]:
    """The site-days of ``runs``, each with the lstseq to date its night from, and the
    site-day of each run. A night's window takes 0.2 s to compute: once per site-day, which
    every camera's runs of that night share, from the middle science frame of the first run
    with science; None for a site-day without science (calibration taken in daylight may
    lie outside the night, and would date the next one)."""
    site_days: dict[SiteDay, tuple[SiteConfig, int | None]] = {}
    run_days = []
    for run in runs:
        site = run.camera.site
        middle = run.facts.middle
        jd = float(lstseq2date(run.facts.first if middle is None else middle, format="jd"))
        key = (site.name, int(jd + site.longitude_deg / 360.0))
        if key not in site_days or site_days[key][1] is None:
            site_days[key] = (site, middle)
        run_days.append(key)
    return site_days, run_days


def _midnight(site: SiteConfig, day: int) -> int:
    """The lstseq of local midnight of ``site``'s local ``day``: in its night, whatever the
    calibration frames of the day."""
    jd = day + 0.5 - site.longitude_deg / 360.0
    return int(REFERENCE_SITE.local_sidereal_time(jd).lstseq)


_DATING_IN_PARALLEL = 16
"""From this many site-days on, the nights are dated in a pool of processes, one per core
(years of archive hold thousands of site-days: minutes of one core)."""


def _date_nights(site_days: dict[tuple[str, int], tuple[SiteConfig, int]],
                 night: NightConfig, done: Callable[[int], None], *,
                 workers: int | None = None,
                 parallel_from: int = _DATING_IN_PARALLEL) -> dict[tuple[str, int], str]:
    """The night (``YYYYMMDD``) of each site-day, from (site, an lstseq of the day);
    ``done`` is told how many are dated so far."""
    keys = list(site_days)
    sites = [site_days[k][0] for k in keys]
    middles = [site_days[k][1] for k in keys]
    nights = [night] * len(keys)
    workers = (os.cpu_count() or 1) if workers is None else workers

    def collect(dated: Iterable[str]) -> dict[tuple[str, int], str]:
        nights_of = {}
        for i, (key, date) in enumerate(zip(keys, dated, strict=True)):
            nights_of[key] = date
            done(i + 1)
        return nights_of

    if len(keys) >= parallel_from and workers >= 2:
        try:
            # spawned: the workers start clean whatever threads this process runs
            with ProcessPoolExecutor(min(workers, len(keys)),
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                return collect(pool.map(_night_of, sites, nights, middles,
                                        chunksize=max(1, len(keys) // (8 * workers))))
        except (BrokenProcessPool, OSError) as exc:
            log.warning("dating the nights in %d processes failed (%s): dating them in this "
                        "one", workers, exc)
    return collect(map(_night_of, sites, nights, middles))


def _night_of(site: SiteConfig, night: NightConfig, lstseq: int) -> str:
    """``YYYYMMDD`` of the night slot ``lstseq`` belongs to at ``site``, as ``--replay``
    names it."""
    return frames_window(site, night, [lstseq]).night.strftime("%Y%m%d")


def _runs(root: Path, config: Config, problems: list[str], exclude: Path | None,
          say: Callable[[str], None], memory: ScanMemory) -> tuple[list[_Run], int, int, int]:
    """The runs of raw frames under ``root`` with their cameras (runs whose camera is unknown
    are reported and left out), the raw frames, the directories searched and those among
    them unchanged since the last scan (``say`` is told these counts as they grow);
    ``exclude`` and what lies under it are not searched."""
    runs: list[_Run] = []
    nfiles = searched = unchanged = 0
    skip = directory_identity(exclude) if exclude is not None else None
    for directory, facts, reused in walk_archive(root, memory, problems, exclude=skip):
        nfiles += facts.files
        searched += 1
        unchanged += reused
        say(f"{nfiles:,} raw frames in {counted(searched, 'directory', 'directories')} "
            "searched" + (f" ({unchanged:,} unchanged since the last scan)"
                          if unchanged else ""))
        for r in facts.runs:
            camera = _camera(directory, r, config, problems)
            if camera is not None:
                runs.append(_Run(FrameRun(directory, r.letter, r.first, r.last), camera, r))
    return runs, nfiles, searched, unchanged


def _camera_night(camera_id: str, night: str, runs: Sequence[_Run],
                  problems: list[str]) -> CameraNight:
    """The camera-night of ``runs``, each frame counted once (the reduction takes one frame
    per lstseq, a backup copy in another directory being the same frame)."""
    science = distinct(span for r in runs for span in r.facts.science_lstseqs)
    if not science:
        calibration = len({(lstseq, kind) for r in runs
                           for lstseq, kind, _ in r.facts.calibration})
        problems.append(
            f"{camera_id} night {night}: {calibration} calibration frames and no science (in "
            f"{runs[0].frames.directory}): nothing to reduce; its darks can serve other nights"
        )
    first = min((r.facts.first_science for r in runs if r.facts.first_science is not None),
                default=None)
    return CameraNight(
        camera_id=camera_id,
        night=night,
        runs=tuple(sorted((r.frames for r in runs), key=lambda f: (str(f.directory), f.first))),
        science=science,
        darks=_darks(runs, first),
    )


def _darks(runs: Sequence[_Run], first_science: int | None) -> tuple[Path, ...]:
    """The darks the night's master dark is made of, one per lstseq: the copy the reduction
    takes (first by file name, then by path). As the reduction decides: those taken before
    ``first_science`` when any calibration frame (of any kind) was, else all of them; so a
    night with its biases before the science and its darks after has none of its own."""
    darks = sorted((lstseq, name, r.frames.directory / name)
                   for r in runs for lstseq, name in r.facts.darks)
    one: dict[int, Path] = {}
    for lstseq, _, path in darks:
        one.setdefault(lstseq, path)
    if first_science is not None and any(lstseq < first_science for r in runs
                                         for lstseq, _, _ in r.facts.calibration):
        return tuple(sorted(p for lstseq, p in one.items() if lstseq < first_science))
    return tuple(sorted(one.values()))


def _camera(directory: Path, run: RunFacts, config: Config,
            problems: list[str]) -> CameraConfig | None:
    """The camera of ``run``, from its site, or None (unreadable runs are reported by the
    walk, unknown cameras here)."""
    if run.site is None:
        return None
    sites = [s for s in config.sites.values() if s.name == run.site]
    if not sites:
        problems.append(
            f"{directory}: {counted(run.count, 'frame')} of camera {run.letter}: site "
            f"{run.site!r} is not in the configuration ({sorted(config.sites)})"
        )
        return None
    try:
        return config.camera(sites[0].code + run.letter)
    except ConfigError as exc:
        problems.append(f"{directory}: {counted(run.count, 'frame')}: {exc}")
        return None


def _lend_darks(nights: Sequence[CameraNight], min_dark: int) -> list[CameraNight]:
    """Each night with too few darks borrows the camera's nearest night's (earlier first)."""
    out = []
    for n in nights:
        if len(n.darks) >= min_dark:
            out.append(n)
            continue
        donors = [d for d in nights if d.camera_id == n.camera_id and len(d.darks) >= min_dark]
        if not donors:
            out.append(n)
            continue
        day = _day(n.night)
        donor = min(donors, key=lambda d: (abs(_day(d.night) - day), d.night))
        out.append(replace(n, borrowed=BorrowedDarks(donor.night, donor.darks)))
    return out


def _day(night: str) -> int:
    return datetime.strptime(night, "%Y%m%d").toordinal()
