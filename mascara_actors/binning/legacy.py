"""The legacy stacker, kept to compare the binned images with (not used by the pipeline)."""

from __future__ import annotations

import numpy as np

from mascara_actors.binning.displacement import displacement_at
from mascara_actors.camera_model import CameraModel

__all__ = ["legacy_tile_stack"]


def legacy_tile_stack(
    frames: list[np.ndarray],
    lst_hours: list[float],
    model: CameraModel,
    *,
    lst_ref_hours: float,
    tile: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """The legacy stacker (``lsreduce`` ``stacking.Stacker``), for comparison only.

    The image is cut into ``tile`` x ``tile`` tiles (the leftover split evenly at the
    borders and never stacked); each tile of each frame is pushed, unrotated, by the whole
    pixel shift of its centre from ``lst_hours[i]`` to ``lst_ref_hours`` and averaged.
    Pass a model without distortion to reproduce the legacy TAN-only mapping.

    Parameters
    ----------
    frames
        Calibrated science regions, ADU.
    lst_hours
        Mid-exposure LST of each frame, hours.
    model
        Camera model used for the tile shifts.
    lst_ref_hours
        LST of the reference frame, hours.
    tile
        Tile side, pixels (legacy 32).

    Returns
    -------
    image, count : ndarray
        Mean image (0 where nothing landed, as legacy) and the number of frames per pixel.
    """
    ny, nx = model.ny, model.nx
    ntx, nty = nx // tile, ny // tile
    x0, y0 = (nx - ntx * tile) // 2, (ny - nty * tile) // 2
    cx = x0 + np.arange(ntx) * tile + (tile - 1) / 2.0
    cy = y0 + np.arange(nty) * tile + (tile - 1) / 2.0
    gx, gy = np.meshgrid(cx, cy)
    acc = np.zeros(ny * nx)
    cnt = np.zeros(ny * nx)
    ty, tx = np.mgrid[0:tile, 0:tile]
    for frame, lst in zip(frames, lst_hours, strict=True):
        # Legacy maps the tile centre of frame i to the reference: pixel -> sky at lst_i.
        dx, dy = displacement_at(model, gx, gy, lst_ref_hours=lst, lst_hours=lst_ref_hours)
        ok = np.isfinite(dx) & np.isfinite(dy)
        sx = np.round(np.where(ok, dx, 0)).astype(int)
        sy = np.round(np.where(ok, dy, 0)).astype(int)
        oy = (y0 + np.arange(nty) * tile)[:, None, None, None] + ty[None, None]
        ox = (x0 + np.arange(ntx) * tile)[None, :, None, None] + tx[None, None]
        oy, ox = np.broadcast_arrays(oy, ox)
        r = oy + sy[:, :, None, None]
        c = ox + sx[:, :, None, None]
        keep = ok[:, :, None, None] & (r >= 0) & (r < ny) & (c >= 0) & (c < nx)
        src = np.asarray(frame, float)[oy[keep], ox[keep]]
        dest = r[keep] * nx + c[keep]
        acc += np.bincount(dest, weights=src, minlength=ny * nx)
        cnt += np.bincount(dest, minlength=ny * nx)
    with np.errstate(invalid="ignore", divide="ignore"):
        image = np.nan_to_num(acc / cnt)
    return image.reshape(ny, nx), cnt.reshape(ny, nx)
