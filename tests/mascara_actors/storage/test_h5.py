"""Light-curve chunks compressed outside HDF5 (in worker threads) read back through HDF5's
own shuffle and deflate filters."""

from __future__ import annotations

import h5py
import numpy as np

from mascara_actors.storage._h5 import create_deflated_dataset, deflate_chunks


def test_chunks_deflated_outside_hdf5_read_back_through_its_filters(tmp_path) -> None:
    dtype = np.dtype([("lstseq", "<i4"), ("flux0", "<f8"), ("sky", "<f4"), ("pflag", "u1")])
    n, chunk = 10_000, 4096  # two whole chunks and a partial one
    rng = np.random.default_rng(7)
    data = np.zeros(n, dtype)
    data["lstseq"] = 65_000_000 + np.arange(n)
    data["flux0"] = rng.normal(20_000.0, 150.0, n)
    data["sky"] = rng.normal(900.0, 12.0, n)
    data["pflag"] = rng.integers(0, 2, n) * 8

    chunks = deflate_chunks(data, chunk=chunk, level=1, shuffle=True)
    path = tmp_path / "curves.h5"
    with h5py.File(path, "w") as f:
        create_deflated_dataset(f, "123", dtype, n, chunks, chunk=chunk, level=1, shuffle=True)

    with h5py.File(path, "r") as f:
        ds = f["123"]
        assert (ds.compression, ds.shuffle, ds.chunks) == ("gzip", True, (chunk,))
        back = ds[...]
        assert back.dtype == dtype
        assert np.array_equal(back, data)
        stored = sum(ds.id.get_chunk_info(i).size for i in range(ds.id.get_num_chunks()))
    assert len(chunks) == 3
    assert stored == sum(map(len, chunks))
    assert stored < 0.8 * n * dtype.itemsize  # shuffled noisy floats compress


def test_a_short_curve_is_one_chunk_of_its_own_length(tmp_path) -> None:
    data = np.arange(57, dtype="<f8")
    chunks = deflate_chunks(data, chunk=4096, level=1, shuffle=True)
    with h5py.File(tmp_path / "short.h5", "w") as f:
        create_deflated_dataset(f, "7", data.dtype, data.size, chunks, chunk=4096, level=1,
                                shuffle=True)
    with h5py.File(tmp_path / "short.h5", "r") as f:
        assert f["7"].chunks == (57,)
        assert np.array_equal(f["7"][...], data)
    assert deflate_chunks(data[:0], chunk=4096, level=1, shuffle=True) == []


def test_a_file_written_whole_is_in_hdf5_1_10_format_with_small_chunk_indexes(tmp_path) -> None:
    """atomic_hdf5 writes HDF5 1.10's format: a short light curve (one chunk) costs about a
    kilobyte with its object header and link, not the 3.8 kB of HDF5 1.8's B-tree node; the
    file reads back whole, and the same writes give the same bytes."""
    from mascara_actors.storage.atomic import atomic_hdf5

    dtype = np.dtype([("lstseq", "<i8"), *[(f"f{i}", "<f4") for i in range(22)]])
    data = np.zeros(3, dtype)
    data["lstseq"] = [7, 8, 9]
    chunks = deflate_chunks(data, chunk=4096, level=1, shuffle=True)

    def write(path) -> bytes:
        with atomic_hdf5(path) as out:
            group = out.file.create_group("lightcurves", track_order=True)
            for i in range(2000):
                create_deflated_dataset(group, str(i), dtype, len(data), chunks, chunk=4096,
                                        level=1, shuffle=True)
        return path.read_bytes()

    first = write(tmp_path / "a.hdf5")
    assert len(first) / 2000 < 1200, len(first) / 2000
    with h5py.File(tmp_path / "a.hdf5", "r") as f:
        assert f.id.get_create_plist().get_version()[0] == 3  # superblock of HDF5 1.10
        assert len(f["lightcurves"]) == 2000
        assert np.array_equal(f["lightcurves/1999"][...], data)
    assert write(tmp_path / "b.hdf5") == first
