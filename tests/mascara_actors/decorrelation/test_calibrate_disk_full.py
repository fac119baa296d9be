"""A full disk during ``calibrate``, for real: a child process runs the command under
RLIMIT_FSIZE (SIGXFSZ ignored), so the kernel refuses the scratch files mid-write. The
command ends with one line naming the file, saying the scratch copy lives in --out and how
much room it needs, and exit status 2 (1 is for a fit that did not converge)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mascara_actors.decorrelation import calibrate_baseline
from mascara_actors.storage.baseline import BaselineReport

from .conftest import quick_settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]

CHILD = r"""
import resource, signal, sys
from mascara_actors.cli import main
limit = int(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(main(sys.argv[2:]))
"""

LIMIT = 2048
"""Bytes: room for the scratch directory's owner file, not for a patch of 100 points."""


def _room_asked(baseline: Path, vmax: float = 8.4) -> str:
    """What the message should ask for: 32 bytes per point of the stars to calibrate."""
    with h5py.File(baseline, "r") as f:
        vmag, nobs = f["stars"]["vmag"][()], f["stars"]["nobs"][()]
    return f"{int(nobs[vmag <= vmax].sum()) * 32 / 1e6:.1f} MB"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_names_the_scratch_file_and_the_room_needed(
        small_baseline: BaselineReport, tmp_path: Path, workers: int) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(LIMIT), "calibrate", str(small_baseline.output),
         "--out", str(out), "--workers", str(workers)],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert re.match(rf"mascara-actors: could not write the scratch file "
                    rf"{re.escape(str(out))}/\.calibrate-[^/]+/patch_\d{{4}}\.npz: "
                    r"File too large; ", last), last
    assert (f"a scratch copy of the baseline's good points in the --out directory ({out}), "
            f"up to about {_room_asked(small_baseline.output)}: free that much space there "
            "or choose an --out on a disk with room") in last
    assert not list(out.glob(".calibrate-*"))  # the scratch copy is removed
    assert not list(out.glob("*.hdf5"))


def test_the_room_asked_for_covers_the_scratch_copy(small_baseline: BaselineReport,
                                                    tmp_path: Path) -> None:
    """The room the message asks for is the size of the scratch copy, a little more."""
    out = tmp_path / "out"
    sizes: list[int] = []

    def progress(stage: str, done: int, total: int, note: str) -> None:
        if note.startswith("iteration 1") and not sizes:  # the ingest has ended
            scratch = next(out.glob(".calibrate-*"))
            sizes.append(sum(p.stat().st_size for p in scratch.glob("patch_*.npz")))

    result = calibrate_baseline(small_baseline.output, out, quick_settings(min_points=100),
                                progress=progress)
    asked = float(_room_asked(small_baseline.output).split()[0]) * 1e6
    assert result.npoints > 100_000
    assert sizes[0] <= asked <= 1.25 * sizes[0]
    assert np.isclose(asked, result.npoints * 32, rtol=0.25)
