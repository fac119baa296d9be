"""The configuration loader: the shipped files load, and bad files fail with one clear message."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mascara_actors.config import default_config_dir, load_config
from mascara_actors.errors import ConfigError


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    """A fresh, writable copy of the shipped config directory."""
    dst = tmp_path / "config"
    shutil.copytree(default_config_dir(), dst)
    return dst


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_shipped_config_has_two_sites_and_ten_cameras() -> None:
    cfg = load_config()
    assert set(cfg.sites) == {"LaPalma", "LaSilla"}
    assert sorted(cfg.cameras) == sorted(f"{s}{c}" for s in ("LP", "LS") for c in "NESWC")


def test_section4_defaults() -> None:
    phot = load_config().reduction.photometry
    assert phot.fast_apertures_px == (2.5, 4.5)
    assert phot.slow_apertures_px == (2.5, 3.5, 4.5, 5.5)
    assert phot.sky_radii_px == (6.0, 21.0)
    assert phot.gain_e_per_adu == 0.62
    assert phot.saturation_adu == 63000.0
    assert phot.fast_vmax == 8.4
    assert phot.slow_vmax == 10.0
    assert load_config().reduction.storage.minobs == 51


def test_camera_geometry_matches_legacy_plate_scale() -> None:
    cam = load_config().camera("LSC")
    assert cam.site.name == "LaSilla"
    assert cam.sensor.xsize == 4008
    assert cam.sensor.ysize == 2672
    # legacy blind solution: 9 um / 24 mm = 3.75e-4 rad = 77.3 arcsec per pixel
    assert cam.pixel_scale_arcsec == pytest.approx(77.35, abs=0.01)
    rows, cols = cam.sensor.science_slices
    assert (rows.stop - rows.start, cols.stop - cols.start) == (2672, 4008)


def test_a_mirrored_camera(cfg_dir: Path) -> None:
    assert not load_config(cfg_dir).camera("LPN").mirror  # the default
    _edit(cfg_dir / "cameras.toml", "roll_deg = 4.3", "roll_deg = 4.3\nmirror = true")
    assert load_config(cfg_dir).camera("LPN").mirror


def test_unknown_camera_and_site_list_the_known_ones() -> None:
    cfg = load_config()
    with pytest.raises(ConfigError, match=r"unknown camera 'LPX'.*LPC"):
        cfg.camera("LPX")
    with pytest.raises(ConfigError, match=r"unknown site 'Paranal'.*LaPalma, LaSilla"):
        cfg.site("Paranal")


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        pytest.param(
            "sites.toml",
            "latitude_deg = 28.7603",
            "latitude_deg = 95.0",
            r"sites\.toml: key 'sites\.LaPalma\.latitude_deg' = 95\.0: must be between -90 and 90",
            id="latitude-95",
        ),
        pytest.param(
            "reduction.toml",
            "fast_apertures_px = [2.5, 4.5]",
            "fast_apertures_px = [-2.5, 4.5]",
            r"reduction\.toml: key 'photometry\.fast_apertures_px' = \[-2\.5, 4\.5\]: must be > 0",
            id="negative-aperture",
        ),
        pytest.param(
            "reduction.toml",
            "sky_radii_px = [6.0, 21.0]",
            "sky_radii_px = [21.0, 6.0]",
            r"key 'photometry\.sky_radii_px' = \[21\.0, 6\.0\]: inner radius must be > 0 and "
            r"smaller than the outer radius",
            id="sky-inner-ge-outer",
        ),
        pytest.param(
            "cameras.toml",
            "roll_deg = 4.3",
            "roll_deg = 4.3\nmirror = 1",
            r"key 'cameras\.LPN\.mirror' must be true or false, got 1",
            id="mirror-not-a-boolean",
        ),
        pytest.param(
            "reduction.toml",
            "minobs = 51",
            'minobs = "many"',
            r"key 'storage\.minobs' must be an integer, got 'many'",
            id="wrong-type",
        ),
        pytest.param(
            "reduction.toml",
            "minobs = 51",
            "",
            r"key 'storage\.minobs' is missing",
            id="missing-key",
        ),
        pytest.param(
            "reduction.toml",
            "minobs = 51",
            "minobs = 51\nminimum_obs = 3",
            r"\[storage\]: unknown key\(s\) \['minimum_obs'\]",
            id="unknown-key",
        ),
        pytest.param(
            "cameras.toml",
            'letter = "C"\nsensor = "KAI-11002"\nlens = "canon24"\nalt_deg = 90.0',
            'letter = "C"\nsensor = "KAI-11003"\nlens = "canon24"\nalt_deg = 90.0',
            r"key 'cameras\.LPC\.sensor' = 'KAI-11003' must name a \[sensors\.\*\] table",
            id="unknown-sensor",
        ),
        pytest.param(
            "cameras.toml",
            "xsize = 4008",
            "xsize = 4100",
            r"\[sensors\.KAI-11002\] science region x0\+xsize=4136.*does not fit",
            id="science-region-too-big",
        ),
        pytest.param(
            "sites.toml",
            "[sites.LaPalma]",
            '[lstseq]\nslot_sidereal_s = 6.4\n\n[sites.LaPalma]',
            r"sites\.toml: section 'lstseq' is gone: the lstseq clock is the contract of "
            r"DESIGN\.md section 2, not a setting .*; delete it from the file",
            id="lstseq-section-gone",
        ),
        pytest.param(
            "reduction.toml",
            "[binning]",
            "[binning]\nset_size = 50",
            r"reduction\.toml: key 'binning\.set_size' is gone: a set is 50 exposures by "
            r"contract \(lstseq // 50",
            id="set-size-gone",
        ),
        pytest.param(
            "sites.toml",
            "[sites.LaPalma]",
            "[site]\nx = 1\n\n[sites.LaPalma]",
            r"sites\.toml: unknown section\(s\) \['site'\]; known sections are \['sites'\]",
            id="unknown-section",
        ),
        pytest.param(
            "reduction.toml",
            'sky_estimator = "clipped_median"',
            'sky_estimator = "mean"',
            r"must be one of \['mmm', 'clipped_median'\]",
            id="plain-mean-refused",
        ),
        pytest.param(
            "reduction.toml",
            'candidates = ""',
            "candidates = 7",
            r"reduction\.toml: key 'summary\.candidates' must be a string, got 7",
            id="candidates-not-a-path",
        ),
        pytest.param(
            "reduction.toml",
            "[night]",
            "[night\n",
            r"reduction\.toml is not valid TOML",
            id="bad-toml",
        ),
    ],
)
def test_bad_config_fails_with_one_clear_message(
    cfg_dir: Path, file: str, old: str, new: str, message: str
) -> None:
    _edit(cfg_dir / file, old, new)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(cfg_dir)
    assert str(cfg_dir / file) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_says_where_to_get_it(cfg_dir: Path) -> None:
    (cfg_dir / "cameras.toml").unlink()
    with pytest.raises(ConfigError, match=re.escape(str(cfg_dir / "cameras.toml")) + " is missing"):
        load_config(cfg_dir)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nowhere")


def test_summary_candidates_file(cfg_dir: Path, tmp_path: Path) -> None:
    """Empty (the shipped value) or absent: no list; relative to the config directory."""
    assert load_config(cfg_dir).candidates_file() is None
    red = cfg_dir / "reduction.toml"
    _edit(red, 'candidates = ""', 'candidates = "search/candidates.csv"')
    assert load_config(cfg_dir).candidates_file() == cfg_dir / "search" / "candidates.csv"
    _edit(red, '"search/candidates.csv"', f'"{tmp_path / "c.csv"}"')
    assert load_config(cfg_dir).candidates_file() == tmp_path / "c.csv"
    text = red.read_text()
    red.write_text(text[:text.index("[summary]")])  # an older file, without the section
    assert load_config(cfg_dir).candidates_file() is None
