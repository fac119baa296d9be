"""Whole files or none: the fixed and the shared temporary names, stale ones removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mascara_actors.atomic_files import (
    TMP_SUFFIX,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_tmp,
    shared_tmp_path_for,
    tmp_path_for,
)
from mascara_actors.errors import StorageError


def test_a_write_leaves_the_file_and_no_temporary(tmp_path: Path) -> None:
    path = atomic_write_bytes(tmp_path / "a.bin", b"one")
    assert path.read_bytes() == b"one"
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_shared_writers_each_use_a_temporary_name_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "cache.npy"
    names = {shared_tmp_path_for(path) for _ in range(20)}
    assert len(names) == 20
    assert all(n.name.startswith(".cache.npy.") and n.name.endswith(TMP_SUFFIX) for n in names)
    assert tmp_path_for(path) not in names
    # a writer that left its temporary behind does not stop another
    tmp_path_for(path).write_bytes(b"half")
    atomic_write_bytes(path, b"whole", shared=True)
    assert path.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.npy", "cache.npy.tmp"]
    assert remove_stale_tmp(tmp_path) == [tmp_path_for(path)]


def test_a_failed_write_raises_storage_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="could not write"):
        atomic_write_bytes(tmp_path / "missing" / "a.bin", b"x", shared=True)
    assert list(tmp_path.iterdir()) == []
