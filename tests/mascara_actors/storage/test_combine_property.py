"""Property: any split of a night's records into sets, in any order, with duplicates,
combines to the same nightly file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mascara_actors import records as R
from mascara_actors.storage import SetWriter
from tests.mascara_actors.storage._data import (
    HEADER,
    NIGHT,
    nightly_content,
    nightly_lightcurves,
    reference_lightcurves,
)


def _records(keys: list[tuple[int, int]]) -> np.ndarray:
    """Records whose every value follows from (id, lstseq), so duplicates are identical."""
    recs = np.zeros(len(keys), dtype=R.fast_record_dtype())
    if keys:
        ids, lstseq = np.array(keys, dtype=np.int64).T
        recs["id"] = ids
        recs["lstseq"] = lstseq
        recs["lstidx"] = lstseq % 13500
        recs["pflag"] = (ids + lstseq) % 3 == 0
        recs["flag"] = recs["pflag"] != 0
        recs["flux0"] = ids * 1000.5 + lstseq
        recs["flux1"] = -recs["flux0"]
        recs["x"] = lstseq % 4008
        recs["jdmid"] = 2457000.0 + lstseq / 13500
    return recs


def _stars(ids: np.ndarray) -> np.ndarray:
    stars = np.zeros(len(ids), dtype=R.star_dtype)
    stars["id"] = ids
    stars["ra"] = ids * 0.01
    stars["vmag"] = 5 + ids % 3
    stars["jdstart"] = 2457000.0 + ids
    return stars


def _station(lstseq: np.ndarray) -> np.ndarray:
    station = np.zeros(len(lstseq), dtype=R.station_dtype)
    station["lstseq"] = lstseq
    station["jd"] = 2457000.0 + lstseq / 13500
    station["exptime"] = 6.4
    return station


@st.composite
def nights(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[list[int]], list[int], int]:
    """(unique (id, lstseq) keys, sets as lists of key indices, setidx of each set, minobs).

    Every key is in at least one set; some keys are in several (duplicates); the sets get
    setidx values in a random order.
    """
    ids = draw(st.lists(st.integers(1, 120_000), min_size=1, max_size=6, unique=True))
    lstseq = draw(st.lists(st.integers(13_500_000, 13_500_400), min_size=1, max_size=25,
                           unique=True))
    keys = sorted({(i, s) for i in ids for s in lstseq
                   if draw(st.booleans()) or s == lstseq[0]})
    nsets = draw(st.integers(1, 5))
    home = draw(st.lists(st.integers(0, nsets - 1), min_size=len(keys), max_size=len(keys)))
    sets = [[k for k in range(len(keys)) if home[k] == j] for j in range(nsets)]
    extra = draw(st.lists(st.tuples(st.integers(0, len(keys) - 1), st.integers(0, nsets - 1)),
                          max_size=10))
    for k, j in extra:
        sets[j].append(k)
    sets = [draw(st.permutations(s)) for s in sets]
    setidx = draw(st.permutations(list(range(270_000, 270_000 + 3 * nsets, 3))))
    minobs = draw(st.integers(1, 4))
    return keys, sets, setidx, minobs


def _combine(root: Path, keys, sets, setidx, minobs, *, midway: bool = False) -> Path:
    night_dir = root / NIGHT
    with SetWriter(night_dir, header=HEADER) as w:
        for n, (members, sidx) in enumerate(zip(sets, setidx, strict=True)):
            recs = _records([keys[k] for k in members])
            w.write_set("fast", sidx, recs, stars=_stars(np.unique(recs["id"])),
                        station=_station(np.unique(recs["lstseq"])))
            if midway and n == 0:
                w.combine("fast", minobs=minobs, keep_sets=True)
        return w.combine("fast", minobs=minobs).output


@settings(max_examples=15, deadline=None)
@given(nights(), st.booleans())
def test_any_split_combines_to_the_same_file(night, midway: bool) -> None:
    keys, sets, setidx, minobs = night
    with tempfile.TemporaryDirectory() as tmp:
        split = _combine(Path(tmp) / "split", keys, sets, setidx, minobs, midway=midway)
        whole = _combine(Path(tmp) / "whole", keys, [list(range(len(keys)))], [270_000],
                         minobs)
        assert nightly_lightcurves(split) == reference_lightcurves([_records(keys)], minobs)
        assert nightly_content(split) == nightly_content(whole)
        assert split.read_bytes() == whole.read_bytes()
