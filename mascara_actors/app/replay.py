"""Replaying a recorded night: plan it (masters, resume point, provenance), feed its frames,
record it complete. The command line's ``--replay``, its console and the archive's tasks
all reduce a recorded night through here, so their outputs are the same bytes.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hw.recorded import BorrowedDarks, RecordedNight, paced_frames
from mascara_actors.actors.pipeline import NightPlan, NightReport
from mascara_actors.actors.resume import resume_point
from mascara_actors.calibration import make_masters
from mascara_actors.config import CameraConfig, Config
from mascara_actors.errors import ConfigError, FrameError
from mascara_actors.frames import FrameReady
from mascara_actors.messages import WorkerSpec
from mascara_actors.night_window import frames_window
from mascara_actors.rawframe import RawHeader, read_raw_header
from mascara_actors.storage import NightId, NightLock, binned_dir
from mascara_actors.storage.provenance import (
    Provenance,
    complete_provenance,
    record_masters,
    start_provenance,
)

__all__ = [
    "ReplayJob",
    "plan_replay",
    "record_complete",
    "replay_frames",
]


@dataclass(frozen=True, slots=True)
class ReplayJob:
    """A recorded night, ready to replay (what :func:`plan_replay` found)."""

    plan: NightPlan
    frames: tuple[tuple[int, Path], ...]
    """(lstseq, path) of the science frames still to reduce, in lstseq order."""
    rebin: tuple[tuple[int, Path], ...]
    """(lstseq, path) of the frames whose fast photometry is on disk but whose set's binned
    image is not: binned again, not reduced (and not paced)."""
    total: int
    """Science frames in the recorded night."""
    skipped: int
    """Science frames of sets already on disk from an earlier run (not reduced again)."""
    notes: tuple[str, ...]
    """Remarks for the user (which master dark is used, ...)."""
    provenance: Provenance
    """The night's record, started (:func:`record_complete` completes it)."""

    def reduced(self, report: NightReport) -> bool:
        """The replay ran to the night's end and frames of the night were reduced, by this
        run or by earlier ones (a night whose sets were all on disk is reduced)."""
        done = report.state.frames_reduced + report.skipped_frames + self.skipped
        return not report.stopped_early and done > 0


def _first_header(night: RecordedNight) -> tuple[Path, RawHeader]:
    """The header of the first frame whose header reads (a bad frame fails alone, later)."""
    problems = []
    for frame in night.frames():
        try:
            return frame.path, read_raw_header(frame.path)
        except FrameError as exc:
            problems.append(str(exc))
    raise ConfigError(
        f"recorded night {night.directory}: no frame can be read ({len(problems)} tried; "
        f"first: {problems[0] if problems else 'none'})"
    )


def _camera(config: Config, night: RecordedNight, camera_id: str | None) -> CameraConfig:
    first = night.frames()[0]
    path, header = _first_header(night)
    if camera_id is None:
        sites = [s for s in config.sites.values() if s.name == header.site]
        if not sites:
            raise ConfigError(
                f"{path}: SITE-OBS {header.site!r} is not a configured site "
                f"({sorted(config.sites)}); pass --camera"
            )
        camera_id = sites[0].code + header.camera
    camera = config.camera(camera_id)
    if camera.letter != first.camera:
        raise ConfigError(
            f"--camera {camera_id} but the frames in {night.directory} are of camera "
            f"{first.camera}: pass the id of camera {first.camera} or leave --camera out"
        )
    return camera


def plan_replay(
    directory: str | Path | RecordedNight,
    out: str | Path,
    *,
    config: Config,
    camera_id: str | None = None,
    realtime: bool = False,
    command: Sequence[str] | None = None,
    borrowed_darks: BorrowedDarks | None = None,
) -> ReplayJob:
    """Scan a recorded night, make its masters and plan its replay into ``out``.

    Frames are taken in lstseq order whatever the order of the files; frames of sets that
    an earlier run already wrote are left out (the night resumes).

    Parameters
    ----------
    directory
        The recorded night (raw FITS files named by lstseq), or its frames already found.
    out
        Output directory; the night goes to ``out/{night}{SITE}{CAM}/``.
    config
        The configuration.
    camera_id
        Camera id such as ``"LPC"``; default from the frames' headers.
    realtime
        The replay will be paced at the real cadence (the camera edge then never waits).
    command
        The command, for the night's provenance (default ``sys.argv``).
    borrowed_darks
        Darks to make the master dark from when the night has fewer than ``min_dark`` of
        its own (the archive lends those of the camera's nearest night).

    Raises
    ------
    ConfigError
        Directory missing, empty, mixing cameras, without science frames, or a camera that
        does not match the frames.
    StorageError
        The night's directory holds a reduction of another software version or
        configuration (:func:`~mascara_actors.storage.provenance.start_provenance`).
    """
    night = directory if isinstance(directory, RecordedNight) else RecordedNight(directory)
    directory = night.directory
    camera = _camera(config, night, camera_id)
    science = [(f.lstseq, f.path) for f in night.frames("science")]
    if not science:
        raise ConfigError(
            f"recorded night {directory} holds no science frames (only "
            f"{len(night)} calibration frames): nothing to reduce"
        )
    window = frames_window(camera.site, config.reduction.night,
                           [lstseq for lstseq, _ in science])
    nid = NightId(window.night.strftime("%Y%m%d"), camera.site.code, camera.letter)
    out = Path(out)
    night_dir = nid.night_dir(out)
    # Refuse a second replay of the same night before touching its masters or dark table.
    calibration, calibration_note = _calibration_frames(night, first_science=science[0][0])
    borrowed_note = None
    if borrowed_darks is not None and len(calibration["dark"]) < (
        config.reduction.calibration.min_dark
    ):
        borrowed_note = (
            f"{len(calibration['dark'])} darks in this night: the master dark is made from "
            f"the {len(borrowed_darks.paths)} darks of night {borrowed_darks.night}, the "
            "camera's nearest night with darks"
        )
        calibration_note = None  # the frames it spoke of are not the ones used
        calibration["dark"] = list(borrowed_darks.paths)
    with NightLock(night_dir):
        provenance = start_provenance(
            night_dir,
            config_dir=config.directory,
            command=sys.argv if command is None else command,
        )
        masters = make_masters(
            bias=calibration["bias"],
            dark=calibration["dark"],
            flat=calibration["flat"],
            camera=camera,
            calibration=config.reduction.calibration,
            binned_dir=binned_dir(night_dir),
            state_dir=out / "state",
        )
        provenance = record_masters(night_dir, provenance, {
            kind: Path(path).name
            for kind, path in (("dark", masters.dark), ("flat", masters.flat),
                               ("bias", masters.bias))
            if path is not None
        })
    warnings = (*([borrowed_note] if borrowed_note else []), *masters.notes)
    notes = [*([calibration_note] if calibration_note else []), *warnings]
    resume = resume_point(night_dir)
    todo = tuple(f for f in science if not resume.skips(f[0]) and not resume.rebins(f[0]))
    rebin = tuple(f for f in science if resume.rebins(f[0]))
    notes.extend(resume.notes)
    if rebin:
        notes.append(
            f"resuming: {len(resume.rebin_sets)} sets have their fast photometry on disk but "
            f"not their binned image: their {len(rebin)} frames are binned again"
        )
    if len(todo) + len(rebin) < len(science):
        notes.append(
            f"resuming: {len(science) - len(todo) - len(rebin)} frames of "
            f"{len(resume.done_sets)} sets are "
            f"already on disk in {night_dir}"
        )
    plan = NightPlan(
        config=config,
        camera=camera,
        night=nid,
        out_dir=out,
        worker=WorkerSpec(camera.id, str(config.directory), masters.dark, masters.flat),
        frames_expected=len(todo),
        live=realtime,
        window=(window.start_lstseq, window.stop_lstseq),
        calibration_notes=warnings,
    )
    return ReplayJob(
        plan=plan,
        frames=todo,
        rebin=rebin,
        total=len(science),
        skipped=len(science) - len(todo) - len(rebin),
        notes=tuple(notes),
        provenance=provenance,
    )


def _calibration_frames(
    night: RecordedNight, *, first_science: int
) -> tuple[dict[str, list[Path]], str | None]:
    """The calibration frames the night's masters are made from, by kind, and a note.

    A station makes its masters from the calibration taken before its science (dusk) and
    keeps them all night; the later ones (a dark sequence, the dawn calibration) are for
    the next night's dark table. So a replay of a station's raw archive uses the frames
    before ``first_science`` (an lstseq) and reduces the frames as the station did, byte for
    byte. A recording with no calibration before its science uses all of its frames.
    """
    frames = [f for f in night.frames() if f.kind in ("bias", "dark", "flat")]
    before = [f for f in frames if f.lstseq < first_science]
    chosen = before or frames
    note = None
    if before and len(before) < len(frames):
        note = (
            f"masters from the {len(before)} calibration frames taken before the science, as "
            f"the station did; the {len(frames) - len(before)} taken later (a dark sequence, "
            "the dawn calibration) are left out"
        )
    return {k: [f.path for f in chosen if f.kind == k] for k in ("bias", "dark", "flat")}, note


async def replay_frames(
    job: ReplayJob, *, realtime: bool, speed: float
) -> AsyncIterator[FrameReady]:
    """The frames to bin again at once, then the frames to reduce (paced when asked)."""
    for source in (paced_frames(job.rebin), paced_frames(job.frames, realtime=realtime,
                                                        speed=speed)):
        async for frame in source:
            yield frame


def record_complete(job: ReplayJob) -> Provenance:
    """Record the night complete in its provenance, with its products' checksums (call it
    once the night has no product missing)."""
    return complete_provenance(job.plan.night_dir, job.provenance, raw_frames=job.total)
