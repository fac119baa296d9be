"""The real driver against the simulated camera device, over a real pty and a real socket.

Each test starts the device in its own process (``hw.sim.process.DeviceProcess``) with a fast
clock, drives it through :class:`hw.driver.SerialCamera` and checks values: identity,
temperatures, frame lstseqs and pixels, and the counters after each injected fault.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import numpy as np
import pytest

from hw.driver import CameraStatus, SerialCamera
from hw.protocol import EVT, CommandRejected, ErrorCode, FrameType, Message, parse_kv
from hw.readout import ReadoutFrame
from hw.sim.device_config import DeviceConfig
from hw.sim.exposure import ExposureMeta, decode_pattern_lstseq, seeded_pattern
from hw.sim.process import DeviceProcess
from mascara_actors.errors import CameraDisconnected, CameraError, CameraTimeout
from mascara_actors.sidereal import lstseq2date, slot_length_solar_s

pytestmark = [pytest.mark.anyio, pytest.mark.backends("asyncio", "trio")]

#: Device seconds per real second: one 6.38 s slot takes 0.16 s of real time.
SPEED = 40.0
#: CCD temperature time constant, device seconds (short, so each settling takes 0.3 s).
TAU_S = 1.0
AMBIENT_C = 15.0
SHAPE = (48, 64)
SEED = 7


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeviceProcess]:
    """One simulated camera process shared by the tests of this module (started once).

    Each test resets it through :func:`fresh_camera`; counters on the device accumulate, so
    tests compare differences.
    """
    cfg = DeviceConfig(
        workdir=str(tmp_path_factory.mktemp("device")),
        speed=SPEED,
        shape=SHAPE,
        seed=SEED,
        tau_s=TAU_S,
        ambient_c=AMBIENT_C,
        temp_event_interval_s=0.0,
    )
    with DeviceProcess(cfg) as dev:
        yield dev


@asynccontextmanager
async def fresh_camera(dev: DeviceProcess, **options: float) -> AsyncIterator[SerialCamera]:
    """A driver on ``dev``, after putting the device back to its idle, fault-free state."""
    opts = {"timeout_s": 0.25, "retries": 3} | options
    async with SerialCamera(dev.tty_path, dev.readout_address, **opts) as cam:  # type: ignore[arg-type]
        for kind, *args in (
            ("FAULT", "clear"),
            ("ABORT",),
            ("READOUT", "STOP"),
            ("COOLER", "OFF"),
            ("SETPOINT", "0"),
        ):
            await cam.link.request(kind, *args, retries=8)
        yield cam


def expected_pixels(frame: ReadoutFrame) -> np.ndarray:
    h = frame.header
    meta = ExposureMeta(h.lstseq, h.jd_start, h.exptime_s, h.ccdtemp_c, "C")
    return seeded_pattern(shape=SHAPE, seed=SEED)(h.lstseq, meta)


def assert_valid(frame: ReadoutFrame) -> None:
    """The frame is exactly what the device rendered for its lstseq."""
    assert frame.pixels.shape == SHAPE
    assert decode_pattern_lstseq(frame.pixels) == frame.header.lstseq
    np.testing.assert_array_equal(frame.pixels, expected_pixels(frame))


async def receive_frames(cam: SerialCamera, n: int, first: int) -> list[ReadoutFrame]:
    """The next ``n`` frames of this test's sequence (older frames still queued are skipped)."""
    out: list[ReadoutFrame] = []
    while len(out) < n:
        frame = await cam.frames.receive()
        if frame.header.lstseq >= first:
            out.append(frame)
    return out


async def receive_events(cam: SerialCamera, name: str, n: int, first: int) -> list[Message]:
    """The next ``n`` events ``name`` about slots ``>= first`` (other events are skipped)."""
    out: list[Message] = []
    while len(out) < n:
        event = await cam.events.receive()
        if event.args[0] == name and int(event.args[1]) >= first:
            out.append(event)
    return out


async def settled_status(cam: SerialCamera, done: Callable[[CameraStatus], bool]) -> CameraStatus:
    """Poll the status until ``done`` holds (the camera counts a frame once fully sent)."""
    while not done(status := await cam.status()):
        await anyio.sleep(0.02)
    return status


# -- normal operation ------------------------------------------------------------------------


async def test_identify(device: DeviceProcess) -> None:
    with anyio.fail_after(10):
        async with fresh_camera(device) as cam:
            ident = await cam.identify()
    assert (ident.camera, ident.ny, ident.nx, ident.vendor) == ("C", *SHAPE, "MASCARA-SIM")
    assert ident.serial == f"SIM{SEED:04d}"


async def test_cooler_brings_the_ccd_to_the_setpoint(device: DeviceProcess) -> None:
    with anyio.fail_after(20):
        async with fresh_camera(device) as cam:
            # from any previous state, the cooler off brings the CCD back to ambient
            await cam.set_setpoint(-10.0)
            await anyio.sleep(12 * TAU_S / SPEED)
            assert await cam.ccd_temperature() == pytest.approx(AMBIENT_C, abs=1e-3)
            state = await cam.cooling_state()
            assert (state.cooler_on, state.setpoint_c) == (False, -10.0)
            await cam.set_cooler(True)
            temps = [await cam.ccd_temperature()]
            while temps[-1] > -9.99:
                await anyio.sleep(0.01)
                temps.append(await cam.ccd_temperature())
            assert np.all(np.diff(temps) <= 1e-9), "a first-order approach never overshoots"
            await anyio.sleep(12 * TAU_S / SPEED)
            assert await cam.ccd_temperature() == pytest.approx(-10.0, abs=1e-3)
            # beyond the cooler's reach (45 K below ambient) it settles at ambient - 45
            await cam.set_setpoint(-70.0)
            await anyio.sleep(12 * TAU_S / SPEED)
            assert await cam.ccd_temperature() == pytest.approx(AMBIENT_C - 45.0, abs=1e-3)
            await cam.set_cooler(False)
            await anyio.sleep(12 * TAU_S / SPEED)
            state = await cam.cooling_state()
    assert state.cooler_on is False
    assert state.ccdtemp_c == pytest.approx(AMBIENT_C, abs=1e-3)


async def test_cooling_follows_the_first_order_law(device: DeviceProcess) -> None:
    with anyio.fail_after(10):
        async with fresh_camera(device) as cam:
            await anyio.sleep(12 * TAU_S / SPEED)  # settle at ambient
            await cam.set_cooler(True)  # set-point 0 C
            t0 = await cam.status()
            await anyio.sleep(0.5 * TAU_S / SPEED)
            t1 = await cam.status()
    elapsed = (t1.jd - t0.jd) * 86400.0
    predicted = t0.cooling.ccdtemp_c * math.exp(-elapsed / TAU_S)
    assert t1.cooling.ccdtemp_c == pytest.approx(predicted, abs=5e-3)
    assert 0.0 < t1.cooling.ccdtemp_c < t0.cooling.ccdtemp_c < AMBIENT_C


async def test_armed_exposures_arrive_with_consecutive_lstseq(device: DeviceProcess) -> None:
    with anyio.fail_after(20):
        async with fresh_camera(device) as cam:
            before = await cam.status()
            await cam.start_readout()
            first = await cam.arm_next(5)
            frames = await receive_frames(cam, 5, first)
            exposed = await receive_events(cam, "EXPOSED", 5, first)
            done = await receive_events(cam, "DONE", 1, first)
            status = await settled_status(cam, lambda s: s.frames_sent == before.frames_sent + 5)
    assert [f.header.lstseq for f in frames] == list(range(first, first + 5))
    for f in frames:
        assert_valid(f)
        assert f.header.jd_start == pytest.approx(float(lstseq2date(f.header.lstseq)), abs=1e-9)
        assert f.header.exptime_s == pytest.approx(slot_length_solar_s())
    assert [(e.kind, int(e.args[1])) for e in exposed] == [
        (EVT, s) for s in range(first, first + 5)
    ]
    assert [int(e.args[1]) for e in done] == [first + 4]
    assert (status.state, status.next_lstseq, status.frames_dropped) == (
        "IDLE",
        None,
        before.frames_dropped,
    )
    assert cam.stats.readout.dropped == 0


async def test_arm_refusals_and_abort(device: DeviceProcess) -> None:
    with anyio.fail_after(10):
        async with fresh_camera(device) as cam:
            now = (await cam.status()).lstseq
            with pytest.raises(CommandRejected, match="LATE") as late:
                await cam.arm(now, 3)
            first = await cam.arm_next(100, lead_slots=3)
            armed = await cam.status()
            with pytest.raises(CommandRejected, match="BUSY") as busy:
                await cam.arm(first + 200, 1)
            cancelled = await cam.abort()
            after = await cam.status()
            with pytest.raises(CommandRejected, match="BADARG"):
                await cam.link.request("COOLER", "MAYBE")
            with pytest.raises(CommandRejected, match="BADARG"):
                await cam.link.request("FAULT", "nosuchfault")  # hidden command validates too
    assert (late.value.code, busy.value.code) == (ErrorCode.LATE, ErrorCode.BUSY)
    assert (armed.state, armed.next_lstseq, armed.remaining) in {
        ("ARMED", first, 100),
        ("EXPOSING", first + 1, 99),
    }
    assert 98 <= cancelled <= 100
    assert (after.state, after.remaining) == ("IDLE", 0)
    assert cam.stats.control.rejected == 4


async def raw_status(cam: SerialCamera) -> dict[str, str]:
    """The STATUS reply as sent, key by key."""
    return parse_kv((await cam.link.request("STATUS")).args[1:])


async def test_dark_and_bias_sequences_carry_their_exposure_time(device: DeviceProcess) -> None:
    with anyio.fail_after(20):
        async with fresh_camera(device) as cam:
            await cam.start_readout()
            firsts: dict[FrameType, int] = {}
            armed: dict[FrameType, dict[str, str]] = {}
            frames: dict[FrameType, list[ReadoutFrame]] = {}
            for kind in (FrameType.DARK, FrameType.BIAS):
                firsts[kind] = first = (await cam.status()).lstseq + 3
                await cam.arm(first, 2, kind)
                armed[kind] = await raw_status(cam)
                frames[kind] = await receive_frames(cam, 2, first)
                await receive_events(cam, "DONE", 1, first)
            # an unknown frame type is refused and arms nothing
            first = (await cam.status()).lstseq + 3
            with pytest.raises(CommandRejected, match="BADARG") as bad:
                await cam.link.request("ARM", str(first), "2", "GREY")
            refused = await raw_status(cam)
            # without a type the sequence is science again
            await cam.arm(first, 1)
            light = await raw_status(cam)
            cancelled = await cam.abort()
    for kind, exptime_s in ((FrameType.DARK, slot_length_solar_s()), (FrameType.BIAS, 0.0)):
        first = firsts[kind]
        assert (armed[kind]["state"], armed[kind]["next"], armed[kind]["remaining"]) == (
            "ARMED",
            str(first),
            "2",
        )
        assert armed[kind]["type"] == kind.value
        assert [f.header.lstseq for f in frames[kind]] == [first, first + 1]
        for f in frames[kind]:
            assert_valid(f)
            assert f.header.exptime_s == exptime_s
            assert f.header.jd_start == pytest.approx(
                float(lstseq2date(f.header.lstseq)), abs=1e-9
            )
    assert bad.value.code == ErrorCode.BADARG
    assert "GREY" in str(bad.value)
    assert (refused["state"], refused["next"], refused["remaining"]) == ("IDLE", "-1", "0")
    assert (light["state"], light["type"]) == ("ARMED", "LIGHT")
    assert cancelled == 1
    assert cam.stats.control.rejected == 1
    assert cam.stats.readout.dropped == 0


async def test_unread_events_drop_the_oldest(device: DeviceProcess) -> None:
    with anyio.fail_after(20):
        async with fresh_camera(device, max_buffered_events=2) as cam:
            before = await cam.status()
            first = await cam.arm_next(4)
            await settled_status(cam, lambda s: s.frames_dropped == before.frames_dropped + 4)
            await anyio.sleep(0.05)  # the last event follows the counter update
            kept = [cam.events.receive_nowait() for _ in range(2)]
            with pytest.raises(anyio.WouldBlock):
                cam.events.receive_nowait()
    # per slot EXPOSED then DROPPED (readout is off); DONE comes before the last DROPPED
    assert [(e.args[0], int(e.args[1])) for e in kept] == [
        ("DONE", first + 3),
        ("DROPPED", first + 3),
    ]
    stats = cam.stats.control
    assert stats.events - stats.events_dropped == 2
    assert stats.events >= 9


async def test_streams_exist_only_inside_async_with(device: DeviceProcess) -> None:
    cam = SerialCamera(device.tty_path, device.readout_address)
    with pytest.raises(RuntimeError, match="only inside 'async with SerialLink"):
        _ = cam.events
    with pytest.raises(RuntimeError, match="only inside 'async with ReadoutReceiver"):
        _ = cam.frames
    await cam.aclose()  # closing a camera never opened is a no-op


# -- serial faults ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["garbage", "badcrc", "dropreply"])
async def test_serial_reply_faults_are_recovered(device: DeviceProcess, fault: str) -> None:
    with anyio.fail_after(10):
        async with fresh_camera(device, timeout_s=0.2) as cam:
            await cam.link.request("FAULT", fault, "2")
            ident = await cam.identify()
            temp = await cam.ccd_temperature()
            third = await cam.identify()  # no fault left
    assert ident == third
    assert math.isfinite(temp)
    stats = cam.stats.control
    assert stats.timeouts == 0
    if fault == "garbage":  # junk, then a line cut off by the reply, before two replies
        assert stats.parser.garbage_bytes >= 2 * 8
        assert stats.parser.truncated == 2
        assert stats.retries == 0
    elif fault == "badcrc":  # both faults hit IDN: two timeouts, answered from the cache
        assert stats.parser.bad_checksum == 2
        assert stats.retries == 2
    else:
        assert stats.retries == 2
        assert stats.parser.errors == 0


async def test_silent_camera_raises_camera_timeout(device: DeviceProcess) -> None:
    with anyio.fail_after(10):
        async with fresh_camera(device, timeout_s=0.1, retries=1) as cam:
            await cam.link.request("FAULT", "mute", "0.6")
            with pytest.raises(CameraTimeout, match=r"no reply to IDN .* after 2 attempt"):
                await cam.identify()
            await anyio.sleep(0.6)
            ident = await cam.identify()
    assert ident.camera == "C"
    assert cam.stats.control.timeouts == 1


async def test_vanished_port_is_reopened_on_the_same_path(device: DeviceProcess) -> None:
    with anyio.fail_after(15):
        async with fresh_camera(device, timeout_s=0.1, retries=0) as cam:
            await cam.link.request("FAULT", "vanish", "0.8")
            while cam.link.connected:
                await anyio.sleep(0.01)
            assert not os.path.exists(device.tty_path)
            with pytest.raises(CameraDisconnected, match=r"not available within 0\.1 s"):
                await cam.identify()
            await cam.link.wait_connected()
            ident = await cam.identify()
    assert ident.camera == "C"
    stats = cam.stats.control
    assert (stats.connects, stats.disconnects) == (2, 1)
    assert stats.open_failures >= 1


async def test_camera_vanishing_mid_exposure_loses_no_frame(device: DeviceProcess) -> None:
    with anyio.fail_after(20):
        async with fresh_camera(device, timeout_s=0.3, retries=6) as cam:
            before = await cam.status()
            await cam.start_readout()
            first = await cam.arm_next(6)
            frames = await receive_frames(cam, 2, first)
            await cam.link.request("FAULT", "vanish", "0.3")
            frames += await receive_frames(cam, 4, first)
            # retried until the port is back
            status = await settled_status(cam, lambda s: s.frames_sent >= before.frames_sent + 6)
    assert [f.header.lstseq for f in frames] == list(range(first, first + 6))
    for f in frames:
        assert_valid(f)
    assert status.frames_sent == before.frames_sent + 6
    assert cam.stats.control.disconnects == 1


# -- readout faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "counter"),
    [("shortframe", "short"), ("corruptframe", "corrupt"), ("cutlink", "short")],
)
async def test_readout_faults_drop_only_the_damaged_frame(
    device: DeviceProcess, fault: str, counter: str
) -> None:
    with anyio.fail_after(20):
        async with fresh_camera(device) as cam:
            before = await cam.status()
            await cam.start_readout()
            await cam.link.request("FAULT", fault)
            first = await cam.arm_next(4)
            frames = await receive_frames(cam, 3, first)
            dropped = await receive_events(cam, "DROPPED", 1, first)
            status = await settled_status(cam, lambda s: s.frames_sent >= before.frames_sent + 3)
    # the first frame is damaged on the wire and dropped; the others arrive intact
    assert [f.header.lstseq for f in frames] == [first + 1, first + 2, first + 3]
    for f in frames:
        assert_valid(f)
    stats = cam.stats.readout
    assert getattr(stats, counter) == 1
    assert stats.dropped == 1
    assert (stats.connects, stats.disconnects) == ((2, 1) if fault == "cutlink" else (1, 0))
    assert [(int(e.args[1]), e.args[2]) for e in dropped] == [
        (first, {"shortframe": "short", "corruptframe": "corrupt", "cutlink": "cutlink"}[fault])
    ]
    assert status.frames_sent - before.frames_sent == 3
    assert status.frames_dropped - before.frames_dropped == 1


async def test_readout_off_discards_frames_on_the_camera(device: DeviceProcess) -> None:
    with anyio.fail_after(20):
        async with fresh_camera(device) as cam:
            before = await cam.status()
            first = await cam.arm_next(2)
            dropped = await receive_events(cam, "DROPPED", 2, first)
            status = await cam.status()
    assert [(int(e.args[1]), e.args[2]) for e in dropped] == [
        (first, "readout-off"),
        (first + 1, "readout-off"),
    ]
    assert status.frames_sent == before.frames_sent
    assert status.frames_dropped == before.frames_dropped + 2
    assert cam.stats.readout.frames == 0


# -- the device process ----------------------------------------------------------------------


def test_device_process_cleans_up(tmp_path: Path) -> None:
    with DeviceProcess(DeviceConfig(workdir=str(tmp_path))) as dev:
        link, pid = Path(dev.tty_path), dev.pid
        assert link.resolve().as_posix().startswith("/dev/pts/")
        os.kill(pid, 0)  # alive
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not link.exists()
    assert not (tmp_path / "device.json").exists()


def test_device_start_failure_is_reported_with_its_log(tmp_path: Path) -> None:
    cfg = DeviceConfig(workdir=str(tmp_path), render="no_such_module:factory")
    with pytest.raises(CameraError, match=r"(?s)exited with code 1.*No module named"):
        DeviceProcess(cfg).start()


def test_device_config_round_trips_through_json(tmp_path: Path) -> None:
    cfg = DeviceConfig(workdir=str(tmp_path), speed=5.0, shape=(10, 20), faults={"garbage": 2})
    assert DeviceConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"speed": 0.0}, r"^speed=0\.0 must be a finite number > 0$"),
        ({"readout_s": 7.0}, r"^readout_s=7\.0 must be in \[0, 6\.3825\) s$"),
        ({"faults": {"meteor": 1}}, r"^unknown fault\(s\) \['meteor'\]"),
    ],
)
def test_device_config_rejects_bad_values(
    tmp_path: Path, overrides: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        DeviceConfig(workdir=str(tmp_path), **overrides)  # type: ignore[arg-type]
