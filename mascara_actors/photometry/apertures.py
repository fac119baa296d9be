"""Aperture geometry: exact circle/pixel overlap and the sky annulus pixel sets.

Pixel convention (as photutils, sep and the legacy lsreduce code): the centre of pixel
``image[0, 0]`` is at ``x = y = 0.0``; pixel ``(row j, column i)`` covers
``[i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]``. A star at ``(x, y)`` is given the box of pixels
centred on the nearest pixel ``(round(x), round(y))``; its sub-pixel offset from that pixel
centre, ``dx = x - round(x)`` and ``dy``, lies in ``[-0.5, 0.5)``.

The overlap of a circle with a pixel is computed in closed form, vectorised over stars: the
signed area ``A(u, v)`` of the circle (centred at the origin) inside the rectangle spanned by
the origin and the corner ``(u, v)`` is an elementary integral, and the overlap with any pixel
follows by inclusion-exclusion over its four corners. The result equals photutils
``method="exact"`` to float64 rounding (about 1e-15 per pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AnnulusPixels",
    "annulus_pixels",
    "box_half_size",
    "circle_overlap",
    "circle_overlap_last",
]

# Margin (pixels) that keeps float rounding from misclassifying a pixel as sure or never.
_EPS = 1e-9


def box_half_size(radius: float) -> int:
    """Half size of the pixel box that holds every pixel a circle can touch.

    Parameters
    ----------
    radius : float
        Circle radius, pixels.

    Returns
    -------
    int
        ``h`` such that the ``(2h + 1) x (2h + 1)`` box centred on the pixel nearest to the
        circle centre contains every pixel with non-zero overlap, for any sub-pixel offset.
    """
    # The circle reaches at most 0.5 + radius from the centre pixel's centre; a pixel with
    # offset o starts at o - 0.5.
    return math.ceil(radius + 0.5)


def _primitive(t: NDArray[np.float64], radius: float) -> NDArray[np.float64]:
    """Integral of ``sqrt(radius**2 - s**2)`` ds from 0 to ``t`` (``0 <= t <= radius``)."""
    r2 = radius * radius
    return 0.5 * (t * np.sqrt(np.maximum(r2 - t * t, 0.0))
                  + r2 * np.arcsin(np.minimum(t / radius, 1.0)))


def _corner_areas(u: NDArray[np.float64], v: NDArray[np.float64], radius: float,
                  sign: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """Signed area of the disc of ``radius`` (centre at 0) inside ``[0, u] x [0, v]``.

    ``u`` and ``v`` broadcast against each other (e.g. (1, k, n) and (k, 1, n)). The sign is
    ``sign(u) * sign(v)``, which turns the pixel overlap into a plain inclusion-exclusion
    over the pixel's corners; pass it as ``sign`` when it is known in advance. Everything
    that depends on one axis only (square roots, arcsines) is computed on the small per-axis
    arrays before broadcasting.
    """
    au = np.minimum(np.abs(u), radius)
    av = np.minimum(np.abs(v), radius)
    # Where the circle's boundary is at height av: for au <= uc the corner is inside.
    uc = np.sqrt(np.maximum(radius * radius - av * av, 0.0))
    pu = _primitive(au, radius)
    pc = uc * av - _primitive(uc, radius)
    area = np.where(au <= uc, au * av, pu + pc)
    if sign is None:
        sign = np.copysign(1.0, u) * np.copysign(1.0, v)
    area *= sign
    return area


def circle_overlap(dx: ArrayLike, dy: ArrayLike, radius: float, *,
                   half_size: int | None = None) -> NDArray[np.float64]:
    """Exact overlap area of a circle with each pixel of a box, for many circles at once.

    Parameters
    ----------
    dx, dy : array_like, shape (n,)
        Circle centres relative to the centre of the box's middle pixel, pixels (usually
        ``x - round(x)``; any value works, the box just has to be large enough).
    radius : float
        Circle radius, pixels; must be positive.
    half_size : int, optional
        Half size ``h`` of the box; default :func:`box_half_size` of ``radius``.

    Returns
    -------
    ndarray, shape (n, 2h + 1, 2h + 1)
        Overlap area of each pixel with the circle, in pixel units (0 to 1); indexed
        ``[star, row (y), column (x)]``, the middle pixel at ``[h, h]``. The areas sum to
        ``pi * radius**2`` when the circle lies inside the box.
    """
    if not radius > 0.0:
        raise ValueError(f"radius={radius!r} must be > 0 pixels")
    h = box_half_size(radius) if half_size is None else int(half_size)
    dx = np.atleast_1d(np.asarray(dx, dtype=np.float64))
    dy = np.atleast_1d(np.asarray(dy, dtype=np.float64))
    w = circle_overlap_last(dx, dy, radius, h)
    # Rounding leaves +-1e-14 on pixels the circle only grazes; keep areas within [0, 1].
    return np.moveaxis(np.clip(w, 0.0, 1.0, out=w), -1, 0)


def circle_overlap_last(dx: NDArray[np.float64], dy: NDArray[np.float64], radius: float,
                        half_size: int) -> NDArray[np.float64]:
    """As :func:`circle_overlap`, with the stars on the last axis: shape (2h+1, 2h+1, n).

    This layout keeps numpy's inner loops long (one pass over all stars per pixel), which
    makes it about twice as fast; :func:`~mascara_actors.photometry.measure` uses it. The
    areas are not clipped: pixels that the circle only grazes may come out as +-1e-14.
    """
    edges = np.arange(-half_size - 0.5, half_size + 1.0, 1.0)
    # Pixel corners relative to each circle centre: u along x (columns), v along y (rows).
    u = edges[None, :, None] - dx
    v = edges[:, None, None] - dy
    sign = None
    if dx.size and max(np.abs(dx).max(), np.abs(dy).max()) <= 0.5:
        # Centres within the middle pixel: every corner keeps the sign of its edge (a zero
        # u or v gives a zero area whatever the sign).
        s = np.sign(edges)
        sign = s[:, None, None] * s[None, :, None]
    corner = _corner_areas(u, v, radius, sign)
    cols = corner[:, 1:] - corner[:, :-1]
    return cols[1:] - cols[:-1]


@dataclass(frozen=True, slots=True)
class AnnulusPixels:
    """The pixel offsets that can fall in a sky annulus, split by whether they always do.

    Offsets are relative to the pixel nearest to the star, in pixels. ``sure_*`` pixels have
    their centre inside ``[r_in, r_out]`` whatever the star's sub-pixel offset; ``edge_*``
    pixels may or may not, and are tested per star with :meth:`edge_outside`. Edge pixels
    come in three groups, in this order: ``n_inner`` that can only fall inside the inner
    radius, ``n_outer`` that can only fall beyond the outer radius, and the rest (thin
    annuli only) that can do either.

    Attributes
    ----------
    r_in, r_out : float
        Inner and outer radius, pixels (pixel-centre distance, both ends included).
    half_size : int
        Half size of the box that holds every candidate pixel.
    sure_dx, sure_dy, edge_dx, edge_dy : ndarray of int
        Column and row offsets of the two pixel sets.
    n_inner, n_outer : int
        Sizes of the first two groups of edge pixels.
    """

    r_in: float
    r_out: float
    half_size: int
    sure_dx: NDArray[np.intp]
    sure_dy: NDArray[np.intp]
    edge_dx: NDArray[np.intp]
    edge_dy: NDArray[np.intp]
    n_inner: int
    n_outer: int

    @property
    def n_candidates(self) -> int:
        """Number of candidate pixels (sure plus edge)."""
        return int(self.sure_dx.size + self.edge_dx.size)

    def edge_outside(self, fx: ArrayLike, fy: ArrayLike) -> NDArray[np.bool_]:
        """Which edge pixels fall outside the annulus, per star.

        Parameters
        ----------
        fx, fy : array_like, shape (n,)
            Sub-pixel offsets of the stars from their nearest pixel centre, pixels.

        Returns
        -------
        ndarray of bool, shape (n, n_edge)
            True where the edge pixel's centre is closer than ``r_in`` to the star or
            farther than ``r_out``.
        """
        fx = np.atleast_1d(np.asarray(fx, dtype=np.float64))[:, None]
        fy = np.atleast_1d(np.asarray(fy, dtype=np.float64))[:, None]
        ex = self.edge_dx.astype(np.float64)
        ey = self.edge_dy.astype(np.float64)
        e2 = ex * ex + ey * ey
        # d^2 = e^2 - 2 e.f + f^2, so d < r_in and d > r_out become bounds on
        # u = e.f - f^2 / 2 against per-pixel constants: few passes over the big array.
        u = ex * fx
        u += ey * fy
        u -= 0.5 * (fx * fx + fy * fy)
        too_close = 0.5 * (e2 - self.r_in * self.r_in)
        too_far = 0.5 * (e2 - self.r_out * self.r_out)
        a, b = self.n_inner, self.n_inner + self.n_outer
        out = np.empty(u.shape, dtype=bool)
        np.greater(u[:, :a], too_close[:a], out=out[:, :a])
        np.less(u[:, a:b], too_far[a:b], out=out[:, a:b])
        np.greater(u[:, b:], too_close[b:], out=out[:, b:])
        out[:, b:] |= u[:, b:] < too_far[b:]
        return out


def annulus_pixels(r_in: float, r_out: float, *, centre: str = "star") -> AnnulusPixels:
    """Candidate pixels of a sky annulus (pixel-centre distance in ``[r_in, r_out]``).

    Parameters
    ----------
    r_in, r_out : float
        Inner and outer radius, pixels; ``0 <= r_in < r_out``.
    centre : {"star", "pixel"}
        Measure distances from the star's position ("star", as photutils and the legacy
        code) or from the centre of the pixel nearest to it ("pixel": one fixed pixel set
        for every star, no per-star test, about 15 % faster photometry; the annulus moves by
        at most half a pixel).

    Returns
    -------
    AnnulusPixels
        The sure and edge pixel offsets (see :class:`AnnulusPixels`); no edge pixels for
        ``centre="pixel"``.
    """
    if not (0.0 <= r_in < r_out):
        raise ValueError(f"sky radii ({r_in!r}, {r_out!r}) must satisfy 0 <= r_in < r_out pixels")
    # The box of the legacy code: 2 ceil(r_out) + 1 pixels wide (43 for 21 px), big enough
    # for either centre.
    h = math.ceil(r_out)
    if centre == "pixel":
        oy, ox = np.mgrid[-h:h + 1, -h:h + 1]
        ox, oy = ox.ravel(), oy.ravel()
        r2 = ox * ox + oy * oy
        sure = (r2 >= r_in * r_in) & (r2 <= r_out * r_out)
        none = np.zeros(0, dtype=np.intp)
        return AnnulusPixels(r_in=float(r_in), r_out=float(r_out), half_size=h,
                             sure_dx=ox[sure].astype(np.intp), sure_dy=oy[sure].astype(np.intp),
                             edge_dx=none, edge_dy=none, n_inner=0, n_outer=0)
    if centre != "star":
        raise ValueError(f"centre={centre!r}: use 'star' or 'pixel'")
    # The star sits at f in [-0.5, 0.5]^2 from the pixel nearest to it, so the centre of the
    # pixel at offset o is between the nearest and the farthest point of that square.
    oy, ox = np.mgrid[-h:h + 1, -h:h + 1]
    ox, oy = ox.ravel(), oy.ravel()
    ax, ay = np.abs(ox), np.abs(oy)
    near = np.hypot(np.maximum(ax - 0.5, 0.0), np.maximum(ay - 0.5, 0.0))
    far = np.hypot(ax + 0.5, ay + 0.5)
    may_be_close = near < r_in + _EPS
    may_be_far = far > r_out - _EPS
    candidate = (near <= r_out + _EPS) & (far >= r_in - _EPS)
    sure = candidate & ~may_be_close & ~may_be_far
    inner = candidate & may_be_close & ~may_be_far
    outer = candidate & may_be_far & ~may_be_close
    both = candidate & may_be_close & may_be_far
    edge = np.concatenate([np.flatnonzero(inner), np.flatnonzero(outer), np.flatnonzero(both)])
    return AnnulusPixels(
        r_in=float(r_in), r_out=float(r_out), half_size=h,
        sure_dx=ox[sure].astype(np.intp), sure_dy=oy[sure].astype(np.intp),
        edge_dx=ox[edge].astype(np.intp), edge_dy=oy[edge].astype(np.intp),
        n_inner=int(inner.sum()), n_outer=int(outer.sum()),
    )
