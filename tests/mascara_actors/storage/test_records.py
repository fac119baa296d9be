"""Record dtypes (the seed's indexArray, data and header modes; station; astrometry)."""

from __future__ import annotations

import numpy as np
import pytest

from mascara_actors import records as R
from mascara_actors.errors import StorageError


def _spec(dtype: np.dtype) -> list[tuple[str, str]]:
    return [(n, dtype.fields[n][0].str.lstrip("<>|=")) for n in dtype.names]


def test_fast_record_fields() -> None:
    assert _spec(R.fast_record_dtype()) == [
        ("id", "i4"), ("lstseq", "u8"), ("lstidx", "u4"), ("flag", "u1"), ("pflag", "u1"),
        ("aflag", "u1"), ("flux0", "f8"), ("eflux0", "f8"), ("flux1", "f8"), ("eflux1", "f8"),
        ("sky", "f8"), ("esky", "f8"), ("peak", "f8"), ("x", "f4"), ("y", "f4"),
        ("alt", "f4"), ("az", "f4"), ("ccdtemp", "f4"), ("exptime", "f8"), ("jdmid", "f8"),
        ("lst", "f8")]
    assert R.fast_record_dtype().itemsize == 4 + 8 + 4 + 3 + 4 * 8 + 3 * 8 + 5 * 4 + 3 * 8


def test_slow_record_and_lightcurve_dtypes() -> None:
    slow = R.slow_record_dtype(with_id=False)
    assert [n for n in slow.names if n.startswith(("flux", "eflux"))] == [
        "flux0", "eflux0", "flux1", "eflux1", "flux2", "eflux2", "flux3", "eflux3"]
    assert "id" not in slow.names
    assert R.lightcurve_dtype(R.slow_record_dtype()) == slow
    assert R.record_dtype(3).names.count("flux2") == 1
    with pytest.raises(StorageError, match=r"naper=0 must be a positive integer"):
        R.record_dtype(0)


def test_star_station_astrometry_fields() -> None:
    assert _spec(R.star_dtype) == [
        ("id", "i4"), ("ra", "f8"), ("dec", "f8"), ("vmag", "f4"), ("bmag", "f4"),
        ("sptype", "S2"), ("blend", "u1"), ("blendvalue", "f4"), ("jdstart", "f8"),
        ("nobs", "u4"), ("lstseqmin", "u8"), ("lstseqmax", "u8")]
    station = dict(_spec(R.station_dtype))
    assert {k: station[k] for k in ("lstseq", "lstidx", "lstday", "jd", "jdmid", "lst",
                                    "exptime", "darkfile", "utc", "moonx", "moonph",
                                    "nstars", "nflagged", "imnsat", "oversca3")} == {
        "lstseq": "u8", "lstidx": "u4", "lstday": "u4", "jd": "f8", "jdmid": "f8",
        "lst": "f8", "exptime": "f4", "darkfile": "u8", "utc": "S26", "moonx": "f4",
        "moonph": "f4", "nstars": "u4", "nflagged": "u4", "imnsat": "u4", "oversca3": "f4"}
    slow = dict(_spec(R.slow_station_dtype))
    assert (slow["lstseq"], slow["setidx"], slow["nimages"], slow["lstmid"]) == (
        "u8", "u8", "u2", "f8")
    assert {"sunalt", "moonalt", "moonx"} <= set(slow)
    astro = R.astrometry_dtype(7)
    assert astro.fields["params"][0].shape == (7,)
    assert _spec(astro)[:8] == [("lstseq", "u8"), ("setidx", "u8"), ("nstars", "u4"),
                                ("nused", "u4"), ("dx", "f4"), ("dy", "f4"), ("dr", "f4"),
                                ("aflag", "u1")]


def test_records_from_columns_derives_flag() -> None:
    dtype = R.fast_record_dtype()
    n = 4
    columns = {name: np.arange(n) for name in dtype.names if name != "flag"}
    columns["pflag"] = np.array([0, 8, 0, 0])
    columns["aflag"] = np.array([0, 0, 1, 0])
    recs = R.records_from_columns(columns, dtype)
    assert recs.dtype == dtype
    assert recs["flag"].tolist() == [0, 1, 1, 0]
    np.testing.assert_array_equal(recs["flux1"], np.arange(n))
    # scalars broadcast; fill covers what the columns lack
    recs = R.records_from_columns({"id": [5, 6], "lstseq": [1, 2]}, dtype,
                                  fill={n: 0 for n in dtype.names if n not in ("id", "lstseq")})
    assert recs["id"].tolist() == [5, 6]
    assert recs["flag"].tolist() == [0, 0]


@pytest.mark.parametrize(("columns", "message"), [
    ({"mag": [1.0]}, r"columns \['mag'\] are not fields"),
    ({"id": [1]}, r"record fields \['lstseq', .*\] have no column"),
])
def test_records_from_columns_refuses(columns: dict, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        R.records_from_columns(columns, R.fast_record_dtype())


def test_records_from_columns_lengths_must_agree() -> None:
    dtype = np.dtype([("id", "i4"), ("lstseq", "u8")])
    with pytest.raises(StorageError, match=r"different lengths \[2, 3\]"):
        R.records_from_columns({"id": [1, 2], "lstseq": [1, 2, 3]}, dtype)


def test_empty_records_and_with_flag() -> None:
    recs = R.empty_records(3, R.fast_record_dtype())
    assert np.isnan(recs["flux0"]).all()
    assert (recs["lstseq"] == 0).all()
    recs["pflag"] = [0, 2, 0]
    flagged = R.with_flag(recs)
    assert flagged["flag"].tolist() == [0, 1, 0]
    assert recs["flag"].tolist() == [0, 0, 0]  # input untouched


def test_every_field_is_documented_with_a_unit_column() -> None:
    docs = {(f.table, f.name) for f in R.describe()}
    tables = {"record": R.record_dtype(1), "star": R.star_dtype, "station": R.station_dtype,
              "slow_station": R.slow_station_dtype, "astrometry": R.astrometry_dtype(1)}
    for table, dtype in tables.items():
        for name in dtype.names:
            generic = name.replace("0", "{i}") if name in ("flux0", "eflux0") else name
            assert (table, generic) in docs, (table, name)
    units = R.field_units()
    assert (units["flux3"], units["sky"], units["x"], units["lst"], units["jd"],
            units["ra"], units["ccdtemp"]) == ("ADU", "ADU/pixel", "pixel", "h", "d", "deg",
                                               "deg C")
    table = R.describe_markdown().splitlines()
    assert table[0] == "| table | field | dtype | unit | meaning |"
    assert len(table) == 2 + len(R.describe())
