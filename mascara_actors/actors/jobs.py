"""The jobs the reducer and the binner send to their worker processes.

A job receives a small :class:`~.messages.WorkerSpec` and paths, never images; the worker
keeps its :class:`~mascara_actors.reduce.ReductionSession` (catalogue, masters, ephemeris)
between jobs. Results are small: records and rows, and the binned image goes straight to
disk. Only the workers import this module (the actors name the jobs by ``module:function``,
:data:`~.messages.SOLVE_JOB`...), so the supervisor does not load the science it never runs.
"""

from __future__ import annotations

import logging

import numpy as np

from mascara_actors.astrometry import AstrometricSolution
from mascara_actors.binned_file import write_binned
from mascara_actors.binning import SetStack
from mascara_actors.errors import AstrometryFailed, FrameError, MascaraError
from mascara_actors.faults import phase
from mascara_actors.messages import BinnedOutput, StoredSolution, WorkerSpec
from mascara_actors.records import slow_record_dtype
from mascara_actors.reduce import FrameResult, ReductionSession
from mascara_actors.slow import measure_binned, slow_station_row

__all__ = [
    "bin_set",
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
    """Fast photometry of the frame at ``path`` with the set's ``solution``."""
    return session_for(spec).reduce_frame(path, solution)


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
    cfg = session.config.reduction
    rebuilt = _set_solution(session, frames, solution)
    model = rebuilt.model
    stack = SetStack(
        model,
        setidx,
        min_frames=cfg.binning.min_frames,
        camera=session.camera.letter,
        site=session.camera.site.name,
        # Two copy threads keep a full-size set under 5 s (bench binned_set_s); the job runs
        # once per 320 s, so it barely competes with the reducer for the second core.
        threads=2,
    )
    for path, aflag in frames:
        try:
            raw = session.read(path)
            stack.add(session.calibrated_image(raw), raw.header, aflag=aflag)
        except MascaraError as exc:
            log.warning("set %d: %s left out of the binned image: %s", setidx, path, exc)
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
        aflag=rebuilt.aflag,
        ephemeris=session._ephemeris,
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
