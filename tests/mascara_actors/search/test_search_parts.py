"""The search's parts against the truth they were given: detrending, the alias mask, the
measurement of a transit, the periods that fold the same transits, the vetting, the
candidates table and the scoring of injection-recovery."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import lfilter

from mascara_actors.errors import ConfigError
from mascara_actors.lcsim.transits import TransitSpec
from mascara_actors.search.candidates import Candidate, read_candidates, write_candidates
from mascara_actors.search.detrend import detrend
from mascara_actors.search.injection import recovery_of
from mascara_actors.search.measure import measure_transit
from mascara_actors.search.peaks import alias_free, calibration_sidebands, pick_peaks, sde
from mascara_actors.search.run import SearchReport, _passed_first
from mascara_actors.search.settings import SIDEREAL_DAY, SearchSettings
from mascara_actors.search.star import Peak, StarResult, same_transits
from mascara_actors.search.vetting import Thresholds, central_duration, vet

from .synthetic import JD0, SET_DAYS, SETS_PER_NIGHT, season_points

P, EPOCH, DUR = 2.7182, JD0 + 0.9, 3.0 / 24


def _box(jd: np.ndarray, period: float = P, epoch: float = EPOCH, dur: float = DUR
         ) -> np.ndarray:
    return np.abs((jd - epoch + period / 2) % period - period / 2) < dur / 2


def test_detrending_takes_the_drift_and_the_lst_term_and_leaves_the_transit() -> None:
    rng = np.random.default_rng(5)
    jd, lst, _ = season_points(range(40))
    noise = 0.003
    inside = _box(jd)
    mag = (noise * rng.standard_normal(len(jd)) + 0.02 * (jd - jd[0]) / 40
           + 0.01 * np.sin(2 * np.pi * lst / 8) + np.where(inside, 0.0109, 0.0))  # 1 %
    d = detrend(jd, lst, mag, np.full(len(jd), noise))
    rms = np.std(d.flux[~inside] - 1)
    assert rms == pytest.approx(noise / 1.0857, rel=0.1)
    depth = np.mean(d.flux[~inside]) - np.mean(d.flux[inside])
    assert depth == pytest.approx(0.01, rel=0.05)
    # most transit points were clipped from the fit (a 1 % dip is 3.6 sigma: those whose
    # noise brings them within 3 sigma, about 27 %, stay), the rest kept
    assert np.mean(d.used[inside]) < 0.4
    assert np.mean(d.used[~inside]) > 0.98


def test_a_gap_of_weeks_is_fitted_stretch_by_stretch() -> None:
    rng = np.random.default_rng(6)
    jd, lst, _ = season_points([*range(10), *range(40, 50)])
    # an offset of 50 mmag between the stretches, which one polynomial over the gap follows
    # badly
    mag = 0.003 * rng.standard_normal(len(jd)) + np.where(jd > jd[0] + 20, 0.05, 0.0)
    d = detrend(jd, lst, mag, np.full(len(jd), 0.003))
    assert np.std(d.flux - 1) < 1.1 * 0.003 / 1.0857


def test_the_alias_mask_takes_multiples_and_fractions_of_the_sidereal_day() -> None:
    periods = np.array([SIDEREAL_DAY, 2 * SIDEREAL_DAY * 1.003, 3 * SIDEREAL_DAY * 0.996,
                        SIDEREAL_DAY / 2, 2.5, 1.5, 3 * SIDEREAL_DAY * 1.01])
    assert alias_free(periods, 0.005).tolist() == [False, False, False, False, True, True,
                                                    True]


def test_the_sidebands_of_calibrated_files_are_masked_within_the_resolution() -> None:
    # Files calibrated alone over 15 days leak the sidereal day to 1/Psid - 1/15 per day:
    # the 1.07-day false dips of the benchmark's quiet stars.
    # the median length; a stub file is no piece, a short last file does not count
    (f,) = calibration_sidebands([14.98, 15.02, 15.0, 4.0, 0.5])
    assert f == pytest.approx(1.0 / SIDEREAL_DAY - 1.0 / 15.0, abs=1e-3)
    assert 1.0 / f == pytest.approx(1.068, abs=0.001)
    periods = np.array([1.0 / (f + 0.04), 1.0 / (f + 0.015), 1.0 / f, 1.0 / (f - 0.015),
                        1.0 / (f - 0.02), 2.5])
    assert alias_free(periods, 0.005).all()
    # the leak fills the band from the sidereal day down to f (1.03-1.05 d is inside it);
    # a 60-day season resolves 1/60 per day
    assert alias_free(periods, 0.005, (f,), 1 / 60).tolist() == [False, False, False, False,
                                                                 True, True]
    # the band ends at the sidereal day, whose own mask is the alias tolerance
    assert alias_free(np.array([0.985]), 0.005, (f,), 1 / 60).tolist() == [True]
    assert calibration_sidebands([0.5]) == ()


def test_sde_and_peaks() -> None:
    power = np.ones(1000)
    power[::2] = 2.0
    power[500] = 20.0
    power[700] = 12.0
    allowed = np.ones(1000, bool)
    allowed[700] = False
    score = sde(power, allowed)
    assert score[700] == 0
    # 500 ones and 499 larger values: the median is 1 and the median absolute deviation 0,
    # so the spread is half the standard deviation
    assert score[500] == pytest.approx((20 - 1) / (0.5 * np.std(power[allowed])))
    periods = np.linspace(1, 20, 1000)
    assert pick_peaks(periods, score, 2)[0] == 500
    # the second peak is at least 2 % away in period
    second = pick_peaks(periods, score, 2)[1]
    assert abs(periods[second] / periods[500] - 1) >= 0.02


def _season(depth: float = 0.01, noise: float = 0.003, seed: int = 7,
            extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    jd, _, _ = season_points(range(40))
    flux = 1 + noise * rng.standard_normal(len(jd)) - depth * _box(jd)
    if extra is not None:
        flux = flux + extra
    return jd, flux, np.full(len(jd), noise)


def test_a_transit_is_measured_as_injected() -> None:
    jd, flux, err = _season()
    m = measure_transit(jd, flux, err, P, EPOCH, DUR)
    inside = _box(jd)
    n_in = np.count_nonzero(inside)
    assert m.depth_err == pytest.approx(0.003 * np.sqrt(1 / n_in + 1 / (len(jd) - n_in)),
                                        rel=0.1)
    assert abs(m.depth - 0.01) < 3 * m.depth_err
    assert m.snr == pytest.approx(m.depth / m.depth_err)
    # transits with at least 3 points, counted here from the times
    number = np.round((jd[inside] - EPOCH) / P).astype(int)
    assert m.ntransits == int(np.sum(np.bincount(number - number.min()) >= 3))
    assert m.in_transit_fraction == pytest.approx(n_in / len(jd))
    assert m.odd_even_sigma < 3
    assert abs(m.secondary_sigma) < 3
    assert abs(m.ellipsoidal_sigma) < 4
    assert m.red_noise < 1.3
    assert m.anti_transit_ratio > 5
    assert m.single_night_fraction < 0.3
    # the epoch moved to the transit nearest the middle of the data, same phase
    assert abs((m.epoch - EPOCH) / P - round((m.epoch - EPOCH) / P)) < 1e-9
    assert abs(m.epoch - np.median(jd)) <= P / 2


def test_periods_that_fold_the_same_transits_are_named_and_others_are_not() -> None:
    # nights of 9.6 h from JD0 + n; a transit every 3.0 days at 0.2 d into a night is seen
    # every third night. Every 1.5 days, the other transits fall 0.7 d into a night, in
    # daytime: the same points. Every 6 days: half of them; every 2 days: a sixth in common.
    night = SETS_PER_NIGHT * SET_DAYS
    assert 0.2 + 0.05 < night < 0.7 - 0.05
    jd, _, _ = season_points(range(60))
    epoch = JD0 + 0.2
    flux = 1.0 - 0.01 * _box(jd, 3.0, epoch, DUR)
    err = np.full(len(jd), 0.003)
    measured = [measure_transit(jd, flux, err, p, epoch, DUR) for p in (3.0, 1.5, 6.0, 2.0)]
    # folded on 1.5 days the same points are in transit, so the same depth and S/N
    assert measured[1].depth == pytest.approx(measured[0].depth, rel=1e-9)
    assert measured[1].snr == pytest.approx(measured[0].snr, rel=1e-9)
    assert same_transits(jd, measured, 0.8, 1.0) == [(2,), (1,), (), ()]
    # with the overlap asked down to a half, 6 days joins them if its S/N may differ (it
    # has the same depth from half the points in transit); 2 days (a fourth) never
    assert measured[2].snr < measured[0].snr - 10
    assert same_transits(jd, measured, 0.5, 1.0) == [(2,), (1,), (), ()]
    assert same_transits(jd, measured, 0.5, np.inf) == [(2, 3), (1, 3), (1, 2), ()]


def test_an_eclipsing_binary_shows_unequal_eclipses_and_a_secondary() -> None:
    jd, _, _ = season_points(range(40))
    rng = np.random.default_rng(8)
    # the binary's true period is 2P: eclipses of 2 % and 1 % alternate
    n = np.round((jd - EPOCH) / P).astype(int)
    flux = 1 + 0.003 * rng.standard_normal(len(jd)) - _box(jd) * np.where(n % 2, 0.02, 0.01)
    m = measure_transit(jd, flux, np.full(len(jd), 0.003), P, EPOCH, DUR)
    assert m.odd_even_sigma > 5
    # at the true period, the shallow eclipse is the secondary at phase 0.5
    m2 = measure_transit(jd, flux, np.full(len(jd), 0.003), 2 * P, EPOCH + P, DUR)
    assert m2.secondary_sigma > 10
    assert m2.secondary_depth == pytest.approx(0.01, rel=0.15)


def test_a_planet_whose_transits_scatter_in_depth_passes_odd_even() -> None:
    # each transit's depth off by 8 % (rms) at random, as a night's photometry can be: the
    # odd and even means differ by several white-noise sigma in a quarter of the draws, but
    # the single transits' scatter about their parity's mean shows it
    jd, _, _ = season_points(range(40))
    n = np.round((jd - EPOCH) / P).astype(int)
    n -= n.min()
    rng = np.random.default_rng(4)
    sigma = []
    for _ in range(200):
        depth = 0.02 * (1.0 + 0.08 * rng.standard_normal(n.max() + 1))
        flux = 1.0 - _box(jd) * depth[n] + 0.003 * rng.standard_normal(len(jd))
        sigma.append(measure_transit(jd, flux, np.full(len(jd), 0.003), P, EPOCH,
                                     DUR).odd_even_sigma)
    assert np.mean(np.array(sigma) > 3.0) <= 0.05


def test_ellipsoidal_variation_is_measured() -> None:
    jd, _, _ = season_points(range(40))
    phase = (jd - EPOCH) / P
    jd_, flux, err = _season(extra=-0.002 * np.cos(4 * np.pi * phase))
    m = measure_transit(jd_, flux, err, P, EPOCH, DUR)
    assert m.ellipsoidal_amp == pytest.approx(0.002, rel=0.15)
    assert m.ellipsoidal_sigma > 10


def test_correlated_noise_raises_the_depth_error() -> None:
    jd, _, _ = season_points(range(40))
    rng = np.random.default_rng(9)
    # 2 mmag per night of correlated wobble: each night's points share one offset
    night = np.floor(jd - jd[0]).astype(int)
    wobble = 0.002 * rng.standard_normal(night.max() + 1)[night]
    _, flux, err = _season(extra=wobble)
    white = measure_transit(*_season()[:2], err, P, EPOCH, DUR)
    red = measure_transit(jd, flux, err, P, EPOCH, DUR)
    assert red.red_noise > 1.5
    assert red.depth_err > 1.4 * white.depth_err


def _measure(**change: float):  # type: ignore[no-untyped-def]
    jd, flux, err = _season()
    m = measure_transit(jd, flux, err, P, EPOCH, DUR)
    return dataclasses.replace(m, **change)


def test_each_criterion_fails_on_what_it_is_for() -> None:
    good = _measure()
    passed = vet(good, sde=15, sptype="A", blend_snr=0.0)
    assert all(passed.values()), passed
    cases = {
        "sde": ({}, {"sde": 0.5}),
        "snr": ({"snr": 9.0}, {}),
        "anti_transit": ({"anti_transit_ratio": 1.2}, {}),
        "ntransits": ({"ntransits": 1}, {}),
        "single_night": ({"single_night_fraction": 0.85}, {}),
        "depth": ({"depth": 0.08}, {}),
        "odd_even": ({"odd_even_sigma": 4.0}, {}),
        "secondary": ({"secondary_sigma": 4.0}, {}),
        "ellipsoidal": ({"ellipsoidal_sigma": 6.0}, {}),
        "in_transit": ({"in_transit_fraction": 0.2}, {}),
        "duration": ({"duration": 0.5}, {}),
        "alias": ({"period": 2 * SIDEREAL_DAY}, {}),
        "blend": ({}, {"blend_snr": 1e3}),
    }
    for name, (measure_change, call_change) in cases.items():
        m = dataclasses.replace(good, **measure_change)
        kwargs = {"sde": 15.0, "sptype": "A", "blend_snr": 0.0, **call_change}
        result = vet(m, **kwargs)  # type: ignore[arg-type]
        assert [k for k, v in result.items() if not v] == [name], name


def test_a_peak_in_a_sideband_passes_only_above_the_leak() -> None:
    (f,) = calibration_sidebands([15.0, 15.0, 15.0, 15.0])
    limits = Thresholds(sidebands=(f,), sideband_width=1 / 60)
    in_band = dataclasses.replace(_measure(), period=1.0 / (f + 0.01), duration=0.08,
                                  in_transit_fraction=0.05)
    mid_band = dataclasses.replace(in_band, period=1.04)  # between f and the sidereal day
    for snr, passes in ((14.0, False), (19.9, False), (20.0, True), (95.0, True)):
        for peak in (in_band, mid_band):
            checks = vet(dataclasses.replace(peak, snr=snr), sde=15.0, sptype="A",
                         blend_snr=0.0, limits=limits)
            assert checks["alias"] is passes, (peak.period, snr)
            assert all(v for k, v in checks.items() if k != "alias"), checks
    below = dataclasses.replace(in_band, period=1.0 / (f - 0.02), snr=14.0)
    assert vet(below, sde=15.0, sptype="A", blend_snr=0.0, limits=limits)["alias"]
    # a multiple of the sidereal day fails whatever its S/N
    day = dataclasses.replace(in_band, period=2 * SIDEREAL_DAY, snr=95.0)
    assert not vet(day, sde=15.0, sptype="A", blend_snr=0.0, limits=limits)["alias"]


def test_the_central_duration_is_keplers() -> None:
    # the Sun and Jupiter at 1 AU (365.25 d): (R_sun + R_jup) / (pi a) of the period
    assert central_duration(365.25, "G") * 24 == pytest.approx(
        365.25 * 24 / np.pi * np.arcsin(1.10045 * 0.0046505), rel=1e-6)
    assert central_duration(3.474, "A") > central_duration(3.474, "K")


def test_absurd_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="periods 5 to 1 d"):
        SearchSettings(period_min=5, period_max=1).check()
    with pytest.raises(ConfigError, match="no transit would be seen twice"):
        SearchSettings().check(baseline_days=12.0)
    with pytest.raises(ConfigError, match="cannot repeat"):
        SearchSettings(period_min=0.2, period_max=2).check()
    with pytest.raises(ConfigError, match="same_transits"):
        SearchSettings(same_transits=0.0).check()
    with pytest.raises(ConfigError, match="same_transits_snr"):
        SearchSettings(same_transits_snr=-1.0).check()
    Thresholds()  # the defaults are consistent


def test_the_candidates_table_roundtrips_sorted_by_significance(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import h5py

    def cand(hip: int, sde_: float, ok: bool) -> Candidate:
        return Candidate(hip=hip, camera="LPC", vmag=7.1, sptype="A", ra=1.0, dec=2.0, rank=1,
                         period=3.3, epoch=JD0, duration=0.1, depth=0.01, depth_err=0.001,
                         sde=sde_, snr=10.0, npoints=5000, ntransits=5,
                         in_transit_fraction=0.01, odd_even_sigma=0.5, secondary_depth=0.0,
                         secondary_sigma=0.1, ellipsoidal_amp=0.0, ellipsoidal_sigma=0.2,
                         single_night_fraction=0.2, anti_transit_ratio=5.0, red_noise=1.0,
                         blend_hip=0, blend_snr=0.0, snr_err=1.2, checks={"sde": ok, "snr": True},
                         aliases="1.650000 6.600000" if hip == 2 else "")
    rows = [cand(1, 9.0, False), cand(2, 30.0, True), cand(3, 12.0, True)]
    csv_path, h5_path = write_candidates(tmp_path, rows, {"sde": "SDE >= 10", "snr": "x"})
    back = read_candidates(csv_path)
    assert [c.hip for c in back] == [2, 3, 1]
    assert back[0] == rows[1]
    assert back[0].alias_periods == (1.65, 6.6)
    assert back[1].alias_periods == ()
    assert back[2].passed is False
    with h5py.File(h5_path) as f:
        table = f["candidates"][()]
        assert table["hip"].tolist() == [2, 3, 1]
        assert table["pass_sde"].tolist() == [True, True, False]
        assert table["aliases"].tolist() == [b"1.650000 6.600000", b"", b""]
        assert "SDE >= 10" in f["candidates"].attrs["criteria"]


def _candidate(hip: int, period: float, aliases: str = "", ok: bool = True) -> Candidate:
    return Candidate(hip=hip, camera="LPC", vmag=7.1, sptype="A", ra=1.0, dec=2.0, rank=1,
                     period=period, epoch=JD0, duration=0.1, depth=0.01, depth_err=0.001,
                     sde=9.0, snr=20.0, npoints=5000, ntransits=5, in_transit_fraction=0.01,
                     odd_even_sigma=0.5, secondary_depth=0.0, secondary_sigma=0.1,
                     ellipsoidal_amp=0.0, ellipsoidal_sigma=0.2, single_night_fraction=0.2,
                     anti_transit_ratio=5.0, red_noise=1.0, blend_hip=0, blend_snr=0.0,
                     snr_err=1.3, aliases=aliases, checks={"snr": ok})


def test_a_transit_is_recovered_at_its_period_a_harmonic_or_a_named_alias() -> None:
    injected = [TransitSpec(hip, 2.344, JD0, 0.02, 3.0) for hip in range(1, 8)]
    rows = (
        _candidate(1, 2.3441),  # the period itself
        _candidate(2, 4.6885),  # twice it
        _candidate(3, 3.5165, aliases="7.031 2.3445"),  # 3/2 of it, the period an alias
        _candidate(4, 3.5165, aliases="7.031"),  # 3/2 of it, the period not named
        _candidate(5, 2.344, ok=False),  # at the period but failed the vetting
        _candidate(7, 1.5627, aliases="4.6876"),  # 2/3 of it, twice the period an alias
        # star 6: no peak; stars 8 and 9 without a transit, 9 with a passed candidate
        _candidate(9, 1.7),
    )
    nights = {h: StarResult(h, 2000, 60) for h in range(1, 10)}
    report = SearchReport(Path("."), "LPC", (), (), 9, (), rows, 0, 1.0, 60.0, nights)
    rec = recovery_of(injected, report, list(range(1, 10)))
    assert rec.recovered.tolist() == [True, True, True, False, False, False, True]
    assert rec.exact.tolist() == [True, False, False, False, False, False, False]
    assert rec.through_alias.tolist() == [False, False, True, False, False, False, True]
    assert rec.by_an_alias(0.02) == 2
    assert rec.fraction(0.02) == pytest.approx(4 / 7)
    assert [c.hip for c in rec.false] == [9]
    assert rec.false_per_1000 == pytest.approx(1000 / 2)
    # a star seen on fewer than half the nights does not count, injected or not
    few = dataclasses.replace(report, results={**nights, 1: StarResult(1, 200, 20)})
    assert len(recovery_of(injected, few, list(range(1, 10))).injected) == 6


def test_a_star_s_candidate_is_its_strongest_peak_that_passed() -> None:
    # the search ranked three peaks by S/N: three times the period first, which fails (its
    # box holds three times the share of points in transit), then the period, then a third
    jd, _, _ = season_points(range(20))
    m = measure_transit(jd, 1.0 - 0.01 * _box(jd), np.full(len(jd), 0.003), P, EPOCH, DUR)
    peaks = (Peak(1, 5.0, m, same_transits=(2,)), Peak(2, 5.0, m, same_transits=(1, 3)),
             Peak(3, 5.0, m, same_transits=(2,)))
    results = {4: StarResult(4, 2000, 20, peaks=peaks)}
    rows = [dataclasses.replace(_candidate(4, 3 * P, ok=False), rank=1, snr=41.0),
            dataclasses.replace(_candidate(4, P), rank=2, snr=40.0),
            dataclasses.replace(_candidate(4, 1.3 * P), rank=3, snr=12.0)]
    ranked = _passed_first(rows, results)
    assert {c.rank: c.period for c in ranked} == {1: P, 2: 1.3 * P, 3: 3 * P}
    # the star's result is renumbered with it, so each sheet finds its own light curve
    assert [p.rank for p in results[4].peaks] == [1, 2, 3]
    assert [p.same_transits for p in results[4].peaks] == [(2, 3), (1,), (1,)]
    # when none passed, the strongest keeps rank 1
    failed = [dataclasses.replace(c, checks={"snr": False}) for c in rows]
    results = {4: StarResult(4, 2000, 20, peaks=peaks)}
    assert {c.rank: c.period for c in _passed_first(failed, results)} == {
        1: 3 * P, 2: P, 3: 1.3 * P}


def _red(rng: np.random.Generator, n: int, points: float) -> np.ndarray:
    """Unit-variance AR(1) noise correlated over ``points`` points."""
    a = np.exp(-1.0 / points)
    out: np.ndarray = lfilter([np.sqrt(1 - a * a)], [1.0, -a], rng.standard_normal(n))
    return out


def test_the_s_n_error_matches_its_scatter_over_noise_draws() -> None:
    # noise correlated over half an hour: beta is about 2.9, measured on about 150 windows,
    # so the S/N (about 16) scatters by more than 1 between draws, as snr_err says
    jd, _, _ = season_points(range(40))
    rng = np.random.default_rng(3)
    draws = [measure_transit(jd, 1.0 - 0.01 * _box(jd) + 0.003 * _red(rng, len(jd), 6.0),
                             np.full(len(jd), 0.003), P, EPOCH, DUR) for _ in range(200)]
    snr = np.array([m.snr for m in draws])
    err = np.array([m.snr_err for m in draws])
    assert snr.std() > 1.2
    assert snr.std() == pytest.approx(err.mean(), rel=0.15)
