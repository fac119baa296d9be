"""The pieces of the decorrelation on small exact cases (fast)."""

from __future__ import annotations

import numpy as np
import pytest

from mascara_actors.atmosphere import airmass, scintillation
from mascara_actors.decorrelation.bins import CalibratedPoints, bin_points, cell_rms
from mascara_actors.decorrelation.clear_sky import clear_level
from mascara_actors.decorrelation.extra_variance import extra_variance
from mascara_actors.decorrelation.grids import IntrapixelGrid, TransmissionGrid, pixel_basis
from mascara_actors.decorrelation.patch import PatchPoints
from mascara_actors.decorrelation.sky import NPATCH, patch_of, slot_hour_angle, wrap_ha
from mascara_actors.decorrelation.station_times import StationTimes
from mascara_actors.decorrelation.temporal import PatchState, TemporalFit, leave_one_out_clouds
from mascara_actors.sidereal import SLOT_SIDEREAL_S, SLOTS_PER_SIDEREAL_DAY


def test_extra_variance_is_exact_in_one_step_for_equal_errors() -> None:
    rng = np.random.default_rng(5)
    resid = rng.normal(0.0, 0.05, 4000)  # error 0.03 and extra sigma 0.04
    group = np.repeat([0, 1], 2000)
    s2 = extra_variance(resid, np.full(4000, 0.03**2), group, 3, steps=1)
    expected = [np.mean(resid[:2000] ** 2) - 0.03**2, np.mean(resid[2000:] ** 2) - 0.03**2]
    assert s2[:2] == pytest.approx(expected, rel=1e-12)
    assert s2[2] == 0.0  # a group without points
    assert np.sqrt(s2[:2]) == pytest.approx([0.04, 0.04], abs=0.003)


def test_extra_variance_is_zero_when_the_errors_explain_the_scatter() -> None:
    resid = np.random.default_rng(6).normal(0.0, 0.01, 500)
    assert extra_variance(resid, np.full(500, 0.02**2), np.zeros(500, np.int64), 1)[0] == 0.0


def test_the_clear_level_is_not_pulled_by_clouds() -> None:
    rng = np.random.default_rng(7)
    clear = rng.normal(0.010, 0.003, 600)
    cloudy = rng.uniform(0.1, 1.0, 400)
    values = np.sort(np.r_[clear, cloudy])
    level = clear_level(values)
    assert level == pytest.approx(0.010, abs=0.001)
    assert abs(np.median(values) - 0.010) > 2 * abs(level - 0.010)  # the plain median is
    assert clear_level(np.array([0.3, 0.1])) == pytest.approx(0.2)
    assert clear_level(np.empty(0)) == 0.0


def test_transmission_nodes_interpolate_bilinearly_with_ha_periodic() -> None:
    grid = TransmissionGrid.covering(20.0, 30.0)
    assert grid.dec0 <= 19.0
    assert grid.dec_nodes[-1] >= 31.0
    assert grid.nha == 360
    values = np.random.default_rng(8).normal(size=grid.size)
    k, j = 37, 4
    node = values[j * grid.nha + k]
    assert grid.evaluate(values, np.array([grid.ha_nodes[k]]),
                         np.array([grid.dec_nodes[j]]))[0] == pytest.approx(node)
    mid = grid.evaluate(values, np.array([grid.ha_nodes[k] + 0.5]),
                        np.array([grid.dec_nodes[j]]))[0]
    assert mid == pytest.approx(0.5 * (node + values[j * grid.nha + k + 1]))
    # across HA 180 deg: between the last column and the first
    wrap = grid.evaluate(values, np.array([179.5]), np.array([grid.dec_nodes[j]]))[0]
    assert wrap == pytest.approx(0.5 * (values[j * grid.nha + 359] + values[j * grid.nha]))
    assert grid.evaluate(values, np.array([-180.5]), np.array([grid.dec_nodes[j]]))[0] \
        == pytest.approx(wrap)
    assert TransmissionGrid.from_attrs(dict(grid.attrs())) == grid


def test_intrapixel_cells_and_the_pixel_phase() -> None:
    grid = IntrapixelGrid.on(TransmissionGrid.covering(20.0, 30.0), ha_ratio=2, dec_ratio=2)
    assert (grid.ha_step, grid.dec_step, grid.nha) == (2.0, 2.0, 180)
    amp = np.zeros((grid.size, 4))
    cell = int(grid.cell(np.array([10.5]), np.array([25.0]))[0])
    amp[cell] = [0.004, -0.003, 0.003, 0.002]
    # the basis is the pixel phase: a whole pixel further is the same point
    x, y = np.array([100.25, 101.25]), np.array([50.0, 51.0])
    term = grid.evaluate(amp, np.full(2, 10.5), np.full(2, 25.0), x, y)
    assert term == pytest.approx([0.004 * 1.0 + 0.003 * 0.0 + 0.002 * 1.0] * 2, abs=1e-12)
    assert pixel_basis(np.array([0.0]), np.array([0.25]))[:, 0] == pytest.approx(
        [0.0, 1.0, 1.0, 0.0], abs=1e-12)
    assert IntrapixelGrid.from_attrs(dict(grid.attrs())) == grid


def test_hour_angles_and_patches() -> None:
    # a star at RA = the slot's mid LST (x 15) is on the meridian of the reference site
    lstseq = np.array([123456789])
    lst_mid = ((lstseq % SLOTS_PER_SIDEREAL_DAY) + 0.5) * SLOT_SIDEREAL_S / 3600.0
    assert slot_hour_angle(lstseq, 15.0 * lst_mid, 0.0) == pytest.approx([0.0], abs=1e-9)
    assert slot_hour_angle(lstseq, 15.0 * lst_mid, 10.0) == pytest.approx([10.0], abs=1e-9)
    assert wrap_ha(np.array([180.0, -180.0, 540.0, -190.0])) == pytest.approx(
        [-180.0, -180.0, -180.0, 170.0])
    patches = patch_of(np.array([0.0, 0.0, 123.0, 359.9]), np.array([90.0, -90.0, 0.0, 30.0]))
    assert patches[0] < 4
    assert patches[1] >= NPATCH - 4
    assert np.all((patches >= 0) & (patches < NPATCH))


def _patch(star: np.ndarray, t: np.ndarray, lstseq: np.ndarray) -> PatchPoints:
    n = len(star)
    ns = int(star.max()) + 1
    return PatchPoints(ids=np.arange(100, 100 + ns), dec=np.zeros(ns), vmag=np.zeros(ns),
                       ra0=0.0, star=star, t=t, lstseq=lstseq, mag=np.zeros(n),
                       emag=np.full(n, 0.01), ha=np.zeros(n), x=np.zeros(n, np.float32),
                       y=np.zeros(n, np.float32))


def test_a_star_never_removes_its_own_signal_through_the_clouds() -> None:
    # one cell (exposure), four stars: star 0 dips by 0.1 mag, the clouds are 0.2 mag
    p = _patch(np.arange(4), np.zeros(4, np.int64), np.array([1000]))
    r = np.array([0.3, 0.2, 0.2, 0.2])
    state = PatchState(m=np.zeros(4), s2s=np.zeros(4), c=np.zeros(1), s2t=np.zeros(1))
    fit = TemporalFit(w=np.ones(4), valid=np.array([True]), nstar_t=np.array([4]))
    c_loo, ok = leave_one_out_clouds(p, r, state, fit, min_cloud_stars=4)
    assert ok.all()
    assert c_loo[0] == pytest.approx(0.2)  # the others' clouds: star 0 keeps its dip
    assert (r - c_loo)[0] == pytest.approx(0.1)
    assert c_loo[1:] == pytest.approx([0.7 / 3] * 3)
    _, ok = leave_one_out_clouds(p, r, state, fit, min_cloud_stars=5)
    assert not ok.any()


def test_a_cell_is_cloudy_only_for_the_scatter_beyond_the_scintillation() -> None:
    """Low in the sky the scintillation (not in the flux errors) fills a cloud cell's extra
    sigma: 6 % at 25 degrees altitude on a clear night. Only what a cell has beyond it is
    patchy cloud (bit 2); else a side camera's clear bins were flagged and the transit
    search dropped them."""
    lstseq = np.arange(50000, 50200, dtype=np.int64)  # sets 1000 to 1003
    p = _patch(np.zeros(200, np.int64), np.arange(200), lstseq)
    station = StationTimes(lstseq, 2460000.0 + np.arange(200) / 13500,
                           np.arange(200) * 0.001, np.full(200, 6.4))
    # Young's scintillation of a 17 mm pupil at 2,400 m, 6.4 s, 25 degrees altitude (mag)
    scint = 1.0857 * scintillation(airmass(np.full(200, 25.0)), pupil_m=0.017,
                                   height_m=2400.0, exptime_s=np.full(200, 6.4))
    assert scint[0] == pytest.approx(0.062, abs=0.003)
    set_of = np.arange(200) // 50
    # sets 1000, 1001: the cells hold the scintillation only (within 1 %); set 1002: 0.06
    # mag of patchy cloud beyond it; set 1003: at the zenith scintillation, 0.06 mag of cloud
    beyond = np.array([0.0, 0.0, 0.06, 0.06])[set_of]
    floor = np.where(set_of < 3, scint, 0.013)
    sigma = np.sqrt((np.where(set_of == 1, 1.01, 1.0) * floor) ** 2 + beyond**2)
    cal = CalibratedPoints(mag=np.ones(200), var=np.full(200, 0.01**2), use=np.ones(200, bool),
                           cloud_ok=np.ones(200, bool), trans=np.zeros(200),
                           clouds=np.zeros(200), cloud_sigma=sigma, scint_sigma=floor)
    [(_, bins)] = bin_points(p, cal, station)
    assert bins["setidx"].tolist() == [1000, 1001, 1002, 1003]
    assert (bins["cflag"] & 2).tolist() == [0, 0, 2, 2]
    # a cell's scintillation is the RMS of its points' (the lowest stars weigh most)
    assert cell_rms(np.array([0.03, 0.04, 0.01]), np.array([0, 0, 1])) == pytest.approx(
        [np.sqrt(0.00125), np.sqrt(0.00125), 0.01])


def test_bins_average_a_set_and_its_lst_across_midnight() -> None:
    lstseq = np.arange(49950, 50050, dtype=np.int64)  # sets 999 and 1000
    p = _patch(np.zeros(100, np.int64), np.arange(100), lstseq)
    lst = (23.97 + np.arange(100) * 0.001) % 24.0  # crosses 0 h in set 999
    station = StationTimes(lstseq, 2460000.0 + np.arange(100) / 13500, lst, np.full(100, 6.4))
    mag = np.where(np.arange(100) < 50, 1.0, 2.0)
    cal = CalibratedPoints(mag=mag, var=np.full(100, 0.01**2), use=np.arange(100) != 3,
                           cloud_ok=np.arange(100) != 3, trans=np.zeros(100),
                           clouds=np.zeros(100), cloud_sigma=np.zeros(100),
                           scint_sigma=np.zeros(100))
    [(hip, bins)] = bin_points(p, cal, station)
    assert hip == 100
    assert bins["setidx"].tolist() == [999, 1000]
    assert bins["nobs"].tolist() == [49, 50]
    assert bins["mag"] == pytest.approx([1.0, 2.0])
    assert bins["emag"] == pytest.approx([0.01 / np.sqrt(49), 0.01 / np.sqrt(50)], rel=1e-6)
    unwrapped = 23.97 + np.r_[np.arange(3), np.arange(4, 50)] * 0.001
    assert bins["lst"][0] == pytest.approx(np.mean(unwrapped) % 24.0, abs=1e-9)
    assert 23.99 < bins["lst"][0] < 24.0  # a plain mean across midnight gives about 14 h
    assert bins["cflag"].tolist() == [4, 0]  # a point lost for lack of cloud stars
