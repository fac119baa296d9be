"""The frame source contract (hw/source.py) checked by its conformance suite (hw/testing.py)
against every source: the fake, a recorded night, the paced replay and the live camera on
the simulated device; and the suite itself, against sources broken on purpose (issue 15)."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from hw.driver import SerialCamera
from hw.live import live_frames
from hw.recorded import RecordedNight, paced_frames
from hw.sim.device_config import DeviceConfig
from hw.sim.process import DeviceProcess
from hw.source import FrameSource
from hw.testing import (
    FakeFrameSource,
    FrameSourceContractError,
    SourceMaker,
    check_cancellation,
    check_end_of_night,
    check_failure,
    check_frame_source,
    check_order,
)
from mascara_actors.config import SensorConfig, load_config
from mascara_actors.errors import CameraError, ConfigError
from mascara_actors.frames import FrameReady
from tests.conftest import hang_guard
from tests.hw.conftest import Recorded

FIRST = 65_344_200
"""A slot of 2026-03-20, dark at La Palma."""


def fake_maker(
    directory: Path, lstseqs: tuple[int, ...] = (FIRST, FIRST + 1, FIRST + 3), **options: object
) -> SourceMaker:
    """Makes fake sources, each writing into a new subdirectory of ``directory``."""
    runs = itertools.count()

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[FrameSource]:
        source = FakeFrameSource(directory / f"run{next(runs)}", lstseqs, **options)  # type: ignore[arg-type]
        async with contextlib.aclosing(source):
            yield source

    return make


# -- the fake ----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.backends("asyncio", "trio")
async def test_the_fake_source_keeps_the_contract(tmp_path: Path) -> None:
    made: list[FakeFrameSource] = []

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[FrameSource]:
        made.append(FakeFrameSource(tmp_path / f"run{len(made)}", [FIRST, FIRST + 2, FIRST + 5]))
        async with contextlib.aclosing(made[-1]):
            yield made[-1]

    async def released() -> None:
        assert made[-1].released

    failing = fake_maker(tmp_path / "failing", fail_after=1)
    with anyio.fail_after(20):
        error = await check_frame_source(make, make_failing_source=failing, released=released)
    assert isinstance(error, CameraError)
    assert str(error) == "fake camera C failed after 1 frames (as asked with fail_after)"


# -- the recorded night and the paced replay ---------------------------------------------------


@pytest.mark.anyio
@pytest.mark.backends("trio-autojump", "asyncio")
async def test_a_recorded_night_keeps_the_contract(recorded: Recorded, tmp_path: Path) -> None:
    """Its science frames as a source, at the camera's cadence (a virtual clock on trio)."""
    night = await anyio.to_thread.run_sync(RecordedNight, recorded.info.directory)

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[FrameSource]:
        async with contextlib.aclosing(night.frame_source(realtime=True, speed=100.0)) as source:
            yield source

    @contextlib.asynccontextmanager
    async def missing() -> AsyncIterator[FrameSource]:
        # ConfigError: no such directory
        gone = await anyio.to_thread.run_sync(RecordedNight, tmp_path / "nowhere")
        yield gone.frame_source()  # pragma: no cover

    with hang_guard(60):
        error = await check_frame_source(make, make_failing_source=missing)
        got = await check_order(make)
    assert [f.lstseq for f in got] == [f.lstseq for f in night.frames("science")]
    assert isinstance(error, ConfigError)
    assert "nowhere does not exist" in str(error)


@pytest.mark.anyio
@pytest.mark.backends("trio-autojump", "asyncio")
@pytest.mark.parametrize("realtime", [True, False], ids=["paced", "fast"])
async def test_the_paced_replay_keeps_the_contract(
    recorded: Recorded, realtime: bool, tmp_path: Path
) -> None:
    """``paced_frames`` as ``--replay`` runs it, at the real cadence (100 x) or as fast as it
    goes; it has no failure of its own to provoke (its files are read by the reducer)."""
    night = await anyio.to_thread.run_sync(RecordedNight, recorded.info.directory)
    science = [(f.lstseq, f.path) for f in night.frames("science")]

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[FrameSource]:
        shuffled = science[1::2] + science[::2]  # any order in, lstseq order out
        async with contextlib.aclosing(paced_frames(shuffled, realtime=realtime, speed=100.0)) as s:
            yield s

    with hang_guard(60):
        await check_frame_source(make)


# -- the live camera on the simulated device ---------------------------------------------------

#: Device seconds per real second: one 6.38 s slot takes 0.16 s of real time.
SPEED = 40.0
SHAPE = (48, 64)


@pytest.fixture(scope="module")
def tiny_sensor() -> SensorConfig:
    """The 48 x 64 readout of the seeded-pattern device, with a 40 x 56 science region."""
    crop = load_config().sensor("crop512")
    return dataclasses.replace(crop, name="tiny", ny=48, nx=64, y0=4, x0=4, ysize=40, xsize=56)


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeviceProcess]:
    """A simulated camera rendering seeded patterns (it starts in a second), shared by the
    module; the sources abort what an earlier one left armed."""
    cfg = DeviceConfig(
        workdir=str(tmp_path_factory.mktemp("device")),
        speed=SPEED,
        shape=SHAPE,
        readout_s=0.5,
        temp_event_interval_s=0.0,
        max_queued_frames=8,
    )
    with DeviceProcess(cfg) as dev:
        yield dev


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.backends("trio")
async def test_the_live_camera_keeps_the_contract(
    device: DeviceProcess, tiny_sensor: SensorConfig, tmp_path: Path
) -> None:
    """``live_frames`` through the real serial driver, three frames a night; a camera that
    identifies as another letter is the failure."""
    runs = itertools.count()

    def maker(letter: str) -> SourceMaker:
        @contextlib.asynccontextmanager
        async def make() -> AsyncIterator[FrameSource]:
            async with SerialCamera(device.tty_path, device.readout_address, timeout_s=0.5) as cam:
                source = live_frames(
                    cam,
                    tmp_path / f"run{next(runs)}",
                    camera=letter,
                    site="LaPalma",
                    sensor=tiny_sensor,
                    count=3,
                    stop=anyio.Event(),
                    poll_s=0.5,
                )
                async with contextlib.aclosing(source):
                    yield source

        return make

    async def released() -> None:
        async with SerialCamera(device.tty_path, device.readout_address, timeout_s=0.5) as cam:
            status = await cam.status()
        assert (status.state, status.readout_on) == ("IDLE", False)

    with anyio.fail_after(60):
        error = await check_frame_source(
            maker("C"), make_failing_source=maker("N"), released=released
        )
    assert isinstance(error, ConfigError)
    assert "identifies as camera 'C'" in str(error)


# -- the suite catches broken sources ----------------------------------------------------------


class _Leaky(FakeFrameSource):
    """Never lets go of its lock file."""

    def _release(self) -> None:
        pass


class _Restarting(FakeFrameSource):
    """Starts the night again after its end."""

    async def __anext__(self) -> FrameReady:
        try:
            return await super().__anext__()
        except StopAsyncIteration:
            self._over, self.yielded = False, 0
            raise


class _Deaf:
    """Hands its frames out without ever letting a cancellation in (no checkpoint)."""

    def __init__(self, frames: list[FrameReady]) -> None:
        self._frames = iter(frames)

    def __aiter__(self) -> AsyncIterator[FrameReady]:
        return self

    async def __anext__(self) -> FrameReady:
        try:
            return next(self._frames)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._frames = iter(())


def maker_of(source: FrameSource) -> SourceMaker:
    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[FrameSource]:
        async with contextlib.aclosing(source):
            yield source

    return make


@pytest.mark.anyio
@pytest.mark.backends("asyncio", "trio")
async def test_frames_out_of_order_are_caught(tmp_path: Path) -> None:
    make = fake_maker(tmp_path, (FIRST, FIRST + 2, FIRST + 1))
    with pytest.raises(FrameSourceContractError, match=r"came after .* strictly increasing"):
        await check_order(make)


@pytest.mark.anyio
@pytest.mark.backends("asyncio", "trio")
async def test_a_frame_without_its_file_is_caught(tmp_path: Path) -> None:
    async def ghosts() -> AsyncGenerator[FrameReady, None]:
        for lstseq in (FIRST, FIRST + 1):
            await anyio.lowlevel.checkpoint()
            yield FrameReady(path=tmp_path / f"{lstseq:08d}C.fits", lstseq=lstseq, arrived=1.0)

    with pytest.raises(FrameSourceContractError, match=r"65344200C\.fits does not exist"):
        await check_order(maker_of(ghosts()))


@pytest.mark.anyio
@pytest.mark.backends("asyncio", "trio")
async def test_a_night_that_starts_again_is_caught(tmp_path: Path) -> None:
    make = maker_of(_Restarting(tmp_path, [FIRST, FIRST + 1]))
    with pytest.raises(FrameSourceContractError, match=r"yielded a frame after the end"):
        await check_end_of_night(make)


@pytest.mark.anyio
@pytest.mark.backends("asyncio", "trio")
async def test_a_source_that_does_not_let_go_is_caught(tmp_path: Path) -> None:
    runs = itertools.count()

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[FrameSource]:
        leaky = _Leaky(tmp_path / f"run{next(runs)}", [FIRST, FIRST + 1, FIRST + 2])
        async with contextlib.aclosing(leaky):
            yield leaky

    with pytest.raises(
        FrameSourceContractError,
        match=r"after a consumer was cancelled, the source left behind: 1 more open files "
        r"\(.*\.fake-camera\.lock\)",
    ):
        await check_cancellation(make)


@pytest.mark.anyio
@pytest.mark.backends("asyncio", "trio")
async def test_a_source_that_cannot_be_cancelled_is_caught(tmp_path: Path) -> None:
    async with contextlib.aclosing(FakeFrameSource(tmp_path, [FIRST, FIRST + 1])) as fake:
        frames = [frame async for frame in fake]
    with pytest.raises(FrameSourceContractError, match=r"could not be cancelled"):
        await check_cancellation(maker_of(_Deaf(frames)))


@pytest.mark.anyio
@pytest.mark.backends("asyncio", "trio")
async def test_a_failure_that_is_not_a_mascara_error_is_caught(tmp_path: Path) -> None:
    async def broken() -> AsyncGenerator[FrameReady, None]:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("the camera caught fire")
        yield  # pragma: no cover

    with pytest.raises(
        FrameSourceContractError,
        match=r"failed with RuntimeError: the camera caught fire; a source must fail with a "
        r"MascaraError",
    ):
        await check_failure(maker_of(broken()))
    with pytest.raises(FrameSourceContractError, match=r"ended its night without an error"):
        await check_failure(fake_maker(tmp_path))
