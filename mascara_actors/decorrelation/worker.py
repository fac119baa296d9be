"""The patches of one worker: their scratch files, states and per-iteration work.

A worker owns some rings of sky patches (so the clouds of a patch never cross processes)
and runs three commands: :class:`Ingest` (read its patches' good points from the baseline
into scratch files), :class:`Iterate` (the temporal step of every patch given the maps,
then its share of the spatial normal equations) and :class:`Finish` (the final temporal
step and the calibrated points binned per set). One patch is in memory at a time.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mascara_actors.decorrelation.bins import (
    CalibratedPoints,
    Scintillation,
    bin_points,
    cell_rms,
)
from mascara_actors.decorrelation.clear_sky import ClearLevels, clear_levels_by_ha
from mascara_actors.decorrelation.grids import IntrapixelGrid, TransmissionGrid
from mascara_actors.decorrelation.ingest import IngestedPatch, PatchAssignment, ingest_patch
from mascara_actors.decorrelation.normal_equations import NormalsAccumulator, SpatialNormals
from mascara_actors.decorrelation.patch import PatchGeometry, PatchPoints, scratch_path
from mascara_actors.decorrelation.settings import DecorrelationSettings
from mascara_actors.decorrelation.station_times import StationTimes
from mascara_actors.decorrelation.temporal import (
    PatchState,
    leave_one_out_clouds,
    solve_temporal,
)
from mascara_actors.errors import StorageError
from mascara_actors.storage.baseline_file import BaselineFile
from mascara_actors.storage.calibrated import STAR_FIT_DTYPE, PatchClouds

__all__ = [
    "Finish",
    "FinishedPatches",
    "Ingest",
    "IngestSummary",
    "Iterate",
    "IterationSums",
    "PatchWorker",
    "WorkerSetup",
]

Tick = Callable[[], None]


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker is started with (picklable: it crosses to a spawned process)."""

    scratch: Path
    grid: TransmissionGrid
    ipx_grid: IntrapixelGrid
    settings: DecorrelationSettings
    station: StationTimes
    lon_offset: float
    """Site longitude minus the reference longitude of the lstseq clock, degrees."""
    scintillation: Scintillation
    """The site and lens, for the scintillation a cloud cell's extra sigma holds."""
    scratch_need: int = 0
    """Bytes the scratch copy of all the workers needs, about (an upper bound)."""


@dataclass(frozen=True)
class Ingest:
    """Read the assigned patches' stars from the baseline."""

    baseline: Path
    assignments: list[PatchAssignment]


@dataclass(frozen=True)
class Iterate:
    """One outer iteration with the maps ``T`` (nodes) and ``ipx`` (cells, 4)."""

    T: np.ndarray
    ipx: np.ndarray
    m: np.ndarray | None
    """Magnitudes of the last spatial solution (this worker's stars in patch order)."""
    first: bool


@dataclass(frozen=True)
class Finish:
    """The final temporal step with the converged maps, and the binned light curves."""

    T: np.ndarray
    ipx: np.ndarray


Command = Ingest | Iterate | Finish


@dataclass
class IngestSummary:
    """What :class:`Ingest` kept and left out."""

    dropped: dict[str, int] = field(default_factory=dict)
    few_points: list[int] = field(default_factory=list)
    mostly_saturated: list[int] = field(default_factory=list)
    npoints: int = 0
    patches: list[int] = field(default_factory=list)

    def add(self, patch: int, got: IngestedPatch) -> None:
        """Count one patch in."""
        for reason, n in got.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + n
        self.few_points.extend(got.few_points)
        self.mostly_saturated.extend(got.mostly_saturated)
        if got.points is not None:
            self.patches.append(patch)
            self.npoints += len(got.points.star)


@dataclass
class IterationSums:
    """One worker's share of an outer iteration."""

    normals: SpatialNormals | None = None
    clear: list[ClearLevels] = field(default_factory=list)
    """Clear levels of the clouds per patch and HA bin (the clear-sky condition)."""
    chi2: float = 0.0
    """Sum of the squared normalised residuals of the points in the maps."""
    nused: int = 0
    """Points in the maps."""
    nclip: int = 0
    """Points clipped as outliers."""
    nfew: int = 0
    """Points in cloud cells with too few stars."""
    nthick: int = 0
    """Points under thick clouds."""


@dataclass
class FinishedPatches:
    """One worker's calibrated light curves, clouds and star fits."""

    curves: list[tuple[int, np.ndarray]] = field(default_factory=list)
    clouds: list[PatchClouds] = field(default_factory=list)
    stars: list[np.ndarray] = field(default_factory=list)
    """Rows of ``STAR_FIT_DTYPE`` per patch."""
    nfew: int = 0
    """Points not calibrated: too few other stars in their cloud cell."""
    nclip: int = 0
    """Points not calibrated: outliers."""


class PatchWorker:
    """The patches of one worker (see the module docstring)."""

    def __init__(self, setup: WorkerSetup) -> None:
        self.setup = setup
        self.settings = setup.settings
        self.patches: list[int] = []
        self.states: dict[int, PatchState] = {}

    def run(self, command: Command, tick: Tick | None = None
            ) -> IngestSummary | IterationSums | FinishedPatches:
        """Run one command, calling ``tick`` after each patch."""
        tick = tick or (lambda: None)
        if isinstance(command, Ingest):
            return self.ingest(command, tick)
        if isinstance(command, Iterate):
            return self.iterate(command, tick)
        return self.finish(command, tick)

    @contextmanager
    def _scratch(self, path: Path) -> Iterator[None]:
        """Turn an OSError on the scratch file ``path`` into a StorageError that names it,
        says the scratch copy lives in --out and how much room it needs."""
        try:
            yield
        except OSError as exc:
            where = self.setup.scratch.parent
            need = _size(self.setup.scratch_need)
            reason = exc.strerror or str(exc)
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise StorageError(
                    f"could not write the scratch file {path}: {reason}; the calibration "
                    f"keeps a scratch copy of the baseline's good points in the --out "
                    f"directory ({where}), up to about {need}: free that much space there "
                    "or choose an --out on a disk with room, and run the command again"
                ) from exc
            raise StorageError(
                f"the scratch file {path}: {reason} (the calibration keeps a scratch copy of "
                f"the baseline's good points, about {need}, in the --out directory "
                f"{where}); check that disk or choose another --out, and run the command "
                "again") from exc

    def ingest(self, command: Ingest, tick: Tick) -> IngestSummary:
        """Read the stars of the assigned patches, keep their good points in scratch."""
        summary = IngestSummary()
        with BaselineFile(command.baseline) as bf:
            for item in command.assignments:
                got = ingest_patch(bf, item, self.settings, self.setup.station,
                                   self.setup.lon_offset)
                if got.points is not None:
                    path = scratch_path(self.setup.scratch, item.patch)
                    with self._scratch(path):
                        got.points.save(path)
                summary.add(item.patch, got)
                tick()
        self.patches = summary.patches
        return summary

    def _load(self, q: int) -> tuple[PatchPoints, PatchGeometry]:
        path = scratch_path(self.setup.scratch, q)
        with self._scratch(path):
            p = PatchPoints.load(path)
        return p, PatchGeometry.of(p, self.setup.grid, self.setup.ipx_grid)

    def iterate(self, command: Iterate, tick: Tick) -> IterationSums:
        """Temporal step of every patch given the maps, then the normal equations of the
        spatial step (T, intrapixel amplitudes and star magnitudes, solved jointly) given
        the clouds and the weights."""
        acc = NormalsAccumulator(self.setup.grid, self.setup.ipx_grid)
        sums = IterationSums()
        for q in self.patches:
            self._iterate_patch(q, command, acc, sums)
            tick()
        sums.normals = acc.result()
        return sums

    def _iterate_patch(self, q: int, command: Iterate, acc: NormalsAccumulator,
                       sums: IterationSums) -> None:
        st = self.settings
        p, g = self._load(q)
        terms = g.maps_at(command.T, command.ipx)
        r = p.mag - terms.trans - terms.ipx
        state = self.states.get(q)
        n_inner = st.inner_iter
        if state is None or command.first:
            state = PatchState.start(p, r)
            n_inner = max(8, st.inner_iter)
        elif command.m is not None:
            state.m = np.asarray(command.m[acc.nstars:acc.nstars + p.nstars], float).copy()
        fit = solve_temporal(p, r, state, n_inner, min_cloud_stars=st.min_cloud_stars,
                             sigma_max=st.sigma_max)
        self.states[q] = state
        res = r - state.m[p.star] - state.c[p.t]
        valid = fit.valid[p.t]
        thin = valid & (np.abs(state.c[p.t]) <= st.max_cloud_for_maps)
        chi = res * res * fit.w
        use = thin & (chi < st.clip**2)
        sums.nclip += int(np.count_nonzero(thin & ~use))
        sums.nfew += int(np.count_nonzero(~valid))
        sums.nthick += int(np.count_nonzero(valid & ~thin))
        sums.chi2 += float(np.sum(chi[use]))
        sums.nused += int(np.count_nonzero(use))
        acc.add_patch(p, g, terms, np.where(use, fit.w, 0.0), p.mag - state.c[p.t], state.m,
                      state.s2s)
        sums.clear.append(clear_levels_by_ha(q, p.lstseq, state.c, fit.valid, p.ra0,
                                             self.setup.lon_offset, st.gauge_ha_step))

    def finish(self, command: Finish, tick: Tick) -> FinishedPatches:
        """Temporal solution with the final maps, then the calibrated points binned per set."""
        out = FinishedPatches()
        for q in self.patches:
            self._finish_patch(q, command, out)
            tick()
        return out

    def _finish_patch(self, q: int, command: Finish, out: FinishedPatches) -> None:
        st = self.settings
        p, g = self._load(q)
        terms = g.maps_at(command.T, command.ipx)
        r = p.mag - terms.trans - terms.ipx
        state = self.states[q]
        fit = solve_temporal(p, r, state, max(4, st.inner_iter),
                             min_cloud_stars=st.min_cloud_stars, sigma_max=st.sigma_max)
        res = r - state.m[p.star] - state.c[p.t]
        c_loo, ok_cloud = leave_one_out_clouds(p, r, state, fit, st.min_cloud_stars)
        outlier = np.abs(res) * np.sqrt(fit.w) >= st.clip
        out.nfew += int(np.count_nonzero(~ok_cloud))
        out.nclip += int(np.count_nonzero(ok_cloud & outlier))
        sigma_t = np.sqrt(state.s2t)
        station = self.setup.station
        scint = cell_rms(self.setup.scintillation.sigma_mag(
            p.ha, p.dec[p.star], station.exptime[station.rows(p.lstseq[p.t])]), p.t)
        cal = CalibratedPoints(mag=r - c_loo, var=1.0 / fit.w, use=ok_cloud & ~outlier,
                               cloud_ok=ok_cloud, trans=terms.trans + terms.ipx,
                               clouds=c_loo, cloud_sigma=sigma_t[p.t], scint_sigma=scint)
        out.curves.extend(bin_points(p, cal, self.setup.station))
        out.clouds.append(PatchClouds(q, p.lstseq, state.c.astype(np.float32),
                                      sigma_t.astype(np.float32),
                                      fit.nstar_t.astype(np.uint16)))
        rows = np.zeros(p.nstars, STAR_FIT_DTYPE)
        rows["id"] = p.ids
        rows["mag"] = state.m
        rows["sigma"] = np.sqrt(state.s2s)
        rows["npoints"] = np.bincount(p.star, minlength=p.nstars)
        rows["patch"] = q
        out.stars.append(rows)


def _size(nbytes: int) -> str:
    """``nbytes`` for a person: MB (at least 0.1) or GB."""
    if nbytes >= 10**9:
        return f"{nbytes / 1e9:.1f} GB"
    return f"{max(nbytes / 1e6, 0.1):.1f} MB"
