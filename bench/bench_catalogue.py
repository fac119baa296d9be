"""Benchmark: load the Hipparcos 2 catalogue and pick one camera's stars."""

from __future__ import annotations

import statistics
import tempfile
import time

from bench._core import bench, figure
from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.sidereal import SiteReference

# 2026-03-20 00:00 UTC, a fixed night so the figure is comparable over time.
_JD = 2461119.5
_VMAX = 8.4
_REPEATS = 7


@bench("catalogue_select_s")
def run():
    """Figure: catalogue_select_s (s) - warm-cache load, V <= 8.4 selection, positions at the
    date and the cut to what falls on camera LPC at that moment (camera model).

    Median of 7 runs against a cache built once in a temporary directory. Context:
    ``n_stars`` on the camera, ``n_catalogue`` and ``cold_load_s`` (parse hip2.dat, derive
    V/B/blends, write the cache).
    """
    model = CameraModel.from_config(load_config().camera("LPC"))
    lst = float(SiteReference().local_sidereal_time(_JD).lst)
    with tempfile.TemporaryDirectory(prefix="bench-catalogue-") as cache_dir:
        t0 = time.perf_counter()
        full = Catalogue.load(cache_dir)
        cold_s = time.perf_counter() - t0

        timings = []
        for _ in range(_REPEATS):
            t0 = time.perf_counter()
            cat = Catalogue.load(cache_dir)
            bright = cat.select(vmax=_VMAX)
            ra, dec = bright.positions_at(_JD)
            x, y = model.radec_to_pixel(ra, dec, lst)
            on_camera = bright.select(hip=bright.hip[model.on_chip(x, y)])
            timings.append(time.perf_counter() - t0)

    yield figure(
        "catalogue_select_s",
        statistics.median(timings),
        "s",
        n_stars=len(on_camera),
        n_catalogue=len(full),
        vmax=_VMAX,
        cold_load_s=round(cold_s, 4),
        min_s=round(min(timings), 4),
        repeats=_REPEATS,
    )
