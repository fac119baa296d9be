"""Finding the camera-nights of a raw archive: every frame under a root, grouped by camera and
night, whatever the directories.

A raw frame's name gives its lstseq, camera letter and kind (``00123456C.fits``,
``00123456Cdark.fits.fz``); its header gives the site (``SITE-OBS``), so the camera id
(``LPC``). Frames of one camera letter in one directory are split into runs where they are
more than :data:`NIGHT_GAP_SLOTS` apart (a day lies between two nights); one header per run
names its site, and the run's night is the one
:func:`~mascara_actors.night_window.frames_window` gives, as for ``--replay`` (once per site
and local day, in a pool of processes when there are many). Runs of the same camera and
night in other directories join.

Reported, never fatal: FITS files whose names are not raw-frame names (foreign files), runs
whose frames cannot be read at all, sites that are not configured. Frames that are corrupt
or truncated further in a run are found by the reduction, which goes on without them. The
output directory is not searched when it lies under the root: its products are not raw
frames, and a re-reduction must not read what it writes. Nor are the ``binned/`` directories
of camera-night directories (a station's output holds its raw frames beside its products):
one line says how many were passed over.

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
from mascara_actors.config import CameraConfig, Config, NightConfig, SiteConfig
from mascara_actors.errors import ConfigError, FrameError, StorageError
from mascara_actors.night_window import frames_window
from mascara_actors.rawframe import RawHeader, parse_raw_filename, read_raw_header
from mascara_actors.sidereal import lstseq2date
from mascara_actors.storage import NightId, binned_dir

__all__ = ["NIGHT_GAP_SLOTS", "ArchiveScan", "CameraNight", "FrameRun", "scan_archive"]

log = logging.getLogger(__name__)

NIGHT_GAP_SLOTS = 1500
"""Frames of a camera further apart than this many slots (2.7 h) are of different nights."""

_FITS_SUFFIXES = (".fits", ".fits.gz", ".fits.fz", ".fit", ".fts")


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
                        and self.first <= parsed[0] <= self.last and not entry.is_dir()):
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


@dataclass(frozen=True, slots=True)
class _Run:
    """What the scan keeps of a run of frames once its directory has been read."""

    frames: FrameRun
    camera: CameraConfig
    count: int
    """Raw frames in the run."""
    science: int
    middle: int
    """The middle lstseq of its science frames (of all its frames when it has none)."""
    first_science: int | None
    darks: tuple[tuple[int, Path], ...]
    """(lstseq, path) of its dark frames."""


def scan_archive(
    root: str | os.PathLike[str],
    config: Config,
    *,
    nights: str | None = None,
    cameras: Iterable[str] | None = None,
    exclude: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ArchiveScan:
    """Every camera-night under ``root`` (any depth), those of ``nights`` (a pattern on
    ``YYYYMMDD`` such as ``202603*``) and ``cameras`` (ids such as ``LPC``) only; the
    directory ``exclude`` (the output directory) is not searched, and may not be ``root``
    itself. ``progress`` is told how far the scan is, in a few words, as it goes (an archive
    of years takes minutes).

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
    if exclude is not None and _identity(Path(exclude)) == _identity(root):
        raise ConfigError(f"--out {exclude} is the archive itself: give another directory "
                          "(the products would lie among the raw frames)")
    wanted = {c.upper() for c in cameras} if cameras is not None else None
    problems: list[str] = []
    say = progress if progress is not None else _quiet
    runs, nfiles = _runs(root, config, problems,
                         Path(exclude) if exclude is not None else None, say)
    # A night's window takes 0.2 s to compute: once per site and local day (noon to noon),
    # which every camera's runs of that night share, from the first run's middle frame.
    site_days: dict[tuple[str, int], tuple[SiteConfig, int]] = {}
    run_days = []
    for run in runs:
        site = run.camera.site
        day = int(float(lstseq2date(run.middle, format="jd")) + site.longitude_deg / 360.0)
        site_days.setdefault((site.name, day), (site, run.middle))
        run_days.append((site.name, day))
    nights_of = _date_nights(site_days, config.reduction.night,
                             lambda i: say(f"{nfiles:,} raw frames: dating the nights, "
                                           f"{i:,} of {len(site_days):,} site-days"))
    by_night: dict[tuple[str, str], list[_Run]] = defaultdict(list)
    for run, key in zip(runs, run_days, strict=True):
        by_night[(run.camera.id, nights_of[key])].append(run)
    found = []
    for (camera_id, night), night_runs in sorted(by_night.items(),
                                                 key=lambda kv: kv[0][::-1]):
        science = sum(r.science for r in night_runs)
        if not science:
            problems.append(
                f"{camera_id} night {night}: {sum(r.count for r in night_runs)} calibration "
                f"frames and no science (in {night_runs[0].frames.directory}): nothing to "
                "reduce; its darks can serve other nights"
            )
        first = min((r.first_science for r in night_runs if r.first_science is not None),
                    default=None)
        darks = [d for r in night_runs for d in r.darks]
        before = sorted(p for lstseq, p in darks if first is not None and lstseq < first)
        found.append(CameraNight(
            camera_id=camera_id,
            night=night,
            runs=tuple(sorted((r.frames for r in night_runs),
                              key=lambda f: (str(f.directory), f.first))),
            science=science,
            darks=tuple(before or sorted(p for _, p in darks)),
        ))
    found = _lend_darks(found, config.reduction.calibration.min_dark)
    chosen = tuple(
        n for n in found
        if n.science
        and (wanted is None or n.camera_id in wanted)
        and (nights is None or fnmatch.fnmatchcase(n.night, nights))
    )
    return ArchiveScan(nights=chosen, problems=tuple(problems), files=nfiles,
                       available=tuple((n.camera_id, n.night) for n in found if n.science))


def _quiet(_: str) -> None:
    return None


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
          say: Callable[[str], None]) -> tuple[list[_Run], int]:
    """Raw frames by directory and camera letter, split at day-long gaps, each run with its
    camera (runs whose camera is unknown are reported and left out); ``exclude`` and what
    lies under it are not searched."""
    runs: list[_Run] = []
    nfiles = 0
    skip = _identity(exclude) if exclude is not None else None
    products: list[Path] = []
    for searched, (dirpath, dirnames, filenames) in enumerate(os.walk(root), 1):
        dirnames.sort()
        products_here = binned_dir(Path(dirpath))
        if products_here.name in dirnames and _is_night_dir(Path(dirpath)):
            dirnames.remove(products_here.name)
            products.append(products_here)
        if skip is not None:
            for name in [d for d in dirnames if _identity(Path(dirpath) / d) == skip]:
                dirnames.remove(name)
                problems.append(f"{Path(dirpath) / name}: the output directory (--out), not "
                                "searched for raw frames")
        by_letter: dict[str, list[tuple[int, str, Path]]] = defaultdict(list)
        for name in sorted(filenames):
            parsed = parse_raw_filename(name)
            if parsed is None:
                if name.lower().endswith(_FITS_SUFFIXES):
                    problems.append(
                        f"{Path(dirpath) / name}: a FITS file whose name is not a raw frame's "
                        "({lstseq:08d}{CAM}[dark|bias|flat].fits[.gz|.fz])"
                    )
                continue
            lstseq, letter, kind = parsed
            by_letter[letter].append((lstseq, kind, Path(dirpath) / name))
            nfiles += 1
        for letter, frames in sorted(by_letter.items()):
            frames.sort()
            start = 0
            for i in range(1, len(frames) + 1):
                if i == len(frames) or frames[i][0] - frames[i - 1][0] > NIGHT_GAP_SLOTS:
                    run = _run(Path(dirpath), letter, frames[start:i], config, problems)
                    if run is not None:
                        runs.append(run)
                    start = i
        say(f"{nfiles:,} raw frames in {searched:,} "
            f"director{'y' if searched == 1 else 'ies'} searched")
    if products:
        more = f" and {len(products) - 1} more like it" if len(products) > 1 else ""
        problems.append(f"{products[0]}{more}: the binned images and masters of a reduced "
                        "night, not searched for raw frames")
    return runs, nfiles


def _is_night_dir(path: Path) -> bool:
    """Whether ``path`` is named as a camera-night directory (``20260320LPC``)."""
    try:
        NightId.from_dir(path)
    except StorageError:
        return False
    return True


def _run(directory: Path, letter: str, frames: list[tuple[int, str, Path]], config: Config,
         problems: list[str]) -> _Run | None:
    """What the scan keeps of the run ``frames`` (lstseq, kind, path; sorted), or None
    when its camera is unknown (reported)."""
    camera = _camera(directory, letter, frames, config, problems)
    if camera is None:
        return None
    science = [lstseq for lstseq, kind, _ in frames if kind == "science"]
    lstseqs = science or [lstseq for lstseq, _, _ in frames]
    return _Run(
        frames=FrameRun(directory, letter, frames[0][0], frames[-1][0]),
        camera=camera,
        count=len(frames),
        science=len(science),
        middle=lstseqs[len(lstseqs) // 2],
        first_science=science[0] if science else None,
        darks=tuple((lstseq, path) for lstseq, kind, path in frames if kind == "dark"),
    )


def _camera(directory: Path, letter: str, frames: list[tuple[int, str, Path]],
            config: Config, problems: list[str]) -> CameraConfig | None:
    """The camera of a run of ``frames``, from the first header that reads, or None
    (reported)."""
    header: RawHeader | None = None
    errors: list[str] = []
    for _, _, path in frames:
        try:
            header = read_raw_header(path)
            break
        except FrameError as exc:
            errors.append(str(exc))
            if len(errors) >= 5:
                break
    if header is None:
        problems.append(
            f"{directory}: {_count(frames)} of camera {letter}: none of the "
            f"first {len(errors)} can be read (first: {errors[0]})"
        )
        return None
    sites = [s for s in config.sites.values() if s.name == header.site]
    if not sites:
        problems.append(
            f"{directory}: {_count(frames)} of camera {letter}: site "
            f"{header.site!r} is not in the configuration ({sorted(config.sites)})"
        )
        return None
    try:
        return config.camera(sites[0].code + letter)
    except ConfigError as exc:
        problems.append(f"{directory}: {_count(frames)}: {exc}")
        return None


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a directory, None when there is none: the same directory
    whatever the path to it (symbolic links, ``..``)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _count(frames: Sequence[object]) -> str:
    return f"{len(frames)} frame{'s' if len(frames) != 1 else ''}"


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
