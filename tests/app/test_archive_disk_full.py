"""A full output disk during an archive run, for real (a tmpfs): the run says so and what to do,
keeps what was written, and the same command finishes the night once there is room, with the
bytes of a run that never met a full disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mascara_actors.faults import FAULT_ENV
from mascara_actors.storage.provenance import product_files
from tests.disks import tmpfs

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NIGHT = REPO / "replay_data" / "night"
FIRST_SET = 1306884
"""The first set of the committed night."""
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != FAULT_ENV}
FULL_AFTER_FIRST_SET = f"fast-saved:{FIRST_SET}=FILL:"
"""The fault: the disk fills up once the first set's fast file is written, and stays full
while the process lives (the filler's path follows)."""

# One night's task as a Dask worker runs it, in a process of its own (which ends the fault's
# filling); its outcome as JSON on stdout.
_ONE_NIGHT = r"""
import dataclasses, json, sys
from pathlib import Path
from mascara_actors.app.archive.night import reduce_camera_night
from mascara_actors.app.archive.scan import scan_archive
from mascara_actors.app.archive.task import NightTask
from mascara_actors.config import load_config
root, out = Path(sys.argv[1]), Path(sys.argv[2])
config = load_config()
(night,) = scan_archive(root, config).nights
task = NightTask(night, out, config.directory, ("test",), out / "stop", root)
print(json.dumps(dataclasses.asdict(reduce_camera_night(task))))
"""


def _archive(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command on the committed night with one worker."""
    return subprocess.run(
        [sys.executable, "-m", "mascara_actors.cli", "archive", str(NIGHT), "--out", str(out),
         "--workers", "1"],
        capture_output=True, text=True, timeout=300, env={**ENV, **env})


def _same_products(out: Path, reference: Path) -> None:
    expected = product_files(reference / "20260320LPC")
    got = product_files(out / "20260320LPC")
    assert [p.name for p in got] == [p.name for p in expected]
    for a, b in zip(got, expected, strict=True):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs from the run with room"
    assert not list(out.rglob("*.tmp"))


def test_a_full_disk_stops_the_run_with_what_to_do_and_the_rerun_finishes_it(
        tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert _archive(reference).returncode == 0
    with tmpfs(tmp_path / "disk", 256 << 20) as disk:
        out, filler = disk / "out", disk / "filler"
        full = _archive(out, **{FAULT_ENV: f"{FULL_AFTER_FIRST_SET}{filler}"})
        # the manifest cannot be written either: the run ends there, saying why and what to do
        assert full.returncode == 2, full.stderr
        said = " ".join(full.stderr.split())
        assert f"could not write {out / 'manifests'}" in said, said
        assert "No space left on device" in said
        assert "free disk space (or raise the file size limit) and run again" in said
        assert "Traceback" not in full.stderr
        # the first set's fast file, written before the disk filled, is kept
        assert (out / "20260320LPC" / "tmp" / f"fast_00{FIRST_SET}.hdf5").is_file()
        filler.unlink()
        again = _archive(out)
        assert again.returncode == 0, again.stderr
        assert "1 reduced" in again.stderr
        _same_products(out, reference)


def test_a_night_whose_products_met_a_full_disk_says_why_first(tmp_path: Path) -> None:
    """The manifest's error of a night that ran to its end without some products: the
    first one not written and why (the full disk, and what to do), then what is missing."""
    with tmpfs(tmp_path / "disk", 256 << 20) as disk:
        out = disk / "out"
        done = subprocess.run(
            [sys.executable, "-c", _ONE_NIGHT, str(NIGHT), str(out)], capture_output=True,
            text=True, timeout=300,
            env={**ENV, FAULT_ENV: f"{FULL_AFTER_FIRST_SET}{disk / 'filler'}"})
        assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome["status"] == "incomplete", outcome
    cause, _, missing = outcome["error"].partition("; missing: ")
    assert cause.startswith(f"set {FIRST_SET} binned not written: could not write "), cause
    assert "No space left on device" in cause
    assert "free disk space (or raise the file size limit) and run again" in cause
    assert "more products not written" in cause
    assert f"set {FIRST_SET}: binned image and slow photometry" in missing
    assert "the nightly fast file" in missing
