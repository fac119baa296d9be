"""A station night on the simulated camera, shared by the station and console tests.

:func:`short_night_config` copies the repository's configuration with short calibration
sequences and a night between Sun altitudes of -10 degrees (the default +5 degrees saturates
the first frames in the simulated twilight); :func:`sky_device` starts the simulated camera
(its own process, a real pty and readout socket) rendering LPC on the ``crop512`` sensor
with a clock ``SPEED`` times faster than real time.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread

from hw.driver import CameraDriver
from hw.sim.process import DeviceProcess
from hw.sim.sky_renderer import sky_device_config
from mascara_actors.app.station import Station
from mascara_actors.config import Config, load_config
from mascara_actors.rawframe import parse_raw_filename
from mascara_actors.sidereal import lstseq2date

NOON_JD = 2461119.5 + 0.5
"""Noon UTC of 2026-03-20: the station tests' night is the one after it."""
SPEED = 25.0
SEED = 3
#: Stars to V 8.4 only (the fast-photometry limit): renders take 0.07 s instead of 0.35 s.
VMAX = 8.4
SUN_ALT = -10.0
N_CAL = 4
GAP = 3


def short_night_config(directory: Path) -> Path:
    """A copy of the repository's config in ``directory/config``; returns its path."""
    dst = directory / "config"
    shutil.copytree(load_config().directory, dst)
    text = (dst / "reduction.toml").read_text()
    for key, value in {
        **{f"{p}_{k}": N_CAL for p in ("n", "min") for k in ("bias", "dark", "flat")},
        "calibration_gap_slots": GAP,
        "sun_alt_start_deg": SUN_ALT,
        "sun_alt_stop_deg": SUN_ALT,
    }.items():
        text, n = re.subn(rf"(?m)^{key}\s*=\s*[-0-9.]+", f"{key} = {value}", text)
        assert n == 1, key
    (dst / "reduction.toml").write_text(text)
    return dst


@asynccontextmanager
async def sky_device(
    workdir: Path, config_dir: Path, start_lstseq: int
) -> AsyncIterator[DeviceProcess]:
    """The simulated camera, running, its clock at slot ``start_lstseq`` (reading the config
    and starting the process happen in a worker thread: never on the event loop)."""

    def make() -> DeviceProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = sky_device_config(
            workdir,
            camera_id="LPC",
            sensor="crop512",
            config_dir=config_dir,
            seed=SEED,
            speed=SPEED,
            start_jd=float(lstseq2date(start_lstseq, format="jd")),
            readout_s=0.5,
            max_queued_frames=8,
            temp_event_interval_s=0.0,
            render_options={"vmax": VMAX},
        )
        return DeviceProcess(cfg, startup_timeout_s=120.0)

    async with await anyio.to_thread.run_sync(make) as dev:
        yield dev


def lpc_station(cam: CameraDriver, config: Config, out: Path, **options: Any) -> Station:
    """The station of camera LPC on the ``crop512`` sensor, polling every 0.5 s."""
    return Station(
        cam,
        config=config,
        camera=config.camera("LPC"),
        sensor=config.sensor("crop512"),
        out_dir=out,
        poll_s=0.5,
        **options,
    )


def raw_frames(night_dir: Path) -> dict[str, list[int]]:
    """lstseqs of the frames in a night's raw archive, by kind (``science``, ``dark``,
    ``bias``, ``flat``; each key present), in order; none while the archive is not made."""
    kinds: dict[str, list[int]] = {"science": [], "dark": [], "bias": [], "flat": []}
    raw = night_dir / "raw"
    for path in raw.iterdir() if raw.is_dir() else ():
        parsed = parse_raw_filename(path.name)
        if parsed is not None:  # a file being written has another name
            kinds[parsed[2]].append(parsed[0])
    return {k: sorted(v) for k, v in kinds.items()}
