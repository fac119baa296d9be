"""Disk full, for real: a child process writes under RLIMIT_FSIZE with SIGXFSZ ignored, so
the kernel answers EFBIG mid-write. Nothing partial may remain and nothing already written
may change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mascara_actors.storage import NightFile
from tests.mascara_actors.storage._data import NIGHT

REPO = Path(__file__).resolve().parents[3]

CHILD = r"""
import json, resource, signal, sys
from pathlib import Path
import numpy as np
from mascara_actors.errors import StorageError
from mascara_actors.calibration import update_dark_filename
from mascara_actors.storage import SetWriter
from tests.mascara_actors.storage._data import HEADER, make_night, write_sets

root = Path(sys.argv[1])
night_dir = root / sys.argv[2]
sets = make_night(51, nsets=6, nstars=80)
small, big = sets[:2], sets[2:]
# make the third set much bigger than the others
n = len(big[0].records)
big[0].records = np.concatenate([big[0].records] * 8)
big[0].records["lstseq"] += np.repeat(np.arange(8, dtype="u8") * 10**6, n)
out = {}
with SetWriter(night_dir, header=HEADER) as w:
    write_sets(w, small)
    first = w.combine("fast", minobs=1, keep_sets=True)
    out["nightly_size"] = first.output.stat().st_size
    update_dark_filename("C", "/darks/1.fits", root)
    sizes = [p.stat().st_size for p in sorted((night_dir / "tmp").glob("*.hdf5"))]
    # room for any small set and the old nightly file, not for the big set or a bigger night
    limit = int(max(max(sizes) * 1.5, out["nightly_size"] * 1.2))
    out["limit"] = limit
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        write_sets(w, big[:1])
        out["big_set"] = "written"
    except StorageError as exc:
        out["big_set"] = str(exc)
    write_sets(w, big[1:])
    out["after"] = "small sets still written"
    try:
        w.combine("fast", minobs=1)
        out["combine"] = "written"
    except StorageError as exc:
        out["combine"] = str(exc)
    # the dark table is rewritten whole: grow it beyond the limit
    try:
        update_dark_filename("C", "/darks/" + "x" * (limit + 10), root)
        out["dark"] = "written"
    except StorageError as exc:
        out["dark"] = str(exc)
print(json.dumps(out))
"""


def test_disk_full_leaves_no_partial_file_and_loses_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), NIGHT], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    night_dir = tmp_path / NIGHT
    nightly = night_dir / "lightcurves" / f"fast_{NIGHT}.hdf5"
    big_set = night_dir / "tmp" / "fast_000270002.hdf5"

    # the set that did not fit: a clear error naming the file, and no file at all
    assert out["big_set"].startswith(f"could not write {big_set}: File too large; no partial "
                                     "file was left")
    assert "free disk space" in out["big_set"]
    assert not big_set.exists()
    # the sets that fit were written before and after
    assert out["after"] == "small sets still written"
    names = sorted(p.name for p in (night_dir / "tmp").glob("*.hdf5"))
    assert names == [f"fast_{270_000 + k:09d}.hdf5" for k in (0, 1, 3, 4, 5)]
    # the combine did not fit either: the old nightly file and every set are untouched
    assert out["combine"].startswith(f"could not write {nightly}: File too large")
    assert nightly.stat().st_size == out["nightly_size"]
    with NightFile(nightly) as nf:
        assert nf.header["night"] == "20240315"
    assert not any(tmp_path.rglob("*.tmp"))
    # the dark table keeps its old content
    assert out["dark"].startswith("could not write")
    assert (tmp_path / "darktableC.dat").read_text() == "/darks/1.fits\n"
