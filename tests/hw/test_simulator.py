"""The simulated sky (hw/sim/sky.py, hw/sim/render.py) against physics and the camera model.

Frames are rendered on the ``crop1024`` sensor (the central 1024 x 680 pixels of the real
chip) of camera LPC at 2026-03-20 23:00 UTC, a dark night at La Palma.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hw.sim.effects import Transit
from hw.sim.sky import SimulatedSky, SimulationSettings
from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, SensorConfig, load_config
from mascara_actors.sidereal import SLOT_SIDEREAL_S, SiteReference, slot_length_solar_s

NIGHT_UTC = "2026-03-20T23:00:00"


@pytest.fixture(scope="module")
def camera() -> CameraConfig:
    """LPC from the repository's config (shared, immutable)."""
    return load_config().camera("LPC")


@pytest.fixture(scope="module")
def sensor() -> SensorConfig:
    """The configured crop1024 sensor (shared, immutable)."""
    return load_config().sensor("crop1024")


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    """Hipparcos 2 (shared, read-only)."""
    return Catalogue.load()


@pytest.fixture(scope="module")
def lstseq() -> int:
    return int(SiteReference().local_sidereal_time(NIGHT_UTC).lstseq)


@dataclasses.dataclass(frozen=True)
class Scene:
    sky: SimulatedSky
    frame: object
    next_frame: object
    master_dark: np.ndarray
    darks: tuple[np.ndarray, ...]


@pytest.fixture(scope="module")
def scene(camera, sensor, catalogue, lstseq) -> Scene:
    """Two consecutive science frames and five darks of the default simulation (shared,
    treat as read-only)."""
    sky = SimulatedSky(camera, catalogue, sensor=sensor)
    darks = tuple(sky.exposure(lstseq - 10 + i, "dark").raw for i in range(5))
    return Scene(
        sky=sky,
        frame=sky.exposure(lstseq),
        next_frame=sky.exposure(lstseq + 1),
        master_dark=np.mean([d.astype(np.float64) for d in darks], axis=0),
        darks=darks,
    )


# --- helpers ----------------------------------------------------------------------------------


def science(raw: np.ndarray, sensor: SensorConfig) -> np.ndarray:
    rows, cols = sensor.science_slices
    return raw[rows, cols]


def overscan(raw: np.ndarray, sensor: SensorConfig) -> np.ndarray:
    mask = np.ones(raw.shape, bool)
    mask[sensor.science_slices] = False
    return raw[mask].astype(np.float64)


def cutouts(image: np.ndarray, xc: np.ndarray, yc: np.ndarray, half: int) -> np.ndarray:
    """Stamps of ``2 half + 1`` pixels centred on integer pixels, shape (n, size, size)."""
    d = np.arange(-half, half + 1)
    return image[yc[:, None, None] + d[None, :, None], xc[:, None, None] + d[None, None, :]]


def isolated(truth: np.ndarray, *, radius: float, edge: int, nx: int, ny: int) -> np.ndarray:
    """Stars with no other rendered star within ``radius`` px and ``edge`` px from the sides."""
    x, y = truth["x"].astype(float), truth["y"].astype(float)
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(d, np.inf)
    return (
        (d.min(axis=1) > radius)
        & (x >= edge)
        & (x <= nx - 1 - edge)
        & (y >= edge)
        & (y <= ny - 1 - edge)
    )


ANNULUS = (10.0, 16.0)


def measure(image: np.ndarray, truth: np.ndarray, *, box_half: int):
    """Sky-subtracted box sums and intensity-weighted centroids around the truth positions.

    Returns (sum ADU, x, y, per-pixel sky variance ADU^2, pixels in the annulus).
    """
    xc = np.round(truth["x"]).astype(int)
    yc = np.round(truth["y"]).astype(int)
    outer = int(ANNULUS[1])
    cut = cutouts(image, xc, yc, outer)
    d = np.arange(-outer, outer + 1)
    r = np.hypot(d[None, :], d[:, None])
    ring = cut[:, (r >= ANNULUS[0]) & (r <= ANNULUS[1])]
    sky = np.median(ring, axis=1)
    sky_var = (1.4826 * np.median(np.abs(ring - sky[:, None]), axis=1)) ** 2
    inner = slice(outer - box_half, outer + box_half + 1)
    box = cut[:, inner, inner] - sky[:, None, None]
    offsets = np.arange(-box_half, box_half + 1)
    total = box.sum(axis=(1, 2))
    x = xc + (box * offsets[None, None, :]).sum(axis=(1, 2)) / total
    y = yc + (box * offsets[None, :, None]).sum(axis=(1, 2)) / total
    return total, x, y, sky_var, ring.shape[1]


def box_peak(raw_science: np.ndarray, truth: np.ndarray, half: int) -> np.ndarray:
    xc = np.round(truth["x"]).astype(int)
    yc = np.round(truth["y"]).astype(int)
    return cutouts(raw_science, xc, yc, half).max(axis=(1, 2))


# --- geometry ---------------------------------------------------------------------------------


def test_truth_positions_follow_the_camera_model(scene, camera, sensor, catalogue):
    """The truth x, y are the camera model's pixel positions at mid-exposure."""
    truth, header = scene.frame.truth, scene.frame.header
    assert len(truth) > 300
    model = CameraModel.from_config(camera, nx=sensor.xsize, ny=sensor.ysize)
    stars = catalogue.by_hip(truth["id"])
    ra, dec = stars.positions_at(header.jdmid)
    lst_mid = header.lst + 0.5 * SLOT_SIDEREAL_S / 3600.0
    x, y = model.radec_to_pixel(ra, dec, lst_mid)
    assert np.max(np.abs(x - truth["x"])) < 0.01
    assert np.max(np.abs(y - truth["y"])) < 0.01
    # The sky turns by one slot (96 arcsec of hour angle) per frame: at the zenith of La
    # Palma (dec 29 deg, 77 arcsec per pixel) that is 1.1 pixels.
    nxt = scene.next_frame.truth
    common, i, j = np.intersect1d(truth["id"], nxt["id"], return_indices=True)
    step = np.hypot(nxt["x"][j] - truth["x"][i], nxt["y"][j] - truth["y"][i])
    assert len(common) > 300
    assert 0.5 < np.median(step) < 2.0


def test_rendered_stars_sit_at_the_truth_positions(scene, sensor):
    """Centroids of bright isolated unsaturated trails on the dark-subtracted image."""
    frame = scene.frame
    image = science(frame.raw.astype(np.float64) - scene.master_dark, sensor)
    truth = frame.truth
    ok = isolated(truth, radius=25, edge=30, nx=sensor.xsize, ny=sensor.ysize)
    ok &= truth["flux"] > 20000.0
    ok[ok] &= box_peak(science(frame.raw, sensor), truth[ok], 4) < 60000
    stars = truth[ok]
    assert len(stars) >= 20
    _, x, y, _, _ = measure(image, stars, box_half=4)
    dx, dy = x - stars["x"], y - stars["y"]
    assert abs(dx.mean()) < 0.05
    assert abs(dy.mean()) < 0.05
    assert np.sqrt(np.mean(dx**2 + dy**2)) < 0.1


# --- photometry and noise ---------------------------------------------------------------------


def test_truth_flux_matches_the_box_sum_within_noise(scene, sensor):
    """Sum of (raw - dark - sky) in a box holding the whole stamp equals the truth flux."""
    frame = scene.frame
    image = science(frame.raw.astype(np.float64) - scene.master_dark, sensor)
    truth = frame.truth
    ok = isolated(truth, radius=25, edge=30, nx=sensor.xsize, ny=sensor.ysize)
    ok &= truth["flux"] > 1000.0
    ok[ok] &= box_peak(science(frame.raw, sensor), truth[ok], 4) < 60000
    stars = truth[ok]
    assert len(stars) >= 40
    half = 9
    total, _, _, sky_var, n_ring = measure(image, stars, box_half=half)
    npix = (2 * half + 1) ** 2
    # Box noise: sky pixels, the median sky (pi/2 times a mean's variance), star photons.
    var = (
        npix * sky_var * (1.0 + npix * np.pi / 2.0 / n_ring) + stars["flux"] / sensor.gain_e_per_adu
    )
    z = (total - stars["flux"]) / np.sqrt(var)
    assert abs(z.mean()) < 3.0 / np.sqrt(len(z))
    assert 0.75 < z.std() < 1.3


def test_photon_noise_of_the_sky(scene, sensor):
    """var(a - b) / 2 of two consecutive frames' star-free sky is (e + rn^2) / gain^2.

    Both frames share the detector pattern (same seed), so vignetting, pixel response and
    hot pixels cancel in the difference; only photon, dark and read noise remain (plus the
    1/12 ADU^2 of rounding to integers).
    """
    a, b = scene.frame, scene.next_frame
    g, rn = sensor.gain_e_per_adu, sensor.read_noise_e
    free = np.ones((sensor.ysize, sensor.xsize), bool)
    margin = 10
    free[:margin], free[-margin:], free[:, :margin], free[:, -margin:] = False, False, False, False
    for truth in (a.truth, b.truth):
        xc = np.clip(np.round(truth["x"]).astype(int), margin, sensor.xsize - 1 - margin)
        yc = np.clip(np.round(truth["y"]).astype(int), margin, sensor.ysize - 1 - margin)
        d = np.arange(-margin, margin + 1)
        free[yc[:, None, None] + d[None, :, None], xc[:, None, None] + d[None, None, :]] = False
    assert free.sum() > 200_000
    sa = science(a.raw, sensor).astype(np.float64)[free]
    sb = science(b.raw, sensor).astype(np.float64)[free]
    bias = 0.5 * (overscan(a.raw, sensor).mean() + overscan(b.raw, sensor).mean())
    mean_e = (0.5 * (sa + sb).mean() - bias) * g
    assert mean_e > 300.0  # a real sky, not just read noise
    predicted = (mean_e + rn**2) / g**2 + 1.0 / 12.0
    measured = np.var(sa - sb, ddof=1) / 2.0
    assert measured / predicted == pytest.approx(1.0, abs=0.03)
    # Overscan: read noise only.
    assert np.var(overscan(a.raw, sensor), ddof=1) == pytest.approx(
        rn**2 / g**2 + 1.0 / 12.0, rel=0.03
    )


# --- detector ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_frames(camera, sensor, catalogue, lstseq):
    small = dataclasses.replace(sensor, nx=296, ny=194, x0=20, y0=12, xsize=256, ysize=170)
    settings = SimulationSettings(seed=7, clouds=True, trail_probability=1.0)

    def render(settings: SimulationSettings):
        return SimulatedSky(camera, catalogue, sensor=small, settings=settings).exposure(lstseq)

    a, b = render(settings), render(settings)
    assert len(a.truth) > 20
    assert a.raw.tobytes() == b.raw.tobytes()
    assert a.truth.tobytes() == b.truth.tobytes()
    c = render(dataclasses.replace(settings, seed=8))
    assert np.mean(a.raw != c.raw) > 0.5


def test_bright_stars_saturate_at_the_adc_limit(scene, sensor):
    frame = scene.frame
    raw = science(frame.raw, sensor)
    truth = frame.truth
    brightest = truth[np.argmax(truth["flux"])]
    stamp = cutouts(
        raw, np.array([round(float(brightest["x"]))]), np.array([round(float(brightest["y"]))]), 3
    )[0]
    assert sensor.full_well_adu == 65535
    assert stamp.max() == 65535
    assert (stamp == 65535).sum() >= 2
    # Every saturated pixel belongs to a star bright enough to reach the limit.
    ys, xs = np.nonzero(raw == 65535)
    very_bright = truth[truth["flux"] > 1e5]
    d = np.hypot(
        xs[:, None] - very_bright["x"][None, :], ys[:, None] - very_bright["y"][None, :]
    ).min(axis=1)
    assert np.all(d < 8.0)


def test_dark_current_doubles_every_6_3_degrees(scene, sensor, lstseq):
    sky = scene.sky
    levels = []
    for temp in (0.0, 6.3):
        raw = sky.exposure(lstseq - 30, "dark", ccdtemp_c=temp).raw
        levels.append(science(raw, sensor).mean() - overscan(raw, sensor).mean())
    assert levels[1] / levels[0] == pytest.approx(2.0, rel=0.02)
    expected_adu = sky.settings.render.dark_e_per_s_at_0c * sky.exptime_s / sensor.gain_e_per_adu
    assert levels[0] == pytest.approx(expected_adu, rel=0.03)


def test_darks_hold_the_same_hot_pixels(scene, sensor, lstseq):
    def hot(raw: np.ndarray) -> set[tuple[int, int]]:
        img = science(raw, sensor).astype(np.float64)
        med = np.median(img)
        sigma = 1.4826 * np.median(np.abs(img - med))
        return set(zip(*np.nonzero(img > med + 7.0 * sigma), strict=True))

    first, second = hot(scene.darks[0]), hot(scene.darks[3])
    npix = sensor.xsize * sensor.ysize
    assert abs(len(first) - scene.sky.settings.render.hot_pixel_fraction * npix) <= 1
    assert first == second
    # Bias frames (no exposure) have none.
    assert hot(scene.sky.exposure(lstseq - 40, "bias").raw) == set()


# --- clouds and transits ----------------------------------------------------------------------


def test_clouds_dim_the_stars_under_them(scene, camera, sensor, catalogue, lstseq):
    clear = scene.frame
    cloudy_sky = SimulatedSky(
        camera, catalogue, sensor=sensor, settings=SimulationSettings(clouds=True)
    )
    cloudy = cloudy_sky.exposure(lstseq)
    assert np.array_equal(cloudy.truth["id"], clear.truth["id"])
    trans = cloudy.truth["transmission"].astype(np.float64)
    assert np.allclose(cloudy.truth["flux"] / clear.truth["flux"], trans, rtol=1e-5)
    assert trans.max() <= 1.0
    assert trans.min() < 0.8
    # The light on the chip follows: the box sums of bright isolated stars lose
    # (1 - transmission) of the clear-sky flux. The two frames share their noise draws, so
    # the difference of the sums is free of the sky noise.
    ok = isolated(clear.truth, radius=25, edge=30, nx=sensor.xsize, ny=sensor.ysize)
    ok &= clear.truth["flux"] > 20000.0
    ok[ok] &= box_peak(science(clear.raw, sensor), clear.truth[ok], 4) < 60000
    stars = clear.truth[ok]
    sums = [
        measure(science(f.raw - scene.master_dark, sensor), stars, box_half=9)[0]
        for f in (clear, cloudy)
    ]
    assert trans[ok].min() < 0.5
    np.testing.assert_allclose(
        sums[1] - sums[0], (trans[ok] - 1.0) * stars["flux"], atol=0.01 * stars["flux"].min()
    )
    # The patches drift: 50 frames later the same stars see other transmissions.
    later = cloudy_sky.exposure(lstseq + 50).truth
    _, i, j = np.intersect1d(cloudy.truth["id"], later["id"], return_indices=True)
    assert np.max(np.abs(later["transmission"][j] - trans[i])) > 0.05


def test_injected_transit_appears_at_its_epoch(scene, camera, sensor, catalogue, lstseq):
    clear = scene.frame
    ok = isolated(clear.truth, radius=25, edge=40, nx=sensor.xsize, ny=sensor.ysize)
    ok &= clear.truth["flux"] > 20000.0
    ok[ok] &= box_peak(science(clear.raw, sensor), clear.truth[ok], 4) < 60000
    hip = int(clear.truth["id"][ok][np.argmax(clear.truth["flux"][ok])])
    slot_s = slot_length_solar_s()
    epoch = scene.sky.header(lstseq + 3).jdmid
    transit = Transit(hip=hip, depth=0.01, duration_h=2.5 * slot_s / 3600.0, epoch_jd=epoch)
    sky = SimulatedSky(
        camera, catalogue, sensor=sensor, settings=SimulationSettings(transits=(transit,))
    )
    frames = [sky.exposure(lstseq + k) for k in range(1, 6)]
    in_transit = [abs(f.header.jdmid - epoch) * 24.0 <= transit.duration_h / 2.0 for f in frames]
    assert in_transit == [False, True, True, True, False]
    for f, inside in zip(frames, in_transit, strict=True):
        factor = f.truth["transit"]
        star = f.truth["id"] == hip
        assert star.sum() == 1
        assert factor[star][0] == pytest.approx(0.99 if inside else 1.0, abs=1e-6)
        assert np.all(factor[~star] == 1.0)
    # Mid-transit, the star's flux and its light on the chip are 1 % down.
    reference = scene.sky.exposure(lstseq + 3)
    mid = frames[2]
    star = mid.truth["id"] == hip
    assert mid.truth["flux"][star][0] / reference.truth["flux"][star][0] == pytest.approx(0.99)
    sums = [
        measure(science(f.raw - scene.master_dark, sensor), reference.truth[star], box_half=9)[0]
        for f in (reference, mid)
    ]
    loss = (sums[0][0] - sums[1][0]) / reference.truth["flux"][star][0]
    assert loss == pytest.approx(0.01, abs=0.001)
