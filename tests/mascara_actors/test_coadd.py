"""The compiled co-add of tiles against numpy's gather-add-scatter of the same tiles."""

from __future__ import annotations

import numpy as np
import pytest

from mascara_actors.binning.coadd import add_tiles

TILE = 4


def _tiles(rng: np.random.Generator, shape: tuple[int, int], n: int, rows: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src_y = rng.integers(0, shape[0] - TILE + 1, n)
    src_x = rng.integers(0, shape[1] - TILE + 1, n)
    return src_y, src_x, rng.permutation(rows)[:n]  # distinct rows, as the stack has them


def _reference(frame: np.ndarray, src_y: np.ndarray, src_x: np.ndarray) -> np.ndarray:
    r = src_y[:, None, None] + np.arange(TILE)[None, :, None]
    c = src_x[:, None, None] + np.arange(TILE)[None, None, :]
    return frame[r, c].reshape(len(src_y), TILE * TILE)


def test_tiles_add_to_their_rows_and_nan_pixels_to_the_missing_counts() -> None:
    rng = np.random.default_rng(5)
    frame = rng.normal(100.0, 10.0, (37, 53)).astype(np.float32)
    nan = rng.random(frame.shape) < 0.05
    sums = rng.normal(0.0, 1.0, (90, TILE * TILE)).astype(np.float32)
    missing = rng.integers(0, 3, sums.shape).astype(np.uint8)
    expected_sums, expected_missing = sums.copy(), missing.copy()
    src_y, src_x, dest = _tiles(rng, frame.shape, 60, 90)
    expected_sums[dest] += _reference(frame, src_y, src_x)
    expected_missing[dest] += _reference(nan.view(np.uint8), src_y, src_x)

    add_tiles(frame, src_y, src_x, dest, sums, nan=nan, missing=missing)
    np.testing.assert_array_equal(sums, expected_sums)
    np.testing.assert_array_equal(missing, expected_missing)
    add_tiles(frame, src_y[:0], src_x[:0], dest[:0], sums)  # no tiles: nothing changes
    np.testing.assert_array_equal(sums, expected_sums)


@pytest.mark.parametrize(("y", "x", "row"), [(34, 0, 0), (0, 50, 0), (-1, 0, 0), (0, 0, 90)],
                         ids=["below", "right", "above", "past-the-rows"])
def test_a_tile_outside_the_frame_or_the_sums_is_refused(y: int, x: int, row: int) -> None:
    frame = np.zeros((37, 53), np.float32)
    sums = np.zeros((90, TILE * TILE), np.float32)
    with pytest.raises(ValueError, match="a tile leaves the"):
        add_tiles(frame, np.array([y]), np.array([x]), np.array([row]), sums)
    assert not sums.any()
