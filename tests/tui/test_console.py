"""The operator console (issue 8): widgets' text, snapshots, and Pilot against a pipeline.

UI tests run on asyncio only (Textual needs it). The pipeline tests replay a copy of the
committed night (``replay_data/night``, 60 frames of 544 x 400 pixels) in ``tmp_path`` at
high speed with the reduction in a thread, so each takes a few seconds.
"""

from __future__ import annotations

import re
import shutil
from collections import deque
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import pytest

from mascara_actors.actors import reducer
from mascara_actors.actors.gate import PauseGate
from mascara_actors.actors.worker import Worker
from mascara_actors.app.replay import plan_replay
from mascara_actors.catalogue import Catalogue
from mascara_actors.cli.console_feed import light_curve_so_far, replay_feed
from mascara_actors.config import load_config
from mascara_actors.errors import CatalogueError
from mascara_actors.frames import FrameReady
from mascara_actors.messages import (
    Event,
    ReductionPaused,
    ReductionResumed,
    WorkerSpec,
    from_json,
)
from mascara_actors.night_state import NightState
from mascara_actors.sidereal import REFERENCE_SITE, lstidx, set_index
from mascara_actors.storage import NightFile, SetFile, list_set_files
from tui.app import make_console
from tui.feed import ConsoleFeed, take_snapshot
from tui.screens.lookup import LookupScreen, parse_hip
from tui.widgets import ErrorPane, plot_text, starfield_text
from tui.widgets.errors import problem_detail
from tui.widgets.queues import queue_text

REPO = Path(__file__).resolve().parents[2]
NIGHT = REPO / "replay_data" / "night"
#: Times real time for the pipeline tests: a 6.38 s slot every 0.064 s.
SPEED = 100.0
#: A fixed instant for the snapshots: 2026-03-20 23:30 UTC, a dark hour at La Palma.
FIXED_UTC = datetime(2026, 3, 20, 23, 30, 0, tzinfo=UTC)
FIXED_WALL = 1_774_049_400.0


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    """The star catalogue (shared, read-only)."""
    return Catalogue.load()


@pytest.fixture(scope="module")
def config():
    """The default configuration (shared, read-only)."""
    return load_config(None)


def _fed_feed(config, *, latest: Path | None = None) -> ConsoleFeed:
    """A feed with fixed state, clock, wall time and disk space (fresh per call)."""
    state = NightState(
        night="20260320", camera="LPC", frames_expected=60, frames_reduced=31,
        frames_failed=1, last_lstseq=65344231, last_nstars=74, last_nflagged=9,
        last_latency_s=0.214, astrometry_dr=0.018, aflag=0, ccdtemp=-20.1,
        queue_depths={"frames": 2, "records": 0, "events": 1},
        latencies=deque([0.2, 0.25, 0.22, 0.4, 0.21, 0.19, 0.3, 0.214]),
        problems=deque([(FIXED_WALL - 30, "error", 65344220, "truncated FITS file"),
                        (FIXED_WALL - 10, "warning", 65344225, "astrometry: 3 outliers")]),
        started=FIXED_WALL - 62.0,
    )
    feed = ConsoleFeed(state=state, camera=config.camera("LPC"), out_dir=Path("/"),
                       clock=lambda: FIXED_UTC, wall=lambda: FIXED_WALL,
                       disk_free=lambda p: 123.4e9, latest_frame=lambda: latest,
)
    feed.finished.set()
    return feed


# --- pure rendering -------------------------------------------------------------------------


def test_starfield_puts_the_brightest_pixel_in_its_cell() -> None:
    img = np.full((400, 544), 1000.0)
    img[123, 400] = 60000.0
    text = starfield_text(img, 34, 10)
    lines = text.split("\n")
    assert len(lines) == 10
    assert all(len(line) == 34 for line in lines)
    row, col = int(123 * 10 / 400), int(400 * 34 / 544)
    assert lines[row][col] == "@"
    assert text.count("@") == 1


def test_starfield_survives_tiny_sizes_and_empty_images() -> None:
    assert starfield_text(np.ones((3, 3)), 1, 1) in {" ", "@"}
    assert starfield_text(np.empty((0, 0)), 4, 2) == "    \n    "


def test_plot_puts_bright_points_up_and_flags_as_x() -> None:
    x = np.array([0.0, 1.0, 2.0, np.nan])
    y = np.array([5.0, 6.0, 5.5, 1.0])
    # 19 columns = 8 of margin + 11 of plot: x 0, 1, 2 land on columns 0, 5, 10
    text = plot_text(x, y, 19, 5, flagged=np.array([False, False, True, False]))
    rows = [line[8:] for line in text.split("\n")]
    assert rows[0] == "o" + " " * 10  # brightest (smallest magnitude) at the top
    assert rows[4] == " " * 5 + "o" + " " * 5  # faintest at the bottom
    assert rows[2] == " " * 10 + "x"  # flagged
    assert rows[1].strip() == rows[3].strip() == ""
    assert text.split("\n")[0].strip().startswith("5.000")


def test_parse_hip_accepts_numbers_and_rejects_the_rest() -> None:
    assert parse_hip(" HIP 32349 ") == 32349
    for bad in ("", "abc", "-4", "999999", "12.5"):
        with pytest.raises(ValueError, match="not a HIP number"):
            parse_hip(bad)


def test_problem_detail_links_to_the_frame() -> None:
    seq = 65344220
    text = problem_detail((0.0, "error", seq, "truncated"), "LPC")
    assert f"set {seq // 50}" in text
    assert f"lstidx {seq % 13500}" in text
    assert int(set_index(seq)) == seq // 50
    assert int(lstidx(seq)) == seq % 13500
    assert f"{seq:08d}C.fits" in text


def test_queue_text_shows_every_channel_with_its_depth() -> None:
    text = queue_text({"frames": 12, "records": 0}, spooled=3).plain
    assert "frames     12 ##########" in text
    assert "records     0 .........." in text
    assert "spooled to disk 3" in text


@pytest.mark.anyio
async def test_pause_gate_holds_the_reducer_until_resumed() -> None:
    gate = PauseGate()
    assert await gate.wait_open() == 0.0  # open: no wait
    gate.pause()
    waited: list[float] = []

    async def consume() -> None:
        waited.append(await gate.wait_open())

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.sleep(0.05)
        assert waited == []
        gate.resume()
    assert len(waited) == 1
    assert 0.04 < waited[0] < 5


@pytest.mark.anyio
async def test_a_pause_between_two_frames_is_reported_when_given() -> None:
    """The operator's pause and resume are events at once, though no frame comes between."""
    gate = PauseGate()
    frames_in, inbox = anyio.create_memory_object_stream[FrameReady](1)
    outbox, reduced = anyio.create_memory_object_stream[Any](1)
    reduced.close()  # no frame is reduced
    events_out, events_in = anyio.create_memory_object_stream[Event](10)
    seen: list[Event] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(reducer.run, inbox=inbox, outbox=outbox, events=events_out,
                              worker=Worker("reducer", mode="inline"),
                              spec=WorkerSpec(camera_id="LSC"), gate=gate))
        gate.pause()
        with anyio.fail_after(5):
            seen.append(await events_in.receive())
        await anyio.sleep(0.05)
        gate.resume()
        with anyio.fail_after(5):
            seen.append(await events_in.receive())
        await frames_in.aclose()  # the night ends: the reducer returns
    assert isinstance(seen[0], ReductionPaused)
    assert seen[0].lstseq == -1
    assert isinstance(seen[1], ReductionResumed)
    assert 0.04 < seen[1].paused_s < 5
    async with events_in:
        assert [e async for e in events_in] == []


# --- snapshot of the fed state --------------------------------------------------------------


@pytest.mark.anyio
async def test_snapshot_reads_the_fed_state(config) -> None:
    feed = _fed_feed(config)
    snap = await anyio.to_thread.run_sync(take_snapshot, feed)
    lst = REFERENCE_SITE.local_sidereal_time(FIXED_UTC.replace(tzinfo=None))
    assert snap.lstseq == int(lst.lstseq)
    assert snap.lstidx == int(lst.lstidx)
    assert snap.setidx == int(lst.lstseq) // 50
    assert abs(snap.lst_hours - float(lst.lst)) < 1e-9
    assert snap.sun_alt_deg < -18
    assert snap.night_state == "night"
    assert snap.rate_hz == pytest.approx(32 / 62.0)
    assert snap.disk_free_gb == pytest.approx(123.4)


def test_main_screen_snapshot(snap_compare, config) -> None:
    feed = _fed_feed(config, latest=sorted(NIGHT.glob("*C.fits.fz"))[-1])

    async def settle(pilot) -> None:
        await pilot.pause(0.3)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.1)

    assert snap_compare(make_console(feed), terminal_size=(80, 24), run_before=settle)


def test_main_screen_snapshot_large(snap_compare, config) -> None:
    feed = _fed_feed(config, latest=sorted(NIGHT.glob("*C.fits.fz"))[-1])

    async def settle(pilot) -> None:
        await pilot.pause(0.3)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.1)

    assert snap_compare(make_console(feed), terminal_size=(140, 44), run_before=settle)


@pytest.mark.anyio
async def test_tiny_terminal_and_resizes_do_not_crash(config) -> None:
    feed = _fed_feed(config)
    app = make_console(feed, refresh_hz=20)
    async with app.run_test(size=(20, 6)) as pilot:
        for size in ((10, 3), (1, 1), (80, 24), (30, 8)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.1)
        assert app.query_one("#errors", ErrorPane).row_count == 2
        await pilot.press("q")
    assert app.return_code == 0


# --- against a running pipeline -------------------------------------------------------------


def _night_copy(tmp_path: Path, *, truncate: int | None = None) -> Path:
    """A fresh copy of the committed night; optionally the science frame number
    ``truncate`` cut to half its bytes (a frame the camera wrote only in part)."""
    night = tmp_path / "night"
    shutil.copytree(NIGHT, night)
    if truncate is not None:
        frame = sorted(night.glob("*C.fits.fz"))[truncate]
        data = frame.read_bytes()
        frame.write_bytes(data[: len(data) // 2])
    return night


async def _wait_for(cond, timeout: float, pilot) -> None:
    with anyio.fail_after(timeout):
        while not cond():
            await pilot.pause(0.05)


@pytest.mark.anyio
async def test_console_runs_the_night_shows_errors_and_looks_up_stars(
    tmp_path: Path, catalogue: Catalogue, config
) -> None:
    night = _night_copy(tmp_path, truncate=12)
    bad_lstseq = int(sorted(night.glob("*C.fits.fz"))[12].name[:8])
    job = await anyio.to_thread.run_sync(
        partial(plan_replay, night, tmp_path / "out", config=config, realtime=True)
    )
    feed = replay_feed(job, catalogue, speed=SPEED, in_process=True)
    app = make_console(feed, refresh_hz=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.run_pipeline)
        async with app.run_test(size=(100, 30)) as pilot:
            await _wait_for(lambda: feed.state.frames_reduced >= 5, 30, pilot)
            first = feed.state.frames_reduced
            await _wait_for(lambda: feed.state.frames_reduced >= first + 5, 30, pilot)
            await pilot.pause(0.2)
            status = str(app.screen.query_one("#status").render())
            shown = int(re.search(r"frames (\d+)/", status).group(1))
            assert first + 5 <= shown <= feed.state.frames_reduced
            # the truncated frame shows up in the error pane with its lstseq
            pane = app.screen.query_one("#errors", ErrorPane)
            await _wait_for(lambda: pane.row_count >= 1, 30, pilot)
            cells = [pane.get_row_at(i) for i in range(pane.row_count)]
            assert any(row[2] == str(bad_lstseq) for row in cells)
            # wait for the end of the night, then look up stars
            await _wait_for(feed.finished.is_set, 60, pilot)
            assert feed.result is not None
            assert feed.result.nightly_files
            await pilot.press("l")
            await pilot.pause(0.1)
            assert isinstance(app.screen, LookupScreen)
            known = int(_some_star(night_dir=job.plan.night_dir, catalogue=catalogue))
            await pilot.press(*str(known), "enter")
            await _wait_for(lambda: app.screen.last is not None, 10, pilot)
            curve = app.screen.last
            assert curve.hip == known
            assert curve.lstseq.size >= 51
            assert np.all(np.diff(curve.lstseq) > 0)
            assert bad_lstseq not in set(curve.lstseq.tolist())
            label = app.screen.query_one("#lookup-message")
            assert f"HIP {known}" in str(label.render())
            plot = str(app.screen.query_one("#lookup-plot").render())
            assert "o" in plot
            # unknown HIP, then a real star that is not on this camera
            app.screen.query_one("#lookup-input").value = ""
            await pilot.press(*"120400", "enter")
            await pilot.pause(0.3)
            assert "not in the catalogue" in str(label.render())
            app.screen.query_one("#lookup-input").value = ""
            await pilot.press(*"1", "enter")
            await pilot.pause(0.3)
            assert "not on this camera" in str(label.render())
            await pilot.press("escape", "q")
            await pilot.pause(0.2)
    assert app.return_code == 0
    assert feed.state.frames_failed >= 1
    assert feed.state.frames_reduced + feed.state.frames_failed == len(job.frames)


def _some_star(*, night_dir: Path, catalogue: Catalogue) -> int:
    """A HIP number measured in more than half the frames of the night (from the file)."""
    from mascara_actors.storage import nightly_file_path

    with NightFile(nightly_file_path(night_dir, "fast")) as nf:
        stars = nf.stars
    return int(stars["id"][np.argmax(stars["nobs"])])


@pytest.mark.anyio
async def test_pause_resume_and_quit_mid_night_flush(
    tmp_path: Path, catalogue: Catalogue, config
) -> None:
    night = _night_copy(tmp_path)
    job = await anyio.to_thread.run_sync(
        partial(plan_replay, night, tmp_path / "out", config=config, realtime=True)
    )
    feed = replay_feed(job, catalogue, speed=SPEED / 2, in_process=True)
    app = make_console(feed, refresh_hz=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.run_pipeline)
        async with app.run_test(size=(80, 24)) as pilot:
            state = feed.state
            await _wait_for(lambda: state.frames_done >= 3, 30, pilot)
            await pilot.press("p")
            assert feed.gate.paused
            await _wait_for(lambda: state.paused, 30, pilot)  # the reducer's event
            held = state.frames_done
            await pilot.pause(0.6)
            assert state.frames_done == held  # nothing is reduced while paused
            assert "PAUSED" in str(app.screen.query_one("#status").render())
            await pilot.press("p")
            assert not feed.gate.paused
            await _wait_for(lambda: not state.paused, 30, pilot)
            # past the first set of 50 frames, so a set file must be flushed
            await _wait_for(lambda: state.frames_done >= 52, 30, pilot)
            await pilot.press("q")
            with anyio.fail_after(30):
                await feed.finished.wait()
    assert app.return_code == 0
    assert feed.stop.is_set()
    assert feed.result is not None
    assert feed.result.stopped_early

    def check() -> None:  # reads the files: in a worker thread, not on the loop
        sets = list_set_files(job.plan.night_dir, "fast")
        assert sets, "the complete set was not flushed before the console closed"
        log_lines = (job.plan.night_dir / "logs" / "events.jsonl").read_text().splitlines()
        kinds = [from_json(line).kind for line in log_lines]
        assert kinds.count("ReductionPaused") == kinds.count("ReductionResumed") == 1
        for setidx, path in sets.items():
            with SetFile(path) as set_file:
                station = set_file.station()
                assert np.all(set_index(station["lstseq"]) == setidx)
                in_set = sum(1 for s, _ in job.frames if int(set_index(s)) == setidx)
                assert len(station) == in_set
                hip = int(set_file.ids()[np.argmax(set_file.counts())])
            # the star look-up reads the per-set files while there is no nightly file yet
            curve = light_curve_so_far(job.plan.night_dir, catalogue, hip)
            assert curve.lstseq.size == in_set
            assert np.all(set_index(curve.lstseq) == setidx)

    await anyio.to_thread.run_sync(check)


def test_light_curve_of_an_unknown_hip_says_so(tmp_path: Path, catalogue: Catalogue) -> None:
    night_dir = tmp_path / "20260320LPC"
    night_dir.mkdir()
    with pytest.raises(CatalogueError, match="not in the catalogue"):
        light_curve_so_far(night_dir, catalogue, 120400)


def test_fixed_clock_is_used(config) -> None:
    feed = _fed_feed(config)
    assert take_snapshot(feed).utc == "2026-03-20 23:30:00"


@pytest.mark.anyio
async def test_second_quit_does_not_wait_for_a_stuck_pipeline(config) -> None:
    feed = _fed_feed(config)
    feed.finished = anyio.Event()  # a pipeline that never ends (a stuck worker)
    app = make_console(feed, refresh_hz=20)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        await pilot.pause(0.3)
        assert app.is_running
        assert feed.stop.is_set()
        assert not feed.gate.paused
        await pilot.press("q")
        await pilot.pause(0.1)
    assert feed.forced
    assert app.return_code == 1


def test_console_command_line() -> None:
    import argparse

    from mascara_actors.cli.console import add_parser
    from mascara_actors.cli.station import station_argv

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)
    parser.add_argument("-v", dest="verbose", action="count", default=0)
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["console"])
    # by default: attach to (or start) the station of ./night_out
    assert args.replay is None
    assert (args.cameras, args.speed, args.out) == (None, None, Path("night_out"))
    args.speed = 5.0  # what run() makes of it for a station
    argv = station_argv(args)
    assert argv[1:4] == ["-m", "mascara_actors.cli", "-v"]
    assert argv[4:] == ["station", "--out", str(Path("night_out").resolve()), "--speed",
                        "5.0", "--sensor", "crop512", "--date", "2026-03-20", "--start",
                        "night"]
    args = parser.parse_args(["console", "--replay", "x", "--speed", "2.5", "--out", "o"])
    assert (args.replay, args.speed, args.out) == (Path("x"), 2.5, Path("o"))
    args = parser.parse_args(["console", "--cameras", "LPN,LPC", "--frames", "20", "--mail"])
    args.speed = 5.0
    assert station_argv(args)[-5:] == ["--cameras", "LPN,LPC", "--frames", "20", "--mail"]
