"""The detrending where the fit has no points: a night left out whole (a candidate's
transits, masked), a stretch of LST no point reaches, a star with fewer points than the
trend has nodes. The trend there must stay at the star's level or bridge its neighbours:
it once fell by the star's whole magnitude (a node without points got 0 mag), which lost
a real planet and made 10 % "transits" of noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mascara_actors.lcsim.transits import TransitSpec
from mascara_actors.search.detrend import detrend
from mascara_actors.search.run import search
from mascara_actors.search.settings import SearchSettings

from .synthetic import JD0, SET_DAYS, STARS, season_points, write_season

NOISE = 0.003


def _star(nights: list[int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """JD, LST (h) and a 7th-magnitude star's magnitudes with white noise and an LST term
    of 10 mmag a sidereal day."""
    rng = np.random.default_rng(seed)
    jd, lst, _ = season_points(nights)
    mag = 7.0 + NOISE * rng.standard_normal(len(jd)) + 0.01 * np.sin(2 * np.pi * lst / 24)
    return jd, lst, mag


def test_a_night_left_out_whole_stays_at_the_stars_level() -> None:
    # a last night a week after the others: a stretch of its own, every point left out
    jd, lst, mag = _star([*range(30), 37], seed=1)
    late = jd > JD0 + 36.5
    d = detrend(jd, lst, mag, np.full(len(jd), NOISE), exclude=late)
    truth = 7.0 + 0.01 * np.sin(2 * np.pi * lst[late] / 24)
    assert np.max(np.abs(d.trend_mag[late] - truth)) < 0.005
    assert np.max(np.abs(d.flux[late] - 1.0)) < 5 * NOISE


def test_a_stretch_of_lst_no_point_reaches_is_bridged() -> None:
    rng = np.random.default_rng(2)
    jd, lst, _ = season_points(list(range(30)))
    # an LST term rising 10 mmag an hour across the star's path
    dl = (lst - np.median(lst) + 12.0) % 24.0 - 12.0
    mag = 7.0 + NOISE * rng.standard_normal(len(jd)) + 0.01 * dl
    # 0.8 h of LST (three nodes of 0.25 h) where the term is 15 mmag above the star's
    # median, left out: bridged, not pulled back to the median
    gap = np.abs(dl - 1.5) < 0.4
    d = detrend(jd, lst, mag, np.full(len(jd), NOISE), exclude=gap)
    truth = 7.0 + 0.01 * dl[gap]
    assert np.max(np.abs(d.trend_mag[gap] - truth)) < 0.003


def test_too_few_points_for_a_trend_leave_the_light_curve_at_its_level() -> None:
    jd, lst, mag = _star([0, 6, 12], seed=3)
    keep = np.arange(len(jd)) % 30 == 0  # 11 points, fewer than the trend's nodes
    d = detrend(jd[keep], lst[keep], mag[keep], np.full(int(keep.sum()), NOISE))
    assert np.median(d.flux) == pytest.approx(1.0, abs=0.005)


def test_a_planet_whose_last_transit_is_on_a_night_apart_is_found(tmp_path: Path) -> None:
    """30 nights, then 4 clear hours a week later holding one transit: the second
    detrending leaves all of that night out, and the planet must still be found."""
    t_mid = JD0 + 37 + 50 * SET_DAYS
    planet = TransitSpec(hip=STARS[0], period_d=3.474, epoch_jd=t_mid, depth=0.013,
                         duration_h=3.6)

    def clear_hours(hip: int, rec: np.ndarray) -> np.ndarray:
        last = rec["jd"] > JD0 + 36.5
        return rec[~last | (np.abs(rec["jd"] - t_mid) < 2.0 / 24)]

    path = write_season(tmp_path / "calibrated.hdf5", nights=[*range(30), 37],
                        stars=STARS[:3], transits={planet.hip: planet}, edit=clear_hours)
    report = search([path], tmp_path / "out", SearchSettings(period_max=10.0, workers=1),
                    sheets=0)
    (best,) = [c for c in report.candidates if c.hip == planet.hip and c.rank == 1]
    assert best.period == pytest.approx(planet.period_d, rel=1e-3)
    assert abs(best.depth - planet.depth) < 3 * best.depth_err + 0.1 * planet.depth
    assert best.passed, {k: v for k, v in best.checks.items() if not v}
    # the quiet stars beside it have no candidate that passes
    assert {c.hip for c in report.passed} == {planet.hip}
