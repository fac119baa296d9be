"""Blind astrometric solve of full-size frames: no pointing used, one core."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator

from bench._core import bench, figure


@contextlib.contextmanager
def _one_core() -> Iterator[int]:
    """Pin this process (and the BLAS threads it starts) to one CPU; yields the CPU count
    it now has."""
    if not hasattr(os, "sched_setaffinity"):
        yield os.cpu_count() or 1
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield len(os.sched_getaffinity(0))
    finally:
        os.sched_setaffinity(0, before)


@bench("blind_solve_s")
def run():
    """Figure: blind_solve_s (s) - median wall time of blind_solve on full-size frames (LPE
    rolled 70 degrees, LPC 15 degrees off its pointing, LSW mirrored), the index already
    loaded, pinned to one core; context: the time per step, the index load and build times
    and the accuracy against the simulator's truth."""
    import numpy as np

    from hw.sim.sky import SimulatedSky, SimulationSettings
    from mascara_actors.astrometry import astrometry_stars
    from mascara_actors.blind_solve import BlindIndex, blind_solve
    from mascara_actors.camera_model import CameraModel
    from mascara_actors.catalogue import Catalogue
    from mascara_actors.config import load_config
    from mascara_actors.sidereal import SiteReference, lst_mid_hours

    cfg = load_config()
    cat = Catalogue.load()
    astro = cfg.reduction.astrometry
    stars = astrometry_stars(cat, vmin=astro.vmin, vmax=astro.vmax)
    lstseq = int(SiteReference().local_sidereal_time("2026-11-10T04:00:00").lstseq)
    cases = {
        "LPE": {"roll_deg": 322.0},
        "LPC": {"alt_deg": 75.0, "az_deg": 200.0, "roll_deg": 135.0},
        "LSW": {"roll_deg": 10.0, "mirror": True},
    }
    frames = []
    for seed, (camera_id, changes) in enumerate(cases.items(), start=1):
        camera = cfg.camera(camera_id)
        lens = CameraModel.from_config(camera)
        true = lens.replace(focal_px=lens.focal_px * 1.003, **changes)
        sky = SimulatedSky(
            camera, cat, true_model=true, settings=SimulationSettings(seed=seed, vmax=8.4)
        )
        f = sky.exposure(lstseq)
        h = f.header
        image = (
            f.raw[h.y0 : h.y0 + h.ysize, h.x0 : h.x0 + h.xsize].astype(np.float32)
            - camera.sensor.bias_adu
        )
        frames.append((image, h, lens, true))

    with _one_core() as cpus:
        t = time.perf_counter()
        index = BlindIndex.build(cat)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        BlindIndex.load(cat)  # from the user cache; written there if missing
        load_s = time.perf_counter() - t
        walls, steps, axis_err = [], [], []
        for _ in range(3):
            for image, h, lens, true in frames:
                t = time.perf_counter()
                found = blind_solve(
                    image,
                    index,
                    stars,
                    lens,
                    lst_hours=lst_mid_hours(h.lst, h.jd, h.jdmid),
                    jd=h.jdmid,
                    lstseq=h.lstseq,
                )
                walls.append(time.perf_counter() - t)
                steps.append(found.timings)
                cos = float(found.model.axes[2] @ true.axes[2])
                axis_err.append(float(np.degrees(np.arccos(min(cos, 1.0)))))
                assert found.mirrored == true.mirror
    yield figure(
        "blind_solve_s",
        round(statistics.median(walls), 3),
        "s",
        frames=len(frames),
        solves=len(walls),
        max_s=round(max(walls), 3),
        cpus=cpus,
        steps={k: round(statistics.median(s.get(k, 0.0) for s in steps), 3) for k in steps[0]},
        index_load_s=round(load_s, 3),
        index_build_s=round(build_s, 3),
        index_triangles=len(index),
        max_axis_error_deg=round(max(axis_err), 5),
        bar_s=10.0,
        moonshot_s=1.0,
    )
