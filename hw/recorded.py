"""Recorded nights as frame sources: raw FITS files from a directory, in lstseq order.

A recorded night stands in for the camera when replaying (``--replay DIR``). It is not a
camera driver (nothing is armed or read out): this module gives two of the three frame
sources of :mod:`hw.source`, the third being the live camera (:func:`hw.live.live_frames`).

:class:`RecordedNight` scans a directory once. It needs only the files: names give lstseq,
camera and kind (:func:`~mascara_actors.rawframe.parse_raw_filename`), headers give the
rest. Plain, gzip and Rice-compressed frames may be mixed. It hands the frames out read
(:meth:`RecordedNight.replay`, raw frames of every kind), or as a
:class:`~hw.source.FrameSource` of its science frames (:meth:`RecordedNight.frame_source`),
each file read and checked before it is announced.

:func:`paced_frames` is the source ``--replay`` runs: frames by ``(lstseq, path)`` as the
replay planned them (sets already reduced left out), not read here (the reducer reads them,
and a bad file fails there, counted), as fast as they are taken or at the camera's cadence.

Bad input never stops a replay and never travels on as data:

- a directory that does not exist, holds no raw frames, or holds frames of more than one
  camera is refused at once (:class:`~mascara_actors.errors.ConfigError`, naming the
  directory, or the cameras and their counts);
- two files for one slot (``X.fits`` and ``X.fits.fz``, or a science frame and a dark with
  the same lstseq): the first in name order is used, the others are counted and logged;
- unreadable files (truncated, not FITS, missing keys) are logged, counted and skipped when
  their turn comes;
- a file whose header disagrees with its name (LSTSEQ, CAMERA or IMAGETYP) is logged,
  counted and skipped.

The counts are in :attr:`RecordedNight.stats`, a frozen :class:`ReplayStats`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from hw.source import FrameSource
from mascara_actors.errors import ConfigError, FrameError
from mascara_actors.frames import FrameReady
from mascara_actors.rawframe import (
    FRAME_KINDS,
    FrameNameMismatch,
    RawFrame,
    parse_raw_filename,
    read_raw,
)
from mascara_actors.sidereal import SLOT_SIDEREAL_S, slot_length_solar_s

__all__ = ["BorrowedDarks", "FrameFile", "RecordedNight", "ReplayStats", "paced_frames"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrameFile:
    """One raw frame file of a recorded night, as its name describes it."""

    path: Path
    lstseq: int
    camera: str
    """Camera letter, N/E/S/W/C."""
    kind: str
    """``science``, ``dark``, ``bias`` or ``flat``."""


@dataclass(frozen=True, slots=True)
class BorrowedDarks:
    """Darks of another night of the camera, for a night that took too few of its own."""

    night: str
    """The night they were taken (``YYYYMMDD``), for the notes."""
    paths: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class ReplayStats:
    """Counts of a recorded night's files, cheap to copy and safe to hand to another task."""

    frames: int = 0
    """Frames scheduled for replay (one per slot, after duplicates are set aside)."""
    yielded: int = 0
    """Frames handed out by :meth:`RecordedNight.replay` and
    :meth:`RecordedNight.frame_source` (summed over replays)."""
    skipped_unreadable: int = 0
    """Files that could not be read as raw frames (truncated, not FITS, bad header)."""
    skipped_duplicate: int = 0
    """Extra files for a slot that already has one (found when scanning)."""
    skipped_mismatch: int = 0
    """Files whose LSTSEQ, CAMERA or IMAGETYP disagree with the file name."""
    ignored_files: int = 0
    """Directory entries that are not raw frame names (truth.fits, logs, partial files)."""


class RecordedNight:
    """The raw frames of one camera's night, from a directory, in lstseq order.

    The directory is scanned once, here; files are read only when replayed.

    Parameters
    ----------
    directory
        A directory of raw frames (``{lstseq:08d}{CAM}[kind].fits[.gz|.fz]``); with
        ``files``, only a name for them (an archive's root).
    files
        The night's frame files, when they are not a directory of their own (an archive
        whose directories mix cameras and nights); the directory is then not scanned.

    Raises
    ------
    ConfigError
        If the directory does not exist, is not a directory, holds no raw frames, or holds
        frames of more than one camera.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, files: Sequence[Path] | None = None
    ) -> None:
        self.directory = Path(directory)
        if files is not None:
            self._setup(files, ignored=0)
            return
        if not self.directory.exists():
            raise ConfigError(
                f"recorded night {self.directory} does not exist: pass the directory of a "
                "recorded night's raw frames (record one with `mascara-actors simulate`)"
            )
        if not self.directory.is_dir():
            raise ConfigError(
                f"recorded night {self.directory} is not a directory: pass the directory "
                "that holds the raw frames, not a file"
            )
        with os.scandir(self.directory) as scan:
            entries = list(scan)
        paths = [Path(e.path) for e in entries if e.is_file()]
        self._setup(paths, ignored=len(entries) - len(paths))

    def _setup(self, paths: Sequence[Path], *, ignored: int) -> None:
        found: list[FrameFile] = []
        for path in paths:
            parsed = parse_raw_filename(path.name)
            if parsed is None:
                ignored += 1
                continue
            lstseq, camera, kind = parsed
            found.append(FrameFile(path, lstseq, camera, kind))
        if not found:
            raise ConfigError(
                f"recorded night {self.directory} holds no raw frames (names like "
                "00123456C.fits, 00123456Cdark.fits.fz): check the path"
            )
        cameras = Counter(f.camera for f in found)
        if len(cameras) > 1:
            listed = ", ".join(
                f"{cam} ({n} file{'s' if n > 1 else ''})" for cam, n in sorted(cameras.items())
            )
            raise ConfigError(
                f"recorded night {self.directory} holds frames of {len(cameras)} cameras: "
                f"{listed}; a recorded night is one camera's, move the others to their own "
                "directory"
            )
        found.sort(key=lambda f: (f.lstseq, f.path.name))
        frames: list[FrameFile] = []
        duplicates = 0
        for f in found:
            if frames and frames[-1].lstseq == f.lstseq:
                duplicates += 1
                log.warning(
                    "%s: slot %d already has %s; skipped as a duplicate",
                    f.path,
                    f.lstseq,
                    frames[-1].path.name,
                )
                continue
            frames.append(f)
        self.camera: str = found[0].camera
        """Camera letter of the night's frames."""
        self._frames = tuple(frames)
        self._counts = {
            "yielded": 0,
            "skipped_unreadable": 0,
            "skipped_duplicate": duplicates,
            "skipped_mismatch": 0,
            "ignored_files": ignored,
        }
        log.info(
            "recorded night %s: %d frames of camera %s, lstseq %d-%d (%d duplicates, "
            "%d other files)",
            self.directory,
            len(frames),
            self.camera,
            frames[0].lstseq,
            frames[-1].lstseq,
            duplicates,
            ignored,
        )

    def __len__(self) -> int:
        return len(self._frames)

    def __repr__(self) -> str:
        return f"RecordedNight({str(self.directory)!r}, camera={self.camera!r}, frames={len(self)})"

    @property
    def stats(self) -> ReplayStats:
        """A snapshot of the counts so far."""
        return ReplayStats(frames=len(self._frames), **self._counts)

    def frames(self, kind: str | None = None) -> tuple[FrameFile, ...]:
        """The frame files in lstseq order, one per slot; only ``kind`` when given.

        Parameters
        ----------
        kind
            ``science``, ``dark``, ``bias`` or ``flat``; None (default) for all.
        """
        if kind is None:
            return self._frames
        if kind not in FRAME_KINDS:
            raise ValueError(f"kind must be one of {FRAME_KINDS} or None, got {kind!r}")
        return tuple(f for f in self._frames if f.kind == kind)

    def replay(
        self, *, realtime: bool = False, speed: float = 1.0, kind: str | None = None
    ) -> AsyncIterator[RawFrame]:
        """Read the frames in lstseq order: ``async for frame in night.replay(): ...``.

        Files are read in a worker thread (``anyio.to_thread.run_sync``), so the event loop
        stays free. Unreadable and mismatched files are skipped and counted.

        Parameters
        ----------
        realtime
            Pace the frames like the camera: frame ``lstseq`` is handed out at the end of
            its slot, ``(lstseq - first + 1) x 6.38 s / speed`` after the first
            ``__anext__`` (6.4 sidereal seconds per slot, ``first`` the first frame's slot),
            with ``anyio.sleep_until`` so a mock clock drives it. Gaps in lstseq are waited
            out; a late read is handed out at once and the schedule is kept. When False
            (default), frames come as fast as they are read.
        speed
            Replay speed-up, > 0 (2.0 is twice real time); used when ``realtime``.
        kind
            Only frames of this kind; None (default) for all, calibration frames included.

        Raises
        ------
        ValueError
            If ``speed`` is not a positive finite number.
        """
        return _Replay(
            self, self.frames(kind), realtime=realtime, speed=_speed(speed), deliver=_as_read
        )

    def frame_source(self, *, realtime: bool = False, speed: float = 1.0) -> FrameSource:
        """The night's science frames as a :class:`~hw.source.FrameSource`.

        Each file is read and checked (in a worker thread) before its
        :class:`~mascara_actors.frames.FrameReady` is handed out, so an unreadable or
        mismatched file is skipped and counted here, as :meth:`replay` does; ``realtime``
        and ``speed`` pace the frames as for :meth:`replay`. ``aclose()`` ends the source
        (files are opened one read at a time: nothing else is held).

        Raises
        ------
        ValueError
            If ``speed`` is not a positive finite number.
        """
        return _Replay(
            self, self.frames("science"), realtime=realtime, speed=_speed(speed), deliver=_ready
        )

    def _count(self, name: str) -> None:
        self._counts[name] += 1


_T = TypeVar("_T")


def _speed(speed: float) -> float:
    if not (isinstance(speed, int | float) and math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number (2.0 = twice real time), got {speed!r}")
    return float(speed)


def _as_read(_file: FrameFile, frame: RawFrame) -> RawFrame:
    return frame


def _ready(file: FrameFile, _frame: RawFrame) -> FrameReady:
    return FrameReady(path=file.path, lstseq=file.lstseq, arrived=time.time())


class _Replay(Generic[_T]):
    """The async iterator behind :meth:`RecordedNight.replay` and
    :meth:`RecordedNight.frame_source` (no generator to finalise): each file is read, then
    handed out as ``deliver(file, frame)``."""

    def __init__(
        self,
        night: RecordedNight,
        files: tuple[FrameFile, ...],
        *,
        realtime: bool,
        speed: float,
        deliver: Callable[[FrameFile, RawFrame], _T],
    ) -> None:
        self._night = night
        self._files = files
        self._next = 0
        self._realtime = realtime
        self._period_s = slot_length_solar_s() / speed
        self._start: float | None = None
        self._deliver = deliver
        self._closed = False

    def __aiter__(self) -> _Replay[_T]:
        return self

    async def __anext__(self) -> _T:
        if self._start is None:
            self._start = anyio.current_time()
        while not self._closed and self._next < len(self._files):
            f = self._files[self._next]
            frame = await anyio.to_thread.run_sync(_read_checked, f)
            if isinstance(frame, str):
                self._next += 1
                self._night._count(frame)
                continue
            if self._realtime:
                slots = f.lstseq - self._files[0].lstseq + 1
                await anyio.sleep_until(self._start + slots * self._period_s)
            if self._closed:
                break
            # Advanced only now: a cancelled __anext__ leaves the frame for the next call.
            self._next += 1
            self._night._count("yielded")
            return self._deliver(f, frame)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """End the replay: every later ``__anext__`` ends the iteration (idempotent)."""
        self._closed = True
        await anyio.lowlevel.checkpoint()


def _read_checked(f: FrameFile) -> RawFrame | str:
    """Read one frame; on a problem, log it and return the name of the stats counter.

    The name/header agreement is :func:`~mascara_actors.rawframe.read_raw`'s own check
    (:func:`~mascara_actors.rawframe.check_name_agrees`), the one every reader of raw
    frames gets.
    """
    try:
        return read_raw(f.path)
    except FrameNameMismatch as exc:
        log.warning("skipped %s", exc)
        return "skipped_mismatch"
    except FrameError as exc:
        log.warning("skipped unreadable frame: %s", exc)
        return "skipped_unreadable"
    except Warning as exc:
        # Only reached when warnings are errors (python -W error, pytest) and astropy warns
        # about a file that passed the layout check (e.g. a non-standard header).
        log.warning("skipped unreadable frame: %s: %s", f.path, exc)
        return "skipped_unreadable"


async def paced_frames(
    frames: Sequence[tuple[int, Path]],
    *,
    realtime: bool = False,
    speed: float = 1.0,
) -> AsyncGenerator[FrameReady, None]:
    """FrameReady messages for recorded frames, in lstseq order, fast or at the real cadence.

    A :class:`~hw.source.FrameSource`: the files are not read here (``--replay`` plans them
    from a :class:`RecordedNight`, and the reducer reads them).

    Parameters
    ----------
    frames
        ``(lstseq, path)`` pairs, in any order.
    realtime
        Release frame ``lstseq`` when its slot ends, ``(lstseq - first + 1)`` slots of
        6.4 sidereal seconds (6.38 s) after the call, ``first`` being the lowest lstseq, as a
        camera would deliver it. The schedule is kept on the event loop's clock, so a virtual
        clock drives it in tests.
    speed
        With ``realtime``: this many times faster than real time (> 0).
    """
    if not speed > 0:
        raise ValueError(f"speed must be > 0 (2.0 = twice real time), got {speed!r}")
    ordered = sorted(((int(s), Path(p)) for s, p in frames), key=lambda f: f[0])
    if not ordered:
        return
    slot = slot_length_solar_s(SLOT_SIDEREAL_S) / speed
    start = anyio.current_time()
    first = ordered[0][0]
    for lstseq, path in ordered:
        if realtime:
            await anyio.sleep_until(start + (lstseq - first + 1) * slot)
        else:
            await anyio.lowlevel.checkpoint()  # a consumer can always be cancelled here
        yield FrameReady(path=path, lstseq=lstseq, arrived=time.time())
