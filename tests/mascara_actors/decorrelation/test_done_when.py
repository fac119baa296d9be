"""Issue 18, "Done when": the calibration recovers the simulator's truth.

Every value is compared with what the simulator injected (its truth file), never with the
calibration's own output (:mod:`mascara_actors.lcsim.scoring`). The baseline is the session
fixture ``calibrated`` (15 nights, > 2,000 stars at the full star density of the camera,
realistic systematics). The figures are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mascara_actors.lcsim import Truth, read_truth
from mascara_actors.lcsim.scoring import map_errors, noise_floor, transit_depth
from mascara_actors.storage.calibrated import CalibratedFile, MapsFile

from .conftest import Calibrated

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def truth(calibrated: Calibrated) -> Truth:
    return read_truth(calibrated.sim.truth_file)


def test_calibration_converged_on_a_big_enough_baseline(calibrated: Calibrated) -> None:
    result = calibrated.result
    assert len(calibrated.sim.nightly_files) == 15
    assert result.converged
    assert result.nstars >= 2000
    assert result.report_file is not None
    report = json.loads(result.report_file.read_text())
    assert report["status"] == "converged"
    assert report["dropped"]["points below S/N 10"] > 0  # the overcast night


def test_the_maps_recover_the_truth(calibrated: Calibrated, truth: Truth) -> None:
    assert calibrated.result.maps_file is not None
    errors = map_errors(truth, calibrated.baseline, calibrated.result.maps_file)
    print(f"\ntransmission {errors.transmission_rms * 1e3:.2f} mmag RMS, intrapixel "
          f"{[round(r * 1e3, 2) for r in errors.intrapixel_rms]} mmag RMS")
    assert errors.t_sampled > 0.95
    assert errors.ipx_sampled > 0.95
    assert errors.transmission_rms < 0.002
    assert max(errors.intrapixel_rms) < 0.002
    # and the modulation is really there: 1-2 % peak to peak at the centre
    c = truth.model.ipx_coeffs
    assert 0.01 <= 2 * (np.hypot(c[0], c[1]) + np.hypot(c[2], c[3])) <= 0.02


def test_calibrated_bins_reach_the_injected_noise_floor(calibrated: Calibrated,
                                                        truth: Truth) -> None:
    assert calibrated.result.calibrated_file is not None
    floor = noise_floor(truth, calibrated.result.calibrated_file, calibrated.baseline)
    print(f"\nV 7-8: calibrated bins at {floor.ratio:.3f} x the noise floor (median star "
          f"{floor.median_star_ratio:.3f}), raw {floor.raw_ratio:.2f} x, {floor.nstars} stars")
    assert floor.nstars > 300
    assert floor.ratio <= 1.15
    assert floor.median_star_ratio <= 1.15
    assert floor.raw_ratio >= 3.0


def test_a_one_percent_transit_is_preserved(calibrated: Calibrated, truth: Truth) -> None:
    assert calibrated.result.calibrated_file is not None
    assert np.all(truth.transits["depth"] == pytest.approx(0.01))
    depth = transit_depth(truth, calibrated.result.calibrated_file)
    print(f"\ntransit depth kept at {depth.ratio:.3f} of the truth ({depth.nbins} bins)")
    assert depth.nbins >= 30, "too few in-transit bins to measure the depth"
    assert 0.9 <= depth.ratio <= 1.1


def test_outputs_name_their_baseline_and_have_plots(calibrated: Calibrated) -> None:
    result = calibrated.result
    assert result.maps_file is not None
    assert result.calibrated_file is not None
    with MapsFile(result.maps_file) as mf:
        header, trans = mf.header, mf.group("transmission")
    assert header["baseline"] == str(calibrated.baseline.resolve())
    assert len(header["nights"]) == 15
    assert np.isfinite(trans["values"]).any()
    for plot in result.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in result.plots} == {"transmission.png", "intrapixel.png",
                                              "clouds.png"}
    with CalibratedFile(result.calibrated_file) as cf:
        lc = cf.lightcurve(int(cf.ids()[0]))
        assert list(lc.dtype.names or ())[:7] == ["setidx", "jd", "lst", "mag", "emag",
                                                  "nobs", "cflag"]
        assert np.all(np.diff(lc["setidx"].astype(np.int64)) > 0)
        assert np.all((lc["lst"] >= 0) & (lc["lst"] < 24))
        assert cf.filelist == [str(p.resolve()) for p in sorted(calibrated.sim.nightly_files)]
