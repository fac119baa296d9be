"""Bad input for ``mascara-actors --replay``: clear messages and exit code 2 (issue 6).

Frames given in any order are replayed in lstseq order: see ``faulty_night`` (its files are
written in shuffled order) in test_night.py and the paced_frames test in test_cadence.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mascara_actors.cli import main
from tests.mascara_actors.actors.conftest import NIGHT


def _replay(capsys: pytest.CaptureFixture[str], directory: Path, out: Path, *extra: str):
    code = main(["--replay", str(directory), "--out", str(out), *extra])
    return code, capsys.readouterr().err


def test_missing_directory(tmp_path, capsys) -> None:
    code, err = _replay(capsys, tmp_path / "nowhere", tmp_path / "out")
    assert code == 2
    assert f"recorded night {tmp_path / 'nowhere'} does not exist" in err
    assert not (tmp_path / "out").exists()  # nothing written for bad input


def test_a_file_instead_of_a_directory(tmp_path, capsys) -> None:
    code, err = _replay(capsys, NIGHT / "truth.fits", tmp_path / "out")
    assert code == 2
    assert "is not a directory" in err


def test_empty_directory(tmp_path, capsys) -> None:
    (tmp_path / "night").mkdir()
    code, err = _replay(capsys, tmp_path / "night", tmp_path / "out")
    assert code == 2
    assert "holds no raw frames" in err


def test_directory_without_frames(tmp_path, capsys) -> None:
    night = tmp_path / "night"
    night.mkdir()
    shutil.copyfile(NIGHT / "truth.fits", night / "truth.fits")
    (night / "notes.txt").write_text("not a frame")
    code, err = _replay(capsys, night, tmp_path / "out")
    assert code == 2
    assert "holds no raw frames" in err


def test_mixed_cameras(tmp_path, capsys) -> None:
    night = tmp_path / "night"
    night.mkdir()
    for lstseq in (65344200, 65344201):
        shutil.copyfile(NIGHT / f"{lstseq}C.fits.fz", night / f"{lstseq}C.fits.fz")
    shutil.copyfile(NIGHT / "65344202C.fits.fz", night / "65344202N.fits.fz")
    code, err = _replay(capsys, night, tmp_path / "out")
    assert code == 2
    assert "holds frames of 2 cameras: C (2 files), N (1 file)" in err


def test_only_calibration_frames(tmp_path, capsys) -> None:
    night = tmp_path / "night"
    night.mkdir()
    for f in NIGHT.glob("*dark.fits.fz"):
        shutil.copyfile(f, night / f.name)
    code, err = _replay(capsys, night, tmp_path / "out")
    assert code == 2
    assert "holds no science frames (only 10 calibration frames)" in err


def test_camera_that_does_not_match_the_frames(tmp_path, capsys) -> None:
    code, err = _replay(capsys, NIGHT, tmp_path / "out", "--camera", "LPN")
    assert code == 2
    assert "--camera LPN but the frames" in err
    assert "are of camera C" in err


def test_unknown_camera(tmp_path, capsys) -> None:
    code, err = _replay(capsys, NIGHT, tmp_path / "out", "--camera", "XYZ")
    assert code == 2
    assert "unknown camera 'XYZ'" in err
