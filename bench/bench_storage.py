"""Nightly combine of a synthetic full night: 6,750 frames x 6,000 stars in 135 per-set files.

The per-set files are generated first (vectorised, fixed seed) in a temporary directory; only
the combine is timed, in a child process whose peak RSS is read with
``getrusage(RUSAGE_CHILDREN)``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._core import bench, figure
from mascara_actors import records as R
from mascara_actors.sidereal import SET_SIZE, SLOT_SIDEREAL_S, SLOTS_PER_SIDEREAL_DAY, lstidx
from mascara_actors.storage import SetWriter

_REPO = Path(__file__).resolve().parent.parent
NFRAMES = 6750
NSTARS = 6000
NIGHT = "20240315LPC"
FIRST_LSTSEQ = SLOTS_PER_SIDEREAL_DAY * 1000 + 5000  # a set boundary in the evening


def _synthetic_set(rng: np.random.Generator, setidx: int, ids: np.ndarray,
                   rec_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One set of SET_SIZE frames with every star on every frame (the worst case for memory)."""
    lstseq = np.arange(setidx * SET_SIZE, (setidx + 1) * SET_SIZE, dtype=np.uint64)
    n = len(ids) * SET_SIZE
    recs = np.zeros(n, dtype=rec_dtype)
    # the reducer emits frame by frame: records ordered by lstseq, then star
    recs["lstseq"] = np.repeat(lstseq, len(ids))
    recs["id"] = np.tile(ids, SET_SIZE)
    recs["lstidx"] = lstidx(recs["lstseq"])
    flux = rng.uniform(1e3, 1e5, len(ids))
    for i in range(R.FAST_NAPER):
        recs[f"flux{i}"] = np.tile(flux * (1 + 0.3 * i), SET_SIZE) + rng.normal(0, 30, n)
        recs[f"eflux{i}"] = np.sqrt(np.abs(recs[f"flux{i}"]) / 0.62 + 900)
    recs["sky"] = rng.normal(1000, 10, n)
    recs["esky"] = rng.normal(10, 0.5, n)
    recs["peak"] = rng.uniform(2e3, 6e4, n)
    recs["x"] = rng.uniform(0, 4008, n)
    recs["y"] = rng.uniform(0, 2672, n)
    recs["alt"] = rng.uniform(20, 90, n)
    recs["az"] = rng.uniform(0, 360, n)
    recs["ccdtemp"] = -15.0
    recs["exptime"] = 6.4
    jd = 2460385.0 + (lstseq - FIRST_LSTSEQ).astype(np.float64) * 6.38 / 86400
    recs["jdmid"] = np.repeat(jd + 3.2 / 86400, len(ids))
    recs["lst"] = np.repeat(lstidx(lstseq) * SLOT_SIDEREAL_S / 3600, len(ids))
    stars = np.zeros(len(ids), dtype=R.star_dtype)
    stars["id"] = ids
    stars["ra"] = rng.uniform(0, 360, len(ids))
    stars["dec"] = rng.uniform(-30, 90, len(ids))
    stars["vmag"] = rng.uniform(2, 8.4, len(ids))
    stars["jdstart"] = jd[0]
    station = np.zeros(SET_SIZE, dtype=R.station_dtype)
    station["lstseq"] = lstseq
    station["jd"] = jd
    station["lst"] = lstidx(lstseq) * SLOT_SIDEREAL_S / 3600
    station["exptime"] = 6.4
    return recs, stars, station


def generate_night(outdir: Path, *, nframes: int = NFRAMES, nstars: int = NSTARS,
                   seed: int = 5) -> Path:
    """Write the per-set files of a synthetic night; return the night directory."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(118000, nstars, replace=False)).astype(np.int32)
    night_dir = outdir / NIGHT
    first = FIRST_LSTSEQ // SET_SIZE
    rec_dtype = R.fast_record_dtype()
    with SetWriter(night_dir, header={"lat": 28.76, "lon": -17.88, "height": 2396.0,
                                      "aper": np.array([2.5, 4.5]),
                                      "skyrad": np.array([6.0, 21.0]), "exptime": 6.4}) as w:
        for setidx in range(first, first + nframes // SET_SIZE):
            recs, stars, station = _synthetic_set(rng, setidx, ids, rec_dtype)
            w.write_set("fast", setidx, recs, stars=stars, station=station)
    return night_dir


_CHILD = """
import json, resource, sys, time
from mascara_actors.storage import combine_night
t0 = time.perf_counter()
rep = combine_night(sys.argv[1], "fast", compression=sys.argv[2], keep_sets=False)
print(json.dumps({"s": time.perf_counter() - t0, "nstars": rep.nstars,
                  "nrecords": rep.nrecords, "nsets": rep.nsets,
                  "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@bench("combine_night_s")
def run():
    """Figure: combine_night_s (s) - nightly combine of 6,750 frames x 6,000 stars (gzip);
    figure: combine_night_peak_rss_mb (MB) - peak RSS of the process doing it (bar 1500)."""
    with tempfile.TemporaryDirectory(prefix="bench_storage_") as tmp:
        t0 = time.perf_counter()
        night_dir = generate_night(Path(tmp))
        gen_s = time.perf_counter() - t0
        sets_mb = sum(p.stat().st_size for p in (night_dir / "tmp").glob("*.hdf5")) / 2**20
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(_REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(night_dir), "gzip"],
                              check=True, capture_output=True, text=True, env=env)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        nightly = next((night_dir / "lightcurves").glob("*.hdf5"))
        context = {"frames": NFRAMES, "stars": NSTARS, "records": out["nrecords"],
                   "sets": out["nsets"], "compression": "gzip",
                   "sets_mb": round(sets_mb, 1),
                   "nightly_mb": round(nightly.stat().st_size / 2**20, 1),
                   "generate_s": round(gen_s, 1)}
        yield figure("combine_night_s", round(out["s"], 2), "s", **context)
        if before >= peak_mb * 1024:
            # an earlier child of this process peaked higher: RUSAGE_CHILDREN cannot see
            # this one, so take the child's own account
            peak_mb = out["self_mb"]
        yield figure("combine_night_peak_rss_mb", round(peak_mb, 1), "MB", bar=1500, **context)
