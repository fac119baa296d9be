"""Small state files: the dark table (getDarkFilename / updateDarkFilename) and JSON state."""

from __future__ import annotations

from pathlib import Path

import pytest

from mascara_actors.atomic_files import atomic_write_text
from mascara_actors.calibration import (
    dark_table_path,
    get_dark_filename,
    read_dark_table,
    update_dark_filename,
)
from mascara_actors.errors import CalibrationError, StorageError
from mascara_actors.storage import read_json_state, write_json_state


def test_dark_table_newest_first_and_bounded(tmp_path: Path) -> None:
    for k in range(7):
        update_dark_filename("LPC", f"/data/binned/{k:08d}Cmasterdark.fits", tmp_path, nmax=5)
    assert get_dark_filename("LPC", tmp_path) == "/data/binned/00000006Cmasterdark.fits"
    assert read_dark_table("LPC", tmp_path) == [
        f"/data/binned/{k:08d}Cmasterdark.fits" for k in (6, 5, 4, 3, 2)]
    assert (tmp_path / "darktableLPC.dat").read_text().count("\n") == 5


def test_a_known_dark_moves_to_the_top(tmp_path: Path) -> None:
    for name in ("a.fits", "b.fits", "c.fits"):
        update_dark_filename("C", name, tmp_path)
    assert update_dark_filename("C", Path("a.fits"), tmp_path) == ["a.fits", "c.fits", "b.fits"]
    assert get_dark_filename("C", tmp_path) == "a.fits"


def test_cameras_have_their_own_tables(tmp_path: Path) -> None:
    update_dark_filename("N", "n.fits", tmp_path)
    update_dark_filename("S", "s.fits", tmp_path)
    assert (get_dark_filename("N", tmp_path), get_dark_filename("S", tmp_path)) == (
        "n.fits", "s.fits")
    assert dark_table_path("S", tmp_path) == tmp_path / "darktableS.dat"


def test_missing_or_empty_table_says_to_record_darks(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"darktableE.dat does not exist: no master dark "
                                               r"is known for camera E; record a dark"):
        get_dark_filename("E", tmp_path)
    (tmp_path / "darktableE.dat").write_text("\n  \n")
    with pytest.raises(CalibrationError, match="is empty"):
        get_dark_filename("E", tmp_path)


@pytest.mark.parametrize(("camera", "filename", "nmax", "message"), [
    ("C/..", "a.fits", 5, "must be a camera letter or id"),
    ("C", "a\nb.fits", 5, "without line breaks"),
    ("C", "", 5, "non-empty path"),
    ("C", "a.fits", 0, "nmax=0 must be an integer >= 1"),
])
def test_bad_dark_table_input(tmp_path: Path, camera: str, filename: str, nmax: int,
                              message: str) -> None:
    with pytest.raises(StorageError, match=message):
        update_dark_filename(camera, filename, tmp_path, nmax=nmax)
    assert list(tmp_path.iterdir()) == []


def test_json_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert read_json_state(path, {"n": 0}) == {"n": 0}
    write_json_state(path, {"b": [1, 2], "a": {"x": 1.5}})
    assert read_json_state(path) == {"a": {"x": 1.5}, "b": [1, 2]}
    first = path.read_bytes()
    write_json_state(path, {"a": {"x": 1.5}, "b": [1, 2]})
    assert path.read_bytes() == first  # sorted keys: equal states, equal files
    with pytest.raises(StorageError, match="not plain JSON"):
        write_json_state(path, {"nan": float("nan")})
    assert path.read_bytes() == first
    atomic_write_text(path, "[1, 2]")
    with pytest.raises(StorageError, match="holds list, not an object"):
        read_json_state(path)
    atomic_write_text(path, "{oops")
    with pytest.raises(StorageError, match="is not valid JSON"):
        read_json_state(path)
    assert not any(tmp_path.glob("*.tmp"))
