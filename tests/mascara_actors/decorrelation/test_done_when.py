"""Issue 18, "Done when": the calibration recovers the simulator's truth.

Every value is compared with what the simulator injected (its truth file), never with the
calibration's own output (:mod:`mascara_actors.lcsim.scoring`). The baseline is the session
fixture ``calibrated`` (15 nights, > 2,000 stars at the full star density of the camera,
realistic systematics); every test on it is in this file, so that the test workers make it
once. Item 4: the 16th night (cloudy, not in the baseline) is cut into its sets of 50
exposures and each set is calibrated alone, as the calibrator actor does while a night
runs. The figures are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mascara_actors.config import load_config
from mascara_actors.decorrelation.live import LiveCalibration, LiveSet
from mascara_actors.lcsim import Truth, read_truth
from mascara_actors.lcsim.scoring import map_errors, noise_floor, transit_depth
from mascara_actors.sidereal import SET_SIZE
from mascara_actors.storage import NightFile
from mascara_actors.storage.calibrated import CalibratedFile, MapsFile

from .conftest import Calibrated

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def truth(calibrated: Calibrated) -> Truth:
    return read_truth(calibrated.sim.truth_file)


def test_calibration_converged_on_a_big_enough_baseline(calibrated: Calibrated) -> None:
    result = calibrated.result
    assert len(calibrated.sim.nightly_files) == 16  # the 16th is for the live calibration
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
        assert cf.filelist == [str(p.resolve())
                               for p in sorted(calibrated.sim.nightly_files)[:15]]


def test_an_overcast_night_is_dropped_or_flagged(calibrated: Calibrated, truth: Truth) -> None:
    night = truth.nights[truth.nights["weather"] == "overcast"][0]
    assert calibrated.result.converged
    assert calibrated.result.calibrated_file is not None
    flagged = total = 0
    with CalibratedFile(calibrated.result.calibrated_file) as cf:
        for hip in cf.ids()[::10].tolist():
            lc = cf.lightcurve(hip)
            first = lc["setidx"].astype(np.int64) * 50
            inside = (first >= night["lstseq0"]) & (first < night["lstseq0"] + night["nexp"])
            total += int(inside.sum())
            flagged += int(np.count_nonzero(lc["cflag"][inside] & 2))
    # most overcast points were too faint to use; what is left is flagged cloudy
    assert total == 0 or flagged / total > 0.9


# --- item 4: the night after the baseline, calibrated set by set as it is saved ----------

PUPIL_M = load_config(None).camera("LPC").lens.aperture_mm / 1e3
_FIELDS = ("lstseq", "flux0", "eflux0", "x", "y", "pflag", "aflag")


def _sets(path: Path) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(setidx, records with ``id``, star rows, station rows) of each set of a nightly file."""
    with NightFile(path) as nf:
        stars, station, records = nf.stars, nf.station, nf.records(_FIELDS)
    setidx = records["lstseq"] // SET_SIZE
    for s in np.unique(setidx).tolist():
        rows = station[station["lstseq"] // SET_SIZE == s]
        yield s, records[setidx == s], stars, rows


@pytest.fixture(scope="module")
def live(calibrated: Calibrated) -> list[LiveSet]:
    assert calibrated.result.maps_file is not None
    cal = LiveCalibration.load(calibrated.result.maps_file, pupil_m=PUPIL_M)
    return [cal.calibrate(*one) for one in _sets(calibrated.next_night)]


def test_the_clouds_of_each_set_match_the_injected_clouds(live: list[LiveSet],
                                                          truth: Truth) -> None:
    clouds = np.concatenate([s.clouds for s in live])
    measured = np.isfinite(clouds["value"])
    assert measured.mean() > 0.9
    got = clouds["value"][measured].astype(float)
    true = truth.cloud_at(clouds["lstseq"][measured], clouds["patch"][measured])
    thin = true < 0.5  # under thick clouds the stars drop below S/N 10
    diff = got[thin] - true[thin]
    rms = float(np.sqrt(np.mean(diff**2)))
    print(f"\nlive clouds: {thin.sum()} cells, RMS {rms * 1e3:.1f} mmag from the truth, "
          f"clouds up to {true[thin].max():.2f} mag")
    assert true[thin].max() > 0.05  # a cloudy night: there is something to follow
    assert abs(float(np.median(diff))) < 0.005
    assert rms < 0.01  # a cell's mean of ten-odd stars of 1-2 % noise each
    assert rms < 0.4 * float(true[thin].std())


def test_the_live_bins_of_quiet_stars_reach_the_noise_floor(
        calibrated: Calibrated, live: list[LiveSet], truth: Truth) -> None:
    """Each bin of a quiet V 7-8 star against the star's magnitude fitted on the 15 nights
    before (the night has a few sets only: too few bins for a scatter per star)."""
    assert calibrated.result.maps_file is not None
    cal = LiveCalibration.load(calibrated.result.maps_file, pupil_m=PUPIL_M)
    bins = np.concatenate([s.bins for s in live])
    ts = truth.stars
    k = truth.star_index(bins["id"])
    assert np.all(k >= 0)
    quiet = (ts["var_amp"][k] == 0) & (ts["transit"][k] == 0) & (ts["vmag"][k] >= 7.0) \
        & (ts["vmag"][k] < 8.0) & (bins["cflag"] == 0)
    b = bins[quiet]
    resid = b["mag"].astype(float) - cal.mag[np.searchsorted(cal.ids, b["id"])]
    injected = np.array([truth.set_noise(int(h), np.array([int(s)]), 0)[1][0]
                         for h, s in zip(b["id"], b["setidx"], strict=True)]) / b["nobs"]
    ratio = float(np.sqrt(np.mean(resid**2) / np.mean(injected)))
    own = float(np.sqrt(np.mean(b["efloor"].astype(float) ** 2) / np.mean(injected)))
    print(f"\nlive bins of quiet V 7-8 stars ({len(b)}): {ratio:.3f} x the injected noise, "
          f"their noise floor {own:.3f} x")
    assert len(b) >= 300
    assert ratio < 1.25
    # the floor the summary draws (flux errors and scintillation) is the injected one
    assert own == pytest.approx(1.0, abs=0.15)


def test_a_transit_inside_a_set_is_kept_whole(calibrated: Calibrated) -> None:
    """Leave-one-out: a star's own dimming does not enter the clouds it is corrected with,
    nor the other stars' of its patch."""
    assert calibrated.result.maps_file is not None
    cal = LiveCalibration.load(calibrated.result.maps_file, pupil_m=PUPIL_M)
    setidx, records, stars, station = max(_sets(calibrated.next_night),
                                          key=lambda one: len(one[1]))
    before = cal.calibrate(setidx, records, stars, station)
    # a star in a well-populated cloud cell, 1 % fainter on every exposure of the set
    patch = cal.patch[np.searchsorted(cal.ids, before.bins["id"])]
    hip = int(before.bins["id"][np.argmax(np.bincount(patch)[patch])])
    dimmed = records.copy()
    star = dimmed["id"] == hip
    dimmed["flux0"][star] *= 0.99
    after = cal.calibrate(setidx, dimmed, stars, station)
    b0, b1 = before.bins, after.bins
    assert np.array_equal(b0["id"], b1["id"])
    depth = float(b1["mag"][b1["id"] == hip][0] - b0["mag"][b0["id"] == hip][0])
    assert depth == pytest.approx(-2.5 * np.log10(0.99), rel=0.02)
    # the other stars of its patch see a share of it in their clouds; the rest nothing
    neighbours = (patch == patch[b0["id"] == hip][0]) & (b0["id"] != hip)
    change = np.abs(b1["mag"] - b0["mag"])
    assert neighbours.sum() >= 5
    assert np.max(change[neighbours]) < 0.1 * depth
    assert np.max(change[patch != patch[b0["id"] == hip][0]]) < 1e-6
