"""Issue 9: the figures (light-curve overview with its fallback, transmission map)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from mascara_actors.errors import StorageError
from mascara_actors.storage import NightFile
from mascara_actors.summary import light_curve_overview, summarise_night, transmission_map
from mascara_actors.summary.plots import find_transmission_map

PNG = b"\x89PNG\r\n\x1a\n"


def _size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_overview_range_and_fallback(replay_night: Path) -> None:
    with NightFile(next((replay_night / "lightcurves").glob("fast_*.hdf5"))) as nf:
        stars = nf.stars
        v = stars["vmag"].astype(float)
        lo, hi = np.sort(v)[len(v) // 2], np.sort(v)[len(v) // 2 + 2]
        ov = light_curve_overview(nf, (lo, hi))
        inside = stars[(v >= lo) & (v <= hi)]
        assert ov.note == ""
        assert ov.star_ids == tuple(inside["id"][np.argsort(inside["vmag"], kind="stable")])
        assert _size(ov.png) == (720, 360)
        # a range no star is in: the nearest stars in V, and a note that says so
        gap = (20.0, 20.1)
        ov = light_curve_overview(nf, gap, fallback_stars=3)
        nearest = stars["id"][np.argsort(np.abs(v - 20.05), kind="stable")[:3]]
        assert sorted(ov.star_ids) == sorted(nearest.tolist())
        assert "no star with 20.00 <= V <= 20.10" in ov.note
        assert ov.mag_range == (float(np.sort(v)[-3]), float(np.sort(v)[-1]))


def test_transmission_map_drawn_when_present(tmp_path: Path) -> None:
    """The layout of mascara_actors.transmission: (naper, ny, nx) magnitudes, BUNIT mag."""
    night = tmp_path / "20260320LPC"
    (night / "calibration").mkdir(parents=True)
    path = night / "calibration" / "trans_20260320LPC.fits"
    yy, xx = np.mgrid[0:60, 0:90]
    dmag = np.stack([0.5 * ((xx - 45) ** 2 + (yy - 30) ** 2) / 2000.0, np.zeros((60, 90))])
    hdu = fits.PrimaryHDU(dmag.astype(np.float32))
    hdu.header["BUNIT"], hdu.header["CELLX"], hdu.header["CELLY"] = "mag", 40.0, 40.0
    fits.HDUList([hdu, fits.ImageHDU(np.ones((2, 60, 90), np.int32), name="NOBS")]).writeto(path)
    assert find_transmission_map(night) == path
    assert _size(transmission_map(path)) == (560, 400)
    out = summarise_night(night)
    names = [p.name for p in out.image_paths]
    assert names == ["20260320LPC_diagnostics.png", "20260320LPC_transmission.png"]
    assert 'id="img-20260320LPC_transmission.png"' in out.html_path.read_text()  # type: ignore[union-attr]


def test_transmission_map_without_image_is_dropped_with_a_reason(tmp_path: Path) -> None:
    night = tmp_path / "20260320LPC"
    night.mkdir()
    path = night / "trans.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="E", array=np.ones(3))])]).writeto(path)
    with pytest.raises(StorageError, match="holds no 2-D image"):
        transmission_map(path)
    out = summarise_night(night)
    assert out.html_path is not None
    assert out.html_path.is_file()
    assert len(out.problems) == 1
    assert "holds no 2-D image" in out.problems[0]
