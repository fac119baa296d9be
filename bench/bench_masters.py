"""Masters of a full-size calibration sequence, the work done in the gap before the science."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench._core import bench, figure, peak_rss_mb


@bench("calibration_masters_s")
def run():
    """Figure: calibration_masters_s (s) - wall time of ``make_masters`` on a full-size
    (4072 x 2720) dusk sequence of LPC as configured (``n_bias``, ``n_dark``, ``n_flat``,
    default 20 each): master bias, master dark (entered in the dark table), master flat.
    The frames are rendered by the simulator and written as raw FITS first (not timed); the
    masters read them in row blocks. Context: frames per kind, the gap the station leaves for
    this work (``calibration_gap_slots`` x 6.38 s) and the process peak RSS."""
    from hw.sim.sky import SimulatedSky, SimulationSettings
    from mascara_actors.calibration import make_masters
    from mascara_actors.catalogue import Catalogue
    from mascara_actors.config import load_config
    from mascara_actors.rawframe import raw_filename, write_raw
    from mascara_actors.sidereal import SiteReference, slot_length_solar_s

    cfg = load_config()
    cal = cfg.reduction.calibration
    cam = cfg.camera("LPC")
    sky = SimulatedSky(cam, Catalogue.load(), settings=SimulationSettings(seed=12))
    s0 = int(SiteReference().local_sidereal_time("2026-03-20T19:00:00").lstseq)
    counts = {"bias": cal.n_bias, "dark": cal.n_dark, "flat": cal.n_flat}
    with tempfile.TemporaryDirectory(prefix="bench-masters-") as tmp:
        root = Path(tmp)
        raw = root / "raw"
        raw.mkdir()
        frames: dict[str, list[Path]] = {}
        lstseq = s0
        for kind, n in counts.items():
            frames[kind] = []
            for _ in range(n):
                f = sky.exposure(lstseq, kind)
                path = raw / raw_filename(lstseq, cam.letter, kind)
                write_raw(path, f.raw, f.header)
                frames[kind].append(path)
                lstseq += 1
        t = time.perf_counter()
        masters = make_masters(
            **frames,
            camera_letter=cam.letter,
            calibration=cal,
            binned_dir=root / "binned",
            state_dir=root / "state",
        )
        elapsed = time.perf_counter() - t
    gap_s = cfg.reduction.night.calibration_gap_slots * slot_length_solar_s()
    yield figure(
        "calibration_masters_s",
        round(elapsed, 2),
        "s",
        frames=counts,
        made=list(masters.made),
        shape=[sky.sensor.ny, sky.sensor.nx],
        gap_s=round(gap_s, 1),
        peak_rss_mb=round(peak_rss_mb(), 1),
    )
