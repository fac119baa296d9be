"""measure(): analytic cases, photutils agreement, error model and every pflag bit."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from astropy.stats import sigma_clipped_stats
from photutils.aperture import CircularAnnulus, CircularAperture, aperture_photometry

from mascara_actors.errors import ConfigError, FrameError
from mascara_actors.photometry import (
    ClippedMedianSky,
    MMMSky,
    PFlag,
    PhotometryResult,
    decode_flags,
    measure,
)

APERTURES = (2.5, 4.5)
AREA = np.pi * np.square(APERTURES)


def _photutils_sums(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """photutils exact aperture sums, (n, 2), ADU (the reference implementation)."""
    pos = np.column_stack([x, y])
    table = aperture_photometry(image, [CircularAperture(pos, r) for r in APERTURES],
                                method="exact")
    return np.column_stack([np.asarray(table[f"aperture_sum_{j}"]) for j in range(2)])


@pytest.fixture
def clean_frame(render, grid):
    """A fresh 400 x 500 float32 frame: 48 isolated Gaussian stars on a noisy sky of
    1000 ADU, with their positions (x, y) and fluxes (ADU)."""
    rng = np.random.default_rng(40)
    shape = (400, 500)
    x, y = grid(shape, 55.0, 40.0, rng)
    flux = rng.uniform(3e3, 6e4, x.size)
    image = render(shape, x, y, flux, sky=1000.0) + rng.normal(0.0, 8.0, shape)
    return image.astype(np.float32), x, y, flux


# --- analytic -----------------------------------------------------------------------------

@pytest.mark.parametrize("centre", ["pixel", "star"])
@pytest.mark.parametrize("estimator", [MMMSky(), ClippedMedianSky()], ids=["mmm", "median"])
def test_flat_plateau_gives_pi_r_squared_times_level(estimator, centre) -> None:
    """Pixels closer than 6 px to the annulus centre are at 1000 ADU, the rest at 200 ADU:
    every aperture sees only the plateau, the annulus only the floor."""
    rng = np.random.default_rng(41)
    ny, nx = 200, 260
    x = np.array([60.0, 130.0, 200.0, 70.0, 190.0]) + rng.uniform(-0.5, 0.5, 5)
    y = np.array([60.0, 70.0, 60.0, 140.0, 135.0]) + rng.uniform(-0.5, 0.5, 5)
    cx, cy = (np.floor(x + 0.5), np.floor(y + 0.5)) if centre == "pixel" else (x, y)
    yy, xx = np.mgrid[:ny, :nx]
    image = np.full((ny, nx), 200.0, dtype=np.float32)
    n_annulus = []
    for xc, yc in zip(cx, cy, strict=True):
        d = np.hypot(xx - xc, yy - yc)
        image[d < 6.0] = 1000.0
        n_annulus.append(int(((d >= 6.0) & (d <= 21.0)).sum()))
    res = measure(image, x, y, sky_estimator=estimator, sky_centre=centre)
    np.testing.assert_allclose(res.flux, 800.0 * AREA[None, :] * np.ones((5, 1)), rtol=1e-12)
    np.testing.assert_array_equal(res.sky, 200.0)
    np.testing.assert_array_equal(res.esky, 0.0)
    np.testing.assert_array_equal(res.nsky, n_annulus)
    np.testing.assert_array_equal(res.peak, 1000.0)
    np.testing.assert_array_equal(res.pflag, 0)
    # no sky noise: the error is the photon noise of the star alone
    np.testing.assert_allclose(res.eflux, np.sqrt(res.flux / 0.62), rtol=1e-12)


def test_flat_image_gives_zero_flux() -> None:
    image = np.full((120, 130), 345.5, dtype=np.float32)
    res = measure(image, [60.2, 70.7], [55.5, 64.1])
    np.testing.assert_allclose(res.flux, 0.0, atol=1e-9)
    np.testing.assert_array_equal(res.sky, 345.5)


# --- against photutils -----------------------------------------------------------------------

def test_fluxes_match_photutils_exact_apertures(clean_frame) -> None:
    image, x, y, _ = clean_frame
    res = measure(image, x, y)
    assert not res.pflag.any()
    ref = _photutils_sums(image, x, y) - res.sky[:, None] * AREA[None, :]
    rel = np.abs(res.flux - ref) / np.abs(ref)
    # the bar is 1e-3; both are exact overlaps, so they agree to float64 rounding
    assert rel.max() < 1e-10


def test_sky_pixels_are_photutils_annulus_pixels(clean_frame) -> None:
    image, x, y, _ = clean_frame
    image = image.astype(np.float64)
    annulus = CircularAnnulus(np.column_stack([x, y]), 6.0, 21.0)
    pixels = [m.get_values(image) for m in annulus.to_mask(method="center")]
    # no clipping: the very same pixel set, so the same count, median and scatter
    every = measure(image, x, y, sky_estimator=ClippedMedianSky(sigma=1e6), sky_centre="star")
    np.testing.assert_array_equal(every.nsky, [p.size for p in pixels])
    np.testing.assert_array_equal(every.sky, [np.median(p) for p in pixels])
    np.testing.assert_allclose(every.esky, [np.std(p) for p in pixels], rtol=1e-9)
    # 3-sigma clipping as astropy does it
    res = measure(image, x, y, sky_estimator=ClippedMedianSky(), sky_centre="star")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = np.array([sigma_clipped_stats(p, sigma=3.0, maxiters=5) for p in pixels])
    np.testing.assert_allclose(res.sky, stats[:, 1], rtol=1e-12)
    np.testing.assert_allclose(res.esky, stats[:, 2], rtol=1e-9)


def test_sky_centred_on_the_nearest_pixel(clean_frame) -> None:
    image, x, y, _ = clean_frame
    image = image.astype(np.float64)
    res = measure(image, x, y, sky_estimator=ClippedMedianSky(sigma=1e6), sky_centre="pixel")
    oy, ox = np.mgrid[-21:22, -21:22]
    r2 = ox**2 + oy**2
    keep = (r2 >= 36) & (r2 <= 441)
    xi = np.floor(x + 0.5).astype(int)
    yi = np.floor(y + 0.5).astype(int)
    pixels = image[yi[:, None] + oy[keep][None, :], xi[:, None] + ox[keep][None, :]]
    np.testing.assert_array_equal(res.nsky, keep.sum())
    np.testing.assert_array_equal(res.sky, np.median(pixels, axis=1))
    # the fluxes differ from the star-centred annulus only through the sky level
    star = measure(image, x, y, sky_estimator=ClippedMedianSky(sigma=1e6), sky_centre="star")
    np.testing.assert_allclose(res.flux + res.sky[:, None] * AREA,
                               star.flux + star.sky[:, None] * AREA, rtol=1e-13)


# --- error model ---------------------------------------------------------------------------

@pytest.mark.parametrize(("estimator", "centre"), [(MMMSky(), "pixel"),
                                                   (ClippedMedianSky(), "star")],
                         ids=["mmm-pixel", "median-star"])
def test_reduced_chi_square_against_truth(render, noisy, grid, estimator, centre) -> None:
    """Known stars, Poisson noise in electrons (gain 0.62) plus 10 e- read noise: the
    errors must describe the scatter about the true flux inside each aperture (the true
    flux is photutils' exact aperture sum of the noise-free stars).

    MMM's mode lies below the mean of this clean sky (see ``MMMSky``), which adds a mean
    offset of about 0.25 sigma at r = 4.5 (reduced chi-square about 1.2); the clipped
    median comes out at about 1.02 and 1.09."""
    rng = np.random.default_rng(42)
    shape = (560, 560)
    gain = 0.62
    chi: list[np.ndarray] = []
    for _ in range(4):
        x, y = grid(shape, 50.0, 30.0, rng)
        flux = np.exp(rng.uniform(np.log(2e3), np.log(1e5), x.size))
        truth_image = render(shape, x, y, flux)  # stars only, noise-free
        image = noisy(truth_image + 1000.0, rng, gain=gain, read_noise_e=10.0)
        res = measure(image.astype(np.float32), x, y, gain=gain, sky_estimator=estimator,
                      sky_centre=centre)
        assert not res.pflag.any()
        truth = _photutils_sums(truth_image, x, y)
        chi.append((res.flux - truth) / res.eflux)
    z = np.concatenate(chi)
    reduced = np.mean(z**2, axis=0)
    assert z.shape == (4 * 100, 2)
    assert np.all((reduced > 0.8) & (reduced < 1.25)), reduced


# --- flags ---------------------------------------------------------------------------------

@pytest.fixture
def sky_frame(render):
    """Factory of fresh float32 frames: flat sky with 5 ADU noise and stars of 2e4 ADU at
    ``stars`` (x, y pixels)."""

    def make(seed: int, shape: tuple[int, int] = (160, 220), level: float = 1000.0,
             stars: tuple[tuple[float, float], ...] = ()) -> np.ndarray:
        rng = np.random.default_rng(seed)
        image = level + rng.normal(0.0, 5.0, shape)
        if stars:
            sx, sy = np.array(stars, dtype=float).T
            image += render(shape, sx, sy, np.full(sx.size, 2e4))
        return image.astype(np.float32)

    return make


def test_clean_star_has_no_flags(sky_frame) -> None:
    image = sky_frame(50, stars=((110.3, 80.6),))
    res = measure(image, [110.3], [80.6])
    assert res.pflag[0] == 0
    assert decode_flags(int(res.pflag[0])) == []


def test_edge_flag_and_no_photometry(sky_frame) -> None:
    image = sky_frame(51, stars=((110.0, 80.0), (40.0, 80.0)))
    x = np.array([15.0, 110.0, 110.0, np.nan, 40.0])
    y = np.array([80.0, 150.0, 80.0, 80.0, 80.0])
    res = measure(image, x, y)
    assert res.pflag.tolist() == [PFlag.EDGE, PFlag.EDGE, 0, PFlag.EDGE, 0]
    assert np.isnan(res.flux[[0, 1, 3]]).all()
    assert np.isnan(res.sky[[0, 1, 3]]).all()
    assert np.isnan(res.peak[[0, 1, 3]]).all()
    assert res.nsky[0] == 0
    # the box of a star at x = 21 just fits (box half size 21); at x = 20.4 it does not
    fits = measure(image, [21.0, 20.4], [80.0, 80.0])
    assert fits.pflag.tolist()[1] == PFlag.EDGE
    assert not fits.pflag[0] & PFlag.EDGE
    margin = measure(image, x[[2, 4]], y[[2, 4]], edge_margin=50.0)
    assert margin.pflag.tolist() == [0, PFlag.EDGE]


def test_bad_sky_pixel_is_flagged_and_left_out(sky_frame) -> None:
    image = sky_frame(52, stars=((110.0, 80.0),))
    hot = image.copy()
    hot[80, 120] = 64000.0  # 10 px from the star, in the annulus
    nan = image.copy()
    nan[80, 120] = np.nan
    res_hot = measure(hot, [110.0], [80.0])
    res_nan = measure(nan, [110.0], [80.0])
    res_clean = measure(image, [110.0], [80.0])
    assert res_hot.pflag[0] == PFlag.BAD_SKY_PIXEL
    assert res_nan.pflag[0] == 0  # a NaN in the annulus is only ignored
    assert res_hot.sky[0] == res_nan.sky[0]
    assert res_hot.nsky[0] == res_nan.nsky[0] <= res_clean.nsky[0] - 1


def test_negative_sky_and_failed_sky(sky_frame) -> None:
    res = measure(sky_frame(53, level=-50.0), [110.0], [80.0])
    assert res.pflag[0] & PFlag.NEGATIVE_SKY
    assert res.sky[0] < 0
    image = sky_frame(54)
    yy, xx = np.mgrid[:160, :220]
    d = np.hypot(xx - 110.0, yy - 80.0)
    image[(d >= 5.5) & (d <= 21.5)] = np.nan
    image[80, 117:127] = 1000.0  # only 10 good annulus pixels are left
    res = measure(image, [110.0], [80.0])
    assert res.pflag[0] == PFlag.NEGATIVE_SKY
    assert np.isnan(res.sky[0])
    assert np.isnan(res.flux[0]).all()


def test_saturated_star(render, sky_frame) -> None:
    base = sky_frame(55)
    # peak pixel of a centred sigma = 1.2 star holds about 10.5 % of the flux
    bright = base + render((160, 220), [110.0], [80.0], [6.5e5]).astype(np.float32)
    faint = base + render((160, 220), [110.0], [80.0], [5.0e5]).astype(np.float32)
    res = measure(bright, [110.0], [80.0])
    assert res.peak[0] >= 63000.0
    assert res.pflag[0] == PFlag.SATURATED
    res = measure(faint, [110.0], [80.0])
    assert res.peak[0] < 63000.0
    assert res.pflag[0] == 0


def test_negative_flux(sky_frame) -> None:
    image = sky_frame(56)
    image[78:83, 108:113] = 600.0  # a dark hole at the star
    res = measure(image, [110.0], [80.0])
    assert res.pflag[0] == PFlag.NEGATIVE_FLUX
    assert (res.flux[0] < 0).all()
    assert np.isfinite(res.eflux[0]).all()


def test_near_moon(sky_frame) -> None:
    image = sky_frame(57, stars=((110.0, 80.0), (110.0, 60.0)))
    res = measure(image, [110.0, 110.0], [80.0, 60.0], moon_xy=(110.0, 109.0),
                  moon_radius=30.0)
    assert res.pflag.tolist() == [PFlag.NEAR_MOON, 0]


def test_nan_in_aperture(sky_frame) -> None:
    image = sky_frame(58, stars=((110.0, 80.0),))
    image[80, 113] = np.nan  # 3.5 px from the star: in the 4.5 px aperture only
    res = measure(image, [110.0], [80.0])
    assert res.pflag[0] == PFlag.NAN_IN_APERTURE
    assert np.isfinite(res.flux[0, 0])
    assert np.isnan(res.flux[0, 1])
    assert np.isfinite(res.peak[0])


@pytest.mark.parametrize("centre", ["pixel", "star"])
def test_infinite_pixels(sky_frame, centre) -> None:
    image = sky_frame(64, stars=((110.0, 80.0),))
    clean = measure(image, [110.0], [80.0], sky_centre=centre)
    image[80, 125] = np.inf  # in the annulus: a bad sky pixel, left out
    image[70, 110] = -np.inf  # in the annulus too: ignored like a NaN
    res = measure(image, [110.0], [80.0], sky_centre=centre)
    assert res.pflag[0] == PFlag.BAD_SKY_PIXEL
    assert res.nsky[0] <= clean.nsky[0] - 2
    assert abs(res.sky[0] - clean.sky[0]) < 1.0
    image[80, 111] = -np.inf  # in both apertures
    res = measure(image, [110.0], [80.0], sky_centre=centre)
    assert res.pflag[0] == PFlag.BAD_SKY_PIXEL | PFlag.NAN_IN_APERTURE
    assert np.isnan(res.flux[0]).all()


def test_flags_combine(sky_frame) -> None:
    image = sky_frame(59)
    image[80, 110] = 65000.0
    image[80, 125] = 64000.0
    res = measure(image, [110.0], [80.0], moon_xy=(100.0, 80.0))
    assert decode_flags(int(res.pflag[0])) == ["bad_sky_pixel", "saturated", "near_moon"]


# --- interface -----------------------------------------------------------------------------

def test_inputs_untouched_and_result_read_only(clean_frame) -> None:
    image, x, y, _ = clean_frame
    image_before, x_before = image.copy(), x.copy()
    res = measure(image, x, y)
    np.testing.assert_array_equal(image, image_before)
    np.testing.assert_array_equal(x, x_before)
    assert isinstance(res, PhotometryResult)
    assert len(res) == x.size
    assert res.apertures == APERTURES
    with pytest.raises(ValueError, match="read-only"):
        res.flux[0, 0] = 1.0


def test_star_order_and_chunking_do_not_matter(render) -> None:
    rng = np.random.default_rng(60)
    shape = (700, 900)
    n = 700  # more than one chunk of the gather
    x = rng.uniform(22, shape[1] - 23, n)
    y = rng.uniform(22, shape[0] - 23, n)
    image = render(shape, x, y, rng.uniform(1e3, 3e4, n), sky=500.0)
    image = (image + rng.normal(0, 5.0, shape)).astype(np.float32)
    res = measure(image, x, y)
    perm = rng.permutation(n)
    shuffled = measure(image, x[perm], y[perm])
    np.testing.assert_array_equal(shuffled.flux, res.flux[perm])
    np.testing.assert_array_equal(shuffled.sky, res.sky[perm])
    np.testing.assert_array_equal(shuffled.pflag, res.pflag[perm])
    one = measure(image, x[:1], y[:1])
    # only the summation order inside numpy's reductions may differ
    np.testing.assert_allclose(one.flux[0], res.flux[0], rtol=1e-14)
    assert one.sky[0] == res.sky[0]


def test_integer_and_big_endian_images_and_empty_star_list(sky_frame) -> None:
    image = sky_frame(61)
    as_int = np.round(image).astype(np.uint16)
    a = measure(as_int, [110.2], [80.7])
    b = measure(as_int.astype(np.float32), [110.2], [80.7])
    np.testing.assert_array_equal(a.flux, b.flux)
    fits_like = image.astype(">f4")  # FITS data are big-endian
    np.testing.assert_array_equal(measure(fits_like, [110.2], [80.7]).flux,
                                  measure(image, [110.2], [80.7]).flux)
    empty = measure(image, [], [])
    assert len(empty) == 0
    assert empty.flux.shape == (0, 2)


def test_records(clean_frame) -> None:
    image, x, y, _ = clean_frame
    res = measure(image, x[:3], y[:3], apertures=(2.5, 3.5, 4.5))
    rec = res.to_records()
    assert rec.dtype.names == ("x", "y", "flux0", "eflux0", "flux1", "eflux1", "flux2",
                               "eflux2", "sky", "esky", "nsky", "peak", "pflag")
    np.testing.assert_array_equal(rec["flux1"], res.flux[:, 1])
    np.testing.assert_array_equal(rec["pflag"], res.pflag)


def test_bad_arguments(sky_frame) -> None:
    image = sky_frame(62)
    with pytest.raises(FrameError, match=r"image must be a 2-D real array"):
        measure(image[None], [1.0], [1.0])
    with pytest.raises(FrameError, match=r"x has shape \(2,\) but y has \(1,\)"):
        measure(image, [1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match=r"apertures=\(0\.0,\)"):
        measure(image, [1.0], [1.0], apertures=(0.0,))
    with pytest.raises(ConfigError, match=r"sky_radii=\(21\.0, 6\.0\)"):
        measure(image, [1.0], [1.0], sky_radii=(21.0, 6.0))
    with pytest.raises(ConfigError, match=r"gain=0\.0 must be > 0 e-/ADU"):
        measure(image, [1.0], [1.0], gain=0.0)
    with pytest.raises(ConfigError, match=r"moon_radius=-1\.0 must be >= 0"):
        measure(image, [1.0], [1.0], moon_radius=-1.0)
    with pytest.raises(ConfigError, match=r"sky_centre='ring'"):
        measure(image, [1.0], [1.0], sky_centre="ring")


def test_eflux_formula() -> None:
    """eflux^2 = area esky^2 + flux / gain + area^2 esky^2 / nsky, per aperture."""
    rng = np.random.default_rng(63)
    image = (1000.0 + rng.normal(0.0, 9.0, (160, 220))).astype(np.float32)
    image[78:83, 108:113] += 3000.0
    res = measure(image, [110.0], [80.0], gain=1.7)
    want = np.sqrt(AREA * res.esky[0] ** 2 + res.flux[0] / 1.7
                   + AREA**2 * res.esky[0] ** 2 / res.nsky[0])
    np.testing.assert_allclose(res.eflux[0], want, rtol=1e-12)
    assert math.isfinite(res.eflux[0, 0])
