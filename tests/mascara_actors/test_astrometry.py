"""Astrometry against simulator truth: solve from a pointing 2 degrees off, verify, fail cleanly."""

from __future__ import annotations

import numpy as np
import pytest

from hw.sim.sky import SimulatedSky, SimulationSettings
from mascara_actors.astrometry import (
    AFLAG_FAILED,
    AFLAG_TOO_BRIGHT,
    astrometry_stars,
    solve,
    verify,
)
from mascara_actors.camera_model import CameraModel, legendre_terms
from mascara_actors.catalogue import Catalogue
from mascara_actors.centroids import (
    BlockBackground,
    _median_last_axis,
    background_map,
    block_medians,
    find_peaks,
    windowed_centroids,
)
from mascara_actors.config import load_config
from mascara_actors.errors import AstrometryFailed
from mascara_actors.sidereal import SLOT_SIDEREAL_S, SiteReference


def _axis_separation_deg(a: CameraModel, b: CameraModel) -> float:
    def vec(m: CameraModel) -> np.ndarray:
        alt, az = np.radians([m.alt_deg, m.az_deg])
        return np.array([np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt)])

    return float(np.degrees(np.arccos(np.clip(vec(a) @ vec(b), -1, 1))))


@pytest.fixture(scope="module")
def scene():
    """A full-size LPE frame rendered through a true model 2 degrees and 3 degrees of roll off
    the nominal one, with lens and Legendre terms the nominal lacks (shared, read-only)."""
    cfg = load_config()
    cam = cfg.camera("LPE")
    cat = Catalogue.load()
    nominal = CameraModel.from_config(cam)
    rng = np.random.default_rng(3)
    terms = legendre_terms(3)
    cx = np.array([rng.normal(0, 1.5) if i + j >= 2 else 0.0 for i, j in terms])
    cy = np.array([rng.normal(0, 1.5) if i + j >= 2 else 0.0 for i, j in terms])
    true = nominal.replace(
        alt_deg=nominal.alt_deg + 1.5,
        az_deg=nominal.az_deg + 2.1,
        roll_deg=nominal.roll_deg + 3.0,
        focal_px=nominal.focal_px * 1.004,
        k1=nominal.k1 * 1.1,
        coeffs_x=tuple(cx),
        coeffs_y=tuple(cy),
    )
    sky = SimulatedSky(cam, cat, true_model=true, settings=SimulationSettings(seed=2))
    s0 = int(SiteReference().local_sidereal_time("2026-11-10T01:00:00").lstseq)
    frames = [sky.exposure(s) for s in (s0, s0 + 50)]
    images = [
        (
            f.raw[
                f.header.y0 : f.header.y0 + f.header.ysize,
                f.header.x0 : f.header.x0 + f.header.xsize,
            ].astype(np.float32)
            - cam.sensor.bias_adu
        )
        for f in frames
    ]
    stars = astrometry_stars(cat, vmin=4.0, vmax=7.5)
    return {
        "cat": cat,
        "nominal": nominal,
        "true": true,
        "frames": frames,
        "images": images,
        "stars": stars,
    }


def _lst_mid(header) -> float:
    return header.lst + SLOT_SIDEREAL_S / 2 / 3600.0


def _rms_vs_truth(model: CameraModel, frame, cat: Catalogue) -> tuple[float, int]:
    truth = frame.truth
    stars = cat.by_hip(truth["id"])
    fast = stars.vmag <= 8.4
    ra, dec = stars.positions_at(frame.header.jdmid)
    x, y = model.radec_to_pixel(ra, dec, _lst_mid(frame.header))
    d = np.hypot(x - truth["x"], y - truth["y"])[fast]
    return float(np.sqrt(np.mean(d**2))), int(fast.sum())


@pytest.fixture(scope="module")
def solution(scene):
    """The solution of the first frame from the nominal pointing (shared, read-only)."""
    f = scene["frames"][0]
    return solve(
        scene["images"][0],
        scene["stars"],
        scene["nominal"],
        lst_hours=_lst_mid(f.header),
        jd=f.header.jdmid,
        lstseq=f.header.lstseq,
    )


def test_nominal_pointing_is_two_degrees_off(scene) -> None:
    assert _axis_separation_deg(scene["nominal"], scene["true"]) >= 2.0
    rms, _ = _rms_vs_truth(scene["nominal"], scene["frames"][0], scene["cat"])
    assert rms > 50.0  # the nominal model alone misses by tens of pixels


def test_solve_from_two_degrees_off_reaches_0p1_px(scene, solution) -> None:
    rms, nfast = _rms_vs_truth(solution.model, scene["frames"][0], scene["cat"])
    assert nfast > 4000
    assert rms <= 0.1
    assert solution.aflag == 0
    assert solution.nused > 0.9 * solution.nstars
    assert solution.dr < 0.1  # measured centroids agree with the fitted model


def test_solution_holds_on_a_later_set_without_refit(scene, solution) -> None:
    f = scene["frames"][1]
    checked = verify(
        scene["images"][1],
        scene["stars"],
        solution,
        lst_hours=_lst_mid(f.header),
        jd=f.header.jdmid,
        lstseq=f.header.lstseq,
    )
    assert checked.model is solution.model  # within tolerance: no refit
    assert checked.lstseq == f.header.lstseq
    rms, _ = _rms_vs_truth(checked.model, f, scene["cat"])
    assert rms <= 0.1


def test_verify_refits_when_the_camera_moved(scene, solution) -> None:
    f = scene["frames"][1]
    bumped = solution.model.replace(roll_deg=solution.model.roll_deg + 0.03)
    stale = type(solution)(model=bumped, lstseq=0, nstars=1, nused=1, dx=0.0, dy=0.0)
    before, _ = _rms_vs_truth(bumped, f, scene["cat"])
    assert before > 0.5
    fixed = verify(
        scene["images"][1],
        scene["stars"],
        stale,
        lst_hours=_lst_mid(f.header),
        jd=f.header.jdmid,
        lstseq=f.header.lstseq,
    )
    after, _ = _rms_vs_truth(fixed.model, f, scene["cat"])
    assert fixed.aflag == 0
    assert after <= 0.1


def test_dome_closed_frame_fails_clearly(scene) -> None:
    f = scene["frames"][0]
    blank = np.random.default_rng(0).normal(0, 10, scene["images"][0].shape).astype(np.float32)
    with pytest.raises(AstrometryFailed, match=r"too few stars|matched"):
        solve(
            blank,
            scene["stars"],
            scene["nominal"],
            lst_hours=_lst_mid(f.header),
            jd=f.header.jdmid,
            lstseq=f.header.lstseq,
        )


def test_daylight_frame_is_flagged_not_solved(scene, solution) -> None:
    f = scene["frames"][1]
    bright = scene["images"][1] + 30000.0
    with pytest.raises(AstrometryFailed, match="too bright"):
        solve(
            bright,
            scene["stars"],
            scene["nominal"],
            lst_hours=_lst_mid(f.header),
            jd=f.header.jdmid,
            lstseq=f.header.lstseq,
        )
    kept = verify(
        bright,
        scene["stars"],
        solution,
        lst_hours=_lst_mid(f.header),
        jd=f.header.jdmid,
        lstseq=f.header.lstseq,
    )
    assert kept.aflag & AFLAG_TOO_BRIGHT
    assert kept.model is solution.model


def test_unsolvable_frame_keeps_previous_model_with_aflag(scene, solution) -> None:
    f = scene["frames"][1]
    noise = np.random.default_rng(1).normal(0, 10, scene["images"][1].shape).astype(np.float32)
    kept = verify(
        noise,
        scene["stars"],
        solution,
        lst_hours=_lst_mid(f.header),
        jd=f.header.jdmid,
        lstseq=f.header.lstseq,
    )
    assert kept.aflag & AFLAG_FAILED
    assert kept.model is solution.model


def test_background_at_chosen_pixels_is_the_whole_map_there(scene) -> None:
    """The verification subtracts the background under the centroid windows only: the
    values must be the whole map's, bit for bit, and so must the centroids."""
    image = scene["images"][0]
    whole = background_map(image)
    bg = BlockBackground(image)
    rng = np.random.default_rng(4)
    y = rng.integers(0, image.shape[0], 5000)
    x = rng.integers(0, image.shape[1], 5000)
    assert np.array_equal(bg.at(y, x), whole[y, x])
    xs = rng.uniform(8, image.shape[1] - 8, 2000)
    ys = rng.uniform(8, image.shape[0] - 8, 2000)
    for a, b in zip(windowed_centroids(image - whole, xs, ys),
                    windowed_centroids(image, xs, ys, background=bg), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 7, 256, 4096, 4097])
def test_the_median_is_numpys_to_the_bit(dtype: type, n: int) -> None:
    rng = np.random.default_rng(n)
    values = rng.normal(1000.0, 30.0, (40, n)).astype(dtype)
    values[:, : n // 3] = np.round(values[:, : n // 3])  # ties
    values[0, 0], values[1, -1] = np.inf, -np.inf
    got = _median_last_axis(values)
    expected = np.median(values, axis=-1)
    assert got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()
    ints = rng.integers(0, 65536, (5, n)).astype(np.uint16)  # no overflow of their sum
    assert _median_last_axis(ints).tobytes() == np.median(ints, axis=-1).tobytes()


def _blocks(image: np.ndarray, box: int, step: int = 1) -> np.ndarray:
    """The whole ``box`` x ``box`` blocks of ``image`` (every ``step``-th pixel), one per
    row: shape (ny // box, nx // box, pixels)."""
    ny, nx = image.shape
    by, bx, m = ny // box, nx // box, box // step
    return (image[: by * box: step, : bx * box: step].reshape(by, m, bx, m)
            .transpose(0, 2, 1, 3).reshape(by, bx, m * m))


@pytest.mark.parametrize("step", [1, 4])
def test_block_medians_are_numpys_medians_of_the_blocks(step: int) -> None:
    image = np.random.default_rng(step).normal(900.0, 20.0, (200, 330)).astype(np.float32)
    expected = np.median(_blocks(image, 64, step), axis=2)
    assert block_medians(image, 64, step).tobytes() == expected.tobytes()
    image[5:9, 70:90] = np.nan  # NaN left out
    expected = np.nanmedian(_blocks(image, 64, step), axis=2)
    assert block_medians(image, 64, step).tobytes() == expected.tobytes()


def test_background_map_is_scipys_bilinear_interpolation_of_the_block_medians() -> None:
    """The map is the block medians at the block centres, interpolated as scipy's linear
    spline does (clamped beyond the outer centres), to the last bit of float32 (the map
    interpolates along the two axes one after the other); on a sky that is a plane it
    gives the plane back between the outer block centres."""
    from scipy import ndimage

    ny, nx, box = 300, 460, 64
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:ny, 0:nx]
    plane = (800.0 + 0.5 * xx - 0.25 * yy).astype(np.float32)
    image = plane + rng.normal(0.0, 5.0, (ny, nx)).astype(np.float32)
    by, bx = ny // box, nx // box
    med = np.median(_blocks(image, box), axis=2)
    cy = np.clip((np.arange(ny) + 0.5) / box - 0.5, 0, by - 1)
    cx = np.clip((np.arange(nx) + 0.5) / box - 0.5, 0, bx - 1)
    coords = np.stack(np.meshgrid(cy, cx, indexing="ij"))
    reference = ndimage.map_coordinates(med, coords, order=1).astype(np.float32)
    np.testing.assert_allclose(background_map(image, box=box), reference, rtol=1.2e-7, atol=0)

    flat = background_map(plane, box=box)
    inner = (slice(box // 2, (by - 1) * box + box // 2), slice(box // 2, (bx - 1) * box + box // 2))
    assert np.abs(flat[inner] - plane[inner]).max() < 1e-3


def test_peaks_are_those_of_scipys_maximum_filter() -> None:
    """Testing only the pixels above the threshold finds the peaks a full 5 x 5
    maximum_filter finds (and drops the same saturated ones), in the same order."""
    from scipy import ndimage

    rng = np.random.default_rng(5)
    ny, nx = 400, 600
    yy, xx = np.mgrid[0:ny, 0:nx]
    raw = rng.normal(1000.0, 10.0, (ny, nx))
    for x0, y0, amp in zip(rng.uniform(0, nx, 300), rng.uniform(0, ny, 300),
                           rng.uniform(50, 60000, 300), strict=True):
        near = (np.abs(xx - x0) < 8) & (np.abs(yy - y0) < 8)
        raw[near] += amp * np.exp(-((xx[near] - x0) ** 2 + (yy[near] - y0) ** 2) / 2.0)
    raw = raw.astype(np.float32)
    sub = raw - np.float32(1000.0)
    saturation = 30000.0

    smooth = ndimage.gaussian_filter(sub, 1.0)
    sample = smooth[::7, ::7]
    med = np.median(sample)
    noise = 1.4826 * np.median(np.abs(sample - med))
    cand = (ndimage.maximum_filter(smooth, size=5) == smooth) & (smooth > med + 10 * noise)
    cand[:10] = cand[-10:] = False
    cand[:, :10] = cand[:, -10:] = False
    y, x = np.nonzero(cand)
    ok = ndimage.maximum_filter(raw, size=5)[y, x] < saturation
    y, x = y[ok], x[ok]
    order = np.argsort(smooth[y, x])[::-1][:150]

    px, py, ph = find_peaks(sub, nmax=150, saturation=saturation, raw_peak=raw)
    assert 100 < len(px) <= 150
    assert np.array_equal(px, x[order])
    assert np.array_equal(py, y[order])
    assert np.array_equal(ph, smooth[y, x][order])
    assert (~ok).sum() > 5  # some peaks were saturated and left out
