"""What the archive command chooses to reduce, on the committed night, and how it reports:
an output directory inside the archive is not searched, nor the products of a station's
nights, ``--out`` the archive itself is refused, filters that match nothing say what there
is, and a large run's table lists the nights not done; what the scan's memory spares the
next run, and what it never hides (no Dask cluster is started)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest
from rich.console import Console

from hw.recorded import BorrowedDarks
from mascara_actors.app.archive.scan import ArchiveScan, CameraNight, _date_nights, scan_archive
from mascara_actors.app.archive.scan_memory import (
    SCAN_MEMORY_NAME,
    SETTLE_S,
    ScanMemory,
    archive_state_dir,
)
from mascara_actors.app.archive.task import NightOutcome
from mascara_actors.cli import main
from mascara_actors.cli.archive import _outcome_table, _print_scan
from mascara_actors.config import load_config
from mascara_actors.night_window import frames_window
from mascara_actors.rawframe import parse_raw_filename, raw_filename
from mascara_actors.storage.provenance import (
    PROVENANCE_NAME,
    SOFTWARE,
    start_provenance,
)
from tests.app.archive_dirs import settle

NIGHT = Path(__file__).resolve().parents[2] / "replay_data" / "night"
FRAMES = sum(parse_raw_filename(p.name) is not None for p in NIGHT.iterdir())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An archive of the committed night, and an output directory inside it (``reduced/``)
    that holds a file named as a raw frame of another night."""
    root = tmp_path / "raw"
    (root / "2026").mkdir(parents=True)
    for path in NIGHT.iterdir():
        _place(path, root / "2026" / path.name)
    (root / "reduced").mkdir()
    _place(_science(), root / "reduced" / raw_filename(1_000_000, "C", ext=".fits.fz"))
    return root


def _science() -> Path:
    return next(p for p in sorted(NIGHT.iterdir()) if p.name.endswith("C.fits.fz"))


def _place(source: Path, target: Path) -> None:
    """A hard link to a committed frame, or a copy where the clone and the temporary
    directory are on different file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def test_an_output_directory_inside_the_archive_is_not_searched(root: Path) -> None:
    config = load_config()
    everything = scan_archive(root, config)
    decoy = raw_filename(1_000_000, "C", ext=".fits.fz")
    assert everything.files == FRAMES + 1  # the scan would find the file under reduced/
    assert any(decoy in p for p in everything.problems)  # its header names another lstseq
    # the output directory however it is spelled: the same directory is left out
    for out in (root / "reduced", root / "2026" / ".." / "reduced"):
        scan = scan_archive(root, config, exclude=out)
        assert scan.files == FRAMES
        assert [n.key for n in scan.nights] == ["20260320LPC"]
        assert f"{root / 'reduced'}: the output directory (--out), not searched for raw " \
               "frames" in scan.problems
        assert not any(decoy in p for p in scan.problems)
    # an output directory that does not exist yet leaves everything to search
    assert scan_archive(root, config, exclude=root / "new").files == FRAMES + 1


def test_the_products_of_a_stations_nights_are_passed_over_in_one_line(
        tmp_path: Path) -> None:
    # a station's output: each camera-night's raw frames in raw/, its products in binned/
    station = tmp_path / "station"
    for night in ("20260320LPC", "20260321LPC"):
        (station / night / "raw").mkdir(parents=True)
        (station / night / "binned").mkdir()
        for name in ("bin_65344225C.fits", "65344190Cmasterdark.fits"):
            _place(_science(), station / night / "binned" / name)
    for path in NIGHT.iterdir():
        _place(path, station / "20260320LPC" / "raw" / path.name)
    # a directory named binned elsewhere is searched as any other
    (station / "binned").mkdir()
    _place(_science(), station / "binned" / raw_filename(1_000_000, "C", ext=".fits.fz"))
    scan = scan_archive(station, load_config())
    assert scan.files == FRAMES + 1
    assert f"{station / '20260320LPC' / 'binned'} and 1 more like it: the binned images and " \
           "masters of a reduced night, not searched for raw frames" in scan.problems
    assert not any("bin_65344225C" in p or "masterdark" in p for p in scan.problems)
    assert [n.key for n in scan.nights] == ["20260320LPC"]
    assert scan.nights[0].science == FRAMES - len(scan.nights[0].darks)


def test_out_the_archive_itself_is_refused(root: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["archive", str(root), "--out", str(root / "2026" / ".."), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "is the archive itself: give another directory" in err
    assert "raw frames;" not in err  # refused before the scan


def test_filters_that_match_nothing_say_what_there_is(root: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    out = str(root / "reduced")
    assert main(["archive", str(root), "--out", out, "--cameras", "LPN", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "0 camera-nights chosen" in err
    assert ("no camera-night matches --nights/--cameras (1 under "
            f"{root}: cameras LPC, night 20260320): check the filters") in err
    assert main(["archive", str(root), "--out", out, "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert f"{root}: {FRAMES} raw frames; 1 camera-night chosen (LPC; night 20260320)" in err
    assert "left out: " + str(root / "reduced") + ": the output directory" in err


def test_an_archive_without_science_frames_says_so(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["archive", str(empty), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no camera-night to reduce under {empty}: no raw science frame was found there; " \
           "check the path" in err
    assert not (tmp_path / "out").exists()


def test_the_dry_run_fits_a_terminal_and_says_why_a_night_would_be_refused(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    night_dir = out / "20260320LPC"
    night_dir.mkdir(parents=True)
    start_provenance(night_dir, config_dir=load_config().directory, command=("test",))
    record = night_dir / PROVENANCE_NAME
    record.write_text(record.read_text().replace(SOFTWARE, "mascara-actors 0.0.9"))
    assert main(["archive", str(root), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().err.splitlines()
    # the table's row, then the reason on a line of its own
    row, why = [line for line in lines if line.split()[:2] == ["20260320", "LPC"]]
    assert row.split() == ["20260320", "LPC", str(FRAMES - 10), "10", "refuse"]
    assert why.startswith("20260320 LPC would be refused: holds a reduction by "
                          "mascara-actors 0.0.9")
    assert lines.index(why) == lines.index(row) + 1
    table = lines[lines.index(row) - 3:lines.index(row) + 1]
    assert table[0].strip() == f"would reduce into {out}"
    assert max(map(len, table[1:])) <= 80


def test_a_night_names_where_its_frames_lie_and_its_worker_lists_them(root: Path) -> None:
    (night,) = scan_archive(root, load_config(), exclude=root / "reduced").nights
    directory = root / "2026"
    raw = sorted(p for p in directory.iterdir() if parse_raw_filename(p.name) is not None)
    assert night.frames() == tuple(raw)
    assert night.science == FRAMES - len(night.darks)
    # what is sent to a worker does not grow with the night's frames: its darks (a master's
    # worth) and where the rest lie
    assert len(pickle.dumps(night)) - len(pickle.dumps(night.darks)) < 200
    # the worker lists the directory as it is then: a frame deleted since the scan is not
    # listed, nor a frame of another camera or beyond the night's range added since
    (run,) = night.runs
    last = parse_raw_filename(raw[-1].name)
    assert last is not None
    os.link(raw[-1], directory / raw_filename(last[0], "N", ext=".fits.fz"))
    os.link(raw[-1], directory / raw_filename(run.last + 1, "C", ext=".fits.fz"))
    raw[-1].unlink()
    assert night.frames() == tuple(raw[:-1])


def test_the_scan_says_how_far_it_is(root: Path) -> None:
    said: list[str] = []
    scan_archive(root, load_config(), exclude=root / "reduced", progress=said.append)
    # raw/ (nothing in it), then raw/2026; raw/reduced/ is not searched
    assert said[:2] == ["0 raw frames in 1 directory searched",
                        f"{FRAMES} raw frames in 2 directories searched"]
    assert said[-1] == f"{FRAMES} raw frames: dating the nights, 1 of 1 site-days"


def test_nights_are_dated_alike_in_a_pool_of_processes() -> None:
    config = load_config()
    # a week at each site, one lstseq a sidereal day apart (13,463 slots), mid-evening at
    # La Palma; the site-days of a large archive
    site_days = {(camera[:2], k): (config.camera(camera).site, 65344200 + 13463 * k)
                 for camera in ("LPC", "LSC") for k in range(7)}
    counted: list[int] = []
    pooled = _date_nights(site_days, config.reduction.night, counted.append, workers=2,
                          parallel_from=1)
    assert counted == list(range(1, 15))
    alone = _date_nights(site_days, config.reduction.night, lambda _: None, workers=1)
    assert pooled == alone
    assert pooled == {key: frames_window(site, config.reduction.night, [lstseq])
                      .night.strftime("%Y%m%d") for key, (site, lstseq) in site_days.items()}
    # consecutive nights at each site
    assert [pooled[("LP", k)] for k in range(7)] == [f"202603{20 + k}" for k in range(7)]


def test_a_large_run_lists_only_the_nights_not_done() -> None:
    def outcomes(n: int) -> list[NightOutcome]:
        done = [NightOutcome(night=f"2026{k // 28 + 1:02d}{k % 28 + 1:02d}", camera="LPC",
                             status="reduced" if k % 2 else "verified", frames=120,
                             reduced=120 * (k % 2), wall_s=20.0, worker="tls://10.0.0.5:4000")
                for k in range(n)]
        return [*done, NightOutcome(night="20261231", camera="LPN", status="failed",
                                    frames=120, error="the disk is full")]

    def shown(rows: list[NightOutcome]) -> list[str]:
        console = Console(record=True, width=80)
        table, notes = _outcome_table(rows, Path("/data/reduced"))
        console.print(table)
        return [*console.export_text().splitlines(), *notes]

    small = shown(outcomes(39))
    assert sum(line.startswith("2026") for line in small) == 40 + 1  # the rows, the error
    large = shown(outcomes(40))
    assert large[0].strip() == "camera-nights not done (1; the manifest has every night)"
    assert [line.split()[:3] for line in large if line.startswith("2026")] == [
        ["20261231", "LPN", "failed"], ["20261231", "LPN", "failed:"]]
    assert large[-1] == "20261231 LPN failed: the disk is full"


def test_failed_frames_and_warnings_are_pointed_at_where_they_are_named(tmp_path: Path
                                                                         ) -> None:
    def note(status: str, *, reduced: int = 118, failed: int = 2, warnings: int = 0,
             error: str = "") -> list[str]:
        night = NightOutcome(night="20260320", camera="LPC", status=status, frames=120,
                             reduced=reduced, failed=failed, warnings=warnings, wall_s=20.0,
                             error=error)
        return _outcome_table([night], tmp_path)[1]

    head = "20260320 LPC: 2 frames could not be reduced (unreadable, no stars...)"
    events = tmp_path / "20260320LPC" / "logs" / "events.jsonl"
    # no report (a stopped night, or one whose report met a full disk): the event log
    assert note("stopped") == [f"{head}: which and why in {events}"]
    assert note("reduced") == [f"{head}: which and why in {events}"]
    # a night whose every frame failed: its error, and where each frame's reason is
    none = "no frame of the night could be reduced"
    assert note("incomplete", reduced=0, failed=120, error=none) == [
        f"20260320 LPC incomplete: {none}",
        "20260320 LPC: 120 frames could not be reduced (unreadable, no stars...): which and "
        f"why in {events}"]
    report = tmp_path / "20260320LPC" / "summary" / "summary_20260320LPC.txt"
    report.parent.mkdir(parents=True)
    report.write_text("frames failed ...")
    assert note("reduced") == [f"{head}: which and why in {report}"]
    assert note("reduced", warnings=1) == [
        f"{head} and 1 warning (its masters, a resumed night...): which and why in {report}"]
    assert note("reduced", failed=0, warnings=2) == [
        "20260320 LPC: 2 warnings (its masters, a resumed night...): which and why in "
        f"{report}"]
    assert note("reduced", failed=0) == []


def test_many_files_left_out_are_said_a_line_a_kind_and_the_dry_run_lists_each(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An archive of years may hold a stray FITS file in each night's directory: beyond 20,
    a line per kind of problem with its first file and how many more; --dry-run lists
    every one."""
    root = tmp_path / "raw"
    for day in range(1, 31):
        night = root / f"LPC-2026-04-{day:02d}"
        night.mkdir(parents=True)
        (night / "truth.fits").write_bytes(b"")
    (root / "LPC-2026-04-01" / "focus.fits").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["archive", str(root), "--out", str(out)]) == 2  # no science frame
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("left out:")]
    first = root / "LPC-2026-04-01"
    assert lines == [
        f"left out: {first / 'focus.fits'}: a FITS file whose name is not a raw frame's "
        "({lstseq:08d}{CAM}[dark|bias|flat].fits[.gz|.fz])",
        f"left out: {first / 'truth.fits'}: a FITS file whose name is not a raw frame's "
        "({lstseq:08d}{CAM}[dark|bias|flat].fits[.gz|.fz]) (and 29 more like it)",
        "left out: 31 in all; --dry-run lists every one"]
    assert main(["archive", str(root), "--out", str(out), "--dry-run"]) == 2
    listed = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith("left out:")]
    assert len(listed) == 31
    assert all(f"{root / f'LPC-2026-04-{day:02d}' / 'truth.fits'}: a FITS file" in "\n".join(
        listed) for day in range(1, 31))


def test_nights_short_of_darks_are_named_a_few_at_a_time(tmp_path: Path) -> None:
    def night(day: int, darks: int, borrowed: BorrowedDarks | None = None) -> CameraNight:
        return CameraNight(camera_id="LPC", night=f"202604{day:02d}", runs=(), science=120,
                           darks=tuple(tmp_path / f"{k}.fits" for k in range(darks)),
                           borrowed=borrowed)

    lend = BorrowedDarks("20260401", tuple(tmp_path / f"{k}.fits" for k in range(10)))
    nights = (night(1, 10), *(night(d, 0, lend) for d in range(2, 9)),
              *(night(d, 3) for d in range(9, 16)))
    console = Console(record=True, width=200, soft_wrap=True)
    _print_scan(console, ArchiveScan(nights=nights, problems=(), files=15 * 130),
                argparse.Namespace(root=tmp_path, out=tmp_path / "out", dry_run=False), 10)
    notes = [line for line in console.export_text().splitlines() if line.startswith("note:")]
    assert notes[:5] == [f"note: 202604{d:02d}LPC has 0 darks: it borrows the 10 of night "
                         "20260401" for d in range(2, 7)]
    assert notes[5] == ("note: and 2 more nights borrow the darks of another (the --dry-run "
                        "table's darks column says whose)")
    assert notes[6].startswith(
        "note: 7 nights with fewer than 10 darks and no night of its camera in the archive "
        "with as many (20260409LPC, 20260410LPC, 20260411LPC, 20260412LPC, 20260413LPC and 2 "
        f"more): the master dark is the newest of the dark table in {tmp_path / 'out' / 'state'}")
    assert len(notes) == 7


def _scan_with_memory(root: Path, out: Path, *, trust: bool = True,
                      config_dir: Path | None = None) -> tuple[ArchiveScan, ScanMemory]:
    """A scan of ``root`` with the memory in ``out``, saved after it as a run saves it."""
    config = load_config(config_dir)
    memory = ScanMemory.load(out, config.directory, root, trust=trust)
    scan = scan_archive(root, config, exclude=out, memory=memory)
    memory.save()
    return scan, memory


def test_a_second_scan_reads_only_the_directories_that_changed(root: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(root)
    first, _ = _scan_with_memory(root, out)
    assert (first.directories, first.unchanged, first.files) == (3, 0, FRAMES + 1)
    assert (archive_state_dir(out) / SCAN_MEMORY_NAME).is_file()
    again, _ = _scan_with_memory(root, out)
    # reduced/ holds a frame whose header does not read: it is read again every time
    assert (again.directories, again.unchanged) == (3, 2)
    assert (again.nights, again.problems, again.files) == (first.nights, first.problems,
                                                           first.files)
    # a frame added: its directory is read again (and, changed just now, read again by the
    # scan after: a change in the same tick as the scan could otherwise be missed)
    directory = root / "2026"
    science = sorted(p for p in directory.iterdir() if p.name.endswith("C.fits.fz"))
    last = parse_raw_filename(science[-1].name)
    assert last is not None
    _place(science[-1], directory / raw_filename(last[0] + 1, "C", ext=".fits.fz"))
    for _ in range(2):
        added, _ = _scan_with_memory(root, out)
        assert (added.directories, added.unchanged, added.files) == (3, 1, FRAMES + 2)
        assert added.nights[0].science == first.nights[0].science + 1
    # settled, the directory is kept again; then a frame removed and the directory's
    # modification time put back, as `rsync -a` does: its change time tells
    hour_ago = time.time() - 3600
    os.utime(directory, (hour_ago, hour_ago))
    remembered, _ = _scan_with_memory(root, out)
    assert (remembered.unchanged, remembered.files) == (1, FRAMES + 2)
    (directory / raw_filename(last[0] + 1, "C", ext=".fits.fz")).unlink()
    os.utime(directory, (hour_ago, hour_ago))
    put_back, _ = _scan_with_memory(root, out)
    assert (put_back.unchanged, put_back.files) == (1, FRAMES + 1)
    assert put_back.nights == first.nights


def test_rescan_reads_what_the_memory_cannot_tell(root: Path, tmp_path: Path) -> None:
    # what a frame overwritten in place would leave: the memory holds what the directory,
    # its times unchanged, no longer does (here, a frame fewer)
    out = tmp_path / "out"
    settle(root)
    first, _ = _scan_with_memory(root, out)
    path = archive_state_dir(out) / SCAN_MEMORY_NAME
    saved = json.loads(path.read_text())
    (run,) = saved["directories"]["2026/"]["held"][1]
    run[3] -= 1
    path.write_text(json.dumps(saved))
    assert _scan_with_memory(root, out)[0].files == first.files - 1
    rescan, _ = _scan_with_memory(root, out, trust=False)
    assert (rescan.unchanged, rescan.files, rescan.nights) == (0, first.files, first.nights)
    assert _scan_with_memory(root, out)[0].files == first.files  # and the memory is mended


def test_a_run_none_of_whose_frames_read_is_read_again_next_time(tmp_path: Path) -> None:
    root, out = tmp_path / "raw", tmp_path / "out"
    root.mkdir()
    science = [p for p in sorted(NIGHT.iterdir()) if p.name.endswith("C.fits.fz")][:3]
    for path in science:
        (root / path.name).write_bytes(b"not a FITS file")
    settle(root)
    broken, _ = _scan_with_memory(root, out)
    assert not broken.nights
    assert any("of camera C: none of the first 3 can be read" in p for p in broken.problems)
    for path in science:  # mended in place: the directory's time does not change
        stamp = root.stat()
        (root / path.name).write_bytes(path.read_bytes())
        os.utime(root, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    mended, _ = _scan_with_memory(root, out)
    assert mended.unchanged == 0
    assert [(n.key, n.science) for n in mended.nights] == [("20260320LPC", 3)]


def test_the_memory_keeps_the_nights_dates_for_the_configuration_that_gave_them(
        root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(root)
    first, _ = _scan_with_memory(root, out)
    assert [n.night for n in first.nights] == ["20260320"]
    path = archive_state_dir(out) / SCAN_MEMORY_NAME
    saved = json.loads(path.read_text())
    assert list(saved["nights"].values()) == ["20260320"]
    # a date the memory gives is not computed again: one planted there is believed...
    saved["nights"] = {key: "20200101" for key in saved["nights"]}
    path.write_text(json.dumps(saved))
    assert [n.night for n in _scan_with_memory(root, out)[0].nights] == ["20200101"]
    # ...by a scan with the same configuration only
    path.write_text(json.dumps(saved))
    config_dir = tmp_path / "config"
    shutil.copytree(load_config().directory, config_dir)
    with (config_dir / "sites.toml").open("a") as f:
        f.write("\n# another configuration\n")
    other, _ = _scan_with_memory(root, out, config_dir=config_dir)
    assert [n.night for n in other.nights] == ["20260320"]
    assert other.unchanged == 2  # the directories' facts do not depend on it


def test_a_damaged_memory_is_said_and_everything_searched_again(
        root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    settle(root)
    first, _ = _scan_with_memory(root, out)
    path = archive_state_dir(out) / SCAN_MEMORY_NAME
    whole = path.read_text()
    path.write_text(whole[: len(whole) // 2])  # cut short
    scan, memory = _scan_with_memory(root, out)
    assert memory.note.startswith(f"the last scan's memory {path} cannot be read (")
    assert memory.note.endswith("every directory is searched again")
    assert (scan.unchanged, scan.nights, scan.problems) == (0, first.nights, first.problems)
    assert json.loads(path.read_text()) == json.loads(whole)  # written whole again
    # one directory's entry garbled: that directory alone is read again
    saved = json.loads(whole)
    saved["directories"]["2026/"]["held"] = [["x"], [["C", "not a number"]], []]
    path.write_text(json.dumps(saved))
    scan, _ = _scan_with_memory(root, out)
    assert (scan.unchanged, scan.nights) == (1, first.nights)
    # entries that parse but are not what a scan writes: each is a directory read again,
    # or a night dated again, never a path outside the archive or the output
    saved = json.loads(whole)
    saved["directories"][""]["held"][0] = ["../.."]
    saved["directories"]["2026/"]["held"][1][0][1] = 1e999
    saved["nights"] = {key: "../../elsewhere" for key in saved["nights"]}
    path.write_text(json.dumps(saved))
    scan, _ = _scan_with_memory(root, out)
    assert (scan.unchanged, scan.nights, scan.problems) == (0, first.nights, first.problems)
    for text in ("[" * 100_000, json.dumps({**json.loads(whole), "schema": "x"})):
        path.write_text(text)
        scan, memory = _scan_with_memory(root, out)
        assert "every directory is searched again" in memory.note
        assert (scan.unchanged, scan.nights) == (0, first.nights)
    # a memory of another version of the software is not used (its rules may differ)
    path.write_text(whole.replace(SOFTWARE, "mascara-actors 0.0.1"))
    scan, memory = _scan_with_memory(root, out)
    assert memory.note == (f"the last scan's memory {path} is of another version of the "
                           "software: every directory is searched again")
    assert scan.unchanged == 0
    # a memory that cannot be written is logged, and the scan stands
    path.unlink()
    path.mkdir()
    with caplog.at_level(logging.WARNING):
        scan, _ = _scan_with_memory(root, out)
    assert scan.nights == first.nights
    assert "could not be written" in caplog.text
    assert "search every directory again" in caplog.text


def test_the_command_says_what_the_memory_spared_and_a_dry_run_writes_none(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    settle(root)
    assert main(["archive", str(root), "--out", str(out), "--dry-run"]) == 0
    assert not out.exists()
    assert "unchanged since the last scan" not in capsys.readouterr().err
    _scan_with_memory(root, out)
    assert main(["archive", str(root), "--out", str(out), "--dry-run"]) == 0
    assert ("note: 2 of the 3 directories unchanged since the last scan, not read again "
            "(--rescan reads them)") in capsys.readouterr().err
    assert main(["archive", str(root), "--out", str(out), "--dry-run", "--rescan"]) == 0
    assert "unchanged since the last scan" not in capsys.readouterr().err


def test_a_directory_that_changed_just_before_the_scan_is_not_kept(root: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(root)
    recently = time.time() - SETTLE_S / 2
    os.utime(root / "2026", (recently, recently))
    _scan_with_memory(root, out)
    assert _scan_with_memory(root, out)[0].unchanged == 1  # raw/ (reduced/ never is)
