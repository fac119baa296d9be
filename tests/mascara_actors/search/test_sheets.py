"""Candidate sheets and their index (issue 19, item 3): the fold, the PNG sheet on a
simulated season with a transit, degenerate light curves, and the HTML index."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from mascara_actors.search.candidates import Candidate
from mascara_actors.search.lightcurve import StarLightCurve
from mascara_actors.search.sheets import fold_hours, render_sheet, sheet_name, write_index

PERIOD, EPOCH, DURATION, DEPTH = 3.474, 2461000.2, 3.0 / 24, 0.01
HIP = 113790


def _candidate(**changes: object) -> Candidate:
    c = Candidate(
        hip=HIP, camera="LSC", vmag=7.6, sptype="A", ra=345.12, dec=-12.5, rank=1,
        period=PERIOD, epoch=EPOCH, duration=DURATION, depth=DEPTH, depth_err=4e-4,
        sde=14.2, snr=25.0, npoints=4320, ntransits=9, in_transit_fraction=0.036,
        odd_even_sigma=0.7, secondary_depth=1e-4, secondary_sigma=0.3,
        ellipsoidal_amp=5e-5, ellipsoidal_sigma=0.4, single_night_fraction=0.2,
        anti_transit_ratio=5.0, red_noise=1.0, blend_hip=113801, blend_snr=2.1,
        checks={"sde": True, "odd_even": True, "secondary": True, "sidereal_alias": False},
    )
    return dataclasses.replace(c, **changes)


def _season(nights: int = 40, seed: int = 3) -> StarLightCurve:
    """Nights of 108 bins of 5.3 minutes, 3 mmag scatter, a 1 % box transit."""
    rng = np.random.default_rng(seed)
    jd = np.concatenate([2461000 + n + 0.05 + np.arange(108) * 0.0037 for n in range(nights)])
    flux = 1.0 + 3e-3 * rng.standard_normal(len(jd))
    flux[np.abs(fold_hours(jd, PERIOD, EPOCH)) < DURATION * 12] -= DEPTH
    lst = (jd - 2461000.0) * 24.0 * 1.0027379 % 24.0
    return StarLightCurve(HIP, "LSC", jd, lst, flux, np.full(len(jd), 3e-3))


def _periodogram() -> tuple[np.ndarray, np.ndarray]:
    periods = np.exp(np.linspace(np.log(0.5), np.log(10.0), 2000))
    sde = np.exp(-0.5 * ((periods - PERIOD) / 0.01) ** 2) * 14.0 + 0.1 * np.sin(periods * 40)
    return periods, sde


def test_fold_puts_mid_transits_at_zero_and_half_a_period_at_minus_half() -> None:
    n = np.arange(-5, 6)
    assert np.allclose(fold_hours(EPOCH + n * PERIOD, PERIOD, EPOCH), 0.0, atol=1e-6)
    # Binary fractions, so that half a period later is exactly representable.
    period, epoch = 2.5, 2461000.25
    half = fold_hours(epoch + n * period + period / 2, period, epoch)
    assert np.array_equal(half, np.full(len(n), -period * 12))
    quarter = fold_hours(np.array([epoch + 0.25, epoch - 0.25, epoch + 7.5 + 0.5]),
                         period, epoch)
    assert np.allclose(quarter, [6.0, -6.0, 12.0])


def test_fold_stays_in_its_half_open_range() -> None:
    jd = 2461000.0 + np.linspace(0, 40, 10001)
    hours = fold_hours(jd, PERIOD, EPOCH)
    assert hours.min() >= -PERIOD * 12
    assert hours.max() < PERIOD * 12
    assert np.allclose(np.mod(jd - EPOCH - hours / 24 + PERIOD / 2, PERIOD), PERIOD / 2)


def test_sheet_name() -> None:
    assert sheet_name(_candidate(rank=2)) == f"HIP{HIP}_2.png"


def test_sheet_of_a_simulated_transit(tmp_path: Path) -> None:
    periods, sde = _periodogram()
    c = _candidate()
    path = render_sheet(tmp_path / sheet_name(c), c, _season(), periods, sde)
    assert path == tmp_path / f"HIP{HIP}_1.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[0] >= 900
    assert image.shape[1] >= 1400
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("kind", ["three points", "all NaN", "no point in transit"])
def test_sheet_of_a_degenerate_light_curve(tmp_path: Path, kind: str) -> None:
    lc = _season(nights=2)
    if kind == "three points":
        jd = np.array([2461000.6, 2461000.7, 2461001.9])
        lc = StarLightCurve(HIP, "LSC", jd, np.zeros(3), np.array([1.0, np.nan, 0.999]),
                            np.full(3, 3e-3))
    elif kind == "all NaN":
        lc = dataclasses.replace(lc, flux=np.full(len(lc.jd), np.nan))
    else:
        out = np.abs(fold_hours(lc.jd, PERIOD, EPOCH)) > DURATION * 36
        lc = dataclasses.replace(lc, jd=lc.jd[out], lst=lc.lst[out], flux=lc.flux[out],
                                 flux_err=lc.flux_err[out])
    empty = np.array([])
    path = render_sheet(tmp_path / "sheet.png", _candidate(), lc, empty, empty)
    assert imread(path).shape[:2] == (1100, 1600)


def test_sheet_refuses_another_stars_light_curve(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="HIP 1,"):
        render_sheet(tmp_path / "x.png", _candidate(), dataclasses.replace(_season(2), hip=1),
                     *_periodogram())
    assert not (tmp_path / "x.png").exists()


def test_index(tmp_path: Path) -> None:
    rows = [
        _candidate(hip=11, checks={"sde": True, "odd_even": True},
                   aliases="6.948000 2.316000"),
        _candidate(hip=22, checks={"sde": True, "odd_even": False, "blend": False}),
        _candidate(hip=33, camera="<b>", checks={"sde": False}),
    ]
    sheets = {(11, 1): "HIP11_1.png", (22, 1): "HIP22_1.png"}
    path = write_index(tmp_path, rows, sheets)
    assert path == tmp_path / "index.html"
    page = path.read_text()
    assert page.count("<tr") == 1 + len(rows)
    assert '<span id="ncandidates">3</span>' in page
    assert '<span id="npassed">1</span>' in page
    trs = page.split("<tr")[2:]
    assert ["HIP 11" in trs[0], "HIP 22" in trs[1], "HIP 33" in trs[2]] == [True] * 3
    assert 'href="HIP11_1.png"' in trs[0]
    assert 'href="HIP22_1.png"' in trs[1]
    assert "href" not in trs[2]
    assert trs[0].startswith(' class="passed"')
    assert not trs[1].startswith(' class="passed"')
    assert "failed: odd_even, blend" in trs[1]
    # the periods that fold the same transits, in the column after the period
    assert "<td>3.47400</td><td>6.94800, 2.31600</td>" in trs[0]
    assert "<td>3.47400</td><td></td>" in trs[1]
    assert "failed: sde" in trs[2]
    assert "<b>" not in page
    assert "&lt;b&gt;" in trs[2]
    assert "http" not in page
    assert not list(tmp_path.glob("*.tmp"))
