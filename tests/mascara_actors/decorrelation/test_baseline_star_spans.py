"""The ``stars`` table of a baseline spans all its nights: ``nobs``, ``lstseqmin`` and
``lstseqmax`` of each star are those of its merged light curve, not of its first night."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mascara_actors.storage.baseline import BaselineReport

from .conftest import Small

pytestmark = pytest.mark.slow


def test_star_rows_give_the_first_and_last_lstseq_over_all_nights(
        small: Small, small_baseline: BaselineReport) -> None:
    with h5py.File(sorted(small.sim.nightly_files)[0], "r") as f:
        first_night_max = int(f["station"]["lstseq"][()].max())
    with h5py.File(small_baseline.output, "r") as f:
        stars = {name: f["stars"][name][()] for name in ("id", "nobs", "lstseqmin",
                                                          "lstseqmax")}
        spans = np.array([(f["lightcurves"][str(i)]["lstseq"].min(),
                           f["lightcurves"][str(i)]["lstseq"].max(),
                           f["lightcurves"][str(i)].shape[0])
                          for i in stars["id"].tolist()])
    assert len(spans) == small_baseline.nstars
    assert np.array_equal(stars["lstseqmin"], spans[:, 0])
    assert np.array_equal(stars["lstseqmax"], spans[:, 1])
    assert np.array_equal(stars["nobs"], spans[:, 2])
    # not vacuous: most stars are seen after the first night, which ends before them
    assert np.count_nonzero(stars["lstseqmax"] > first_night_max) > 0.9 * len(spans)
