"""The camera's transmission map (the seed's ``buildTransmissionMap``).

From many measurements of (observed - catalogue) magnitude at pixel positions, build an
image of the camera's transmission on a grid of cells over the chip: per cell, the robust
(median) magnitude offset and the number of points. The seed took a dictionary
``{cell index: [dmag per aperture]}``; here the points come as arrays, and ``dmag`` with
several columns (one per aperture) gives one map per column, the seed's ``dimensions > 1``.

Magnitudes: ``dmag = -2.5 log10(flux / exptime) + 25 - V`` (the legacy zero point 25); the
map holds ``dmag - median over cells``, magnitudes (positive = less light), and the
transmission ``10 ** (-0.4 * map)`` (1 = the median cell).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from astropy.io import fits

from mascara_actors.atomic_files import atomic_write_bytes
from mascara_actors.errors import FrameError

__all__ = ["TransmissionMap", "build_transmission_map", "plot_transmission_map"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TransmissionMap:
    """A transmission map; arrays read-only, shape (ndim, ny_cells, nx_cells)."""

    dmag: np.ndarray
    """Median magnitude offset per cell minus the median over cells, mag; NaN when the
    cell has fewer than ``min_points`` points."""
    nobs: np.ndarray
    """Finite points per cell of each map, shape (ndim, ny_cells, nx_cells)."""
    x_edges: np.ndarray
    """Cell edges along x, pixels."""
    y_edges: np.ndarray
    """Cell edges along y, pixels."""
    zero_point: np.ndarray
    """The median over cells subtracted from each map, mag, shape (ndim,)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            getattr(self, f.name).flags.writeable = False

    @property
    def transmission(self) -> np.ndarray:
        """``10 ** (-0.4 dmag)``: 1 for the median cell, lower where less light arrives."""
        return 10.0 ** (-0.4 * self.dmag)


def build_transmission_map(
    x: np.ndarray,
    y: np.ndarray,
    dmag: np.ndarray,
    *,
    size: tuple[int, int],
    cells: tuple[int, int] = (32, 24),
    min_points: int = 3,
    fits_path: str | Path | None = None,
) -> TransmissionMap:
    """Median (observed - catalogue) magnitude per cell of a grid over the chip.

    Parameters
    ----------
    x, y : ndarray, shape (n,)
        Positions of the measurements, pixels (science region).
    dmag : ndarray, shape (n,) or (n, ndim)
        Observed minus catalogue magnitude, mag; one column per map (e.g. per aperture).
        Non-finite values are left out.
    size : (nx, ny)
        Size of the chip, pixels (the seed's ``nulx, nuly``).
    cells : (nx_cells, ny_cells)
        Number of cells along x and y.
    min_points : int
        Cells with fewer points are NaN.
    fits_path : path, optional
        Also write the maps (primary HDU: dmag, extension NOBS) there, atomically.

    Raises
    ------
    FrameError
        Shapes disagree, or no point is finite and on the chip.
    """
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    d = np.asarray(dmag, float)
    d = d[:, None] if d.ndim == 1 else d
    if d.shape[0] != x.size or y.size != x.size:
        raise FrameError(f"x ({x.size}), y ({y.size}) and dmag ({d.shape[0]}) must have one "
                         "value per measurement")
    nx, ny = size
    ncx, ncy = cells
    xe, ye = np.linspace(-0.5, nx - 0.5, ncx + 1), np.linspace(-0.5, ny - 0.5, ncy + 1)
    ix = np.floor((x + 0.5) * ncx / nx).astype(np.intp)
    iy = np.floor((y + 0.5) * ncy / ny).astype(np.intp)
    on = (ix >= 0) & (ix < ncx) & (iy >= 0) & (iy < ncy)
    maps = np.full((d.shape[1], ncy, ncx), np.nan)
    nobs = np.zeros(maps.shape, np.int64)
    for k in range(d.shape[1]):  # one pass per map (a handful), vectorised over points
        ok = on & np.isfinite(d[:, k])
        if not ok.any():
            raise FrameError(f"map {k}: no finite measurement on the {nx} x {ny} chip")
        cell = iy[ok] * ncx + ix[ok]
        order = np.lexsort((d[ok, k], cell))
        cs, vs = cell[order], d[ok, k][order]
        starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
        counts = np.diff(np.r_[starts, cs.size])
        lo = vs[starts + (counts - 1) // 2]
        hi = vs[starts + counts // 2]
        med = np.where(counts >= min_points, 0.5 * (lo + hi), np.nan)
        maps[k].ravel()[cs[starts]] = med
        nobs[k].ravel()[cs[starts]] = counts
    zero = np.nanmedian(maps.reshape(maps.shape[0], -1), axis=1)
    maps -= zero[:, None, None]
    tmap = TransmissionMap(dmag=maps, nobs=nobs, x_edges=xe, y_edges=ye, zero_point=zero)
    if fits_path is not None:
        write_transmission_fits(fits_path, tmap)
    return tmap


def write_transmission_fits(path: str | Path, tmap: TransmissionMap) -> Path:
    """Write the maps (primary, float32 mag) and ``NOBS`` (int32) to ``path`` atomically."""
    primary = fits.PrimaryHDU(np.asarray(tmap.dmag, np.float32))
    primary.header["BUNIT"] = ("mag", "dmag - median over cells")
    primary.header["CELLX"] = (float(tmap.x_edges[1] - tmap.x_edges[0]), "[px] cell width")
    primary.header["CELLY"] = (float(tmap.y_edges[1] - tmap.y_edges[0]), "[px] cell height")
    for k, z in enumerate(tmap.zero_point):
        primary.header[f"ZEROPT{k}"] = (float(z), "[mag] median subtracted")
    buf = io.BytesIO()
    fits.HDUList([primary, fits.ImageHDU(tmap.nobs.astype(np.int32), name="NOBS")]).writeto(buf)
    return atomic_write_bytes(Path(path), buf.getvalue())


def plot_transmission_map(tmap: TransmissionMap, path: str | Path, *, title: str = "") -> Path:
    """A PNG of the first map as transmission (1 = median cell), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from mascara_actors.figures import write_png

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    extent = (tmap.x_edges[0], tmap.x_edges[-1], tmap.y_edges[0], tmap.y_edges[-1])
    im = ax.imshow(tmap.transmission[0], origin="lower", extent=extent, cmap="viridis",
                   aspect="equal")
    fig.colorbar(im, ax=ax, label="transmission (median cell = 1)")
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")
    ax.set_title(title or "camera transmission")
    return write_png(fig, path)
