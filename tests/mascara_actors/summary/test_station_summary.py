"""Issue 16 item 4: the station summary at dawn, one report over the cameras of a night.

Small real camera nights (per-set files written and combined by the storage layer, event
logs of real events) in one OUT directory: LPN complete, LPE resumed once and missing its
slow nightly file, LPC cut short, LPS with a log but no nightly file, LPW with no night.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pytest

from mascara_actors import messages as ev
from mascara_actors.cli import main
from mascara_actors.cli import station as station_cli
from mascara_actors.storage import NightFile, SetWriter, nightly_file_path
from mascara_actors.summary.mailconfig import MailConfig
from mascara_actors.summary.station import MAILED_MARKER, summarise_station
from mascara_actors.summary.station_plots import camera_colour
from tests.mascara_actors.storage._data import HEADER, make_night, write_sets
from tests.mascara_actors.summary._smtp import Handler, free_port, smtp_server
from tests.mascara_actors.summary.test_plots import _size
from tests.mascara_actors.summary.test_report import _parse

NIGHT = "20260320"
CAMERAS = ("LPN", "LPE", "LPC", "LPS", "LPW")
# where each camera looked: (RA range, Dec range), degrees
SKY = {"LPN": ((0.0, 360.0), (60.0, 85.0)), "LPE": ((60.0, 120.0), (-20.0, 20.0)),
       "LPC": ((200.0, 250.0), (0.0, 40.0))}


def _log(night_dir: Path, events: list[ev.Event]) -> None:
    path = night_dir / "logs" / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(ev.to_json(e) + "\n" for e in events))


def _night(out: Path, camera: str, seed: int, *, runs: int = 1, slow: bool = True,
           finished: bool = True, failed: int = 0) -> Path:
    """A camera night of 2 sets of 50 frames (40 stars), its event log and nightly files."""
    night_dir = out / f"{NIGHT}{camera}"
    sets = make_night(seed, nsets=2, nstars=40)
    (ra0, ra1), (dec0, dec1) = SKY[camera]
    for s in sets:  # put the camera's stars where it looked (a star keeps its place)
        u = (s.stars["id"] % 997) / 997.0
        s.stars["ra"] = ra0 + u * (ra1 - ra0)
        s.stars["dec"] = dec0 + ((s.stars["id"] * 7) % 991) / 991.0 * (dec1 - dec0)
    with SetWriter(night_dir, header=HEADER) as w:
        write_sets(w, sets)
        w.combine("fast", minobs=20)
        if slow:
            write_sets(w, sets, kind="slow")
            w.combine("slow", minobs=20)
    lstseqs = np.concatenate([s.station["lstseq"] for s in sets]).astype(int).tolist()
    events: list[ev.Event] = [
        ev.NightStarted(time=1000.0 + r, night=NIGHT, camera=camera, out_dir=str(out),
                        frames_expected=len(lstseqs) + 5) for r in range(runs)]
    for i, q in enumerate(lstseqs):
        if i < failed:
            events.append(ev.FrameFailed(time=1010.0 + i, lstseq=q, path="x.fits",
                                         reason="unreadable FITS"))
        else:
            events.append(ev.FrameReducedEvent(time=1010.0 + i, lstseq=q, nstars=40,
                                               nflagged=1, latency_s=0.3, timings={},
                                               sky=800.0, ccdtemp=-15.0))
    for k, s in enumerate(sets):
        events.append(ev.AstrometryDone(time=1100.0 + k, lstseq=int(s.station["lstseq"][0]),
                                        setidx=s.setidx, dr=0.02 * (k + 1), nstars=40,
                                        nused=35, aflag=0, solved=True))
        events.append(ev.SetSaved(time=1100.0 + k, kind_="fast", setidx=s.setidx,
                                  nframes=50, nrecords=1000, path="x.hdf5"))
    events.append(ev.WarningEvent(time=1200.0, source="camera", message="CCD warm", lstseq=None))
    if finished:
        events.append(ev.NightFinished(
            time=1300.0, frames_reduced=len(lstseqs) - failed, frames_failed=failed,
            nightly_files=(), wall_s=100.0, missing=() if slow else ("slow nightly file",)))
    _log(night_dir, events)
    return night_dir


@pytest.fixture(scope="module")
def station_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT with the nights of the module docstring (shared: tests copy it to write into it)."""
    out = tmp_path_factory.mktemp("station_out")
    lpn = _night(out, "LPN", 1)
    (lpn / "summary").mkdir()
    (lpn / "summary" / f"summary_{NIGHT}LPN.html").write_text("<html>LPN</html>\n")
    _night(out, "LPE", 2, runs=2, slow=False, failed=3)
    _night(out, "LPC", 3, finished=False)
    _log(out / f"{NIGHT}LPS", [ev.NightStarted(time=1.0, night=NIGHT, camera="LPS",
                                               out_dir=str(out), frames_expected=100)])
    return out


@pytest.fixture
def out(station_out: Path, tmp_path: Path) -> Path:
    """A copy of the shared OUT this test may write its report into."""
    return Path(shutil.copytree(station_out, tmp_path / "out"))


def test_rows_match_the_nights(out: Path) -> None:
    outcome = summarise_station(out, NIGHT, CAMERAS, site="LP", weather=False)
    assert outcome.problems == ()
    assert outcome.mail is None
    station = out / f"{NIGHT}LP-station"
    assert outcome.html_path == station / f"summary_{NIGHT}LP.html"
    assert outcome.text_path == station / f"summary_{NIGHT}LP.txt"
    assert outcome.image_paths == (station / f"{NIGHT}LP_skymap.png",)
    assert not list(station.glob("*.tmp"))
    page = _parse(outcome.html_path.read_text())
    v = page.values
    assert (v["night"], v["site"], v["ncameras"]) == (NIGHT, "LP", "5")
    status = {c: v[f"{c}-status"] for c in CAMERAS}
    assert status == {"LPN": "complete", "LPE": "incomplete", "LPC": "not finished",
                      "LPS": "no nightly file", "LPW": "no night"}
    totals = dict.fromkeys(("frames_reduced", "frames_failed", "stars_in_file",
                            "frames_in_file"), 0)
    for camera in ("LPN", "LPE", "LPC"):
        night_dir = out / f"{NIGHT}{camera}"
        raw = [json.loads(x) for x in (night_dir / "logs/events.jsonl").read_text().split("\n")
               if x]
        reduced = {r["lstseq"] for r in raw if r["kind"] == "FrameReducedEvent"}
        failed = {r["lstseq"] for r in raw if r["kind"] == "FrameFailed"}
        drs = [r["dr"] for r in raw if r["kind"] == "AstrometryDone"]
        with NightFile(nightly_file_path(night_dir, "fast")) as nf:
            stars, frames = len(nf.stars), len(nf.station)
        row = {key: v[f"{camera}-{key}"] for key in (
            "frames_expected", "frames_reduced", "frames_failed", "frames_in_file",
            "sets_saved", "stars_in_file", "astro_dr_median", "restarts", "warnings",
            "errors")}
        assert row == {
            "frames_expected": "105", "frames_reduced": str(len(reduced)),
            "frames_failed": str(len(failed)), "frames_in_file": str(frames),
            "sets_saved": "2", "stars_in_file": str(stars),
            "astro_dr_median": f"{np.median(drs):.3g}",
            "restarts": "1" if camera == "LPE" else "0", "warnings": "1",
            "errors": str(len(failed))}
        assert 0 < stars <= 40
        assert frames == 100
        totals["frames_reduced"] += len(reduced)
        totals["frames_failed"] += len(failed)
        totals["stars_in_file"] += stars
        totals["frames_in_file"] += frames
    assert v["LPE-frames_failed"] == "3"
    assert v["LPN-nightly_files"] == "fast, slow"
    assert v["LPE-nightly_files"] == "fast; slow missing"
    assert v["LPS-nightly_files"] == "fast, slow missing"
    assert v["LPW-nightly_files"] == "none"
    # a camera with no night: a row saying so, every number unknown
    assert v["LPW-frames_reduced"] == v["LPW-stars_in_file"] == "n/a"
    assert v["LPS-frames_expected"] == "100"
    assert v["LPS-stars_in_file"] == "0"
    for key, total in totals.items():
        assert v[f"total-{key}"] == str(total)
    assert v["total-status"] == "1 of 5 complete"
    assert v["total-nightly_files"] == "5 of 10"
    # the link to LPN's own summary, relative to the station report, leads to it
    html = outcome.html_path.read_text()
    assert f'href="../{NIGHT}LPN/summary/summary_{NIGHT}LPN.html"' in html
    assert (station / f"../{NIGHT}LPN/summary/summary_{NIGHT}LPN.html").is_file()
    assert v["LPE-summary"] == "none"
    text = outcome.text_path.read_text()
    assert f"NOTE: LPW: no night directory {out / (NIGHT + 'LPW')}." in text
    assert "NOTE: LPE: 1 product(s) missing: slow nightly file." in text
    table = {line.split("  ")[1]: line.split()[-6:] for line in text.splitlines()
             if line.startswith("  Frames reduced")}
    assert table["Frames reduced"] == [v[f"{c}-frames_reduced"] for c in CAMERAS] + [
        str(totals["frames_reduced"])]


def test_sky_map_one_colour_per_camera(out: Path) -> None:
    outcome = summarise_station(out, NIGHT, CAMERAS, site="LP", weather=False)
    (png_path,) = outcome.image_paths
    png = png_path.read_bytes()
    assert _size(png) == (800, 880)
    rgb = np.round(matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3] * 255)
    top = rgb[: rgb.shape[0] // 2]  # the "where each camera looked" panel
    where = {}
    for camera in CAMERAS:
        colour = np.array([int(camera_colour(camera)[i:i + 2], 16) for i in (1, 3, 5)])
        rows, cols = np.nonzero(np.abs(top - colour).max(axis=-1) <= 12)
        where[camera] = (len(rows), np.median(cols) if len(cols) else None,
                         np.median(rows) if len(rows) else None)
    # each camera with stars has its colour group; the two without none
    assert all(where[c][0] >= 40 for c in ("LPN", "LPE", "LPC")), where
    assert where["LPS"][0] == where["LPW"][0] == 0, where
    # and each group is where its stars are: LPN highest (Dec 60-85), LPE (RA 4-8 h, east)
    # left of the middle, LPC (RA 13-17 h) right of it
    width = rgb.shape[1]
    assert where["LPN"][2] < where["LPE"][2]
    assert where["LPN"][2] < where["LPC"][2]
    assert where["LPE"][1] < width / 2 < where["LPC"][1]


def _mail_config(port: int) -> MailConfig:
    return MailConfig(sender="station@example.org", recipients=("team@example.org",),
                      host="127.0.0.1", port=port, security="none", timeout_s=5.0,
                      retries=0, backoff_s=0.0)


def test_mailed_once(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASCARA_SMTP_USER", raising=False)
    monkeypatch.delenv("MASCARA_SMTP_PASSWORD", raising=False)
    handler = Handler()
    with smtp_server(handler) as port:
        config = _mail_config(port)
        first = summarise_station(out, NIGHT, CAMERAS, site="LP", weather=False,
                                  send_mail=True, mail_config=config)
        assert first.mail is not None
        assert first.mail.ok
        assert first.problems == ()
        marker = first.station_dir / MAILED_MARKER
        assert json.loads(marker.read_text())["attempts"] == 1
        (got,) = handler.received
        msg = got.message
        assert msg["Subject"] == f"Reduction Summary {NIGHT}LP (station, 5 cameras)"
        assert got.rcpt_tos == ["team@example.org"]
        text = msg.get_body(preferencelist=("plain",)).get_content()
        assert text.replace("\r\n", "\n") == first.text_path.read_text()
        html = msg.get_body(preferencelist=("html",)).get_content()
        (image,) = [p for p in msg.walk() if p.get_content_type() == "image/png"]
        assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html
        assert 'id="LPW-status">no night<' in html
        assert image.get_content() == first.image_paths[0].read_bytes()
        # the same night summarised again: not mailed again
        again = summarise_station(out, NIGHT, CAMERAS, site="LP", weather=False,
                                  send_mail=True, mail_config=config)
        assert again.mail is None
        assert again.problems == ()
        assert again.already_mailed == json.loads(marker.read_text())["mailed_utc"]
        assert len(handler.received) == 1
        # unless forced
        forced = summarise_station(out, NIGHT, CAMERAS, site="LP", weather=False,
                                   send_mail=True, force_mail=True, mail_config=config)
        assert forced.mail is not None
        assert forced.mail.ok
        assert len(handler.received) == 2


def test_failed_mail_is_reported_and_not_marked(out: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASCARA_SMTP_USER", raising=False)
    monkeypatch.delenv("MASCARA_SMTP_PASSWORD", raising=False)
    outcome = summarise_station(out, NIGHT, ["LPN", "LPW"], site="LP", weather=False,
                                send_mail=True, mail_config=_mail_config(free_port()))
    assert outcome.mail is not None
    assert not outcome.mail.ok
    assert outcome.html_path is not None
    assert outcome.html_path.is_file()
    assert [p.split(":")[0] for p in outcome.problems] == ["mail not sent"]
    assert not (outcome.station_dir / MAILED_MARKER).exists()  # the next run mails it


def test_summary_station_cli(out: Path, capsys: pytest.CaptureFixture[str],
                             tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["summary", "--help"])
    assert info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for option in ("--station OUT", "--night YYYYMMDD", "--cameras ID,ID,...", "--mail-again",
                   "{YYYYMMDD}{SITE}-station"):
        assert option in help_text
    # bad input: no camera night in OUT, or none of that night
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["summary", "--station", str(empty), "--night", NIGHT]) == 2
    err = capsys.readouterr().err
    assert f"no camera night of {NIGHT} in {empty}" in err
    assert main(["summary", "--station", str(out), "--night", "20260321"]) == 2
    assert f"nights there: ['{NIGHT}']" in capsys.readouterr().err
    assert main(["summary", "--station", str(empty / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    # the night found in OUT; rows for every camera of the site in config/cameras.toml
    assert main(["summary", "--station", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"station summary of {NIGHT}LP: 1 of 5 camera nights complete" in err
    assert "  LPW: no night" in err
    page = _parse((out / f"{NIGHT}LP-station" / f"summary_{NIGHT}LP.html").read_text())
    assert {k.split("-")[0] for k in page.values if k.endswith("-status")} == {
        *CAMERAS, "total"}


def test_station_command_mails_the_report_not_the_cameras(
        out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The station's --mail no longer reaches the camera processes; at dawn the station
    makes the report (here after a supervisor whose nights are over), says where it is, and
    says how to make it again when it fails."""
    args = argparse.Namespace(config=None, verbose=0, out=out, speed=1.0, sensor="crop512",
                              date="2026-03-20", start="night", frames=None, mail=True)
    assert "--mail" not in station_cli.camera_command(args, "LPN")
    args.mail = False
    cameras = {c: SimpleNamespace(process_state="done", state=SimpleNamespace(night=""),
                                  status={"night_dir": str(out / f"{NIGHT}{c}")})
               for c in CAMERAS}
    supervisor = SimpleNamespace(cameras=cameras)
    assert station_cli._dawn_summary(args, out, "LP", supervisor) == 0
    err = capsys.readouterr().err
    assert f"written to {out / (NIGHT + 'LP-station') / ('summary_' + NIGHT + 'LP.html')}" in err
    # a report that cannot be written (its directory's name taken by a file): exit 1 and
    # the command that makes it again
    shutil.rmtree(out / f"{NIGHT}LP-station")
    (out / f"{NIGHT}LP-station").write_text("in the way\n")
    assert station_cli._dawn_summary(args, out, "LP", supervisor) == 1
    err = capsys.readouterr().err
    assert "station summary problem: station report not written" in err
    assert (f"make the station summary again with: mascara-actors summary --station {out} "
            f"--night {NIGHT} --cameras {','.join(CAMERAS)}") in err
    # a camera stopped alone: no report, and no error
    cameras["LPC"].process_state = "stopped"
    assert station_cli._dawn_summary(args, out, "LP", supervisor) == 0
    assert "station summary not made: the night of LPC is not over" in capsys.readouterr().err


_DAWN = """
import argparse, sys, types
from pathlib import Path
import mascara_actors
from mascara_actors.cli import station as station_cli
out, mail_config, cameras = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(",")
args = argparse.Namespace(config=None, mail=True, mail_config=mail_config)
state = {c: types.SimpleNamespace(process_state="done", state=types.SimpleNamespace(night=""),
                                  status={"night_dir": str(out / f"20260320{c}")})
         for c in cameras}
sys.exit(station_cli._dawn_summary(args, out, "LP", types.SimpleNamespace(cameras=state)))
"""


def test_a_station_stopped_during_its_dawn_summary_says_how_to_make_it_again(
        out: Path, tmp_path: Path) -> None:
    """SIGTERM (the service stopped) while the report is being mailed: exit 143 with the
    command that makes and mails it, not a silent death; nothing is marked mailed."""
    mail = tmp_path / "mail.toml"
    with socket.socket() as stall:
        # an SMTP server that takes the connection and never greets: the mail waits on it
        stall.bind(("127.0.0.1", 0))
        stall.listen()
        stall.settimeout(60)
        mail.write_text(
            '[mail]\nsender = "station@example.org"\nrecipients = ["team@example.org"]\n'
            f'host = "127.0.0.1"\nport = {stall.getsockname()[1]}\nsecurity = "none"\n'
            'timeout_s = 60.0\nretries = 0\nbackoff_s = 0.0\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("MASCARA_SMTP_")}
        proc = subprocess.Popen([sys.executable, "-c", _DAWN, str(out), str(mail),
                                 ",".join(CAMERAS)], env=env, stderr=subprocess.PIPE,
                                text=True)
        try:
            conn, _ = stall.accept()  # the report is written; the mail is under way
            with conn:
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert (f"station summary of {NIGHT} NOT finished: stopped by SIGTERM (the nights are "
            "complete); make it again with: mascara-actors summary --station "
            f"{out} --night {NIGHT} --cameras {','.join(CAMERAS)} --mail") in err
    station = out / f"{NIGHT}LP-station"
    assert (station / f"summary_{NIGHT}LP.html").is_file()
    assert not (station / MAILED_MARKER).exists()  # the command above mails it
