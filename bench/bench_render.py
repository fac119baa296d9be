"""Benchmark: render one full-size raw frame with the simulated sky."""

from __future__ import annotations

import statistics
import time

from bench._core import bench, figure
from hw.sim.sky import SimulatedSky
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.sidereal import SiteReference

# 2026-03-20 00:00 UTC, a dark night at La Palma, so the figure is comparable over time.
_JD = 2461119.5
_CAMERA = "LPC"
_REPEATS = 5


@bench("render_frame_s")
def run():
    """Figure: render_frame_s (s) - median time to render one full-size science frame.

    Camera LPC on its KAI-11002 sensor (4072 x 2720 readout), default simulation settings
    (stars to V = 10.5, no clouds or trails), warm: one frame is rendered first so the
    catalogue positions of the day and astropy's IERS tables are loaded. Then the median of
    5 consecutive slots, each a full ``SimulatedSky.exposure`` (stars, sky, dark, noise,
    uint16 readout, truth). Context: ``n_stars`` in the truth of a frame, ``min_s``,
    ``cpu_s`` (median process CPU time, robust when other jobs share the machine) and
    ``sky_level_s``, the part spent on the Sun/Moon sky level (astropy ``get_body``).
    """
    config = load_config()
    camera = config.camera(_CAMERA)
    sky = SimulatedSky(camera, Catalogue.load())
    lstseq = int(SiteReference().local_sidereal_time(_JD).lstseq)
    frame = sky.exposure(lstseq - 1)  # warm-up

    timings, cpu = [], []
    for k in range(_REPEATS):
        t0, c0 = time.perf_counter(), time.process_time()
        frame = sky.exposure(lstseq + k)
        timings.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    sky_level = []
    for k in range(_REPEATS):
        header = sky.header(lstseq + 100 + k)  # slots not rendered yet: nothing cached
        t0 = time.perf_counter()
        sky.sky_level_e(header)
        sky_level.append(time.perf_counter() - t0)

    yield figure(
        "render_frame_s",
        statistics.median(timings),
        "s",
        n_stars=len(frame.truth),
        camera=_CAMERA,
        sensor=camera.sensor.name,
        vmax=sky.settings.vmax,
        min_s=round(min(timings), 4),
        cpu_s=round(statistics.median(cpu), 4),
        sky_level_s=round(statistics.median(sky_level), 4),
        repeats=_REPEATS,
    )
