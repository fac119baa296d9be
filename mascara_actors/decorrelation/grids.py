"""The grids of the camera maps: transmission nodes, intrapixel cells, the pixel-phase basis.

(The cloud patches are in :mod:`.sky`.)

- Transmission: values on nodes in (hour angle, declination), bilinear between nodes, the HA
  axis periodic (a north camera sees stars below the pole at HA 180 deg).
- Intrapixel: four amplitudes (``sin 2 pi x, cos 2 pi x, sin 2 pi y, cos 2 pi y``) per cell
  of a coarser (HA, dec) grid, constant inside a cell.

Angles are degrees; HA grows westwards and lies in [-180, 180).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np

from mascara_actors.decorrelation.sky import wrap_ha

__all__ = ["IntrapixelGrid", "TransmissionGrid", "pixel_basis"]


def pixel_basis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The intrapixel basis ``[sin 2 pi x, cos 2 pi x, sin 2 pi y, cos 2 pi y]``, shape (4, n).

    ``x, y`` are science-region pixels with pixel centres at integers, so the basis is the
    pixel phase of the star.
    """
    px = 2.0 * np.pi * np.asarray(x, np.float64)
    py = 2.0 * np.pi * np.asarray(y, np.float64)
    return np.stack([np.sin(px), np.cos(px), np.sin(py), np.cos(py)])


def _number(attrs: dict[str, object], key: str) -> float:
    value = attrs[key]
    if not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"grid attribute {key}={value!r} is not a number")
    return float(value)


@dataclass(frozen=True, slots=True)
class _HaDecGrid:
    """A regular grid in (HA, dec): ``nha`` columns over the full circle from HA -180 deg,
    ``ndec`` rows from ``dec0``; what both maps' grids share, and how they are stored."""

    ha_step: float
    """Column spacing in HA, degrees (360 must be a whole multiple of it)."""
    dec_step: float
    """Row spacing in declination, degrees."""
    dec0: float
    """Declination of the first row, degrees."""
    ndec: int
    """Rows."""

    @classmethod
    def from_attrs(cls, attrs: dict[str, object]) -> Self:
        """The grid of :meth:`attrs` (as stored in a maps file)."""
        return cls(_number(attrs, "ha_step"), _number(attrs, "dec_step"),
                   _number(attrs, "dec0"), int(_number(attrs, "ndec")))

    @property
    def nha(self) -> int:
        """Columns along HA."""
        return round(360.0 / self.ha_step)

    @property
    def size(self) -> int:
        """Number of nodes or cells."""
        return self.nha * self.ndec

    def attrs(self) -> dict[str, float | int]:
        """The grid as file attributes."""
        return {"ha_step": self.ha_step, "dec_step": self.dec_step, "dec0": self.dec0,
                "ndec": self.ndec, "nha": self.nha}


@dataclass(frozen=True, slots=True)
class TransmissionGrid(_HaDecGrid):
    """Bilinear nodes in (HA, dec): ``nha`` nodes over the full circle, ``ndec`` in dec.

    Node ``(j, k)`` sits at ``HA = -180 + k * ha_step`` and ``dec = dec0 + j * dec_step``;
    its flat index is ``j * nha + k``.
    """

    @classmethod
    def covering(cls, dec_min: float, dec_max: float, *, ha_step: float = 1.0,
                 dec_step: float = 1.0) -> TransmissionGrid:
        """The grid whose rows cover ``[dec_min, dec_max]`` with one row to spare each side."""
        if not (360.0 / ha_step).is_integer():
            raise ValueError(f"ha_step={ha_step}: 360 must be a whole multiple of it")
        dec0 = max(-90.0, np.floor(dec_min / dec_step) * dec_step - dec_step)
        top = min(90.0, np.ceil(dec_max / dec_step) * dec_step + dec_step)
        return cls(float(ha_step), float(dec_step), float(dec0),
                   round((top - dec0) / dec_step) + 1)

    @property
    def ha_nodes(self) -> np.ndarray:
        """HA of the node columns, degrees."""
        return -180.0 + self.ha_step * np.arange(self.nha)

    @property
    def dec_nodes(self) -> np.ndarray:
        """Declination of the node rows, degrees."""
        return self.dec0 + self.dec_step * np.arange(self.ndec)

    def dec_weights(self, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row below ``dec`` and the weight of the row above (0..1), clipped to the grid."""
        v = (np.asarray(dec, float) - self.dec0) / self.dec_step
        v = np.clip(v, 0.0, self.ndec - 1 - 1e-9)
        j = np.floor(v).astype(np.int64)
        return j, v - j

    def ha_weights(self, ha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Column at or west of ``ha`` and the weight of the next column (0..1)."""
        u = (wrap_ha(ha) + 180.0) / self.ha_step
        k = np.floor(u).astype(np.int64)
        return k % self.nha, u - k

    def corners(self, ha: np.ndarray, dec: np.ndarray
                ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """Flat indices of the four nodes around each point and their bilinear weights.

        Order: (k, j), (k+1, j), (k, j+1), (k+1, j+1).
        """
        k, fu = self.ha_weights(ha)
        j, fv = self.dec_weights(dec)
        k1 = (k + 1) % self.nha
        n00 = j * self.nha + k
        n10 = j * self.nha + k1
        n01 = n00 + self.nha
        n11 = n10 + self.nha
        gu, gv = 1.0 - fu, 1.0 - fv
        return (n00, n10, n01, n11), (gu * gv, fu * gv, gu * fv, fu * fv)

    def evaluate(self, values: np.ndarray, ha: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of node ``values`` (flat or (ndec, nha)) at (HA, dec)."""
        flat = np.asarray(values, float).reshape(-1)
        (n00, n10, n01, n11), (b00, b10, b01, b11) = self.corners(ha, dec)
        out: np.ndarray = flat[n00] * b00 + flat[n10] * b10 + flat[n01] * b01 + flat[n11] * b11
        return out


@dataclass(frozen=True, slots=True)
class IntrapixelGrid(_HaDecGrid):
    """Cells in (HA, dec): ``nha`` over the full circle times ``ndec`` rows from ``dec0``
    (the lower edge of the first row); ``ha_step`` and ``dec_step`` are the cell's width and
    height.

    Built on a :class:`TransmissionGrid` (:meth:`on`), a cell spans a whole number of node
    intervals in each direction, so the couplings between the two maps have few shapes.
    """

    @classmethod
    def on(cls, grid: TransmissionGrid, *, ha_ratio: int = 2, dec_ratio: int = 2
           ) -> IntrapixelGrid:
        """Cells of ``ha_ratio`` x ``dec_ratio`` node intervals of ``grid``."""
        if int(ha_ratio) != ha_ratio or int(dec_ratio) != dec_ratio or min(ha_ratio,
                                                                           dec_ratio) < 1:
            raise ValueError(f"cell ratios ({ha_ratio}, {dec_ratio}) must be whole numbers")
        if grid.nha % ha_ratio:
            raise ValueError(f"ha_ratio={ha_ratio} must divide the {grid.nha} node columns")
        ndec = max(1, -(-(grid.ndec - 1) // int(dec_ratio)))
        return cls(grid.ha_step * ha_ratio, grid.dec_step * dec_ratio, grid.dec0, ndec)

    @property
    def ha_edges(self) -> np.ndarray:
        """HA cell edges, degrees."""
        return -180.0 + self.ha_step * np.arange(self.nha + 1)

    @property
    def dec_edges(self) -> np.ndarray:
        """Declination cell edges, degrees."""
        return self.dec0 + self.dec_step * np.arange(self.ndec + 1)

    def row(self, dec: np.ndarray) -> np.ndarray:
        """Row of each declination (clipped to the grid)."""
        j = np.floor((np.asarray(dec, float) - self.dec0) / self.dec_step).astype(np.int64)
        return np.clip(j, 0, self.ndec - 1)

    def cell(self, ha: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Flat cell index ``row * nha + column`` of each (HA, dec)."""
        k = np.floor((wrap_ha(ha) + 180.0) / self.ha_step).astype(np.int64) % self.nha
        return self.row(dec) * self.nha + k

    def evaluate(self, amplitudes: np.ndarray, ha: np.ndarray, dec: np.ndarray,
                 x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The intrapixel term ``sum_i a_i(cell) * basis_i(x, y)``, magnitudes."""
        amp = np.asarray(amplitudes, float).reshape(-1, 4)
        out: np.ndarray = np.einsum("in,ni->n", pixel_basis(x, y), amp[self.cell(ha, dec)])
        return out
