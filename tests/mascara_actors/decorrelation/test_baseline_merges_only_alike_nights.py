"""A baseline merges nights whose fluxes were measured alike: nights reduced with other
photometry settings (apertures, sky annulus, exposure time, aperture method) are refused,
naming both files and the attribute; settings that do not touch the fluxes may differ."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from mascara_actors.errors import StorageError
from mascara_actors.storage.baseline import build_baseline

from .conftest import Small

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("aper", np.array([3.5, 6.0]), "[3.5, 6.0]"),
    ("skyrad", np.array([5.0, 20.0]), "[5.0, 20.0]"),
    ("exptime", 5.0, "5.0"),
    ("aperture_method", "exact circle-pixel overlap", "'exact circle-pixel overlap'"),
])
def test_nights_reduced_with_other_photometry_are_refused(
        small: Small, tmp_path: Path, key: str, value: object, shown: str) -> None:
    files = small.copy_nights(tmp_path)
    with h5py.File(files[0], "r") as f:
        theirs = f["header"].attrs.get(key)
    with h5py.File(files[1], "r+") as f:
        f["header"].attrs[key] = value
    with pytest.raises(StorageError) as info:
        build_baseline(files, tmp_path / "b.hdf5", compression=None)
    message = str(info.value)
    assert f"{files[1]} and {files[0]} were reduced differently" in message
    expected_theirs = "absent" if theirs is None else (
        str(theirs.tolist()) if isinstance(theirs, np.ndarray) else repr(float(theirs)))
    assert f"attribute {key!r} is {shown} and {expected_theirs};" in message
    assert "reduce the odd night again" in message
    assert not (tmp_path / "b.hdf5").exists()


def test_nights_that_differ_only_in_versions_are_merged(small: Small, tmp_path: Path) -> None:
    files = small.copy_nights(tmp_path)
    with h5py.File(files[2], "r+") as f:
        f["header"].attrs["rversion"] = "mascara-actors 0.0.9"
        f["header"].attrs["minobs"] = 20
        # the same apertures written as float32: equal values, another type
        f["header"].attrs["aper"] = f["header"].attrs["aper"].astype(np.float32)
    report = build_baseline(files, tmp_path / "b.hdf5", compression=None)
    assert report.nights == ("20260108", "20260109", "20260110")
    with h5py.File(report.output, "r") as f:
        assert f["header"].attrs["aper"].tolist() == [2.5, 4.5]
        assert f["header"].attrs["skyrad"].tolist() == [6.0, 21.0]
