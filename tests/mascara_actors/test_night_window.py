"""Tests of mascara_actors.night_window: the science slots of a night from the Sun's altitude.

Every window is checked against the Sun computed here, directly with astropy (``get_body``
-> ``AltAz`` at the configured site): the slot before the start begins with the Sun at or
above the start altitude and the start slot below it; the slot before the stop begins below
the stop altitude and the stop slot at or above it. The night's date is checked against a
sunset found on a one-minute grid, the night's length against the spherical-trigonometry
hour angle of the Sun at that altitude.

A ``night_window`` call costs about a fifth of a second (the Sun on a 5-minute grid over two
and a half days, computed exactly only near the altitudes), so the windows are computed once
per module (:func:`window`) and a dozen cases are sampled over both sites, both hemispheres'
seasons and three altitudes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from astropy.coordinates import AltAz, get_body
from astropy.time import Time

from mascara_actors.config import NightConfig, SiteConfig, load_config
from mascara_actors.ephemeris import site_location, sun_altitude, sun_altitude_near
from mascara_actors.night_window import NightWindow, first_slot_past, night_window
from mascara_actors.sidereal import lstseq2date, slot_length_solar_s

# 2031 is past the bundled IERS table: astropy falls back to the mean polar motion (an
# arcsecond-level effect, far below what a slot boundary resolves) and says so.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Tried to get polar motions:astropy.utils.exceptions.AstropyWarning"
)

SLOT_S = slot_length_solar_s()
DAY_S = 86400.0
MINUTE_D = 1.0 / 1440.0
JD_UNIX_EPOCH = 2440587.5

DATES = (date(2026, 3, 20), date(2026, 6, 21), date(2026, 12, 21), date(2031, 9, 1))
"""An equinox, both solstices and a date past the bundled IERS table."""

CASES = [
    # the shipped default, +5 degrees at both ends (La Silla in 2031: see the last case)
    *((cam, day, 5.0, 5.0) for cam in ("LPC", "LSC") for day in DATES
      if (cam, day) != ("LSC", DATES[-1])),
    # darker nights
    ("LPC", date(2026, 6, 21), -18.0, -18.0),
    ("LSC", date(2026, 12, 21), -10.0, -10.0),  # starts after 00:30 UTC of the next date
    # different altitudes at the two ends: each end must use its own
    ("LPC", date(2026, 12, 21), -10.0, 5.0),
    ("LSC", date(2031, 9, 1), 5.0, -18.0),
]


SAME_AT_BOTH_ENDS = [c for c in CASES if c[2] == c[3]]


def case_id(case: tuple[str, date, float, float]) -> str:
    cam, day, start_deg, stop_deg = case
    return f"{cam}-{day.isoformat()}-{start_deg:+g}-{stop_deg:+g}"


@functools.cache
def night_config(start_deg: float, stop_deg: float) -> NightConfig:
    return dataclasses.replace(
        load_config().reduction.night, sun_alt_start_deg=start_deg, sun_alt_stop_deg=stop_deg
    )


@functools.cache
def site(camera_id: str) -> SiteConfig:
    return load_config().camera(camera_id).site


def jd_of(day: date, hours_utc: float = 0.0) -> float:
    """JD (UTC) of ``hours_utc`` on the UTC date ``day``."""
    return JD_UNIX_EPOCH + (day - date(1970, 1, 1)).days + hours_utc / 24.0


def local_noon(camera_id: str, day: date) -> float:
    """JD (UTC) of local mean noon on ``day`` at the camera's site: broad daylight."""
    return jd_of(day, 12.0) - site(camera_id).longitude_deg / 360.0


@functools.cache
def window(camera_id: str, day: date, start_deg: float, stop_deg: float) -> NightWindow:
    """The window ``night_window`` gives when asked at local noon on ``day`` (computed once)."""
    return night_window(site(camera_id), local_noon(camera_id, day),
                        night_config(start_deg, stop_deg))


def sun_alt(camera_id: str, jd: np.ndarray | list[float]) -> np.ndarray:
    """The Sun's altitude, degrees, computed here with astropy (not through the module)."""
    t = Time(np.asarray(jd, float), format="jd", scale="utc")
    loc = site_location(site(camera_id))
    return get_body("sun", t, loc).transform_to(AltAz(obstime=t, location=loc)).alt.deg


def slot_start(lstseq: int) -> float:
    return float(lstseq2date(lstseq, format="jd"))


def utc_date(jd: float) -> date:
    return Time(jd, format="jd", scale="utc").to_datetime().date()


def assert_edges(camera_id: str, w: NightWindow, start_deg: float, stop_deg: float) -> None:
    """The window's edges are where the Sun crosses the altitudes (see the module docstring),
    and ``w.night`` is the UTC date of the sunset before the start."""
    edges = [slot_start(s) for s in (w.start_lstseq - 1, w.start_lstseq,
                                     w.stop_lstseq - 1, w.stop_lstseq)]
    # sunset: the Sun's centre crossing 0 degrees downwards, within 3 h of the start
    step = 2.0 * MINUTE_D
    grid = w.start_jd + np.arange(-90, 91) * step
    alt = sun_alt(camera_id, [*edges, *grid])
    before_start, at_start, before_stop, at_stop = alt[:4]
    assert before_start >= start_deg > at_start
    assert before_stop < stop_deg <= at_stop
    g = alt[4:]
    (sets,) = np.nonzero((g[:-1] >= 0.0) & (g[1:] < 0.0))
    assert sets.size == 1
    k = int(sets[0])
    sunset = grid[k] + step * g[k] / (g[k] - g[k + 1])
    assert w.night == utc_date(sunset)


# -- NightWindow itself ------------------------------------------------------------------------


def test_night_window_slots_times_and_phase() -> None:
    w = NightWindow(date(2026, 3, 20), 65343169, 65350358)
    assert w.slots == 7189
    assert w.start_jd == slot_start(65343169)
    assert w.stop_jd == slot_start(65350358)
    # consecutive slots, 6.4 sidereal seconds each
    assert (w.stop_jd - w.start_jd) * DAY_S == pytest.approx(w.slots * SLOT_S, abs=1e-3)
    phases = [w.phase(s) for s in (0, 65343168, 65343169, 65346000, 65350357, 65350358, 10**9)]
    assert phases == ["before", "before", "night", "night", "night", "after", "after"]


# -- the edges, against the Sun ----------------------------------------------------------------


@pytest.mark.parametrize(("camera_id", "day", "start_deg", "stop_deg"), CASES,
                         ids=[case_id(c) for c in CASES])
def test_window_edges_are_where_the_sun_crosses_the_altitudes(
    camera_id: str, day: date, start_deg: float, stop_deg: float
) -> None:
    w = window(camera_id, day, start_deg, stop_deg)
    assert_edges(camera_id, w, start_deg, stop_deg)
    # asked at local noon, the window is that evening's night
    assert w.night == day
    asked = local_noon(camera_id, day)
    assert asked < w.start_jd < asked + 0.5
    assert w.start_jd < w.stop_jd < asked + 1.0


def test_the_night_date_is_the_sunset_date_not_the_start_date() -> None:
    """At La Silla (UTC-4.7 h) in December, a -10 degree night starts after 00:30 UTC."""
    w = window("LSC", date(2026, 12, 21), -10.0, -10.0)
    assert utc_date(w.start_jd) == date(2026, 12, 22)
    assert w.night == date(2026, 12, 21)
    start = Time(w.start_jd, format="jd", scale="utc").to_datetime()
    assert datetime(2026, 12, 22, 0, 20) < start < datetime(2026, 12, 22, 0, 40)


@pytest.mark.parametrize(("start_deg", "low_h", "high_h"), [(5.0, 10.5, 15.0), (-18.0, 6.5, 11.0)])
def test_night_length_follows_the_season(start_deg: float, low_h: float, high_h: float) -> None:
    hours = {
        (cam, day): window(cam, day, start_deg, start_deg).slots * SLOT_S / 3600.0
        for cam, day, s0, s1 in CASES
        if s0 == s1 == start_deg
    }
    assert all(low_h < h < high_h for h in hours.values()), hours
    if start_deg != 5.0:
        return
    june, december = date(2026, 6, 21), date(2026, 12, 21)
    # northern winter nights are long at La Palma, southern ones at La Silla
    assert hours["LPC", june] + 3.0 < hours["LPC", december]
    assert hours["LSC", december] + 3.0 < hours["LSC", june]
    # the sites are at +28.8 and -29.3 degrees: mirror images of each other
    assert hours["LPC", june] == pytest.approx(hours["LSC", december], abs=0.1)
    assert hours["LPC", december] == pytest.approx(hours["LSC", june], abs=0.1)
    assert hours["LPC", date(2026, 3, 20)] == pytest.approx(hours["LSC", date(2026, 3, 20)],
                                                           abs=0.1)


@pytest.mark.parametrize(("camera_id", "day", "start_deg", "stop_deg"),
                         SAME_AT_BOTH_ENDS, ids=[case_id(c) for c in SAME_AT_BOTH_ENDS])
def test_night_length_matches_the_hour_angle_of_the_altitude(
    camera_id: str, day: date, start_deg: float, stop_deg: float
) -> None:
    """``cos H = (sin h - sin phi sin dec) / (cos phi cos dec)``: the night lasts 24 h - 2H.

    With the declination at mid-night its change over the night cancels to first order; the
    Sun's hour angle runs at 360 degrees per solar day within 30 s a day.
    """
    w = window(camera_id, day, start_deg, stop_deg)
    mid = Time(0.5 * (w.start_jd + w.stop_jd), format="jd", scale="utc")
    dec = get_body("sun", mid).dec.rad
    phi = math.radians(site(camera_id).latitude_deg)
    h = math.radians(start_deg)
    cos_h = (math.sin(h) - math.sin(phi) * math.sin(dec)) / (math.cos(phi) * math.cos(dec))
    predicted_s = DAY_S * (1.0 - math.acos(cos_h) / math.pi)
    # one slot of quantisation at each end, plus the approximation
    assert w.slots * SLOT_S == pytest.approx(predicted_s, abs=120.0)


# -- which night -------------------------------------------------------------------------------


def test_the_window_in_progress_is_returned_from_the_day_before_to_its_last_slot() -> None:
    cam, day, deg = "LSC", date(2026, 12, 21), -10.0
    cfg, where = night_config(deg, deg), site(cam)
    w = window(cam, day, deg, deg)
    asked = [
        jd_of(day, 12.0),  # 12:00 UTC, 08:00 at La Silla: after the previous dawn
        w.start_jd - 1e-6,  # the last tenth of a second of the day
        0.5 * (w.start_jd + w.stop_jd),
        slot_start(w.stop_lstseq - 1),  # the last science slot (see the next test)
    ]
    assert [night_window(where, jd, cfg) for jd in asked] == [w] * len(asked)
    assert [w.phase(s) for s in (w.start_lstseq - 1, w.start_lstseq, w.stop_lstseq - 1,
                                 w.stop_lstseq)] == ["before", "night", "night", "after"]


def test_the_window_in_progress_is_returned_to_the_end_of_its_last_slot() -> None:
    """At La Silla the Sun reaches -10 degrees at 08:51:58.5 UTC on 2026-12-22, inside the
    night's last slot (08:51:54.5-08:52:00.8), with a 5-minute grid point of night_window at
    the very time asked: 0.09 s before the end of that slot the night is still in progress."""
    cam, day, deg = "LSC", date(2026, 12, 21), -10.0
    w = window(cam, day, deg, deg)
    assert w.phase(w.stop_lstseq - 1) == "night"
    assert sun_alt(cam, [w.stop_jd - 1e-6])[0] >= deg  # past the crossing, still in the slot
    assert night_window(site(cam), w.stop_jd - 1e-6, night_config(deg, deg)) == w


def test_after_the_last_slot_the_next_night_is_returned() -> None:
    cam, day, deg = "LPC", date(2026, 3, 20), 5.0
    w = window(cam, day, deg, deg)
    nxt = night_window(site(cam), w.stop_jd, night_config(deg, deg))
    assert nxt.night == day + timedelta(days=1)
    assert_edges(cam, nxt, deg, deg)
    # a whole day between the nights: dawn to dusk at +5 degrees, about 11 h at the equinox
    assert 10.0 < (nxt.start_jd - w.stop_jd) * 24.0 < 12.0
    # near the equinox nights shorten by about 2 minutes a day at 29 degrees
    assert -40 < nxt.slots - w.slots < 0
    assert w.phase(nxt.start_lstseq) == "after"
    assert nxt.phase(w.stop_lstseq) == "before"


def test_a_winter_night_at_la_silla_lasts_past_utc_noon() -> None:
    """At +5 degrees the June dawn at La Silla comes after 12:00 UTC: asked at 12:00 UTC the
    night before is still in progress, asked at 13:00 UTC it is the coming one."""
    cam, deg = "LSC", 5.0
    w = window(cam, date(2026, 6, 21), deg, deg)
    cfg, where = night_config(deg, deg), site(cam)
    assert night_window(where, jd_of(date(2026, 6, 22), 12.0), cfg) == w
    stop = Time(w.stop_jd, format="jd", scale="utc").to_datetime()
    assert datetime(2026, 6, 22, 12, 0) < stop < datetime(2026, 6, 22, 12, 20)
    later = night_window(where, jd_of(date(2026, 6, 22), 13.0), cfg)
    assert later.night == date(2026, 6, 22)
    assert later.start_lstseq > w.stop_lstseq


def test_no_night_at_all_is_an_error() -> None:
    """Midsummer at 78 degrees north: the Sun stays above +5 degrees."""
    arctic = SiteConfig(name="Svalbard", code="SV", latitude_deg=78.2, longitude_deg=15.6,
                        height_m=500.0)
    with pytest.raises(ValueError, match=r"does not go below 5\.0 deg .* Svalbard"):
        night_window(arctic, jd_of(date(2026, 6, 21), 12.0), night_config(5.0, 5.0))


# -- first_slot_past ---------------------------------------------------------------------------


def test_first_slot_past_finds_the_crossing_slot() -> None:
    cam, deg = "LPC", -18.0
    w = window(cam, date(2026, 6, 21), deg, deg)
    where = site(cam)
    for lo, hi in ((-2.0, 3.0), (0.0, 5.0), (-5.0, 0.01)):  # minutes around the edge
        assert first_slot_past(where, w.start_jd + lo * MINUTE_D, w.start_jd + hi * MINUTE_D,
                               deg, rising=False) == w.start_lstseq
        assert first_slot_past(where, w.stop_jd + lo * MINUTE_D, w.stop_jd + hi * MINUTE_D,
                               deg, rising=True) == w.stop_lstseq


def test_first_slot_past_refuses_a_bracket_that_does_not_cross() -> None:
    cam = "LPC"
    where = site(cam)
    noon = local_noon(cam, date(2026, 6, 21))
    midnight = noon + 0.5
    with pytest.raises(ValueError, match=r"does not cross 5\.0 deg"):
        first_slot_past(where, noon, noon + 5 * MINUTE_D, 5.0, rising=False)
    with pytest.raises(ValueError, match=r"does not cross -18\.0 deg"):
        first_slot_past(where, midnight, midnight + 5 * MINUTE_D, -18.0, rising=True)


# -- the Sun computed only near the altitudes ---------------------------------------------------


@pytest.mark.parametrize(
    ("cam", "day", "points"),
    [("LPC", date(2026, 6, 21), 721), ("LSC", date(2026, 12, 21), 700)],  # 700: a short end
)
def test_the_sun_near_the_levels_crosses_them_where_the_whole_grid_does(
    cam: str, day: date, points: int
) -> None:
    grid = local_noon(cam, day) + np.arange(points) * 5 * MINUTE_D  # 2.5 days, 5-minute steps
    levels = (-18.0, 10.0)
    near = sun_altitude_near(grid, site(cam), levels)
    full = sun_altitude(grid, site(cam))
    for level in levels:
        assert np.array_equal(near >= level, full >= level), level
    close = np.abs(full[:, None] - np.array(levels)).min(axis=1) < 1.0
    assert close.sum() > 10
    assert np.array_equal(near[close], full[close])  # exact where it matters
    assert np.count_nonzero(near != full) > 400  # interpolated elsewhere: that is the saving
