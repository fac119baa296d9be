"""The transmission map (seed ``buildTransmissionMap``, issue 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from mascara_actors.errors import FrameError
from mascara_actors.transmission import build_transmission_map, plot_transmission_map


def _vignetting(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A known transmission loss, mag: 0 at the centre of a 1000 x 600 chip, 0.5 at r=500."""
    return 0.5 * ((x - 500.0) ** 2 + (y - 300.0) ** 2) / 500.0**2


def test_map_recovers_a_known_vignetting(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 40000
    x, y = rng.uniform(0, 999, n), rng.uniform(0, 599, n)
    true = _vignetting(x, y)
    dmag = np.column_stack([true + 3.1 + rng.normal(0, 0.05, n),
                            true + 2.9 + rng.normal(0, 0.02, n)])
    dmag[::97, 0] = np.nan  # failed measurements are left out
    tmap = build_transmission_map(x, y, dmag, size=(1000, 600), cells=(20, 12),
                                  fits_path=tmp_path / "trans.fits")
    assert tmap.dmag.shape == (2, 12, 20)
    assert tmap.nobs[1].sum() == n
    assert tmap.nobs[0].sum() == n - dmag[::97].shape[0]
    cx = 0.5 * (tmap.x_edges[1:] + tmap.x_edges[:-1])
    cy = 0.5 * (tmap.y_edges[1:] + tmap.y_edges[:-1])
    gx, gy = np.meshgrid(cx, cy)
    expect = _vignetting(gx, gy)
    for k in range(2):
        got = tmap.dmag[k] + tmap.zero_point[k]
        offset = np.median(got - expect)
        assert offset == pytest.approx(3.1 if k == 0 else 2.9, abs=0.02)
        # The cell median of a quadratic differs from its centre value by < 0.01 mag.
        assert np.max(np.abs(got - expect - offset)) < 0.03
    assert np.nanmedian(tmap.dmag[1]) == pytest.approx(0.0, abs=1e-12)
    corner, centre = tmap.transmission[1][0, 0], tmap.transmission[1][6, 10]
    assert corner < centre
    assert corner / centre == pytest.approx(10 ** (-0.4 * (expect[0, 0] - expect[6, 10])),
                                            rel=0.03)
    with fits.open(tmp_path / "trans.fits") as hdul:
        assert np.allclose(hdul[0].data, tmap.dmag, equal_nan=True, atol=1e-6)
        assert (hdul["NOBS"].data == tmap.nobs).all()
    png = plot_transmission_map(tmap, tmp_path / "trans.png", title="LPC test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sparse_cells_are_nan_and_bad_input_is_refused() -> None:
    x = np.array([10.0, 11, 12, 500, 900])
    y = np.array([10.0, 12, 11, 300, 50])
    t = build_transmission_map(x, y, np.array([1.0, 1.2, 1.1, 5.0, 7.0]), size=(1000, 600),
                               cells=(10, 6), min_points=3)
    assert t.nobs[0, 0, 0] == 3
    assert t.nobs[0, 3, 5] == 1
    assert np.isfinite(t.dmag[0, 0, 0])
    assert np.isnan(t.dmag[0, 3, 5])
    assert t.zero_point[0] == pytest.approx(1.1)
    with pytest.raises(FrameError, match="one value per measurement"):
        build_transmission_map(x, y[:3], np.zeros(5), size=(1000, 600))
    with pytest.raises(FrameError, match="no finite measurement"):
        build_transmission_map(x, y, np.full(5, np.nan), size=(1000, 600))
