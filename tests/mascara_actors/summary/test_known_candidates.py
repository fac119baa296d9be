"""Issue 19, item 5: the night summary lists the known transit candidates the night observed,
with their transits that night, from the candidates file named in the configuration."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.time import Time

from mascara_actors.config import default_config_dir
from mascara_actors.search.candidates import Candidate, write_candidates
from mascara_actors.storage import NightFile
from mascara_actors.summary import collect_summary, render_html, render_text, summarise_night
from mascara_actors.summary.html import CANDIDATES_TITLE, summary_rows

PERIOD = 3.1
"""Days: much longer than the replay night, so one transit at most falls in it."""


class _Ids(HTMLParser):
    """Text of every element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        key = dict(attrs).get("id")
        self._open.append(key)
        if key:
            self.values[key] = ""

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for key in self._open:
            if key:
                self.values[key] += data


def _ids(html: str) -> dict[str, str]:
    p = _Ids()
    p.feed(html)
    return p.values


def _candidate(hip: int, *, epoch: float, duration: float, sde: float,
               passed: bool = True) -> Candidate:
    return Candidate(
        hip=hip, camera="LPC", vmag=5.123, sptype="G", ra=10.0, dec=20.0, rank=1,
        period=PERIOD, epoch=epoch, duration=duration, depth=0.0123, depth_err=0.001,
        sde=sde, snr=12.0, npoints=500, ntransits=4, in_transit_fraction=0.02,
        odd_even_sigma=0.5, secondary_depth=0.0, secondary_sigma=0.3, ellipsoidal_amp=0.0,
        ellipsoidal_sigma=0.3, single_night_fraction=0.2, anti_transit_ratio=5.0,
        red_noise=1.0, blend_hip=0, blend_snr=0.0,
        checks={"sde": True, "odd_even": passed})


def _utc_second(jd: float) -> datetime:
    """JD (UTC) to the nearest second, by astropy."""
    t: datetime = Time(jd, format="jd", scale="utc").to_datetime(timezone=UTC)
    return (t + timedelta(microseconds=500_000)).replace(microsecond=0)


@dataclass(frozen=True)
class _Night:
    ids: list[int]
    """HIP numbers in the nightly file."""
    t0: float
    """First exposure start, JD (UTC)."""
    t1: float
    """Last exposure end."""
    jdmid: dict[int, np.ndarray]
    """Mid-exposure times of the points of the first three stars."""
    absent: int
    """A HIP not in the night."""


@pytest.fixture(scope="module")
def night(replay_night: Path) -> _Night:
    """The replay night's observed span, stars and the times of their points, read here
    directly from the nightly file."""
    with NightFile(next((replay_night / "lightcurves").glob("fast_*.hdf5"))) as nf:
        station = nf.station
        ids = [int(h) for h in nf.ids()]
        t0 = float(station["jd"].min())
        t1 = float((station["jd"] + station["exptime"] / 86400.0).max())
        jdmid = {h: nf.lightcurve(h, ["jdmid"])["jdmid"] for h in ids[:3]}
    absent = next(h for h in range(1, 100_000) if h not in ids)
    return _Night(ids=ids, t0=t0, t1=t1, jdmid=jdmid, absent=absent)


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "config"
    shutil.copytree(default_config_dir(), dst)
    return dst


def _set_candidates(cfg_dir: Path, value: str) -> None:
    path = cfg_dir / "reduction.toml"
    text = path.read_text()
    assert 'candidates = ""' in text
    path.write_text(text.replace('candidates = ""', f'candidates = "{value}"', 1))


def test_observed_candidates_with_their_transit_window(
        replay_night: Path, night: _Night, cfg_dir: Path, tmp_path: Path) -> None:
    t0, t1, jdmid = night.t0, night.t1, night.jdmid
    hip_transit, hip_no_transit, hip_failed = night.ids[:3]
    mid = t0 + 0.4 * (t1 - t0)
    duration = 0.3 * (t1 - t0)
    rows = [
        # seven periods before the night, so the ephemeris (not the epoch) puts it inside
        _candidate(hip_transit, epoch=mid - 7 * PERIOD, duration=duration, sde=20.0),
        # half a period away: the star is observed, its transits are not
        _candidate(hip_no_transit, epoch=mid + PERIOD / 2, duration=duration, sde=15.0),
        _candidate(hip_failed, epoch=mid, duration=duration, sde=30.0, passed=False),
        _candidate(night.absent, epoch=mid, duration=duration, sde=25.0),
    ]
    (cfg_dir / "search").mkdir()
    write_candidates(cfg_dir / "search", rows, {"sde": "SDE > 7", "odd_even": "odd = even"})
    _set_candidates(cfg_dir, "search/candidates.csv")  # relative to the config directory

    out = summarise_night(replay_night, out_dir=tmp_path / "out", config=cfg_dir)

    known = out.summary.candidates
    assert known is not None
    assert known.path == cfg_dir / "search" / "candidates.csv"
    assert known.error == ""
    assert [c.hip for c in known.observed] == [hip_transit, hip_no_transit]  # by SDE
    first, second = known.observed
    ((start, end),) = first.transits
    assert start == pytest.approx(mid - duration / 2, abs=1e-8)
    assert end == pytest.approx(mid + duration / 2, abs=1e-8)
    expected_in = int(np.count_nonzero(np.abs(jdmid[hip_transit] - mid) <= duration / 2))
    assert 0 < expected_in < len(jdmid[hip_transit])
    assert (first.points_in_transit, first.points) == (expected_in, len(jdmid[hip_transit]))
    assert second.transits == ()
    assert (second.points_in_transit, second.points) == (0, len(jdmid[hip_no_transit]))

    a, b = _utc_second(mid - duration / 2), _utc_second(mid + duration / 2)
    assert a.date() == b.date()
    window = f"{a:%Y-%m-%d %H:%M:%S} - {b:%H:%M:%S} UTC"
    assert out.html_path is not None
    assert out.text_path is not None
    v = _ids(out.html_path.read_text())
    assert (v["candidate0_hip"], v["candidate0_vmag"], v["candidate0_period"],
            v["candidate0_depth"]) == (str(hip_transit), "5.12", "3.10000", "1.23")
    assert v["candidate0_transits"] == window
    assert v["candidate0_in_transit"] == f"{expected_in} of {len(jdmid[hip_transit])}"
    assert (v["candidate1_hip"], v["candidate1_transits"]) == (str(hip_no_transit), "none")
    assert "candidate2_hip" not in v
    text = out.text_path.read_text()
    section = text.split(CANDIDATES_TITLE)[1]
    assert f"HIP {hip_transit}: V 5.12, period 3.10000 d, depth 1.23%, transits {window}" \
        in section
    assert f"HIP {hip_no_transit}: " in section
    assert f"HIP {hip_failed}:" not in section
    assert f"HIP {night.absent}:" not in section


def test_no_candidate_observed_says_none(
        replay_night: Path, night: _Night, tmp_path: Path) -> None:
    write_candidates(tmp_path, [_candidate(night.absent, epoch=night.t0, duration=0.1, sde=9.0)],
                     {"sde": "SDE > 7"})
    s = collect_summary(replay_night, candidates=tmp_path / "candidates.csv")
    assert s.candidates is not None
    assert s.candidates.observed == ()
    assert _ids(render_html(s))["candidates"].startswith("None: no known candidate")
    assert render_text(s).split(CANDIDATES_TITLE)[1].splitlines()[2] == "  none"


@pytest.mark.parametrize(
    ("make", "why"),
    [
        pytest.param(lambda p: None, "No such file or directory", id="missing"),
        pytest.param(lambda p: p.mkdir(), "Is a directory", id="directory"),
        pytest.param(lambda p: p.write_text("hip,period\n12,x\n"), "could not convert",
                     id="bad-number"),
        pytest.param(lambda p: p.write_text("hip,period\n12,3.5\n"), "missing",
                     id="missing-columns"),
    ],
)
def test_unreadable_candidates_file_is_said_and_the_rest_is_intact(
        replay_night: Path, cfg_dir: Path, tmp_path: Path, make: object, why: str) -> None:
    path = cfg_dir / "candidates.csv"
    make(path)  # type: ignore[operator]
    _set_candidates(cfg_dir, "candidates.csv")
    out = summarise_night(replay_night, out_dir=tmp_path / "out", config=cfg_dir)
    known = out.summary.candidates
    assert known is not None
    assert known.observed == ()
    assert known.error.startswith(f"candidates file {path} cannot be read: ")
    assert why in known.error
    assert out.problems == ()
    assert out.html_path is not None
    assert out.text_path is not None
    v = _ids(out.html_path.read_text())
    assert v["candidates"] == known.error
    assert f"  {known.error}" in out.text_path.read_text()
    plain = collect_summary(replay_night)
    assert summary_rows(out.summary) == summary_rows(plain)
    assert int(v["frames_reduced"]) == plain.frames_reduced > 0


def test_no_setting_no_section(replay_night: Path, cfg_dir: Path, tmp_path: Path) -> None:
    out = summarise_night(replay_night, out_dir=tmp_path / "out", config=cfg_dir)
    assert out.summary.candidates is None
    assert out.html_path is not None
    assert out.text_path is not None
    assert CANDIDATES_TITLE not in out.html_path.read_text()
    assert CANDIDATES_TITLE not in out.text_path.read_text()
    assert "candidates" not in _ids(out.html_path.read_text())
    assert collect_summary(replay_night).candidates is None


def test_unreadable_light_curve_costs_only_the_section(
        replay_night: Path, night: _Night, tmp_path: Path) -> None:
    """A star listed in the file whose light curve is gone (a damaged file)."""
    copy = tmp_path / replay_night.name
    shutil.copytree(replay_night, copy)
    fast = next((copy / "lightcurves").glob("fast_*.hdf5"))
    hip = night.ids[0]
    with h5py.File(fast, "r+") as f:
        del f["lightcurves"][str(hip)]
    write_candidates(tmp_path, [_candidate(hip, epoch=night.t0, duration=0.01, sde=9.0)],
                     {"sde": "SDE > 7"})
    s = collect_summary(copy, candidates=tmp_path / "candidates.csv", weather=False)
    assert s.candidates is not None
    assert s.candidates.observed == ()
    assert s.candidates.error.startswith(
        f"light curves of the known candidates not read from {fast}: star {hip} is not in")
    assert s.nightly_file == fast
    assert s.stars_in_file == len(night.ids)
