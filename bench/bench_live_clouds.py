"""The live calibration of one set: 6,000 stars of LPC x 50 exposures, as the calibrator does.

A calibration is made from two simulated half-hour nights of 6,000 stars (the time of a set
depends on its points, not on how good the maps are); a third night of the same stars is cut
into sets of 50 exposures and each is calibrated and written as the calibrator actor does
(:func:`mascara_actors.actors.calibrator.calibrate_set`). The figure is the slowest set
(bar: 30 s, well inside the 320 s a set takes); the median is given as context.
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench._core import Figure, bench, figure

STARS = 6000


@bench("live_clouds_set_s")
def live_clouds_set_s() -> Iterator[Figure]:
    from mascara_actors.actors.calibrator import calibrate_set
    from mascara_actors.config import load_config
    from mascara_actors.decorrelation import DecorrelationSettings, calibrate_baseline
    from mascara_actors.decorrelation.live import LiveCalibration
    from mascara_actors.lcsim import LightCurveSimulation, simulate_lightcurves
    from mascara_actors.messages import SetRecords
    from mascara_actors.sidereal import SET_SIZE
    from mascara_actors.storage import NightFile
    from mascara_actors.storage.baseline import build_baseline

    camera = load_config(None).camera("LPC")
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        work = Path(tmp)
        sim = LightCurveSimulation(camera="LPC", nights=3, stars=STARS, seed=7, hours=0.5,
                                   offset_hours=3.0, start=dt.date(2026, 1, 8),
                                   weather=("clear", "clear", "cloudy"), compression=None)
        report = simulate_lightcurves(work / "nights", sim)
        nights = sorted(report.nightly_files)
        base = build_baseline(nights[:2], work / "baseline.hdf5", compression=None)
        result = calibrate_baseline(base.output, work / "calibration",
                                    DecorrelationSettings(min_points=50, tol=5e-3))
        assert result.maps_file is not None
        cal = LiveCalibration.load(result.maps_file, pupil_m=camera.lens.aperture_mm / 1e3)
        with NightFile(nights[2]) as nf:
            stars, station = nf.stars, nf.station
            records = nf.records(["lstseq", "flux0", "eflux0", "x", "y", "pflag", "aflag"])
        setidx = records["lstseq"] // SET_SIZE
        times, sizes = [], []
        night_dir = work / "out" / nights[2].parent.parent.name
        for s in np.unique(setidx).tolist():
            msg = SetRecords(setidx=s, records=records[setidx == s], stars=stars,
                             station=station[station["lstseq"] // SET_SIZE == s])
            t0 = time.perf_counter()
            done = calibrate_set(cal, night_dir, "LPC", msg)
            times.append(time.perf_counter() - t0)
            sizes.append(len(msg.records))
            assert done.nstars > 0
        yield figure("live_clouds_set_s", round(max(times), 3), "s", bar_s=30,
                     median_s=round(statistics.median(times), 3), sets=len(times),
                     stars=STARS, largest_set_points=max(sizes))
