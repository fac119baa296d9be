"""Reading API: NightFile round trip, jd from the station table, fields, astropy Table."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
import pytest

from mascara_actors import records as R
from mascara_actors.errors import StorageError
from mascara_actors.storage import NightFile, SetWriter
from tests.mascara_actors.storage._data import HEADER, NIGHT, jd_of, make_night, write_sets

MINOBS = 10


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """A combined nightly file and the sets it was made from (shared, read-only)."""
    sets = make_night(31, nsets=4, nstars=30)
    night_dir = tmp_path_factory.mktemp("reader") / NIGHT
    with SetWriter(night_dir, header=HEADER) as w:
        write_sets(w, sets)
        # one station row is lost (a frame whose station row never got written)
        sets[1].station = sets[1].station[1:]
        w.write_set("fast", sets[1].setidx, sets[1].records, stars=sets[1].stars,
                    station=sets[1].station, astrometry=sets[1].astrometry, overwrite=True)
        out = w.combine("fast", minobs=MINOBS).output
    return out, sets


def test_round_trip(nightly: tuple[Path, list]) -> None:
    path, sets = nightly
    recs = np.concatenate([s.records for s in sets])
    with NightFile(path) as nf:
        ids = nf.ids()
        counts = {i: np.count_nonzero(recs["id"] == i) for i in np.unique(recs["id"])}
        assert ids.tolist() == sorted(i for i, c in counts.items() if c >= MINOBS)
        assert nf.fields() == list(R.fast_record_dtype(with_id=False).names)
        for star in ids[[0, -1]]:
            lc = nf.lightcurve(star)
            mine = recs[recs["id"] == star]
            mine = mine[np.argsort(mine["lstseq"])]
            assert lc.dtype.names == (*R.fast_record_dtype(with_id=False).names, "jd")
            for name in nf.fields():
                np.testing.assert_array_equal(lc[name], mine[name])
            # jd: the station's start-of-exposure JD, NaN where the station row is missing
            lost = sets[1].setidx * 50
            expected = np.where(mine["lstseq"] == lost, np.nan, jd_of(mine["lstseq"]))
            np.testing.assert_array_equal(lc["jd"], expected)
        assert len(nf.station) == 4 * 50 - 1
        assert nf.stars.dtype == R.star_dtype
        assert nf.astrometry.dtype == R.astrometry_dtype(5)
        assert nf.header["night"] == "20240315"


def test_fields_and_table(nightly: tuple[Path, list]) -> None:
    path, _ = nightly
    with NightFile(path) as nf:
        star = int(nf.ids()[0])
        lc = nf.lightcurve(star, ["jd", "flux1", "lstseq"])
        assert lc.dtype.names == ("jd", "flux1", "lstseq")
        full = nf.lightcurve(star)
        np.testing.assert_array_equal(lc["flux1"], full["flux1"])
        table = nf.lightcurve(star, ["lstseq", "flux0", "sky", "x", "jd", "ccdtemp"],
                              as_table=True)
        assert table["flux0"].unit == u.adu
        assert table["sky"].unit == u.adu / u.pix
        assert table["x"].unit == u.pix
        assert table["jd"].unit == u.day
        assert table["ccdtemp"].unit is None
        assert table.meta["HIP"] == star
        np.testing.assert_array_equal(table["flux0"].value, full["flux0"])


def test_unknown_star_and_field(nightly: tuple[Path, list]) -> None:
    path, _ = nightly
    with NightFile(path) as nf:
        with pytest.raises(StorageError, match=r"star 999999 is not in .*NightFile.ids\(\) "
                                               r"lists the \d+ stars"):
            nf.lightcurve(999999)
        with pytest.raises(StorageError, match=r"fields \['mag'\] are not in"):
            nf.lightcurve(int(nf.ids()[0]), ["lstseq", "mag"])


def test_not_a_nightly_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open nightly file"):
        NightFile(tmp_path / "missing.hdf5")
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        f.create_group("header")
    with pytest.raises(StorageError, match=r"not a nightly light-curve file: groups "
                                           r"\['station', 'stars', 'lightcurves'\]"):
        NightFile(other)
