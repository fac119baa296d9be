"""Tests of mascara_actors.calibration: statistics, masters, calibration (issue 4 part 1).

Frames come from the simulator on a small sensor (384 x 256 science pixels plus overscan
strips on all four sides), whose bias level, read noise, dark current, hot pixels and
throughput pattern are known, or are constructed by hand.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hw.sim.render import RenderSettings
from hw.sim.sky import SimulatedSky, SimulationSettings
from mascara_actors import calibration as cal
from mascara_actors.calibration import (
    Calibrator,
    MasterFrame,
    image_statistics,
    master_bias,
    master_dark,
    master_filename,
    master_flat,
    read_master,
    write_master,
)
from mascara_actors.calibration import combine as combine_module
from mascara_actors.calibration import sources as sources_module
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CalibrationConfig, SensorConfig, load_config
from mascara_actors.errors import CalibrationError, FrameError
from mascara_actors.rawframe import RawFrame, raw_filename, write_raw

N_DARK = 10
NIGHT_LSTSEQ = 1000  # 2013-01-01 ~20:20 UTC: dark sky at La Palma


@pytest.fixture(scope="module")
def cfg():
    """The default configuration (shared, read-only)."""
    return load_config()


@pytest.fixture(scope="module")
def calib(cfg) -> CalibrationConfig:
    """``reduction.calibration`` of the default config (min 10 frames of each kind)."""
    return cfg.reduction.calibration


@pytest.fixture(scope="module")
def sensor(cfg) -> SensorConfig:
    """A small crop of the LPC sensor with overscan on all four sides (shared)."""
    return dataclasses.replace(cfg.camera("LPC").sensor, name="test-crop", nx=424, ny=280,
                               x0=20, y0=12, xsize=384, ysize=256)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    """The Hipparcos catalogue (shared, read-only)."""
    return Catalogue.load()


def _sky(cfg, catalogue, sensor, **settings) -> SimulatedSky:
    defaults = {"seed": 3, "vmax": 6.0, "render": RenderSettings(hot_pixel_fraction=1e-3)}
    return SimulatedSky(cfg.camera("LPC"), catalogue, sensor=sensor,
                        settings=SimulationSettings(**{**defaults, **settings}))


@pytest.fixture(scope="module")
def sky(cfg, catalogue, sensor) -> SimulatedSky:
    """Simulated LPC sky at -15 C with 1e-3 hot pixels, stars to V = 6 (shared)."""
    return _sky(cfg, catalogue, sensor)


def frame(sky: SimulatedSky, lstseq: int, kind: str, **kw) -> RawFrame:
    f = sky.exposure(lstseq, kind, **kw)
    return RawFrame(data=f.raw, header=f.header)


@pytest.fixture(scope="module")
def darks(sky) -> list[RawFrame]:
    """N_DARK + 1 simulated darks (fresh per module, never modified)."""
    return [frame(sky, 500 + i, "dark") for i in range(N_DARK + 1)]


@pytest.fixture(scope="module")
def mdark(darks, calib) -> MasterFrame:
    """Master dark of the first N_DARK darks."""
    return master_dark(darks[:N_DARK], calibration=calib)


@pytest.fixture(scope="module")
def mflat(sky, mdark, calib) -> MasterFrame:
    """Master flat of 10 simulated flats."""
    return master_flat([frame(sky, 700 + i, "flat") for i in range(10)], mdark,
                       calibration=calib)


def with_header(raw: RawFrame, *, path: str | None = None, data=None, **changes) -> RawFrame:
    return RawFrame(data=raw.data if data is None else data,
                    header=dataclasses.replace(raw.header, **changes),
                    path=Path(path) if path else raw.path)


def read_noise_adu(sensor: SensorConfig) -> float:
    return sensor.read_noise_e / sensor.gain_e_per_adu


def dark_current_e(sky: SimulatedSky, exptime: float, ccdtemp: float) -> float:
    return sky.settings.render.dark_e_per_s_at_0c * 2.0 ** (ccdtemp / 6.3) * exptime


# --- image statistics --------------------------------------------------------------------


def test_statistics_count_zeros_and_saturated_pixels_and_read_each_overscan_strip(darks):
    h = darks[0].header
    rng = np.random.default_rng(5)
    data = rng.normal(2000.0, 50.0, size=darks[0].data.shape).round().astype(np.uint16)
    lx, ux, ly, uy = h.x0, h.x0 + h.xsize, h.y0, h.y0 + h.ysize
    data[uy:, lx:ux] = 1001
    data[ly:uy, :lx] = 1002
    data[:ly, lx:ux] = 1003
    data[ly:uy, ux:] = 1004
    data[ly:uy, ux:][::2] = 1005  # half the rows: an even count, median between two values
    science = data[ly:uy, lx:ux]  # a view: the odd pixels go in the science region
    index = rng.choice(science.size, size=37 + 11 + 5, replace=False)
    rows, cols = np.unravel_index(index, science.shape)
    science[rows[:37], cols[:37]] = 0
    science[rows[37:48], cols[37:48]] = 65000
    science[rows[48:], cols[48:]] = 64000  # not above the threshold: not counted
    stats = image_statistics(RawFrame(data=data, header=h))

    assert stats.imnzero == 37
    assert stats.imnsat == 11
    assert (stats.oversca0, stats.oversca1, stats.oversca2) == (1001.0, 1002.0, 1003.0)
    assert stats.oversca3 == np.median(data[ly:uy, ux:]) == 1004.5
    assert stats.overscan_level == np.median([1001.0, 1002.0, 1003.0, 1004.5])
    assert abs(stats.immed - np.median(data)) <= 1.0
    assert stats.imstd == pytest.approx(np.std(data.astype(float)), rel=0.05)
    assert set(stats.as_record()) == {"imnzero", "imnsat", "imstd", "immed", "oversca0",
                                      "oversca1", "oversca2", "oversca3"}


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_zero_and_saturated_counts_of_a_frame_of_many_blocks(darks, dtype):
    """A frame taller than one cache block (the counts go block by block): zeros and
    saturated pixels in every block, NaN pixels (float frames) in one, against whole-frame
    counts."""
    h = darks[0].header
    rng = np.random.default_rng(8)
    data = rng.normal(2000.0, 50.0, size=(5000, darks[0].data.shape[1])).round().astype(dtype)
    assert data.nbytes > 3 * (1 << 20)
    index = rng.choice(data.size, size=300, replace=False)
    data.flat[index[:100]] = 0
    data.flat[index[100:250]] = 65535
    data.flat[index[250:]] = 64000
    if dtype == np.float32:
        data[4000:4003] = np.nan
    stats = image_statistics(RawFrame(data=data, header=h))
    assert stats.imnzero == np.count_nonzero(data == 0) > 90
    assert stats.imnsat == np.count_nonzero(data > 64000) > 140


def test_overscan_medians_equal_the_simulator_bias(darks, sensor):
    stats = image_statistics(darks[0])
    levels = [stats.oversca0, stats.oversca1, stats.oversca2, stats.oversca3]
    assert levels == pytest.approx([sensor.bias_adu] * 4, abs=0.5)
    assert stats.imnzero == 0
    assert stats.imnsat == 0
    # A frame this small is below the subsampling size: exact values, hot pixels included.
    assert stats.imstd == pytest.approx(np.std(darks[0].data.astype(float)), rel=1e-9)
    assert stats.immed == np.median(darks[0].data)
    assert stats.immed == pytest.approx(sensor.bias_adu, abs=8.0)


def test_an_empty_overscan_strip_gives_nan_and_is_left_out_of_the_level(darks):
    raw = darks[0]
    h = raw.header
    # Drop the left strip: the science region now starts at column 0.
    cut = with_header(raw, data=raw.data[:, h.x0:], x0=0)
    stats = image_statistics(cut)
    assert math.isnan(stats.oversca1)
    finite = [stats.oversca0, stats.oversca2, stats.oversca3]
    assert all(math.isfinite(v) for v in finite)
    assert stats.overscan_level == np.median(finite)


def test_statistics_of_an_all_zero_frame(darks):
    zero = with_header(darks[0], data=np.zeros_like(darks[0].data))
    stats = image_statistics(zero)
    assert stats.imnzero == zero.data.size
    assert stats.imnsat == 0
    assert stats.immed == 0.0
    assert stats.imstd == 0.0
    assert stats.overscan_level == 0.0


def test_statistics_ignore_nan_pixels_of_a_float_frame(darks):
    data = darks[0].data.astype(np.float32)
    data[50:60, 100:200] = np.nan
    data[0, 0] = 0.0
    data[1, :3] = 65000.0
    stats = image_statistics(with_header(darks[0], data=data))
    finite = data[np.isfinite(data)]
    assert stats.imnzero == 1
    assert stats.imnsat == 3
    assert abs(stats.immed - np.median(finite)) <= 1.0
    assert stats.imstd == pytest.approx(np.std(finite.astype(float)), rel=0.1)
    all_nan = with_header(darks[0], data=np.full(data.shape, np.nan, np.float32))
    stats = image_statistics(all_nan)
    assert stats.imnzero == 0
    assert stats.imnsat == 0
    assert math.isnan(stats.immed)
    assert math.isnan(stats.overscan_level)


# --- masters -----------------------------------------------------------------------------


def test_master_dark_removes_bias_dark_current_and_hot_pixels(sky, darks, mdark, sensor):
    result = Calibrator(dark=mdark).calibrate(darks[N_DARK])
    image = result.image
    assert image.dtype == np.float32
    assert image.shape == (sensor.ysize, sensor.xsize)
    assert (result.correction, result.darkfile, result.flatfile) == ("dark", mdark.lstseq, 0)
    expected_std = read_noise_adu(sensor) * math.sqrt(1.0 + 1.0 / N_DARK)
    assert abs(float(image.mean())) < 0.25
    assert float(image.std()) == pytest.approx(expected_std, rel=0.10)

    # Hot pixels: hundreds to thousands of ADU in the raw dark, noise only once calibrated.
    hot = sky.pattern.hot_index
    assert hot.size >= 50
    hot_e = dark_current_e(sky, darks[0].header.exptime, darks[0].header.ccdtemp) * (
        sky.pattern.hot_factor)
    raw_excess = darks[N_DARK].science().ravel()[hot] - sensor.bias_adu
    assert np.all(raw_excess > 3 * read_noise_adu(sensor) + 0.5 * hot_e / sensor.gain_e_per_adu)
    sigma_hot = np.sqrt((hot_e + sensor.read_noise_e**2) * (1 + 1 / N_DARK)) / (
        sensor.gain_e_per_adu)
    assert np.all(np.abs(image.ravel()[hot]) < 5 * sigma_hot)


def test_master_header_fields(darks, mdark, sensor):
    assert mdark.kind == "dark"
    assert mdark.nobs == N_DARK
    assert mdark.data.dtype == np.float32
    assert mdark.data.shape == (sensor.ny, sensor.nx)
    assert mdark.lstseq == min(d.header.lstseq for d in darks[:N_DARK])
    assert mdark.exptime == pytest.approx(np.mean([d.header.exptime for d in darks[:N_DARK]]))
    assert mdark.ccdtemp == pytest.approx(-15.0)
    assert (mdark.camera, mdark.site) == ("C", "LaPalma")
    assert mdark.region == (sensor.x0, sensor.xsize, sensor.y0, sensor.ysize)
    assert mdark.filename == f"{mdark.lstseq:08d}Cmasterdark.fits"


def test_robust_combine_ignores_an_outlier_in_one_frame(darks, calib, mdark, sensor):
    hit = darks[3].data.copy()
    hit[100:103, 200:203] += 5000  # a cosmic ray or satellite glint in one dark
    frames = list(darks[:N_DARK])
    frames[3] = with_header(darks[3], data=hit)
    master = master_dark(frames, calibration=calib)
    patch = master.data[100:103, 200:203] - mdark.data[100:103, 200:203]
    # A plain mean would be 500 ADU high; the clipped mean moves by noise only.
    assert np.all(np.abs(patch) < 4 * read_noise_adu(sensor))
    assert darks[3].data[100, 200] == hit[100, 200] - 5000  # input untouched


def test_master_bias_is_the_bias_level_and_leaves_the_dark_current(sky, darks, calib, sensor):
    biases = [frame(sky, 300 + i, "bias") for i in range(10)]
    mbias = master_bias(biases, calibration=calib)
    assert mbias.kind == "bias"
    assert mbias.exptime == 0.0
    assert float(np.median(mbias.data)) == pytest.approx(sensor.bias_adu, abs=0.5)
    result = Calibrator(bias=mbias).calibrate(darks[0])
    assert (result.correction, result.darkfile) == ("bias", 0)
    h = darks[0].header
    current_adu = dark_current_e(sky, h.exptime, h.ccdtemp) / sensor.gain_e_per_adu
    assert float(np.median(result.image)) == pytest.approx(current_adu, abs=0.5)


def test_master_flat_recovers_the_throughput_pattern(sky, mflat, mdark):
    truth = sky.pattern.throughput() / np.median(sky.pattern.throughput())
    sci = mflat.science()
    assert float(np.median(sci)) == pytest.approx(1.0, abs=1e-6)
    assert float(np.sqrt(np.mean((sci / truth - 1.0) ** 2))) < 0.005
    outside = np.ones(mflat.data.shape, bool)
    outside[mflat.y0 : mflat.y0 + mflat.ysize, mflat.x0 : mflat.x0 + mflat.xsize] = False
    assert np.all(mflat.data[outside] == 1.0)
    assert mflat.kind == "flat"
    assert mflat.darkfile == mdark.lstseq


def test_master_flat_rejects_a_frame_without_light(sky, darks, mdark, calib):
    flats = [frame(sky, 700 + i, "flat") for i in range(9)]
    closed = with_header(darks[0], path="00000500Cflat.fits", imagetyp="flat")
    with pytest.raises(CalibrationError, match=r"00000500Cflat\.fits: flat level after dark "
                       r"subtraction is .* a flat needs light"):
        master_flat([*flats, closed], mdark, calibration=calib)


def test_calibrated_science_frame_has_the_simulated_sky_level(sky, mdark, mflat, sensor):
    rendered = sky.exposure(NIGHT_LSTSEQ, "science")
    raw, stars = RawFrame(data=rendered.raw, header=rendered.header), rendered.truth
    result = Calibrator(dark=mdark, flat=mflat).calibrate(raw)
    assert (result.correction, result.darkfile, result.flatfile, result.dark_scale) == (
        "dark", mdark.lstseq, mflat.lstseq, 1.0)
    # Calibrated sky = sky electrons / gain x median throughput (the flat has median 1).
    expected = sky.sky_level_e(raw.header) / sensor.gain_e_per_adu * float(
        np.median(sky.pattern.throughput()))
    yy, xx = np.mgrid[0 : sensor.ysize, 0 : sensor.xsize]
    far = np.ones(xx.shape, bool)
    for x, y in zip(stars["x"], stars["y"], strict=True):
        far &= (xx - x) ** 2 + (yy - y) ** 2 > 20.0**2
    pixels = result.image[far]
    sigma = math.sqrt(expected * sensor.gain_e_per_adu + sensor.read_noise_e**2) / (
        sensor.gain_e_per_adu)
    assert float(pixels.std()) == pytest.approx(sigma, rel=0.1)
    error_of_median = 1.2533 * sigma / math.sqrt(pixels.size)
    assert abs(float(np.median(pixels)) - expected) < 5 * error_of_median


def test_calibrate_into_a_given_buffer(darks, mdark, mflat):
    calibrator = Calibrator(dark=mdark, flat=mflat)
    fresh = calibrator.calibrate(darks[1]).image
    buffer = np.full(fresh.shape, np.nan, np.float32)
    result = calibrator.calibrate(darks[1], out=buffer)
    assert result.image is buffer
    assert np.array_equal(buffer, fresh)
    with pytest.raises(ValueError, match=r"out must be a C-contiguous float32 array of shape "
                       r"\(256, 384\)"):
        calibrator.calibrate(darks[1], out=np.empty((256, 384), np.float64))


def test_dark_and_bias_are_subtracted_exactly_in_float32(sky, darks, mdark, calib):
    """A 16-bit frame minus a master is the float32 nearest to the exact difference, which
    float64 holds exactly (the reference here), whatever order the subtraction takes."""
    raw = darks[N_DARK]
    assert raw.data.dtype == np.uint16
    mbias = master_bias([frame(sky, 300 + i, "bias") for i in range(10)], calibration=calib)
    for master, calibrator in ((mdark, Calibrator(dark=mdark)), (mbias, Calibrator(bias=mbias))):
        exact = raw.science().astype(np.float64) - master.science().astype(np.float64)
        assert np.array_equal(calibrator.calibrate(raw).image, exact.astype(np.float32))


def test_without_dark_the_overscan_level_is_subtracted_and_flagged(darks):
    raw = darks[0]
    stats = image_statistics(raw)
    result = Calibrator().calibrate(raw, stats=stats)
    assert (result.correction, result.darkfile, result.flatfile) == ("overscan", 0, 0)
    expected = raw.science().astype(np.float32) - np.float32(stats.overscan_level)
    assert np.array_equal(result.image, expected)
    assert np.array_equal(Calibrator().calibrate(raw).image, expected)


def test_dark_is_scaled_to_the_exposure_time(cfg, catalogue, sensor, calib):
    warm = _sky(cfg, catalogue, sensor, ccdtemp_c=10.0)  # ~60 ADU of dark current
    master = master_dark([frame(warm, 500 + i, "dark") for i in range(N_DARK)],
                         calibration=calib)
    long_sky = _sky(cfg, catalogue, sensor, ccdtemp_c=10.0)
    long_sky.exptime_s = 2.0 * warm.exptime_s
    long_dark = frame(long_sky, 600, "dark")
    result = Calibrator(dark=master).calibrate(long_dark)
    assert result.dark_scale == pytest.approx(2.0)
    current_adu = dark_current_e(warm, warm.exptime_s, 10.0) / sensor.gain_e_per_adu
    assert current_adu > 50.0
    assert abs(float(np.median(result.image))) < 1.0
    hot = warm.pattern.hot_index
    hot_e = dark_current_e(long_sky, long_sky.exptime_s, 10.0) * warm.pattern.hot_factor
    sigma_hot = np.sqrt(hot_e + 2 * sensor.read_noise_e**2) / sensor.gain_e_per_adu
    assert np.all(np.abs(result.image.ravel()[hot]) < 5 * sigma_hot)


# --- errors and odd input ----------------------------------------------------------------


def test_too_few_frames(darks, calib):
    with pytest.raises(CalibrationError, match=r"found 9 dark frame\(s\), need at least 10 "
                       r"for a master dark \(reduction\.calibration\.min_dark\)"):
        master_dark(darks[:9], calibration=calib)


def test_min_frames_come_from_the_config(darks):
    loose = CalibrationConfig(min_bias=1, min_dark=3, min_flat=1, n_bias=1, n_dark=1,
                              n_flat=1, dark_history=1)
    assert master_dark(darks[:3], calibration=loose).nobs == 3
    with pytest.raises(CalibrationError, match="found 2 dark"):
        master_dark(darks[:2], calibration=loose)


def test_mixed_cameras_name_the_odd_file(darks, calib):
    frames = list(darks[:N_DARK])
    frames[4] = with_header(frames[4], path="/night/00000504Ndark.fits", camera="N")
    with pytest.raises(CalibrationError, match=r"disagree on camera: /night/00000504Ndark\.fits "
                       "has camera N at LaPalma, the other frames have camera C at LaPalma"):
        master_dark(frames, calibration=calib)


def test_mismatched_exposure_time_names_the_odd_file(darks, calib):
    frames = list(darks[:N_DARK])
    frames[7] = with_header(frames[7], path="/night/00000507Cdark.fits", exptime=3.0)
    with pytest.raises(CalibrationError, match=r"/night/00000507Cdark\.fits has EXPTIME 3 s"):
        master_dark(frames, calibration=calib)


def test_wrong_frame_type_and_shape(darks, calib):
    frames = list(darks[:N_DARK])
    frames[2] = with_header(frames[2], path="/night/00000502C.fits", imagetyp="science")
    with pytest.raises(CalibrationError, match=r"not dark frames: /night/00000502C\.fits"):
        master_dark(frames, calibration=calib)
    frames = list(darks[:N_DARK])
    frames[1] = with_header(frames[1], path="/night/x.fits", data=frames[1].data[:-4])
    with pytest.raises(CalibrationError, match=r"disagree on image shape: /night/x\.fits"):
        master_dark(frames, calibration=calib)


def test_a_master_of_the_wrong_shape_fails_that_frame_only(darks, mdark):
    calibrator = Calibrator(dark=mdark)
    small = with_header(darks[0], path="/night/small.fits", data=darks[0].data[:, :-10])
    with pytest.raises(FrameError, match=r"/night/small\.fits has shape \(280, 414\).* make "
                       "a master dark in the same readout mode"):
        calibrator.calibrate(small)
    moved = with_header(darks[0], x0=darks[0].header.x0 + 1)
    with pytest.raises(FrameError, match="science region"):
        calibrator.calibrate(moved)
    other = with_header(darks[0], camera="N")
    with pytest.raises(FrameError, match="is camera N at LaPalma, but the master dark"):
        calibrator.calibrate(other)
    # The calibrator still works for good frames afterwards.
    assert calibrator.calibrate(darks[1]).correction == "dark"


def test_masters_must_be_of_the_right_kind_and_agree(mdark, mflat):
    with pytest.raises(CalibrationError, match="dark= must be a master dark"):
        Calibrator(dark=mflat)
    cropped = dataclasses.replace(mflat, data=mflat.data[:-2])
    with pytest.raises(CalibrationError, match="make a master flat in the same readout mode"):
        Calibrator(dark=mdark, flat=cropped)


def test_an_all_zero_frame_is_a_frame_error(darks, mdark):
    zero = with_header(darks[0], path="/night/zero.fits", data=np.zeros_like(darks[0].data))
    with pytest.raises(FrameError, match=r"/night/zero\.fits: every science pixel is 0 ADU"):
        Calibrator(dark=mdark).calibrate(zero)


def test_nan_pixels_stay_nan_and_the_input_is_untouched(darks, mdark, mflat):
    data = darks[0].data.astype(np.float32)
    h = darks[0].header
    data[h.y0 + 10, h.x0 + 20 : h.x0 + 25] = np.nan
    before = data.copy()
    result = Calibrator(dark=mdark, flat=mflat).calibrate(with_header(darks[0], data=data))
    assert np.array_equal(np.argwhere(np.isnan(result.image)), [[10, c] for c in range(20, 25)])
    assert result.finite is False  # a float readout may hold NaN
    assert np.array_equal(data, before, equal_nan=True)
    expected = (before[h.y0 : h.y0 + h.ysize, h.x0 : h.x0 + h.xsize] - mdark.science()) / (
        mflat.science())
    np.testing.assert_allclose(result.image, expected, rtol=1e-5, atol=1e-3)


def test_dead_flat_pixels_give_nan(darks, mdark, mflat):
    data = mflat.data.copy()
    data[mflat.y0 + 3, mflat.x0 + 4] = 0.01
    result = Calibrator(dark=mdark, flat=dataclasses.replace(mflat, data=data)).calibrate(
        darks[0])
    assert np.argwhere(np.isnan(result.image)).tolist() == [[3, 4]]
    assert result.finite is False


def test_a_frame_says_it_holds_no_nan_only_when_none_can_be_there(darks, mdark, mflat):
    """The binning skips its NaN search on the frames that say so: never a wrong yes."""
    for calibrator in (Calibrator(dark=mdark), Calibrator(dark=mdark, flat=mflat),
                       Calibrator(flat=mflat)):
        result = calibrator.calibrate(darks[0])
        assert result.finite is True
        assert np.isfinite(result.image).all()
    dark = mdark.data.copy()
    dark[mdark.y0 + 1, mdark.x0 + 2] = np.nan  # a master combined from frames with NaN
    result = Calibrator(dark=dataclasses.replace(mdark, data=dark)).calibrate(darks[0])
    assert result.finite is False
    assert np.argwhere(np.isnan(result.image)).tolist() == [[1, 2]]


def test_masters_from_frames_with_nan_pixels(darks, calib):
    frames = []
    for i, d in enumerate(darks[:N_DARK]):
        data = d.data.astype(np.float32)
        data[5, 6] = np.nan  # dead in every frame
        if i < 3:
            data[7, 8] = np.nan  # dead in three frames only
        frames.append(with_header(d, data=data))
    master = master_dark(frames, calibration=calib)
    assert math.isnan(master.data[5, 6])
    assert abs(master.data[7, 8] - np.median([d.data[7, 8] for d in darks[3:N_DARK]])) < 30
    assert np.count_nonzero(np.isnan(master.data)) == 1


# --- files -------------------------------------------------------------------------------


def test_master_files_round_trip(tmp_path, mdark, mflat):
    path = write_master(tmp_path, mdark)
    assert path == tmp_path / master_filename(mdark.lstseq, "C", "dark")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    header = fits.getheader(path)
    assert header["IMAGETYP"] == "MASTERDARK"
    assert header["BITPIX"] == -32
    assert (header["NOBS"], header["METHOD"], header["CAMERA"], header["SITE-OBS"]) == (
        N_DARK, cal.COMBINE_METHOD, "C", "LaPalma")
    assert (header["LSTSEQ"], header["X0"], header["XSIZE"], header["Y0"], header["YSIZE"]) == (
        mdark.lstseq, *mdark.region)
    back = read_master(path)
    assert np.array_equal(back.data, mdark.data)
    assert (back.kind, back.exptime, back.ccdtemp, back.nobs) == (
        "dark", mdark.exptime, mdark.ccdtemp, mdark.nobs)
    flat_back = read_master(write_master(tmp_path / "flat.fits", mflat))
    assert flat_back.kind == "flat"
    assert flat_back.darkfile == mdark.lstseq


def test_reading_a_raw_frame_as_a_master_fails_clearly(tmp_path, darks):
    path = write_raw(tmp_path / raw_filename(500, "C", "dark"), darks[0].data, darks[0].header)
    with pytest.raises(CalibrationError, match=r"IMAGETYP='dark' is not MASTERBIAS"):
        read_master(path)
    (tmp_path / "junk.fits").write_bytes(b"not a fits file")
    with pytest.raises(CalibrationError, match="unreadable master frame"):
        read_master(tmp_path / "junk.fits")


@pytest.mark.parametrize("in_memory", [None, 2], ids=["all-in-memory", "two-in-memory"])
@pytest.mark.parametrize("ext", [".fits", ".fits.fz", ".fits.gz"])
def test_masters_from_files_equal_masters_from_memory(tmp_path, darks, mdark, calib, ext,
                                                      in_memory, monkeypatch):
    """Decompressed frames wait in memory up to sources.MEMORY_BYTES (here all of them, or
    two), the others in scratch files removed after; the master is the same."""
    paths = [write_raw(tmp_path / raw_filename(d.header.lstseq, "C", "dark", ext=ext),
                       d.data, d.header) for d in darks[:N_DARK]]
    # Force many row blocks (7 rows each) to exercise the streaming.
    monkeypatch.setattr(combine_module, "BLOCK_BYTES", 4 * N_DARK * darks[0].data.shape[1] * 7)
    if in_memory is not None:
        monkeypatch.setattr(sources_module, "MEMORY_BYTES", in_memory * darks[0].data.nbytes)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    spilled: list[str] = []
    mkstemp = tempfile.mkstemp

    def counted(*args, **kwargs):
        fd, name = mkstemp(*args, **kwargs)
        spilled.append(name)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", counted)
    master = master_dark(paths, calibration=calib)
    assert np.array_equal(master.data, mdark.data)
    compressed = ext != ".fits"
    assert len(spilled) == (N_DARK - in_memory if compressed and in_memory else 0)
    assert all(Path(name).parent.parent == scratch for name in spilled)
    assert list(scratch.iterdir()) == []  # compressed frames' scratch copies are gone
    assert master.lstseq == mdark.lstseq
    assert master.nobs == N_DARK


@pytest.mark.parametrize("cut", [slice(None, -100), slice(None, 3000)], ids=["crc", "short"])
def test_a_damaged_gzipped_dark_is_a_frame_error_naming_it(tmp_path, darks, calib, cut):
    path = write_raw(tmp_path / raw_filename(darks[0].header.lstseq, "C", "dark",
                                             ext=".fits.gz"), darks[0].data, darks[0].header)
    path.write_bytes(path.read_bytes()[cut])
    with pytest.raises(FrameError, match=re.escape(str(path)) + ": unreadable FITS file"):
        master_dark([path, *darks[1:N_DARK]], calibration=calib)


def test_unreadable_input_file_is_a_frame_error(tmp_path, darks, calib):
    bad = tmp_path / "00000999Cdark.fits"
    bad.write_bytes(b"garbage")
    with pytest.raises(FrameError, match=r"00000999Cdark\.fits: unreadable FITS file"):
        master_dark([*darks[:N_DARK], bad], calibration=calib)
