"""Exact circle/pixel overlap and the sky annulus pixel sets."""

from __future__ import annotations

import numpy as np
import pytest
from photutils.geometry import circular_overlap_grid

from mascara_actors.photometry.apertures import (
    annulus_pixels,
    box_half_size,
    circle_overlap,
    circle_overlap_last,
)

RADII = [0.3, 1.0, 2.5, 3.5, 4.5, 5.5, 7.2]


def _photutils_grid(dx: float, dy: float, radius: float, h: int) -> np.ndarray:
    """photutils' exact overlap of the same box (its own, independent algorithm)."""
    n = 2 * h + 1
    return circular_overlap_grid(-h - 0.5 - dx, h + 0.5 - dx, -h - 0.5 - dy, h + 0.5 - dy,
                                 n, n, radius, 1, 1)


@pytest.mark.parametrize("radius", RADII)
def test_overlap_matches_photutils_exact(radius: float) -> None:
    rng = np.random.default_rng(11)
    dx = rng.uniform(-0.5, 0.5, 40)
    dy = rng.uniform(-0.5, 0.5, 40)
    w = circle_overlap(dx, dy, radius)
    h = box_half_size(radius)
    assert w.shape == (40, 2 * h + 1, 2 * h + 1)
    ref = np.stack([_photutils_grid(a, b, radius, h) for a, b in zip(dx, dy, strict=True)])
    # photutils itself is accurate to ~1e-11 at r = 7 (it subtracts triangle areas)
    assert np.max(np.abs(w - ref)) < 1e-10


@pytest.mark.parametrize("radius", RADII)
def test_overlap_sums_to_circle_area(radius: float) -> None:
    rng = np.random.default_rng(12)
    w = circle_overlap(rng.uniform(-0.5, 0.5, 200), rng.uniform(-0.5, 0.5, 200), radius)
    np.testing.assert_allclose(w.sum(axis=(1, 2)), np.pi * radius**2, rtol=1e-13)
    assert w.min() >= 0.0
    assert w.max() <= 1.0


def test_overlap_of_centred_circle_is_symmetric_and_full_inside() -> None:
    w = circle_overlap([0.0], [0.0], 2.5)[0]
    np.testing.assert_allclose(w, w[::-1, :], atol=1e-15)
    np.testing.assert_allclose(w, w.T, atol=1e-15)
    # pixel (1, 1) has its far corner at 1.5 * sqrt(2) = 2.12 < 2.5: fully inside
    assert w[4, 4] == 1.0
    assert w[3, 3] == 1.0
    # pixel (3, 0) spans 2.5 to 3.5 from the centre: touched only at one point
    assert w[3, 6] == pytest.approx(0.0, abs=1e-15)


def test_overlap_mirrors_with_the_offset() -> None:
    w = circle_overlap([0.3], [-0.2], 4.5)[0]
    m = circle_overlap([-0.3], [-0.2], 4.5)[0]
    np.testing.assert_allclose(w, m[:, ::-1], atol=1e-14)


def test_box_holds_every_touched_pixel() -> None:
    # worst-case offsets: the circle leans into a corner of the centre pixel
    for radius in RADII:
        h = box_half_size(radius)
        for dx, dy in [(0.5, 0.5), (-0.5, 0.5), (0.49999, -0.49999), (0.0, 0.5)]:
            big = _photutils_grid(dx, dy, radius, h + 2)
            inner = big[2:-2, 2:-2]
            assert big.sum() == pytest.approx(inner.sum(), abs=1e-12)


def test_stars_last_layout_is_the_same_numbers() -> None:
    rng = np.random.default_rng(13)
    dx, dy = rng.uniform(-0.5, 0.5, 7), rng.uniform(-0.5, 0.5, 7)
    last = circle_overlap_last(dx, dy, 2.5, 3)
    # the same numbers, except that circle_overlap clips the +-1e-14 of grazed pixels
    np.testing.assert_allclose(np.moveaxis(last, -1, 0), circle_overlap(dx, dy, 2.5),
                               rtol=0, atol=1e-13)


def test_overlap_rejects_bad_radius() -> None:
    with pytest.raises(ValueError, match=r"radius=0\.0 must be > 0 pixels"):
        circle_overlap([0.0], [0.0], 0.0)


@pytest.mark.parametrize(("r_in", "r_out"), [(6.0, 21.0), (6.0, 7.0), (0.0, 3.0),
                                              (2.5, 2.6), (10.3, 12.9)])
def test_annulus_pixels_match_brute_force_distances(r_in: float, r_out: float) -> None:
    ann = annulus_pixels(r_in, r_out)
    rng = np.random.default_rng(14)
    n = 300
    fx = np.r_[rng.uniform(-0.5, 0.5, n - 3), 0.0, -0.5, 0.25]
    fy = np.r_[rng.uniform(-0.5, 0.5, n - 3), 0.0, -0.5, -0.5]
    outside = ann.edge_outside(fx, fy)
    h = ann.half_size + 2  # a larger box than needed: nothing may fall beyond the candidates
    oy, ox = np.mgrid[-h:h + 1, -h:h + 1]
    d = np.hypot(ox[None] - fx[:, None, None], oy[None] - fy[:, None, None])
    want = (d >= r_in) & (d <= r_out)
    got = np.zeros_like(want)
    got[:, ann.sure_dy + h, ann.sure_dx + h] = True
    got[:, ann.edge_dy + h, ann.edge_dx + h] = ~outside
    np.testing.assert_array_equal(got, want)


def test_annulus_6_21_counts() -> None:
    ann = annulus_pixels(6.0, 21.0)
    assert ann.half_size == 21
    assert ann.n_inner + ann.n_outer == ann.edge_dx.size  # thick annulus: no "both" group
    # a star on a pixel centre: the annulus is the integer points with 36 <= r^2 <= 441
    oy, ox = np.mgrid[-21:22, -21:22]
    r2 = ox**2 + oy**2
    expected = int(((r2 >= 36) & (r2 <= 441)).sum())
    inside = ann.sure_dx.size + int((~ann.edge_outside([0.0], [0.0])).sum())
    assert inside == expected


def test_annulus_centred_on_the_pixel_is_one_fixed_set() -> None:
    ann = annulus_pixels(6.0, 21.0, centre="pixel")
    assert ann.edge_dx.size == 0
    oy, ox = np.mgrid[-21:22, -21:22]
    r2 = ox**2 + oy**2
    inside = (r2 >= 36) & (r2 <= 441)
    assert set(zip(ann.sure_dx.tolist(), ann.sure_dy.tolist(), strict=True)) == set(
        zip(ox[inside].tolist(), oy[inside].tolist(), strict=True))


def test_annulus_rejects_bad_radii() -> None:
    with pytest.raises(ValueError, match=r"must satisfy 0 <= r_in < r_out"):
        annulus_pixels(21.0, 6.0)
    with pytest.raises(ValueError, match=r"centre='middle': use 'star' or 'pixel'"):
        annulus_pixels(6.0, 21.0, centre="middle")
