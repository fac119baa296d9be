"""Nightly combine: content against an independent reference, minobs, duplicates,
idempotency, foreign/truncated/other-night files, failures that leave the sets alone."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from mascara_actors import records as R
from mascara_actors.errors import StorageError
from mascara_actors.storage import (
    NightFile,
    NightLock,
    SetWriter,
    combine_night,
    list_set_files,
    nightly_file_path,
)
from tests.mascara_actors.storage._data import (
    HEADER,
    NIGHT,
    make_night,
    nightly_content,
    nightly_lightcurves,
    reference_lightcurves,
    write_sets,
)

MINOBS = 20


@pytest.fixture
def night(tmp_path: Path) -> tuple[Path, list]:
    """A night directory with 6 fresh per-set files; returns (night_dir, sets)."""
    sets = make_night(11, nsets=6, nstars=60)
    night_dir = tmp_path / NIGHT
    with SetWriter(night_dir, header=HEADER) as w:
        write_sets(w, sets)
    return night_dir, sets


def test_combine_matches_reference(night: tuple[Path, list]) -> None:
    night_dir, sets = night
    report = combine_night(night_dir, "fast", minobs=MINOBS)
    expected = reference_lightcurves([s.records for s in sets], MINOBS)
    assert nightly_lightcurves(report.output) == expected
    assert report.output == night_dir / "lightcurves" / f"fast_{NIGHT}.hdf5"
    assert (report.nsets, report.nstars, report.nduplicates) == (6, len(expected), 0)
    itemsize = R.fast_record_dtype(with_id=False).itemsize
    assert report.nrecords == sum(len(v) for v in expected.values()) // itemsize
    all_ids = np.unique(np.concatenate([s.records["id"] for s in sets]))
    assert report.nshort == len(all_ids) - len(expected) > 0
    # the per-set files are gone, and only them
    assert list_set_files(night_dir, "fast") == {}
    assert sorted(report.removed) == sorted(
        night_dir / "tmp" / f"fast_{s.setidx:09d}.hdf5" for s in sets)


def test_tables_and_header(night: tuple[Path, list]) -> None:
    night_dir, sets = night
    report = combine_night(night_dir, "fast", minobs=MINOBS)
    all_recs = np.concatenate([s.records for s in sets])
    with NightFile(report.output) as nf:
        head = nf.header
        assert {k: head[k] for k in ("site-obs", "cam-obs", "night", "site", "camera",
                                     "kind", "format_version", "minobs")} == {
            "site-obs": "LaPalma", "cam-obs": "C", "night": "20240315", "site": "LP",
            "camera": "C", "kind": "fast", "format_version": 1, "minobs": MINOBS}
        assert head["lat"] == pytest.approx(28.76)
        np.testing.assert_array_equal(head["skyrad"], [6.0, 21.0])
        # station: every exposure once, sorted
        station = np.concatenate([s.station for s in sets])
        assert nf.station.tobytes() == station[np.argsort(station["lstseq"])].tobytes()
        # astrometry: the solved sets, one row each
        astro = np.concatenate([s.astrometry for s in sets if s.astrometry is not None])
        assert nf.astrometry.tobytes() == astro.tobytes()
        # stars: recomputed counts, earliest jdstart, catalogue fields kept
        stars = nf.stars
        for row in stars:
            mine = all_recs[all_recs["id"] == row["id"]]
            assert row["nobs"] == len(mine) >= MINOBS
            assert (row["lstseqmin"], row["lstseqmax"]) == (mine["lstseq"].min(),
                                                            mine["lstseq"].max())
            rows = np.concatenate([s.stars[s.stars["id"] == row["id"]] for s in sets])
            assert row["jdstart"] == rows["jdstart"].min()
            assert (row["ra"], row["sptype"]) == (rows["ra"][0], rows["sptype"][0])
        assert np.all(np.diff(stars["id"]) > 0)


def test_chunking_does_not_change_the_file(night: tuple[Path, list], tmp_path: Path) -> None:
    night_dir, _ = night
    copy = tmp_path / "copy" / NIGHT
    shutil.copytree(night_dir, copy)
    a = combine_night(night_dir, "fast", minobs=MINOBS).output
    b = combine_night(copy, "fast", minobs=MINOBS, chunk_stars=3, chunk_records=200).output
    assert a.read_bytes() == b.read_bytes()


def test_idempotent_with_sets_kept_or_gone(night: tuple[Path, list]) -> None:
    night_dir, _ = night
    out = combine_night(night_dir, "fast", minobs=MINOBS, keep_sets=True).output
    first = out.read_bytes()
    assert len(list_set_files(night_dir, "fast")) == 6
    # same sets again: duplicates of what the nightly file holds are dropped
    report = combine_night(night_dir, "fast", minobs=MINOBS)
    assert report.nduplicates > 0
    assert out.read_bytes() == first
    # sets gone: nothing to merge, the file stays
    report = combine_night(night_dir, "fast", minobs=MINOBS)
    assert (report.nsets, report.output) == (0, out)
    assert out.read_bytes() == first


def test_later_sets_extend_an_existing_nightly_file(tmp_path: Path) -> None:
    sets = make_night(12, nsets=6)
    whole, parts = tmp_path / "a" / NIGHT, tmp_path / "b" / NIGHT
    with SetWriter(whole, header=HEADER) as w:
        write_sets(w, sets)
        w.combine("fast", minobs=1)
    with SetWriter(parts, header=HEADER) as w:
        write_sets(w, sets[:3])
        w.combine("fast", minobs=1)
        write_sets(w, sets[3:])
        w.combine("fast", minobs=1)
    assert nightly_content(nightly_file_path(whole, "fast")) == nightly_content(
        nightly_file_path(parts, "fast"))


def test_compressions_give_the_same_content(night: tuple[Path, list], tmp_path: Path) -> None:
    night_dir, _ = night
    contents, filters = [], []
    for compression in ("gzip", "lzf", None):
        copy = tmp_path / str(compression) / NIGHT
        shutil.copytree(night_dir, copy)
        out = combine_night(copy, "fast", minobs=MINOBS, compression=compression).output
        contents.append(nightly_content(out))
        with h5py.File(out, "r") as f:
            ds = f["lightcurves"][next(iter(f["lightcurves"]))]
            filters.append((ds.compression, ds.shuffle))
    assert contents[0] == contents[1] == contents[2]
    assert filters == [("gzip", True), ("lzf", True), (None, False)]


def test_foreign_truncated_and_other_night_files_are_left_alone(
        night: tuple[Path, list], tmp_path: Path) -> None:
    night_dir, sets = night
    tmp = night_dir / "tmp"
    # truncated: half of a real set file, under a set-file name
    good = tmp / f"fast_{sets[0].setidx:09d}.hdf5"
    truncated = tmp / "fast_000999990.hdf5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    # foreign: an HDF5 file without our attributes
    foreign = tmp / "fast_000999991.hdf5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    # not HDF5 at all, and a stray name
    garbage = tmp / "fast_000999992.hdf5"
    garbage.write_bytes(b"\x00" * 100)
    stray = tmp / "backup.hdf5"
    stray.write_bytes(good.read_bytes())
    # another night's and another camera's set files
    other_sets = make_night(13, nsets=1)
    others = []
    for name in ("20240316LPC", "20240315LPE"):
        with SetWriter(tmp_path / name) as w:
            src = write_sets(w, other_sets)[0]
        name = f"fast_{other_sets[0].setidx + 100 + len(others):09d}.hdf5"
        others.append(Path(shutil.copy(src, tmp / name)))
    # a set file renamed to another setidx
    renamed = tmp / f"fast_{sets[0].setidx + 200:09d}.hdf5"
    shutil.copy(good, renamed)
    bad = [truncated, foreign, garbage, stray, *others, renamed]
    before = {p: p.read_bytes() for p in bad}

    report = combine_night(night_dir, "fast", minobs=MINOBS)
    assert nightly_lightcurves(report.output) == reference_lightcurves(
        [s.records for s in sets], MINOBS)
    reasons = dict(report.skipped)
    assert sorted(reasons) == sorted(bad)
    assert "truncated or not HDF5" in reasons[truncated]
    assert "truncated or not HDF5" in reasons[garbage]
    assert "missing: not a per-set file" in reasons[foreign]
    assert "name is not" in reasons[stray]
    assert "'night': '20240316'" in reasons[others[0]]
    assert "'camera': 'E'" in reasons[others[1]]
    assert "'setidx'" in reasons[renamed]
    assert {p: p.read_bytes() for p in bad} == before


def test_a_set_with_another_record_layout_is_left_alone(night: tuple[Path, list]) -> None:
    night_dir, sets = night
    odd = make_night(14, nsets=1, naper=4)[0]
    odd.setidx = sets[-1].setidx + 1
    with SetWriter(night_dir) as w:
        write_sets(w, [odd])
    report = combine_night(night_dir, "fast", minobs=MINOBS)
    assert [p.name for p, _ in report.skipped] == [f"fast_{odd.setidx:09d}.hdf5"]
    assert "record layout differs" in report.skipped[0][1]
    assert nightly_lightcurves(report.output) == reference_lightcurves(
        [s.records for s in sets], MINOBS)


def test_combine_waits_for_no_one_while_a_writer_holds_the_lock(
        night: tuple[Path, list]) -> None:
    night_dir, _ = night
    with NightLock(night_dir), pytest.raises(StorageError, match="locked by another writer"):
        combine_night(night_dir, "fast")
    assert len(list_set_files(night_dir, "fast")) == 6


def test_unreadable_existing_nightly_file_stops_the_combine(night: tuple[Path, list]) -> None:
    night_dir, _ = night
    out = nightly_file_path(night_dir, "fast")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"not hdf5")
    with pytest.raises(StorageError, match=r"cannot be opened.*left alone: move it away"):
        combine_night(night_dir, "fast")
    assert out.read_bytes() == b"not hdf5"
    assert len(list_set_files(night_dir, "fast")) == 6


def _combined_then_edited(night: tuple[Path, list], edit: Callable[[h5py.File], None]
                          ) -> tuple[Path, bytes]:
    """Combine the first three sets, ``edit`` the nightly file (an h5py File), write the
    other three: (the nightly file, its bytes after the edit)."""
    night_dir = night[0]
    for path in sorted(list_set_files(night_dir, "fast").values())[3:]:
        path.rename(path.with_name(path.name + ".later"))
    out = combine_night(night_dir, "fast", minobs=MINOBS).output
    assert out is not None
    with h5py.File(out, "r+") as f:
        edit(f)
    for path in sorted((night_dir / "tmp").glob("*.later")):
        path.rename(path.with_name(path.name.removesuffix(".later")))
    return out, out.read_bytes()


def test_a_nightly_file_of_another_format_version_is_left_alone(
        night: tuple[Path, list]) -> None:
    def older(f: h5py.File) -> None:
        f["header"].attrs["format_version"] = 0
        f["header"].attrs["software_version"] = "0.0.1"

    out, before = _combined_then_edited(night, older)
    with pytest.raises(StorageError, match=r"format_version 0 \(software 0\.0\.1\), not 1.*"
                       r"left alone: move it away"):
        combine_night(night[0], "fast", minobs=MINOBS)
    assert out.read_bytes() == before
    assert len(list_set_files(night[0], "fast")) == 3


def test_a_nightly_file_with_its_station_fields_in_another_order_is_refused(
        night: tuple[Path, list]) -> None:
    def alphabetical(f: h5py.File) -> None:
        # the same fields in another order, as a tool that rewrites the file without its
        # creation order would leave them
        columns = {k: f["station"][k][()] for k in f["station"]}
        del f["station"]
        group = f.create_group("station", track_order=False)
        for name in sorted(columns):
            group[name] = columns[name]

    out, before = _combined_then_edited(night, alphabetical)
    with pytest.raises(StorageError, match=r"other station fields than the per-set files"):
        combine_night(night[0], "fast", minobs=MINOBS)
    assert out.read_bytes() == before
    assert len(list_set_files(night[0], "fast")) == 3


def test_nothing_to_combine(tmp_path: Path) -> None:
    report = combine_night(tmp_path / NIGHT, "slow")
    assert (report.output, report.nsets, report.nstars) == (None, 0, 0)


@pytest.mark.parametrize(("option", "message"), [
    ({"minobs": 0}, "minobs=0 must be an integer >= 1"),
    ({"compression": "zstd"}, "compression='zstd' must be one of"),
    ({"chunk_stars": 0}, "must be >= 1"),
])
def test_bad_options(night: tuple[Path, list], option: dict, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        combine_night(night[0], "fast", **option)


def test_bad_kind(night: tuple[Path, list]) -> None:
    with pytest.raises(StorageError, match="kind='medium' is not a light-curve kind"):
        combine_night(night[0], "medium")


def test_threaded_gzip_writes_the_bytes_of_one_thread(tmp_path: Path) -> None:
    # one star with 9000 points: HDF5 chunks of 4096 records, the last one partial
    data = make_night(15, nsets=1, nstars=2)[0]
    recs = np.repeat(data.records[:1], 9000)
    recs["lstseq"] = np.arange(9000) + data.records["lstseq"][0]
    recs["flux0"] = np.random.default_rng(1).normal(1e4, 100, 9000)
    outs = []
    for threads in (1, 2):
        night_dir = tmp_path / str(threads) / NIGHT
        with SetWriter(night_dir) as w:
            w.write_set("fast", 1, recs, stars=data.stars, station=data.station)
            outs.append(w.combine("fast", threads=threads).output)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    with h5py.File(outs[1], "r") as f:
        ds = f["lightcurves"][str(recs["id"][0])]
        assert (ds.chunks, ds.compression, ds.shuffle) == ((4096,), "gzip", True)
        np.testing.assert_array_equal(ds["flux0"], recs["flux0"])
        np.testing.assert_array_equal(ds["lstseq"], recs["lstseq"])


def test_a_lock_must_be_held_on_the_same_night(night: tuple[Path, list], tmp_path: Path) -> None:
    night_dir, _ = night
    with NightLock(tmp_path / "20240316LPC") as other, pytest.raises(
            StorageError, match="not held on that directory"):
        combine_night(night_dir, "fast", lock=other)
    with pytest.raises(StorageError, match="not held on that directory"):
        combine_night(night_dir, "fast", lock=NightLock(night_dir))
    with pytest.raises(StorageError, match=r"SetWriter of .* is not open"):
        SetWriter(night_dir).combine("fast")
    assert len(list_set_files(night_dir, "fast")) == 6
