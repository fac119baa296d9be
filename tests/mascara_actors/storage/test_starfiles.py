"""Per-star FITS tables: LCtable round trip, finalising stars as they leave the chip,
export from a nightly file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from mascara_actors import records as R
from mascara_actors.errors import StorageError
from mascara_actors.storage import (
    NightId,
    SetWriter,
    StarFileFinaliser,
    export_stars,
    generic_header,
    write_star_fits,
)
from tests.mascara_actors.storage._data import HEADER, NIGHT, make_night, write_sets

NID = NightId.from_dir(NIGHT)


def _hip(path: Path) -> int:
    return int(path.name.split("_HIP")[1].split("_")[0])


def _read(path: Path) -> tuple[fits.Header, fits.Header, dict[str, np.ndarray]]:
    """Both headers and the table's columns (scaled: TZERO applied)."""
    with fits.open(path) as hdul:
        data = hdul[1].data
        columns = {name: np.array(data[name]) for name in data.names}
        return hdul[0].header.copy(), hdul[1].header.copy(), columns


def test_write_star_fits_round_trip(tmp_path: Path) -> None:
    data = make_night(41, nsets=1, nstars=5)[0]
    star = data.stars[0]
    recs = data.records[data.records["id"] == star["id"]]
    shuffled = np.concatenate([recs[::-1], recs[:2]])  # any order, with repeats
    path = write_star_fits(tmp_path / "star.fits", star, shuffled,
                           generic_header(NID, "fast", HEADER))
    primary, head, table = _read(path)
    assert tuple(table) == R.fast_record_dtype(with_id=False).names
    for name in table:
        np.testing.assert_array_equal(table[name], recs[name])
    assert table["lstseq"].dtype == np.uint64
    for h in (primary, head):
        assert (h["HIP"], h["SITE-OBS"], h["CAMERA"], h["NIGHT"], h["KIND"]) == (
            int(star["id"]), "LaPalma", "C", "20240315", "fast")
        assert h["RA"] == pytest.approx(star["ra"])
        assert h["SPTYPE"] == star["sptype"].decode()
        assert (h["NOBS"], h["LSEQMIN"], h["LSEQMAX"]) == (
            len(recs), recs["lstseq"].min(), recs["lstseq"].max())
        assert h["LAT"] == pytest.approx(28.76)
        assert h["APER"] == "2.5,4.5"
    assert head["EXTNAME"] == "LIGHTCURVE"
    units = {head[f"TTYPE{i}"]: head.get(f"TUNIT{i}") for i in range(1, head["TFIELDS"] + 1)}
    assert (units["flux0"], units["sky"], units["x"], units["lst"], units["pflag"]) == (
        "adu", "adu/pix", "pix", "h", None)


def test_nan_header_values_are_left_undefined(tmp_path: Path) -> None:
    data = make_night(42, nsets=1, nstars=3)[0]
    star = data.stars[:1].copy()
    star["bmag"] = np.nan
    path = write_star_fits(tmp_path / "s.fits", star,
                           data.records[data.records["id"] == star["id"][0]])
    _, head, _ = _read(path)
    assert "BMAG" in head
    assert head["BMAG"] is None or isinstance(head["BMAG"], fits.card.Undefined)


def test_finaliser_writes_stars_that_left_the_chip(tmp_path: Path) -> None:
    sets = make_night(43, nsets=6, nstars=40)
    night_dir = tmp_path / NIGHT
    outdir = tmp_path / "stars"
    with SetWriter(night_dir, header=HEADER) as w:
        fin = StarFileFinaliser(night_dir, "fast", outdir=outdir, gap_sets=1)
        written_at = {}
        for k, s in enumerate(sets):
            write_sets(w, [s])
            current = (s.setidx + 1) * 50  # first exposure of the next set
            for p in fin.update(current):
                written_at[_hip(p)] = k
        last_set = {}
        for k, s in enumerate(sets):
            for i in np.unique(s.records["id"]).tolist():
                last_set[i] = k
        # a star is written as soon as one whole set (gap_sets=1) was written without it
        assert written_at == {i: k + 1 for i, k in last_set.items() if k + 1 < len(sets)}
        rest = {_hip(p) for p in fin.finalise_rest()}
        assert rest == set(last_set) - set(written_at)
        assert fin.finalised == frozenset(last_set)
        assert fin.finalise_rest() == []
        # a new finaliser remembers what was done
        assert StarFileFinaliser(night_dir, "fast", outdir=outdir).finalise_rest() == []
    all_recs = np.concatenate([s.records for s in sets])
    for star in list(last_set)[:5]:
        _, head, table = _read(outdir / f"fast_HIP{star}_{NIGHT}.fits")
        mine = all_recs[all_recs["id"] == star]
        np.testing.assert_array_equal(table["lstseq"], np.sort(mine["lstseq"]))
        assert head["NOBS"] == len(mine)


def test_export_equals_finalised_files(tmp_path: Path) -> None:
    sets = make_night(44, nsets=4, nstars=25)
    night_dir = tmp_path / NIGHT
    with SetWriter(night_dir, header=HEADER) as w:
        write_sets(w, sets)
        finalised = StarFileFinaliser(night_dir, "fast", outdir=tmp_path / "live"
                                      ).finalise_rest()
        out = w.combine("fast", minobs=30).output
    exported = export_stars(out, None, tmp_path / "export")
    assert exported
    live = {p.name: p for p in finalised}
    for p in exported:
        # the same table and the same cards, whichever way the file was made
        assert p.read_bytes() == live[p.name].read_bytes()
    one = export_stars(out, [_hip(exported[0])], tmp_path / "one")
    assert [p.name for p in one] == [exported[0].name]


def test_export_refuses_unknown_ids(tmp_path: Path) -> None:
    sets = make_night(45, nsets=2, nstars=10)
    night_dir = tmp_path / NIGHT
    with SetWriter(night_dir, header=HEADER) as w:
        write_sets(w, sets)
        out = w.combine("fast", minobs=1).output
    with pytest.raises(StorageError, match=r"stars \[7\] are not in .*ids\(\) lists"):
        export_stars(out, [7], tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_finaliser_leaves_foreign_files_alone(tmp_path: Path) -> None:
    sets = make_night(46, nsets=2, nstars=10)
    night_dir = tmp_path / NIGHT
    with SetWriter(night_dir, header=HEADER) as w:
        write_sets(w, sets)
    bad = night_dir / "tmp" / "fast_000000001.hdf5"
    shutil.copy(night_dir / "tmp" / f"fast_{sets[0].setidx:09d}.hdf5", bad)
    files = StarFileFinaliser(night_dir, "fast").finalise_rest()
    ids = np.unique(np.concatenate([s.records["id"] for s in sets]))
    assert len(files) == len(ids)
    assert bad.exists()
