"""Box least squares (issue 19, the search's kernel) against astropy's ``BoxLeastSquares``,
the reference implementation, on a simulated season of 5-minute bins with a transit of the
depth and period of MASCARA-2b."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.timeseries import BoxLeastSquares

from mascara_actors.search import box_least_squares, period_grid

PERIOD, DEPTH, DURATION, EPOCH = 3.474, 0.013, 3.0 / 24, 0.7
DURATIONS = np.arange(1, 7) / 24.0
SIGMA = 0.005


def _season(nights: int = 60, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A MASCARA-like season: nights of 9.6 hours in bins of 5.3 minutes, a star of 5 mmag
    per bin."""
    rng = np.random.default_rng(seed)
    t = np.concatenate([n + 0.05 + np.arange(108) * 0.0037 for n in range(nights)])
    y = SIGMA * rng.standard_normal(len(t))
    y[np.abs((t - EPOCH + PERIOD / 2) % PERIOD - PERIOD / 2) < DURATION / 2] -= DEPTH
    return t, y, np.full(len(t), SIGMA)


def test_the_periodogram_is_astropys() -> None:
    t, y, dy = _season()
    periods = period_grid(t.max() - t.min(), 3.0, 4.0, DURATIONS.min())
    ours = box_least_squares(t, y, dy, periods, DURATIONS)
    ref = BoxLeastSquares(t, y, dy).power(periods, DURATIONS, objective="snr")
    assert np.corrcoef(ours.power, ref.power)[0, 1] > 0.99
    assert np.median(ours.power / ref.power) == pytest.approx(1.0, abs=0.03)
    i, k = int(np.argmax(ours.power)), int(np.argmax(ref.power))
    assert abs(ours.periods[i] - ref.period[k]) <= 2 * np.diff(periods).max()
    assert ours.depth[i] == pytest.approx(ref.depth[k], rel=0.03)
    assert ours.depth_err[i] == pytest.approx(ref.depth_err[k], rel=0.03)
    assert ours.duration[i] == pytest.approx(DURATION)


def test_the_transit_is_found_over_the_whole_range() -> None:
    t, y, dy = _season()
    periods = period_grid(t.max() - t.min(), 1.0, 20.0, DURATIONS.min())
    bls = box_least_squares(t, y, dy, periods, DURATIONS)
    i = int(np.argmax(bls.power))
    assert bls.periods[i] == pytest.approx(PERIOD, rel=2e-4)
    # the grid's step lets the box drift by up to 20 minutes over the season: the depth of
    # the best box is a little shallow (the candidates are refined on the unbinned points)
    assert 0.85 * DEPTH < bls.depth[i] < 1.05 * DEPTH
    phase = (bls.epoch[i] - EPOCH + PERIOD / 2) % PERIOD - PERIOD / 2
    assert abs(phase) < 0.25 / 24  # within 15 minutes
    # away from its multiples and fractions, nothing comes near it
    ratios = np.array([k for n in range(1, 6) for k in (n, 1 / n)])
    near = np.min(np.abs(np.log(bls.periods[:, None] / (PERIOD * ratios[None, :]))), axis=1)
    assert bls.power[near > 0.01].max() < bls.power[i] / 1.3


def test_bad_points_are_ignored_and_too_few_give_nothing() -> None:
    t, y, dy = _season(nights=20)
    periods = period_grid(t.max() - t.min(), 3.0, 4.0, DURATIONS.min())
    clean = box_least_squares(t, y, dy, periods, DURATIONS)
    y2, dy2 = y.copy(), dy.copy()
    y2[::17], dy2[5::19] = np.nan, 0.0
    keep = np.isfinite(y2) & (dy2 > 0)
    damaged = box_least_squares(t, y2, dy2, periods, DURATIONS)
    same = box_least_squares(t[keep], y[keep], dy[keep], periods, DURATIONS)
    np.testing.assert_array_equal(damaged.power, same.power)
    assert not np.array_equal(damaged.power, clean.power)
    none = box_least_squares(t[:2], y[:2], dy[:2], periods, DURATIONS)
    assert np.all(none.power == 0)


def test_the_period_grid_keeps_a_transit_in_step_and_refuses_nonsense() -> None:
    grid = period_grid(100.0, 1.0, 20.0, 1 / 24, oversample=3)
    assert grid[0] == pytest.approx(1.0)
    assert grid[-1] == pytest.approx(20.0)
    # neighbouring periods: a transit drifts by at most a third of an hour over 100 days
    drift = 100.0 * np.diff(grid) / grid[:-1]
    assert drift.max() <= (1 / 24) / 3 * 1.001
    with pytest.raises(ValueError, match="need 0 < min < max"):
        period_grid(100.0, 5.0, 1.0, 1 / 24)
    for bad in ((0.0, 1.0, 2.0, 1 / 24), (100.0, 1.0, 2.0, 0.0)):
        with pytest.raises(ValueError, match="must be positive"):
            period_grid(*bad)
