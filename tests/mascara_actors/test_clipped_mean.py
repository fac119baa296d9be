"""The masters' robust combine against numpy: its sort of the frames and its clipped mean."""

from __future__ import annotations

import numpy as np
import pytest

from mascara_actors.calibration.combine import CLIP_NSIGMA, _sort_frames, clipped_mean


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 10, 11, 16, 20, 25])
def test_the_frames_sort_as_numpy_sorts_them_nan_last(n: int) -> None:
    rng = np.random.default_rng(n)
    stack = rng.normal(1000.0, 30.0, (n, 3000)).astype(np.float32)
    stack[:, :200] = np.round(stack[:, :200] / 50.0) * 50.0  # ties
    stack[rng.random(stack.shape) < 0.05] = np.nan
    stack[rng.random(stack.shape) < 0.01] = np.inf
    stack[rng.random(stack.shape) < 0.01] = -np.inf
    stack[:, 5] = np.nan  # a pixel NaN in every frame
    expected = np.sort(stack, axis=0)
    _sort_frames(stack)
    assert stack.tobytes() == expected.tobytes()


def test_the_clipped_mean_is_the_mean_within_the_clip_about_the_median() -> None:
    """Against the definition in float64 with numpy's quantiles: median and quartiles of
    each pixel's frames (NaN left out), values within 4 IQR/1.349 of the median averaged."""
    rng = np.random.default_rng(7)
    n, m = 10, 40_000  # more pixels than one block of the combine
    stack = rng.normal(1000.0, 30.0, (n, m)).astype(np.float32)
    hit = rng.random(stack.shape) < 0.1
    stack[hit] += 5000.0  # cosmic rays
    stack[rng.random(stack.shape) < 0.05] = np.nan
    stack[:, 3] = np.nan
    before = stack.copy()
    got = clipped_mean(stack)
    assert stack.tobytes() == before.tobytes()  # the input is left alone
    wide = stack.astype(np.float64)
    with pytest.warns(RuntimeWarning, match="All-NaN slice"):  # pixel 3
        q25, med, q75 = np.nanquantile(wide, [0.25, 0.5, 0.75], axis=0)
    limit = (q75 - q25) * CLIP_NSIGMA / 1.349
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="Mean of empty"):
        expected = np.nanmean(np.where(np.abs(wide - med) <= limit, wide, np.nan), axis=0)
    assert got.dtype == np.float32
    assert np.isnan(got[3])
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=2e-6, equal_nan=True)
    one = (hit.sum(axis=0) == 1) & ~np.isnan(before).any(axis=0)
    assert one.sum() > 5_000
    assert np.abs(got[one] - 1000.0).max() < 100.0  # a plain mean would be 500 ADU high
