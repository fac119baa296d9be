"""Named hypothesis strategies shared by the test suite.

Each strategy mixes simple anchor values (epochs, leap-second days, slot and set boundaries)
into its random draws, so that failures shrink to readable cases (as astropy's
``time/tests/test_precision.py`` does). Ranges default to the years the property tests cover,
2013-2040: from the lstseq epoch to well past the bundled leap-second table.

Values are plain data (floats, ints, datetimes); nothing here imports the code under test.
"""

from __future__ import annotations

from datetime import datetime

from hypothesis import strategies as st

__all__ = [
    "ANCHOR_JDS",
    "ANCHOR_LSTSEQS",
    "JD_2013",
    "JD_2041",
    "LEAP_SECOND_ENDS_JD",
    "LSTSEQ_2041",
    "instant_arrays",
    "lstseqs",
    "slot_boundaries",
    "slot_fractions",
    "utc_datetimes",
    "utc_instants",
]

JD_2013 = 2456293.5
"""2013-01-01T00:00:00 UTC (the lstseq epoch), Julian date."""
JD_2041 = 2466520.5
"""2041-01-01T00:00:00 UTC, Julian date: the end of the range the properties cover."""
LSTSEQ_2041 = 138_400_000
"""A slot number safely before 2041 (28 years of 366.25 sidereal days of 13500 slots)."""
LEAP_SECOND_ENDS_JD = (2457204.5, 2457754.5)
"""UTC JD just after the leap seconds 2015-06-30T23:59:60 and 2016-12-31T23:59:60."""

ANCHOR_JDS = (
    JD_2013,  # the lstseq epoch
    2456293.2702,  # near the start of lstseq 0 (2012-12-31 about 18:29 UTC)
    2456293.75,  # 2013-01-01T06:00
    2457182.4583333335,  # 2015-06-08T23:00, the legacy La Palma anchor night
    2457204.4999,  # the last seconds of 2015-06-30, a leap-second day
    2457204.5,  # 2015-07-01T00:00, just after a leap second
    2457753.9999999,  # the end of 2016-12-31, a leap-second day
    2457754.5,  # 2017-01-01T00:00
    2460000.5,  # 2023-02-24
    2461000.0,  # a whole JD (noon UTC)
    2462502.5,  # 2027-01-01, past the predictions of the bundled IERS-A table
    2466519.5,  # 2040-12-31
)
"""Readable UTC Julian dates mixed into `utc_instants`."""

ANCHOR_LSTSEQS = (
    0,  # first slot of the counter
    1,
    49,  # last slot of the first set of 50
    50,
    13499,  # last slot of the first sidereal day
    13500,
    12036700,  # legacy anchor: 2015-06-08, La Palma night
    12039236,
    99_999_999,  # last 8-digit file name (2033)
    100_000_000,
)
"""Readable slot numbers mixed into `lstseqs`."""


def utc_instants(min_jd: float = JD_2013, max_jd: float = JD_2041) -> st.SearchStrategy[float]:
    """UTC Julian dates (float64, ERFA convention) in ``[min_jd, max_jd)``, with anchors."""
    anchors = [jd for jd in ANCHOR_JDS if min_jd <= jd < max_jd]
    floats = st.floats(min_jd, max_jd, exclude_max=True, allow_nan=False, allow_infinity=False)
    return st.one_of(st.sampled_from(anchors), floats) if anchors else floats


def instant_arrays(
    min_jd: float = JD_2013, max_jd: float = JD_2041, *, max_size: int = 64
) -> st.SearchStrategy[list[float]]:
    """Non-empty lists of `utc_instants`, for the vectorised code paths."""
    return st.lists(utc_instants(min_jd, max_jd), min_size=1, max_size=max_size)


def utc_datetimes(min_year: int = 2013, max_year: int = 2040) -> st.SearchStrategy[datetime]:
    """Naive UTC datetimes (microsecond resolution) from ``min_year`` to ``max_year``."""
    anchors = [
        datetime(2013, 1, 1),
        datetime(2015, 6, 8, 23, 0),
        datetime(2016, 12, 31, 23, 59, 59, 999999),
        datetime(2017, 1, 1),
        datetime(2040, 12, 31, 23, 59, 59),
    ]
    anchors = [a for a in anchors if min_year <= a.year <= max_year]
    draws = st.datetimes(datetime(min_year, 1, 1), datetime(max_year, 12, 31, 23, 59, 59))
    return st.one_of(st.sampled_from(anchors), draws) if anchors else draws


def lstseqs(min_value: int = 0, max_value: int = LSTSEQ_2041) -> st.SearchStrategy[int]:
    """Slot numbers in ``[min_value, max_value]`` (default 2013-2040), with anchors."""
    anchors = [s for s in ANCHOR_LSTSEQS if min_value <= s <= max_value]
    draws = st.integers(min_value, max_value)
    return st.one_of(st.sampled_from(anchors), draws) if anchors else draws


def slot_boundaries(max_day: int = LSTSEQ_2041 // 13500) -> st.SearchStrategy[int]:
    """Slot numbers at and beside the edges of sidereal days (13500) and sets (50)."""
    day_edges = st.integers(0, max_day).map(lambda day: day * 13500)
    set_edges = st.integers(0, max_day * 270).map(lambda k: k * 50)
    return st.tuples(st.one_of(day_edges, set_edges), st.sampled_from((-1, 0, 1))).map(
        lambda pair: max(pair[0] + pair[1], 0)
    )


def slot_fractions() -> st.SearchStrategy[float]:
    """Fractions of a slot in ``[0, 1]``, with the ends and the middle as anchors."""
    return st.one_of(st.sampled_from((0.0, 0.5, 1.0)), st.floats(0.0, 1.0))
