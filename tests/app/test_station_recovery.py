"""A station night that meets trouble: a frame lost on the way, a restart mid-night.

As in ``test_station.py``, each test starts the simulated camera device (its own process, a
real pty and readout socket) rendering LPC on the ``crop512`` sensor at ``SPEED`` times real
time, and runs :class:`mascara_actors.app.station.Station` on it through the real
:class:`hw.driver.SerialCamera`, with the short-night configuration of :mod:`tests.stations`
made shorter still (3 frames per calibration kind, :func:`quick_night_config`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
import pytest

from hw.driver import SerialCamera
from mascara_actors.app.camera_channel import encode_command
from mascara_actors.app.camera_uplink import ForwardingState, run_supervised
from mascara_actors.app.reports import StationReport
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import Config, load_config
from mascara_actors.errors import ConfigError
from mascara_actors.night_window import NightWindow
from mascara_actors.storage import NightFile, list_set_files

#: 2026-03-20 at La Palma, noon UTC: the window is that evening's night.
from tests.mascara_actors.control.support import cancel_as_it_turns_readable
from tests.stations import lpc_station, raw_frames, short_night_config, sky_device

#: Frames per calibration kind (and the fewest a master needs).
N_QUICK = 3
#: ``[night] camera_timeout_s`` of the quick config, seconds of camera time: 3 s at 20 x.
CAMERA_TIMEOUT_S = 60.0

pytestmark = pytest.mark.anyio


def quick_night_config(directory: Path) -> Path:
    """:func:`tests.stations.short_night_config` with 3 frames per calibration kind and a
    camera timeout of ``CAMERA_TIMEOUT_S``; returns the config directory."""
    dst = short_night_config(directory)
    text = (dst / "reduction.toml").read_text()
    for key, value in {
        **{f"{p}_{k}": N_QUICK for p in ("n", "min") for k in ("bias", "dark", "flat")},
        "camera_timeout_s": CAMERA_TIMEOUT_S,
    }.items():
        text, n = re.subn(rf"(?m)^{key}\s*=\s*[-0-9.]+", f"{key} = {value}", text)
        assert n == 1, key
    (dst / "reduction.toml").write_text(text)
    return dst


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_night_config(tmp_path_factory.mktemp("config"))



def events_of(night_dir: Path, kind: str) -> list[dict]:
    lines = (night_dir / "logs" / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


def nightly_lstseqs(night_dir: Path) -> np.ndarray:
    with NightFile(night_dir / "lightcurves" / f"fast_{night_dir.name}.hdf5") as nf:
        return np.asarray(nf.station["lstseq"])


def test_camera_timeout_is_checked(tmp_path: Path) -> None:
    cfg = quick_night_config(tmp_path)
    assert load_config(cfg).reduction.night.camera_timeout_s == CAMERA_TIMEOUT_S
    toml = cfg / "reduction.toml"
    toml.write_text(toml.read_text().replace("camera_timeout_s = 60.0", "camera_timeout_s = 0"))
    with pytest.raises(ConfigError, match=r"key 'night.camera_timeout_s' = 0: must be > 0"):
        load_config(cfg)


async def test_a_supervised_night_cancelled_from_outside_as_a_command_comes_reports_nothing(
    config: Config, config_dir: Path, window: NightWindow, catalogue: Catalogue, tmp_path: Path
) -> None:
    # The camera's side of the supervisor's channel (the supervisor's side is tested in
    # test_supervisor.py): a night cancelled from outside (stopped at once) as a command
    # arrives must not leave the channel's reader in a receive that the cancellation ends.
    # The cancellation is delivered by a loop callback of the iteration in which the channel
    # turns readable.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.settimeout(30.0)  # a channel that never speaks fails the test, never hangs it
    scope = anyio.CancelScope()
    with ours:
        async with (
            sky_device(tmp_path / "device", config_dir, window.start_lstseq + 200) as dev,
            SerialCamera(dev.tty_path, dev.readout_address, timeout_s=1.0) as cam,
        ):
            station = lpc_station(cam, config, tmp_path / "out", state=ForwardingState(),
                                  worker_mode="thread")

            async def night() -> None:
                with scope:
                    await run_supervised(station, catalogue, theirs.detach())

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(night)
                    # its first lines say the channel runs; then its reader waits
                    assert await anyio.to_thread.run_sync(ours.recv, 65536)
                    await cancel_as_it_turns_readable(scope, ours, encode_command(1, "pause"))
        # the camera's side shut the channel down: what it still sent, then the end
        ours.settimeout(5.0)
        while ours.recv(65536):
            pass
    # the anyio test runner fails the test on any error a loop callback raised
    assert scope.cancel_called


async def test_a_lost_frame_is_replaced_by_the_next_slot_and_reported(
    config: Config, config_dir: Path, window: NightWindow, catalogue: Catalogue, tmp_path: Path
) -> None:
    """A frame corrupted on the readout link in a night of 12 frames: the science sequence
    goes on in the same armed sequence, so 13 consecutive slots hold exactly 12 frames and
    the one missing slot is the corrupted one, reported as a warning event naming it; no
    slot is left unexposed by a re-arm."""
    out = tmp_path / "out"
    async with (
        sky_device(tmp_path / "device", config_dir, window.start_lstseq + 200) as dev,
        SerialCamera(dev.tty_path, dev.readout_address, timeout_s=1.0) as cam,
    ):
        station = lpc_station(cam, config, out, max_science_frames=12, worker_mode="thread")

        async def corrupt_one() -> None:
            while station.stats.frames < 4:
                await anyio.sleep(0.02)
            await cam.link.request("FAULT", "corruptframe", "1")

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(corrupt_one)
                report: StationReport = await station.run(catalogue)
    science = raw_frames(report.night_dir)["science"]
    assert len(science) == 12
    first = science[0]
    lost = sorted(set(range(first, first + 13)) - set(science))
    assert len(lost) == 1
    assert science == [s for s in range(first, first + 13) if s != lost[0]]
    assert first + 4 <= lost[0] < first + 12
    assert (station.stats.frames, station.stats.missing, station.stats.arms) == (12, 1, 1)
    warnings = [w for w in events_of(report.night_dir, "WarningEvent") if w["source"] == "camera"]
    assert [w["lstseq"] for w in warnings] == lost
    assert f"slot {lost[0]} without a science frame: exposed but lost" in warnings[0]["message"]
    assert report.ok
    assert report.camera_lost is None
    assert nightly_lstseqs(report.night_dir).tolist() == science


async def test_a_restarted_night_goes_on_after_the_frames_on_disk(
    config: Config,
    config_dir: Path,
    window: NightWindow,
    catalogue: Catalogue,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stopped mid-night after a set was saved, the station is started again on a camera
    whose clock starts where the first one did (the simulated camera restarted): it arms
    after the frames already on disk, rewrites no raw file, hands the frames of the open set
    on disk to the reduction, and the nightly file ends with one row per exposed slot."""
    out = tmp_path / "out"
    total = 24
    # the science starts a few slots before a set boundary: a set is saved early
    start = (window.start_lstseq // 50 + 4) * 50 - 16
    async with (
        sky_device(tmp_path / "device1", config_dir, start) as dev,
        SerialCamera(dev.tty_path, dev.readout_address, timeout_s=1.0) as cam,
    ):
        stop = anyio.Event()
        station = lpc_station(
            cam, config, out, stop=stop, max_science_frames=total, worker_mode="thread"
        )

        async def stop_mid_night() -> None:
            night = out / "20260320LPC"
            while station.stats.frames < 12 or not await anyio.to_thread.run_sync(
                list_set_files, night, "fast"
            ):
                await anyio.sleep(0.05)
            stop.set()

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_mid_night)
                first_run = await station.run(catalogue)
    night = first_run.night_dir
    assert not first_run.ok

    def raw_files() -> dict[str, tuple[int, int, bytes]]:
        return {
            p.name: (p.stat().st_ino, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).digest())
            for p in (night / "raw").iterdir()
        }

    done = set(await anyio.to_thread.run_sync(list_set_files, night, "fast"))
    before = await anyio.to_thread.run_sync(raw_files)
    science1 = (await anyio.to_thread.run_sync(raw_frames, night))["science"]
    assert len(science1) >= 12
    open_set = [s for s in science1 if s // 50 not in done]
    assert open_set  # frames of the open set are on disk, not saved yet

    caplog.set_level(logging.INFO, logger="mascara_actors.app.station")
    async with (
        sky_device(tmp_path / "device2", config_dir, start) as dev,
        SerialCamera(dev.tty_path, dev.readout_address, timeout_s=1.0) as cam,
    ):
        station = lpc_station(cam, config, out, max_science_frames=total, worker_mode="thread")
        with anyio.fail_after(120):
            report = await station.run(catalogue)
    # no raw file of the first run was written again
    after = await anyio.to_thread.run_sync(raw_files)
    for name, seen in before.items():
        assert after[name] == seen, name
    assert station.stats.existing == 0
    # the camera was armed right after the frames on disk: one run of consecutive slots
    science = (await anyio.to_thread.run_sync(raw_frames, night))["science"]
    assert science == list(range(science1[0], science1[0] + total))
    assert station.stats.frames == total - len(science1)
    assert f"camera LPC armed from lstseq {science1[-1] + 1}" in caplog.text
    # the done sets were skipped, every other frame reduced in the second run
    assert report.ok
    assert report.science is not None
    skipped = [s for s in science1 if s // 50 in done]
    assert report.science.skipped_frames == len(skipped)
    assert report.science.state.frames_reduced == total - len(skipped)
    # one row per exposed slot in the nightly file
    assert (await anyio.to_thread.run_sync(nightly_lstseqs, night)).tolist() == science
    warnings = await anyio.to_thread.run_sync(events_of, night, "WarningEvent")
    assert not [w for w in warnings if w["source"] == "camera"]
