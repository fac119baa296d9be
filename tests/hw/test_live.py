"""The live frame source (hw/live/) on the simulated camera device rendering the sky.

One device process (``hw.sim.process.DeviceProcess``) renders the simulated sky of camera LPC on
the ``crop512`` sensor (544 x 400 pixel frames) through :func:`hw.sim.sky_renderer.sky_renderer`,
with a clock running ``SPEED`` times faster than real time from a dark hour of 2026-03-20 at
La Palma. The tests drive it through the real :class:`hw.driver.SerialCamera` (a pty and a
TCP socket) and check what :func:`hw.live.live_frames` writes into the raw archive: the
header values and pixels equal to ``SimulatedSky.exposure(lstseq).raw`` rendered here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from hw.driver import SerialCamera
from hw.live import LiveFrames, LiveStats, live_frames, raw_header
from hw.readout import FrameHeader
from hw.sim.exposure import ExposureMeta
from hw.sim.process import DeviceProcess
from hw.sim.sky import SimulatedSky, SimulationSettings
from hw.sim.sky_renderer import sky_device_config, sky_renderer
from hw.source import FrameSource
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, SensorConfig, load_config
from mascara_actors.errors import ConfigError
from mascara_actors.frames import FrameReady
from mascara_actors.rawframe import raw_filename, read_raw
from mascara_actors.sidereal import REFERENCE_SITE, lstseq2date, slot_length_solar_s

pytestmark = pytest.mark.backends("asyncio", "trio")

#: Device seconds per real second: one 6.38 s slot takes 0.32 s, several renders' worth.
SPEED = 20.0
SEED = 5
#: Stars to V 8.4 only (the fast-photometry limit): renders take 0.07 s instead of 0.35 s.
VMAX = 8.4
#: 2026-03-20 23:00 UTC, a dark hour at La Palma.
START_JD = 2461119.5 + 23.0 / 24.0
AMBIENT_C = 12.5
#: Real seconds without a frame before live_frames polls the camera.
POLL_S = 0.5


@pytest.fixture(scope="module")
def camera() -> CameraConfig:
    """LPC from the repository's config (shared, immutable)."""
    return load_config().camera("LPC")


@pytest.fixture(scope="module")
def sensor() -> SensorConfig:
    """The crop512 sensor (shared, immutable)."""
    return load_config().sensor("crop512")


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    """Hipparcos 2 (shared, read-only)."""
    return Catalogue.load()


@pytest.fixture(scope="module")
def sky(camera: CameraConfig, sensor: SensorConfig, catalogue: Catalogue) -> SimulatedSky:
    """The sky the device renders, built here independently (shared; treat as read-only)."""
    return SimulatedSky(
        camera, catalogue, sensor=sensor, settings=SimulationSettings(seed=SEED, vmax=VMAX)
    )


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeviceProcess]:
    """One simulated camera rendering the sky, shared by the tests of this module.

    The cooler stays off and the CCD starts at ambient, so its temperature is exactly
    ``AMBIENT_C`` in every frame header. Each test opens its own driver; live_frames aborts
    what an earlier test left armed.
    """
    cfg = sky_device_config(
        tmp_path_factory.mktemp("skydevice"),
        camera_id="LPC",
        sensor="crop512",
        seed=SEED,
        speed=SPEED,
        start_jd=START_JD,
        ambient_c=AMBIENT_C,
        start_temp_c=AMBIENT_C,
        temp_event_interval_s=0.0,
        readout_s=0.5,
        max_queued_frames=8,
        render_options={"vmax": VMAX},
    )
    with DeviceProcess(cfg, startup_timeout_s=120.0) as dev:
        yield dev


@contextlib.asynccontextmanager
async def open_camera(dev: DeviceProcess) -> AsyncIterator[SerialCamera]:
    """A driver on the shared device, with its faults cleared."""
    async with SerialCamera(dev.tty_path, dev.readout_address, timeout_s=0.5) as cam:
        await cam.link.request("FAULT", "clear", retries=8)
        yield cam


def live(cam: SerialCamera, archive: Path, sensor: SensorConfig, **kw: object) -> LiveFrames:
    """live_frames on the shared device with this module's camera, site and poll period."""
    return live_frames(
        cam,
        archive,
        camera="C",
        site="LaPalma",
        sensor=sensor,
        poll_s=POLL_S,
        **kw,  # type: ignore[arg-type]
    )


async def assert_frames_are_the_sky(
    frames: list[FrameReady], sky: SimulatedSky, sensor: SensorConfig
) -> None:
    """Every file is a readable raw frame of the right slot, holding exactly the sky (read
    in a worker thread: the event loop must not block)."""
    await anyio.to_thread.run_sync(_frames_are_the_sky, frames, sky, sensor)


def _frames_are_the_sky(frames: list[FrameReady], sky: SimulatedSky, sensor: SensorConfig) -> None:
    for f in frames:
        raw = read_raw(f.path)
        h = raw.header
        assert f.path.name == raw_filename(f.lstseq, "C")
        assert (h.lstseq, h.camera, h.site, h.imagetyp) == (f.lstseq, "C", "LaPalma", "science")
        assert (h.x0, h.xsize, h.y0, h.ysize) == (sensor.x0, sensor.xsize, sensor.y0, sensor.ysize)
        truth = sky.header(f.lstseq)
        assert h.lstidx == truth.lstidx
        assert h.jd == float(lstseq2date(f.lstseq, format="jd"))
        assert h.jdmid == pytest.approx(truth.jdmid, abs=1e-9)
        assert h.exptime == pytest.approx(slot_length_solar_s(), abs=1e-9)
        assert h.lst == pytest.approx(truth.lst, abs=1e-6)  # hours: 3.6 ms
        assert abs((h.utc - truth.utc).total_seconds()) < 1e-3
        assert h.ccdtemp == AMBIENT_C
        np.testing.assert_array_equal(raw.data, sky.exposure(f.lstseq).raw)


# -- without the device ----------------------------------------------------------------------


def test_raw_header_follows_the_frame_and_the_sensor(sensor: SensorConfig) -> None:
    lstseq = 35_123_456
    jd = float(lstseq2date(lstseq, format="jd"))
    frame = FrameHeader(lstseq, jd, 6.3825, 0.9, -14.25, sensor.ny, sensor.nx)
    h = raw_header(frame, camera="W", site="LaSilla", sensor=sensor)
    assert (h.lstseq, h.lstidx) == (lstseq, lstseq % 13500)
    assert (h.camera, h.site, h.imagetyp) == ("W", "LaSilla", "science")
    assert (h.jd, h.exptime, h.ccdtemp, h.dwldtime) == (jd, 6.3825, -14.25, 0.9)
    assert h.jdmid == pytest.approx(jd + 6.3825 / 2 / 86400, abs=1e-10)
    # LST at the slot start is lstidx slots of 6.4 sidereal seconds into the sidereal day
    assert h.lst == pytest.approx((lstseq % 13500) * 6.4 / 3600.0, abs=1e-6)
    assert (h.x0, h.xsize, h.y0, h.ysize) == (16, 512, 8, 384)
    utc = Time(jd, format="jd", scale="utc").to_datetime()
    assert abs((h.utc - utc).total_seconds()) < 1e-3


def test_the_live_header_is_the_simulators_for_a_frame_opening_on_its_slot(
    sky: SimulatedSky, sensor: SensorConfig
) -> None:
    """One builder (``RawHeader.of_exposure``) for both: a frame whose exposure opens on its
    slot boundary, as the simulated camera's do, gets the simulator's header key for key
    (LST and UTC-OBS to the bit), but MARGTIME (the simulator's fixed 0.1 s)."""
    for lstseq in (35_123_456, 65_344_200, 65_344_259, 13_500 * 5000):
        truth = sky.header(lstseq)
        frame = FrameHeader(
            lstseq, truth.jd, truth.exptime, truth.dwldtime, truth.ccdtemp, sensor.ny, sensor.nx
        )
        live = raw_header(frame, camera=truth.camera, site=truth.site, sensor=sensor)
        assert dataclasses.replace(live, margtime=truth.margtime) == truth


def test_a_late_exposure_start_moves_the_lst_at_the_sidereal_rate(sensor: SensorConfig) -> None:
    lstseq = 65_344_200
    start = float(lstseq2date(lstseq, format="jd"))
    on_slot = (lstseq % 13500) * 6.4 / 3600.0
    for late_s in (0.25, 3.0):
        frame = FrameHeader(lstseq, start + late_s / 86400, 6.38, 0.9, -15.0, sensor.ny, sensor.nx)
        h = raw_header(frame, camera="C", site="LaPalma", sensor=sensor)
        # the sidereal time of the start itself, to the 40 us resolution of a float JD
        assert h.lst == pytest.approx(REFERENCE_SITE.local_sidereal_time(h.jd).lst, abs=2e-8)
        assert h.lst - on_slot == pytest.approx(late_s * 1.0027379 / 3600, abs=3e-8)


def test_sky_renderer_follows_the_ccd_temperature_on_request(sky: SimulatedSky, sensor) -> None:
    """With ``follow_ccdtemp`` the dark current is that of the device's CCD temperature (the
    default renderer, the plain ``exposure(lstseq)``, is checked against the device below)."""
    lstseq = int(REFERENCE_SITE.local_sidereal_time(START_JD).lstseq)
    meta = ExposureMeta(lstseq, float(lstseq2date(lstseq, format="jd")), 6.38, 20.0, "C")
    shape = (sensor.ny, sensor.nx)
    render = sky_renderer(
        shape, SEED, sensor="crop512", vmax=VMAX, follow_ccdtemp=True, warm_jd=meta.jd_start
    )
    warm = render(lstseq, meta)
    assert (warm.shape, warm.dtype) == (shape, np.uint16)
    np.testing.assert_array_equal(warm, sky.exposure(lstseq, ccdtemp_c=20.0).raw)
    # a CCD at +20 C instead of the simulation's -15 C collects more dark current
    cold = sky.exposure(lstseq).raw
    assert warm.astype(float).mean() > cold.astype(float).mean()


def test_sky_renderer_refuses_a_shape_that_is_not_the_full_readout() -> None:
    with pytest.raises(ConfigError, match=r"differs from the full readout \(400, 544\)"):
        sky_renderer((384, 512), SEED, sensor="crop512")


class _Untouchable:
    """A driver that fails the test if the source speaks to it."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the source used driver.{name}")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"count": 0}, r"count=0 must be >= 1"),
        ({"max_frames": 0}, r"max_frames=0 must be >= 1"),
        ({"camera_timeout_s": float("nan")}, r"camera_timeout_s=nan must be > 0"),
        ({"lead_slots": 0}, r"lead_slots=0 must be >= 1"),
        ({"imagetyp": "light"}, r"imagetyp='light' is not one of"),
        ({"ext": ".png"}, r"ext must be \.fits"),
        ({"poll_s": 0.0}, r"poll_s=0.0 must be a positive number"),
    ],
)
def test_bad_arguments_are_refused_when_the_source_is_made(
    sensor: SensorConfig, tmp_path: Path, option: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        live_frames(
            _Untouchable(),  # type: ignore[arg-type]
            tmp_path,
            camera="C",
            site="LaPalma",
            sensor=sensor,
            stop=anyio.Event(),
            **option,  # type: ignore[arg-type]
        )


@pytest.mark.anyio
async def test_a_source_not_iterated_sends_nothing_and_counts_nothing(
    sensor: SensorConfig, tmp_path: Path
) -> None:
    """The source is a FrameSource with its own counters; made and closed without a frame
    asked for, it never speaks to the camera and is over."""
    source = live(_Untouchable(), tmp_path / "raw", sensor, stop=anyio.Event())  # type: ignore[arg-type]
    assert isinstance(source, FrameSource)
    assert source.stats == LiveStats()
    await source.aclose()
    await source.aclose()
    with pytest.raises(StopAsyncIteration):
        await source.__anext__()
    assert source.stats == LiveStats()
    assert not (tmp_path / "raw").exists()


def test_live_stats_are_snapshots_that_add_up() -> None:
    a = LiveStats(frames=3, missing=1, arms=1)
    b = LiveStats(frames=2, stale=1, arms=2, link_errors=4, existing=1)
    assert a + b == LiveStats(frames=5, missing=1, stale=1, arms=3, link_errors=4, existing=1)
    assert sum((a, b), LiveStats()) == a + b
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.frames = 0  # type: ignore[misc]


# -- against the device ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_live_frames_write_the_rendered_sky(device, sky, sensor, tmp_path) -> None:
    with anyio.fail_after(60):
        async with open_camera(device) as cam:
            stream = live(cam, tmp_path, sensor, count=8, stop=anyio.Event())
            async with aclosing(stream) as frames:
                got = [f async for f in frames]
            status = await cam.status()
    stats = stream.stats
    lstseqs = [f.lstseq for f in got]
    assert lstseqs == list(range(lstseqs[0], lstseqs[0] + 8))
    assert dataclasses.astuple(stats)[:5] == (8, 0, 0, 0, 0)  # frames, missing, ..., unwritten
    assert stats.arms == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f.path.name for f in got]
    arrivals = [f.arrived for f in got]
    assert arrivals == sorted(arrivals)
    assert time.time() - 60 < arrivals[0]
    # the source released the camera: nothing armed, readout off
    assert (status.state, status.readout_on) == ("IDLE", False)
    cards = fits.getheader(got[0].path)
    assert (cards["CAMSER"], cards["DWLDTIME"]) == (f"SIM{SEED:04d}", 0.5)
    await assert_frames_are_the_sky(got, sky, sensor)


@pytest.mark.anyio
async def test_a_damaged_frame_is_lost_alone(device, sky, sensor, tmp_path) -> None:
    """Corrupt, short and cut-off frames (the last one closes the readout link) are dropped
    and counted; the frames between them arrive intact and the source goes on."""
    faults = {1: "corruptframe", 3: "shortframe", 5: "cutlink"}
    count = 10
    got: list[FrameReady] = []
    with anyio.fail_after(60):
        async with open_camera(device) as cam:
            before = cam.stats.readout
            stream = live(cam, tmp_path, sensor, count=count, stop=anyio.Event())
            async with aclosing(stream) as frames:
                async for frame in frames:
                    got.append(frame)
                    if len(got) in faults:
                        await cam.link.request("FAULT", faults[len(got)])
            after = cam.stats.readout
            dropped: dict[int, str] = {}
            while True:
                try:
                    event = cam.events.receive_nowait()
                except anyio.WouldBlock:
                    break
                if event.args[0] == "DROPPED":
                    dropped[int(event.args[1])] = event.args[2]
    stats = stream.stats
    first = got[0].lstseq
    lstseqs = [f.lstseq for f in got]
    assert lstseqs == sorted(set(lstseqs))
    missing = set(range(first, first + count)) - set(lstseqs)
    # exactly the frames the camera reports as damaged are missing, and nothing else
    assert missing == {s for s in dropped if first <= s < first + count}
    assert {"corrupt", "short", "cutlink"} <= set(dropped.values())
    assert stats.missing == len(missing) == count - len(got)
    assert (stats.frames, stats.rejected, stats.write_failed) == (len(got), 0, 0)
    assert after.dropped - before.dropped == len(missing)
    assert after.disconnects - before.disconnects == 1  # the cut link, reconnected
    await assert_frames_are_the_sky(got, sky, sensor)


@pytest.mark.anyio
async def test_the_source_goes_on_while_the_control_line_is_away(
    device, sky, sensor, tmp_path
) -> None:
    """The camera's serial port vanishes for 1.5 s (about 5 slots) mid-sequence: frames keep
    coming on the readout link, the driver reopens the port, and the clean-up reaches the
    camera."""
    count = 6
    got: list[FrameReady] = []
    with anyio.fail_after(60):
        async with open_camera(device) as cam:
            before = cam.stats.control
            stream = live(cam, tmp_path, sensor, count=count, stop=anyio.Event())
            async with aclosing(stream) as frames:
                async for frame in frames:
                    got.append(frame)
                    if len(got) == 2:
                        await cam.link.request("FAULT", "vanish", "1.5")
            status = await cam.status()
            after = cam.stats.control
    stats = stream.stats
    lstseqs = [f.lstseq for f in got]
    assert lstseqs == list(range(lstseqs[0], lstseqs[0] + count))
    assert (stats.frames, stats.missing) == (count, 0)
    assert after.disconnects - before.disconnects >= 1
    assert after.connects - before.connects >= 1
    assert (status.state, status.readout_on) == ("IDLE", False)
    await assert_frames_are_the_sky(got[-1:], sky, sensor)


@pytest.mark.anyio
async def test_a_camera_that_loses_its_sequence_is_armed_again(device, sensor, tmp_path) -> None:
    """An ABORT from elsewhere (as a power cycle would) leaves the camera idle: the poll
    finds it so, arms it again ahead of its clock, and the slots in between are missing,
    reported once with the reason."""
    stop = anyio.Event()
    got: list[FrameReady] = []
    reported: list[tuple[int, int, str]] = []
    with anyio.fail_after(60):
        async with (
            open_camera(device) as cam,
            aclosing(
                live(cam, tmp_path, sensor, stop=stop, on_gap=lambda *gap: reported.append(gap))
            ) as frames,
        ):
            async for frame in frames:
                got.append(frame)
                if len(got) == 2:
                    await cam.abort()
                if frames.stats.arms == 2 and frame.lstseq > got[-2].lstseq + 1:
                    stop.set()  # the first frame after the gap
    stats = frames.stats
    lstseqs = [f.lstseq for f in got]
    gaps = [b - a - 1 for a, b in itertools.pairwise(lstseqs) if b - a > 1]
    assert len(gaps) == 1
    assert stats.arms == 2
    assert stats.missing == gaps[0]
    assert stats.frames == len(got)
    before_gap = next(a for a, b in itertools.pairwise(lstseqs) if b - a > 1)
    assert [(a, b) for a, b, _ in reported] == [(before_gap + 1, before_gap + gaps[0])]
    assert "lost its armed sequence" in reported[0][2]


@pytest.mark.anyio
async def test_stop_ends_the_source_cleanly(device, sky, sensor, tmp_path) -> None:
    stop = anyio.Event()
    got: list[FrameReady] = []
    with anyio.fail_after(60):
        async with open_camera(device) as cam:
            async with aclosing(live(cam, tmp_path, sensor, stop=stop)) as frames:
                async for frame in frames:
                    got.append(frame)
                    if len(got) == 3:
                        stop.set()
                        stopped_at = time.monotonic()
            ended_after_s = time.monotonic() - stopped_at
            status = await cam.status()
    stats = frames.stats
    lstseqs = [f.lstseq for f in got]
    assert len(got) >= 3
    assert lstseqs == list(range(lstseqs[0], lstseqs[0] + len(got)))
    assert (stats.frames, stats.missing) == (len(got), 0)
    # no new exposure was waited for: the end comes well within one slot of real time
    assert ended_after_s < slot_length_solar_s() / SPEED + 2.0
    assert (status.state, status.readout_on) == ("IDLE", False)
    # every file written is complete and was announced
    assert sorted(p.name for p in tmp_path.iterdir()) == [f.path.name for f in got]
    await assert_frames_are_the_sky(got[:1], sky, sensor)


@pytest.mark.anyio
async def test_a_raw_file_that_exists_is_never_overwritten(device, sky, sensor, tmp_path) -> None:
    """The camera delivers a slot whose raw file is already in the archive (an earlier run):
    the file on disk is kept byte for byte, the new frame is left out and counted, and the
    frames around it are written as usual."""
    with anyio.fail_after(60):
        async with open_camera(device) as cam:
            first = (await cam.status()).lstseq + 3
            existing = tmp_path / raw_filename(first + 1, "C")
            existing.write_bytes(b"an earlier run's frame")
            before = existing.stat()
            stream = live(cam, tmp_path, sensor, first_lstseq=first, count=3, stop=anyio.Event())
            async with aclosing(stream) as frames:
                got = [f async for f in frames]
    stats = stream.stats
    assert [f.lstseq for f in got] == [first, first + 2]
    assert existing.read_bytes() == b"an earlier run's frame"
    after = existing.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (stats.frames, stats.existing, stats.missing) == (2, 1, 0)
    await assert_frames_are_the_sky(got, sky, sensor)


@pytest.mark.anyio
async def test_a_camera_of_another_shape_is_refused(device, tmp_path) -> None:
    crop1024 = await anyio.to_thread.run_sync(lambda: load_config().sensor("crop1024"))
    with anyio.fail_after(20):
        async with open_camera(device) as cam:
            stream = live(cam, tmp_path, crop1024, count=2, stop=anyio.Event())
            with pytest.raises(ConfigError, match=r"reads out 400 x 544 pixels"):
                async with aclosing(stream) as frames:
                    await frames.__anext__()
            status = await cam.status()
    assert status.state == "IDLE"  # nothing was armed
    assert list(tmp_path.iterdir()) == []
