"""The simulated season of the transit search (issue 19): what :func:`simulate_season`
writes, checked against the simulator's truth file, and :func:`draw_injections`.

Every test that uses the session fixture ``season`` (about 2.5 minutes on two cores, plus a
minute of search) is in this file and marked ``season``: `make test-season` runs them, `make
test` leaves them out to keep the suite within its 12 minutes; the others need no
simulation.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mascara_actors.errors import ConfigError
from mascara_actors.lcsim import TransitSpec, Truth, read_truth
from mascara_actors.search.injection import TALENS_2018, Recovery, recovery_of
from mascara_actors.search.run import search
from mascara_actors.search.season import baseline_runs, draw_injections, simulate_season
from mascara_actors.sidereal import SET_SIZE, slot_length_solar_s
from mascara_actors.storage.calibrated import CalibratedFile

from .conftest import MASCARA_2B, SEASON, SETTINGS, InjectedSeason

# the fixture takes minutes, and the first test that asks for it pays for them
long_timeout = pytest.mark.timeout(1200)

HALF_BIN_D = 0.5 * SET_SIZE * slot_length_solar_s() / 86400.0
"""Half a set of 50 exposures, days: a bin's points span its mid-time +- this."""


@pytest.fixture(scope="module")
def truth(season: InjectedSeason) -> Truth:
    return read_truth(season.season.truth)


def _nights_of(path: Path) -> list[str]:
    with CalibratedFile(path) as cf:
        return [n.decode() if isinstance(n, bytes) else str(n) for n in cf.header["nights"]]


# ---- the season ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.season
@long_timeout
def test_the_calibrated_files_cover_the_nights_in_time_order(season: InjectedSeason,
                                                             truth: Truth) -> None:
    files = season.season.calibrated
    assert len(files) == 4  # 60 nights by baselines of 15
    nights = [_nights_of(f) for f in files]
    assert [len(n) for n in nights] == [15, 15, 15, 15]
    assert list(itertools.chain(*nights)) == truth.nights["night"].tolist()
    assert list(itertools.chain(*nights)) == list(season.plan.nights)
    spans = []
    for path in files:
        with CalibratedFile(path) as cf:
            jd = np.concatenate([cf.lightcurve(int(i))["jd"] for i in cf.ids()])
        spans.append((jd.min(), jd.max()))
    # each file's points end before the next one's begin: no set is calibrated twice
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert end < begin
    # the nightly files and baselines (GB) were deleted as soon as they were used
    made = season.root / "season"
    assert {p.relative_to(made).parts[0] for p in made.rglob("*.hdf5")} == {"calibrated"}
    assert (made / "nights" / "truth_LPC.fits").is_file()


@pytest.mark.slow
@pytest.mark.season
@long_timeout
def test_every_simulated_star_with_enough_points_appears(season: InjectedSeason,
                                                         truth: Truth) -> None:
    """Per baseline, from the truth alone: a star with >= 1,000 unflagged points (ten times
    the calibration's minimum of good points, room for the points it drops below S/N 10
    or under thick clouds), fainter than the saturation of the simulated photometry and
    in a sky patch with at least ``min_cloud_stars`` such stars (the clouds of a patch are
    measured from its other stars) is calibrated, with binned points."""
    ts, noise = truth.stars, truth.noise
    # V whose peak pixel saturates at the centre of the field, at the zenith, clear
    v_sat = 8.4 - 2.5 * math.log10(noise.saturation_adu * noise.gain
                                   / (noise.peak_fraction * noise.flux_v84_e))
    assert set(ts["id"].tolist()) == set(season.season.stars)
    night_index = {n: k for k, n in enumerate(truth.nights["night"].tolist())}
    for path in season.season.calibrated:
        cols = [night_index[n] for n in _nights_of(path)]
        enough = ts["npoints"][:, cols].sum(axis=1) >= 1000
        _, inverse = np.unique(ts["patch"], return_inverse=True)
        neighbours = np.bincount(inverse, weights=enough)[inverse]
        expected = enough & (ts["vmag"] > v_sat + 0.1) & (neighbours >= SETTINGS.min_cloud_stars)
        with CalibratedFile(path) as cf:
            ids = cf.ids()
            nbins = cf.stars["nbins"]
        missing = sorted(set(ts["id"][expected].tolist()) - set(ids.tolist()))
        assert not missing, f"{path.name}: stars {missing} have enough points but are absent"
        assert set(ids.tolist()) <= set(ts["id"].tolist())
        assert np.all(nbins > 0)
        assert expected.sum() >= 200  # most of the 400 stars: the test is not vacuous


@pytest.mark.slow
@pytest.mark.season
@long_timeout
def test_each_baseline_converged_and_quiet_stars_reach_their_noise(season: InjectedSeason,
                                                                   truth: Truth) -> None:
    """The calibration of each baseline converged, and the clear full bins of the quiet
    stars of V 7-8 (no transit, not variable) scatter about as the noise the simulator put
    into those very bins: the median star within 15 % of it (issue 18's limit; 1.08-1.11
    here), all of them pooled within 20 % (1.09-1.11 here). The pooled figure is allowed
    more than issue 18's full star density: with about 10 stars a patch, the clouds a
    point is corrected by come from about 9 others, which alone adds sqrt(1 + 1/9) = 1.05,
    and one star with a poor fit weighs on a pool of 40."""
    ts = truth.stars
    overcast = truth.nights[truth.nights["weather"] == "overcast"]
    for path in season.season.calibrated:
        (report,) = path.parent.glob("report_*.json")
        assert json.loads(report.read_text())["status"] == "converged"
        cal_var, floor_var = [], []
        with CalibratedFile(path) as cf:
            ids = cf.ids()
            k = truth.star_index(ids)
            quiet = (k >= 0) & (ts["var_amp"][k] == 0) & (ts["transit"][k] == 0) \
                & (ts["vmag"][k] >= 7.0) & (ts["vmag"][k] < 8.0)
            for hip in ids[quiet].tolist():
                lc = cf.lightcurve(hip)
                first = lc["setidx"].astype(np.int64) * SET_SIZE
                ok = (lc["cflag"] == 0) & (lc["nobs"] >= 45)
                for row in overcast:
                    ok &= ~((first >= row["lstseq0"]) & (first < row["lstseq0"] + row["nexp"]))
                if ok.sum() < 20:
                    continue
                _, var = truth.set_noise(hip, lc["setidx"][ok].astype(np.int64), 0)
                cal_var.append(np.var(lc["mag"][ok].astype(float), ddof=1))
                floor_var.append(np.mean(var / lc["nobs"][ok]))
        pooled = math.sqrt(np.mean(cal_var) / np.mean(floor_var))
        median = float(np.median(np.sqrt(np.array(cal_var) / np.array(floor_var))))
        print(f"\n{path.parent.name}: {len(cal_var)} quiet stars at {pooled:.3f} x their "
              f"noise (median star {median:.3f})")
        assert len(cal_var) >= 20
        assert median <= 1.15
        assert pooled <= 1.20


@pytest.mark.slow
@pytest.mark.season
@long_timeout
def test_the_season_holds_what_was_injected(season: InjectedSeason, truth: Truth) -> None:
    s = season.season
    assert s.stars == tuple(season.plan.stars["hip"].tolist())
    assert set(s.transits) == set(season.injected)
    with_transit = {t.hip for t in s.transits}
    assert len(with_transit) == len(s.stars) // 2
    assert with_transit.isdisjoint(season.without)
    assert with_transit | season.without == set(s.stars)
    # a transit star is never also a variable; the variables are the simulator's own
    assert s.variables
    assert s.variables.isdisjoint(with_transit)
    assert s.variables == season.plan.variables - with_transit
    assert s.variables == set(truth.stars["id"][truth.stars["var_amp"] > 0].tolist())


@pytest.mark.slow
@pytest.mark.season
@long_timeout
def test_one_star_has_mascara_2bs_transit(season: InjectedSeason) -> None:
    (m2b,) = [t for t in season.season.transits if t.hip == season.mascara_2b]
    assert (m2b.period_d, m2b.depth, m2b.duration_h) == (
        MASCARA_2B.period_d, MASCARA_2B.depth, MASCARA_2B.duration_h)
    assert season.plan.start_jd <= m2b.epoch_jd < season.plan.start_jd + m2b.period_d
    vmag = season.plan.stars["vmag"][season.plan.stars["hip"] == season.mascara_2b][0]
    # the closest well-observed star (V 7.70 with these seeds): scintillation (1.3 % a point)
    # outweighs the photon noise at V 7.6, so 0.15 mag changes a bin's noise by 3 % at most
    assert abs(vmag - MASCARA_2B.vmag) <= 0.15
    nbins = 0
    for path in season.season.calibrated:
        with CalibratedFile(path) as cf:
            nbins += len(cf.lightcurve(season.mascara_2b))
    # the best observed stars have about 30 bins a night; the median star a sixth of that
    assert nbins >= 20 * len(season.plan.nights)


def _in_and_out(lc: np.ndarray, transit: TransitSpec) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes of the unflagged bins wholly in the flat bottom of the transit, and of
    those at least an hour from any transit, less the median of the latter."""
    ok = lc["cflag"] == 0
    jd, full = lc["jd"], transit.dimming_mag(np.array([transit.epoch_jd]))[0]
    inside = ok & (np.minimum(transit.dimming_mag(jd - HALF_BIN_D),
                              transit.dimming_mag(jd + HALF_BIN_D)) >= full)
    margin = HALF_BIN_D + 1.0 / 24
    outside = ok & (np.maximum(transit.dimming_mag(jd - margin),
                               transit.dimming_mag(jd + margin)) == 0) \
        & (transit.dimming_mag(jd) == 0)
    zero = np.median(lc["mag"][outside]) if outside.any() else np.nan
    return lc["mag"][inside] - zero, lc["mag"][outside] - zero


@pytest.mark.slow
@pytest.mark.season
@long_timeout
def test_a_two_percent_transit_is_in_the_calibrated_magnitudes(season: InjectedSeason) -> None:
    """The 2 % transit star with the most bins in transit: its calibrated magnitude in the
    flat bottom is fainter than out of transit by the injected dimming, -2.5 log10(0.98) =
    0.0219 mag. Each baseline's magnitudes are taken from its own out-of-transit median
    (each calibration fits its own star magnitude). Tolerance: 4 sigma of the difference,
    from the bins' own scatter, plus 10 % of the depth, what the calibration may take out
    of a transit (issue 18 accepts 0.9-1.1 of the injected depth)."""
    best: tuple[int, TransitSpec, np.ndarray, np.ndarray] | None = None
    for transit in season.season.transits:
        if transit.depth != 0.02:
            continue
        ins, outs = [], []
        for path in season.season.calibrated:
            with CalibratedFile(path) as cf:
                if transit.hip not in cf.ids():
                    continue
                i, o = _in_and_out(cf.lightcurve(transit.hip), transit)
            if len(o) >= 10:
                ins.append(i)
                outs.append(o)
        if ins and (best is None or sum(map(len, ins)) > best[0]):
            best = (sum(map(len, ins)), transit, np.concatenate(ins), np.concatenate(outs))
    assert best is not None
    n, transit, inside, outside = best
    assert n >= 50, "too few bins in transit to measure the depth"
    injected = float(transit.dimming_mag(np.array([transit.epoch_jd]))[0])
    assert injected == pytest.approx(0.02194, abs=1e-5)
    measured = float(inside.mean() - np.median(outside))
    # the standard error of a median is 1.25 that of a mean
    sigma = math.hypot(inside.std(ddof=1) / math.sqrt(len(inside)),
                       1.25 * outside.std(ddof=1) / math.sqrt(len(outside)))
    tolerance = 4 * sigma + 0.1 * injected
    print(f"\nHIP {transit.hip}: {measured * 1e3:.2f} mmag in {n} bins, injected "
          f"{injected * 1e3:.2f} mmag, tolerance {tolerance * 1e3:.2f} mmag")
    assert measured == pytest.approx(injected, abs=tolerance)
    assert tolerance < 0.005  # the test would not tell a 2 % transit from half of one


# ---- draw_injections and the checks (no simulation) -----------------------------------


def test_draw_injections_shares_the_depths_and_keeps_the_ranges() -> None:
    hips = list(range(1000, 1300))
    start = 2461049.25
    drawn = draw_injections(hips, start_jd=start, seed=5)
    assert [t.hip for t in drawn] == hips
    depths = [t.depth for t in drawn]
    assert {d: depths.count(d) for d in set(depths)} == {0.02: 100, 0.01: 100, 0.005: 100}
    period = np.array([t.period_d for t in drawn])
    assert np.all((period >= 1.0) & (period <= 5.0))
    # log-uniform: as many periods below the geometric middle as above it
    assert abs(np.count_nonzero(period < math.sqrt(5.0)) - 150) < 40
    duration = np.array([t.duration_h for t in drawn])
    assert np.all((duration >= 2.0) & (duration <= 4.0))
    epoch = np.array([t.epoch_jd for t in drawn])
    assert np.all((epoch >= start) & (epoch < start + period))
    assert draw_injections(hips, start_jd=start, seed=5) == drawn
    assert draw_injections(hips, start_jd=start, seed=6) != drawn


def test_draw_injections_rejects_nonsense() -> None:
    with pytest.raises(ConfigError, match="twice"):
        draw_injections([1, 2, 1], start_jd=0.0, seed=1)
    with pytest.raises(ConfigError, match="depths"):
        draw_injections([1], depths=(1.5,), start_jd=0.0, seed=1)
    with pytest.raises(ConfigError, match="periods"):
        draw_injections([1], periods=(5.0, 1.0), start_jd=0.0, seed=1)


def test_nights_are_grouped_into_baselines_of_at_least_five() -> None:
    assert [len(r) for r in baseline_runs(60, 15)] == [15, 15, 15, 15]
    assert [len(r) for r in baseline_runs(63, 15)] == [15, 15, 15, 18]
    assert [len(r) for r in baseline_runs(65, 15)] == [15, 15, 15, 15, 5]
    assert [len(r) for r in baseline_runs(7, 15)] == [7]
    runs = baseline_runs(47, 10)
    assert [n for r in runs for n in r] == list(range(47))


@pytest.mark.parametrize(("change", "words"), [
    ({"nights": 0}, "nights=0"),
    ({"nights": 4}, "at least 5"),
    ({"baseline_nights": 4}, "baseline_nights=4"),
    ({"workers": 0}, "workers=0"),
    ({"every_set": 0}, "every_set=0"),
    ({"dec_range": (31.0, 29.0)}, "dec_range"),
    ({"transits": (TransitSpec(1, 3.0, 0.0, 0.01, 2.0), TransitSpec(1, 2.0, 0.0, 0.01, 2.0))},
     "more than one transit"),
])
def test_simulate_season_rejects_nonsense_before_simulating(
        tmp_path: Path, change: dict[str, object], words: str) -> None:
    args: dict[str, object] = {**dataclasses.asdict(SEASON), **change}
    with pytest.raises(ConfigError, match=words):
        simulate_season(tmp_path / "out", **args)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()



# --- issue 19's Done-when on this season: the search of its calibrated light curves


@pytest.fixture(scope="module")
def searched(season: InjectedSeason, tmp_path_factory: pytest.TempPathFactory) -> Recovery:
    """The season searched once, on two workers, and scored against what was injected
    (the MASCARA-2b-like transit apart: it is not one of the random ones)."""
    report = search(season.season.calibrated, tmp_path_factory.mktemp("season-search"),
                    sheets=0)
    random = [t for t in season.injected if t.hip != season.mascara_2b]
    others = [h for h in season.plan.stars["hip"].tolist() if h != season.mascara_2b]
    rec = recovery_of(random, report, others)
    print("\nrecovered " + ", ".join(
        f"{100 * d:g} %: {rec.fraction(d):.2f} (exact {rec.fraction(d, exact=True):.2f}, "
        f"{sum(1 for t in rec.injected if t.depth == d)} transits)" for d in rec.depths)
        + f"; false {len(rec.false)} in {rec.null_stars} stars; {report.seconds:.0f} s")
    return rec


@pytest.mark.slow
@pytest.mark.season
@long_timeout
def test_mascara_2b_is_the_top_candidate_of_its_star(season: InjectedSeason,
                                                      searched: Recovery) -> None:
    mine = [c for c in searched.search.candidates if c.hip == season.mascara_2b]
    assert mine, "no peak kept for the MASCARA-2b-like star"
    top = min(mine, key=lambda c: c.rank)
    assert top.passed, {k: v for k, v in top.checks.items() if not v}
    assert top.period == pytest.approx(MASCARA_2B.period_d, rel=1e-3)
    assert top.depth == pytest.approx(MASCARA_2B.depth, rel=0.2)
    assert 0.8 * MASCARA_2B.duration_h < 24 * top.duration < 1.2 * MASCARA_2B.duration_h


@pytest.mark.slow
@pytest.mark.season
@long_timeout
def test_no_star_without_a_transit_gives_a_candidate(searched: Recovery) -> None:
    # issue 19: at most one per 1,000 stars; on this season's stars without a transit, none
    assert searched.null_stars >= 50
    assert [(c.hip, c.period, c.snr) for c in searched.false] == []


@pytest.mark.slow
@pytest.mark.season
@long_timeout
def test_the_recovered_fractions_per_depth(searched: Recovery) -> None:
    # Talens et al. 2018: 84.0, 60.5 and 20.7 % at 2, 1 and 0.5 %; on this season 0.83
    # (25 of 30), 0.78 and 0.40. About 30 transits a depth know a fraction to 7 %, one
    # transit is 3 %: at 2 %, where Talens is highest, the season is asked to be within two
    # standard errors of Talens; the 1 % and 0.5 % bins beat it outright. "Beats Talens in
    # every bin" is the benchmark's, on 230 transits a depth (the band season: 0.852, 0.801
    # and 0.640; bench/bench_search.py).
    for depth, talens in TALENS_2018.items():
        n = sum(1 for t in searched.injected if t.depth == depth)
        assert n >= 25, depth
        assert searched.fraction(depth) > talens - 2 * math.sqrt(talens * (1 - talens) / n)
    assert searched.fraction(0.01) > TALENS_2018[0.01]
    assert searched.fraction(0.005) > TALENS_2018[0.005]
    # at the period itself, without the harmonics and aliases: 0.77, 0.72 and 0.37
    assert searched.fraction(0.02, exact=True) >= 0.7
    assert searched.fraction(0.01, exact=True) > TALENS_2018[0.01]


@pytest.mark.slow
@pytest.mark.season
@long_timeout
def test_a_candidates_aliases_are_its_stars_passed_peaks_on_the_same_transits(
        searched: Recovery) -> None:
    """Every alias a candidate names is the period of another passed peak of its star, of
    S/N within the larger of their standard errors."""
    rows = searched.search.candidates
    named = 0
    for c in rows:
        for period in c.alias_periods:
            (other,) = [o for o in rows if o.hip == c.hip and o.rank != c.rank
                        and abs(o.period - period) < 1e-5]
            assert other.passed
            assert abs(other.snr - c.snr) < max(other.snr_err, c.snr_err)
            assert 1.0 <= c.snr_err < 0.5 * c.snr
            named += 1
    # the season's deep transits give several such families: the test is not vacuous
    assert named >= 5
