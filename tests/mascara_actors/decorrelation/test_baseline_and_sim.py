"""The light-curve simulator writes the pipeline's nightly files; baselines keep their layout."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from mascara_actors.config import load_config
from mascara_actors.errors import ConfigError
from mascara_actors.lcsim import read_truth, simulate_lightcurves
from mascara_actors.night_window import night_window
from mascara_actors.storage import NightFile
from mascara_actors.storage.baseline import build_baseline
from mascara_actors.storage.baseline_file import BaselineFile

from .conftest import Small

pytestmark = pytest.mark.slow


def test_simulated_nights_are_nightly_files_of_the_pipeline(small: Small) -> None:
    truth = read_truth(small.sim.truth_file)
    site = load_config().camera("LPC").site
    for path, row in zip(small.sim.nightly_files, truth.nights, strict=True):
        assert path.name == f"fast_{row['night']}LPC.hdf5"
        with NightFile(path) as nf:
            assert (nf.header["site"], nf.header["camera"]) == ("LP", "C")
            assert nf.header["kind"] == "fast"
            seq = nf.station["lstseq"].astype(np.int64)
            # the 6.4 s slots of the lstseq clock, inside the night window of that date
            assert np.all(np.diff(seq) == 1)
            win = night_window(site, float(nf.station["jd"][0]), load_config().reduction.night)
            assert win.start_lstseq <= seq[0]
            assert seq[-1] < win.stop_lstseq
            star = int(nf.ids()[0])
            lc = nf.lightcurve(star, ["lstseq", "flux0", "x", "y", "pflag"])
            assert np.all(np.isin(lc["lstseq"], seq))
            assert np.all((lc["x"] >= 50) & (lc["x"] <= 4007 - 50))
    assert set(truth.stars["id"]) >= set(np.concatenate(
        [NightFile(p).ids() for p in small.sim.nightly_files]).tolist())
    assert truth.clouds[truth.nights["night"][1]].shape[0] == truth.nights["nexp"][1]


def test_a_baseline_keeps_the_nightly_layout_and_its_sources(small: Small,
                                                             tmp_path: Path) -> None:
    files = list(reversed(small.sim.nightly_files))  # any order
    report = build_baseline(files, tmp_path / "b.hdf5", chunk_stars=7, chunk_records=5000)
    assert report.nights == ("20260108", "20260109", "20260110")
    with h5py.File(report.output, "r") as f:
        assert {"header", "station", "stars", "lightcurves", "filelist", "sources"} <= set(f)
    with BaselineFile(report.output) as bf:
        assert bf.filelist == [str(p.resolve()) for p in sorted(small.sim.nightly_files)]
        assert bf.nights == report.nights
        star = int(bf.stars["id"][0])
        data, count = bf.read([star], ["lstseq", "flux0"])
    expected = []
    for p in sorted(small.sim.nightly_files):
        with NightFile(p) as nf:
            if star in nf.ids():
                expected.append(nf.lightcurve(star, ["lstseq", "flux0"]))
    expected = np.concatenate(expected)
    assert np.array_equal(data["lstseq"], expected["lstseq"])
    assert np.array_equal(data["flux0"], expected["flux0"], equal_nan=True)
    with NightFile(report.output) as nf:  # the nightly reader reads a baseline
        assert int(nf.stars["nobs"][nf.ids() == star][0]) == len(expected) == count[0]
        assert np.all(np.diff(nf.station["lstseq"].astype(np.int64)) > 0)


def test_the_truth_file_holds_what_was_injected(small: Small) -> None:
    """The raw magnitudes of constant stars minus the truth (V, offset, transmission,
    intrapixel, clouds) scatter as the noise the truth file says was injected."""
    truth = read_truth(small.sim.truth_file)
    ts, noise, model = truth.stars, truth.noise, truth.model
    quiet = ts[(ts["var_amp"] == 0) & (ts["transit"] == 0)]
    chi2, nsets = [], 0
    for path in small.sim.nightly_files:
        with NightFile(path) as nf:
            for hip in np.intersect1d(nf.ids(), quiet["id"])[:60].tolist():
                star = quiet[quiet["id"] == hip][0]
                lc = nf.lightcurve(hip, ["lstseq", "flux0", "x", "y", "alt", "pflag"])
                lc = lc[lc["pflag"] == 0]
                # aperture 0 holds flux_v84_e electrons of a V = 8.4 star
                mag = 8.4 - 2.5 * np.log10(lc["flux0"] * noise.gain / noise.flux_v84_e)
                true = (star["vmag"] + star["offset"]
                        + model.transmission_mag(lc["x"], lc["y"], lc["alt"])
                        + model.intrapixel_mag(lc["x"], lc["y"], 0)
                        + truth.cloud_at(lc["lstseq"], np.full(len(lc), star["patch"])))
                sets = lc["lstseq"].astype(np.int64) // 50
                for s in np.unique(sets).tolist():
                    n, var = truth.set_noise(hip, np.array([s]), 0)
                    inside = sets == s
                    assert n[0] == inside.sum()
                    chi2.append(np.sum((mag - true)[inside] ** 2) / (var[0] * n[0]))
                    nsets += 1
    assert nsets > 200
    assert np.mean(chi2) == pytest.approx(1.0, abs=0.1)


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def test_nights_simulated_in_runs_are_handed_over_run_by_run_and_unchanged(
        small: Small, tmp_path: Path) -> None:
    """A long season is simulated a run of nights at a time, each run given to
    ``after_batch`` as soon as it is written (the season builder merges and deletes it);
    the nights are those of a simulation in one go."""
    handed: list[list[str]] = []
    reference = {p.name: p for p in small.sim.nightly_files}

    def take(files: list[Path]) -> None:
        handed.append([f.name for f in files])
        for f in files:
            got, want = _datasets(f), _datasets(reference[f.name])
            assert got.keys() == want.keys()
            for name in want:
                np.testing.assert_array_equal(got[name], want[name], err_msg=name)
            f.unlink()  # as the season builder does: the run is no longer needed

    report = simulate_lightcurves(tmp_path / "nights", small.sim_settings, workers=1,
                                  batches=[range(0, 2), range(2, 3)], after_batch=take)
    assert handed == [[p.name for p in small.sim.nightly_files[:2]],
                      [small.sim.nightly_files[2].name]]
    assert not any(p.exists() for p in report.nightly_files)
    # the truth covers every night, whatever became of the files
    assert read_truth(report.truth_file).nights["night"].tolist() == \
        read_truth(small.sim.truth_file).nights["night"].tolist()
    with pytest.raises(ConfigError, match="batches"):
        simulate_lightcurves(tmp_path / "again", small.sim_settings,
                             batches=[range(0, 2), range(1, 3)])
