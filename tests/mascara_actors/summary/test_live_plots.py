"""The night summary's figures of the live calibration: the noise diagram and the clouds."""

from __future__ import annotations

import numpy as np

from mascara_actors.decorrelation.live import CLOUD_DTYPE, LIVE_BIN_DTYPE
from mascara_actors.storage.live_sets import LiveNight
from mascara_actors.summary.live_plots import MIN_BINS, clouds_figure, noise_by_star, noise_diagram

PNG = b"\x89PNG\r\n\x1a\n"


def _night(nsets: int, rng: np.random.Generator) -> LiveNight:
    """Three stars of known scatter (5, 10, 20 mmag) and floor over ``nsets`` sets; the
    third star's last bin flagged cloudy and 1 mag off (it must be left out)."""
    bins = np.zeros(3 * nsets, LIVE_BIN_DTYPE)
    bins["id"] = np.repeat([11, 22, 33], nsets)
    bins["vmag"] = np.repeat([6.0, 7.0, 8.0], nsets)
    bins["setidx"] = np.tile(np.arange(1000, 1000 + nsets), 3)
    sigma = np.repeat([0.005, 0.010, 0.020], nsets)
    bins["mag"] = np.repeat([6.1, 7.1, 8.1], nsets) + sigma * rng.standard_normal(3 * nsets)
    bins["efloor"] = sigma / 2
    bins["mag"][-1] += 1.0
    bins["cflag"][-1] = 2
    clouds = np.zeros(4, CLOUD_DTYPE)
    clouds["patch"], clouds["lstseq"] = [185, 186, 185, 186], [50000, 50000, 50001, 50001]
    clouds["value"] = [0.0, 0.2, 0.05, np.nan]
    return LiveNight("maps.hdf5", tuple(range(1000, 1000 + nsets)), bins, clouds)


def test_the_scatter_of_each_star_leaves_flagged_bins_out() -> None:
    night = _night(400, np.random.default_rng(1))
    noise = noise_by_star(night.bins)
    assert noise.ids.tolist() == [11, 22, 33]
    assert noise.nbins.tolist() == [400, 400, 399]
    np.testing.assert_allclose(noise.rms, [0.005, 0.010, 0.020], rtol=0.1)
    np.testing.assert_allclose(noise.floor, [0.0025, 0.005, 0.010], rtol=1e-5)
    np.testing.assert_allclose(noise.vmag, [6.0, 7.0, 8.0])


def test_a_star_needs_enough_bins_and_the_figures_are_drawn_either_way() -> None:
    short = _night(MIN_BINS - 1, np.random.default_rng(2))
    assert len(noise_by_star(short.bins).ids) == 0
    for night in (short, _night(40, np.random.default_rng(3))):
        assert noise_diagram(night, "20260320LPC").startswith(PNG)
        assert clouds_figure(night, "20260320LPC").startswith(PNG)
