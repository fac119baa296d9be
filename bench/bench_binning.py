"""Binned set of 50: derotate + co-add every frame, then slow photometry of V <= 10."""

from __future__ import annotations

import time

from bench._core import bench, figure, peak_rss_mb

_THREADS = 2
"""Copy threads of the stack (the machine has 2 cores)."""


@bench("binned_set_s")
def run():
    """Figure: binned_set_s (s) - wall time of one full-size LPC set of 50: ``SetStack.add``
    of 50 calibrated frames, ``finish`` and ``measure_binned`` (V <= 10). Frames are rendered
    by the simulator one at a time (not timed) and bias-subtracted (not timed), so memory
    stays that of the stack plus one frame. Context: the time per step, the stars measured,
    the process peak RSS and the size of the stack's accumulators. The stack uses 2 copy
    threads; ``add_median_1thread`` is the median add() of a one-thread probe (3 frames)."""
    import numpy as np

    from hw.sim.sky import SimulatedSky, SimulationSettings
    from mascara_actors.binning import SetStack, reference_lstseq
    from mascara_actors.catalogue import Catalogue
    from mascara_actors.config import load_config
    from mascara_actors.ephemeris import EphemerisTable
    from mascara_actors.sidereal import SET_SIZE, SiteReference, set_index
    from mascara_actors.slow import measure_binned

    cfg = load_config()
    cam = cfg.camera("LPC")
    cat = Catalogue.load()
    sky = SimulatedSky(cam, cat, settings=SimulationSettings(seed=11))
    # LST ~ 20 h: the Milky Way in Cygnus crosses the zenith camera.
    s0 = int(SiteReference().local_sidereal_time("2026-08-20T23:30:00").lstseq)
    setidx = int(set_index(s0))
    first = reference_lstseq(setidx) - SET_SIZE // 2
    rows, cols = sky.sensor.science_slices
    eph = EphemerisTable(cam.site)
    eph.at(sky.header(first).jd)  # warm the Sun/Moon table

    def frame(lstseq: int):  # type: ignore[no-untyped-def]
        f = sky.exposure(lstseq)
        return f.raw[rows, cols].astype(np.float32) - np.float32(sky.sensor.bias_adu), f.header

    # Single-thread probe: the median add() over a few frames, one copy thread.
    probe = SetStack(sky.model, setidx, threads=1)
    t_single = []
    for ls in range(first, first + 4):
        image, header = frame(ls)
        t = time.perf_counter()
        probe.add(image, header)
        t_single.append(time.perf_counter() - t)
    del probe, image
    t = time.perf_counter()
    stack = SetStack(sky.model, setidx, min_frames=cfg.reduction.binning.min_frames,
                     threads=_THREADS)
    t_init = time.perf_counter() - t
    t_add = []
    for ls in range(first, first + SET_SIZE):
        image, header = frame(ls)
        t = time.perf_counter()
        stack.add(image, header)
        t_add.append(time.perf_counter() - t)
        del image
    t = time.perf_counter()
    binned = stack.finish()
    t_finish = time.perf_counter() - t
    t = time.perf_counter()
    slow = measure_binned(binned.image, binned, sky.model, cat, cfg.reduction.photometry,
                          ephemeris=eph)
    t_phot = time.perf_counter() - t
    total = t_init + sum(t_add) + t_finish + t_phot
    acc_mb = (stack._sum.nbytes + stack._tcount.nbytes
              + (stack._missing.nbytes if stack._missing is not None else 0)) / 1e6
    yield figure(
        "binned_set_s",
        round(total, 3),
        "s",
        frames=binned.nimages,
        n_stars=int(slow.records.size),
        steps={
            "init": round(t_init, 3),
            "add_median": round(float(np.median(t_add)), 4),
            "add_median_1thread": round(float(np.median(t_single[1:])), 4),
            "add_total": round(sum(t_add), 3),
            "finish": round(t_finish, 3),
            "slow_photometry": round(t_phot, 3),
        },
        threads=_THREADS,
        accumulators_mb=round(acc_mb, 1),
        peak_rss_mb=round(peak_rss_mb(), 1),
        bar_s=5.0,
    )
