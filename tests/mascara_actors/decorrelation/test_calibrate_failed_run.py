"""A calibration that cannot or did not converge: ``max_iter`` below ``min_iter`` is refused
saying the minimum, and a run that does not converge names the calibrated and maps files an
earlier run left in --out (kept: the live calibration may depend on them) in its message and
its own report, leaving the earlier run's report with its files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mascara_actors.cli import main
from mascara_actors.decorrelation import DecorrelationError, NotConverged, calibrate_baseline
from mascara_actors.decorrelation.live import calibration_dir, find_calibration
from mascara_actors.storage.baseline import BaselineReport

from .conftest import quick_settings

pytestmark = pytest.mark.slow


def test_max_iter_below_min_iter_is_refused_saying_the_minimum(
        small_baseline: BaselineReport, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DecorrelationError) as info:
        calibrate_baseline(small_baseline.output, tmp_path / "out",
                           quick_settings(max_iter=2, min_iter=3))
    assert str(info.value).startswith("max_iter=2 is less than min_iter=3")
    assert str(info.value).endswith("give max_iter (--max-iter) of at least 3")
    assert not (tmp_path / "out").exists()
    # the command line has no --min-iter: its default (3) is the minimum
    assert main(["calibrate", str(small_baseline.output), "--out", str(tmp_path / "o"),
                 "--workers", "1", "--max-iter", "2"]) == 2
    err = capsys.readouterr().err
    assert "mascara-actors: max_iter=2 is less than min_iter=3" in err
    assert "of at least 3" in err
    assert not (tmp_path / "o").exists()
    quick_settings(max_iter=3, min_iter=3).check()  # equal is fine


def test_a_run_that_does_not_converge_names_the_earlier_files_it_leaves(
        small_baseline: BaselineReport, tmp_path: Path) -> None:
    base = tmp_path / "b.hdf5"
    shutil.copy(small_baseline.output, base)
    out = calibration_dir(tmp_path, "LPC")  # where the live calibration looks
    good = calibrate_baseline(base, out, quick_settings())
    assert good.converged
    assert good.calibrated_file is not None
    assert good.maps_file is not None
    assert good.report_file == out / "report_b.json"
    earlier = {p: p.read_bytes() for p in (good.calibrated_file, good.maps_file,
                                           good.report_file)}

    with pytest.raises(NotConverged) as info:
        calibrate_baseline(base, out, quick_settings(max_iter=1, min_iter=1, tol=1e-12))
    message = str(info.value)
    assert "did not converge in 1 iterations" in message
    assert (f"; {out / 'calibrated_b.hdf5'} and {out / 'maps_b.hdf5'} are from an earlier "
            "run, left in place (the live calibration keeps using the newest maps_*.hdf5 of "
            "its calibration directory): delete them if they should not be used") in message
    assert f"see {out / 'report_b.failed.json'}," in message
    report = json.loads((out / "report_b.failed.json").read_text())
    assert report["status"] == "not converged"
    assert report["files"]["calibrated"] is None
    assert report["earlier_run"]["files"] == [str(out / "calibrated_b.hdf5"),
                                              str(out / "maps_b.hdf5")]
    assert report["earlier_run"]["report"] == str(out / "report_b.json")
    assert report["earlier_run"]["note"].startswith("this run wrote no calibrated or maps "
                                                    "file: these are from an earlier run")
    # the earlier calibration and its report are untouched, and still the one a night uses
    assert {p: p.read_bytes() for p in earlier} == earlier
    assert find_calibration(tmp_path, "LPC") == out / "maps_b.hdf5"
    # a run that converges again leaves no failure's report to contradict its files
    assert calibrate_baseline(base, out, quick_settings()).converged
    assert not (out / "report_b.failed.json").exists()
    assert json.loads((out / "report_b.json").read_text())["status"] == "converged"


def test_a_first_run_that_does_not_converge_names_no_earlier_file(
        small_baseline: BaselineReport, tmp_path: Path) -> None:
    with pytest.raises(NotConverged) as info:
        calibrate_baseline(small_baseline.output, tmp_path / "out",
                           quick_settings(max_iter=1, min_iter=1, tol=1e-12))
    assert "earlier run" not in str(info.value)
    report = json.loads((tmp_path / "out" / "report_baseline.failed.json").read_text())
    assert "earlier_run" not in report
