"""The archive re-reduction on real Dask clusters: a LocalCluster, and a `dask scheduler` with
two `dask worker` processes on loopback.

Four small simulated camera-nights of two cameras (LPC, LPN; 2026-03-20 and -21; the crop512
sensor, 30 science frames in two sets of 15, one night 28) lie in one archive, mixed: two
cameras in one directory, the others at other depths, plain, gzip and Rice-compressed frames,
a truncated and a corrupt frame, a foreign FITS file, a file with a raw frame's name that is
not one, and a night with no darks (it borrows the camera's other night's). Every night the
archive reduces is compared, byte for byte, with the real `mascara-actors --replay` of that
night.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from mascara_actors.app.archive.manifest import read_manifest
from mascara_actors.app.archive.night import reduce_camera_night
from mascara_actors.app.archive.scan import scan_archive
from mascara_actors.app.archive.task import NightTask
from mascara_actors.catalogue import Catalogue
from mascara_actors.cli import main
from mascara_actors.config import load_config
from mascara_actors.faults import FAULT_ENV
from mascara_actors.numpy_dispatch import VARIABLE, this_cpu_sorts_slowly
from mascara_actors.rawframe import raw_filename
from mascara_actors.sidereal import SET_SIZE
from mascara_actors.storage.provenance import SOFTWARE, product_files, read_provenance
from tests.app.archive_dirs import (
    archive_config,
    assert_same_products,
    record_short_night,
    settle,
)
from tests.app.dask_daemons import ENV, Worker, dask_cluster
from tests.stations import N_CAL

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "mascara_actors.cli"]
FRAMES = 30
SHORT = "20260320LPN"
"""A night of two frames fewer (second in date order): the longest nights run first."""
SCIENCE = {"20260320LPC": FRAMES, SHORT: FRAMES - 2, "20260321LPC": FRAMES,
           "20260321LPN": FRAMES}
"""Science frames of each night."""
TWENTIETH = ["20260320LPC", "20260320LPN"]


@dataclass(frozen=True)
class Archive:
    root: Path
    config: Path
    nights: dict[str, Path]
    """Night key (``20260320LPC``) -> a directory holding that night's frames alone (for
    20260321LPN, its own: the darks it borrows are not there)."""
    references: Path
    """Where the `--replay` of each night went."""
    broken: dict[str, str]
    """Night key -> the name of its truncated or corrupt frame."""


def _science(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if re.fullmatch(r"\d{8}[A-Z]\.fits.*", p.name))


def _run(*args: str | Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    tmp = tmp_path_factory.mktemp("archive")
    config = archive_config(tmp)
    catalogue = Catalogue.load()
    made = tmp / "made"
    references = tmp / "replayed"
    nights: dict[str, Path] = {}
    broken: dict[str, str] = {}
    replays = []
    # each night is replayed (the real command, in the background) as soon as it is made
    for key, darks, compression in (("20260320LPC", N_CAL, ".fits.fz"),
                                    ("20260320LPN", N_CAL, ".fits.gz"),
                                    ("20260321LPC", N_CAL, ".fits"),
                                    ("20260321LPN", 0, ".fits.fz")):
        date = f"{key[:4]}-{key[4:6]}-{key[6:8]}"
        night = nights[key] = record_short_night(made / key, key[8:], date, SCIENCE[key], darks,
                                      compression, catalogue)
        replayed = night
        if key == "20260320LPN":  # a frame whose header is garbage: the night goes on
            corrupt = _science(night)[7]
            corrupt.write_bytes(b"\x00garbage" * 400)
            broken[key] = corrupt.name
        if key == "20260321LPC":  # a truncated frame: the night goes on
            truncated = _science(night)[5]
            truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
            broken[key] = truncated.name
        if key == "20260321LPN":
            # the night without darks is the night with the darks it borrows: what
            # `--replay` of it would be, had they been taken with it
            replayed = made / f"{key}-with-borrowed-darks"
            replayed.mkdir()
            for path in [*night.iterdir(), *nights["20260320LPN"].glob("*dark*")]:
                os.link(path, replayed / path.name)
        # the real command; the first in its worker processes, the others in its threads
        # (the bytes are the same, and a worker process start costs seconds)
        threads = ["--in-process"] if replays else []
        replays.append(subprocess.Popen(
            [*CLI, "--config", str(config), "--replay", str(replayed), "--out",
             str(references), *threads],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV))

    root = tmp / "raw"
    layout = {
        "20260320LPC": root / "mixed",
        "20260320LPN": root / "mixed",
        "20260321LPC": root / "2026" / "03" / "21",
        "20260321LPN": root / "deep" / "er" / "still",
    }
    for key, directory in layout.items():
        directory.mkdir(parents=True, exist_ok=True)
        for path in nights[key].iterdir():
            os.link(path, directory / path.name)
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(root / "mixed" / "notes.fits")
    (root / "mixed" / raw_filename(1, "C")).write_bytes(b"SIMPLE  = not a frame at all")
    (root / "mixed" / "observing-log.txt").write_text("clear all night\n")

    for replay in replays:
        _, err = replay.communicate(timeout=240)
        assert replay.returncode == 0, err
    for key in nights:
        assert len(product_files(references / key)) >= 4, key
    return Archive(root, config, nights, references, broken)


def _frame_events(night_dir: Path) -> Counter[int]:
    """How many times each lstseq was reduced, over every run of the night."""
    log = night_dir / "logs" / "events.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(int(m.group(1)) for line in lines
                   if (m := re.search(r'"kind":"FrameReducedEvent".*?"lstseq":(\d+)', line)))


def _manifest(out: Path) -> dict[str, dict[str, str]]:
    (path,) = sorted((out / "manifests").glob("archive-*.csv"))[-1:]
    return {row["night"] + row["camera"]: row for row in read_manifest(path)}


@dataclass(frozen=True)
class Run:
    """The whole archive on a LocalCluster of two workers: interrupted (Ctrl-C) as soon as
    a night has started, then run again to the end."""

    out: Path
    first: subprocess.CompletedProcess[str]
    first_manifest: dict[str, dict[str, str]]
    first_reduced: dict[str, Counter[int]]
    """Night -> how many times each lstseq was reduced, after the first run."""
    second: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def local_run(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("local") / "out"
    args = [*CLI, "--config", str(archive.config), "archive", str(archive.root), "--out",
            str(out), "--workers", "2"]
    settle(archive.root)  # the first run's scan leaves the second one what it saw
    run = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env=ENV, start_new_session=True)
    deadline = time.monotonic() + 120
    # as soon as a night has started (its event log exists): a night asked to stop goes on
    # to the end of its current set, and the first set must not be its last (two sets of
    # 15 frames; waiting for its first frame left too little margin on a loaded machine)
    while time.monotonic() < deadline and not any(
            (out / k / "logs" / "events.jsonl").exists() for k in archive.nights):
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C at the terminal: the whole process group
    _, err = run.communicate(timeout=120)
    first = subprocess.CompletedProcess(args, run.returncode, "", err)
    first_manifest = _manifest(out)
    first_reduced = {k: _frame_events(out / k) for k in archive.nights}
    second = subprocess.run(args, capture_output=True, text=True, timeout=240, env=ENV)
    return Run(out, first, first_manifest, first_reduced, second)


def test_the_dry_run_lists_the_nights_and_reduces_none(archive: Archive, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    out = tmp_path / "out"
    assert main(["--config", str(archive.config), "archive", str(archive.root), "--out",
                 str(out), "--dry-run"]) == 0
    err = capsys.readouterr().err
    for key in archive.nights:
        assert re.search(rf"{key[:8]}\s.*{key[8:]}\s.*{SCIENCE[key]}\s.*reduce", err), key
    assert re.search(r"20260321\s.*LPN\s.*0 \(\+4 of 20260320\)", err)
    assert not out.exists()


def test_a_local_cluster_reduces_each_night_as_replay_does(archive: Archive,
                                                           local_run: Run) -> None:
    out, err = local_run.out, local_run.second.stderr
    assert local_run.second.returncode == 0, err
    # what was left out is said, file by file
    assert "notes.fits: a FITS file whose name is not a raw frame's" in err
    assert f"{raw_filename(1, 'C')}" in err
    assert "20260321LPN has 0 darks: it borrows the 4 of night 20260320" in err
    assert "dashboard: off" in err
    # a line per night in 80 columns, the worker without its scheme
    row = rf"(?m)^20260320 +LPC +reduced +\d+/{FRAMES} +\d+ +[\d.]+ +127\.0\.0\.1:\d+ *$"
    assert re.search(row, err), err
    assert " INFO distributed." not in err  # Dask's chatter only with -v
    rows = _manifest(out)
    assert sorted(rows) == sorted(archive.nights)
    for key, row in rows.items():
        earlier = local_run.first_manifest[key]
        reduced = int(row["reduced"]) + int(earlier["reduced"])
        # a broken frame fails in each run that reads it (a set binned again reads it too)
        assert reduced + (key in archive.broken) == SCIENCE[key], (row, earlier)
        if key not in archive.broken:
            assert int(row["failed"]) + int(earlier["failed"]) == 0, (row, earlier)
        assert row["worker"].startswith("tls://127.0.0.1:"), row
    assert_same_products(out, archive.references, list(archive.nights))
    record = read_provenance(out / "20260321LPN")
    assert record is not None
    assert record.status == "complete"
    reference = read_provenance(archive.references / "20260321LPN")
    assert reference is not None
    assert record.config_hash == reference.config_hash
    (dark,) = [p.name for p in product_files(out / "20260321LPN") if "masterdark" in p.name]
    assert record.masters == {"dark": dark}
    assert record.command[-4:] == ("--out", str(out), "--workers", "2")
    said = " ".join(err.split())
    # the borrowed darks are on the night's record: its report names the master and says
    # whose darks made it; the table points there
    borrowed = out / "20260321LPN" / "summary" / "summary_20260321LPN.txt"
    report = borrowed.read_text()
    assert re.search(rf"(?m)^  Master dark +{dark}$", report), report
    # (said by each run that reduced some of it: the first may have begun it)
    assert re.search(r"warning x[12] \[masters\] first .*: 0 darks in this night: the "
                     r"master dark is made from the 4 darks of night 20260320", report), report
    for key, row in rows.items():  # each run that reduces it makes its masters
        warned = key == "20260321LPN" and row["status"] == "reduced"
        assert row["warnings"] == ("1" if warned else "0"), (key, row)
    if rows["20260321LPN"]["status"] == "reduced":
        assert re.search(r"20260321 LPN: 1 warning \(its masters, a resumed night\.\.\.\): "
                         rf"which and why in {re.escape(str(borrowed))}", said), said
    for key, name in archive.broken.items():
        failed_log = (out / key / "logs" / "events.jsonl").read_text()
        assert re.search(rf'"kind":"FrameFailed".*{name}', failed_log), key
        # the table's note points at the night's report, which names the frame and why
        report = out / key / "summary" / f"summary_{key}.txt"
        assert (f"{key[:8]} {key[8:]}: 1 frame could not be reduced (unreadable, no stars...): "
                f"which and why in {report}") in said, said
        assert re.search(rf"{name}: .*(truncated|not FITS|cannot be read)", report.read_text())


def test_an_interrupted_run_resumes_and_reduces_nothing_twice(archive: Archive,
                                                             local_run: Run) -> None:
    out, first = local_run.out, local_run.first_manifest
    assert local_run.first.returncode == 130, local_run.first.stderr
    assert sorted(first) == sorted(archive.nights)
    statuses = Counter(row["status"] for row in first.values())
    assert statuses["stopped"] >= 1, first
    assert statuses["not started"] >= 1, first  # two workers, four nights
    # the longest nights first: the short one, second in date order, waits for the others
    assert {key: int(row["frames"]) for key, row in first.items()} == SCIENCE
    assert first[SHORT]["status"] == "not started", first
    for key, row in first.items():
        if row["status"] == "stopped":  # it finished its current set, and saved it
            assert int(row["reduced"]) > 0, row
            assert (max(local_run.first_reduced[key]) + 1) % SET_SIZE == 0, row
    # the resumed run did not search again what the first one had
    assert re.search(r"note: [1-9]\d* of the \d+ directories unchanged since the last scan",
                     local_run.second.stderr), local_run.second.stderr
    second = _manifest(out)
    for key, row in second.items():
        expected = "verified" if first[key]["status"] == "reduced" else "reduced"
        assert row["status"] == expected, (key, first[key], row)
        counts = _frame_events(out / key)
        assert max(counts.values()) == 1, f"{key}: a frame reduced twice"
        assert len(counts) == SCIENCE[key] - (key in archive.broken), key


def test_a_worker_that_does_not_see_the_disks_fails_the_night_saying_so(
        archive: Archive, tmp_path: Path) -> None:
    """As a worker of a cluster whose machine does not mount the disk (or one unmounted
    since the scan): the night fails at once, naming the path, instead of Dask retrying a
    FileNotFoundError."""
    root = tmp_path / "raw"
    shutil.copytree(archive.nights["20260321LPC"], root / "2026" / "21")
    (night,) = scan_archive(root, load_config(archive.config)).nights
    out = tmp_path / "out"
    (out / "state").mkdir(parents=True)  # as a run makes it, for its stop file
    task = NightTask(night, out, archive.config, ("test",), out / "state" / "stop", root)
    said = "must be on a disk every worker mounts at the same path (is it still mounted here?)"

    (root / "2026").rename(tmp_path / "moved")  # the night's directory is gone
    outcome = reduce_camera_night(task)
    assert outcome.status == "failed"
    assert outcome.error.endswith(f"does not see {root / '2026' / '21'} of the night: moved or "
                                  "unmounted since the scan; run the same command again to "
                                  "scan the archive as it is now"), outcome.error
    root.rename(tmp_path / "unmounted")
    outcome = reduce_camera_night(task)
    assert (outcome.status, outcome.reduced) == ("failed", 0)
    assert f"does not see the archive {root}: the archive and --out {said}" in outcome.error
    (tmp_path / "unmounted").rename(root)
    (tmp_path / "moved").rename(root / "2026")
    (out / "state").rmdir()  # an empty mount point: the disk is not mounted there
    outcome = reduce_camera_night(task)
    assert f"does not see the output directory {out}: the archive and --out {said}" in (
        outcome.error)
    assert list(out.iterdir()) == []  # nothing written where the disk should be


def test_a_night_of_which_no_frame_can_be_reduced_says_why(archive: Archive,
                                                          tmp_path: Path) -> None:
    root = tmp_path / "raw"
    shutil.copytree(archive.nights["20260321LPC"], root)
    science = _science(root)
    for path in science:  # every frame's header readable, its data cut short
        path.write_bytes(path.read_bytes()[:5760])
    (night,) = scan_archive(root, load_config(archive.config)).nights
    out = tmp_path / "out"
    outcome = reduce_camera_night(
        NightTask(night, out, archive.config, ("test",), tmp_path / "stop", root))
    assert (outcome.status, outcome.reduced, outcome.failed) == ("incomplete", 0, len(science))
    assert re.fullmatch(
        r"no frame of the night could be reduced \(every frame failed with: .*"
        rf"{re.escape(str(root))}/\d{{8}}C\.fits: the data of an HDU ends at byte \d+ but the "
        r"file has 5760 bytes: the file is truncated\)", outcome.error), outcome.error


def test_a_complete_night_is_verified_and_another_version_refused(
        archive: Archive, local_run: Run, tmp_path: Path) -> None:
    """The task a worker runs, run here: idempotent, and never mixing versions."""
    (night,) = scan_archive(archive.root, load_config(archive.config),
                            nights="20260320", cameras=["LPC"]).nights
    out = tmp_path / "out"
    shutil.copytree(local_run.out / night.key, out / night.key)
    task = NightTask(night, out, archive.config, ("test",), tmp_path / "stop", archive.root)
    log = out / night.key / "logs" / "events.jsonl"
    size = log.stat().st_size
    outcome = reduce_camera_night(task)
    assert (outcome.status, outcome.reduced, outcome.error) == ("verified", 0, "")
    assert log.stat().st_size == size
    # a night recorded complete without its report (killed between the two by an earlier
    # version, which recorded first) has it made again when verified
    report = out / night.key / "summary" / f"summary_{night.key}.txt"
    shutil.rmtree(report.parent)
    assert reduce_camera_night(task).status == "verified"
    assert report.read_text().startswith(f"Reduction Summary {night.key}\n")

    # a product changed with its size and modification time kept (a copy that kept the
    # times, not the bytes): only hashing every product finds it; the night is then
    # refused, never recorded complete again with it
    product = product_files(out / night.key)[-1]
    made = _change_keeping_times(product)
    assert reduce_camera_night(task).status == "verified"
    outcome = reduce_camera_night(replace(task, thorough=True))
    assert outcome.status == "failed"
    assert outcome.error == (f"complete, but {product}: changed since it was made: move "
                             f"{out / night.key} away to reduce the night again")
    assert reduce_camera_night(task).status == "verified"  # its record is as it was
    product.write_bytes(made)  # and a changed time is enough to have it hashed
    outcome = reduce_camera_night(task)
    assert (outcome.status, outcome.error) == ("verified", "")

    provenance = out / night.key / "provenance.json"
    provenance.write_text(provenance.read_text().replace(SOFTWARE, "mascara-actors 0.0.9"))
    outcome = reduce_camera_night(task)
    assert outcome.status == "failed"
    assert "holds a reduction by mascara-actors 0.0.9" in outcome.error
    assert "never mixed" in outcome.error
    assert log.stat().st_size == size
    assert_same_products(out, archive.references, [night.key])

    (tmp_path / "stop").touch()
    assert reduce_camera_night(task).status == "not started"


def test_a_complete_night_whose_frames_changed_since_is_refused_not_verified(
        archive: Archive, local_run: Run, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A night's products are those of the frames it was reduced from: with a frame of it
    moved away since (or one more arrived), verifying them would keep a stale reduction."""
    key = "20260320LPC"
    root = tmp_path / "raw"
    root.mkdir()
    gone = _science(archive.nights[key])[-1]
    for path in archive.nights[key].iterdir():
        if path != gone:
            os.link(path, root / path.name)
    out = tmp_path / "out"
    shutil.copytree(local_run.out / key, out / key)
    (night,) = scan_archive(root, load_config(archive.config)).nights
    assert night.science == FRAMES - 1
    why = (f"it was reduced complete from {FRAMES} science frames, and the archive now holds "
           f"{FRAMES - 1}: move {key} out of the output directory (or reduce into another "
           "--out) to reduce the night again")
    outcome = reduce_camera_night(
        NightTask(night, out, archive.config, ("test",), tmp_path / "stop", root))
    assert (outcome.status, outcome.error) == ("failed", f"{out / key}: {why}")
    assert main(["--config", str(archive.config), "archive", str(root), "--out", str(out),
                 "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert re.search(rf"{key[:8]}\s.*{key[8:]}\s.*{FRAMES - 1}\s.*refuse", err), err
    assert f"{key[:8]} {key[8:]} would be refused: {why}" in " ".join(err.split())


def test_verify_hashes_every_product_of_the_complete_nights(
        archive: Archive, local_run: Run, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    key = "20260320LPC"
    out = tmp_path / "out"
    shutil.copytree(local_run.out / key, out / key)  # the times kept, as `cp -p` keeps them
    product = product_files(out / key)[0]
    _change_keeping_times(product)
    args = ["--config", str(archive.config), "archive", str(archive.root), "--out", str(out),
            "--nights", key[:8], "--cameras", key[8:], "--workers", "1"]
    assert main(args) == 0
    assert re.search(rf"(?m)^{key[:8]} +{key[8:]} +verified ", capsys.readouterr().err)
    assert main([*args, "--verify"]) == 1
    assert (f"{key[:8]} {key[8:]} failed: complete, but {product}: changed since it was made: "
            f"move {out / key} away to reduce the night again") in capsys.readouterr().err


def _change_keeping_times(product: Path) -> bytes:
    """Flip one bit of ``product`` and put its times back, as a copy that kept the times but
    not the bytes leaves it; its bytes before."""
    made, st = product.read_bytes(), product.stat()
    product.write_bytes(made[:-1] + bytes([made[-1] ^ 1]))
    os.utime(product, ns=(st.st_atime_ns, st.st_mtime_ns))
    return made


def test_the_scan_groups_frames_by_camera_and_night_whatever_the_directories(
        archive: Archive) -> None:
    scan = scan_archive(archive.root, load_config(archive.config))
    assert {n.key: (n.science, len(n.darks)) for n in scan.nights} == {
        key: (frames, 0 if key == "20260321LPN" else N_CAL) for key, frames in SCIENCE.items()}
    for n in scan.nights:
        assert sorted(p.name for p in n.frames()) == sorted(
            p.name for p in archive.nights[n.key].iterdir())
    borrowed = {n.key: n.borrowed for n in scan.nights if n.borrowed is not None}
    assert list(borrowed) == ["20260321LPN"]
    assert borrowed["20260321LPN"].night == "20260320"
    assert [p.name for p in borrowed["20260321LPN"].paths] == sorted(
        p.name for p in archive.nights["20260320LPN"].iterdir() if "dark" in p.name)
    assert len(scan.problems) == 2
    assert scan.files == sum(SCIENCE.values()) + 3 * N_CAL + 1
    assert [n.key for n in scan_archive(archive.root, load_config(archive.config),
                                        nights="202603[2]1", cameras=["lpn"]).nights] == [
        "20260321LPN"]


def test_a_worker_killed_mid_night_is_retried_on_a_dask_scheduler(archive: Archive,
                                                                  tmp_path: Path) -> None:
    """One of the two `dask worker`s is killed (SIGKILL, by itself: the crash tests' fault
    switch) when the night it reduces has saved its first set, whichever night that is;
    the scheduler gives that night to the other worker, which resumes it."""
    first_sets = {int(_science(archive.nights[k])[0].name[:8]) // SET_SIZE for k in TWENTIETH}
    (first_set,) = first_sets  # the same set index for both nights
    out = tmp_path / "out"
    # no nanny: the killed worker stays dead (its process group is itself alone)
    workers = [(["--no-nanny"], {FAULT_ENV: f"fast-saved:{first_set}=SIGKILL"}),
               (["--no-nanny"], {})]
    with dask_cluster(tmp_path, workers) as (address, daemons):
        run = subprocess.run(
            [*CLI, "--config", str(archive.config), "archive", str(archive.root), "--out",
             str(out), "--scheduler", address, "--retries", "2", "--nights", "20260320"],
            capture_output=True, text=True, env=ENV, timeout=240)
        assert run.returncode == 0, run.stderr
        assert daemons[1].wait(timeout=10) == -signal.SIGKILL, "the worker was not killed"
        # started as the README says, but without the allocator's setting: said, not refused
        assert "2 of 2 workers (tcp://127.0.0.1:" in run.stderr
        assert "were started without MALLOC_ARENA_MAX=1 in their environment" in run.stderr
    rows = _manifest(out)
    assert sorted(rows) == TWENTIETH
    assert {row["status"] for row in rows.values()} == {"reduced"}
    starts = {k: _log(out / k).count('"kind":"NightStarted"') for k in TWENTIETH}
    assert sorted(starts.values()) == [1, 2], starts
    (killed,) = (k for k in TWENTIETH if starts[k] == 2)
    # killed once its first set was saved: the retry resumed after it, not from the start
    reduced = _frame_events(out / killed)
    first = [n for lstseq, n in reduced.items() if lstseq // SET_SIZE == first_set]
    assert first, reduced
    assert max(first) == 1, reduced
    assert_same_products(out, archive.references, TWENTIETH)


def test_a_worker_of_another_version_is_refused_before_any_night(
        archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A `dask worker` whose software reports another version, and answers the run's
    question in the form of an earlier release (both set by a preload script, as another
    install would): the run stops before it reduces or writes anything, naming the worker
    and what to do. A second worker, of this version but started without numpy's setting
    for this CPU, is said to lack it (on AMD Zen 4, where numpy's AVX-512 sort is slow)."""
    preload = tmp_path / "other_version.py"
    preload.write_text("import mascara_actors.app.archive.run as run\n"
                       "run.SOFTWARE = 'mascara-actors 0.0.1'\n"
                       "run._worker_setup = lambda: (run.SOFTWARE, True)\n")
    out = tmp_path / "out"
    workers: list[Worker] = [
        (["--preload", str(preload)], {}), ([], {VARIABLE: None})]
    with dask_cluster(tmp_path, workers) as (address, _):
        code = main(["--config", str(archive.config), "archive", str(archive.root), "--out",
                     str(out), "--scheduler", address])
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(r"workers run another version of the software \(tcp://127\.0\.0\.1:\d+ "
                     r"runs mascara-actors 0\.0\.1\); this is " + re.escape(SOFTWARE), err), err
    assert "install the same version on every worker" in err
    assert not out.exists() or not any(out.iterdir())
    lacks = re.search(rf"1 of 2 workers \(tcp://127\.0\.0\.1:\d+\) were started without "
                      rf"{VARIABLE}=X86_V4 in their environment", caplog.text)
    assert bool(lacks) is this_cpu_sorts_slowly(), caplog.text


def test_a_scheduler_that_does_not_answer_is_said_within_seconds(
        archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    code = main(["--config", str(archive.config), "archive", str(archive.root), "--out",
                 str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    assert time.monotonic() - t0 < 10
    err = capsys.readouterr().err
    assert "no Dask scheduler answers at tcp://127.0.0.1:9 within 3 s" in err
    # said before the scan, which takes minutes on an archive of years
    assert "raw frames" not in err, err
    assert not (tmp_path / "manifests").exists()


def _log(night_dir: Path) -> str:
    log = night_dir / "logs" / "events.jsonl"
    return log.read_text() if log.exists() else ""


def test_a_night_killed_in_its_combine_is_finished_by_the_retry(
        archive: Archive, tmp_path: Path) -> None:
    """A worker killed in the nightly combine, every set saved and binned (the fast file
    done, the slow one just renamed into place): the retry has no frame left to reduce or
    bin; it finishes the combine, and the night is reduced. (A worker killed this late in
    the Dask test was reported incomplete: "no frame of the night could be reduced".)"""
    (night,) = scan_archive(archive.root, load_config(archive.config),
                            nights="20260320", cameras=["LPC"]).nights
    out = tmp_path / "out"
    task = NightTask(night, out, archive.config, ("test",), tmp_path / "stop", archive.root)
    code = ("import pickle, sys; from mascara_actors.app.archive.night import "
            "reduce_camera_night; reduce_camera_night(pickle.loads(sys.stdin.buffer.read()))")
    killed = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(task),
                            start_new_session=True, timeout=240, capture_output=True,
                            env={**ENV, FAULT_ENV: "combined:slow=SIGKILL"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(list((out / night.key / "tmp").glob("slow_*.hdf5"))) == 2
    outcome = reduce_camera_night(task)
    assert (outcome.status, outcome.reduced, outcome.error) == ("reduced", 0, "")
    assert_same_products(out, archive.references, [night.key])
