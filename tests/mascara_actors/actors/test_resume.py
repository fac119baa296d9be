"""What a restart finds on disk (:func:`~mascara_actors.actors.resume.resume_point`).

Stopping the real command at every phase of a night (SIGKILL, SIGTERM, SIGINT, a full disk)
and running it again to byte-identical files is the crash matrix's
(``test_crash_matrix.py``); the four-stop chain that was here before it is covered there.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mascara_actors.actors.resume import resume_point
from mascara_actors.camera_model import CameraModel
from mascara_actors.errors import AstrometryFailed
from mascara_actors.rawframe import read_raw
from mascara_actors.sidereal import set_index
from mascara_actors.storage import NightFile
from tests.mascara_actors.actors.conftest import NIGHT, Replayed


def test_resume_point_of_a_finished_night(clean_trio: Replayed, config, tmp_path) -> None:
    rp = resume_point(clean_trio.night_dir)
    with NightFile(clean_trio.nightly) as nf:
        astrometry = nf.astrometry
        sets = set(np.unique(set_index(nf.station["lstseq"])).tolist())
    assert rp.done_sets == sets == {1306884, 1306885}
    assert sorted(rp.solutions) == astrometry["setidx"].tolist()
    assert rp.skips(65344259)
    assert not rp.skips(65344300)  # the next set
    header = read_raw(NIGHT / "65344200C.fits.fz").header
    nominal = CameraModel.from_config(config.camera("LPC"), nx=header.xsize, ny=header.ysize)
    for row in astrometry:
        stored = rp.solutions[int(row["setidx"])]
        rebuilt = stored.rebuild(nominal)
        assert np.array_equal(rebuilt.params(), row["params"])  # bit for bit
        assert (rebuilt.lstseq, rebuilt.nused, rebuilt.aflag) == (
            row["lstseq"],
            row["nused"],
            row["aflag"],
        )
    broken = dataclasses.replace(stored, params=stored.params[:-1])
    with pytest.raises(AstrometryFailed, match="do not fit the layout"):
        broken.rebuild(nominal)
    empty = resume_point(tmp_path / "20260320LPC")
    assert (empty.done_sets, empty.solutions) == (frozenset(), {})
