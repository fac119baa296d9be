"""Bad frames in the wrong places never spoil the night (issue 13, items 5-8).

One replay of the small recorded night (two sets of six frames) with, at once:

- a zero-byte first science frame (item 6: it used to stop the whole replay);
- a frame of the next sidereal day, its header consistent with its name (item 5: it used
  to be merged in as a new set);
- a saturated first frame of the second set (item 7: it used to flag the whole set, so no
  binned image was made);
- random bytes where the first set's per-set file would go (item 8: it used to make the
  set look done, so its frames were never reduced).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from mascara_actors.binning import SetFlag
from mascara_actors.messages import FrameFailed, SetBinned
from mascara_actors.photometry.flags import AFlag
from mascara_actors.sidereal import SLOTS_PER_SIDEREAL_DAY
from mascara_actors.storage import NightFile
from tests.mascara_actors.actors.conftest import NIGHT, read_events

SET1, SET2 = 1306884, 1306885
FIRST, SATURATED = 65344244, 65344250
SCIENCE = [*range(65344244, 65344256)]
FOREIGN = 65344249 + SLOTS_PER_SIDEREAL_DAY


@dataclasses.dataclass(frozen=True)
class Replayed:
    returncode: int
    stderr: str
    night_dir: Path


@pytest.fixture(scope="module")
def bad_night(tmp_path_factory) -> Replayed:
    night = tmp_path_factory.mktemp("bad_night")
    for path in sorted(NIGHT.glob("*Cdark.fits.fz")):
        shutil.copyfile(path, night / path.name)
    for lstseq in SCIENCE:
        shutil.copyfile(NIGHT / f"{lstseq}C.fits.fz", night / f"{lstseq}C.fits.fz")
    (night / f"{FIRST}C.fits.fz").write_bytes(b"")
    with fits.open(NIGHT / "65344249C.fits.fz") as hdul:
        hdu = hdul[1]
        header = hdu.header.copy()
        data = hdu.data.copy()
        header["LSTSEQ"] = FOREIGN
        header["LSTIDX"] = FOREIGN % SLOTS_PER_SIDEREAL_DAY
        for key in ("JD", "JDMID"):
            header[key] = header[key] + 0.99727  # one sidereal day later
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header=header)]).writeto(
            night / f"{FOREIGN}C.fits.fz"
        )
    with fits.open(night / f"{SATURATED}C.fits.fz", mode="update") as hdul:
        hdul[1].data[:] = 64000  # twilight: the whole chip near saturation
    out = tmp_path_factory.mktemp("bad_out")
    night_dir = out / "20260320LPC"
    (night_dir / "tmp").mkdir(parents=True)
    corrupt = night_dir / "tmp" / f"fast_{SET1:09d}.hdf5"
    corrupt.write_bytes(np.random.default_rng(5).bytes(4096))
    script = Path(sys.executable).parent / "mascara-actors"
    proc = subprocess.run(
        [str(script), "--replay", str(night), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    return Replayed(proc.returncode, proc.stderr, night_dir)


def test_the_night_completes(bad_night) -> None:
    assert bad_night.returncode == 0, bad_night.stderr
    assert "Traceback" not in bad_night.stderr
    # no calibration of earlier nights: said once, and nothing is calibrated
    assert bad_night.stderr.count("no calibration in ") == 1, bad_night.stderr
    assert not (bad_night.night_dir / "calibrated").exists()


def test_a_bad_first_frame_fails_alone(bad_night) -> None:
    failed = {e.lstseq: e for e in read_events(bad_night.night_dir) if isinstance(e, FrameFailed)}
    assert f"{FIRST}C.fits.fz" in failed[FIRST].reason
    with NightFile(bad_night.night_dir / "lightcurves" / "fast_20260320LPC.hdf5") as nf:
        lstseq = nf.station["lstseq"].tolist()
    assert lstseq == [s for s in SCIENCE if s != FIRST]  # every other frame, once


def test_a_frame_of_another_night_fails_alone_naming_the_file(bad_night) -> None:
    failed = {e.lstseq: e for e in read_events(bad_night.night_dir) if isinstance(e, FrameFailed)}
    reason = failed[FOREIGN].reason
    assert f"{FOREIGN}C.fits.fz" in reason
    assert "another night" in reason
    assert set(failed) == {FIRST, FOREIGN}


def test_a_saturated_first_frame_does_not_spoil_its_set(bad_night) -> None:
    with NightFile(bad_night.night_dir / "lightcurves" / "fast_20260320LPC.hdf5") as nf:
        station = nf.station
    aflag = dict(zip(station["lstseq"].tolist(), station["aflag"].tolist(), strict=True))
    assert aflag[SATURATED] & AFlag.VERY_BRIGHT_SKY  # that frame could not check the astrometry
    assert all(v == 0 for k, v in aflag.items() if k != SATURATED)  # its neighbours could
    binned = {e.setidx: e for e in read_events(bad_night.night_dir) if isinstance(e, SetBinned)}
    assert binned[SET2].path.endswith("bin_65344275C.fits")
    assert (binned[SET2].nimages, binned[SET2].nrefused) == (5, 1)
    # its middle slot (65344275) is not in this small night: no reference frame either
    assert binned[SET2].flag == SetFlag.FRAMES_REFUSED | SetFlag.NO_REFERENCE
    with NightFile(bad_night.night_dir / "lightcurves" / "slow_20260320LPC.hdf5") as nf:
        slow = nf.station
    assert slow["setidx"].tolist() == [SET1, SET2]
    assert slow["nimages"].tolist() == [5, 5]


def test_a_corrupt_per_set_file_is_set_aside_and_its_set_reduced(bad_night) -> None:
    aside = bad_night.night_dir / "tmp" / f"fast_{SET1:09d}.hdf5.corrupt"
    assert aside.exists()
    assert f"fast_{SET1:09d}.hdf5 does not verify" in bad_night.stderr
    with NightFile(bad_night.night_dir / "lightcurves" / "fast_20260320LPC.hdf5") as nf:
        assert sorted({int(s) // 50 for s in nf.station["lstseq"]}) == [SET1, SET2]
