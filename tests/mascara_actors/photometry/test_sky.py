"""Robust sky estimators: sorted-row machinery, MMM mode, sigma-clipped median."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from astropy.stats import sigma_clipped_stats
from photutils.background import MMMBackground

from mascara_actors.errors import ConfigError
from mascara_actors.photometry.sky import ClippedMedianSky, MMMSky, sky_estimator
from mascara_actors.photometry.sorted_rows import SortedRows


def _annuli(rng: np.random.Generator, n: int, m: int = 1300, *, level: float = 1000.0,
            sigma: float = 12.0, dtype: type = np.float64) -> np.ndarray:
    """Gaussian sky rows with a few bright (star) pixels and some NaN (not in annulus)."""
    a = rng.normal(level, sigma, (n, m))
    a[:, :40] += rng.exponential(400.0, (n, 40))  # a neighbour star's wing
    a[rng.random((n, m)) < 0.05] = np.nan
    return a.astype(dtype)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def mmm_reference(values: np.ndarray, *, minsky: int = 20, maxiter: int = 50,
                  ) -> tuple[float, float, int]:
    """Scalar, loop-per-pixel-window port of IDL astrolib MMM (windows recomputed from the
    sorted data each pass), written independently of the vectorised code under test."""
    sky = np.sort(values[np.isfinite(values)].astype(np.float64))
    n = sky.size
    if n < minsky:
        return math.nan, math.nan, 0
    skymid = 0.5 * (sky[(n - 1) // 2] + sky[n // 2])
    cut = min(skymid - sky[0], sky[-1] - skymid)
    lo = int(np.searchsorted(sky, skymid - cut, "left"))
    hi = int(np.searchsorted(sky, skymid + cut, "right"))
    if hi - lo < minsky:
        return math.nan, math.nan, 0
    w = sky[lo:hi]
    skymn, sigma = w.mean(), w.std()
    skymed = 0.5 * (w[(w.size - 1) // 2] + w[w.size // 2])
    skymod = 3 * skymed - 2 * skymn if skymed < skymn else skymn
    clamp, old = 1.0, 0.0
    for _ in range(maxiter):
        lg = math.log10(hi - lo)
        r = max(2.0, (-0.1042 * lg + 1.1695) * lg + 0.8895)
        cut = r * sigma + 0.5 * abs(skymn - skymod)
        new_lo = int(np.searchsorted(sky, skymod - cut, "left"))
        new_hi = int(np.searchsorted(sky, skymod + cut, "right"))
        redo = (new_lo, new_hi) != (lo, hi)
        lo, hi = new_lo, new_hi
        if hi - lo < minsky:
            return math.nan, math.nan, 0
        w = sky[lo:hi]
        skymn, sigma = w.mean(), w.std()
        center = (lo + hi - 1) / 2.0
        side = _round_half_up(0.2 * (hi - lo)) / 2.0 + 0.25
        j, k = _round_half_up(center - side), _round_half_up(center + side)
        skymed = sky[j:k + 1].mean()
        dmod = 3 * skymed - 2 * skymn - skymod if skymed < skymn else skymn - skymod
        if dmod * old < 0:
            clamp *= 0.5
        skymod += clamp * dmod
        old = dmod
        if not redo:
            break
    return skymod, sigma, hi - lo


# --- SortedRows ---------------------------------------------------------------------------

def _sorted_integer_rows(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued rows (many ties, like raw ADU) of varying finite length."""
    n, m = 60, 150
    a = rng.integers(990, 1010, (n, m)).astype(np.float32)
    nfin = rng.integers(0, m + 1, n)
    nfin[:3] = [0, 1, m]
    a[np.arange(m)[None, :] >= nfin[:, None]] = np.nan
    a.sort(axis=1)
    return a, nfin


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sorted_rows_counts_match_searchsorted(dtype: type) -> None:
    rng = np.random.default_rng(20)
    a, nfin = _sorted_integer_rows(rng)
    a = a.astype(dtype)
    rows = SortedRows(a)
    np.testing.assert_array_equal(rows.npix, nfin)
    for t in [989.0, 995.0, 999.5, 1000.0, 1009.0, 2000.0]:
        thr = np.full(a.shape[0], t)
        strict = [np.searchsorted(r[:k], t, "left") for r, k in zip(a, nfin, strict=True)]
        incl = [np.searchsorted(r[:k], t, "right") for r, k in zip(a, nfin, strict=True)]
        np.testing.assert_array_equal(rows.count_below(thr), strict)
        np.testing.assert_array_equal(rows.count_below(thr, inclusive=True), incl)
        lo, hi = rows.count_between(thr - 3.0, thr)
        np.testing.assert_array_equal(hi, incl)
        np.testing.assert_array_equal(
            lo, [np.searchsorted(r[:k], t - 3.0, "left") for r, k in zip(a, nfin, strict=True)])


def test_sorted_rows_window_sums_and_order_statistics() -> None:
    rng = np.random.default_rng(21)
    a, nfin = _sorted_integer_rows(rng)
    a = a + rng.normal(0, 0.25, a.shape).astype(np.float32)
    a.sort(axis=1)
    rows = SortedRows(a, nfin)
    lo = (rng.random(a.shape[0]) * nfin * 0.5).astype(np.intp)
    hi = lo + ((nfin - lo) * rng.random(a.shape[0])).astype(np.intp)
    s1, s2 = rows.window_sums(lo, hi)
    for i in range(a.shape[0]):
        w = a[i, lo[i]:hi[i]].astype(np.float64) - rows.ref[i]
        assert s1[i] == pytest.approx(w.sum(), abs=1e-3)
        assert s2[i] == pytest.approx((w * w).sum(), rel=1e-6, abs=1e-3)
    ok = hi > lo
    mean, std = rows.window_stats(lo[ok], hi[ok], np.flatnonzero(ok))
    med = rows.window_median(lo[ok], hi[ok], np.flatnonzero(ok))
    for i, mu, sd, md in zip(np.flatnonzero(ok), mean, std, med, strict=True):
        w = a[i, lo[i]:hi[i]].astype(np.float64)
        assert mu == pytest.approx(w.mean(), rel=1e-9)
        # float32 block sums: the variance carries ~1e-7 of mean(d^2), d <= 10 here
        assert sd == pytest.approx(w.std(), rel=1e-5, abs=5e-3)
        assert md == np.median(w)


def test_sorted_rows_does_not_modify_input_unless_allowed() -> None:
    rng = np.random.default_rng(22)
    a = np.sort(rng.normal(100, 5, (4, 64)), axis=1)
    before = a.copy()
    SortedRows(a)
    np.testing.assert_array_equal(a, before)
    SortedRows(a, overwrite=True)
    assert not np.array_equal(a, before)


# --- estimators ----------------------------------------------------------------------------

def test_clipped_median_matches_astropy_sigma_clipped_stats() -> None:
    rng = np.random.default_rng(23)
    a = _annuli(rng, 200)
    est = ClippedMedianSky(sigma=3.0, maxiters=5)(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns that the input holds NaNs
        _, med, std = sigma_clipped_stats(a, sigma=3.0, maxiters=5, axis=1)
    np.testing.assert_allclose(est.sky, med, rtol=1e-12)
    np.testing.assert_allclose(est.esky, std, rtol=1e-9)


def test_clipped_median_float32_matches_astropy_to_float_precision() -> None:
    rng = np.random.default_rng(24)
    a = _annuli(rng, 100, dtype=np.float32)
    est = ClippedMedianSky()(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, med, std = sigma_clipped_stats(a.astype(np.float64), axis=1)
    np.testing.assert_allclose(est.sky, med, rtol=1e-7)
    np.testing.assert_allclose(est.esky, std, rtol=1e-5)


def test_mmm_matches_scalar_reference() -> None:
    rng = np.random.default_rng(25)
    a = _annuli(rng, 150)
    a[0, :] = rng.normal(50.0, 3.0, a.shape[1])  # a faint, clean sky
    a[1, 25:] = np.nan  # too few pixels: fails
    est = MMMSky()(a)
    ref = np.array([mmm_reference(row) for row in a])
    np.testing.assert_allclose(est.sky, ref[:, 0], rtol=1e-11, equal_nan=True)
    np.testing.assert_allclose(est.esky, ref[:, 1], rtol=1e-8, equal_nan=True)
    np.testing.assert_array_equal(est.nsky, ref[:, 2])
    assert np.isnan(est.sky[1])
    assert est.failed.tolist() == np.isnan(ref[:, 0]).tolist()


def test_mmm_float32_close_to_reference() -> None:
    rng = np.random.default_rng(26)
    a = _annuli(rng, 100, dtype=np.float32)
    est = MMMSky()(a)
    ref = np.array([mmm_reference(row) for row in a])
    # the same windows; only float32 rounding of the stored values differs
    np.testing.assert_array_equal(est.nsky, ref[:, 2])
    np.testing.assert_allclose(est.sky, ref[:, 0], rtol=1e-7)
    np.testing.assert_allclose(est.esky, ref[:, 1], rtol=1e-4)


@pytest.mark.parametrize("estimator", [MMMSky(), ClippedMedianSky()], ids=repr)
def test_flat_sky_is_exact(estimator) -> None:
    a = np.full((3, 500), 812.25)
    a[1, ::3] = np.nan
    est = estimator(a)
    np.testing.assert_array_equal(est.sky, 812.25)
    np.testing.assert_array_equal(est.esky, 0.0)
    np.testing.assert_array_equal(est.nsky, [500, 333, 500])


@pytest.mark.parametrize(("estimator", "max_bias"), [(MMMSky(), 1.0), (ClippedMedianSky(), 0.3)],
                         ids=["mmm", "clipped_median"])
def test_clean_gaussian_sky_agrees_with_truth_and_photutils(estimator, max_bias) -> None:
    """On pure Gaussian noise the clipped median is unbiased; MMM's mode is low by about
    0.7 standard errors (its mode update is asymmetric), as documented."""
    rng = np.random.default_rng(27)
    n, m, level, sigma = 400, 1270, 1000.0, 15.0
    a = rng.normal(level, sigma, (n, m))
    est = estimator(a)
    err = sigma / math.sqrt(m)  # standard error of the mean of one annulus
    assert np.max(np.abs(est.sky - level)) < 6.0 * err
    assert abs(np.mean(est.sky) - level) < max_bias * err
    np.testing.assert_allclose(np.median(est.esky), sigma, rtol=0.02)
    ref = MMMBackground()(a, axis=1)  # photutils: 3 median - 2 mean of 3-sigma clipped data
    assert np.max(np.abs(est.sky - ref)) < 8.0 * err
    assert abs(np.mean(est.sky - ref)) < max_bias * err


@pytest.mark.parametrize("estimator", [MMMSky(), ClippedMedianSky()], ids=repr)
def test_robust_against_a_star_in_the_annulus(estimator) -> None:
    rng = np.random.default_rng(28)
    n, m, level, sigma = 200, 1270, 1000.0, 15.0
    a = rng.normal(level, sigma, (n, m))
    a[:, :100] += rng.uniform(100.0, 5000.0, (n, 100))  # 8 % of the annulus on a star
    est = estimator(a)
    plain_mean_bias = float(np.mean(a.mean(axis=1) - level))
    assert plain_mean_bias > 100.0
    # robust estimators: bias well under 1 % of the mean's
    assert abs(float(np.mean(est.sky)) - level) < 2.0


def test_minsky_and_empty_rows_fail_cleanly() -> None:
    a = np.full((3, 100), np.nan)
    a[1, :19] = 5.0
    a[2, :20] = 5.0
    for est in (MMMSky(minsky=20), ClippedMedianSky(minsky=20)):
        res = est(a)
        assert res.failed.tolist() == [True, True, False]
        assert res.sky[2] == 5.0
        assert res.nsky.tolist() == [0, 0, 20]
        assert np.isnan(res.esky[:2]).all()


def test_estimators_do_not_modify_their_input() -> None:
    rng = np.random.default_rng(29)
    a = _annuli(rng, 5)
    before = a.copy()
    MMMSky()(a)
    ClippedMedianSky()(a)
    np.testing.assert_array_equal(a, before)


def test_highbad_excludes_values() -> None:
    rng = np.random.default_rng(30)
    a = rng.normal(100.0, 2.0, (2, 400))
    b = a.copy()
    b[:, :50] = 70000.0
    with_bad = MMMSky(highbad=63000.0)(b)
    without = MMMSky()(a[:, 50:])
    np.testing.assert_allclose(with_bad.sky, without.sky, rtol=1e-12)
    np.testing.assert_array_equal(with_bad.nsky, without.nsky)


def test_factory_and_option_errors() -> None:
    assert isinstance(sky_estimator("mmm"), MMMSky)
    est = sky_estimator("clipped_median", minsky=30)
    assert isinstance(est, ClippedMedianSky)
    assert est.minsky == 30
    with pytest.raises(ConfigError, match=r"sky estimator 'mean' is unknown"):
        sky_estimator("mean")
    with pytest.raises(ConfigError, match=r"minsky=0 must be >= 1"):
        MMMSky(minsky=0)
    with pytest.raises(ConfigError, match=r"sigma=0\.0 must be > 0"):
        ClippedMedianSky(sigma=0.0)
    with pytest.raises(ConfigError, match=r"maxiter=0 must be >= 1"):
        MMMSky(maxiter=0)
