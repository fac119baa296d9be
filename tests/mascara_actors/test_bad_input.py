"""Bad input that must fail alone, never spoil a night (issue 13, items 4 and 6 and smaller ones).

The end-to-end tests replay, once per module through the real command line, a copy of the
committed night with two faults: the header of frame 65344245 claims LSTSEQ 65344246, and
dark 65344195 is a zero-byte file. The configuration asks for 9 darks, so a master dark can
be made from the nine good ones. The other tests call the modules directly.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from mascara_actors.calibration import (
    adopt_legacy_table,
    dark_from_table,
    make_masters,
    master_dark,
    read_dark_table,
    read_master,
    update_dark_filename,
    write_master,
)
from mascara_actors.config import CalibrationConfig, default_config_dir, load_config
from mascara_actors.errors import ConfigError
from mascara_actors.messages import FrameFailed, FrameReducedEvent, WarningEvent, from_json
from mascara_actors.rawframe import read_raw, write_raw
from mascara_actors.storage import NightFile
from mascara_actors.summary import collect_summary, render_html, render_text
from mascara_actors.summary.weather import WeatherProxy

REPO = Path(__file__).resolve().parents[2]
NIGHT = REPO / "replay_data" / "night"
MISLABELLED = 65344245
"""Its header says LSTSEQ = MISLABELLED + 1, the real frame of which is in the night too."""
EMPTY_DARK = 65344195
"""A zero-byte dark (not the first file of the night)."""
DARKS = list(range(65344190, 65344200))
SCIENCE = list(range(65344200, 65344260))


def _config(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the shipped configuration with one line of reduction.toml changed."""
    directory = tmp_path / "config"
    shutil.copytree(default_config_dir(), directory)
    toml = directory / "reduction.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new, 1))
    return directory


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``mascara-actors ARGS`` in a fresh Python, stdout and stderr captured."""
    code = "import sys; from mascara_actors.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


# --- a replay with a mislabelled frame and a zero-byte dark -----------------------------------


@dataclasses.dataclass(frozen=True)
class BadNight:
    night: Path
    out: Path
    result: subprocess.CompletedProcess[str]

    @property
    def night_dir(self) -> Path:
        (found,) = [p for p in self.out.iterdir() if p.name.endswith("LPC")]
        return found


@pytest.fixture(scope="module")
def bad_night(tmp_path_factory: pytest.TempPathFactory) -> BadNight:
    """The committed night with the two faults, replayed by the command line (shared,
    read-only)."""
    base = tmp_path_factory.mktemp("bad_night")
    night = base / "night"
    shutil.copytree(NIGHT, night)
    path = night / f"{MISLABELLED}C.fits.fz"
    raw = read_raw(path)
    write_raw(path, raw.data, dataclasses.replace(raw.header, lstseq=MISLABELLED + 1))
    (night / f"{EMPTY_DARK}Cdark.fits.fz").write_bytes(b"")
    config = _config(base, "min_dark = 10", "min_dark = 9")
    out = base / "out"
    result = _cli("--config", str(config), "--replay", str(night), "--out", str(out))
    return BadNight(night, out, result)


def _events(night_dir: Path) -> list:
    lines = (night_dir / "logs" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [from_json(line) for line in lines]


def test_the_mislabelled_frame_fails_alone_naming_the_file(bad_night: BadNight) -> None:
    assert bad_night.result.returncode == 0, bad_night.result.stderr
    events = _events(bad_night.night_dir)
    (failed,) = [ev for ev in events if isinstance(ev, FrameFailed)]
    assert failed.lstseq == MISLABELLED
    assert f"{MISLABELLED}C.fits.fz" in failed.reason
    assert f"LSTSEQ {MISLABELLED + 1} but the name says {MISLABELLED}" in failed.reason
    reduced = sorted(ev.lstseq for ev in events if isinstance(ev, FrameReducedEvent))
    assert reduced == [s for s in SCIENCE if s != MISLABELLED]  # the real 246 among them


def test_the_station_table_has_one_row_per_good_frame_with_its_own_jd(
    bad_night: BadNight,
) -> None:
    (fast,) = (bad_night.night_dir / "lightcurves").glob("fast_*.hdf5")
    with NightFile(fast) as nf:
        station = nf.station
    good = [s for s in SCIENCE if s != MISLABELLED]
    assert station["lstseq"].tolist() == good
    jd = [read_raw(NIGHT / f"{s}C.fits.fz").header.jd for s in good]
    np.testing.assert_array_equal(station["jd"], jd)


def test_the_zero_byte_dark_is_left_out_of_the_master(bad_night: BadNight) -> None:
    empty = bad_night.night / f"{EMPTY_DARK}Cdark.fits.fz"
    warned = [line for line in bad_night.result.stderr.splitlines()
              if f"left out of the master dark: {empty}: unreadable FITS file (0 bytes" in line]
    assert warned, bad_night.result.stderr
    good = [bad_night.night / f"{s}Cdark.fits.fz" for s in DARKS if s != EMPTY_DARK]
    calibration = dataclasses.replace(load_config().reduction.calibration, min_dark=9)
    expected = master_dark(good, calibration=calibration)
    (path,) = (bad_night.night_dir / "binned").glob("*masterdark.fits")
    made = read_master(path)
    assert made.nobs == 9
    assert made.sources == tuple(p.name for p in good)
    np.testing.assert_array_equal(made.data, expected.data)
    table = (bad_night.out / "state" / "darktableLPC.dat").read_text().split()
    assert table[0] == str(path)
    # the night's record keeps it: a warning of its event log, and its report names the
    # master and lists the warning
    (warning,) = [e for e in _events(bad_night.night_dir) if isinstance(e, WarningEvent)]
    assert warning.source == "masters"
    assert warning.message.startswith(f"left out of the master dark: {empty}: unreadable FITS "
                                      "file (0 bytes")
    text = render_text(collect_summary(bad_night.night_dir, weather=False))
    assert re.search(rf"(?m)^  Master dark +{path.name}$", text), text
    assert re.search(r"(?m)^  Master flat +none: the frames are not flat-fielded$", text), text
    assert re.search(r"(?m)^  Warnings +1$", text), text
    assert re.search(rf"warning x1 \[masters\] first .*: left out of the master dark: "
                     rf"{re.escape(str(empty))}: unreadable FITS", text), text


def test_darks_brighter_than_the_sky_are_said_once_in_the_nights_report(
        tmp_path: Path) -> None:
    """Darks with light in them (or of another exposure, temperature or readout) made a
    master that turned every frame's sky negative: the night was 'reduced', 0 warnings."""
    night = tmp_path / "night"
    night.mkdir()
    for lstseq in DARKS:  # light in every dark: 5,000 ADU over its science region
        raw = read_raw(NIGHT / f"{lstseq}Cdark.fits.fz")
        data = raw.data.copy()
        h = raw.header
        data[h.y0:h.y0 + h.ysize, h.x0:h.x0 + h.xsize] += 5000
        write_raw(night / f"{lstseq}Cdark.fits.fz", data, h)
    for lstseq in SCIENCE[:8]:
        shutil.copyfile(NIGHT / f"{lstseq}C.fits.fz", night / f"{lstseq}C.fits.fz")
    out = tmp_path / "out"
    result = _cli("--replay", str(night), "--out", str(out), "--in-process")
    (night_dir,) = out.glob("*LPC")
    (warning,) = [e for e in _events(night_dir) if isinstance(e, WarningEvent)]
    assert warning.source == "reducer"
    assert warning.lstseq in SCIENCE[:8]
    assert re.fullmatch(r"median sky -\d+ ADU per pixel after calibration: the master dark "
                        r"\(\d{8}Cmasterdark\.fits\) is brighter than the frames .*: check the "
                        r"night's darks and reduce it again", warning.message), warning.message
    text = render_text(collect_summary(night_dir, weather=False))
    assert re.search(r"(?m)^  Warnings +1$", text), (text, result.stderr)


# --- masters: too few left, frames that do not belong, a foreign file at the path -------------


@pytest.fixture(scope="module")
def darks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The committed night's ten darks, copied (shared, read-only)."""
    directory = tmp_path_factory.mktemp("darks")
    return [Path(shutil.copy(NIGHT / f"{s}Cdark.fits.fz", directory)) for s in DARKS]


LPC = load_config().camera("LPC")  # the camera of the replay night


def _loose(min_dark: int) -> CalibrationConfig:
    return dataclasses.replace(load_config().reduction.calibration, min_dark=min_dark)


def test_too_few_good_darks_fall_back_on_the_dark_table_and_say_why(
    tmp_path: Path, darks: list[Path]
) -> None:
    cut = tmp_path / darks[3].name
    cut.write_bytes(darks[3].read_bytes()[:5000])  # truncated: 9 good darks of the 10 needed
    table_dark = tmp_path / "old" / "65000000Cmasterdark.fits"
    table_dark.parent.mkdir()
    write_master(table_dark, master_dark(darks, calibration=_loose(10)))
    # the table under its legacy name (the camera letter): carried over to LPC's own
    update_dark_filename("C", table_dark, tmp_path / "state")
    masters = make_masters(dark=[*darks[:3], cut, *darks[4:]], camera=LPC,
                           calibration=_loose(10), binned_dir=tmp_path / "binned",
                           state_dir=tmp_path / "state")
    assert masters.dark == str(table_dark)
    assert masters.made == ()
    assert list((tmp_path / "binned").iterdir()) == []
    why, table = masters.notes
    assert why.startswith("no master dark from this sequence: found 9 dark frame(s) (after "
                          f"leaving out 1: {cut}: unreadable FITS file")
    assert "need at least 10" in why
    assert table == (f"no master dark from the night's 10 dark files: using {table_dark} "
                     "from the dark table")
    assert masters.left_out == ()  # nothing was combined: no master to leave frames out of


def test_darks_that_do_not_belong_are_left_out_with_a_warning(
    tmp_path: Path, darks: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    frames = [read_raw(p) for p in darks]
    odd = tmp_path / "odd"
    odd.mkdir()
    exptime = frames[1].header.exptime
    long = write_raw(odd / darks[1].name, frames[1].data,
                     dataclasses.replace(frames[1].header, exptime=2 * exptime))
    north = write_raw(odd / darks[2].name.replace("C", "N"), frames[2].data,
                      dataclasses.replace(frames[2].header, camera="N"))
    cropped = write_raw(odd / darks[3].name, frames[3].data[:-8], frames[3].header)
    science = write_raw(odd / darks[4].name, frames[4].data,
                        dataclasses.replace(frames[4].header, imagetyp="science"))
    floats = odd / darks[5].name.replace(".fits.fz", ".fits")
    fits.PrimaryHDU(frames[5].data.astype(np.float32),
                    header=fits.Header(list(frames[5].header.to_cards().items()))).writeto(floats)
    given = [darks[0], long, north, cropped, science, floats, *darks[6:]]
    with caplog.at_level("WARNING"):
        masters = make_masters(dark=given, camera=LPC, calibration=_loose(5),
                               binned_dir=tmp_path / "binned", state_dir=tmp_path / "state")
    bad = [long, north, cropped, science, floats]
    reasons = {entry.split(": ")[0]: entry for entry in masters.left_out}
    assert sorted(reasons) == sorted(str(p) for p in bad)
    assert "pixels are float32" in reasons[str(floats)]
    assert "header IMAGETYP 'science' but the name says 'dark'" in reasons[str(science)]
    assert "camera N at LaPalma, the other frames have camera C at LaPalma" in reasons[str(north)]
    assert "shape (392, 544), the other frames have shape (400, 544)" in reasons[str(cropped)]
    assert f"EXPTIME {2 * exptime:g} s, the median of the darks is {exptime:g} s" in reasons[
        str(long)]
    assert sorted(masters.left_out) == sorted(
        note.removeprefix("left out of the master dark: ") for note in masters.notes
        if note.startswith("left out"))
    for path in bad:
        assert any(str(path) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    made = read_master(masters.dark)
    good = [darks[0], *darks[6:]]
    assert made.sources == tuple(p.name for p in good)
    np.testing.assert_array_equal(made.data, master_dark(good, calibration=_loose(5)).data)


def test_a_foreign_file_at_the_master_path_is_replaced(
    tmp_path: Path, darks: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    cal = _loose(5)
    binned = tmp_path / "binned"
    first = make_masters(dark=darks, camera=LPC, calibration=cal, binned_dir=binned,
                         state_dir=tmp_path / "state")
    path = Path(first.dark)
    reference = path.read_bytes()
    inode = path.stat().st_ino
    again = make_masters(dark=darks, camera=LPC, calibration=cal, binned_dir=binned,
                         state_dir=tmp_path / "state")
    assert again.dark == first.dark
    assert path.stat().st_ino == inode  # the same master: the file is kept
    assert not any(n.startswith("replaced") for n in again.notes)
    other = master_dark(darks[5:], calibration=cal)
    foreign = {
        "garbage": b"SIMPLE  =  T / not really" + bytes(3000),
        "a master of other frames": None,
    }
    for label, content in foreign.items():
        if content is None:
            write_master(path, dataclasses.replace(other, lstseq=int(path.name[:8])))
        else:
            path.write_bytes(content)
        with caplog.at_level("WARNING"):
            caplog.clear()
            masters = make_masters(dark=darks, camera=LPC, calibration=cal,
                                   binned_dir=binned, state_dir=tmp_path / "state")
        assert path.read_bytes() == reference, label
        (note,) = [n for n in masters.notes if n.startswith("replaced")]
        assert note.startswith(f"replaced {path}: ")
        assert any(r.getMessage() == note for r in caplog.records), label
        assert sorted(p.name for p in binned.iterdir()) == [path.name]  # no temporary left


def test_the_two_sites_of_one_output_keep_their_own_dark_tables(
    tmp_path: Path, darks: list[Path]
) -> None:
    """An archive output holds the nights of La Palma and La Silla: a camera's nights fall
    back only on masters of its own site (a La Palma master made every frame of a La Silla
    night fail when both shared the table of letter C)."""
    cal, state = _loose(5), tmp_path / "state"
    palma = make_masters(dark=darks, camera=LPC, calibration=cal,
                         binned_dir=tmp_path / "LPC" / "binned", state_dir=state)
    assert palma.made == ("dark",)
    lsc = load_config().camera("LSC")
    silla = make_masters(dark=[], camera=lsc, calibration=cal,
                         binned_dir=tmp_path / "LSC" / "binned", state_dir=state)
    assert silla.dark is None
    assert silla.notes == ("no master dark from the night's 0 dark files: no dark table: "
                           "subtracting the overscan level",)
    assert read_dark_table("LPC", state) == [palma.dark]
    assert sorted(p.name for p in state.iterdir()) == ["darktableLPC.dat"]


def test_a_legacy_dark_table_is_carried_over_by_site(
    tmp_path: Path, darks: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    made = master_dark(darks, calibration=_loose(5))
    for sub in "ab":
        (tmp_path / sub).mkdir()
    palma = write_master(tmp_path / "a" / "65000000Cmasterdark.fits", made)
    silla = write_master(tmp_path / "b" / "65000100Cmasterdark.fits",
                         dataclasses.replace(made, site="LaSilla"))
    gone = tmp_path / "c" / "65000200Cmasterdark.fits"
    for path in (palma, silla, gone):  # the legacy table, by letter: newest first
        update_dark_filename("C", path, state)
    legacy = (state / "darktableC.dat").read_text()
    with caplog.at_level("WARNING"):
        assert adopt_legacy_table(LPC, state) == [str(palma)]
    assert any(str(gone) in r.getMessage() for r in caplog.records)
    assert adopt_legacy_table(load_config().camera("LSC"), state) == [str(silla)]
    assert adopt_legacy_table(load_config().camera("LPN"), state) == []
    assert read_dark_table("LSC", state) == [str(silla)]
    assert (state / "darktableC.dat").read_text() == legacy
    # a night of La Palma without darks uses the carried-over master of its own site
    assert dark_from_table(LPC, state) == (str(palma), f"using {palma} from the dark table")


# --- configuration and summary -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("fast_apertures_px = [2.5, 4.5]", "fast_apertures_px = [2.5, 6.0]", "fast_apertures_px"),
        ("slow_apertures_px = [2.5, 3.5, 4.5, 5.5]", "slow_apertures_px = [2.5, 3.5, 4.5, 7.5]",
         "slow_apertures_px"),
    ],
    ids=["fast-equal-to-the-sky", "slow-beyond-the-sky"],
)
def test_an_aperture_reaching_the_sky_annulus_is_refused(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    directory = _config(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_config(directory)
    message = str(info.value)
    value = new.split(" = ")[1]
    assert message == (
        f"{directory / 'reduction.toml'}: key 'photometry.{key}' = {value}: every aperture "
        "radius must be smaller than the inner sky radius (photometry.sky_radii_px[0] = 6.0)"
    )


def test_clear_frames_are_shown_as_a_percentage(tmp_path: Path) -> None:
    night = tmp_path / "20260320LPC"
    (night / "logs").mkdir(parents=True)
    (night / "logs" / "events.jsonl").write_text(
        '{"kind": "NightStarted", "time": 1000.0, "night": "20260320", "camera": "LPC", '
        '"out_dir": "x", "frames_expected": 4, "resumed_sets": 0}\n')
    weather = WeatherProxy(lstseq=np.arange(4), transmission=np.array([1.0, 0.9, 0.5, 0.85]),
                           cloud_fraction=np.zeros(4), zero_point_mag=20.0, threshold_mag=0.5,
                           npoints=400)
    s = dataclasses.replace(collect_summary(night), weather=weather)
    text = render_text(s).splitlines()
    (line,) = [x for x in text if "transmission >= 0.8" in x]
    assert line.split() == ["Clear", "frames", "(transmission", ">=", "0.8)", "75%"]
    assert '<th>Clear frames (transmission &gt;= 0.8)</th><td id="clear_percent">75%</td>' in (
        render_html(s))
    none = dataclasses.replace(s, weather=None)
    assert '<td id="clear_percent">n/a</td>' in render_html(none)
