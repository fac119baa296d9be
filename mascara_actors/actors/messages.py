"""Messages between actors and their workers: small frozen values (a path and a header,
never a raw frame).

This module is light on purpose (numpy only): the supervisor process imports it, while the
science the workers run (:mod:`.jobs`) is imported by the workers alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mascara_actors.errors import AstrometryFailed

if TYPE_CHECKING:
    from mascara_actors.astrometry import AstrometricSolution
    from mascara_actors.camera_model import CameraModel

__all__ = [
    "BIN_SET_JOB",
    "REDUCE_JOB",
    "SOLVE_JOB",
    "WARM_UP_JOB",
    "BinnedOutput",
    "FrameForBinning",
    "FrameReduced",
    "StoredSolution",
    "WorkerSpec",
]

# The jobs of mascara_actors.actors.jobs, by name: only the workers import that module.
SOLVE_JOB = "mascara_actors.actors.jobs:solve_job"
REDUCE_JOB = "mascara_actors.actors.jobs:reduce_job"
BIN_SET_JOB = "mascara_actors.actors.jobs:bin_set"
WARM_UP_JOB = "mascara_actors.actors.jobs:warm_up"

_FRAMES_REFUSED = 2  # mascara_actors.binning.SetFlag.FRAMES_REFUSED (checked by a test)

# The parameter vector of AstrometricSolution.params(): pointing corrections, focal length,
# radial distortion, then the Legendre coefficients in x and in y.
_PARAM_NAMES = ("tilt_x_deg", "tilt_y_deg", "spin_deg", "focal_px", "k1", "k2")




@dataclass(frozen=True, slots=True, kw_only=True)
class FrameReduced:
    """The fast photometry of one frame, for the saver and the binner."""

    lstseq: int
    setidx: int
    path: Path
    """The raw frame (the binner reads it again in its worker)."""
    records: np.ndarray
    """Fast records with ``id`` (a few hundred kB; in-process, never pickled to disk)."""
    station: np.ndarray
    """One station row."""
    solution: AstrometricSolution
    """The set's astrometric solution the positions came from."""

    @property
    def aflag(self) -> int:
        """Astrometry flag of the solution this frame was measured with."""
        return self.solution.aflag


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameForBinning:
    """A frame of a set whose fast photometry is already on disk but whose binned image is
    not (a resumed night): the binner co-adds it with the stored solution."""

    lstseq: int
    setidx: int
    path: Path
    aflag: int
    """Astrometry flag the frame was measured with (from the stored station row)."""
    solution: StoredSolution
    """The set's stored astrometric solution."""


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker process needs to build its session (small, picklable)."""

    camera_id: str
    config_dir: str | None = None
    dark: str | None = None
    """Master dark file, or None (overscan level only)."""
    flat: str | None = None
    """Master flat file, or None."""


@dataclass(frozen=True, slots=True)
class StoredSolution:
    """An astrometric solution as a set's ``astrometry`` row stores it (for resuming).

    The camera model is the nominal one of the camera (sized to the frames) with the stored
    parameters; :meth:`rebuild` puts it back together in the worker.
    """

    setidx: int
    lstseq: int
    nstars: int
    nused: int
    dx: float
    """RMS residual in x, pixels."""
    dy: float
    """RMS residual in y, pixels."""
    aflag: int
    params: tuple[float, ...]
    """``AstrometricSolution.params()`` of the solution, float64."""

    @classmethod
    def from_row(cls, row: np.void | np.ndarray) -> StoredSolution:
        """From one row of ``records.astrometry_dtype``."""
        return cls(
            setidx=int(row["setidx"]),
            lstseq=int(row["lstseq"]),
            nstars=int(row["nstars"]),
            nused=int(row["nused"]),
            dx=float(row["dx"]),
            dy=float(row["dy"]),
            aflag=int(row["aflag"]),
            params=tuple(float(p) for p in np.ravel(row["params"])),
        )

    def rebuild(self, nominal: CameraModel) -> AstrometricSolution:
        """The solution, on the nominal model of the frames it will be used on.

        Raises
        ------
        AstrometryFailed
            When the stored parameters do not give back the same parameter vector (a model
            of another layout); the caller then solves from scratch.
        """
        from mascara_actors.astrometry import AstrometricSolution  # the workers' import

        p = np.asarray(self.params, float)
        nhead = len(_PARAM_NAMES)
        nterms = (p.size - nhead) // 2
        if p.size < nhead or p.size != nhead + 2 * nterms:
            raise AstrometryFailed(
                f"set {self.setidx}: {p.size} stored camera-model parameters do not fit the "
                f"layout of {nhead} + 2 x n; solving again"
            )
        model = nominal.replace(
            **{name: float(v) for name, v in zip(_PARAM_NAMES, p[:nhead], strict=True)},
            coeffs_x=tuple(float(v) for v in p[nhead : nhead + nterms]),
            coeffs_y=tuple(float(v) for v in p[nhead + nterms :]),
        )
        solution = AstrometricSolution(
            model=model,
            lstseq=self.lstseq,
            nstars=self.nstars,
            nused=self.nused,
            dx=self.dx,
            dy=self.dy,
            aflag=self.aflag,
        )
        if not np.array_equal(solution.params(), p):
            raise AstrometryFailed(
                f"set {self.setidx}: the stored camera model does not round-trip (the "
                "parameter layout changed); solving again"
            )
        return solution


@dataclass(frozen=True, slots=True)
class BinnedOutput:
    """What one set's binning produced (small: no image)."""

    setidx: int
    nimages: int
    nrefused: int
    flag: int
    """:class:`~mascara_actors.binning.SetFlag` bits of the set."""
    path: str | None
    """The binned FITS file, None when the set had too few frames to bin."""
    records: np.ndarray
    """Slow records (``slow_record_dtype()`` with ``id``); empty when not binned."""
    station: np.ndarray
    """The set's one ``slow_station_dtype`` row (written also for a set not binned, so the
    slow file records that the set has no image, and why: ``setflag``)."""

    @property
    def reason(self) -> str | None:
        """Why the set has no binned image, in words (None when it has one)."""
        if self.path is not None:
            return None
        why = f"{self.nimages} usable frames, too few to bin"
        if self.flag & _FRAMES_REFUSED:
            why += f" ({self.nrefused} refused)"
        return why
