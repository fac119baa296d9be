"""``mascara-actors solve FRAME``: end to end on rendered full-size FITS frames.

The printed pointing is the truth's in the cameras.toml convention; ``--write-config``
changes that camera's three values and nothing else (comments, layout, other cameras kept);
``--plot`` writes a PNG; bad input gets exit code 2, no solution exit code 1.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import mascara_actors.reduce as reduce_module
from hw.sim.sky import SimulatedSky, SimulationSettings
from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.cli import main
from mascara_actors.cli.solve import update_camera_entry
from mascara_actors.config import Config, load_config
from mascara_actors.errors import ConfigError
from mascara_actors.rawframe import raw_filename, write_raw
from mascara_actors.reduce import ReductionSession
from mascara_actors.sidereal import SiteReference

DARK_UTC = "2026-11-10T04:00:00"


@dataclass(frozen=True)
class Written:
    path: Path
    true: CameraModel


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config()


@pytest.fixture(scope="module")
def frames(cfg, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Written]:
    """Raw FITS frames (shared, read-only): LPE with its roll 25 degrees and its pointing
    3 degrees off the configuration, LPW mirrored, LSE as configured, LPE overcast (on
    the crop1024 sensor)."""
    cat = Catalogue.load()
    directory = tmp_path_factory.mktemp("frames")
    lstseq = int(SiteReference().local_sidereal_time(DARK_UTC).lstseq)

    def write(
        name: str, camera_id: str, vmax: float = 8.4, sensor: str = "", **changes: object
    ) -> Written:
        camera = cfg.camera(camera_id)
        chip = cfg.sensor(sensor) if sensor else camera.sensor
        nominal = CameraModel.from_config(camera, nx=chip.xsize, ny=chip.ysize)
        true = nominal.replace(focal_px=nominal.focal_px * 1.002, **changes)
        settings = SimulationSettings(vmax=vmax)
        sky = SimulatedSky(camera, cat, true_model=true, sensor=chip, settings=settings)
        f = sky.exposure(lstseq)
        (directory / name).mkdir()
        path = directory / name / raw_filename(lstseq, camera.letter)
        return Written(write_raw(path, f.raw, f.header), true)

    return {
        "LPE": write("LPE", "LPE", alt_deg=52.0, az_deg=91.5, roll_deg=277.0),
        "mirrored": write("mirrored", "LPW", roll_deg=200.0, mirror=True),
        "LSE": write("LSE", "LSE"),
        # the central 1024 x 680 pixels: nothing to see either way, and quick to render
        "overcast": write("overcast", "LPE", vmax=-5.0, sensor="crop1024"),
    }


@pytest.fixture
def config_dir(cfg, tmp_path: Path) -> Path:
    """A private copy of the repository's configuration."""
    dst = tmp_path / "config"
    shutil.copytree(cfg.directory, dst)
    return dst


def printed(out: str) -> dict[str, str]:
    """The ``key value`` lines of the report."""
    return {m[1]: m[2] for m in re.finditer(r"(?m)^(\w+)\s+(.*)$", out)}


def pointing_of(out: str) -> tuple[float, float, float]:
    m = re.search(r"alt_deg = (\S+)\s+az_deg = (\S+)\s+roll_deg = (\S+)", out)
    assert m is not None, out
    return float(m[1]), float(m[2]), float(m[3])


def angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def assert_pointing(found: tuple[float, float, float], true: CameraModel) -> None:
    alt, az, roll = true.pointing()
    assert abs(found[0] - alt) <= 0.05
    assert angle_diff(found[1], az) <= 0.05
    assert angle_diff(found[2], roll) <= 0.05


@pytest.mark.slow
def test_solve_prints_writes_the_config_and_plots(
    frames, config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = frames["LPE"]
    before = (config_dir / "cameras.toml").read_text()
    png = tmp_path / "plots" / "solve.png"
    argv = ["solve", str(frame.path), "--camera", "LPE", "--write-config", "--plot", str(png)]
    assert main([*argv, "--config", str(config_dir)]) == 0
    out = capsys.readouterr().out
    report = printed(out)
    assert_pointing(pointing_of(out), frame.true)
    assert report["parity"] == "normal"
    assert report["camera"] == "LPE"
    assert re.match(r"2\d{3}\.\d\d px = 24\.\d{3} mm", report["focal"])
    assert re.match(r"k1 = -0\.0\d+\s+k2 = ", report["distortion"])
    matched = re.match(r"(\d+) of (\d+) predicted", report["matched"])
    assert matched is not None
    assert int(matched[1]) >= 0.6 * int(matched[2]) > 1000
    assert float(report["rms"].split()[0]) <= 0.1
    assert re.match(r"\d+\.\d\d s", report["time"])
    assert "written" in report

    # Only LPE's three values changed; every comment and every other line is as it was.
    after = (config_dir / "cameras.toml").read_text()
    old_lines, new_lines = before.splitlines(), after.splitlines()
    assert len(old_lines) == len(new_lines)
    changed = [(o, n) for o, n in zip(old_lines, new_lines, strict=True) if o != n]
    assert sorted(n.split("=")[0].strip() for _, n in changed) == ["alt_deg", "az_deg", "roll_deg"]
    start = new_lines.index("[cameras.LPE]")
    end = new_lines.index("[cameras.LPS]")
    assert all(start < new_lines.index(n) < end for _, n in changed)
    written = load_config(config_dir)
    alt, az, roll = pointing_of(out)
    lpe = written.camera("LPE")
    assert (lpe.alt_deg, lpe.az_deg, lpe.roll_deg) == (alt, az, roll)
    original = load_config()
    for camera_id, camera in written.cameras.items():
        if camera_id != "LPE":
            assert camera == original.camera(camera_id)

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000

    # With the pointing written, the reduction takes the fast path again: no blind solve.
    def no_blind(*args: object, **kwargs: object) -> None:
        raise AssertionError("the configured pointing should have solved the frame")

    session = ReductionSession.open("LPE", config_dir=config_dir)
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(reduce_module, "blind_solve", no_blind)
        solution = session.solve(frame.path, None)
    finally:
        mp.undo()
    assert solution.dr < 0.1


@pytest.mark.slow
def test_mirrored_camera_is_reported_and_written_with_its_parity(
    frames, config_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No --camera: it comes from the header. The pointing and ``mirror = true`` are written
    into that camera's entry, and the configuration then describes the camera exactly."""
    config = tmp_path / "written_config"
    shutil.copytree(config_dir, config)
    frame = frames["mirrored"]
    code = main(["solve", str(frame.path), "--write-config", "--config", str(config)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert printed(captured.out)["parity"] == "mirrored"
    assert printed(captured.out)["camera"] == "LPW"
    assert_pointing(pointing_of(captured.out), frame.true)
    camera = load_config(config).camera("LPW")
    assert camera.mirror
    assert_pointing((camera.alt_deg, camera.az_deg, camera.roll_deg), frame.true)


@pytest.mark.slow
def test_frame_of_another_camera_gives_its_true_pointing_and_is_not_written(
    frames, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (config_dir / "cameras.toml").read_bytes()
    frame = frames["LSE"]
    argv = ["solve", str(frame.path), "--camera", "LPE", "--write-config"]
    code = main([*argv, "--config", str(config_dir)])
    captured = capsys.readouterr()
    assert code == 2
    assert "taken by LaSilla camera E" in captured.err
    assert "not written" in captured.err
    assert_pointing(pointing_of(captured.out), frame.true)
    assert (config_dir / "cameras.toml").read_bytes() == before


def test_overcast_frame_has_no_solution(frames, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", str(frames["overcast"].path)]) == 1
    err = capsys.readouterr().err
    assert "no solution" in err
    assert "no stars" in err
    assert "0 stars detected" in err


def test_bad_input_exits_2(frames, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "00000001E.fits"
    assert main(["solve", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    garbage = tmp_path / "00000002E.fits"
    garbage.write_bytes(b"not a FITS file at all" * 100)
    assert main(["solve", str(garbage)]) == 2
    assert str(garbage) in capsys.readouterr().err
    assert main(["solve", str(frames["overcast"].path), "--camera", "XXX"]) == 2
    err = capsys.readouterr().err
    assert "unknown camera 'XXX'" in err
    assert "LPE" in err


def test_solve_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["solve", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: mascara-actors solve" in out
    for option in ("FRAME", "--camera", "--write-config", "--plot", "--config"):
        assert option in out


# --- the config edit alone -----------------------------------------------------------------

TOML = """\
# cameras
[cameras.AAN]                       # first
site = "LaPalma"
alt_deg = 49.0                      # altitude, keep this comment where it is
az_deg = 0.0
roll_deg = 4.3   # short gap

[cameras.AAE]
alt_deg = 49.0
az_deg = 90.0
"""


def test_update_keeps_comments_columns_and_other_tables(tmp_path: Path) -> None:
    path = tmp_path / "cameras.toml"
    path.write_text(TOML)
    update_camera_entry(
        path, "AAN", {"alt_deg": 48.1234, "az_deg": 359.9876, "roll_deg": 184.3001, "mirror": True}
    )
    lines = path.read_text().splitlines()
    old = TOML.splitlines()
    assert lines[:3] == old[:3]
    assert (
        lines[3] == "alt_deg = 48.1234                   # altitude, keep this comment where it is"
    )
    assert lines[3].index("#") == old[3].index("#")
    assert lines[4] == "az_deg = 359.9876"
    assert lines[5] == "roll_deg = 184.3001 # short gap"
    assert lines[6] == "mirror = true"  # a key the table lacked goes after its last key
    assert lines[7:] == old[6:]


def test_update_keeps_crlf_and_refuses_a_missing_table(tmp_path: Path) -> None:
    path = tmp_path / "cameras.toml"
    path.write_bytes(TOML.replace("\n", "\r\n").encode())
    update_camera_entry(path, "AAE", {"az_deg": 91.5})
    data = path.read_bytes()
    assert b"az_deg = 91.5\r\n" in data
    assert data.count(b"\r\n") == TOML.count("\n")
    with pytest.raises(ConfigError, match=r"no \[cameras.ZZZ\]"):
        update_camera_entry(path, "ZZZ", {"az_deg": 1.0})
    assert math.isclose(float(np.float64(91.5)), 91.5)
