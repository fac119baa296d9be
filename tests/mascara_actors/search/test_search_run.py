"""The search of a made-up season end to end (real calibrated files, two worker processes):
what it finds, what it writes, what it skips and why, and its two commands."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mascara_actors.cli import main
from mascara_actors.lcsim.transits import TransitSpec
from mascara_actors.search.candidates import read_candidates
from mascara_actors.search.errors import SearchError
from mascara_actors.search.lightcurve import open_season, read_points
from mascara_actors.search.peaks import calibration_sidebands
from mascara_actors.search.run import SearchReport, search
from mascara_actors.search.settings import SearchSettings
from mascara_actors.storage.calibrated import CalibratedFile

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


@dataclasses.dataclass
class Rerun:
    report: SearchReport
    out: Path


@pytest.fixture(scope="module")
def victim_alone(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Rerun:
    """The diluted member of the blend pair searched alone (``stars``), into a copy of the
    whole search's output directory (its sheets, and two files that are not sheets)."""
    out = tmp_path_factory.mktemp("rerun") / "out"
    shutil.copytree(run.out, out)
    (out / "sheets" / "notes.txt").write_text("mine")
    shutil.copy(next((out / "sheets").glob("HIP*.png")), out / "sheets" / "HIP1_1.png.orig")
    report = search(run.files, out, dataclasses.replace(SETTINGS, workers=1), sheets=1,
                    stars=[BLEND_PAIR[1]])
    return Rerun(report, out)


def test_a_blend_is_told_when_the_victim_is_searched_alone(run: Run, victim_alone: Rerun
                                                           ) -> None:
    # the source is not searched, but it is in the files: it is measured as a neighbour
    alone, together = _best(victim_alone.report, BLEND_PAIR[1]), _best(run.report,
                                                                       BLEND_PAIR[1])
    assert victim_alone.report.searched == 1
    assert alone.period == pytest.approx(together.period, rel=1e-6)
    assert not alone.checks["blend"]
    assert (alone.blend_hip, alone.passed) == (together.blend_hip, together.passed) \
        == (BLEND_PAIR[0], False)
    assert alone.blend_snr == pytest.approx(together.blend_snr, rel=1e-6)


def test_a_search_into_an_earlier_one_leaves_only_its_own_sheets(run: Run,
                                                                  victim_alone: Rerun) -> None:
    # the earlier search drew the sheets of other stars too
    before = {p.name for p in (run.out / "sheets").iterdir()}
    assert {n for n in before if not n.startswith(f"HIP{BLEND_PAIR[1]}_")}
    left = {p.name for p in (victim_alone.out / "sheets").iterdir()}
    sheets = {n for n in left if n.endswith(".png")}
    # the sheets this search drew (of the victim's peaks), as the index links them
    assert len(sheets) == victim_alone.report.sheets >= 1
    assert all(re.fullmatch(rf"HIP{BLEND_PAIR[1]}_\d\.png", n) for n in sheets)
    index = (victim_alone.out / "index.html").read_text()
    assert set(re.findall(r"sheets/(HIP\d+_\d+\.png)", index)) == left - {
        "notes.txt", "HIP1_1.png.orig"}
    # files not named as sheets are the user's
    assert left - {n for n in left if n.endswith(".png")} == {"notes.txt", "HIP1_1.png.orig"}


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


def test_no_readable_file_gives_each_file_s_reason(tmp_path: Path) -> None:
    (tmp_path / "junk.hdf5").write_text("not hdf5")
    files = [tmp_path / "missing.hdf5", tmp_path / "junk.hdf5",
             *(tmp_path / f"gone{k}.hdf5" for k in range(3))]
    with pytest.raises(SearchError) as err:
        search(files, tmp_path / "o", SETTINGS)
    text = str(err.value)
    assert text.startswith("no calibrated light-curve file could be read")
    assert re.search(r"missing\.hdf5: cannot be read: .*No such file", text)
    assert re.search(r"junk\.hdf5: cannot be read: .*file signature not found", text)
    assert "gone0.hdf5: cannot be read" in text
    # the first three, then a count
    assert "gone1" not in text
    assert text.endswith("; and 2 more files that cannot be read")


def _without_lst(hip: int, rec: np.ndarray) -> np.ndarray:
    """A damaged light curve: the LST column is missing."""
    if hip == STARS[1]:
        names = [n for n in rec.dtype.names or () if n != "lst"]
        return np.asarray(rec[names].copy())
    return rec


def test_a_star_that_fails_is_named_and_the_rest_of_its_chunk_searched(tmp_path: Path
                                                                        ) -> None:
    path = write_season(tmp_path / "calibrated.hdf5", nights=range(12), stars=STARS[:8],
                        edit=_without_lst)
    with CalibratedFile(path) as f:
        assert "lst" not in (f.lightcurve(STARS[1]).dtype.names or ())
    # one process: chunks of 2 stars, the damaged one with STARS[0]
    report = search([path], tmp_path / "o", SearchSettings(period_max=5.0, workers=1),
                    sheets=0)
    assert report.skipped_stars == ((STARS[1], "search failed: ValueError: no field of name "
                                                "lst"),)
    assert report.searched == 7
    assert report.results[STARS[0]].npoints == 12 * 108
    assert report.results[STARS[0]].skipped is None


def test_a_neighbour_that_cannot_be_measured_is_said(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The blend check of a candidate whose neighbour cannot be measured is not done: the
    search says so (it once passed such candidates in silence)."""
    def edit(hip: int, rec: np.ndarray) -> np.ndarray:
        if hip != BLEND_PAIR[0]:
            return rec
        return np.asarray(rec[[n for n in rec.dtype.names or () if n != "lst"]].copy())

    transits = {t.hip: t for t in (BLENDED, DILUTED)}
    path = write_season(tmp_path / "calibrated.hdf5", nights=range(30), stars=BLEND_PAIR,
                        transits=transits, edit=edit)
    with caplog.at_level("WARNING", "mascara_actors.search"):
        report = search([path], tmp_path / "o", SearchSettings(period_max=10.0, workers=1),
                        sheets=0, stars=[BLEND_PAIR[1]])
    best = _best(report, BLEND_PAIR[1])
    assert best.period == pytest.approx(DILUTED.period_d, rel=1e-3)
    assert best.blend_hip == 0
    said = [r.getMessage() for r in caplog.records if "blend check" in r.getMessage()]
    assert len(said) == 1
    assert said[0].startswith(f"the blend check could not measure the neighbours HIP "
                              f"{BLEND_PAIR[0]} (ValueError: no field of name lst)")


def test_a_point_without_lst_is_dropped(tmp_path: Path) -> None:
    def edit(hip: int, rec: np.ndarray) -> np.ndarray:
        rec["lst"][[5, 100]] = np.nan
        return rec

    path = write_season(tmp_path / "calibrated.hdf5", nights=range(3), stars=STARS[:1],
                        edit=edit)
    with CalibratedFile(path) as f:
        pts = read_points([f], STARS[0], 50)
    assert len(pts) == 3 * 108 - 2
    assert np.isfinite(pts.lst).all()


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
