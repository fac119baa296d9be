"""No night lost to the astrometry (issue 14, second "Done when" point).

* A full-size night of LPC (KAI-11002, 4008 x 2672) rendered by the simulator, replayed
  with a configuration whose pointing is 10 degrees and 90 degrees of roll away from the
  truth: the configured pointing fails, the blind solve takes over and every frame is
  reduced, with positions and fluxes that match the simulator's truth.
* The committed crop512 night with its first 20 frames overcast (no stars: bias, a flat
  sky and noise): the later 40 frames are reduced as in the clear night, the overcast ones
  wait, are reduced with the first solution, flagged (aflag 4), and are reported.
* A night that is overcast throughout: every frame fails at the end, naming the command
  that solves a frame (``mascara-actors solve``).

Frames are rendered with stars to V 8.4 only (the fast-photometry limit) and few of them,
so the file runs in about a minute; the replays run the command line in this process, the
reduction in a thread (``--in-process``), except for the night that never solves, which uses
the worker process as a station does (the astrometry's failure must cross the process
boundary for the frames to wait).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from scipy.spatial import cKDTree

from hw.sim.night_start import choose_start_lstseq
from hw.sim.recording import record_night
from hw.sim.sky import SimulationSettings
from hw.sim.truth import read_truth
from mascara_actors import cli
from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import Config, load_config
from mascara_actors.messages import (
    AstrometryDone,
    Event,
    FrameFailed,
    FrameReducedEvent,
    WarningEvent,
)
from mascara_actors.photometry.flags import AFlag
from mascara_actors.storage import NightFile
from tests.mascara_actors.actors.conftest import NIGHT, read_events, science_lstseqs

pytestmark = pytest.mark.slow

CAMERA = "LPC"
VMAX = 8.4
"""Faintest star rendered: the fast-photometry limit (the blind index goes to V 6.5)."""
OFF_ALT_DEG = 10.0
OFF_ROLL_DEG = 90.0
N_OVERCAST = 20
FIRST = 65344200
"""First science frame of the committed night."""


# --- helpers ---------------------------------------------------------------------------------


def replay(night: Path, out: Path, *args: str) -> tuple[int, Path, list[Event]]:
    """``mascara-actors --replay night --out out ...`` in this process: (exit code, the
    camera-night directory, its event log)."""
    rc = cli.main(["--replay", str(night), "--out", str(out), *args])
    (night_dir,) = [p for p in out.iterdir() if p.name.endswith(CAMERA)]
    return rc, night_dir, read_events(night_dir)


def fast_file(night_dir: Path) -> Path:
    (path,) = night_dir.glob("lightcurves/fast_*.hdf5")
    return path


def isolated_ids(truth: np.ndarray, radius_px: float = 12.0) -> set[int]:
    """HIP ids of rendered stars with no other rendered star within ``radius_px`` on the
    first frame of ``truth``."""
    first = truth[truth["lstseq"] == truth["lstseq"].min()]
    xy = np.column_stack([first["x"], first["y"]])
    counts = np.array([len(n) for n in cKDTree(xy).query_ball_point(xy, radius_px)])
    return set(first["id"][counts == 1].tolist())


def compare_with_truth(
    fast: Path, truth: np.ndarray, lstseqs: np.ndarray, *, max_stars: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(flux1 - true) / eflux1 and the position error (px) of the unflagged measurements of
    isolated stars on the frames ``lstseqs``."""
    isolated = isolated_ids(truth)
    chi, dpos = [], []
    with NightFile(fast) as nf:
        ids = [int(i) for i in nf.ids() if int(i) in isolated]
        if max_stars is not None and len(ids) > max_stars:
            ids = ids[:: len(ids) // max_stars][:max_stars]
        for star in ids:
            lc = nf.lightcurve(star, ["lstseq", "flux1", "eflux1", "pflag", "x", "y"])
            lc = lc[np.isin(lc["lstseq"], lstseqs)]
            t = truth[truth["id"] == star]
            both, il, it = np.intersect1d(lc["lstseq"], t["lstseq"], return_indices=True)
            assert both.size == lc.size  # every measurement has its true value
            good = lc["pflag"][il] == 0
            chi.append(((lc["flux1"][il] - t["flux"][it]) / lc["eflux1"][il])[good])
            dpos.append(np.hypot(lc["x"][il] - t["x"][it], lc["y"][il] - t["y"][it])[good])
    return np.concatenate(chi), np.concatenate(dpos)


def assert_noise_sized(chi: np.ndarray) -> None:
    """Measured - true fluxes are noise of the stated size, without bias (as test_night)."""
    assert 0.7 <= np.mean(chi**2) <= 1.4
    assert np.mean(np.abs(chi) < 3.0) >= 0.98
    assert abs(np.median(chi)) < 0.5


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b, -1.0, 1.0))))


# --- a camera 10 degrees and 90 degrees of roll away from its configuration -------------------


@pytest.fixture(scope="module")
def true_camera() -> CameraModel:
    """LPC as built: the configured lens, focal length 0.3 % longer and k1 5 % stronger."""
    nominal = CameraModel.from_config(load_config().camera(CAMERA))
    return nominal.replace(focal_px=nominal.focal_px * 1.003, k1=nominal.k1 * 1.05)


@pytest.fixture(scope="module")
def full_night(tmp_path_factory, true_camera) -> Path:
    """Six full-size frames of LPC, the last three of one set and the first three of the
    next, no calibration frames (shared, read-only)."""
    cfg = load_config()
    camera = cfg.camera(CAMERA)
    start = choose_start_lstseq(camera, "2026-03-20", sun_alt_deg=-18.0)
    start = (start // 50 + 2) * 50 - 3
    directory = tmp_path_factory.mktemp("full") / "night"
    record_night(
        directory,
        camera,
        Catalogue.load(),
        start_lstseq=start,
        n_science=6,
        true_model=true_camera,
        settings=SimulationSettings(seed=14, vmax=VMAX),
        n_bias=0,
        n_dark=0,
    )
    return directory


def misconfigured(directory: Path) -> Path:
    """A copy of the repository's configuration in which LPC points 10 degrees lower (in
    altitude) and is turned by 90 degrees of roll, and a star needs one point (not 51) to
    enter the nightly file."""
    dst = directory / "config"
    shutil.copytree(load_config().directory, dst)
    cameras = dst / "cameras.toml"
    text = cameras.read_text()
    block = re.search(rf"(?ms)^\[cameras\.{CAMERA}\]\n.*?(?=^\[|\Z)", text)
    assert block is not None
    entry = block.group(0)
    for key, change in (("alt_deg", -OFF_ALT_DEG), ("roll_deg", OFF_ROLL_DEG)):
        value = float(re.search(rf"(?m)^{key}\s*=\s*([-0-9.]+)", entry).group(1))  # type: ignore[union-attr]
        entry, n = re.subn(rf"(?m)^{key}\s*=\s*[-0-9.]+", f"{key} = {value + change}", entry)
        assert n == 1
    cameras.write_text(text[: block.start()] + entry + text[block.end() :])
    reduction = dst / "reduction.toml"
    text, n = re.subn(r"(?m)^minobs\s*=\s*\d+", "minobs = 1", reduction.read_text())
    assert n == 1
    reduction.write_text(text)
    return dst


@pytest.fixture(scope="module")
def far_off(tmp_path_factory, full_night) -> tuple[int, Path, list[Event], Config]:
    """The full-size night replayed with the misconfigured camera (shared, read-only)."""
    work = tmp_path_factory.mktemp("far_off")
    config_dir = misconfigured(work)
    rc, night_dir, events = replay(
        full_night, work / "out", "--config", str(config_dir), "--in-process"
    )
    return rc, night_dir, events, load_config(config_dir)


def test_the_configuration_is_10_degrees_and_90_degrees_of_roll_off(far_off, true_camera):
    *_, config = far_off
    wrong = CameraModel.from_config(config.camera(CAMERA))
    assert angle_deg(wrong.axes[2], true_camera.axes[2]) == pytest.approx(OFF_ALT_DEG, abs=1e-6)
    assert angle_deg(wrong.axes[0], true_camera.axes[0]) == pytest.approx(OFF_ROLL_DEG, abs=0.5)


def test_a_night_far_from_its_configured_pointing_is_reduced(far_off, full_night):
    rc, night_dir, events, _ = far_off
    truth = read_truth(full_night / "truth.fits").truth
    frames = np.unique(truth["lstseq"])
    assert frames.size == 6
    assert rc == 0
    assert not [ev for ev in events if isinstance(ev, FrameFailed)]
    reduced = sorted(ev.lstseq for ev in events if isinstance(ev, FrameReducedEvent))
    assert reduced == frames.tolist()
    done = [ev for ev in events if isinstance(ev, AstrometryDone)]
    assert [ev.setidx for ev in done] == sorted({int(s) // 50 for s in frames})
    assert done[0].solved
    assert done[0].lstseq == frames[0]
    assert all(ev.dr < 0.1 and ev.aflag == 0 for ev in done)
    # a fit of the whole chip, not of a corner: over a thousand astrometric stars used
    assert all(ev.nused >= 1000 for ev in done)
    with NightFile(fast_file(night_dir)) as nf:
        station, ids = nf.station, nf.ids()
    assert station["lstseq"].tolist() == frames.tolist()
    assert np.all(station["aflag"] == 0)
    # the stars measured are the ones on the chip: >= 90 % of those rendered on each frame
    # (the others lie in the 50 px edge margin), and none that was not rendered
    rendered = np.array([np.sum(truth["lstseq"] == s) for s in frames])
    assert np.all(station["nstars"] >= 0.9 * rendered)
    assert np.isin(ids, truth["id"]).all()
    # The blind solution is the true one: positions and fluxes of the isolated stars
    # against the simulator's truth, over the whole chip.
    chi, dpos = compare_with_truth(fast_file(night_dir), truth, frames, max_stars=800)
    assert dpos.size >= 3000
    assert np.sqrt(np.mean(dpos**2)) <= 0.1
    assert_noise_sized(chi)


# --- an overcast start ---------------------------------------------------------------------------


def overcast(src: Path, dst: Path, rng: np.random.Generator, *, sky_adu: float = 700.0) -> None:
    """``src`` with its pixels replaced by an overcast sky: bias, a flat sky of ``sky_adu``,
    photon and read noise, no stars; header and ``.fits.fz`` layout kept."""
    sensor = load_config().sensor("crop512")
    with fits.open(src) as hdul:
        header = hdul[1].header.copy()
        shape = hdul[1].data.shape
    x0, y0, nx, ny = header["X0"], header["Y0"], header["XSIZE"], header["YSIZE"]
    gain = sensor.gain_e_per_adu
    image = sensor.bias_adu + rng.normal(0.0, sensor.read_noise_e / gain, shape)
    image[y0 : y0 + ny, x0 : x0 + nx] += rng.poisson(sky_adu * gain, (ny, nx)) / gain
    data = np.clip(np.round(image), 0, 65535).astype(np.uint16)
    hdu = fits.CompImageHDU(data, header=header, compression_type="RICE_1")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(dst, overwrite=True)


@pytest.fixture(scope="module")
def cloudy_night(tmp_path_factory) -> Path:
    """The committed night with its first N_OVERCAST science frames overcast (shared,
    read-only)."""
    directory = tmp_path_factory.mktemp("cloudy") / "night"
    shutil.copytree(NIGHT, directory)
    rng = np.random.default_rng(20)
    for lstseq in science_lstseqs()[:N_OVERCAST]:
        name = f"{lstseq}C.fits.fz"
        overcast(NIGHT / name, directory / name, rng)
    return directory


@pytest.fixture(scope="module")
def cloudy(tmp_path_factory, cloudy_night) -> tuple[int, Path, list[Event]]:
    """The night with an overcast start, replayed (shared, read-only)."""
    return replay(cloudy_night, tmp_path_factory.mktemp("cloudy_out"), "--in-process")


@pytest.fixture(scope="module")
def clear(tmp_path_factory) -> tuple[int, Path, list[Event]]:
    """The committed night replayed as it is, the same way (shared, read-only)."""
    return replay(NIGHT, tmp_path_factory.mktemp("clear_out"), "--in-process")


def test_an_overcast_start_loses_no_later_frame(cloudy, clear):
    rc, night_dir, events = cloudy
    frames = science_lstseqs()
    over, later = frames[:N_OVERCAST], frames[N_OVERCAST:]
    assert rc == 0
    assert not [ev for ev in events if isinstance(ev, FrameFailed)]
    with NightFile(fast_file(night_dir)) as nf:
        station = nf.station
    assert station["lstseq"].tolist() == frames.tolist()
    aflag = dict(zip(station["lstseq"].tolist(), station["aflag"].tolist(), strict=True))
    # The overcast frames were reduced with the first solution found, flagged as not solved
    # on their own: their stars read as nothing but sky.
    assert all(aflag[s] & AFlag.SOLVE_FAILED for s in over)
    # The later frames were solved on their own set: never flagged as failed. Frame
    # 65344220 (a bright star on the 8-pixel grid of the sky-level sample of this small
    # crop) has the bright-sky bit, which only says "solved anyway"; its set keeps it.
    assert not any(aflag[s] & ~AFlag.BRIGHT_SKY for s in later)
    assert all(aflag[s] == 0 for s in later if s // 50 != FIRST // 50)
    # Their photometry and positions match the truth as in a clear night ...
    truth = read_truth(NIGHT / "truth.fits").truth
    chi, dpos = compare_with_truth(fast_file(night_dir), truth, later)
    assert chi.size >= 300
    assert_noise_sized(chi)
    assert np.sqrt(np.mean(dpos**2)) <= 0.15
    # ... and the fluxes are those of the clear night's replay, well within their errors
    # (the five brightest stars unflagged on the later frames).
    rc_clear, clear_dir, _ = clear
    assert rc_clear == 0
    fields = ["lstseq", "flux1", "eflux1", "pflag"]
    compared = 0
    with NightFile(fast_file(night_dir)) as a, NightFile(fast_file(clear_dir)) as b:
        for star in b.stars[np.argsort(b.stars["vmag"])]["id"]:
            ref = b.lightcurve(star, fields)
            ref = ref[np.isin(ref["lstseq"], later)]
            if np.sum(ref["pflag"] == 0) < 30:
                continue  # saturated, or near the edge of the crop
            mine = a.lightcurve(star, fields)
            mine = mine[np.isin(mine["lstseq"], later)]
            assert mine["lstseq"].tolist() == ref["lstseq"].tolist() == later.tolist()
            assert mine["pflag"].tolist() == ref["pflag"].tolist()
            ok = ref["pflag"] == 0
            diff = (mine["flux1"] - ref["flux1"])[ok] / ref["eflux1"][ok]
            assert np.max(np.abs(diff)) < 0.1
            compared += 1
            if compared == 5:
                break
    assert compared == 5


def test_an_overcast_start_is_reported(cloudy, cloudy_night):
    rc, night_dir, events = cloudy
    assert rc == 0
    lost, back = [ev for ev in events if isinstance(ev, WarningEvent)]
    assert lost.source == back.source == "astrometry"
    # when it was lost, on which camera, what the solver saw, and what to do
    assert lost.lstseq == FIRST
    assert f"camera {CAMERA}" in lost.message
    assert f"no astrometric solution since lstseq {FIRST}" in lost.message
    assert "0 stars detected, 0 matched" in lost.message
    frame = cloudy_night / f"{FIRST}C.fits.fz"
    assert f"`mascara-actors solve {frame} --camera {CAMERA}`" in lost.message
    # back on the first clear frame, with the overcast frames flagged
    first_clear = FIRST + N_OVERCAST
    assert back.lstseq == first_clear
    assert f"camera {CAMERA}: solved at lstseq {first_clear}" in back.message
    assert f"the {N_OVERCAST} frames waiting since lstseq {FIRST}" in back.message
    assert "flagged (aflag 4)" in back.message
    # the warnings reach the night's summary
    (summary,) = night_dir.glob("summary/summary_*.txt")
    text = summary.read_text()
    assert f"no astrometric solution since lstseq {FIRST}" in text
    assert f"solved at lstseq {first_clear}; the {N_OVERCAST} frames waiting" in text


def test_a_night_that_never_solves_fails_every_frame_naming_the_solve_command(
    tmp_path, cloudy_night
):
    """Four overcast frames and the darks, reduced in the worker process as at a station:
    nothing can be reduced (exit 1), and every frame fails at the end of the night with the
    command to run."""
    night = tmp_path / "night"
    night.mkdir()
    overcast_frames = science_lstseqs()[:4]
    for path in cloudy_night.iterdir():
        if path.name.endswith("dark.fits.fz") or path.name in {
            f"{s}C.fits.fz" for s in overcast_frames
        }:
            shutil.copyfile(path, night / path.name)
    rc, _, events = replay(night, tmp_path / "out")
    assert rc == 1
    assert not [ev for ev in events if isinstance(ev, FrameReducedEvent)]
    failed = {ev.lstseq: ev for ev in events if isinstance(ev, FrameFailed)}
    assert sorted(failed) == overcast_frames.tolist()
    for lstseq, ev in failed.items():
        assert f"`mascara-actors solve {night / f'{lstseq}C.fits.fz'}" in ev.reason
