"""Synthetic nights for the storage tests, and an independent reference combine.

Every function builds fresh arrays from a seed, so callers may modify what they get.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mascara_actors import records as R
from mascara_actors.sidereal import SET_SIZE

NIGHT = "20240315LPC"
HEADER = {"lat": 28.76, "lon": -17.88, "height": 2396.0, "aper": np.array([2.5, 4.5]),
          "skyrad": np.array([6.0, 21.0]), "exptime": 6.4}
FIRST_SET = 270_000  # lstseq 13.5 M: a night in 2015


@dataclass
class SetData:
    """Everything one per-set file holds."""

    setidx: int
    records: np.ndarray
    stars: np.ndarray
    station: np.ndarray
    astrometry: np.ndarray | None


def catalogue(rng: np.random.Generator, nstars: int) -> np.ndarray:
    """Star rows with distinct HIP numbers, sorted by id."""
    stars = np.zeros(nstars, dtype=R.star_dtype)
    stars["id"] = np.sort(rng.choice(118_000, nstars, replace=False)) + 1
    stars["ra"] = rng.uniform(0, 360, nstars)
    stars["dec"] = rng.uniform(-30, 90, nstars)
    stars["vmag"] = rng.uniform(2, 8.4, nstars)
    stars["bmag"] = stars["vmag"] + rng.uniform(-0.2, 1.5, nstars)
    stars["sptype"] = rng.choice([b"A0", b"G2", b"K5", b"M1"], nstars)
    stars["blend"] = rng.integers(0, 2, nstars)
    stars["blendvalue"] = rng.uniform(0, 1, nstars)
    return stars


def jd_of(lstseq: np.ndarray) -> np.ndarray:
    """A JD for each lstseq (6.38 solar s per slot; only monotony matters here)."""
    return 2457000.0 + (lstseq.astype(np.float64) - FIRST_SET * SET_SIZE) * 6.38 / 86400


def make_night(seed: int, *, nsets: int = 6, nstars: int = 60, naper: int = 2,
               solved_every: int = 2) -> list[SetData]:
    """A night of ``nsets`` consecutive sets: each star is on the chip for a window of frames
    (entering and leaving at random) and misses some frames; sets are 0, 1, ... after
    FIRST_SET. Records come in frame order, as the reducer emits them."""
    rng = np.random.default_rng(seed)
    stars = catalogue(rng, nstars)
    nframes = nsets * SET_SIZE
    first = rng.integers(-nframes // 3, nframes, nstars)
    length = rng.integers(1, nframes, nstars)
    rec_dtype = R.record_dtype(naper)
    out = []
    for k in range(nsets):
        setidx = FIRST_SET + k
        lstseq = np.arange(setidx * SET_SIZE, (setidx + 1) * SET_SIZE, dtype=np.uint64)
        frame = (lstseq - FIRST_SET * SET_SIZE).astype(np.int64)
        on = (frame[:, None] >= first[None, :]) & (frame[:, None] < (first + length)[None, :])
        on &= rng.uniform(size=on.shape) > 0.05
        fi, si = np.nonzero(on)
        n = len(fi)
        recs = R.empty_records(n, rec_dtype)
        recs["id"] = stars["id"][si]
        recs["lstseq"] = lstseq[fi]
        recs["lstidx"] = lstseq[fi] % 13500
        recs["pflag"] = rng.choice([0, 0, 0, 1, 8], n)
        recs["aflag"] = 0 if k % 3 else rng.integers(0, 2)
        for i in range(naper):
            recs[f"flux{i}"] = rng.normal(1e4, 100, n)
            recs[f"eflux{i}"] = rng.uniform(50, 150, n)
        recs["sky"] = rng.normal(1000, 10, n)
        recs["esky"] = rng.uniform(5, 15, n)
        recs["peak"] = rng.uniform(2e3, 6e4, n)
        recs["x"] = rng.uniform(0, 4008, n)
        recs["y"] = rng.uniform(0, 2672, n)
        recs["exptime"] = 6.4
        recs["jdmid"] = jd_of(recs["lstseq"]) + 3.2 / 86400
        recs["lst"] = (recs["lstseq"] % 13500) * 6.4 / 3600
        recs["flag"] = ((recs["pflag"] != 0) | (recs["aflag"] != 0)).astype(np.uint8)
        seen = np.unique(si)
        set_stars = stars[seen].copy()
        set_stars["nobs"] = np.bincount(si, minlength=nstars)[seen]
        set_stars["jdstart"] = jd_of(lstseq[:1])[0] + rng.uniform(0, 0.01, len(seen))
        station = R.empty_records(SET_SIZE, R.station_dtype)
        station["lstseq"] = lstseq
        station["lstidx"] = lstseq % 13500
        station["lstday"] = lstseq // 13500
        station["jd"] = jd_of(lstseq)
        station["utc"] = b"2015-03-15 22:00:00.000000"
        station["nstars"] = np.bincount(fi, minlength=SET_SIZE)
        astro = None
        if k % solved_every == 0:
            astro = np.zeros(1, dtype=R.astrometry_dtype(5))
            astro["lstseq"] = lstseq[25]
            astro["setidx"] = setidx
            astro["params"] = rng.normal(size=5)
            astro["dr"] = rng.uniform(0, 0.2)
        out.append(SetData(setidx, recs, set_stars, station, astro))
    return out


def write_sets(writer, sets: list[SetData], kind: str = "fast") -> list[Path]:
    """Write each set through ``writer`` (an open SetWriter)."""
    return [writer.write_set(kind, s.setidx, s.records, stars=s.stars, station=s.station,
                             astrometry=s.astrometry) for s in sets]


def reference_lightcurves(record_arrays: list[np.ndarray], minobs: int) -> dict[int, bytes]:
    """Independent combine with a dict: first (id, lstseq) wins; stars under minobs dropped.

    Returns the bytes of each star's records (id removed, sorted by lstseq), keyed by id.
    """
    seen: dict[tuple[int, int], np.void] = {}
    for arr in record_arrays:
        for rec in arr:
            seen.setdefault((int(rec["id"]), int(rec["lstseq"])), rec)
    per_star: dict[int, list[np.void]] = {}
    for (star, _), rec in sorted(seen.items()):
        per_star.setdefault(star, []).append(rec)
    if not record_arrays:
        return {}
    names = [n for n in record_arrays[0].dtype.names if n != "id"]
    out = {}
    for star, recs in per_star.items():
        if len(recs) >= minobs:
            arr = np.array(recs, dtype=record_arrays[0].dtype)
            out[star] = _packed(arr[names]).tobytes()
    return out


def _packed(arr: np.ndarray) -> np.ndarray:
    from numpy.lib import recfunctions as rfn

    return rfn.repack_fields(arr)


def nightly_lightcurves(path: Path) -> dict[int, bytes]:
    """Bytes of each stored light curve of a nightly file, keyed by id."""
    with h5py.File(path, "r") as f:
        return {int(k): _packed(v[()]).tobytes() for k, v in f["lightcurves"].items()}


def nightly_content(path: Path) -> dict[str, object]:
    """Everything a nightly file holds, as comparable Python values."""
    with h5py.File(path, "r") as f:
        content: dict[str, object] = {
            "header": {k: np.asarray(v).tolist() for k, v in f["header"].attrs.items()},
            "lightcurves": {int(k): _packed(v[()]).tobytes()
                            for k, v in f["lightcurves"].items()},
        }
        for group in ("station", "stars", "astrometry"):
            if group in f:
                content[group] = {k: v[()].tobytes() for k, v in f[group].items()}
        return content


def run_night(night_dir: Path, sets: list[SetData], *, minobs: int = 20) -> Path:
    """What a saver does: write the sets not on disk yet, then combine (deleting the sets).

    Used by the crash test both in the killed child and for the restart.
    """
    from mascara_actors.storage import SetWriter

    with SetWriter(night_dir, header=HEADER) as w:
        done = set(w.completed_sets("fast").tolist())
        write_sets(w, [s for s in sets if s.setidx not in done])
        return w.combine("fast", minobs=minobs).output


CRASH_ZYGOTE = """
import os, sys, time
from pathlib import Path
from tests.mascara_actors.storage._data import make_night, run_night

def say(*words):
    # One write(2) per line: a pipe write this short is atomic, so a writer killed while
    # it reports leaves no partial line. (print() writes each piece on its own when
    # PYTHONUNBUFFERED is set: a kill between them left "done " to merge with "exit".)
    os.write(1, (" ".join(map(str, words)) + "\\n").encode())

sets = make_night(int(sys.argv[1]), nsets=int(sys.argv[2]), nstars=int(sys.argv[3]))
say("zygote")
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            say("ready", os.getpid())
            t0 = time.perf_counter()
            run_night(Path(line.strip()), sets)
            say("done", time.perf_counter() - t0)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    say("exit", pid, status)
"""
"""Parent of the crash test's writers: imports once, then forks one writer per night
directory read on stdin (argv = seed, nsets, nstars). Lines out, each written whole by one
``os.write``: ``ready PID``, maybe ``done SECONDS``, then ``exit PID STATUS``."""
