"""One frame reduced end to end against simulator truth (issue 4)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from hw.sim.sky import SimulatedSky, SimulationSettings
from mascara_actors.calibration import master_dark, write_master
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.errors import FrameError
from mascara_actors.photometry import PFlag
from mascara_actors.rawframe import raw_filename, read_raw, write_raw
from mascara_actors.reduce import ReductionSession
from mascara_actors.sidereal import SiteReference


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Ten darks, a master dark and three science frames of LPC on the crop1024 sensor, with
    their truth (shared, read-only: tests that alter a frame write a copy)."""
    d = tmp_path_factory.mktemp("night")
    cfg = load_config()
    cam = cfg.camera("LPC")
    cat = Catalogue.load()
    sky = SimulatedSky(cam, cat, sensor=cfg.sensor("crop1024"), settings=SimulationSettings(seed=7))
    s0 = int(SiteReference().local_sidereal_time("2026-03-21T00:30:00").lstseq)
    darks = []
    for k in range(10):
        f = sky.exposure(s0 - 20 + k, "dark")
        darks.append(write_raw(d / raw_filename(f.header.lstseq, "C", "dark"), f.raw, f.header))
    mdark = master_dark(darks, calibration=cfg.reduction.calibration)
    dark_path = write_master(d / mdark.filename, mdark)
    frames = []
    for s in (s0, s0 + 1, s0 + 2):
        f = sky.exposure(s)
        frames.append((write_raw(d / raw_filename(s, "C"), f.raw, f.header), f))
    session = ReductionSession.open("LPC", dark=dark_path)
    solution = session.solve(frames[0][0], None)
    return {"dir": d, "session": session, "solution": solution, "frames": frames, "cat": cat}


def _join(result, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, it, ir = np.intersect1d(truth["id"], result.records["id"], return_indices=True)
    return truth[it], result.records[ir]


def _isolated(truth: np.ndarray, radius: float = 12.0) -> np.ndarray:
    """Truth rows with no other rendered star (V <= 10.5) within ``radius`` pixels."""
    xy = np.column_stack([truth["x"], truth["y"]])
    counts = np.array([len(n) for n in cKDTree(xy).query_ball_point(xy, radius)])
    return counts == 1


def test_records_and_station(night) -> None:
    path, frame = night["frames"][1]
    result = night["session"].reduce_frame(path, night["solution"])
    rec, st = result.records, result.station[0]
    h = frame.header
    assert result.lstseq == h.lstseq
    assert (rec["lstseq"] == h.lstseq).all()
    assert (rec["lstidx"] == h.lstseq % 13500).all()
    assert 150 < rec.size < 800  # V <= 8.4 stars on 1024 x 680 pixels of the zenith camera
    assert (night["cat"].by_hip(rec["id"]).vmag <= 8.4).all()
    margin = load_config().reduction.photometry.edge_margin_px
    assert rec["x"].min() >= margin
    assert rec["x"].max() <= 1023 - margin
    assert st["lstseq"] == h.lstseq
    assert st["jdmid"] == pytest.approx(h.jdmid)
    assert st["darkfile"] > 0  # the master dark was used
    assert st["sunalt"] < -18.0  # 00:30 UTC at La Palma in March
    assert st["nstars"] == rec.size
    assert st["nflagged"] == np.count_nonzero(rec["flag"])
    assert abs(st["oversca0"] - 1000.0) < 3.0  # the simulator's bias level
    assert set(result.timings) >= {"read", "calibrate", "positions", "photometry", "total"}


def test_fluxes_match_truth_with_honest_errors(night) -> None:
    """Reduced chi-square of (measured - true) / error within 0.8-1.25 for isolated stars."""
    path, frame = night["frames"][1]
    result = night["session"].reduce_frame(path, night["solution"])
    truth, rec = _join(result, frame.truth)
    good = (rec["pflag"] == 0) & _isolated(frame.truth)[np.isin(frame.truth["id"], truth["id"])]
    assert good.sum() > 100
    # 4.5 px holds all of a 0.9-1.1 px sigma PSF: compare to the whole deposited flux.
    chi = (rec["flux1"] - truth["flux"]) / rec["eflux1"]
    chi2 = float(np.mean(chi[good] ** 2))
    assert 0.8 <= chi2 <= 1.25, chi2
    assert abs(np.median(rec["flux1"][good] / truth["flux"][good]) - 1.0) < 0.002


def test_positions_follow_the_solution_to_truth(night) -> None:
    path, frame = night["frames"][2]
    result = night["session"].reduce_frame(path, night["solution"])
    truth, rec = _join(result, frame.truth)
    d = np.hypot(rec["x"] - truth["x"], rec["y"] - truth["y"])
    assert np.sqrt(np.mean(d**2)) <= 0.1


def _modified_copy(night, tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    path, _frame = night["frames"][1]
    raw = read_raw(path)
    data = raw.data.copy()
    edit(data, raw.header)
    return write_raw(tmp_path / path.name, data, raw.header)


def test_flags_fire_on_saturated_and_negative_stars(night, tmp_path: Path) -> None:
    path, _frame = night["frames"][1]
    first = night["session"].reduce_frame(path, night["solution"])
    good = np.flatnonzero(first.records["pflag"] == 0)
    sat, neg = first.records[good[0]], first.records[good[1]]

    def edit(data: np.ndarray, h) -> None:  # type: ignore[no-untyped-def]
        for star, value in ((sat, 65535), (neg, 0)):
            x, y = round(float(star["x"])) + h.x0, round(float(star["y"])) + h.y0
            data[y - 2 : y + 3, x - 2 : x + 3] = value

    result = night["session"].reduce_frame(_modified_copy(night, tmp_path, edit), night["solution"])
    by_id = {int(r["id"]): r for r in result.records}
    assert by_id[int(sat["id"])]["pflag"] & PFlag.SATURATED
    assert by_id[int(neg["id"])]["pflag"] & PFlag.NEGATIVE_FLUX
    assert by_id[int(sat["id"])]["flag"] == 1


def test_frame_of_another_camera_is_refused(night, tmp_path: Path) -> None:
    path, _ = night["frames"][1]
    raw = read_raw(path)
    other = write_raw(tmp_path / "x.fits", raw.data, dataclasses.replace(raw.header, camera="N"))
    with pytest.raises(FrameError, match=r"camera N.*runs LaPalma camera C"):
        night["session"].reduce_frame(other, night["solution"])


@pytest.mark.parametrize(("shift_s", "refused"), [
    (3600.0, True), (-3600.0, True), (-9.0, True), (14.0, True),  # out of its slot
    (-6.0, False), (6.0, False), (12.0, False)])  # within a slot of its start
def test_a_frame_whose_clock_contradicts_its_slot_is_refused(night, tmp_path: Path,
                                                            shift_s: float,
                                                            refused: bool) -> None:
    """JD (the light curves' times) and LSTSEQ (the astrometry's) must agree: a header an
    hour off was reduced without a word, its points an hour off in the light curves."""
    path, _ = night["frames"][1]
    raw = read_raw(path)
    days = shift_s / 86400.0
    moved = dataclasses.replace(raw.header, jd=raw.header.jd + days,
                                jdmid=raw.header.jdmid + days)
    other = write_raw(tmp_path / path.name, raw.data, moved)
    if not refused:
        assert night["session"].read(other).header.jd == moved.jd
        return
    with pytest.raises(FrameError) as info:
        night["session"].read(other)
    assert str(info.value).startswith(
        f"{other}: JD {moved.jd:.6f} is {shift_s:+.0f} s from the start of its slot (LSTSEQ "
        f"{raw.header.lstseq}, JD {raw.header.jd:.6f}): the header's clock and slot "
        "contradict each other")


def test_truncated_frame_fails_alone(night, tmp_path: Path) -> None:
    path, _ = night["frames"][1]
    cut = tmp_path / path.name
    cut.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(FrameError, match="truncated"):
        night["session"].reduce_frame(cut, night["solution"])
    # the session keeps working on the next frame
    assert night["session"].reduce_frame(night["frames"][2][0], night["solution"]).nstars > 0


def test_a_frame_solved_on_is_reduced_from_that_read(night, tmp_path: Path) -> None:
    """The reducer reduces a set's first frame right after solving on it: the frame is read
    once. Only that one next reduction uses the kept read."""
    path, _ = night["frames"][1]
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    session, solution = night["session"], night["solution"]
    session.solve(copy, solution)
    copy.write_bytes(path.read_bytes()[:5000])  # no second read could succeed now
    kept = session.reduce_frame(copy, solution)
    fresh = session.reduce_frame(path, solution)
    np.testing.assert_array_equal(kept.records, fresh.records)
    with pytest.raises(FrameError, match="truncated"):
        session.reduce_frame(copy, solution)


def test_all_zero_readout_is_a_frame_error(night, tmp_path: Path) -> None:
    def edit(data: np.ndarray, h) -> None:  # type: ignore[no-untyped-def]
        data[h.y0 : h.y0 + h.ysize, h.x0 : h.x0 + h.xsize] = 0

    with pytest.raises(FrameError, match="every science pixel is 0"):
        night["session"].reduce_frame(_modified_copy(night, tmp_path, edit), night["solution"])
