"""Issue 18, items 4 and 5, end to end: a replayed night calibrated set by set.

A calibration is made the way a station makes one: light curves of the replayed camera
(LPC, the crop512 sensor) simulated for three nights before the committed night
(``replay_data/night``, 2026-03-20), around its sidereal time, merged into a baseline and
calibrated (``mascara-actors calibrate``); the maps go where the night looks for them,
``OUT/calibration/LPC/``. The committed night is then replayed under the console (Pilot):
each set is calibrated as it is saved and the console shows its cloud map. The same night
replayed without a calibration makes the same products, byte for byte, and no calibrated
points; the night summary of the calibrated one has the noise diagram and the clouds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import anyio
import anyio.to_thread
import h5py
import pytest

from mascara_actors.app.replay import plan_replay
from mascara_actors.catalogue import Catalogue
from mascara_actors.cli.console_feed import replay_feed
from mascara_actors.config import load_config
from mascara_actors.decorrelation import DecorrelationSettings, calibrate_baseline
from mascara_actors.decorrelation.live import calibration_dir
from mascara_actors.lcsim import LightCurveSimulation, simulate_lightcurves
from mascara_actors.lcsim.schedule import night_schedule
from mascara_actors.messages import SetCalibrated, from_json
from mascara_actors.sidereal import SET_SIZE, lstidx, slot_length_solar_s
from mascara_actors.storage import event_log_path, list_set_files
from mascara_actors.storage.baseline import build_baseline
from mascara_actors.storage.live_sets import list_live_sets
from mascara_actors.summary import summarise_night
from tests.tui.test_console import NIGHT, SPEED, _night_copy, _wait_for
from tui.app import make_console
from tui.widgets.clouds import CloudMap, cloud_map_text

pytestmark = pytest.mark.slow

FIRST = 65344200
"""The committed night's first science frame."""


def _make_calibration(root: Path, out: Path) -> Path:
    """Three simulated nights of LPC's crop512 stars before 2026-03-20, from an hour before
    the committed night's sidereal time, calibrated into ``OUT/calibration/LPC``."""
    config = load_config(None)
    camera = config.camera("LPC")
    sim = LightCurveSimulation(camera="LPC", sensor="crop512", nights=3,
                               start=dt.date(2026, 3, 17), seed=4, compression=None,
                               weather=("clear", "clear", "cloudy"))
    first = night_schedule(config, camera, sim)[0].first
    per_day = round(86400.0 / slot_length_solar_s() * 0.99726958)  # slots a sidereal day
    ahead = (int(lstidx(FIRST)) - int(lstidx(first))) % per_day
    slots_per_hour = 3600.0 / slot_length_solar_s()
    sim = dataclasses.replace(sim, hours=2.0, offset_hours=max(ahead / slots_per_hour - 1, 0))
    report = simulate_lightcurves(root / "sim", sim, config=config)
    base = build_baseline(report.nightly_files, root / "baseline.hdf5", compression=None)
    result = calibrate_baseline(base.output, calibration_dir(out, "LPC"),
                                DecorrelationSettings(workers=1, min_points=30))
    assert result.converged
    assert result.maps_file is not None
    return result.maps_file


@pytest.mark.anyio
async def test_a_night_with_a_calibration_shows_its_clouds_and_keeps_its_products(
    tmp_path: Path,
) -> None:
    config = await anyio.to_thread.run_sync(load_config, None)
    catalogue = await anyio.to_thread.run_sync(Catalogue.load)
    out, plain = tmp_path / "out", tmp_path / "plain"
    maps = await anyio.to_thread.run_sync(_make_calibration, tmp_path, out)
    night = await anyio.to_thread.run_sync(_night_copy, tmp_path)

    job = await anyio.to_thread.run_sync(
        lambda: plan_replay(night, out, config=config, realtime=True))
    feed = replay_feed(job, catalogue, speed=SPEED, in_process=True)
    app = make_console(feed, refresh_hz=10)
    shown = ""
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.run_pipeline)
        async with app.run_test(size=(120, 40)) as pilot:
            await _wait_for(lambda: feed.state.sets_calibrated >= 1, 60, pilot)
            await pilot.pause(0.3)
            shown = str(app.screen.query_one("#clouds", CloudMap).render())
            with anyio.fail_after(60):
                await feed.finished.wait()
            await pilot.press("q")
    assert feed.result is not None
    assert not feed.result.stopped_early
    assert feed.state.calibration == str(maps)
    setidx = FIRST // SET_SIZE
    assert f"set {setidx}: " in shown, shown
    assert "patches" in shown, shown
    assert "median" in shown, shown

    # the same night without a calibration
    job2 = await anyio.to_thread.run_sync(
        lambda: plan_replay(NIGHT, plain, config=config, realtime=False))
    feed2 = replay_feed(job2, catalogue, speed=1e6, in_process=True)
    await feed2.run_pipeline()
    assert feed2.state.calibration == ""
    await anyio.to_thread.run_sync(_check_files, job.plan.night_dir, job2.plan.night_dir, maps)


def _check_files(night_dir: Path, plain_dir: Path, maps: Path) -> None:
    """Calibrated points for every set saved; the same products as the night without a
    calibration, and none of its points there; the summary's table and figures."""
    saved = {FIRST // SET_SIZE, (FIRST + 59) // SET_SIZE}
    calibrated = list_live_sets(night_dir)
    assert set(calibrated) == saved
    for path in calibrated.values():
        with h5py.File(path, "r") as f:
            assert len(f["points"]) > 0
            assert len(f["bins"]) > 0
            assert f["header"].attrs["maps"] == str(maps)
    events = [from_json(line) for line in event_log_path(night_dir).read_text().splitlines()]
    done = [e for e in events if isinstance(e, SetCalibrated)]
    assert sorted(e.setidx for e in done) == sorted(saved)
    assert all(e.seconds < 30 for e in done)

    assert not list_live_sets(plain_dir)
    assert not list_set_files(plain_dir, "fast")  # combined at the end, in both
    products = sorted(p.relative_to(night_dir) for p in night_dir.glob("lightcurves/*.hdf5"))
    assert len(products) == 2
    for rel in products:
        assert (night_dir / rel).read_bytes() == (plain_dir / rel).read_bytes(), rel

    outcome = summarise_night(night_dir)
    assert outcome.html_path is not None
    html = outcome.html_path.read_text()
    assert 'id="sets_calibrated">2<' in html
    assert maps.name in html
    assert "Noise diagram (calibrated live)" in html
    assert "Clouds (calibrated live)" in html


def test_the_cloud_map_puts_north_up_and_east_left() -> None:
    # patches 185 (RA 106.9, dec 30.0), 186 (118.1, 30.0), 217 (101.3, 24.6), 218 (112.5,
    # 24.6) and 250 (118.1, 19.5)
    text = cloud_map_text("maps.hdf5", 1306884, ((185, 0.0), (186, 0.7), (217, 0.2),
                                                 (218, 0.1), (250, 0.4)))
    lines = text.splitlines()
    assert lines[0] == "set 1306884: 5 patches"
    assert lines[1] == "median +0.20 mag"
    assert lines[2:5] == ["  +30 ██ ··", "  +25 ░░ ▒▒", "  +19 ▓▓"]
    assert all(len(line) <= 32 for line in lines)
    assert cloud_map_text("", None, ()).startswith("no calibration")
    assert cloud_map_text("maps.hdf5", None, ()) == "calibrated: no set yet"
