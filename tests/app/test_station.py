"""A station night on the simulated camera: dusk and dawn from the Sun, calibration sequences.

Each test starts a simulated camera device (its own process, a real pty and readout socket)
rendering the sky of LPC on the ``crop512`` sensor, with its clock ``SPEED`` times faster
than real time, and runs :class:`mascara_actors.app.station.Station` on it with a copy of the
repository's
configuration whose night starts and ends at a Sun altitude of -10 degrees (the default +5
degrees saturates the first frames in the simulated twilight) and whose calibration
sequences hold ``N_CAL`` frames of each kind. The Sun's altitude at the slot boundaries is checked
with astropy directly, and the calibration frames against the simulator's own rendering.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
import pytest
from astropy.coordinates import AltAz, get_body
from astropy.time import Time

from hw.driver import SerialCamera
from hw.sim.sky import SimulatedSky
from hw.sim.sky_renderer import build_sky
from mascara_actors.app.reports import StationReport, calibration_start
from mascara_actors.calibration import read_dark_table
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import Config
from mascara_actors.ephemeris import site_location
from mascara_actors.night_window import NightWindow, night_window
from mascara_actors.rawframe import read_raw
from mascara_actors.sidereal import lstseq2date

#: 2026-03-20 at La Palma, noon UTC: the window is that evening's night.
from tests.stations import (
    GAP,
    N_CAL,
    NOON_JD,
    SEED,
    SUN_ALT,
    VMAX,
    lpc_station,
    raw_frames,
    short_night_config,
    sky_device,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's config with the night at -10 deg and short calibration sequences."""
    return short_night_config(tmp_path_factory.mktemp("config"))


@pytest.fixture(scope="module")
def sky(catalogue: Catalogue) -> SimulatedSky:
    """The sky the devices render, built here independently."""
    return build_sky(seed=SEED, camera="LPC", sensor="crop512", vmax=VMAX, catalogue=catalogue)


def sun_alt(config: Config, lstseq: int) -> float:
    """Sun altitude at the start of slot ``lstseq``, degrees, straight from astropy."""
    t = Time(float(lstseq2date(lstseq, format="jd")), format="jd", scale="utc")
    loc = site_location(config.camera("LPC").site)
    return float(get_body("sun", t, loc).transform_to(AltAz(obstime=t, location=loc)).alt.deg)



@pytest.fixture
def station_dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "device", tmp_path / "out"


async def test_dusk_calibration_then_science_from_the_sun(
    config: Config, config_dir: Path, window: NightWindow, catalogue: Catalogue, sky, station_dirs
) -> None:
    """Started before dusk: bias, darks and flats end before the first science slot, which is
    the first to start with the Sun below -10 deg; an operator dark sequence in the night
    re-arms the science; the night ended early runs the dawn sequence and the end chain."""
    workdir, out = station_dirs
    dusk_first = calibration_start(window, config)
    assert dusk_first == window.start_lstseq - GAP - 3 * N_CAL - 3 * 3  # lead 2: 3 per re-arm
    async with (
        sky_device(workdir, config_dir, dusk_first - 10) as dev,
        SerialCamera(dev.tty_path, dev.readout_address, timeout_s=1.0) as cam,
    ):
        station = lpc_station(cam, config, out, max_science_frames=25)
        replies: list[str] = []

        async def operator() -> None:
            while station.stats.frames < 8:
                await anyio.sleep(0.05)
            replies.append(await station.take_darks())

        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:
                tg.start_soon(operator)
                report: StationReport = await station.run(catalogue)

    def check() -> None:  # reads the files: in a worker thread, not on the loop
        assert report.window == window
        assert [c.when for c in report.calibrations] == ["dusk", "operator", "dawn"]
        kinds = raw_frames(report.night_dir)
        science, darks = kinds["science"], kinds["dark"]
        dusk, operator_run, dawn = report.calibrations
        # the dusk sequence: N_CAL of each kind, all before the gap that precedes the night
        assert {k: len(v) for k, v in dusk.frames.items()} == dict.fromkeys(
            ("bias", "dark", "flat"), N_CAL)
        assert dusk.lstseqs[1] < window.start_lstseq - GAP
        # science starts with the first slot that starts with the Sun below -10 deg
        assert science[0] == window.start_lstseq
        assert sun_alt(config, science[0] - 1) >= SUN_ALT > sun_alt(config, science[0])
        assert len(science) == 25
        # the operator's darks sit between science frames, and science went on after them
        op_first, op_last = operator_run.lstseqs
        assert len(operator_run.frames["dark"]) == N_CAL
        assert science[7] < op_first
        assert op_last < science[-1]
        assert not set(range(op_first, op_last + 1)) & set(science)
        assert replies
        assert replies[0].startswith(f"took {N_CAL} darks")
        assert "dark table" in replies[0]
        # dawn: after the last science frame; its master dark tops the table, then the others
        assert dawn.lstseqs[0] > science[-1]
        assert len(darks) == 3 * N_CAL
        table = read_dark_table("LPC", out / "state")
        assert table == [dawn.masters.dark, operator_run.masters.dark, dusk.masters.dark]
        assert all(Path(p).parent == report.night_dir / "binned" for p in table)
        # the science was reduced with the dusk masters, combined and summarised
        assert report.ok
        assert report.science is not None
        assert report.science.state.frames_reduced == 25
        # what the console and the summary count against: the 25 asked for, not the night
        assert report.science.state.frames_expected == 25
        assert report.summary_html is not None
        assert report.summary_html.exists()
        assert station.phase == "night done"
        # the calibration frames are exactly what the simulator renders for those kinds
        for kind in ("bias", "dark", "flat"):
            path = dusk.frames[kind][3]
            raw = read_raw(path)
            assert raw.header.imagetyp == kind
            np.testing.assert_array_equal(raw.data, sky.exposure(raw.header.lstseq, kind).raw)
        bias = read_raw(dusk.frames["bias"][0]).header
        assert bias.exptime == 0.0

    await anyio.to_thread.run_sync(check)


async def test_science_stops_at_dawn_from_the_sun(
    config: Config, config_dir: Path, catalogue: Catalogue, station_dirs
) -> None:
    """Started in the night with an empty dark table: darks first, then science up to the
    last slot that starts with the Sun below -10 deg, then the dawn sequence."""
    workdir, out = station_dirs
    camera = config.camera("LPC")
    dawn = await anyio.to_thread.run_sync(
        night_window, camera.site, NOON_JD + 0.5, config.reduction.night
    )
    start = dawn.stop_lstseq - 40
    async with (
        sky_device(workdir, config_dir, start) as dev,
        SerialCamera(dev.tty_path, dev.readout_address, timeout_s=1.0) as cam,
    ):
        station = lpc_station(cam, config, out)
        with anyio.fail_after(240):
            report = await station.run(catalogue)
        cooling = await cam.cooling_state()

    def check() -> None:  # reads the files: in a worker thread, not on the loop
        assert report.window == dawn
        kinds = raw_frames(report.night_dir)
        science = kinds["science"]
        # the station switched the cooler on at the configured set-point: the CCD cools down
        assert cooling.cooler_on
        assert cooling.setpoint_c == config.reduction.night.ccd_setpoint_c
        temps = [read_raw(report.night_dir / "raw" / f"{s:08d}C.fits").header.ccdtemp
                 for s in (science[0], science[-1])]
        assert temps[1] < temps[0] < 15.0
        assert [c.when for c in report.calibrations] == ["start", "dawn"]
        first_darks = report.calibrations[0]
        assert list(first_darks.frames) == ["dark"]
        assert len(first_darks.frames["dark"]) == N_CAL
        assert first_darks.lstseqs[1] < science[0]
        # the last science slot is the last to start with the Sun below -10 deg
        assert science[-1] == dawn.stop_lstseq - 1
        assert sun_alt(config, science[-1]) < SUN_ALT <= sun_alt(config, science[-1] + 1)
        assert report.calibrations[1].lstseqs[0] > science[-1]
        assert {k: len(v) for k, v in report.calibrations[1].frames.items()} == dict.fromkeys(
            ("bias", "dark", "flat"), N_CAL)
        assert report.ok
        assert report.science.state.frames_reduced == len(science)
        assert [p.name[:5] for p in report.science.nightly_files][:1] == ["fast_"]
        assert read_dark_table("LPC", out / "state")[0] == (
            report.calibrations[1].masters.dark
        )

    await anyio.to_thread.run_sync(check)

