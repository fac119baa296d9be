"""``simulate_lightcurves``: the nights of one camera written as the pipeline writes them.

The nights are written through :class:`~mascara_actors.storage.SetWriter` (one set of 50
exposures at a time) and the nightly combine, into ``{OUT}.part``, with the truth file, and
the directory is renamed to ``OUT`` at the end: a directory under the final name is
complete. The nights are independent (each has its own random stream), so they are
simulated on both cores, in spawned worker processes; the files do not depend on how many.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, Config, load_config
from mascara_actors.ephemeris import EphemerisTable
from mascara_actors.errors import ConfigError, StorageError
from mascara_actors.lcsim.clouds import WEATHER, WEATHER_ODDS, SkyPatches
from mascara_actors.lcsim.night import NOISE_DTYPE, SimulatedNight
from mascara_actors.lcsim.noise import APERTURE_PX
from mascara_actors.lcsim.schedule import NightSlots, night_schedule
from mascara_actors.lcsim.settings import LightCurveSimulation, SimulationReport
from mascara_actors.lcsim.stars import SimulatedStars, choose_stars
from mascara_actors.lcsim.systematics import HeaderCard, TruthModel
from mascara_actors.lcsim.truth_file import NightTruth, truth_file_path, write_truth
from mascara_actors.sidereal import REFERENCE_LONGITUDE_DEG, SET_SIZE, slot_length_solar_s
from mascara_actors.storage import SetWriter

__all__ = ["simulate_lightcurves"]

log = logging.getLogger(__name__)

SetProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Plan:
    """What every night of a simulation needs (picklable: it crosses to the workers)."""

    sim: LightCurveSimulation
    config: Config
    stars: SimulatedStars
    patches: SkyPatches
    schedule: list[NightSlots]
    weather: tuple[str, ...]
    night_seeds: list[np.random.SeedSequence]
    part: Path

    @property
    def camera(self) -> CameraConfig:
        return self.config.camera(self.sim.camera)

    def camera_model(self) -> CameraModel:
        sensor = self.config.sensor(self.sim.sensor) if self.sim.sensor else self.camera.sensor
        return CameraModel.from_config(self.camera, nx=sensor.xsize, ny=sensor.ysize)

    def truth_model(self) -> TruthModel:
        model = self.camera_model()
        return self.sim.truth_model or TruthModel(model.nx, model.ny)


@dataclass(frozen=True)
class _NightDone:
    """A night written: its nightly file, truth and records."""

    path: Path
    truth: NightTruth
    nrecords: int


def _check_outdir(outdir: Path) -> Path:
    """The ``.part`` directory to write into (emptied), once ``outdir`` is new or empty."""
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise StorageError(f"{outdir} exists and is not an empty directory: choose a new OUT "
                           "directory (the simulation never mixes with earlier files)")
    part = outdir.with_name(outdir.name + ".part")
    if part.exists():
        shutil.rmtree(part)
    part.mkdir(parents=True)
    return part


def _file_header(camera: CameraConfig) -> dict[str, object]:
    """The ``header`` attributes of the nightly files."""
    return {
        "site-obs": camera.site.name, "cam-obs": camera.id,
        "lat": camera.site.latitude_deg, "lon": camera.site.longitude_deg,
        "height": camera.site.height_m,
        "aper": np.asarray(APERTURE_PX), "skyrad": np.asarray([6.0, 21.0]),
        "exptime": slot_length_solar_s(), "rversion": "mascara-actors lcsim",
        "simulated": "light-curve simulator (mascara_actors.lcsim)",
    }


def _truth_header(plan: _Plan) -> list[HeaderCard]:
    sim, camera = plan.sim, plan.camera
    return [("CAMERA", camera.id, "camera id"),
            ("SENSOR", sim.sensor or camera.sensor.name, "sensor"),
            ("SEED", sim.seed, "random seed"),
            ("NNIGHTS", sim.nights, "nights simulated"),
            ("OFFSIG", sim.offset_sigma, "sigma of the per-star offsets, mag"),
            *plan.truth_model().header_cards(), *sim.noise.header_cards()]


def _compression(sim: LightCurveSimulation, config: Config) -> str | None:
    compression = sim.compression
    if compression == "config":
        compression = config.reduction.storage.compression
    return None if compression == "none" else compression


def _plan(sim: LightCurveSimulation, config: Config, catalogue: Catalogue, part: Path,
          schedule: list[NightSlots] | None = None) -> _Plan:
    """Draw the weather and the stars (the nights draw the rest from their own seeds); the
    nights' slots are ``schedule`` when the caller has them."""
    camera = config.camera(sim.camera)
    if schedule is None:
        schedule = night_schedule(config, camera, sim)
    sensor = config.sensor(sim.sensor) if sim.sensor else camera.sensor
    model = CameraModel.from_config(camera, nx=sensor.xsize, ny=sensor.ysize)
    seed = np.random.SeedSequence(sim.seed)
    rng = np.random.default_rng(seed.spawn(1)[0])
    weather = sim.weather or tuple(rng.choice(WEATHER, sim.nights, p=WEATHER_ODDS).tolist())
    lon_offset = camera.site.longitude_deg - REFERENCE_LONGITUDE_DEG
    stars = choose_stars(sim, catalogue, model, lon_offset, schedule, rng)
    if len(stars.cat) == 0:
        raise ConfigError(f"camera {camera.id} sees no star with V <= {sim.vmax} in the "
                          "simulated windows")
    return _Plan(sim, config, stars, SkyPatches.of(stars.patch), schedule, weather,
                 seed.spawn(sim.nights + 1)[1:], part)


def _simulate_night(plan: _Plan, i: int, progress: Callable[[], None] | None = None
                    ) -> _NightDone:
    """Simulate night ``i`` of ``plan`` into its directory, set by set."""
    sim, slots, camera = plan.sim, plan.schedule[i], plan.camera
    # the Sun and Moon on a 15-minute grid are good to far better than the sky needs
    ephemeris = EphemerisTable(camera.site, step_minutes=15.0)
    night = SimulatedNight(sim, camera, plan.camera_model(), plan.stars, slots,
                           plan.weather[i], plan.night_seeds[i], plan.patches, ephemeris)
    name = f"{slots.window.night:%Y%m%d}"
    # with one set in every_set simulated, a star keeps the share of the points it needs
    minobs = max(1, plan.config.reduction.storage.minobs // sim.every_set)
    with SetWriter(plan.part / f"{name}{camera.site.code}{camera.letter}",
                   header=_file_header(camera)) as writer:
        for setidx in slots.sets(sim.every_set):
            seq = np.arange(max(slots.first, setidx * SET_SIZE),
                            min(slots.stop, (setidx + 1) * SET_SIZE), dtype=np.int64)
            made = night.make_set(seq, setidx)
            if len(made.records):
                writer.write_set("fast", setidx, made.records, stars=made.stars,
                                 station=made.station)
            if progress is not None:
                progress()
        report = writer.combine("fast", minobs=minobs,
                                compression=_compression(sim, plan.config))
    if report.output is None:
        raise StorageError(f"night {name}: no star was measured; nothing written")
    with np.errstate(invalid="ignore", divide="ignore"):
        noise_var = night.noise_sum / night.npoints[None, :]
    truth = NightTruth(name, plan.weather[i], slots.first, slots.stop - slots.first,
                       str(report.output.relative_to(plan.part)), night.cloud_image,
                       night.npoints, noise_var,
                       np.concatenate(night.noise_rows) if night.noise_rows
                       else np.zeros(0, NOISE_DTYPE))
    log.info("simulated night %s (%s): %d records", name, plan.weather[i], report.nrecords)
    return _NightDone(report.output, truth, report.nrecords)


def _simulate_nights(plan: _Plan, nights: range, workers: int,
                     sets_done: Callable[[int], None]) -> list[_NightDone]:
    """The nights ``nights``, in ``workers`` spawned processes (here when 1), in night
    order; ``sets_done(n)`` is told of every ``n`` sets of 50 exposures made."""
    if workers == 1:
        return [_simulate_night(plan, i, lambda: sets_done(1)) for i in nights]
    out: dict[int, _NightDone] = {}
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_simulate_night, plan, i): i for i in nights}
        for future in as_completed(futures):
            i = futures[future]
            out[i] = future.result()
            sets_done(len(plan.schedule[i].sets(plan.sim.every_set)))
    return [out[i] for i in nights]


def simulate_lightcurves(
    outdir: str | Path,
    sim: LightCurveSimulation,
    *,
    config: Config | None = None,
    catalogue: Catalogue | None = None,
    workers: int | None = None,
    progress: SetProgress | None = None,
    batches: Sequence[range] | None = None,
    after_batch: Callable[[list[Path]], None] | None = None,
) -> SimulationReport:
    """Simulate ``sim.nights`` nights of one camera into ``outdir`` (see
    :mod:`mascara_actors.lcsim`).

    Parameters
    ----------
    outdir
        New (or empty) directory.
    sim
        What to simulate.
    config, catalogue
        Default: the installed configuration and the Hipparcos catalogue.
    workers
        Processes simulating nights (default: 2, or 1 on a single core or for one night).
    progress
        Called with (sets done, sets in all) as the sets of 50 exposures are made (after
        each night when the nights run in worker processes).
    batches, after_batch
        Simulate the nights in these runs (night indices, in order, covering every night
        once; default: one run) and call ``after_batch`` with the nightly files of each run
        as soon as they are written. A long season can so be merged run by run and its
        nightly files deleted, never holding more than a run on disk; the report still
        lists every nightly file, whether ``after_batch`` kept it or not.

    Raises
    ------
    ConfigError
        Unknown camera, bad weather names, nothing to simulate, an offset past the end of
        a night (before anything is written).
    StorageError
        ``outdir`` is not empty, or a file cannot be written.
    """
    outdir = Path(outdir)
    config = config or load_config()
    config.camera(sim.camera)
    sim.check()
    if workers is not None and workers < 1:
        raise ConfigError(f"workers={workers}: must be at least 1")
    runs = list(batches) if batches is not None else [range(sim.nights)]
    if any(len(r) == 0 for r in runs) or [i for r in runs for i in r] != list(range(sim.nights)):
        raise ConfigError(f"batches={runs}: give runs of nights that cover 0..{sim.nights - 1} "
                          "once each, in order")
    # before the output directory is made: a night's slots can refuse the settings
    schedule = night_schedule(config, config.camera(sim.camera), sim)
    part = _check_outdir(outdir)
    plan = _plan(sim, config, catalogue or Catalogue.load(), part, schedule)
    total = sum(len(n.sets(sim.every_set)) for n in plan.schedule)
    done = 0

    def sets_done(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    nights: list[_NightDone] = []
    for run in runs:
        nworkers = max(1, min(workers or min(2, os.cpu_count() or 1), len(run)))
        made = _simulate_nights(plan, run, nworkers, sets_done)
        nights += made
        if after_batch is not None:
            after_batch([n.path for n in made])
    camera_id = plan.camera.id
    write_truth(truth_file_path(part, camera_id), _truth_header(plan), plan.stars,
                plan.patches, [n.truth for n in nights])
    os.replace(part, outdir)
    return SimulationReport(outdir, tuple(outdir / n.path.relative_to(part) for n in nights),
                            truth_file_path(outdir, camera_id), len(plan.stars.cat),
                            sum(n.nrecords for n in nights))
