"""The compiled gather against numpy's fancy indexing of the same pixels."""

from __future__ import annotations

import numpy as np
import pytest

from mascara_actors.photometry.apertures import annulus_pixels
from mascara_actors.photometry.gather import gather_runs, pixel_runs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_runs_around_stars_are_the_pixels_fancy_indexing_gives(dtype: type) -> None:
    rng = np.random.default_rng(3)
    image = rng.normal(1000.0, 30.0, (90, 130)).astype(dtype)
    ann = annulus_pixels(6.0, 21.0, centre="star")
    # the annulus as the photometry orders it, then offsets in no order (runs of one)
    dx = np.r_[ann.sure_dx, ann.edge_dx, rng.integers(-21, 22, 50)]
    dy = np.r_[ann.sure_dy, ann.edge_dy, rng.integers(-21, 22, 50)]
    runs = pixel_runs(dx, dy)
    assert runs.width == dx.size
    assert runs.x_range == runs.y_range == (-21, 21)
    assert runs.length.sum() == dx.size
    assert runs.length.size < dx.size
    xi = rng.integers(21, 130 - 21, 40)
    yi = rng.integers(21, 90 - 21, 40)
    out = np.full((40, dx.size + 7), -1.0, dtype=dtype)
    gather_runs(image, xi, yi, runs, out)
    np.testing.assert_array_equal(out[:, :dx.size], image[yi[:, None] + dy, xi[:, None] + dx])
    assert (out[:, dx.size:] == -1.0).all()  # columns past the runs are left alone


def test_a_star_too_near_the_edge_or_a_mismatched_output_is_refused() -> None:
    image = np.zeros((50, 60), np.float32)
    runs = pixel_runs(np.arange(-3, 4), np.zeros(7, int))
    out = np.empty((1, 7), np.float32)
    with pytest.raises(ValueError, match=r"pixels \(dx -3..3, dy 0..0\) leave the \(50, 60\)"):
        gather_runs(image, np.array([57]), np.array([10]), runs, out)
    with pytest.raises(ValueError, match="from a float32 image"):
        gather_runs(image, np.array([10]), np.array([10]), runs, out.astype(np.float64))
    gather_runs(image, np.array([56]), np.array([0]), runs, out)  # rows: dy is 0 only
