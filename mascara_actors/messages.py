"""Every message of the night: what actors hand each other and their workers, and the events
they report to the summariser, the event log and the console.

All are small frozen values (a path and a header, never a raw frame). Events serialise to one
JSON line each (:func:`to_json`), the documented format of ``logs/events.jsonl``; times are
wall-clock UNIX seconds, pixel quantities in pixels, sky levels in ADU per pixel.

This module is light on purpose (numpy only): the supervisor process and the console import
it, while the science the workers run (:mod:`.jobs`) is imported by the workers alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from mascara_actors.errors import AstrometryFailed

if TYPE_CHECKING:
    from mascara_actors.astrometry import AstrometricSolution
    from mascara_actors.camera_model import CameraModel

__all__ = [
    "BIN_SET_JOB",
    "FINISH_SET_JOB",
    "REDUCE_JOB",
    "SOLVE_JOB",
    "WARM_UP_JOB",
    "ActorFailed",
    "AstrometryDone",
    "BinnedOutput",
    "CameraLink",
    "Event",
    "FrameFailed",
    "FrameForBinning",
    "FrameReduced",
    "FrameReducedEvent",
    "NightFinished",
    "NightStarted",
    "NightlyFileWritten",
    "ProductFailed",
    "QueueDepths",
    "ReductionPaused",
    "ReductionResumed",
    "SetBinned",
    "SetCalibrated",
    "SetRecords",
    "SetSaved",
    "Spooled",
    "StoredSolution",
    "WarningEvent",
    "WorkerSpec",
    "from_json",
    "to_json",
]

# The jobs of mascara_actors.actors.jobs, by name: only the workers import that module.
SOLVE_JOB = "mascara_actors.actors.jobs:solve_job"
REDUCE_JOB = "mascara_actors.actors.jobs:reduce_job"
BIN_SET_JOB = "mascara_actors.actors.jobs:bin_set"
FINISH_SET_JOB = "mascara_actors.actors.jobs:finish_set"
WARM_UP_JOB = "mascara_actors.actors.jobs:warm_up"

_FRAMES_REFUSED = 2  # mascara_actors.binning.SetFlag.FRAMES_REFUSED (checked by a test)

# The parameter vector of AstrometricSolution.params(): pointing corrections, focal length,
# radial distortion, then the Legendre coefficients in x and in y.
_PARAM_NAMES = ("tilt_x_deg", "tilt_y_deg", "spin_deg", "focal_px", "k1", "k2")


# -- messages between the actors and their workers ------------------------------------------


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
class SetRecords:
    """A set as the saver wrote it, for the live calibration (in-process only)."""

    setidx: int
    records: np.ndarray
    """Fast records with ``id``."""
    stars: np.ndarray
    """Star rows of the set (``id``, ``ra``, ``dec``, ``vmag`` ...)."""
    station: np.ndarray
    """One station row per exposure."""


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


# -- events: what the actors report -----------------------------------------------------------


def _frozen_map(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event; ``time`` is the wall clock (UNIX seconds)."""

    time: float = field(default_factory=time.time)

    @property
    def kind(self) -> str:
        """The event's name in the log (its class name)."""
        return type(self).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class NightStarted(Event):
    """The pipeline of one camera-night has started."""

    night: str
    """The night, ``YYYYMMDD`` of its evening."""
    camera: str
    """Camera id (``LPC`` ...)."""
    out_dir: str
    """The night's output directory."""
    frames_expected: int
    """Science frames the source will deliver (0 when unknown, live)."""
    resumed_sets: int = 0
    """Sets already on disk from an earlier run of the same night."""
    calibration: str = ""
    """The calibration of earlier nights each set is calibrated with as it is saved (a maps
    file), "" when the camera has none: the light curves stay raw."""
    dark: str | None = None
    """The master dark the frames are calibrated with (its file name); "" when there is
    none: only the overscan level is subtracted. None in the logs of versions that did not
    record it."""
    flat: str | None = None
    """The master flat the frames are divided by (its file name), "" when there is none;
    None when not recorded."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameReducedEvent(Event):
    """One frame calibrated, solved (or checked) and measured."""

    lstseq: int
    nstars: int
    """Stars measured."""
    nflagged: int
    """Of those, stars with a non-zero flag."""
    latency_s: float
    """From the frame reaching the pipeline to its records being ready, seconds."""
    timings: Mapping[str, float]
    """Seconds spent per step of the reduction (read-only)."""
    sky: float
    """Median sky level of the frame's stars, ADU per pixel."""
    ccdtemp: float
    """CCD temperature from the frame header, degrees Celsius."""
    path: str = ""
    """The raw frame."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "timings", _frozen_map(self.timings))


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameFailed(Event):
    """A frame could not be reduced; it is skipped and the night goes on."""

    lstseq: int
    path: str
    """The raw frame."""
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AstrometryDone(Event):
    """The astrometry of a set was solved, refitted or checked."""

    lstseq: int
    """The frame it was done on."""
    setidx: int
    dr: float
    """RMS residual of the matched stars, pixels."""
    nstars: int
    """Stars tried."""
    nused: int
    """Stars used in the fit."""
    aflag: int
    """Astrometry flag (0 good; see ``photometry.flags.AFlag``)."""
    solved: bool
    """True for a full solve or refit, False when the check kept the model."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetSaved(Event):
    """A set's per-set file (fast or slow photometry) is on disk."""

    kind_: str
    """``fast`` or ``slow``."""
    setidx: int
    nframes: int
    """Frames in the set."""
    nrecords: int
    """Photometry records written."""
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetCalibrated(Event):
    """A set calibrated live with the camera's calibration of earlier nights: its clouds are
    solved and its calibrated points are on disk."""

    setidx: int
    path: str
    """The set's calibrated points (``{night}/calibrated/set_{setidx}.hdf5``)."""
    nstars: int
    """Stars with a calibrated bin in the set."""
    patches: tuple[int, ...]
    """Sky patches (HEALPix nside 8, ring order) whose clouds were measured."""
    clouds: tuple[float, ...]
    """Median clouds of each of those patches over the set, mag (0 clear, positive
    cloudier)."""
    seconds: float
    """Time the calibration of the set took."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "patches", tuple(int(q) for q in self.patches))
        object.__setattr__(self, "clouds", tuple(float(c) for c in self.clouds))


@dataclass(frozen=True, slots=True, kw_only=True)
class SetBinned(Event):
    """A set co-added into its binned image and measured (slow photometry)."""

    setidx: int
    nimages: int
    """Frames in the binned image."""
    nrefused: int
    """Frames of the set left out (another camera or exposure time, failed astrometry)."""
    flag: int
    """Flag of the binned set (0 good)."""
    path: str
    """The binned image, or "" when none was written."""
    nstars: int
    """Stars measured on it."""
    reason: str = ""
    """Why the set has no binned image ("" when it has one)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductFailed(Event):
    """A product of a set (``fast``, ``binned`` or ``slow``) or of the night (``fast
    nightly``, ``slow nightly``) could not be written; a restart makes it."""

    setidx: int | None
    """The set, or None for a nightly file."""
    product: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NightlyFileWritten(Event):
    """A nightly file (all sets of the night combined) is on disk."""

    kind_: str
    """``fast`` or ``slow``."""
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDepths(Event):
    """Messages waiting in each channel (sampled once a second)."""

    depths: Mapping[str, int]
    """Channel name -> messages waiting (read-only)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", _frozen_map(self.depths))


@dataclass(frozen=True, slots=True, kw_only=True)
class Spooled(Event):
    """Frames held on disk at the camera edge while the reducer was busy or paused."""

    spooled: int
    """Frames waiting on disk because the reducer was busy (total so far)."""
    caught_up: int
    """Spooled frames the reducer has taken since (total so far)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReductionPaused(Event):
    """The operator paused the reduction; frames wait (spooled), none is lost."""

    lstseq: int
    """The last frame the reducer took before the pause (-1: none yet)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReductionResumed(Event):
    """The operator resumed the reduction."""

    paused_s: float
    """How long it was paused, seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraLink(Event):
    """The camera stopped answering its status poll, or answers again."""

    answering: bool
    detail: str
    """What the driver said (the error while it does not answer)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WarningEvent(Event):
    """Something the operator should know; the night goes on."""

    source: str
    """The actor or part that noticed."""
    message: str
    lstseq: int | None = None
    """The frame concerned, if one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorFailed(Event):
    """An actor cannot go on (e.g. its worker process keeps dying): the night stops early,
    saving what was measured."""

    source: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NightFinished(Event):
    """The pipeline of the night has ended (complete or not)."""

    frames_reduced: int
    frames_failed: int
    nightly_files: tuple[str, ...]
    wall_s: float
    """Wall time of the run, seconds."""
    missing: tuple[str, ...] = ()
    """Products the night should have and has not (``set 12345: slow``, with the reason);
    empty when the night is complete."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "nightly_files", tuple(self.nightly_files))
        object.__setattr__(self, "missing", tuple(self.missing))


_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        NightStarted,
        FrameReducedEvent,
        FrameFailed,
        AstrometryDone,
        SetSaved,
        SetCalibrated,
        SetBinned,
        ProductFailed,
        NightlyFileWritten,
        QueueDepths,
        Spooled,
        ReductionPaused,
        ReductionResumed,
        CameraLink,
        WarningEvent,
        ActorFailed,
        NightFinished,
    )
}


def _plain(value: object) -> object:
    """JSON form of a field value the encoder does not know (read-only maps, numpy scalars)."""
    if isinstance(value, Mapping):
        return dict(value)
    return float(value)  # type: ignore[arg-type]  # numpy scalars; anything else: TypeError


def to_json(event: Event) -> str:
    """One JSON line: ``{"kind": ..., "time": ..., fields...}``."""
    data: dict[str, Any] = {"kind": event.kind}
    data.update((f.name, getattr(event, f.name)) for f in fields(event))
    return json.dumps(data, separators=(",", ":"), default=_plain)


def from_json(line: str) -> Event:
    """Parse a line written by :func:`to_json`; ValueError for an unknown kind."""
    data = json.loads(line)
    kind = data.pop("kind")
    try:
        cls = _TYPES[kind]
    except KeyError:
        raise ValueError(f"unknown event kind {kind!r}") from None
    return cls(**data)
