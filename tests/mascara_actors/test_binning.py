"""Binned images: derotate + co-add a simulated set, compare to single frames and to the
legacy tile-shift stacker; bad input; the binned FITS file (issue 7)."""

from __future__ import annotations

import dataclasses
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from hw.sim.sky import SimulatedSky, SimulationSettings
from mascara_actors.binned_file import (
    binned_filename,
    quantize_step,
    read_binned,
    write_binned,
)
from mascara_actors.binning import (
    SetFlag,
    SetStack,
    circular_mean_hours,
    legacy_tile_stack,
    lst_difference_hours,
    reference_lstseq,
)
from mascara_actors.binning.stack import _half_shift
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.errors import FrameError, StorageError
from mascara_actors.photometry import measure
from mascara_actors.rawframe import RawHeader
from mascara_actors.sidereal import SiteReference, lst_mid_hours, set_index

NFRAMES = 13


def _lst_mid(h: RawHeader) -> float:
    return lst_mid_hours(h.lst, h.jd, h.jdmid) % 24.0


@pytest.fixture(scope="module")
def simset() -> dict:
    """13 frames around the middle of one LPC set on the crop1024 sensor, calibrated by
    bias subtraction, their truth, the binned set and the legacy stack (shared, read-only)."""
    cfg = load_config()
    cam = cfg.camera("LPC")
    cat = Catalogue.load()
    sensor = cfg.sensor("crop1024")
    sky = SimulatedSky(cam, cat, sensor=sensor, settings=SimulationSettings(seed=3))
    s0 = int(SiteReference().local_sidereal_time("2026-03-21T00:30:00").lstseq)
    setidx = int(set_index(s0))
    ref = reference_lstseq(setidx)
    rows, cols = sensor.science_slices
    stack = SetStack(sky.model, setidx, min_frames=cfg.reduction.binning.min_frames)
    frames = []
    for ls in range(ref - NFRAMES // 2, ref + NFRAMES // 2 + 1):
        f = sky.exposure(ls)
        image = f.raw[rows, cols].astype(np.float32) - np.float32(sensor.bias_adu)
        assert stack.add(image, f.header)
        frames.append((image, f))
    binned = stack.finish()
    legacy, _ = legacy_tile_stack(
        [im for im, _ in frames],
        [_lst_mid(f.header) for _, f in frames],
        sky.model.replace(k1=0.0, k2=0.0),  # legacy: TAN-only WCS, no distortion
        lst_ref_hours=binned.lst_align,
    )
    return {"sky": sky, "cfg": cfg, "cat": cat, "frames": frames, "binned": binned,
            "legacy": legacy, "ref": ref, "setidx": setidx}


def _bright_isolated(simset: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth (id, x, y) of the reference frame's isolated, bright, unsaturated stars."""
    _, f = next(p for p in simset["frames"] if p[1].header.lstseq == simset["ref"])
    t = f.truth
    d = np.hypot(t["x"][:, None] - t["x"][None], t["y"][:, None] - t["y"][None])
    np.fill_diagonal(d, np.inf)
    m = simset["sky"].model
    keep = ((d.min(axis=1) > 15) & (t["flux"] > 3000) & (t["flux"] < 2e5)
            & m.on_chip(t["x"], t["y"], margin=40))
    return t["id"][keep], t["x"][keep].astype(float), t["y"][keep].astype(float)


def _widths(image: np.ndarray, x: np.ndarray, y: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """RMS radius (second moment about the given position) within 4 px, pixels."""
    h = 4
    xi, yi = np.round(x).astype(int), np.round(y).astype(int)
    oy, ox = np.mgrid[-h:h + 1, -h:h + 1]
    stamp = image[yi[:, None, None] + oy, xi[:, None, None] + ox] - sky[:, None, None]
    r2 = ((xi - x)[:, None, None] + ox) ** 2 + ((yi - y)[:, None, None] + oy) ** 2
    w = np.where(r2 <= h * h, stamp, 0.0)
    return np.sqrt((w * r2).sum(axis=(1, 2)) / w.sum(axis=(1, 2)))


def test_binned_set_record(simset) -> None:
    b = simset["binned"]
    hs = [f.header for _, f in simset["frames"]]
    ref = next(h for h in hs if h.lstseq == simset["ref"])
    assert b.nimages == NFRAMES
    assert b.flag == 0
    assert b.binned
    assert b.lstseq == simset["ref"] == simset["setidx"] * 50 + 25
    assert b.lst == ref.lst
    assert b.jd == ref.jd
    assert b.jdmid == pytest.approx(np.mean([h.jdmid for h in hs]), abs=1e-9)
    assert b.lstmid == pytest.approx(np.mean([h.lst for h in hs]), abs=1e-9)  # no wrap here
    assert b.exptime == pytest.approx(ref.exptime)
    assert b.camera == "C"
    assert b.site == "LaPalma"
    # The image is aligned to the middle of the reference slot: the reference frame's stars
    # (truth, mid-exposure) sit where the model puts them at lst_align.
    assert abs(lst_difference_hours(_lst_mid(ref), b.lst_align)) < 0.2 / 3600.0
    assert b.image.dtype == np.float32
    assert b.image.shape == (680, 1024)
    assert not b.image.flags.writeable
    # Interior pixels see every frame; the mean sky stays the frames' mean sky.
    inner = b.count[100:-100, 100:-100]
    assert np.median(inner) == pytest.approx(NFRAMES, abs=0.01)
    sky_b = np.nanmedian(b.image[100:-100, 100:-100])
    sky_f = np.median([np.median(im[100:-100, 100:-100]) for im, _ in simset["frames"]])
    assert sky_b == pytest.approx(sky_f, rel=0.01)


def test_profiles_and_fluxes_match_single_frames_and_beat_legacy(simset) -> None:
    """Star widths within 10 % of the single frame, fluxes equal to the mean single-frame
    flux within noise; the legacy tile shift is at least 1.5x worse in flux scatter (2.5 px
    aperture) and wider by a margin (stated below)."""
    ids, x, y = _bright_isolated(simset)
    assert ids.size > 40
    b = simset["binned"]
    ap = (2.5, 5.5)
    binned = measure(b.image, x, y, apertures=ap, gain=0.62 * b.nimages)
    legacy = measure(simset["legacy"], x, y, apertures=ap)
    single = []
    ref_img = None
    for image, f in simset["frames"]:
        t = f.truth
        idx = np.searchsorted(t["id"], ids, sorter=np.argsort(t["id"]))
        order = np.argsort(t["id"])[idx]
        assert (t["id"][order] == ids).all()
        single.append(measure(image, t["x"][order], t["y"][order], apertures=ap).flux)
        if f.header.lstseq == simset["ref"]:
            ref_img, ref_sky = image, measure(image, x, y, apertures=ap).sky
    mean = np.mean(single, axis=0)
    good = (binned.pflag == 0) & (legacy.pflag == 0) & np.isfinite(mean).all(axis=1)
    assert good.sum() > 40

    w_single = _widths(ref_img, x, y, ref_sky)[good]
    w_binned = _widths(b.image, x, y, binned.sky)[good]
    w_legacy = _widths(simset["legacy"], x, y, legacy.sky)[good]
    widen = np.median(w_binned / w_single)
    widen_legacy = np.median(w_legacy / w_single)
    assert 0.95 < widen < 1.10, widen
    assert widen_legacy - 1.0 > 1.5 * (widen - 1.0), (widen, widen_legacy)

    for j in range(2):
        ratio = binned.flux[good, j] / mean[good, j]
        z = (binned.flux[good, j] - mean[good, j]) / binned.eflux[good, j]
        assert abs(np.median(ratio) - 1.0) < 0.005, np.median(ratio)
        # The differences are within the binned image's own errors (robust scatter; a star
        # or two near a tile-phase seam may stand out).
        assert 1.4826 * np.median(np.abs(z - np.median(z))) < 1.0, z
        assert np.mean(np.abs(z) > 3) < 0.05, z
    r_ours = binned.flux[good, 0] / mean[good, 0]
    r_legacy = legacy.flux[good, 0] / mean[good, 0]
    assert np.std(r_legacy) > 1.5 * np.std(r_ours), (np.std(r_ours), np.std(r_legacy))
    assert abs(np.median(r_legacy) - 1) > abs(np.median(r_ours) - 1)


def _header(sky: SimulatedSky, lstseq: int, **changes):  # type: ignore[no-untyped-def]
    return dataclasses.replace(sky.header(lstseq), **changes)


def test_bad_frames_are_refused_and_counted(simset) -> None:
    sky, setidx, ref = simset["sky"], simset["setidx"], simset["ref"]
    stack = SetStack(sky.model, setidx, min_frames=3)
    shape = (sky.model.ny, sky.model.nx)
    image = np.full(shape, 100.0, np.float32)
    assert stack.add(image, sky.header(ref))
    assert not stack.add(image, _header(sky, ref + 1, camera="N"))
    assert not stack.add(image, _header(sky, ref + 2, exptime=3.2))
    assert not stack.add(image, sky.header(ref + 3), aflag=4)  # astrometry failed
    assert not stack.add(image, sky.header(ref + 5), aflag=1 | 8)  # residual too large
    assert not stack.add(image, sky.header(ref + 50))  # next set
    assert not stack.add(image, sky.header(ref))  # repeat
    assert not stack.add(np.zeros((10, 10), np.float32), sky.header(ref + 4))
    assert stack.add(image, sky.header(ref - 1))
    b = stack.finish()
    assert b.nimages == 2
    assert b.camera == "C"
    assert dict(b.refused) == {"camera": 1, "exptime": 1, "astrometry": 2, "set": 1,
                               "duplicate": 1, "shape": 1}
    assert b.nrefused == 7
    assert b.flag == SetFlag.FRAMES_REFUSED | SetFlag.TOO_FEW_FRAMES
    assert b.image is None
    assert not b.binned
    with pytest.raises(FrameError, match="no binned image"):
        write_binned(Path("/nonexistent"), b, sky.model)


def test_a_bright_sky_that_was_solved_anyway_is_binned(simset) -> None:
    """aflag 1 says the set was solved on a bright sky: the frame is good (the legacy
    pipeline threw such sets away)."""
    sky, setidx, ref = simset["sky"], simset["setidx"], simset["ref"]
    stack = SetStack(sky.model, setidx, min_frames=1)
    image = np.full((sky.model.ny, sky.model.nx), 100.0, np.float32)
    assert stack.add(image, sky.header(ref), aflag=1)
    assert stack.finish().nimages == 1


def test_dawn_set_of_three_frames_without_middle(simset) -> None:
    """3 frames at the end of a set (dawn), middle frame missing: flagged, not binned with
    min_frames 5, binned (with NaN-free coverage) with min_frames 3."""
    sky, setidx = simset["sky"], simset["setidx"]
    shape = (sky.model.ny, sky.model.nx)
    last = setidx * 50 + 47
    for min_frames, binned in ((5, False), (3, True)):
        stack = SetStack(sky.model, setidx, min_frames=min_frames)
        for ls in (last, last + 1, last + 2):
            img = np.full(shape, 50.0, np.float32)
            img[0, 0] = np.nan  # one dead pixel
            assert stack.add(img, sky.header(ls))
        b = stack.finish()
        assert b.nimages == 3
        assert b.binned is binned
        assert b.flag & SetFlag.NO_REFERENCE
        assert bool(b.flag & SetFlag.TOO_FEW_FRAMES) is not binned
        # LST and JD of the (missing) reference slot follow from the slots.
        h = sky.header(b.lstseq)
        assert b.lst == pytest.approx(h.lst, abs=1e-9)
        assert b.jd == pytest.approx(h.jd, abs=2e-7)
        if binned:
            # The frames moved ~24 slots: part of the reference grid is uncovered (NaN).
            covered = np.isfinite(b.image)
            assert 0.5 < covered.mean() < 1.0
            assert np.allclose(b.image[covered][b.count[covered] > 1], 50.0, atol=1e-3)


def test_threads_give_the_same_image(simset) -> None:
    """Two copy threads (numpy releases the GIL) give exactly the single-thread result."""
    sky, setidx = simset["sky"], simset["setidx"]
    rng = np.random.default_rng(2)
    images = []
    for ls in range(setidx * 50 + 10, setidx * 50 + 40, 6):
        img = rng.normal(100.0, 5.0, (sky.model.ny, sky.model.nx)).astype(np.float32)
        img[rng.integers(0, sky.model.ny, 50), rng.integers(0, sky.model.nx, 50)] = np.nan
        images.append((img, sky.header(ls)))
    results = []
    for threads in (1, 2):
        stack = SetStack(sky.model, setidx, threads=threads)
        for img, h in images:
            assert stack.add(img, h)
        results.append(stack.finish())
    assert np.array_equal(results[0].image, results[1].image, equal_nan=True)
    assert np.array_equal(results[0].count, results[1].count)
    # NaN pixels are missing for their frame only: counts dip below the frame number there.
    assert results[0].count[100:-100, 100:-100].min() < len(images) - 0.5
    assert np.isfinite(results[0].image[100:-100, 100:-100]).all()


def test_frames_said_finite_bin_as_when_searched_for_nan(simset) -> None:
    """``finite=True`` only skips the NaN search: the set's image is the same."""
    sky, setidx, cfg = simset["sky"], simset["setidx"], simset["cfg"]
    stack = SetStack(sky.model, setidx, min_frames=cfg.reduction.binning.min_frames)
    for image, f in simset["frames"]:
        assert np.isfinite(image).all()
        assert stack.add(image, f.header, finite=True)
    again = stack.finish()
    assert np.array_equal(again.image, simset["binned"].image, equal_nan=True)
    assert np.array_equal(again.count, simset["binned"].count)


def test_lstmid_across_midnight() -> None:
    assert circular_mean_hours(np.array([23.9, 0.1])) % 24.0 == pytest.approx(0.0, abs=1e-9)
    assert circular_mean_hours(np.array([23.8, 23.9, 0.6])) == pytest.approx(0.1, abs=1e-9)
    assert circular_mean_hours(np.array([0.6, 23.8, 23.9])) == pytest.approx(0.1, abs=1e-9)
    assert circular_mean_hours(np.array([10.0, 11.0])) == pytest.approx(10.5)
    assert lst_difference_hours(0.05, 23.95) == pytest.approx(0.1)
    assert lst_difference_hours(23.95, 0.05) == pytest.approx(-0.1)


def test_binned_file_round_trip_and_wcs(simset, tmp_path: Path) -> None:
    b, sky = simset["binned"], simset["sky"]
    path = write_binned(tmp_path, b, sky.model)
    assert path.name == binned_filename(b.lstseq, "C") == f"bin_{b.lstseq:08d}C.fits"
    assert not list(tmp_path.glob("*.tmp"))
    with fits.open(path) as hdul:
        assert isinstance(hdul[1], fits.CompImageHDU)
        assert hdul[1].compression_type == "RICE_1"
    back = read_binned(path)
    h = back.header
    assert h["IMAGETYP"] == "BINIMAGE"
    assert h["NIMAGES"] == NFRAMES
    assert h["LSTSEQ"] == b.lstseq
    assert h["LST"] == pytest.approx(b.lst)
    assert h["JD"] == pytest.approx(b.jd)
    assert h["JDMID"] == pytest.approx(b.jdmid)
    assert h["LSTMID"] == pytest.approx(b.lstmid)
    assert h["CAMERA"] == "C"
    assert h["SITE-OBS"] == "LaPalma"
    assert h["EXPTIME"] == pytest.approx(b.exptime)
    assert h["CCDTEMP"] == pytest.approx(-15.0)
    # Rice quantisation: error far below the sky noise of the binned image.
    finite = np.isfinite(b.image)
    diff = back.image[finite] - b.image[finite]
    noise = np.std(b.image[200:260, 200:260])
    assert np.abs(diff).max() < noise / 4
    assert np.array_equal(np.isnan(back.image), np.isnan(b.image))
    # The TAN WCS: astropy reads it; stars land within its stated error of the model.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = WCS(h)
    cat = simset["cat"].select(vmax=8.0)
    ra, dec = cat.positions_icrs_at(b.jd_align)
    px, py = w.world_to_pixel_values(ra, dec)
    rad, decd = cat.positions_at(b.jd_align)
    mx, my = sky.model.radec_to_pixel(rad, decd, b.lst_align)
    on = sky.model.on_chip(mx, my)
    err = np.hypot(px[on] - mx[on], py[on] - my[on])
    assert on.sum() > 50
    assert np.median(err) < 1.0
    assert err.max() <= 1.5 * h["WCSMAXPX"] + 0.5


def _tile_steps(image: np.ndarray, level: float) -> np.ndarray:
    """The quantisation step of every tile of ``image`` written by astropy/cfitsio at
    ``level`` (ZSCALE), ADU."""
    hdu = fits.CompImageHDU(data=image, compression_type="RICE_1", tile_shape=(167, 167),
                            quantize_level=level)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    with fits.open(io.BytesIO(buf.getvalue()), disable_image_compression=True) as hdul:
        return np.array(hdul[1].data["ZSCALE"], np.float64)


def test_one_quantisation_step_no_coarser_than_cfitsio_gives_any_tile(simset,
                                                                       tmp_path: Path) -> None:
    """The binned file's single step is at most cfitsio's own per-tile step (the legacy
    ``quantize_level = 32``) of every tile, within the 5 % its estimate is allowed to
    differ, and every tile of the file uses it."""
    b = simset["binned"]
    image = np.ascontiguousarray(b.image, np.float32)
    step = quantize_step(image)
    assert step is not None
    legacy = _tile_steps(image, 32.0)
    legacy = legacy[legacy > 0]  # tiles cfitsio could not quantise are stored lossless
    assert step <= 1.05 * legacy.min()
    assert step >= 0.9 * legacy.min()
    path = write_binned(tmp_path, b, simset["sky"].model)
    with fits.open(path, disable_image_compression=True) as hdul:
        zscale = np.array(hdul[1].data["ZSCALE"], np.float64)
    assert np.allclose(zscale, step, rtol=1e-12)


def test_the_quantisation_step_follows_the_noise() -> None:
    """Pure Gaussian noise of known sigma: step = sigma / 32 (the smallest of 12 tiles'
    estimates: a little low); NaN pixels and an uncovered half are left out; no step for an
    image without noise or without pixels."""
    rng = np.random.default_rng(5)
    sigma = 3.0
    image = (1000.0 + rng.normal(0.0, sigma, (501, 668))).astype(np.float32)
    step = quantize_step(image)
    assert step is not None
    assert 0.9 * sigma / 32 < step <= 1.02 * sigma / 32
    image[:, :334] = np.nan  # an uncovered half: its tiles do not count
    image[400:, 500:] *= 3.0  # a noisier corner does not lower the step
    half = quantize_step(image)
    assert half is not None
    assert 0.9 * sigma / 32 < half <= 1.02 * sigma / 32
    assert quantize_step(np.full((300, 400), np.nan, np.float32)) is None
    assert quantize_step(np.full((300, 400), 7.0, np.float32)) is None


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) - 2880], id="truncated"),
        pytest.param(lambda b: b[:-40000] + bytes(range(256)) * 40 + b[-29760:],
                     id="damaged-tiles"),
        pytest.param(lambda b: b"not fits" * 360, id="not-fits"),
    ],
)
def test_a_bad_binned_file_is_a_storage_error(simset, tmp_path: Path, damage) -> None:
    path = write_binned(tmp_path, simset["binned"], simset["sky"].model)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(StorageError, match=re.escape(str(path)) + ": cannot read a binned"):
        read_binned(path)


def test_half_pixel_shift_is_the_keys_kernel_in_blocks() -> None:
    """The blocked half-pixel shift gives the whole-array formula's values bit for bit."""
    def whole(a: np.ndarray, axis: int) -> np.ndarray:
        a = np.moveaxis(a, axis, 0)
        out = np.empty_like(a)
        np.add(a[:-1], a[1:], out=out[:-1])
        out[-1] = a[-1]
        out *= 9.0
        out[1:] -= a[:-1]
        out[:-2] -= a[2:]
        out *= 1.0 / 16.0
        return np.moveaxis(out, 0, axis)

    rng = np.random.default_rng(5)
    for shape in [(1, 1), (1, 6), (2, 3), (3, 1), (31, 33), (32, 5), (33, 64), (97, 70)]:
        a = (1000 * rng.standard_normal(shape)).astype(np.float32)
        for axis in (0, 1):
            assert np.array_equal(_half_shift(a, axis), whole(a, axis)), (shape, axis)
