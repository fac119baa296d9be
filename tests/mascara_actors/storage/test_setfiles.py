"""Per-set files: content, sorting, index, validation, atomic writing, the one-writer lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import h5py
import numpy as np
import pytest

from mascara_actors import records as R
from mascara_actors.errors import StorageError
from mascara_actors.faults import fill_file_system
from mascara_actors.storage import (
    NightId,
    NightLock,
    SetFile,
    SetWriter,
    list_set_files,
    set_file_path,
)
from tests.disks import tmpfs
from tests.mascara_actors.storage._data import HEADER, NIGHT, make_night, write_sets

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def night_dir(tmp_path: Path) -> Path:
    """A fresh, empty camera-night directory path (not created)."""
    return tmp_path / NIGHT


def test_set_file_holds_sorted_records_and_index(night_dir: Path) -> None:
    data = make_night(1, nsets=1)[0]
    shuffled = data.records[np.random.default_rng(0).permutation(len(data.records))]
    with SetWriter(night_dir, header=HEADER) as w:
        path = w.write_set("fast", data.setidx, shuffled, stars=data.stars,
                           station=data.station, astrometry=data.astrometry)
    assert path == night_dir / "tmp" / f"fast_{data.setidx:09d}.hdf5"
    with h5py.File(path, "r") as f:
        assert dict(f.attrs) == {"night": "20240315", "site": "LP", "camera": "C",
                                 "kind": "fast", "setidx": data.setidx, "format_version": 1}
        recs = f["records"][()]
        index = f["index"][()]
        assert f["header"].attrs["lat"] == pytest.approx(28.76)
        np.testing.assert_array_equal(f["header"].attrs["aper"], [2.5, 4.5])
        assert f["stars"][()].tobytes() == data.stars.tobytes()
        assert f["station"][()].tobytes() == data.station.tobytes()
        assert f["astrometry"][()].tobytes() == data.astrometry.tobytes()
    assert recs.dtype == R.fast_record_dtype()
    # sorted by (id, lstseq) and holding exactly the input records
    key = recs["id"].astype(np.int64) * 10**9 + recs["lstseq"].astype(np.int64)
    assert np.all(np.diff(key) > 0)
    order = np.lexsort((data.records["lstseq"], data.records["id"]))
    assert recs.tobytes() == data.records[order].tobytes()
    # the index slices each star's rows
    assert index["count"].sum() == len(recs)
    for row in index[[0, len(index) // 2, -1]]:
        rows = recs[row["start"]:row["start"] + row["count"]]
        assert np.all(rows["id"] == row["id"])
        assert row["count"] == np.count_nonzero(data.records["id"] == row["id"])


def test_any_structured_dtype_is_stored_faithfully(night_dir: Path) -> None:
    dtype = np.dtype([("lstseq", "u8"), ("id", "i4"), ("note", "S5"), ("vec", "f4", (3,)),
                      ("ok", "?")])
    recs = np.zeros(4, dtype=dtype)
    recs["lstseq"] = [5, 3, 5, 4]
    recs["id"] = [2, 2, 1, 1]
    recs["note"] = [b"a", b"bb", b"ccc", b"dddd"]
    recs["vec"] = np.arange(12).reshape(4, 3)
    recs["ok"] = [True, False, True, False]
    stars = np.zeros(2, dtype=[("id", "i4"), ("name", "S8")])
    stars["id"] = [1, 2]
    station = np.zeros(3, dtype=[("lstseq", "u8")])
    with SetWriter(night_dir) as w:
        path = w.write_set("slow", 7, recs, stars=stars, station=station)
    with h5py.File(path, "r") as f:
        back = f["records"][()]
    assert back.dtype == dtype
    assert back.tobytes() == recs[[3, 2, 1, 0]].tobytes()


def test_existing_set_is_not_replaced_unless_asked(night_dir: Path) -> None:
    sets = make_night(2, nsets=1)
    with SetWriter(night_dir) as w:
        write_sets(w, sets)
        before = set_file_path(night_dir, "fast", sets[0].setidx).read_bytes()
        with pytest.raises(StorageError, match=r"exists: set \d+ is already on disk"):
            write_sets(w, sets)
        assert set_file_path(night_dir, "fast", sets[0].setidx).read_bytes() == before
        w.write_set("fast", sets[0].setidx, sets[0].records[:10], stars=sets[0].stars,
                    station=sets[0].station, overwrite=True)
        np.testing.assert_array_equal(w.completed_sets("fast"), [sets[0].setidx])
    with h5py.File(set_file_path(night_dir, "fast", sets[0].setidx), "r") as f:
        assert len(f["records"]) == 10


@pytest.mark.parametrize(("change", "message"), [
    ("no_id", r"records have no field \['id'\]"),
    ("orphan", r"records of ids \[\d+\] have no row in stars"),
    ("dup_star", "stars has repeated ids"),
    ("plain", "records must be a 1-d structured numpy array"),
    ("unicode", "cannot be stored in HDF5"),
])
def test_bad_input_is_refused(night_dir: Path, change: str, message: str) -> None:
    data = make_night(3, nsets=1)[0]
    recs, stars = data.records, data.stars
    if change == "no_id":
        recs = recs[[n for n in recs.dtype.names if n != "id"]]
    elif change == "orphan":
        stars = stars[1:]
    elif change == "dup_star":
        stars = np.concatenate([stars, stars[:1]])
    elif change == "plain":
        recs = np.zeros(3)
    elif change == "unicode":
        stars = np.zeros(len(stars), dtype=[("id", "i4"), ("name", "U4")])
        stars["id"] = data.stars["id"]
    with SetWriter(night_dir) as w:
        with pytest.raises(StorageError, match=message):
            w.write_set("fast", data.setidx, recs, stars=stars, station=data.station)
        assert w.completed_sets("fast").size == 0
    assert list((night_dir / "tmp").iterdir()) == []


def test_writer_must_be_open(night_dir: Path) -> None:
    data = make_night(4, nsets=1)[0]
    w = SetWriter(night_dir)
    with pytest.raises(StorageError, match="is not open"):
        w.write_set("fast", data.setidx, data.records, stars=data.stars, station=data.station)


@pytest.mark.parametrize(("name", "message"), [
    ("2024031LPC", "not a camera-night directory"),
    ("20241315LPC", "not a calendar date"),
    ("20240315LPX", "must be one letter of NESWC"),
])
def test_night_directory_name_is_checked(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        SetWriter(tmp_path / name)


def test_night_id() -> None:
    nid = NightId.from_dir("/data/20240315LSW")
    assert (nid.night, nid.site, nid.camera, nid.name) == ("20240315", "LS", "W", "20240315LSW")
    assert nid.site_obs == "LaSilla"
    assert NightId("20240315", "AU", "C").site_obs == "AU"


def test_stale_tmp_files_are_removed_at_start(night_dir: Path) -> None:
    (night_dir / "tmp").mkdir(parents=True)
    (night_dir / "lightcurves").mkdir()
    stale = [night_dir / "tmp" / "fast_000000001.hdf5.tmp",
             night_dir / "lightcurves" / f"fast_{NIGHT}.hdf5.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    keep = night_dir / "tmp" / "notes.txt"
    keep.write_text("not ours")
    with SetWriter(night_dir):
        assert [p.exists() for p in stale] == [False, False]
        assert keep.exists()


def test_list_set_files_reads_names_only(night_dir: Path) -> None:
    sets = make_night(5, nsets=3)
    with SetWriter(night_dir) as w:
        write_sets(w, sets)
        write_sets(w, sets[:1], kind="slow")
    found = list_set_files(night_dir, "fast")
    assert sorted(found) == [s.setidx for s in sets]
    assert list(list_set_files(night_dir, "slow")) == [sets[0].setidx]


def test_second_writer_is_refused_with_the_holder_pid(night_dir: Path) -> None:
    with SetWriter(night_dir):
        with pytest.raises(StorageError, match=rf"locked by another writer \(process "
                                               rf"{os.getpid()}@"):
            SetWriter(night_dir).open()
        with pytest.raises(StorageError, match="only one process may write"):
            NightLock(night_dir).acquire()
    # released: the next writer gets it
    with SetWriter(night_dir) as w:
        assert w.lock.held
    assert not w.lock.held


def test_writer_in_another_process_is_refused(night_dir: Path) -> None:
    code = ("import sys, time; from mascara_actors.storage import SetWriter\n"
            "w = SetWriter(sys.argv[1]).open(); print('locked', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(night_dir)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StorageError, match=rf"process {proc.pid}@"):
            SetWriter(night_dir).open()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    # the kernel dropped the dead holder's lock
    with SetWriter(night_dir) as w:
        assert w.lock.held


def test_the_lock_holds_on_a_full_disk_and_is_released(tmp_path: Path) -> None:
    """A full disk takes no holder's name: the lock is held all the same (no descriptor left
    holding it behind a raised error, which refused the next writer, even of this process,
    as 'locked by another writer')."""
    with tmpfs(tmp_path / "disk", 1 << 20) as disk:
        night_dir = disk / NIGHT
        night_dir.mkdir()
        fill_file_system(disk / "filler")
        lock = NightLock(night_dir).acquire()
        assert lock.held
        with pytest.raises(StorageError, match=r"locked by another writer \(process unknown"):
            NightLock(night_dir).acquire()
        lock.release()
        assert NightLock(night_dir).acquire().held


def test_async_writer_writes_and_releases(night_dir: Path) -> None:
    sets = make_night(6, nsets=2)

    async def main() -> list[Path]:
        async with SetWriter(night_dir) as w:
            return [await w.write_set_async("fast", s.setidx, s.records, stars=s.stars,
                                            station=s.station) for s in sets]

    for backend in ("trio", "asyncio"):
        paths = anyio.run(main, backend=backend)
        for p, s in zip(paths, sets, strict=True):
            with h5py.File(p, "r") as f:
                assert len(f["records"]) == len(s.records)
            p.unlink()
    lock = NightLock(night_dir).acquire()
    assert lock.held
    lock.release()


def test_set_file_reader_returns_what_was_written(night_dir: Path, tmp_path: Path) -> None:
    data = make_night(2, nsets=1)[0]
    with SetWriter(night_dir, header=HEADER) as w:
        path = w.write_set("fast", data.setidx, data.records, stars=data.stars,
                           station=data.station, astrometry=data.astrometry)
    ids, counts = np.unique(data.records["id"], return_counts=True)
    with SetFile(path) as sf:
        assert sf.setidx == data.setidx
        np.testing.assert_array_equal(sf.ids(), ids)
        np.testing.assert_array_equal(sf.counts(), counts)
        assert sf.station().tobytes() == data.station.tobytes()
        assert sf.astrometry().tobytes() == data.astrometry.tobytes()
        some = [int(ids[3]), int(ids[-1])]
        got = sf.lightcurves([*some, 999_999])  # a star not in the set is left out
        assert sorted(set(got["id"].tolist())) == sorted(some)
        assert len(got) == int(counts[3] + counts[-1])
        mine = data.records[np.isin(data.records["id"], some)]
        assert sorted(got["lstseq"].tolist()) == sorted(mine["lstseq"].tolist())
    # the same file under another night's directory belongs elsewhere
    other = tmp_path / "20240316LPC" / "tmp"
    other.mkdir(parents=True)
    moved = other / path.name
    moved.write_bytes(path.read_bytes())
    with pytest.raises(StorageError, match=r"belongs elsewhere.*20240315"):
        SetFile(moved)
    with pytest.raises(StorageError, match="kind"):
        SetFile(path, "medium")
