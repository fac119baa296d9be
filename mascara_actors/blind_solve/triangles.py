"""Triangles of near stars and their shape keys, the hash of the blind solve.

Side lengths do not change under rotation or reflection, so a triangle's shape (the two
shorter sides over the longest) and size (log of the longest side) are the same on the sky
and on the image, whatever the roll and parity.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "MIN_FLATNESS",
    "SHAPE_TOL",
    "SIDE_GAP",
    "SIDE_MAX_DEG",
    "SIDE_MIN_DEG",
    "SIZE_TOL",
    "scaled_keys",
    "triangles",
]

#: Triangle sides, degrees: long enough for a well-measured shape, short enough that the
#: lens model error stays small across a triangle and the index stays small.
SIDE_MIN_DEG = 0.5
SIDE_MAX_DEG = 7.0
#: Sides closer than this (fraction of the longest) make the vertex order ambiguous; such
#: triangles are left out of the index and of the image.
SIDE_GAP = 0.015
#: Triangles flatter than this ((a + b) / c - 1) do not fix the parity.
MIN_FLATNESS = 0.05
#: Lookup tolerances: shape ratios (absolute) and size (log of the longest side, i.e. a
#: focal length wrong by up to about this fraction).
SHAPE_TOL = 0.008
SIZE_TOL = 0.03


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between unit vectors, degrees (chord form: accurate for small angles)."""
    chord = np.linalg.norm(a - b, axis=-1)
    angle: np.ndarray = np.degrees(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0)))
    return angle


def triangles(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of unit vectors whose sides are all within SIDE_MIN_DEG..SIDE_MAX_DEG.

    Returns vertex indices (t, 3), the vertex opposite the shortest side first, and keys
    (t, 3): shortest / longest side, middle / longest side, ln(longest side in degrees).
    """
    n = len(vec)
    empty = np.empty((0, 3), np.int64), np.empty((0, 3))
    if n < 3:
        return empty
    chord = 2.0 * math.sin(math.radians(SIDE_MAX_DEG) / 2.0)
    pairs = cKDTree(vec).query_pairs(chord, output_type="ndarray").astype(np.int64)
    if len(pairs) == 0:
        return empty
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]  # i < j, sorted by (i, j)
    out_deg = np.bincount(pairs[:, 0], minlength=n)
    start = np.concatenate([[0], np.cumsum(out_deg)[:-1]])
    # Every path i < j < k along edges (i, j), (j, k); a triangle when (i, k) is an edge too.
    deg_j = out_deg[pairs[:, 1]]
    edge = np.repeat(np.arange(len(pairs)), deg_j)
    step = np.arange(deg_j.sum()) - np.repeat(np.cumsum(deg_j) - deg_j, deg_j)
    i, j = pairs[edge, 0], pairs[edge, 1]
    k = pairs[start[j] + step, 1]
    edge_key = pairs[:, 0] * n + pairs[:, 1]
    want = i * n + k
    pos = np.minimum(np.searchsorted(edge_key, want), len(edge_key) - 1)
    ok = edge_key[pos] == want
    tri = np.stack([i[ok], j[ok], k[ok]], axis=1)
    if len(tri) == 0:
        return empty
    v = vec[tri]
    sides = np.stack(
        [_angle_deg(v[:, 1], v[:, 2]), _angle_deg(v[:, 0], v[:, 2]), _angle_deg(v[:, 0], v[:, 1])],
        axis=1,
    )
    order = np.argsort(sides, axis=1)
    sides = np.take_along_axis(sides, order, axis=1)
    tri = np.take_along_axis(tri, order, axis=1)
    a, b, c = sides.T
    keep = (
        (a >= SIDE_MIN_DEG)
        & ((b - a) >= SIDE_GAP * c)
        & ((c - b) >= SIDE_GAP * c)
        & ((a + b) / c - 1.0 >= MIN_FLATNESS)
    )
    keys = np.stack([a / c, b / c, np.log(c)], axis=1)
    return tri[keep], keys[keep]


def scaled_keys(keys: np.ndarray) -> np.ndarray:
    """Keys scaled so that the lookup tolerance is a unit ball."""
    scaled: np.ndarray = keys / np.array([SHAPE_TOL, SHAPE_TOL, SIZE_TOL])
    return scaled

