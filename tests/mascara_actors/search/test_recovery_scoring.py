"""The scoring of injection-recovery on a season with a gap: transits already in the light
curves (as a simulated season has them) are scored once, at their own depth, and the stars
seen on the files' nights count although the files are weeks apart."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from mascara_actors.lcsim.transits import TransitSpec
from mascara_actors.search.injection import Recovery, inject_recover, recovery_of
from mascara_actors.search.lightcurve import SeasonInputs
from mascara_actors.search.run import SearchReport
from mascara_actors.search.settings import SearchSettings
from mascara_actors.search.star import StarResult
from mascara_actors.sidereal import SLOTS_PER_SIDEREAL_DAY

from .synthetic import JD0, STARS, write_season

INJECTED = tuple(TransitSpec(hip=h, period_d=p, epoch_jd=JD0 + 0.3, depth=0.02, duration_h=3.0)
                 for h, p in zip(STARS[:3], (1.7, 2.9, 3.6), strict=True))
NULL = STARS[3]


@dataclasses.dataclass
class Scored:
    rec: Recovery
    out: Path


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Scored:
    """Two files of 15 nights, 60 days apart (75 days from first to last night, 32 nights
    with data per star), with the transits written into them, scored without injecting."""
    root = tmp_path_factory.mktemp("recovery")
    stars = [t.hip for t in INJECTED] + [NULL]
    transits = {t.hip: t for t in INJECTED}
    files = [write_season(root / "calibrated_a.hdf5", nights=range(0, 15), stars=stars,
                          transits=transits, seed=1),
             write_season(root / "calibrated_b.hdf5", nights=range(60, 75), stars=stars,
                          transits=transits, seed=2)]
    out = root / "ir"
    rec = inject_recover(files, out, INJECTED, null_stars=[NULL], in_files=True,
                         settings=SearchSettings(period_max=10.0, workers=1))
    return Scored(rec, out)


def test_transits_in_the_files_are_found_at_their_depth_not_twice_it(scored: Scored) -> None:
    assert len(scored.rec.found) == len(INJECTED)
    for t, c in zip(scored.rec.injected, scored.rec.found, strict=True):
        assert c is not None, t
        assert c.period == pytest.approx(t.period_d, rel=1e-3)
        # injected twice, the depth was 0.038-0.040
        assert c.depth == pytest.approx(t.depth, abs=3 * c.depth_err + 0.1 * t.depth)
    assert scored.rec.recovered.all()


def test_a_season_with_a_gap_is_scored_on_its_files_nights(scored: Scored) -> None:
    report = scored.rec.search
    assert report.baseline_days > 70
    assert report.nights == 30  # the weeks between the files do not count
    assert {report.results[t.hip].nights for t in INJECTED} == {32}
    assert [t.hip for t in scored.rec.injected] == [t.hip for t in INJECTED]
    assert scored.rec.null_stars == 1
    doc = json.loads((scored.out / "recovery.json").read_text())
    assert doc["injected"] == 3
    assert doc["recovered"] == 3
    assert doc["fractions"] == {"0.02": 1.0}


def test_stars_seen_on_too_few_nights_are_left_out_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    # files spanning 32 nights over 120 days; star 3 seen on 10 of them
    injected = [TransitSpec(h, 2.0, JD0, 0.01, 3.0) for h in (1, 2, 3)]
    results = {1: StarResult(1, 3000, 32), 2: StarResult(2, 2900, 31),
               3: StarResult(3, 900, 10), 4: StarResult(4, 3000, 32)}
    report = SearchReport(Path("."), "LPC", (), (), 4, (), (), 0, 1.0, 120.0, results, 32)
    with caplog.at_level(logging.WARNING, logger="mascara_actors.search.injection"):
        rec = recovery_of(injected, report, [1, 2, 3, 4])
    assert [t.hip for t in rec.injected] == [1, 2]
    assert rec.null_stars == 1
    assert ["1 of 3 injected transits are not scored" in m for m in caplog.messages] == [True]
    assert "the season's 32 nights" in caplog.messages[0]


def test_the_nights_of_a_season_are_those_its_files_span() -> None:
    day = SLOTS_PER_SIDEREAL_DAY
    start = 65_000_000

    def nights(*spans: tuple[float, float]) -> int:
        files = tuple((start + int(a * day), start + int(b * day)) for a, b in spans)
        return SeasonInputs("LPC", (), (), np.zeros(0), (files[0][0], files[-1][1]),
                            file_spans=files).nights

    assert nights((0, 14.4)) == 15  # 15 nights, the first evening to the last morning
    assert nights((0, 14.4), (15.0, 29.4)) == 30  # the next night: one stretch
    assert nights((0, 14.4), (10.0, 29.4)) == 30  # overlapping files: a night counts once
    assert nights((0, 14.4), (60.0, 74.4)) == 30  # two months apart: the gap does not count
