"""Reading a full-size raw frame from each file form an archive holds."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench._core import bench, figure

_REPEATS = 7


@bench("read_raw_frame_s")
def run():
    """Figure: read_raw_frame_s (s) - median wall time of ``read_raw`` of one full-size LPC
    science frame, one line per file form (``.fits``, ``.fits.gz`` as the legacy archive,
    ``.fits.fz`` Rice as the simulator records); context: the file size and the median
    time of ``read_raw_header`` (what the archive scan reads of one frame per run of
    frames)."""
    from hw.sim.sky import SimulatedSky, SimulationSettings
    from mascara_actors.catalogue import Catalogue
    from mascara_actors.config import load_config
    from mascara_actors.rawframe import raw_filename, read_raw, read_raw_header, write_raw
    from mascara_actors.sidereal import SiteReference

    cam = load_config().camera("LPC")
    sky = SimulatedSky(cam, Catalogue.load(), settings=SimulationSettings(seed=11))
    s0 = int(SiteReference().local_sidereal_time("2026-08-20T23:30:00").lstseq)
    frame = sky.exposure(s0)
    with tempfile.TemporaryDirectory() as tmp:
        for ext in (".fits", ".fits.gz", ".fits.fz"):
            path = write_raw(Path(tmp) / raw_filename(s0, "C", ext=ext), frame.raw, frame.header)
            read_raw(path)  # warm the page cache and the imports
            pixels = _median_s(lambda p=path: read_raw(p))
            header = _median_s(lambda p=path: read_raw_header(p))
            yield figure("read_raw_frame_s", round(pixels, 4), "s", form=ext,
                         mb=round(path.stat().st_size / 1e6, 1), header_s=round(header, 5),
                         shape=list(frame.raw.shape))


def _median_s(call) -> float:
    walls = []
    for _ in range(_REPEATS):
        t = time.perf_counter()
        call()
        walls.append(time.perf_counter() - t)
    return statistics.median(walls)
