"""Issue 9: the cloud-fraction weather proxy on synthetic fluxes with known clouds."""

from __future__ import annotations

import numpy as np
import pytest

from mascara_actors.summary import cloud_proxy

ZP = -16.7  # instrumental mag of 1 ADU/s minus V
K = 0.15


def _night(seed: int = 3) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """40 frames x 200 stars; frames 20-29 thin cirrus (0.3 mag everywhere), frames 30-39
    patchy clouds (1.5 mag on the first 100 stars). Returns the points and the dimming."""
    rng = np.random.default_rng(seed)
    nframes, nstars = 40, 200
    frame = np.repeat(np.arange(nframes), nstars) + 65344200
    star = np.tile(np.arange(nstars), nframes)
    vmag = rng.uniform(4.0, 8.4, nstars)[star]
    alt = rng.uniform(20.0, 90.0, nstars)[star]
    dim = np.zeros(len(frame))
    dim[(frame - 65344200 >= 20) & (frame - 65344200 < 30)] = 0.3
    dim[(frame - 65344200 >= 30) & (star < 100)] = 1.5
    airmass = 1 / np.sin(np.radians(alt))
    mag = vmag + ZP + K * (airmass - 1) + dim + rng.normal(0, 0.02, len(frame))
    exptime = np.full(len(frame), 6.4)
    flux = 10 ** (-0.4 * mag) * exptime
    return {"lstseq": frame, "flux": flux, "exptime": exptime, "alt_deg": alt,
            "vmag": vmag}, dim


def test_clear_cirrus_and_patchy_clouds_are_told_apart() -> None:
    pts, dim = _night()
    w = cloud_proxy(**pts, extinction=K)
    assert list(w.lstseq) == list(range(65344200, 65344240))
    assert w.zero_point_mag == pytest.approx(ZP, abs=0.01)
    clear, cirrus, patchy = slice(0, 20), slice(20, 30), slice(30, 40)
    assert np.allclose(w.transmission[clear], 1.0, atol=0.01)
    assert np.allclose(w.transmission[cirrus], 10 ** (-0.4 * 0.3), atol=0.01)
    assert np.all(w.cloud_fraction[clear] == 0)
    assert np.all(w.cloud_fraction[cirrus] == 0)
    assert np.allclose(w.cloud_fraction[patchy], 0.5)
    assert w.night_cloud_fraction == pytest.approx(10 * 0.5 / 40)
    assert w.clear_fraction == pytest.approx(20 / 40)
    assert w.npoints == len(dim)


def test_per_frame_median_matches_numpy() -> None:
    pts, _ = _night(seed=5)
    keep = np.random.default_rng(1).random(len(pts["lstseq"])) < 0.7  # uneven counts
    pts = {k: v[keep] for k, v in pts.items()}
    w = cloud_proxy(**pts, extinction=K)
    airmass = 1 / np.sin(np.radians(pts["alt_deg"]))
    resid = -2.5 * np.log10(pts["flux"] / pts["exptime"]) - pts["vmag"] - K * (airmass - 1)
    medians = np.array([np.median(resid[pts["lstseq"] == f]) for f in w.lstseq])
    assert np.allclose(-2.5 * np.log10(w.transmission) + w.zero_point_mag, medians)


def test_no_usable_points_gives_an_empty_proxy() -> None:
    w = cloud_proxy(np.array([1, 1]), np.array([-5.0, 0.0]), np.array([6.4, 6.4]),
                    np.array([50.0, 50.0]), np.array([5.0, 6.0]))
    assert len(w.lstseq) == 0
    assert np.isnan(w.night_cloud_fraction)
    assert np.isnan(w.clear_fraction)
    assert np.isnan(w.zero_point_mag)
