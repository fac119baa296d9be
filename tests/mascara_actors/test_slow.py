"""Slow photometry on a binned image of a simulated set, against simulator truth (issue 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from hw.sim.sky import SimulatedSky, SimulationSettings
from mascara_actors.binned_file import read_binned, write_binned
from mascara_actors.binning import SetStack, reference_lstseq
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.ephemeris import EphemerisTable
from mascara_actors.errors import FrameError
from mascara_actors.photometry import PFlag
from mascara_actors.records import slow_record_dtype, slow_station_dtype
from mascara_actors.sidereal import SiteReference, set_index
from mascara_actors.slow import measure_binned

NFRAMES = 7


@pytest.fixture(scope="module")
def slowset() -> dict:
    """7 frames around the middle of one LPC set (crop1024), binned; the truth of every
    frame; the slow photometry with the Sun/Moon table (shared, read-only)."""
    cfg = load_config()
    cam = cfg.camera("LPC")
    cat = Catalogue.load()
    sensor = cfg.sensor("crop1024")
    sky = SimulatedSky(cam, cat, sensor=sensor, settings=SimulationSettings(seed=21))
    s0 = int(SiteReference().local_sidereal_time("2026-03-21T01:30:00").lstseq)
    setidx = int(set_index(s0))
    ref = reference_lstseq(setidx)
    rows, cols = sensor.science_slices
    stack = SetStack(sky.model, setidx)
    truths = []
    for ls in range(ref - NFRAMES // 2, ref + NFRAMES // 2 + 1):
        f = sky.exposure(ls)
        stack.add(f.raw[rows, cols].astype(np.float32) - np.float32(sensor.bias_adu), f.header)
        truths.append(f.truth)
    binned = stack.finish()
    eph = EphemerisTable(cam.site)
    result = measure_binned(binned.image, binned, sky.model, cat, cfg.reduction.photometry,
                            ephemeris=eph)
    return {"cfg": cfg, "cat": cat, "sky": sky, "binned": binned, "truths": truths,
            "result": result, "eph": eph}


def test_records_and_station(slowset) -> None:
    rec, st = slowset["result"].records, slowset["result"].station
    b, cat, cfg = slowset["binned"], slowset["cat"], slowset["cfg"]
    assert rec.dtype == slow_record_dtype()
    assert st.dtype == slow_station_dtype
    assert rec.size > 300  # V <= 10 on 1024 x 680 pixels of the zenith camera
    vmag = cat.by_hip(rec["id"]).vmag
    assert vmag.max() <= 10.0
    assert vmag.max() > 9.5  # the slow list goes deeper than the fast one
    assert (vmag > 8.4).sum() > (vmag <= 8.4).sum()
    margin = cfg.reduction.photometry.edge_margin_px
    assert rec["x"].min() >= margin
    assert rec["y"].max() <= 679 - margin
    assert (rec["lstseq"] == b.lstseq).all()
    assert (rec["lstidx"] == b.lstseq % 13500).all()
    assert (rec["exptime"] == np.float64(b.exptime)).all()
    assert (rec["flag"] == ((rec["pflag"] != 0) | (rec["aflag"] != 0))).all()
    row = st[0]
    assert row["lstseq"] == b.lstseq
    assert row["setidx"] == b.setidx
    assert row["nimages"] == NFRAMES
    assert row["lstmid"] == pytest.approx(b.lstmid)
    assert row["jdmid"] == pytest.approx(b.jdmid)
    assert row["sunalt"] < -18.0  # 01:30 UTC at La Palma in March
    sm = slowset["eph"].at(b.jd)
    assert row["moonalt"] == pytest.approx(float(sm.moonalt[0]), abs=1e-3)
    assert not rec.flags.writeable


def test_fluxes_match_truth_with_honest_errors(slowset) -> None:
    """5.5 px flux of isolated stars vs the mean true flux of the frames: reduced
    chi-square within 0.7-1.4 (errors use the effective gain gain x nimages)."""
    rec = slowset["result"].records
    truths = slowset["truths"]
    ids = rec["id"]
    true = np.zeros(ids.size)
    for t in truths:
        order = np.argsort(t["id"])
        pos = np.searchsorted(t["id"], ids, sorter=order)
        pos = np.clip(pos, 0, t.size - 1)
        hit = t["id"][order[pos]] == ids
        true += np.where(hit, t["flux"][order[pos]], np.nan)
    true /= len(truths)
    ref = truths[len(truths) // 2]
    xy = np.column_stack([ref["x"], ref["y"]])
    crowd = np.array([len(n) for n in cKDTree(xy).query_ball_point(xy, 14.0)])
    isolated_ids = ref["id"][crowd == 1]
    good = (rec["pflag"] == 0) & np.isfinite(true) & np.isin(ids, isolated_ids)
    assert good.sum() > 150
    chi = (rec["flux3"][good] - true[good]) / rec["eflux3"][good]
    chi2 = float(np.mean(chi**2))
    assert 0.7 <= chi2 <= 1.4, chi2
    assert abs(np.median(rec["flux3"][good] / true[good]) - 1.0) < 0.01
    # Smaller apertures hold less of the star, in order.
    med = [np.median(rec[f"flux{i}"][good] / true[good]) for i in range(4)]
    assert med[0] < med[1] < med[2] < med[3]


def test_aflag_nan_region_and_file_round_trip(slowset, tmp_path: Path) -> None:
    b, sky, cat, cfg = slowset["binned"], slowset["sky"], slowset["cat"], slowset["cfg"]
    phot = cfg.reduction.photometry
    image = np.array(b.image)
    image[:, :400] = np.nan  # an uncovered part of the grid
    out = measure_binned(image, b, sky.model, cat, phot, aflag=1).records
    assert (out["aflag"] == 1).all()
    assert (out["flag"] == 1).all()
    left = out["x"] < 400 - phot.sky_radii_px[1]
    assert left.sum() > 20
    assert np.isnan(out["flux0"][left]).all()
    assert (out["pflag"][left] & PFlag.BAD_SKY_PIXEL).all() or \
        (out["pflag"][left] != 0).all()
    # Measuring the image read back from its Rice-compressed file gives the same fluxes
    # within a small fraction of their errors.
    back = read_binned(write_binned(tmp_path, b, sky.model)).image
    again = measure_binned(back, b, sky.model, cat, phot).records
    ok = slowset["result"].records["pflag"] == 0
    d = (again["flux3"][ok] - slowset["result"].records["flux3"][ok])
    assert np.max(np.abs(d) / again["eflux3"][ok]) < 0.2
    with pytest.raises(FrameError, match="camera model"):
        measure_binned(np.zeros((10, 10), np.float32), b, sky.model, cat, phot)
