"""Recorded nights: writing them (hw/sim/recording.py, hw/sim/truth.py) and replaying them
(hw/recorded.py)."""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
import pytest
import trio.lowlevel
import trio.testing
from astropy.io import fits

from hw.recorded import RecordedNight, ReplayStats
from hw.sim.night_start import choose_start_lstseq
from hw.sim.recording import RecordedNightInfo, record_night
from hw.sim.truth import TRUTH_FILENAME, read_truth
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, SensorConfig, load_config
from mascara_actors.ephemeris import night_date, sun_altitude
from mascara_actors.errors import ConfigError, StorageError
from mascara_actors.rawframe import RawFrame, raw_filename, read_raw, write_raw
from mascara_actors.sidereal import SiteReference, lstseq2date, slot_length_solar_s
from tests.hw.conftest import (
    N_BIAS,
    N_DARK,
    N_FLAT,
    N_SCIENCE,
    NIGHT_UTC,
    Recorded,
    mini_sensor,
)

pytestmark = pytest.mark.backends("trio-autojump")


@pytest.fixture(scope="module")
def camera() -> CameraConfig:
    """LPC from the repository's config (shared, immutable)."""
    return load_config().camera("LPC")


@pytest.fixture(scope="module")
def sensor() -> SensorConfig:
    """The ``mini`` sensor of the shared recorded night (shared, immutable)."""
    return mini_sensor()


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    """Hipparcos 2 (shared, read-only)."""
    return Catalogue.load()


def expected_plan(info: RecordedNightInfo) -> list[tuple[int, str]]:
    first = info.first_lstseq
    return (
        [(first + i, "bias") for i in range(N_BIAS)]
        + [(first + N_BIAS + i, "dark") for i in range(N_DARK)]
        + [(first + N_BIAS + N_DARK + i, "flat") for i in range(N_FLAT)]
        + [(info.start_lstseq + i, "science") for i in range(N_SCIENCE)]
    )


def copy_frames(recorded: Recorded, dest: Path, kinds=("science",), count=None) -> list[Path]:
    """Copy some of the recorded night's frames into ``dest``; returns the copies."""
    dest.mkdir(exist_ok=True)
    plan = [(s, k) for s, k in expected_plan(recorded.info) if k in kinds][:count]
    out = []
    for lstseq, kind in plan:
        name = raw_filename(lstseq, "C", kind, ext=".fits.fz")
        out.append(Path(shutil.copy(recorded.info.directory / name, dest / name)))
    return out


async def replay_all(night: RecordedNight, **kwargs) -> list[RawFrame]:
    return [frame async for frame in night.replay(**kwargs)]


# --- recording --------------------------------------------------------------------------------


def test_record_night_writes_the_frames_of_the_plan(recorded):
    info = recorded.info
    plan = expected_plan(info)
    assert info.first_lstseq == info.start_lstseq - N_BIAS - N_DARK - N_FLAT
    assert info.end_lstseq == info.start_lstseq + N_SCIENCE - 1
    assert info.n_frames == len(plan) == 17
    names = {raw_filename(s, "C", k, ext=".fits.fz") for s, k in plan}
    assert set(os.listdir(info.directory)) == names | {TRUTH_FILENAME}
    # Built aside and renamed into place: no scratch directory is left next to it.
    assert os.listdir(info.directory.parent) == [info.directory.name]
    assert recorded.progress == tuple((i, 17) for i in range(18))


def test_recorded_night_replays_in_lstseq_order_with_headers(recorded):
    info, sky = recorded.info, recorded.sky
    night = RecordedNight(info.directory)
    plan = expected_plan(info)
    assert [(f.lstseq, f.kind) for f in night.frames()] == plan
    assert [f.lstseq for f in night.frames("science")] == [s for s, k in plan if k == "science"]
    assert night.camera == "C"
    frames = anyio.run(replay_all, night)
    assert [(f.header.lstseq, f.header.imagetyp) for f in frames] == plan
    for frame, (lstseq, kind) in zip(frames, plan, strict=True):
        assert frame.header == sky.header(lstseq, kind)
        assert frame.data.dtype == np.uint16
        assert frame.data.shape == (364, 552)
    science = frames[N_BIAS + N_DARK + N_FLAT]
    assert np.array_equal(science.data, recorded.first_science.raw)  # Rice is lossless
    assert night.stats == ReplayStats(frames=17, yielded=17, ignored_files=1)


def test_truth_file_holds_every_science_frame(recorded):
    info, sky = recorded.info, recorded.sky
    truth = read_truth(info.truth_path)
    assert len(truth.truth) == info.n_truth_rows
    assert np.all(np.diff(truth.truth["lstseq"].astype(np.int64)) >= 0)
    science = [s for s, k in expected_plan(info) if k == "science"]
    assert np.unique(truth.truth["lstseq"]).tolist() == science
    assert np.array_equal(
        truth.truth[truth.truth["lstseq"] == science[0]], recorded.first_science.truth
    )  # before the transit
    mid = sky.exposure(science[6]).truth
    assert np.array_equal(truth.truth[truth.truth["lstseq"] == science[6]], mid)
    assert truth.model == sky.model
    assert truth.transits == recorded.settings.transits
    assert truth.meta["CAMID"] == "LPC"
    assert truth.meta["SEED"] == recorded.settings.seed
    assert truth.settings["render.prnu"] == recorded.settings.render.prnu
    assert [str(n) for n in truth.frames["filename"]] == sorted(
        n for n in os.listdir(info.directory) if n != TRUTH_FILENAME
    )
    # The transit: the star is 2 % down in the frames within half its duration of the epoch.
    (transit,) = truth.transits
    star = truth.truth[truth.truth["id"] == recorded.transit_hip]
    jdmid = dict(zip(truth.frames["lstseq"].tolist(), truth.frames["jdmid"], strict=True))
    inside = np.array(
        [
            abs(jdmid[s] - transit.epoch_jd) * 24 <= transit.duration_h / 2
            for s in star["lstseq"].tolist()
        ]
    )
    assert inside.sum() == 3
    np.testing.assert_allclose(star["transit"], np.where(inside, 0.98, 1.0), atol=1e-6)
    assert np.all(truth.truth["transit"][truth.truth["id"] != recorded.transit_hip] == 1.0)


def test_recording_twice_gives_identical_files(tmp_path, camera, sensor, catalogue):
    start = int(SiteReference().local_sidereal_time(NIGHT_UTC).lstseq)
    small = dataclasses.replace(sensor, nx=296, ny=194, xsize=256, ysize=170)
    runs = [
        record_night(
            tmp_path / name,
            camera,
            catalogue,
            start_lstseq=start,
            n_science=1,
            sensor=small,
            n_bias=1,
            n_dark=1,
            compression=".fits",
        )
        for name in ("a", "b")
    ]
    names = sorted(os.listdir(runs[0].directory))
    assert names == sorted(os.listdir(runs[1].directory))
    assert len(names) == 4
    for name in names:
        a = (runs[0].directory / name).read_bytes()
        b = (runs[1].directory / name).read_bytes()
        assert a == b, name


def test_record_night_refuses_bad_arguments(tmp_path, camera, catalogue, sensor):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("x")
    with pytest.raises(StorageError, match=r"busy is not empty \(it holds notes.txt\)"):
        record_night(busy, camera, catalogue, start_lstseq=100, n_science=1, sensor=sensor)
    with pytest.raises(ValueError, match=r"compression must be one of"):
        record_night(
            tmp_path / "x", camera, catalogue, start_lstseq=100, n_science=1, compression=".fz"
        )
    with pytest.raises(ValueError, match=r"n_dark must be an integer >= 0, got -1"):
        record_night(tmp_path / "x", camera, catalogue, start_lstseq=100, n_science=1, n_dark=-1)
    with pytest.raises(ValueError, match=r"leaves no room for 20 calibration slots"):
        record_night(tmp_path / "x", camera, catalogue, start_lstseq=5, n_science=1)
    assert sorted(os.listdir(tmp_path)) == ["busy"]


def test_interrupted_recording_leaves_nothing(tmp_path, camera, catalogue, sensor):
    small = dataclasses.replace(sensor, nx=296, ny=194, xsize=256, ysize=170)

    class Stop(Exception):
        pass

    def progress(done: int, total: int) -> None:
        if done == 2:
            raise Stop

    target = tmp_path / "night"
    with pytest.raises(Stop):
        record_night(
            target,
            camera,
            catalogue,
            start_lstseq=10**7,
            n_science=3,
            sensor=small,
            n_bias=1,
            n_dark=1,
            progress=progress,
        )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("camera_id", "date"), [("LPC", "2026-03-20"), ("LSC", "20260102")])
def test_choose_start_lstseq_is_the_first_slot_below_the_altitude(camera_id, date):
    camera = load_config().camera(camera_id)
    seq = choose_start_lstseq(camera, date)
    starts = lstseq2date(np.array([seq - 1, seq]), format="jd")
    alt = sun_altitude(starts, camera.site)
    assert alt[0] >= -12.0 > alt[1]
    assert night_date(float(starts[1]), camera.site) == datetime.date.fromisoformat(date)
    darker = choose_start_lstseq(camera, date, sun_alt_deg=-18.0)
    # The Sun sinks 6 more degrees in 20-40 minutes at these latitudes.
    assert 150 < darker - seq < 450


def test_choose_start_lstseq_rejects_bad_input(camera):
    with pytest.raises(ValueError, match=r"night date '2026-13-01' is not a date"):
        choose_start_lstseq(camera, "2026-13-01")
    with pytest.raises(ValueError, match=r"sun_alt_deg must be between -18 and 10"):
        choose_start_lstseq(camera, "2026-03-20", sun_alt_deg=-30.0)


# --- replaying: bad input ---------------------------------------------------------------------


def test_missing_or_empty_directories_are_refused(tmp_path, recorded):
    with pytest.raises(ConfigError, match=r"recorded night .*nowhere does not exist"):
        RecordedNight(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"is not a directory"):
        RecordedNight(recorded.info.truth_path)
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "12345C.fits").write_text("too few digits")
    with pytest.raises(ConfigError, match=r"holds no raw frames"):
        RecordedNight(tmp_path)


def test_frames_of_two_cameras_are_refused(tmp_path, recorded):
    copies = copy_frames(recorded, tmp_path, count=3)
    shutil.copy(copies[0], tmp_path / copies[0].name.replace("C.fits", "N.fits"))
    with pytest.raises(ConfigError, match=r"2 cameras: C \(3 files\), N \(1 file\)"):
        RecordedNight(tmp_path)


def test_unreadable_files_are_counted_and_skipped(tmp_path, recorded, caplog):
    copies = copy_frames(recorded, tmp_path, count=9)
    data = copies[1].read_bytes()
    copies[1].write_bytes(data[: len(data) * 6 // 10])  # cut mid-file
    rng = np.random.default_rng(5)
    copies[3].write_bytes(rng.bytes(2880))  # garbage, but a whole FITS block
    copies[5].write_bytes(rng.bytes(1000))  # garbage
    gz = copies[6].with_name(copies[6].name.replace(".fits.fz", ".fits.gz"))
    copies[6].rename(gz)
    gz.write_bytes(rng.bytes(5000))  # not gzip
    copies[6] = gz
    fits.PrimaryHDU(np.zeros((4, 4), np.uint16)).writeto(copies[8], overwrite=True)  # no keys
    night = RecordedNight(tmp_path)
    with caplog.at_level("WARNING", logger="hw.recorded"):
        frames = anyio.run(replay_all, night)
    bad = (1, 3, 5, 6, 8)
    assert [f.path.name for f in frames] == [c.name for i, c in enumerate(copies) if i not in bad]
    assert night.stats == ReplayStats(frames=9, yielded=4, skipped_unreadable=5)
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for i in bad:
        assert copies[i].name in warned
    assert "truncated" in warned
    assert "header lacks" in warned


def test_a_file_cut_at_a_block_boundary_is_skipped(tmp_path, recorded):
    (copy,) = copy_frames(recorded, tmp_path, count=1)
    frame = read_raw(copy)
    plain = tmp_path / copy.name.replace(".fits.fz", ".fits")
    copy.unlink()
    write_raw(plain, frame.data, frame.header)
    data = plain.read_bytes()
    plain.write_bytes(data[: 2880 * (len(data) // 2880 // 2)])  # whole blocks, half the pixels
    night = RecordedNight(tmp_path)
    assert anyio.run(replay_all, night) == []
    assert night.stats.skipped_unreadable == 1


def test_duplicated_slots_use_the_first_file(tmp_path, recorded):
    copies = copy_frames(recorded, tmp_path, count=3)
    frame = read_raw(copies[1])
    write_raw(
        copies[1].with_name(copies[1].name.replace(".fits.fz", ".fits")), frame.data, frame.header
    )
    # A dark in a science frame's slot is a duplicate too: one exposure per slot.
    dark_name = copies[2].name.replace("C.fits", "Cdark.fits")
    shutil.copy(copies[2], tmp_path / dark_name)
    night = RecordedNight(tmp_path)
    assert [f.path.name for f in night.frames()] == [
        copies[0].name,
        copies[1].name.replace(".fits.fz", ".fits"),  # X.fits sorts before X.fits.fz
        copies[2].name,  # X.fits.fz sorts before Xdark.fits.fz
    ]
    frames = anyio.run(replay_all, night)
    assert [f.header.lstseq for f in frames] == [
        frame.header.lstseq - 1,
        frame.header.lstseq,
        frame.header.lstseq + 1,
    ]
    assert np.array_equal(frames[1].data, frame.data)
    assert night.stats == ReplayStats(frames=3, yielded=3, skipped_duplicate=2)


def test_header_disagreeing_with_the_name_is_skipped(tmp_path, recorded):
    copies = copy_frames(recorded, tmp_path, count=2)
    wrong_slot = tmp_path / raw_filename(recorded.info.start_lstseq + 100, "C", ext=".fits.fz")
    shutil.copy(copies[0], wrong_slot)
    wrong_kind = tmp_path / raw_filename(recorded.info.start_lstseq + 101, "C", "dark")
    frame = read_raw(copies[1])
    header = dataclasses.replace(frame.header, lstseq=recorded.info.start_lstseq + 101)
    write_raw(wrong_kind, frame.data, header)  # LSTSEQ as named, but IMAGETYP science
    night = RecordedNight(tmp_path)
    frames = anyio.run(replay_all, night)
    assert [f.path.name for f in frames] == [c.name for c in copies]
    assert night.stats == ReplayStats(frames=4, yielded=2, skipped_mismatch=2)


def test_replay_rejects_a_bad_speed(recorded):
    night = RecordedNight(recorded.info.directory)
    for speed in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"speed must be a positive number"):
            night.replay(realtime=True, speed=speed)
    with pytest.raises(ValueError, match=r"kind must be one of"):
        night.frames("twilight")


# --- replaying: pacing ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_realtime_replay_keeps_the_slot_cadence_in_virtual_time(recorded, tmp_path):
    copies = copy_frames(recorded, tmp_path, kinds=("dark", "flat", "science"), count=10)
    copies[6].unlink()  # a missing slot: the next frame comes two slots later
    night = RecordedNight(tmp_path)
    assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
    slot = slot_length_solar_s()
    assert slot == pytest.approx(6.38253, abs=1e-5)  # 6.4 sidereal seconds
    for speed in (1.0, 4.0):
        start = anyio.current_time()
        times, seqs = [], []
        async for frame in night.replay(realtime=True, speed=speed):
            times.append(anyio.current_time() - start)
            seqs.append(frame.header.lstseq)
        assert seqs == [f.lstseq for f in night.frames()]
        expected = [(s - seqs[0] + 1) * slot / speed for s in seqs]
        np.testing.assert_allclose(times, expected, rtol=0, atol=1e-6)
        gaps = np.diff(times) * speed / slot
        np.testing.assert_allclose(gaps, [1, 1, 1, 1, 1, 2, 1, 1], atol=1e-6)
    assert night.stats.yielded == 18


@pytest.mark.anyio
@pytest.mark.backends("asyncio", "trio")
async def test_fast_replay_runs_on_both_backends(recorded, anyio_backend):
    night = await anyio.to_thread.run_sync(RecordedNight, recorded.info.directory)
    seqs = [frame.header.lstseq async for frame in night.replay(kind="science")]
    assert seqs == list(range(recorded.info.start_lstseq, recorded.info.end_lstseq + 1))
    assert night.stats.yielded == N_SCIENCE


@pytest.mark.anyio
async def test_a_cancelled_wait_keeps_the_frame_for_the_next_call(recorded, tmp_path):
    copies = copy_frames(recorded, tmp_path, count=2)
    night = RecordedNight(tmp_path)
    frames = night.replay(realtime=True)
    start = anyio.current_time()
    with anyio.move_on_after(3.0) as scope:
        await frames.__anext__()
    assert scope.cancelled_caught
    first = await frames.__anext__()
    assert first.path.name == copies[0].name
    assert anyio.current_time() - start == pytest.approx(slot_length_solar_s(), abs=1e-6)
    assert (await frames.__anext__()).path.name == copies[1].name
    with pytest.raises(StopAsyncIteration):
        await frames.__anext__()
    assert night.stats.yielded == 2
