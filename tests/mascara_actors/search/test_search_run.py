"""The search of a made-up season end to end (real calibrated files, two worker processes):
what it finds, what it writes, what it skips and why, and its two commands."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from mascara_actors.cli import main
from mascara_actors.lcsim.transits import TransitSpec
from mascara_actors.search.candidates import read_candidates
from mascara_actors.search.errors import SearchError
from mascara_actors.search.lightcurve import open_season
from mascara_actors.search.peaks import calibration_sidebands
from mascara_actors.search.run import SearchReport, search
from mascara_actors.search.settings import SearchSettings

from .synthetic import BLEND_PAIR, JD0, STARS, write_season

SETTINGS = SearchSettings(period_max=10.0)
PLANET = TransitSpec(hip=18687, period_d=3.474, epoch_jd=JD0 + 1.1, depth=0.013,
                     duration_h=3.6)
SHALLOW = TransitSpec(hip=18781, period_d=1.93, epoch_jd=JD0 + 0.4, depth=0.005,
                      duration_h=2.5)
# the bright member of the blend pair has the transit; its neighbour shows it diluted
BLENDED = TransitSpec(hip=BLEND_PAIR[0], period_d=4.41, epoch_jd=JD0 + 2.0, depth=0.02,
                      duration_h=3.0)
DILUTED = dataclasses.replace(BLENDED, hip=BLEND_PAIR[1], depth=0.004)
NAN_STAR, CONSTANT_STAR, FEW_STAR = 19087, 19197, 19205


def _edit(hip: int, rec: np.ndarray) -> np.ndarray:
    if hip == NAN_STAR:
        rec["mag"] = np.nan
    elif hip == CONSTANT_STAR:
        rec["mag"] = 7.0
    elif hip == FEW_STAR:
        rec = rec[:60]
    return rec


@dataclasses.dataclass
class Run:
    files: list[Path]
    report: SearchReport
    out: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("search")
    transits = {t.hip: t for t in (PLANET, SHALLOW, BLENDED, DILUTED)}
    # the season in two files, with three weeks between them; a third file of another camera
    files = [write_season(root / "calibrated_a.hdf5", nights=range(0, 20), transits=transits,
                          edit=_edit, seed=1),
             write_season(root / "calibrated_b.hdf5", nights=range(41, 61), transits=transits,
                          edit=_edit, seed=2),
             write_season(root / "calibrated_c.hdf5", nights=range(0, 20), camera="LPE")]
    out = root / "out"
    report = search(files, out, SETTINGS, sheets=3)
    return Run(files, report, out)


def _best(report: SearchReport, hip: int):  # type: ignore[no-untyped-def]
    rows = [c for c in report.candidates if c.hip == hip and c.rank == 1]
    assert rows, f"no peak for HIP {hip}"
    return rows[0]


def test_the_planets_are_found_at_their_periods_and_pass(run: Run) -> None:
    for t in (PLANET, SHALLOW):
        c = _best(run.report, t.hip)
        assert c.period == pytest.approx(t.period_d, rel=1e-3)
        assert abs(c.depth - t.depth) < 3 * c.depth_err + 0.1 * t.depth
        assert c.passed, {k: v for k, v in c.checks.items() if not v}
        # the epoch is a mid-transit (within 15 minutes)
        phase = (c.epoch - t.epoch_jd + t.period_d / 2) % t.period_d - t.period_d / 2
        assert abs(phase) < 0.25 / 24
    c = _best(run.report, PLANET.hip)
    assert 3.0 < 24 * c.duration < 4.2


def test_stars_without_a_transit_give_no_passed_candidate(run: Run) -> None:
    quiet = set(STARS) - {PLANET.hip, SHALLOW.hip, *BLEND_PAIR, NAN_STAR, CONSTANT_STAR,
                          FEW_STAR}
    assert not [c for c in run.report.passed if c.hip in quiet]
    assert {c.hip for c in run.report.passed} == {PLANET.hip, SHALLOW.hip, BLEND_PAIR[0]}


def test_a_blend_is_told_from_its_source(run: Run) -> None:
    source, victim = _best(run.report, BLEND_PAIR[0]), _best(run.report, BLEND_PAIR[1])
    assert victim.period == pytest.approx(BLENDED.period_d, rel=1e-3)
    assert not victim.checks["blend"]
    assert victim.blend_hip == BLEND_PAIR[0]
    assert victim.blend_snr > victim.snr
    assert source.checks["blend"]
    assert source.blend_hip == BLEND_PAIR[1]


def test_bad_input_is_skipped_and_reported(run: Run) -> None:
    r = run.report
    assert r.camera == "LPC"
    assert [(p.name, "camera LPE" in why) for p, why in r.skipped_files] == [
        ("calibrated_c.hdf5", True)]
    why = dict(r.skipped_stars)
    assert set(why) == {NAN_STAR, CONSTANT_STAR, FEW_STAR}
    assert why[NAN_STAR].startswith("0 good points")
    assert why[CONSTANT_STAR].startswith("constant")
    assert why[FEW_STAR].startswith("120 good points")  # 60 in each file
    assert r.searched == len(STARS) - 3
    doc = json.loads((run.out / "search.json").read_text())
    assert doc["searched"] == r.searched
    # each LPC file was calibrated alone over its 20 nights: the sidereal day leaks to
    # 1/Psid - 1/T, masked within the season's resolution
    days = open_season(run.files).file_days
    assert len(days) == 2
    assert all(18.5 < d < 20.0 for d in days)
    sidebands = doc["thresholds"]["sidebands"]
    assert sidebands == list(calibration_sidebands(days))
    assert all(1.04 < 1.0 / f < 1.06 for f in sidebands)
    assert doc["thresholds"]["sideband_width"] == pytest.approx(1.0 / r.baseline_days)
    assert {s["hip"] for s in doc["skipped_stars"]} == set(why)
    assert doc["skipped_files"][0]["file"].endswith("calibrated_c.hdf5")


def test_the_outputs_are_written(run: Run) -> None:
    rows = read_candidates(run.out / "candidates.csv")
    assert [c.hip for c in rows] == [c.hip for c in run.report.candidates]
    assert [c.sde for c in rows] == sorted((c.sde for c in rows), reverse=True)
    index = (run.out / "index.html").read_text()
    sheets = sorted(p.name for p in (run.out / "sheets").iterdir())
    # every passed candidate and the 3 most significant others
    assert len(sheets) == len(run.report.passed) + min(3, len(rows) - len(run.report.passed))
    for name in sheets:
        assert f"sheets/{name}" in index
    assert (run.out / "candidates.hdf5").stat().st_size > 0


def test_nothing_to_search_is_a_clear_error(tmp_path: Path, run: Run) -> None:
    with pytest.raises(SearchError, match="no calibrated light-curve file could be read"):
        search([tmp_path / "missing.hdf5"], tmp_path / "o", SETTINGS)
    with pytest.raises(SearchError, match="none of the stars"):
        search(run.files[:1], tmp_path / "o", SETTINGS, stars=[1])


def test_the_search_command(run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                            ) -> None:
    out = tmp_path / "cli"
    code = main(["search", str(run.files[0]), str(run.files[1]), "--out", str(out),
                 "--periods", "1", "10", "--workers", "1", "--sheets", "0",
                 "--stars", f"{PLANET.hip},{NAN_STAR}"])
    err = capsys.readouterr().err
    assert code == 0
    assert "searched 1 of 2 stars" in err
    assert "1 too few points" in err
    assert str(PLANET.hip) in err
    assert read_candidates(out / "candidates.csv")[0].hip == PLANET.hip
    code = main(["search", str(run.files[0]), "--out", str(out), "--periods", "5", "1"])
    assert code == 2
    assert "periods 5 to 1 d" in capsys.readouterr().err
    # 20 nights: a 20-day period cannot be seen twice
    code = main(["search", str(run.files[0]), "--out", str(out)])
    assert code == 2
    assert "no transit would be seen twice" in capsys.readouterr().err


def test_the_inject_recover_command(run: Run, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ir"
    quiet = [h for h in STARS if h not in (PLANET.hip, SHALLOW.hip, *BLEND_PAIR, NAN_STAR,
                                           CONSTANT_STAR, FEW_STAR)]
    code = main(["inject-recover", str(run.files[0]), str(run.files[1]), "--out", str(out),
                 "--periods", "1", "10", "--depths", "2,1", "--stars", str(len(quiet)),
                 "--seed", "3"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((out / "recovery.json").read_text())
    # 3 mmag per point: 2 % and 1 % transits are found
    assert doc["fractions"]["0.02"] >= 0.75
    assert doc["fractions"]["0.01"] >= 0.5
    assert doc["talens_2018"]["0.01"] == 0.605
    rows = (out / "recovery.csv").read_text().splitlines()
    assert len(rows) == 1 + doc["injected"]
    assert (out / "recovery.png").stat().st_size > 10_000
    table = (out / "recovery_table.csv").read_text().splitlines()
    assert table[0].startswith("depth,period_from")
    assert sum(int(r.split(",")[3]) for r in table[1:]) == doc["injected"]
