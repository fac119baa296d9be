"""The jobs the reducer and the binner send to their worker processes.

A job receives a small :class:`~.messages.WorkerSpec` and paths, never images; the worker
keeps its :class:`~mascara_actors.reduce.ReductionSession` (catalogue, masters, ephemeris)
between jobs. Results are small: records and rows, and the binned image goes straight to
disk. The reducer's worker co-adds each frame it reduces into its set's growing stack, so
that the set's binning (:func:`finish_set`, in the same worker) does not read and calibrate
the frames again; :func:`bin_set` reads them from disk when that stack cannot serve.
Only the workers import this module (the actors name the jobs by ``module:function``,
:data:`~.messages.SOLVE_JOB`...), so the supervisor does not load the science it never runs.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass

import numpy as np

from mascara_actors.astrometry import AstrometricSolution
from mascara_actors.binned_file import write_binned
from mascara_actors.binning import SetStack
from mascara_actors.calibration import CalibratedFrame
from mascara_actors.camera_model import CameraModel
from mascara_actors.errors import AstrometryFailed, FrameError, MascaraError
from mascara_actors.faults import phase
from mascara_actors.messages import BinnedOutput, StoredSolution, WorkerSpec
from mascara_actors.rawframe import RawHeader
from mascara_actors.records import slow_record_dtype
from mascara_actors.reduce import FrameResult, ReductionSession
from mascara_actors.sidereal import set_index
from mascara_actors.slow import measure_binned, slow_station_row

__all__ = [
    "bin_set",
    "finish_set",
    "reduce_job",
    "session_for",
    "solve_job",
    "warm_up",
]

log = logging.getLogger(__name__)

# --- in the worker -------------------------------------------------------------------------

_SESSION: tuple[WorkerSpec, ReductionSession] | None = None


def session_for(spec: WorkerSpec) -> ReductionSession:
    """The worker's session for ``spec``, built on first use and kept."""
    global _SESSION
    if (
        _SESSION is None
        or _SESSION[0].camera_id != spec.camera_id
        or _SESSION[0].config_dir != spec.config_dir
    ):
        _SESSION = (
            spec,
            ReductionSession.open(
                spec.camera_id, config_dir=spec.config_dir, dark=spec.dark, flat=spec.flat
            ),
        )
    elif _SESSION[0] != spec:
        _SESSION[1].use_masters(dark=spec.dark, flat=spec.flat)
        _SESSION = (spec, _SESSION[1])
    return _SESSION[1]


def warm_up(spec: WorkerSpec) -> None:
    """Build the worker's session now (catalogue, masters, ephemeris), so that its first
    frame or set does not wait for it."""
    session_for(spec)


def _rebuilt(
    session: ReductionSession, path: str, solution: AstrometricSolution | StoredSolution
) -> AstrometricSolution:
    if isinstance(solution, StoredSolution):
        return solution.rebuild(session.nominal_model(session.read(path)))
    return solution


def _set_solution(
    session: ReductionSession,
    frames: list[tuple[str, int]],
    solution: AstrometricSolution | StoredSolution,
) -> AstrometricSolution:
    for path, _ in frames:  # the first frame that reads sizes the nominal model
        try:
            return _rebuilt(session, path, solution)
        except FrameError as exc:
            log.warning("%s", exc)
    raise FrameError(f"none of the {len(frames)} frames of the set can be read")


def solve_job(
    spec: WorkerSpec, path: str, previous: AstrometricSolution | StoredSolution | None
) -> tuple[AstrometricSolution, str | None]:
    """Solve the astrometry on ``path`` (from ``previous`` when given, else from scratch);
    with it, what the operator should know when it was solved blind (else None)."""
    session = session_for(spec)
    if previous is not None:
        try:
            previous = _rebuilt(session, path, previous)
        except AstrometryFailed as exc:
            log.warning("%s", exc)
            previous = None
    return session.solve(path, previous), session.blind_note


def reduce_job(spec: WorkerSpec, path: str, solution: AstrometricSolution) -> FrameResult:
    """Fast photometry of the frame at ``path`` with the set's ``solution``; the calibrated
    frame is co-added into its set's growing stack (:func:`finish_set`)."""
    session = session_for(spec)

    def keep(calibrated: CalibratedFrame, header: RawHeader) -> None:
        _grow(session, path, calibrated, header, solution)

    return session.reduce_frame(path, solution, keep=keep)


@dataclass
class _GrowingSet:
    """A set co-added in the reducer's worker as its frames are reduced."""

    model: bytes
    """The pickled camera model the stack was made with."""
    frames: list[tuple[str, int]]
    """``(path, aflag)`` offered to the stack, in order (refused ones too)."""
    stack: SetStack


_GROWING: dict[int, _GrowingSet] = {}
"""Set index -> its growing stack: the set being reduced and the one before it, whose
binning job may still be on its way."""


def _new_stack(session: ReductionSession, setidx: int, model: CameraModel, threads: int
               ) -> SetStack:
    return SetStack(
        model,
        setidx,
        min_frames=session.config.reduction.binning.min_frames,
        camera=session.camera.letter,
        site=session.camera.site.name,
        threads=threads,
    )


def _grow(session: ReductionSession, path: str, calibrated: CalibratedFrame,
          header: RawHeader, solution: AstrometricSolution) -> None:
    setidx = int(set_index(header.lstseq))
    model = pickle.dumps(solution.model, pickle.HIGHEST_PROTOCOL)
    grow = _GROWING.get(setidx)
    if grow is None or grow.model != model:
        # A new set, or the set's solution changed: the set starts again here, and its
        # binning (whose frames then differ) reads the frames from disk.
        grow = _GrowingSet(model, [], _new_stack(session, setidx, solution.model, 1))
        _GROWING[setidx] = grow
    for old in [k for k in _GROWING if k < setidx - 1]:
        del _GROWING[old]
    grow.frames.append((path, solution.aflag))
    try:
        grow.stack.add(calibrated.image, header, aflag=solution.aflag,
                       finite=calibrated.finite)
    except MascaraError as exc:  # the binning job reads the set from disk and says why
        log.debug("set %d: no growing stack: %s", setidx, exc)
        del _GROWING[setidx]


def finish_set(
    spec: WorkerSpec,
    setidx: int,
    frames: list[tuple[str, int]],
    solution: AstrometricSolution | StoredSolution,
    out_dir: str,
) -> BinnedOutput | None:
    """:func:`bin_set` from the set's growing stack, in the reducer's worker, which already
    read and calibrated each frame; None (read the set from disk) when the stack does not
    hold exactly ``frames`` co-added with ``solution``'s model (a restart, a worker that
    died, a solution that changed within the set, frames handed over unreduced)."""
    grow = _GROWING.pop(setidx, None)
    if (
        grow is None
        or grow.frames != frames
        or not isinstance(solution, AstrometricSolution)
        or pickle.dumps(solution.model, pickle.HIGHEST_PROTOCOL) != grow.model
    ):
        return None
    return _binned_output(session_for(spec), grow.stack, solution, out_dir)


def bin_set(
    spec: WorkerSpec,
    setidx: int,
    frames: list[tuple[str, int]],
    solution: AstrometricSolution | StoredSolution,
    out_dir: str,
) -> BinnedOutput:
    """Co-add one set's frames, write the binned image, measure the slow photometry.

    Parameters
    ----------
    frames
        ``(path, aflag)`` of each reduced frame of the set; a frame whose own astrometry
        flag is set (too bright to check, check failed) is left out of the image.
    solution
        The set's astrometric solution (the one its fast photometry was made with).
    out_dir
        The night's ``binned/`` directory.
    """
    session = session_for(spec)
    rebuilt = _set_solution(session, frames, solution)
    # Two copy threads keep a full-size set under 5 s (bench binned_set_s); the job runs
    # once per 320 s, so it barely competes with the reducer for the second core.
    stack = _new_stack(session, setidx, rebuilt.model, 2)
    for path, aflag in frames:
        try:
            raw = session.read(path)
            stack.add(session.calibrated_image(raw), raw.header, aflag=aflag)
        except MascaraError as exc:
            log.warning("set %d: %s left out of the binned image: %s", setidx, path, exc)
    return _binned_output(session, stack, rebuilt, out_dir)


def _binned_output(session: ReductionSession, stack: SetStack, solution: AstrometricSolution,
                   out_dir: str) -> BinnedOutput:
    """Finish ``stack``, write its binned image, measure the slow photometry."""
    cfg = session.config.reduction
    model, setidx = solution.model, stack.setidx
    binned = stack.finish()
    phase("binning", setidx)
    station = slow_station_row(binned, model, ephemeris=session._ephemeris)
    station["setflag"] = int(binned.flag)
    if not binned.binned or binned.image is None:
        return BinnedOutput(
            setidx,
            binned.nimages,
            binned.nrefused,
            int(binned.flag),
            None,
            np.zeros(0, slow_record_dtype(len(cfg.photometry.slow_apertures_px))),
            station,
        )
    file = write_binned(out_dir, binned, model)
    slow = measure_binned(
        binned.image,
        binned,
        model,
        session.catalogue,
        cfg.photometry,
        aflag=solution.aflag,
        ephemeris=session._ephemeris,
        flat=session.calibrator.flat_science,
    )
    slow_station = np.array(slow.station)
    slow_station["setflag"] = int(binned.flag)
    return BinnedOutput(
        setidx,
        binned.nimages,
        binned.nrefused,
        int(binned.flag),
        str(file),
        np.array(slow.records),
        slow_station,
    )
