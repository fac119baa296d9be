"""Archive directories as the archive tests need them."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from hw.sim.night_start import choose_start_lstseq
from hw.sim.recording import record_night
from hw.sim.sky import SimulationSettings
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.sidereal import SET_SIZE
from mascara_actors.storage.provenance import product_files
from tests.stations import VMAX, short_night_config

FIRST_SLOT = 35
"""A short night's science starts at slot 35 of a set: 30 frames are two sets of 15."""


def settle(root: Path) -> None:
    """Date ``root`` and every directory under it an hour back, as an archive's are (the
    scan's memory keeps only directories that have settled)."""
    hour_ago = time.time() - 3600
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(directory, (hour_ago, hour_ago))


def assert_same_products(out: Path, references: Path, keys: Iterable[str], *,
                         against: str = "--replay") -> None:
    """Each night ``key`` under ``out`` has the products, byte for byte, of the same night
    under ``references`` (made by ``against``)."""
    for key in keys:
        expected = product_files(references / key)
        got = product_files(out / key)
        assert [p.name for p in got] == [p.name for p in expected], key
        for a, b in zip(got, expected, strict=True):
            assert a.read_bytes() == b.read_bytes(), f"{key}: {a.name} differs from {against}"


def archive_config(directory: Path) -> Path:
    """The configuration of short nights (:func:`record_short_night`) in ``directory``: a
    star enters a nightly file with 15 points."""
    config = short_night_config(directory)
    reduction = config / "reduction.toml"
    reduction.write_text(re.sub(r"(?m)^minobs\s*=\s*[0-9]+", "minobs = 15",
                                reduction.read_text()))
    return config


def record_short_night(out: Path, camera_id: str, date: str, frames: int, darks: int,
                       compression: str, catalogue: Catalogue) -> Path:
    """A short simulated night of ``camera_id`` into ``out`` (the crop512 sensor; darks,
    then ``frames`` science frames from slot :data:`FIRST_SLOT` of a set after astronomical
    dusk of ``date``, YYYY-MM-DD), without its truth file."""
    camera = load_config().camera(camera_id)
    start = choose_start_lstseq(camera, date, sun_alt_deg=-18.0)
    start = (start // SET_SIZE + 1) * SET_SIZE + FIRST_SLOT
    record_night(out, camera, catalogue, start_lstseq=start, n_science=frames,
                 sensor=load_config().sensor("crop512"), n_bias=0, n_dark=darks,
                 compression=compression, settings=SimulationSettings(seed=5, vmax=VMAX))
    (out / "truth.fits").unlink()
    return out
