"""Bad input for the baselines and the calibration (issue 18): clear errors naming the file,
or a fit that goes on with the good data and says what it dropped."""

from __future__ import annotations

import datetime
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from mascara_actors.actors.calibrator import load_calibration
from mascara_actors.cli import main
from mascara_actors.config import load_config
from mascara_actors.decorrelation import DecorrelationError, NotConverged, calibrate_baseline
from mascara_actors.decorrelation.live import LiveCalibration, calibration_dir
from mascara_actors.errors import StorageError
from mascara_actors.lcsim import LightCurveSimulation, simulate_lightcurves
from mascara_actors.storage.baseline import BaselineReport, build_baseline
from mascara_actors.storage.calibrated import CalibratedFile

from .conftest import Damaged, Small, quick_settings

pytestmark = pytest.mark.slow


def test_a_baseline_of_one_night_is_refused(small: Small, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="at least two nights"):
        build_baseline(small.sim.nightly_files[:1], tmp_path / "b.hdf5")
    with pytest.raises(DecorrelationError, match=r"1 night\(s\).*mascara-actors baseline"):
        calibrate_baseline(small.sim.nightly_files[0], tmp_path / "out", quick_settings())
    assert not (tmp_path / "out").exists()


def test_nights_of_two_cameras_are_refused_naming_the_file(small: Small,
                                                          tmp_path: Path) -> None:
    other = simulate_lightcurves(tmp_path / "lpe", LightCurveSimulation(
        camera="LPE", nights=1, start=datetime.date(2026, 1, 20), stars=50, hours=0.1,
        compression=None))
    with pytest.raises(StorageError) as info:
        build_baseline([*small.sim.nightly_files, *other.nightly_files], tmp_path / "b.hdf5")
    assert "two cameras" in str(info.value)
    assert str(other.nightly_files[0]) in str(info.value)
    assert not (tmp_path / "b.hdf5").exists()


def test_an_older_layout_and_a_foreign_file_are_named(small: Small, tmp_path: Path) -> None:
    files = small.copy_nights(tmp_path)
    with h5py.File(files[1], "r+") as f:
        f["header"].attrs["format_version"] = 0
    with pytest.raises(StorageError) as info:
        build_baseline(files, tmp_path / "b.hdf5")
    assert str(files[1]) in str(info.value)
    assert "reduce the night again" in str(info.value)
    foreign = tmp_path / "foreign.hdf5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(StorageError, match="foreign HDF5") as info:
        build_baseline([files[0], foreign], tmp_path / "b.hdf5")
    assert str(foreign) in str(info.value)
    with pytest.raises(StorageError, match="foreign HDF5"):
        calibrate_baseline(foreign, tmp_path / "out", quick_settings())
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(StorageError, match=r"text\.hdf5 cannot be opened as HDF5"):
        build_baseline([files[0], tmp_path / "text.hdf5"], tmp_path / "b.hdf5")


def test_nan_negative_and_flagged_points_are_dropped_and_counted(damaged: Damaged) -> None:
    result, expected = damaged.result, damaged.expected
    assert result.converged
    assert expected["nan"] > 0
    assert expected["non_positive"] > 0
    assert result.dropped["points with NaN or infinite flux"] == expected["nan"]
    assert result.dropped["points with flux or error <= 0"] == expected["non_positive"]
    assert result.dropped["flagged points"] == expected["flagged"]
    assert result.report_file is not None
    assert result.calibrated_file is not None
    report = json.loads(result.report_file.read_text())
    assert report["dropped"] == result.dropped
    with CalibratedFile(result.calibrated_file) as cf:
        # stars whose every point lacked cloud stars are fitted but have no bin
        assert 100 < len(cf.ids()) <= result.nstars
        lc = cf.lightcurve(int(cf.ids()[0]))
        assert np.all(np.isfinite(lc["mag"]))


def test_a_star_seen_only_a_few_times_is_left_out_and_listed(damaged: Damaged) -> None:
    result = damaged.result
    few = result.dropped_stars["stars with fewer than 120 good points"]
    assert few
    assert result.calibrated_file is not None
    assert result.report_file is not None
    with CalibratedFile(result.calibrated_file) as cf:
        assert not set(few) & set(cf.ids().tolist())
        assert np.all(cf.stars["npoints"] >= 120)
    report = json.loads(result.report_file.read_text())
    assert report["dropped_stars"]["stars with fewer than 120 good points"]["count"] == len(few)


def test_a_calibration_that_does_not_converge_says_so_and_writes_nothing(
        small_baseline: BaselineReport, tmp_path: Path) -> None:
    base = tmp_path / "b.hdf5"
    shutil.copy(small_baseline.output, base)
    before = base.read_bytes()
    with pytest.raises(NotConverged, match="did not converge") as info:
        calibrate_baseline(base, tmp_path / "out",
                           quick_settings(max_iter=2, min_iter=1, tol=1e-9))
    assert "baseline is untouched" in str(info.value)
    assert not list((tmp_path / "out").glob("calibrated_*"))
    assert not list((tmp_path / "out").glob("maps_*"))
    assert not (tmp_path / "out" / "report_b.json").exists()
    report = json.loads((tmp_path / "out" / "report_b.failed.json").read_text())
    assert report["status"] == "not converged"
    assert report["iterations"] == 2
    assert base.read_bytes() == before
    assert not list((tmp_path / "out").glob(".calibrate-*"))  # scratch removed


def test_settings_that_cannot_work_are_named(small_baseline: BaselineReport,
                                             tmp_path: Path) -> None:
    for bad, name in ((quick_settings(aperture=2), "aperture=2"),
                      (quick_settings(ipx_ha_step=1.5), "whole number"),
                      (quick_settings(max_iter=0), "max_iter=0")):
        with pytest.raises(DecorrelationError, match=name):
            calibrate_baseline(small_baseline.output, tmp_path / "out", bad)
    assert not (tmp_path / "out").exists()


def test_the_commands_have_help_and_clear_errors(small: Small, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("simulate-lightcurves", "baseline", "calibrate"):
        with pytest.raises(SystemExit) as info:
            main([cmd, "--help"])
        assert info.value.code == 0
        assert f"usage: mascara-actors {cmd}" in capsys.readouterr().out
    missing = tmp_path / "nope.hdf5"
    assert main(["calibrate", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert f"{missing} does not exist" in capsys.readouterr().err
    files = [str(p) for p in small.sim.nightly_files]
    assert main(["baseline", *files, "--out", str(tmp_path / "b.hdf5"),
                 "--compression", "none"]) == 0
    assert "3 nights" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "b.hdf5"), "--out", str(tmp_path / "o"),
                 "--workers", "1", "--max-iter", "3", "--tol", "1e-12"]) == 1
    assert "did not converge" in capsys.readouterr().err
    assert main(["simulate-lightcurves", str(tmp_path / "sim"), "--nights", "0"]) == 2
    assert "nights=0" in capsys.readouterr().err
    for args, said in ((["--hours", "30"], "hours=30.0: give the hours of each night"),
                       (["--offset-hours", "2"], "offset_hours=2.0 is for part of a night"),
                       (["--hours", "1", "--offset-hours", "20"],
                        r"offset_hours=20\.0: the night of 2026-01-08 at LaPalma is 1\d\.\d h")):
        assert main(["simulate-lightcurves", str(tmp_path / "sim"), "--nights", "1",
                     *args]) == 2, args
        assert re.search(said, capsys.readouterr().err), args
    assert not list(tmp_path.glob("sim*"))  # nor its .part directory


# --- the live calibration: a night never stops for its calibration --------------------------


def test_a_night_finds_its_camera_calibration_or_says_why_not(damaged: Damaged,
                                                              tmp_path: Path) -> None:
    camera = load_config(None).camera("LPC")
    assert damaged.result.maps_file is not None
    assert load_calibration(tmp_path, camera) == (None, "")  # none: raw, said in the log
    where = calibration_dir(tmp_path, "LPC")
    where.mkdir(parents=True)
    good = where / "maps_good.hdf5"
    shutil.copy(damaged.result.maps_file, good)
    found, problem = load_calibration(tmp_path, camera)
    assert found is not None
    assert (found.path, problem) == (good, "")
    assert len(found.ids) > 100
    # another camera's maps, newer: refused, naming it and where it belongs
    other = where / "maps_other.hdf5"
    shutil.copy(good, other)
    with h5py.File(other, "r+") as f:
        f["header"].attrs["camera"] = "LPN"
    found, problem = load_calibration(tmp_path, camera)
    assert found is None
    assert str(other) in problem
    assert "camera LPN, not of LPC" in problem
    assert str(calibration_dir(tmp_path, "LPN")) in problem
    # a damaged or foreign file: refused, naming it
    for damage in (b"not hdf5 at all", None):
        other.unlink()
        if damage is None:
            with h5py.File(other, "w") as f:
                f.create_group("header").attrs["kind"] = "maps"
        else:
            other.write_bytes(damage)
        found, problem = load_calibration(tmp_path, camera)
        assert found is None
        assert str(other) in problem
        assert problem.endswith("the light curves stay raw tonight")


def test_a_set_with_no_usable_point_is_calibrated_empty(damaged: Damaged) -> None:
    """NaN, flagged and unknown stars: the set gives no point and says why, nothing raises."""
    assert damaged.result.maps_file is not None
    cal = LiveCalibration.load(damaged.result.maps_file, pupil_m=0.0171)
    records = np.zeros(6, [("id", "i4"), ("lstseq", "i8"), ("flux0", "f8"), ("eflux0", "f8"),
                           ("x", "f4"), ("y", "f4"), ("pflag", "u1"), ("aflag", "u1")])
    records["id"] = [int(cal.ids[0])] * 3 + [1, 2, 3]  # three stars not in the calibration
    records["lstseq"] = 50 * 1_300_000 + np.arange(6)
    records["flux0"] = [np.nan, 1000.0, -5.0, 1000.0, 1000.0, 1000.0]
    records["eflux0"] = 10.0
    records["pflag"][1] = 8
    stars = np.zeros(4, [("id", "i4"), ("ra", "f8"), ("dec", "f8"), ("vmag", "f4")])
    stars["id"] = sorted([1, 2, 3, int(cal.ids[0])])
    station = np.zeros(6, [("lstseq", "i8"), ("jd", "f8"), ("lst", "f8"), ("exptime", "f4")])
    station["lstseq"], station["exptime"] = records["lstseq"], 6.38
    live = cal.calibrate(1_300_000, records, stars, station)
    assert len(live.points) == len(live.bins) == len(live.clouds) == 0
    assert live.dropped["points with NaN or infinite flux"] == 1
    assert live.dropped["flagged points"] == 1
    assert live.dropped["points with flux or error <= 0"] == 1
    assert live.dropped["points of stars not in the calibration"] == 3
