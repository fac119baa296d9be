"""`mascara-actors live` on the simulated camera device: the whole live chain end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mascara_actors.cli import main
from mascara_actors.rawframe import parse_raw_filename, read_raw
from mascara_actors.storage import NightFile


def test_live_simulated_camera_reduces_a_night(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["live", "--frames", "55", "--speed", "25", "--out", str(out)])
    assert code == 0
    night = out / "20260320LPC"
    raws = sorted((night / "raw").glob("*.fits"))
    lstseqs = [parse_raw_filename(p.name)[0] for p in raws]
    assert len(raws) == 55
    assert np.all(np.diff(lstseqs) == 1)  # one frame per slot, none lost
    header = read_raw(raws[0]).header
    assert (header.camera, header.site, header.xsize, header.ysize) == ("C", "LaPalma", 512, 384)
    with NightFile(night / "lightcurves" / "fast_20260320LPC.hdf5") as nf:
        assert np.array_equal(nf.station["lstseq"], lstseqs)
        assert len(nf.ids()) > 20
    assert (night / "lightcurves" / "slow_20260320LPC.hdf5").is_file()
    assert len(list((night / "binned").glob("bin_*.fits"))) >= 1
