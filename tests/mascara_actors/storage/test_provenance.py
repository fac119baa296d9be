"""A night's provenance record: what may reduce into a night directory, and what verifies."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest

from mascara_actors.errors import StorageError
from mascara_actors.storage.provenance import (
    PROVENANCE_NAME,
    SOFTWARE,
    Provenance,
    complete_provenance,
    config_hash,
    read_provenance,
    record_masters,
    start_provenance,
    verify_products,
)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    d.mkdir()
    (d / "reduction.toml").write_text("minobs = 51\n")
    (d / "sites.toml").write_text("[LaPalma]\n")
    return d


def _products(night: Path) -> None:
    (night / "lightcurves").mkdir(parents=True)
    (night / "binned").mkdir()
    (night / "lightcurves" / "fast_20260320LPC.hdf5").write_bytes(b"fast")
    (night / "binned" / "bin_65344225C.fits").write_bytes(b"binned")
    (night / "binned" / "65344190Cmasterdark.fits").write_bytes(b"dark")


def test_config_hash_follows_every_byte_and_name(config_dir: Path) -> None:
    before = config_hash(config_dir)
    assert before == config_hash(config_dir)
    assert len(before) == 64
    (config_dir / "reduction.toml").write_text("minobs = 52\n")
    changed = config_hash(config_dir)
    (config_dir / "reduction.toml").rename(config_dir / "other.toml")
    assert len({before, changed, config_hash(config_dir)}) == 3


def test_a_night_is_recorded_from_start_to_complete(tmp_path: Path, config_dir: Path) -> None:
    night = tmp_path / "20260320LPC"
    record = start_provenance(night, config_dir=config_dir, command=["mascara-actors", "x"])
    assert read_provenance(night) == record
    assert (record.software, record.status, record.command) == (
        SOFTWARE, "started", ("mascara-actors", "x"))
    assert verify_products(night, record) == [f"{night}: the reduction did not complete"]
    record = record_masters(night, record, {"dark": "65344190Cmasterdark.fits"})
    _products(night)
    done = complete_provenance(night, record, raw_frames=60)
    assert read_provenance(night) == done
    assert (done.status, done.raw_frames) == ("complete", 60)
    assert done.masters == {"dark": "65344190Cmasterdark.fits"}
    assert sorted(done.products) == [
        "binned/65344190Cmasterdark.fits", "binned/bin_65344225C.fits",
        "lightcurves/fast_20260320LPC.hdf5"]
    assert done.products["lightcurves/fast_20260320LPC.hdf5"] == hashlib.sha256(b"fast").hexdigest()
    assert verify_products(night, done) == []

    # a second start (a resume) keeps the first start time and the masters
    again = start_provenance(night, config_dir=config_dir, command=["again"])
    assert (again.started_utc, again.masters) == (record.started_utc, record.masters)


def test_changed_missing_and_extra_products_do_not_verify(tmp_path: Path,
                                                           config_dir: Path) -> None:
    night, done = _complete_night(tmp_path, config_dir)
    changed = night / "binned" / "bin_65344225C.fits"
    changed.write_bytes(b"binnex")  # the same size: its new time has it hashed
    recorded = done.stamps["binned/bin_65344225C.fits"][1]
    os.utime(changed, ns=(recorded + 10**9, recorded + 10**9))
    (night / "lightcurves" / "fast_20260320LPC.hdf5").unlink()
    (night / "binned" / "bin_65344275C.fits").write_bytes(b"new")
    assert verify_products(night, done) == [
        f"{night}/binned/bin_65344275C.fits: not in the record",
        f"{night}/binned/bin_65344225C.fits: changed since it was made",
        f"{night}/lightcurves/fast_20260320LPC.hdf5: missing",
    ]


def test_another_version_or_configuration_is_never_mixed_in(tmp_path: Path,
                                                            config_dir: Path) -> None:
    night = tmp_path / "20260320LPC"
    record = start_provenance(night, config_dir=config_dir, command=[])
    old = dataclasses.replace(record, software="mascara-actors 0.0.9")
    _write_record(night, old)
    with pytest.raises(StorageError, match=r"holds a reduction by mascara-actors 0\.0\.9.*"
                       r"never mixed.*another --out, or move .* away"):
        start_provenance(night, config_dir=config_dir, command=[])
    _write_record(night, record)
    (config_dir / "reduction.toml").write_text("minobs = 20\n")
    with pytest.raises(StorageError, match="configuration"):
        start_provenance(night, config_dir=config_dir, command=[])


def test_products_without_a_record_are_refused_an_empty_directory_is_not(
        tmp_path: Path, config_dir: Path) -> None:
    night = tmp_path / "20260320LPC"
    (night / "logs").mkdir(parents=True)
    start_provenance(night, config_dir=config_dir, command=[])
    other = tmp_path / "20260321LPC"
    _products(other)
    with pytest.raises(StorageError, match=r"holds reduced products but no provenance\.json"):
        start_provenance(other, config_dir=config_dir, command=[])
    assert not (other / PROVENANCE_NAME).exists()


@pytest.mark.parametrize("text", ["{not json", '{"software": "x"}', "[]"])
def test_a_damaged_record_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    (tmp_path / PROVENANCE_NAME).write_text(text)
    with pytest.raises(StorageError, match=PROVENANCE_NAME) as raised:
        read_provenance(tmp_path)
    assert str(raised.value).endswith("move the night directory away and reduce it again")


def test_a_product_with_its_recorded_size_and_time_is_not_read_unless_thorough(
        tmp_path: Path, config_dir: Path) -> None:
    night, done = _complete_night(tmp_path, config_dir)
    dark = night / "binned" / "65344190Cmasterdark.fits"
    st = dark.stat()
    assert done.stamps["binned/65344190Cmasterdark.fits"] == (4, st.st_mtime_ns)
    assert read_provenance(night) == done  # the stamps are kept in the record
    # other bytes, the same size and time (a copy that kept the times, not the bytes)
    dark.write_bytes(b"DARK")
    os.utime(dark, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert verify_products(night, done) == []
    assert verify_products(night, done, thorough=True) == [
        f"{dark}: changed since it was made"]
    # a record without stamps (written by this version before they were kept): every
    # product is hashed
    unstamped = dataclasses.replace(done, stamps={})
    assert verify_products(night, unstamped) == [f"{dark}: changed since it was made"]
    record_file = night / PROVENANCE_NAME
    data = json.loads(record_file.read_text())
    del data["stamps"]
    record_file.write_text(json.dumps(data))
    assert read_provenance(night) == unstamped


def test_a_complete_night_whose_products_changed_is_not_resumed(tmp_path: Path,
                                                               config_dir: Path) -> None:
    night, done = _complete_night(tmp_path, config_dir)
    # products as recorded: a new start resumes it
    again = start_provenance(night, config_dir=config_dir, command=["again"])
    assert again.status == "started"
    _write_record(night, done)
    changed = night / "lightcurves" / "fast_20260320LPC.hdf5"
    changed.write_bytes(b"slow")
    os.utime(changed, ns=(10**18, 10**18))
    (night / "binned" / "bin_65344225C.fits").unlink()
    # resuming would record the changed product complete again, as if it had been made so
    with pytest.raises(StorageError) as refused:
        start_provenance(night, config_dir=config_dir, command=["again"])
    assert str(refused.value) == (
        f"complete, but {night}/binned/bin_65344225C.fits: missing (and 1 more): move "
        f"{night} away to reduce the night again")
    assert read_provenance(night) == done  # the record as it was


def _write_record(night: Path, record: Provenance) -> None:
    (night / PROVENANCE_NAME).write_text(json.dumps(dataclasses.asdict(record)))


def _complete_night(tmp_path: Path, config_dir: Path) -> tuple[Path, Provenance]:
    """A night directory with three products, recorded complete."""
    night = tmp_path / "20260320LPC"
    record = start_provenance(night, config_dir=config_dir, command=[])
    _products(night)
    return night, complete_provenance(night, record, raw_frames=60)
