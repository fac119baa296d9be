"""The clear sky has no clouds: how the clouds' zero is fixed.

Every cloud cell's level trades with the magnitudes of its stars and with T, so the data
alone cannot say what "no clouds" is. Here it is the clear level of the cloud values: per
patch (:func:`clear_level`, applied in the temporal step) and per ring of patches and hour
angle of the patch centre over the nights (:func:`clear_levels_by_ha`, gathered by the
workers; :func:`cloud_gauge` moves it into T). The legacy solver leaves this to its
starting point, so its T carries the mean extinction of the cloudy nights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mascara_actors.decorrelation.grids import TransmissionGrid
from mascara_actors.decorrelation.sky import slot_hour_angle, wrap_ha

__all__ = ["ClearLevels", "clear_level", "clear_levels_by_ha", "cloud_gauge"]


def clear_level(values: np.ndarray) -> float:
    """The level of the clear sky among sorted cloud values (mag): the median of the
    shortest interval holding half of them.

    Clouds only dim, so the cloudy cells form a tail on the faint side; as long as
    at least half of the cells are clear, the densest half is the clear sky and its median
    is not pulled by the clouds (the plain median is, by a good fraction of the clear
    scatter when a third of the nights are cloudy).
    """
    n = len(values)
    if n == 0:
        return 0.0
    h = n // 2 + 1
    if n < 4:
        return float(np.median(values))
    widths = values[h - 1:] - values[:n - h + 1]
    i = int(np.argmin(widths))
    return float(np.median(values[i:i + h]))


@dataclass(frozen=True)
class ClearLevels:
    """The clear level of one patch's clouds per HA bin of the patch centre."""

    patch: int
    bins: np.ndarray
    """HA bins (of ``step`` degrees from -180)."""
    level: np.ndarray
    """Clear level per bin, mag."""
    count: np.ndarray
    """Cloud cells per bin."""


def clear_levels_by_ha(patch: int, lstseq: np.ndarray, clouds: np.ndarray,
                       valid: np.ndarray, ra0: float, lon_offset: float, step: float
                       ) -> ClearLevels:
    """Clear level of a patch's well-measured cloud cells (``valid``) per HA bin of its
    centre (at RA ``ra0``), with the number of cells."""
    ha_q = slot_hour_angle(lstseq, ra0, lon_offset)
    b = np.floor((ha_q + 180.0) / step).astype(np.int64)
    b, cv = b[valid], clouds[valid]
    if len(b) == 0:
        return ClearLevels(patch, np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
    order = np.lexsort((cv, b))
    b, cv = b[order], cv[order]
    bins, start, count = np.unique(b, return_index=True, return_counts=True)
    level = np.array([clear_level(cv[a:a + n]) for a, n in
                      zip(start.tolist(), count.tolist(), strict=True)])
    return ClearLevels(patch, bins, level, count)


def cloud_gauge(grid: TransmissionGrid, levels: Sequence[ClearLevels],
                patch_dec: dict[int, float], step: float) -> np.ndarray:
    """T correction that moves the clear level of the clouds (per ring of patches and HA bin
    of the patch centre, smoothed over a few degrees) into T: the clouds of the clear sky
    are zero."""
    nbin = round(360.0 / step)
    ring_decs = sorted({round(patch_dec[lv.patch], 6) for lv in levels})
    if not ring_decs:
        return np.zeros(grid.size)
    ring_index = {d: i for i, d in enumerate(ring_decs)}
    num = np.zeros((len(ring_decs), nbin))
    den = np.zeros((len(ring_decs), nbin))
    for lv in levels:
        r = ring_index[round(patch_dec[lv.patch], 6)]
        np.add.at(num[r], lv.bins, lv.level * lv.count)
        np.add.at(den[r], lv.bins, lv.count)
    # separable Gaussian kernels from the (ring, bin) table to the nodes
    dec_r = np.asarray(ring_decs)
    ha_b = -180.0 + step * (np.arange(nbin) + 0.5)
    kd = np.exp(-0.5 * ((grid.dec_nodes[:, None] - dec_r[None, :]) / 4.0) ** 2)
    dha = wrap_ha(grid.ha_nodes[:, None] - ha_b[None, :])
    kh = np.exp(-0.5 * (dha / step) ** 2)
    top = kd @ num @ kh.T
    bottom = kd @ den @ kh.T
    full = float(den.sum()) / max(int(np.count_nonzero(den)), 1)
    h: np.ndarray = top / (bottom + 1e-3 * full)
    return h.reshape(-1)
