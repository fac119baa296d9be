"""Issue 9: the numbers of the night summary, from real and from damaged event logs."""

from __future__ import annotations

import argparse
import base64
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mascara_actors.cli import summary as summary_cli
from mascara_actors.storage import NightFile
from mascara_actors.summary import collect_summary, render_html, render_text, summarise_night
from mascara_actors.summary.events_log import read_event_log


class _Ids(HTMLParser):
    """Text of every element with an id, and the src of every <img>."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.images: list[str] = []
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"] or "")
            return
        self._open.append(a.get("id"))
        if a.get("id"):
            self.values[a["id"]] = ""  # type: ignore[index]

    def handle_endtag(self, tag: str) -> None:
        if tag != "img" and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for key in self._open:
            if key:
                self.values[key] += data


def _parse(html: str) -> _Ids:
    p = _Ids()
    p.feed(html)
    return p


def _write_log(night: Path, records: list[Any], tail: str = "") -> Path:
    path = night / "logs" / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((json.dumps(r) if not isinstance(r, str) else r) + "\n" for r in records)
    path.write_text(text + tail)
    return path


def _started(t: float = 1000.0, expected: int = 10) -> dict[str, Any]:
    return {"kind": "NightStarted", "time": t, "night": "20260320", "camera": "LPC",
            "out_dir": "x", "frames_expected": expected, "resumed_sets": 0}


def _reduced(lstseq: int, t: float, nstars: int = 50, sky: float = 800.0) -> dict[str, Any]:
    return {"kind": "FrameReducedEvent", "time": t, "lstseq": lstseq, "nstars": nstars,
            "nflagged": 1, "latency_s": 0.4, "timings": {"total": 0.1}, "sky": sky,
            "ccdtemp": -15.0}


def _warning(t: float, msg: str, lstseq: int | None = None, source: str = "camera") -> dict:
    return {"kind": "WarningEvent", "time": t, "source": source, "message": msg,
            "lstseq": lstseq}


def test_replay_night_summary_from_the_cli(replay_night: Path, tmp_path: Path) -> None:
    """The committed night reduced by the quick-start command, summarised by the `summary`
    command; the HTML is parsed and its numbers checked against the raw log and file."""
    parser = argparse.ArgumentParser()
    summary_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["summary", str(replay_night), "--out", str(tmp_path)])
    assert summary_cli.run(args) == 0

    raw = [json.loads(line) for line in
           (replay_night / "logs" / "events.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in raw]
    reduced = {r["lstseq"] for r in raw if r["kind"] == "FrameReducedEvent"}
    failed = {r["lstseq"] for r in raw if r["kind"] == "FrameFailed"} - reduced
    drs = [r["dr"] for r in raw if r["kind"] == "AstrometryDone"]
    nstars = [r["nstars"] for r in raw if r["kind"] == "FrameReducedEvent"]
    (html_path,) = tmp_path.glob("summary_*.html")
    page = _parse(html_path.read_text())
    v = page.values
    assert html_path.name == f"summary_{replay_night.name}.html"
    assert v["night"] + v["site"] + v["camera"] == replay_night.name
    assert int(v["frames_expected"]) == raw[kinds.index("NightStarted")]["frames_expected"]
    assert int(v["frames_reduced"]) == len(reduced) > 0
    assert int(v["frames_failed"]) == len(failed)
    assert int(v["frames_taken"]) == len(reduced | failed)
    assert int(v["astro_solutions"]) == len(drs)
    assert float(v["astro_dr_median"]) == pytest.approx(np.median(drs), rel=1e-2)
    assert float(v["nstars"].split()[0]) == np.median(nstars)
    assert int(v["log_lines"]) == len(raw)
    assert int(v["log_bad_lines"]) == 0
    assert v["finished"] == "yes"
    with NightFile(next((replay_night / "lightcurves").glob("fast_*.hdf5"))) as nf:
        assert int(v["frames_in_file"]) == len(nf.station)
        assert int(v["stars_in_file"]) == len(nf.stars)
        in_range = ((nf.stars["vmag"] >= 4.75) & (nf.stars["vmag"] <= 4.8)).sum()
    # a clear simulated night: no clouds, every frame near the zero point
    assert float(v["cloud_fraction"]) < 0.05
    assert v["clear_percent"] == "100%"
    # images inline, valid PNGs, one of them the overview with its note when needed
    assert len(page.images) == 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    has_note = "nearest in V" in html_path.read_text()
    assert has_note == (in_range == 0)
    text = next(tmp_path.glob("summary_*.txt")).read_text()
    assert f"Frames reduced              {len(reduced)}" in text


def test_torn_and_unknown_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    night = tmp_path / "20260320LPC"
    _write_log(night, [_started(), _reduced(100, 1001.0),
                       {"kind": "FutureEvent", "time": 1002.0, "x": 1},
                       {"kind": "FrameReducedEvent", "time": 1003.0, "lstseq": 101},
                       "", "[1, 2]", _reduced(102, 1004.0)],
               tail='{"kind":"FrameReducedEvent","time":1005.0,"lstseq":10')
    log = read_event_log(night / "logs" / "events.jsonl")
    assert (log.lines, log.bad_lines, log.unknown_kinds) == (7, 3, {"FutureEvent": 1})
    s = collect_summary(night)
    assert (s.frames_reduced, s.frames_failed, s.frames_expected) == (2, 0, 10)
    assert list(s.frame_lstseq) == [100, 102]
    assert not s.finished
    v = _parse(render_html(s)).values
    assert v["log_bad_lines"] == "3"
    assert v["log_unknown"] == "FutureEvent x1"
    assert v["wall_s"] == "4"  # first start to last readable event


@pytest.mark.parametrize("content", [None, "", "\n\n"])
def test_missing_or_empty_log_and_no_frames(tmp_path: Path, content: str | None) -> None:
    night = tmp_path / "20260321LSW"
    night.mkdir()
    if content is not None:
        (night / "logs").mkdir()
        (night / "logs" / "events.jsonl").write_text(content)
    out = summarise_night(night)
    s = out.summary
    assert (s.night, s.site, s.camera) == ("20260321", "LS", "W")
    assert (s.frames_expected, s.frames_taken, s.frames_reduced) == (0, 0, 0)
    assert s.log_missing == (content is None)
    assert out.html_path == night / "summary" / "summary_20260321LSW.html"
    html = out.html_path.read_text()
    v = _parse(html).values
    assert v["frames_reduced"] == "0"
    assert v["astro_dr_median"] == "n/a"
    assert v["cloud_fraction"] == "n/a"
    assert v["rate_fps"] == "n/a"
    assert "No frame was reduced this night." in html
    assert out.problems == ()  # the diagnostics figure is still drawn, with "no data"
    assert [p.name for p in out.image_paths] == ["20260321LSW_diagnostics.png"]
    assert "Frames reduced" in out.text_path.read_text()  # type: ignore[union-attr]


def test_errors_and_warnings_grouped_with_first_occurrence(tmp_path: Path) -> None:
    night = tmp_path / "20260320LPC"
    records = [_started(),
               _warning(1010.0, "frame 65344210 late by 4.5 s", 65344210),
               _warning(1005.0, "frame 65344205 late by 3.2 s", 65344205),
               _warning(1020.0, "frame 65344220 late by 1 s", 65344220),
               _warning(1030.0, "disk 91% full", source="saver"),
               {"kind": "FrameFailed", "time": 1040.0, "lstseq": 7, "path": "a",
                "reason": "unreadable FITS: checksum"},
               {"kind": "FrameFailed", "time": 1041.0, "lstseq": 8, "path": "b",
                "reason": "unreadable FITS: checksum"},
               _reduced(8, 1050.0)]  # frame 8 failed, then reduced on a restart
    _write_log(night, records)
    s = collect_summary(night)
    assert (s.frames_failed, s.frames_reduced, s.frames_taken) == (1, 1, 2)
    assert s.errors == 2
    assert s.warnings == 4
    first = s.problems[0]
    assert (first.level, first.count, first.first_lstseq) == ("error", 2, 7)
    late = next(p for p in s.problems if p.pattern == "frame # late by # s")
    assert (late.count, late.first_time, late.first_lstseq) == (3, 1005.0, 65344205)
    assert late.first_message == "frame 65344205 late by 3.2 s"
    text = render_text(s)
    assert "warning x3 [camera]" in text
    assert "lstseq 65344205" in text


def test_resumed_night_counts_each_frame_once(tmp_path: Path) -> None:
    night = tmp_path / "20260320LPC"
    finished = {"kind": "NightFinished", "time": 0.0, "frames_reduced": 0, "frames_failed": 0,
                "nightly_files": [], "wall_s": 0.0}
    _write_log(night, [_started(1000.0, 3), _reduced(1, 1001.0), _reduced(2, 1002.0),
                       {**finished, "time": 1003.0, "wall_s": 3.0},
                       _started(2000.0, 3), _reduced(2, 2001.0, nstars=60),
                       _reduced(3, 2002.0), {**finished, "time": 2003.0, "wall_s": 5.0}])
    s = collect_summary(night)
    assert (s.frames_reduced, s.runs, s.wall_s) == (3, 2, 8.0)
    assert list(s.frame_nstars) == [50, 60, 50]  # the later report of frame 2 wins
    assert s.rate_fps == pytest.approx(3 / 8.0)


def test_identity_from_the_log_when_the_directory_is_renamed(tmp_path: Path) -> None:
    night = tmp_path / "copy-of-a-night"
    _write_log(night, [_started(), _reduced(1, 1001.0)])
    s = collect_summary(night)
    assert (s.night, s.site, s.camera, s.tag) == ("20260320", "LP", "C", "20260320LPC")
    assert s.nightly_file is None


def test_damaged_nightly_file_does_not_stop_the_summary(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    night = tmp_path / "20260320LPC"
    _write_log(night, [_started(), _reduced(1, 1001.0)])
    (night / "lightcurves").mkdir()
    (night / "lightcurves" / "fast_20260320LPC.hdf5").write_bytes(b"\x89HDF\r\n torn" * 10)
    out = summarise_night(night)
    assert out.summary.nightly_file is None
    assert out.summary.frames_reduced == 1
    assert out.html_path is not None
    assert _parse(out.html_path.read_text()).values["frames_in_file"] == "0"
    assert any("without its nightly file" in r.getMessage() for r in caplog.records)
