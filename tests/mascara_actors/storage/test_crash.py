"""Crash test: a writer process killed with SIGKILL at random moments never leaves a corrupt
file, and the combine after a restart equals the combine of an uninterrupted run."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mascara_actors.errors import StorageError
from mascara_actors.storage import NightFile, NightId
from mascara_actors.storage._sources import SetSource
from tests.mascara_actors.storage._data import (
    CRASH_CHILD,
    NIGHT,
    make_night,
    nightly_content,
    run_night,
)

REPO = Path(__file__).resolve().parents[3]
SEED, NSETS, NSTARS = 21, 5, 40
TRIALS = 24


def _spawn(night_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", CRASH_CHILD, str(night_dir), str(SEED),
                             str(NSETS), str(NSTARS)], env=env, stdout=subprocess.PIPE,
                            text=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict, float]:
    """Bytes and content of the nightly file of an uninterrupted child run, and the child's
    working time in seconds (shared, read-only)."""
    night_dir = tmp_path_factory.mktemp("reference") / NIGHT
    proc = _spawn(night_dir)
    out, _ = proc.communicate(timeout=120)
    lines = out.split()
    assert proc.returncode == 0
    assert lines[:2] == ["ready", "done"]
    path = night_dir / "lightcurves" / f"fast_{NIGHT}.hdf5"
    return path.read_bytes(), nightly_content(path), float(lines[2])


def _check_no_corrupt_file(night_dir: Path, reference: dict) -> None:
    nid = NightId.from_dir(night_dir)
    for path in sorted((night_dir / "tmp").glob("*.hdf5")):
        SetSource.open_checked(path, nid, "fast")  # raises on any incomplete file
    for path in sorted((night_dir / "lightcurves").glob("*.hdf5")):
        with NightFile(path) as nf:
            assert len(nf.ids()) > 0
        # a nightly file is only ever installed complete
        assert nightly_content(path) == reference


def test_kill_at_random_moments(tmp_path: Path, uninterrupted: tuple[bytes, dict, float]
                                ) -> None:
    ref_bytes, ref_content, work_s = uninterrupted
    sets = make_night(SEED, nsets=NSETS, nstars=NSTARS)
    rng = random.Random(5)
    outcomes = {"killed": 0, "finished": 0, "tmp_left": 0}
    for trial in range(TRIALS):
        night_dir = tmp_path / str(trial) / NIGHT
        proc = _spawn(night_dir)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, 1.1 * work_s))
        proc.kill()
        proc.wait()
        proc.stdout.close()
        outcomes["killed" if proc.returncode == -9 else "finished"] += 1
        outcomes["tmp_left"] += any(night_dir.rglob("*.tmp"))
        try:
            _check_no_corrupt_file(night_dir, ref_content)
        except StorageError as exc:  # pragma: no cover - the failure this test exists for
            pytest.fail(f"trial {trial}: corrupt file after kill -9: {exc}")
        # restart: the writer cleans up, writes what is missing and combines again
        out = run_night(night_dir, sets)
        assert nightly_content(out) == ref_content, f"trial {trial}"
        assert out.read_bytes() == ref_bytes, f"trial {trial}"
        assert not any(night_dir.rglob("*.tmp"))
        assert list((night_dir / "tmp").glob("*.hdf5")) == []
    # the kills landed mid-run often enough to mean something
    assert outcomes["killed"] >= TRIALS * 3 // 4, outcomes
