"""A full output disk during an archive run, for real (a tmpfs): the run says why and what to
do, stops as at a Ctrl-C, keeps what was written, and the same command finishes the nights
once there is room, with the bytes of a run that never met a full disk."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mascara_actors.app.archive.run import ArchiveRun
from mascara_actors.catalogue import Catalogue
from mascara_actors.faults import FAULT_ENV, fill_file_system
from mascara_actors.sidereal import SET_SIZE
from tests.app.archive_dirs import archive_config, assert_same_products, record_short_night
from tests.disks import tmpfs
from tests.stations import N_CAL

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NIGHTS = ("20260320LPC", "20260321LPN")
"""Two nights of 30 frames: the first runs first (same length, earlier date)."""
FIRST_FAILURE = (r"(set {first_set} (binned|slow) not written: could not write \S+:|nightly "
                 r"event log not written: \S+: \[Errno 28\]) No space left on device;.* free "
                 r"disk space \(or raise the file size limit\)")
"""The first product a full disk refused, its cause and what to do: the binner, the saver
and the event log meet the full disk first in any order."""
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != FAULT_ENV}


@dataclass(frozen=True)
class Archive:
    root: Path
    config: Path
    first_set: int
    """The first set of the first night: the disk fills once its fast file is written."""
    reference: Path
    """The whole archive reduced on a disk with room."""


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    tmp = tmp_path_factory.mktemp("disk_full")
    config = archive_config(tmp)
    catalogue = Catalogue.load()
    root = tmp / "raw"
    for key in NIGHTS:
        record_short_night(root / key, key[8:], f"{key[:4]}-{key[4:6]}-{key[6:8]}", 30, N_CAL,
                           ".fits", catalogue)
    first = min(int(p.name[:8]) for p in (root / NIGHTS[0]).glob("*C.fits"))
    archive = Archive(root, config, first // SET_SIZE, tmp / "reference")
    done = _archive(archive, archive.reference)
    assert done.returncode == 0, done.stderr
    return archive


def _archive(archive: Archive, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command on the archive, with one worker."""
    return subprocess.run(
        [sys.executable, "-m", "mascara_actors.cli", "--config", str(archive.config), "archive",
         str(archive.root), "--out", str(out), "--workers", "1"],
        capture_output=True, text=True, timeout=300, env={**ENV, **env})


def test_a_full_disk_stops_the_run_says_why_and_the_rerun_finishes_it(
        archive: Archive, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", 256 << 20) as disk:
        out, filler = disk / "out", disk / "filler"
        # the disk fills once the first set's fast file is written, and stays full while the
        # worker lives
        fault = f"fast-saved:{archive.first_set}=FILL:{filler}"
        full = _archive(archive, out, **{FAULT_ENV: fault})
        said = " ".join(full.stderr.split())
        assert full.returncode == 2, full.stderr
        assert "Traceback" not in full.stderr
        # the table: the first night incomplete, its cause first; the second never reduced
        first = re.search(r"20260320 LPC incomplete: (.*?); missing: (.*?) 20260321", said)
        assert first, said
        assert re.match(FIRST_FAILURE.format(first_set=archive.first_set), first[1]), said
        assert f"set {archive.first_set}: binned image and slow photometry" in first[2]
        # the second, begun before the stop reached its worker, or not begun
        second = re.search(r"20260321 LPN (not started|stopped|failed) ", said)
        assert second, said
        if second[1] == "failed":
            assert re.search(r"20260321 LPN failed: could not write \S+: No space left on "
                             r"device", said), said
        # the last lines: no manifest, why, and what to do; the run cut short, if it was
        assert re.search(rf"manifest NOT written: could not write {out / 'manifests'}/"
                         r"archive-\S+\.csv: No space left on device;.* free disk space \(or "
                         r"raise the file size limit\) and run again", said), said
        cut_short = "the run stopped early, as the manifest could not be written (could not"
        assert (cut_short in said) == (second[1] != "failed"), said
        # the first set's fast file, written before the disk filled, is kept
        assert (out / NIGHTS[0] / "tmp" / f"fast_00{archive.first_set}.hdf5").is_file()

        filler.unlink()
        again = _archive(archive, out)
        assert again.returncode == 0, again.stderr
        assert "2 reduced" in again.stderr
        assert_same_products(out, archive.reference, NIGHTS, against="a run with room")
        assert not list(out.rglob("*.tmp"))


# --- the run's stop, on a real full disk, without a cluster --------------------------------


def _run(out: Path) -> ArchiveRun:
    """A run of no night into ``out``, its directories made (as its start makes them)."""
    run = ArchiveRun([], root=out.parent, out=out, config_dir=REPO / "config",
                     command=("test",))
    run.manifest.parent.mkdir(parents=True)
    run.stop_file.parent.mkdir(parents=True)
    return run


def test_a_manifest_that_fails_stops_the_run_and_is_remembered_once_written(
        tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", 1 << 20) as disk:
        run = _run(disk / "out")
        fill_file_system(disk / "filler")
        run._save_manifest({})
        assert run.progress.stopping
        assert run.stop_file.exists()
        assert "No space left on device" in str(run.manifest_failure)
        assert run.manifest_error is run.manifest_failure
        (disk / "filler").unlink()
        run._save_manifest({})
        assert run.manifest.is_file()
        assert run.manifest_error is None
        assert "No space left on device" in str(run.manifest_failure)  # why it stopped


def test_a_disk_that_takes_no_stop_file_abandons_the_nights(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", 1 << 20, inodes=64) as disk:
        run = _run(disk / "out")
        for k in range(64):  # every inode taken
            try:
                (disk / f"f{k}").touch()
            except OSError:
                break
        run._save_manifest({})
        assert not run.stop_file.exists()
        assert run.abandoned == "abandoned: the output disk took no stop file"


def test_a_signal_while_stopping_abandons_the_nights(tmp_path: Path) -> None:
    run = _run(tmp_path / "out")
    with run._signal_handlers():
        os.kill(os.getpid(), signal.SIGINT)  # the first: the nights finish their set
        assert run.stopped_by == signal.SIGINT
        assert run.stop_file.exists()
        assert run.abandoned is None
        os.kill(os.getpid(), signal.SIGTERM)  # the second: abandoned
        assert run.abandoned == "abandoned by a signal while the run was stopping"
    other = _run(tmp_path / "other")
    other.manifest_failure = OSError("full")
    other._ask_stop()  # as the manifest's failure stops it
    with other._signal_handlers():
        os.kill(os.getpid(), signal.SIGINT)  # the first signal, while stopping: abandoned
        assert other.abandoned == "abandoned by a signal while the run was stopping"
        assert other.stopped_by is None
