"""How the archive's scan groups frames into camera-nights where the directories do not
help: calibration taken in daylight, symbolic links to directories, one directory holding
the same camera letter of two sites, and the same frame in two places (a backup copy). A
second scan, from the memory the first left, gives the same answer."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from mascara_actors.app.archive import listing
from mascara_actors.app.archive.scan import ArchiveScan, CameraNight, scan_archive
from mascara_actors.app.archive.scan_memory import SCAN_MEMORY_NAME, archive_state_dir
from mascara_actors.config import load_config
from mascara_actors.night_window import frames_window
from mascara_actors.rawframe import RawHeader, raw_filename, read_raw_header, write_raw
from mascara_actors.sidereal import lstidx, slot_length_solar_s
from tests.app.archive_dirs import settle
from tests.app.test_archive_scan import FRAMES, NIGHT, _place, _scan_with_memory

DARKS = 10
"""Darks of the committed night (before its science), of FRAMES."""
NEXT_NIGHT = 13537
"""Slots from the committed night to the same time of the next one at La Palma."""
MORNING = 65351573
"""A slot the morning after the committed night, the Sun at +33 deg: of its local day, but
a night window from it alone is the next night's."""


@functools.cache
def _header() -> RawHeader:
    return read_raw_header(next(p for p in sorted(NIGHT.iterdir()) if p.name.endswith("C.fits.fz")))


def _frame(directory: Path, lstseq: int, kind: str = "science", *,
           site: str = "LaPalma") -> Path:
    """A raw frame of camera C at ``site`` in slot ``lstseq``: 8 x 8 pixels under the header
    of a committed frame moved to that slot (the scan reads headers only)."""
    header = _header()
    days = (lstseq - header.lstseq) * slot_length_solar_s() / 86400.0
    moved = dataclasses.replace(
        header, lstseq=lstseq, lstidx=int(lstidx(lstseq)), jd=header.jd + days,
        jdmid=header.jdmid + days, utc=header.utc + datetime.timedelta(days=days), site=site,
        imagetyp=kind)
    directory.mkdir(parents=True, exist_ok=True)
    return write_raw(directory / raw_filename(lstseq, "C", kind),
                     np.zeros((8, 8), np.uint16), moved)


def _committed(directory: Path, *, science: int | None = None) -> None:
    """The committed night's darks and its first ``science`` science frames (all of them
    when None) in ``directory``."""
    directory.mkdir(parents=True)
    frames = sorted(p for p in NIGHT.iterdir() if p.name.endswith(".fits.fz"))
    for path in frames[:None if science is None else DARKS + science]:
        _place(path, directory / path.name)


def _nights(scan: ArchiveScan) -> list[tuple[str, int, int]]:
    return [(n.key, n.science, len(n.darks)) for n in scan.nights]


def _night(scan: ArchiveScan, key: str) -> CameraNight:
    return next(n for n in scan.nights if n.key == key)


def _twice(root: Path, out: Path) -> ArchiveScan:
    """A scan of ``root`` from no memory, and one from the memory it left: the same."""
    settle(root)
    first, _ = _scan_with_memory(root, out)
    again, _ = _scan_with_memory(root, out)
    assert again.unchanged > 0
    assert (again.nights, again.problems, again.files) == (first.nights, first.problems,
                                                           first.files)
    return first


def test_darks_of_the_morning_take_the_night_they_end(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    for k in range(DARKS):  # in a directory the walk meets first
        _frame(root / "a_darks", MORNING + k, "dark")
    _committed(root / "b_night1")
    for k in range(20):
        _frame(root / "c_night2", 65344200 + NEXT_NIGHT + k)
    config = load_config()
    site = config.camera("LPC").site
    assert f"{frames_window(site, config.reduction.night, [MORNING]).night:%Y%m%d}" == "20260321"
    scan = _twice(root, tmp_path / "out")
    assert _nights(scan) == [("20260320LPC", FRAMES - DARKS, DARKS), ("20260321LPC", 20, 0)]
    # the morning's darks are the night's, after its science: not its master's
    first = _night(scan, "20260320LPC")
    assert [r.directory.name for r in first.runs] == ["a_darks", "b_night1"]
    assert {p.parent.name for p in first.darks} == {"b_night1"}
    # a memory left by a scan that dated site-days from any frame is not believed
    path = archive_state_dir(tmp_path / "out") / SCAN_MEMORY_NAME
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "schema": 2,
                                "nights": dict.fromkeys(saved["nights"], "20260321")}))
    again, memory = _scan_with_memory(root, tmp_path / "out")
    assert "is of another version of the software" in memory.note
    assert again.nights == scan.nights
    # alone in their local day, they are still of the night they end, with nothing to reduce
    (root / "b_night1").rename(tmp_path / "elsewhere")
    alone = _twice(root, tmp_path / "out2")
    assert _nights(alone) == [("20260321LPC", 20, 0)]
    assert f"LPC night 20260320: {DARKS} calibration frames and no science (in " \
           f"{root / 'a_darks'}): nothing to reduce; its darks can serve other nights" \
           in alone.problems
    borrowed = _night(alone, "20260321LPC").borrowed
    assert borrowed is not None
    assert (borrowed.night, {p.parent.name for p in borrowed.paths}) == ("20260320",
                                                                        {"a_darks"})


def test_the_same_frame_in_two_places_is_counted_once(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    _committed(root / "orig")
    _committed(root / "backup", science=30)  # a copy of its darks and half its science
    for directory in ("n2a", "n2b"):  # the next night, 5 darks, copied whole
        for k in range(5):
            _frame(root / directory, 65344190 + NEXT_NIGHT + k, "dark")
        for k in range(15):
            _frame(root / directory, 65344200 + NEXT_NIGHT + k)
    scan = _twice(root, tmp_path / "out")
    assert scan.files == FRAMES + DARKS + 30 + 2 * 20  # files: each copy is one
    assert _nights(scan) == [("20260320LPC", FRAMES - DARKS, DARKS), ("20260321LPC", 15, 5)]
    first, second = scan.nights
    # one of each slot, the one the reduction takes (first by name, then by path)
    assert {p.parent.name for p in first.darks} == {"backup"}
    assert {p.parent.name for p in second.darks} == {"n2a"}
    # 5 darks are fewer than min_dark (10): the night borrows its neighbour's 10
    assert load_config().reduction.calibration.min_dark == 10
    assert second.borrowed is not None
    assert (second.borrowed.night, second.borrowed.paths) == ("20260320", first.darks)


def test_darks_after_the_science_are_not_the_nights_when_its_biases_came_before(
        tmp_path: Path) -> None:
    """The reduction makes a night's masters from the calibration taken before its science
    when there is any, of whatever kind: biases before and darks after leave it no darks of
    its own, so the scan lends it another night's."""
    root = tmp_path / "raw"
    _committed(root / "night1")
    night2 = root / "night2"
    for k in range(DARKS):
        _frame(night2, 65344170 + NEXT_NIGHT + k, "bias")
    for k in range(15):
        _frame(night2, 65344200 + NEXT_NIGHT + k)
    for k in range(DARKS):
        _frame(night2, 65344230 + NEXT_NIGHT + k, "dark")
    scan = _twice(root, tmp_path / "out")
    assert _nights(scan) == [("20260320LPC", FRAMES - DARKS, DARKS), ("20260321LPC", 15, 0)]
    first, second = scan.nights
    assert second.borrowed is not None
    assert (second.borrowed.night, second.borrowed.paths) == ("20260320", first.darks)


def test_a_directory_of_one_camera_letter_at_two_sites_is_split_by_site(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "raw"
    for k in range(10):  # interleaved, slot by slot
        _frame(root / "mixed", 65346200 + 30 * k, site="LaPalma")
        _frame(root / "mixed", 65346215 + 30 * k, site="LaSilla")
    for k in range(10):  # one site, then the other
        _frame(root / "blocks", 65346600 + k, site="LaPalma")
        _frame(root / "blocks", 65346610 + k, site="LaSilla")
    scan = _twice(root, tmp_path / "out")
    assert _nights(scan) == [("20260320LPC", 20, 0), ("20260320LSC", 20, 0)]
    assert {r.directory.name for n in scan.nights for r in n.runs} == {"mixed", "blocks"}
    lpc = _night(scan, "20260320LPC")
    assert len(lpc.frames()) == 20  # its runs hold none of the other site's frames
    assert all(f.name.endswith("C.fits") for f in lpc.frames())
    assert not scan.problems
    # a directory of one site costs two headers per run (its first and its last)
    read: list[Path] = []

    def counting(path: Path) -> RawHeader:
        read.append(Path(path))
        return read_raw_header(path)

    monkeypatch.setattr(listing, "read_raw_header", counting)
    one_site = tmp_path / "one"
    _committed(one_site / "night")
    assert _nights(scan_archive(one_site, load_config())) == [
        ("20260320LPC", FRAMES - DARKS, DARKS)]
    frames = sorted((one_site / "night").iterdir())
    assert read == [frames[0], frames[-1]]


def test_many_foreign_fits_files_are_counted_in_a_line_frames_named_in_capitals_said(
        tmp_path: Path) -> None:
    """A camera's frames named ``*.FITS`` were left out one line each (a year of them: a
    million lines), and nothing said they were raw frames but for the case."""
    root = tmp_path / "raw"
    capitals = root / "capitals"
    for k in range(5):
        frame = _frame(capitals, 65344200 + k)
        frame.rename(frame.with_name(frame.name.replace(".fits", ".FITS")))
    few = root / "few"
    few.mkdir(parents=True)
    for name in ("notes.fits", "flat-test.fits.gz"):
        (few / name).write_bytes(b"")
    scan = _twice(root, tmp_path / "out")
    pattern = "({lstseq:08d}{CAM}[dark|bias|flat].fits[.gz|.fz])"
    assert scan.problems == (
        f"{capitals}: 5 FITS files whose names are not raw frames' {pattern}, "
        "65344200C.FITS the first; some would be raw frames with lower-case extensions "
        "(.fits, .gz, .fz): rename them so",
        f"{few / 'flat-test.fits.gz'}: a FITS file whose name is not a raw frame's {pattern}",
        f"{few / 'notes.fits'}: a FITS file whose name is not a raw frame's {pattern}",
    )


def test_a_pipe_with_a_frames_name_is_left_out_not_read(tmp_path: Path) -> None:
    """Opening a named pipe blocks until something writes to it: the night hung, and a
    Ctrl-C could not stop it (its set never ended)."""
    night = tmp_path / "raw" / "night"
    frames = [_frame(night, 65344200 + k) for k in range(5)]
    frames[2].unlink()
    os.mkfifo(frames[2])
    scan = _twice(tmp_path / "raw", tmp_path / "out")
    assert _nights(scan) == [("20260320LPC", 4, 0)]
    assert scan.problems == (
        f"{frames[2]}: not a regular file (a pipe, socket or device): left out",)
    assert scan.nights[0].frames() == (frames[0], frames[1], frames[3], frames[4])


def test_symbolic_links_to_directories_are_followed_once(tmp_path: Path) -> None:
    root, disk2 = tmp_path / "raw", tmp_path / "disk2"
    _committed(disk2 / "night")
    root.mkdir()
    (root / "20260320").symlink_to("../disk2/night")
    (root / "again").symlink_to(disk2 / "night")  # the same directory, by another link
    (root / "loop").symlink_to(".")
    (root / "gone").symlink_to("../disk3/night")  # a disk not mounted
    scan = _twice(root, tmp_path / "out")
    assert _nights(scan) == [("20260320LPC", FRAMES - DARKS, DARKS)]
    assert scan.files == FRAMES
    assert [r.directory for r in scan.nights[0].runs] == [root / "20260320"]
    assert scan.problems == (
        f"{root / 'gone'}: a symbolic link to ../disk3/night, which cannot be reached (No "
        "such file or directory): left out",
        f"{root / 'again'}: the same directory as {root / '20260320'} (linked or mounted "
        "twice): searched once",
        f"{root / 'loop'}: the same directory as {root} (linked or mounted twice): searched once",
    )
    # the disk mounted: a directory with a link that pointed nowhere is read again
    (tmp_path / "disk3").mkdir()
    for k in range(20):
        _frame(tmp_path / "disk3" / "night", 65344200 + NEXT_NIGHT + k)
    mended, _ = _scan_with_memory(root, tmp_path / "out")
    assert _nights(mended) == [("20260320LPC", FRAMES - DARKS, DARKS), ("20260321LPC", 20, 0)]
    assert not any("gone" in p for p in mended.problems)
    assert os.path.islink(root / "gone")
