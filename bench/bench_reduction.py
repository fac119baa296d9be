"""Fast reduction of full-size frames: read, calibrate, place the stars, photometry, records."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench._core import bench, figure


@bench("fast_reduction_frame_s")
def run():
    """Figure: fast_reduction_frame_s (s) - median wall time of ReductionSession.reduce_frame
    on full-size LPC frames (~5,000 V <= 8.4 stars), one worker, warm caches; context: the
    time per step and the number of stars."""
    from hw.sim.sky import SimulatedSky, SimulationSettings
    from mascara_actors.calibration import master_dark, write_master
    from mascara_actors.catalogue import Catalogue
    from mascara_actors.config import load_config
    from mascara_actors.rawframe import raw_filename, write_raw
    from mascara_actors.reduce import ReductionSession
    from mascara_actors.sidereal import SiteReference

    cfg = load_config()
    cam = cfg.camera("LPC")
    sky = SimulatedSky(cam, Catalogue.load(), settings=SimulationSettings(seed=11))
    # LST ~ 20 h: the Milky Way in Cygnus crosses the zenith camera (about 5,000 stars)
    s0 = int(SiteReference().local_sidereal_time("2026-08-20T23:30:00").lstseq)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        darks = []
        for k in range(cfg.reduction.calibration.min_dark):
            f = sky.exposure(s0 - 30 + k, "dark")
            darks.append(write_raw(d / raw_filename(f.header.lstseq, "C", "dark"), f.raw, f.header))
        dark = master_dark(darks, calibration=cfg.reduction.calibration)
        dark_path = write_master(d / dark.filename, dark)
        paths = []
        for s in range(s0, s0 + 6):
            f = sky.exposure(s)
            paths.append(write_raw(d / raw_filename(s, "C"), f.raw, f.header))
        session = ReductionSession.open("LPC", dark=dark_path)
        solution = session.solve(paths[0], None)
        session.reduce_frame(paths[0], solution)  # warm the per-night caches
        results = []
        for _ in range(2):
            for p in paths[1:]:
                t = time.perf_counter()
                r = session.reduce_frame(p, solution)
                r.timings["wall"] = time.perf_counter() - t
                results.append(r)
    walls = [r.timings["wall"] for r in results]
    steps = {
        k: round(statistics.median(r.timings[k] for r in results), 4)
        for k in ("read", "calibrate", "positions", "photometry", "records")
    }
    yield figure(
        "fast_reduction_frame_s",
        round(statistics.median(walls), 4),
        "s",
        n_stars=int(statistics.median(r.nstars for r in results)),
        frames=len(results),
        min_s=round(min(walls), 4),
        steps=steps,
        bar_s=0.25,
    )
