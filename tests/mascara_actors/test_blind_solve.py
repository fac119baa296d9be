"""Blind astrometry against simulator truth: any roll, either parity, pointings far from the
configuration, the N/E/S/W cameras of both sites, and bad frames that must get a clear answer.

Frames are full size (KAI-11002, 4008 x 2672) and rendered with stars to V 8.4 only (the
fast-photometry limit), which keeps a render under a second. The true cameras differ from
the configured lens too (focal length 0.3 % longer, k1 5 % stronger), as a real one does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mascara_actors.blind_solve.index as blind_index
import mascara_actors.blind_solve.solve as blind
from hw.sim.render import RenderSettings, StarField, render_star_electrons
from hw.sim.sky import SimulatedSky, SimulationSettings
from mascara_actors.astrometry import astrometry_stars
from mascara_actors.blind_solve import BlindIndex, BlindSolution, BlindSolveFailed, blind_solve
from mascara_actors.camera_model import CameraModel, legendre_terms
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import Config, load_config
from mascara_actors.errors import AstrometryFailed
from mascara_actors.rawframe import RawHeader, raw_filename, write_raw
from mascara_actors.reduce import ReductionSession
from mascara_actors.sidereal import SiteReference, lst_mid_hours

#: A dark hour at both sites (La Palma 04:00 local, La Silla 01:15 local).
DARK_UTC = "2026-11-10T04:00:00"
VMAX = 8.4


@dataclass(frozen=True)
class Frame:
    """A rendered exposure: calibrated science region, header, truth and the true model."""

    image: np.ndarray
    header: RawHeader
    truth: np.ndarray
    true: CameraModel
    raw: np.ndarray


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config()


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return Catalogue.load()


@pytest.fixture(scope="module")
def index(cat) -> BlindIndex:
    """The index from the user cache (built there on first use; shared, read-only)."""
    return BlindIndex.load(cat)


@pytest.fixture(scope="module")
def stars(cat, cfg) -> Catalogue:
    astro = cfg.reduction.astrometry
    return astrometry_stars(cat, vmin=astro.vmin, vmax=astro.vmax)


def true_model(cfg: Config, camera_id: str, **changes: object) -> CameraModel:
    """The configured camera as built: focal 0.3 % longer, k1 5 % stronger, then ``changes``."""
    nominal = CameraModel.from_config(cfg.camera(camera_id))
    return nominal.replace(focal_px=nominal.focal_px * 1.003, k1=nominal.k1 * 1.05).replace(
        **changes
    )


def render(
    cfg: Config,
    cat: Catalogue,
    camera_id: str,
    true: CameraModel | None = None,
    *,
    utc: str = DARK_UTC,
    seed: int = 1,
    **options: object,
) -> Frame:
    camera = cfg.camera(camera_id)
    settings = SimulationSettings(**{"seed": seed, "vmax": VMAX, **options})  # type: ignore[arg-type]
    sky = SimulatedSky(camera, cat, true_model=true, settings=settings)
    f = sky.exposure(int(SiteReference().local_sidereal_time(utc).lstseq))
    h = f.header
    science = f.raw[h.y0 : h.y0 + h.ysize, h.x0 : h.x0 + h.xsize].astype(np.float32)
    return Frame(science - camera.sensor.bias_adu, h, f.truth, sky.model, f.raw)


def solve_frame(
    frame: Frame, index: BlindIndex, stars: Catalogue, lens: CameraModel
) -> BlindSolution:
    h = frame.header
    return blind_solve(
        frame.image,
        index,
        stars,
        lens,
        lst_hours=lst_mid_hours(h.lst, h.jd, h.jdmid),
        jd=h.jdmid,
        lstseq=h.lstseq,
    )


def rms_vs_truth(model: CameraModel, frame: Frame, cat: Catalogue) -> float:
    """RMS distance (px) of the model's positions of the V <= 8.4 stars from the truth."""
    truth = frame.truth
    stars = cat.by_hip(truth["id"])
    h = frame.header
    ra, dec = stars.positions_at(h.jdmid)
    x, y = model.radec_to_pixel(ra, dec, lst_mid_hours(h.lst, h.jd, h.jdmid))
    d = np.hypot(x - truth["x"], y - truth["y"])[stars.vmag <= VMAX]
    return float(np.sqrt(np.mean(d**2)))


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(min(1.0, float(a @ b))))


def assert_true_solution(found: BlindSolution, frame: Frame, cat: Catalogue) -> None:
    """RMS <= 0.1 px against the truth, optical axis and roll within 0.05 degrees, parity."""
    assert found.mirrored == frame.true.mirror
    assert rms_vs_truth(found.model, frame, cat) <= 0.1
    # The optical axis, then the camera's x axis (the roll) of the solution against the truth.
    assert angle_deg(found.model.axes[2], frame.true.axes[2]) <= 0.05
    assert angle_deg(found.model.axes[0], frame.true.axes[0]) <= 0.05
    # The reported pointing (config convention, tilts folded in) is the same direction.
    alt, az, roll = found.pointing
    reported = frame.true.replace(alt_deg=alt, az_deg=az, roll_deg=roll, mirror=found.mirrored)
    assert angle_deg(reported.axes[2], frame.true.axes[2]) <= 0.05
    assert angle_deg(reported.axes[0], frame.true.axes[0]) <= 0.05
    assert found.nmatched >= 0.6 * found.npredicted
    assert found.log10_false_alarm < -9


@pytest.fixture(scope="module")
def station_frames(cfg, cat) -> dict[str, Frame]:
    """Frames of the N/E/S/W cameras of both sites at their configured pointing, rendered
    on first use (shared, read-only)."""
    return {}


def station_frame(frames: dict[str, Frame], cfg: Config, cat: Catalogue, camera_id: str) -> Frame:
    if camera_id not in frames:
        frames[camera_id] = render(cfg, cat, camera_id, true_model(cfg, camera_id))
    return frames[camera_id]


# --- the camera model's parity and axes -----------------------------------------------------


def test_mirror_flips_x_about_the_centre_and_round_trips(cfg) -> None:
    model = CameraModel.from_config(cfg.camera("LPE"))
    mirrored = model.replace(mirror=True)
    assert not model.mirror  # configurations without a parity key are unmirrored
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, model.nx - 1, 500), rng.uniform(0, model.ny - 1, 500)
    ha, dec = model.pixel_to_hadec(x, y)
    xm, ym = mirrored.hadec_to_pixel(ha, dec)
    np.testing.assert_allclose(xm, (model.nx - 1) - x, atol=1e-6)
    np.testing.assert_allclose(ym, y, atol=1e-6)
    ha2, dec2 = mirrored.pixel_to_hadec(xm, ym)
    np.testing.assert_allclose(ha2, ha, atol=1e-8)
    np.testing.assert_allclose(dec2, dec, atol=1e-8)
    cam = mirrored.pixel_to_camera(xm, ym)
    np.testing.assert_allclose(
        np.column_stack(mirrored.camera_to_pixel(cam)), np.column_stack([xm, ym]), atol=1e-6
    )


def test_pointing_folds_the_tilts_into_alt_az_roll(cfg) -> None:
    for camera_id in ("LPC", "LSW"):
        model = CameraModel.from_config(cfg.camera(camera_id)).replace(
            tilt_x_deg=0.8, tilt_y_deg=-0.5, spin_deg=2.0
        )
        folded = model.with_axes(model.axes)
        assert (folded.tilt_x_deg, folded.tilt_y_deg, folded.spin_deg) == (0.0, 0.0, 0.0)
        assert folded.pointing() == pytest.approx(model.pointing(), abs=1e-9)
        np.testing.assert_allclose(folded.axes, model.axes, atol=1e-12)
        ha, dec = np.array([10.0, 200.0]), np.array([30.0, 60.0])
        np.testing.assert_allclose(
            folded.hadec_to_pixel(ha, dec), model.hadec_to_pixel(ha, dec), atol=1e-7
        )


# --- the stations' cameras -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("camera_id", ["LPN", "LPE", "LPS", "LPW", "LSN", "LSE", "LSS", "LSW"])
def test_station_cameras_solve_blind(camera_id, cfg, cat, index, stars, station_frames) -> None:
    frame = station_frame(station_frames, cfg, cat, camera_id)
    # The lens of the configuration, but a pointing that is nowhere near: it must not matter.
    lens = CameraModel.from_config(cfg.camera(camera_id)).replace(
        alt_deg=10.0, az_deg=(cfg.camera(camera_id).az_deg + 137.0) % 360, roll_deg=33.0
    )
    found = solve_frame(frame, index, stars, lens)
    assert_true_solution(found, frame, cat)
    assert found.model.latitude_deg == cfg.camera(camera_id).site.latitude_deg


# --- any orientation, either parity ---------------------------------------------------------


def offset_pointing(alt: float, az: float, offset: float, bearing: float) -> tuple[float, float]:
    """(alt, az) ``offset`` degrees from (alt, az) towards ``bearing`` on the sky, degrees."""
    a, z, d, b = np.radians([alt, az, offset, bearing])
    alt2 = math.asin(math.sin(a) * math.cos(d) + math.cos(a) * math.sin(d) * math.cos(b))
    daz = math.atan2(
        math.sin(b) * math.sin(d) * math.cos(a), math.cos(d) - math.sin(a) * math.sin(alt2)
    )
    return math.degrees(alt2), math.degrees(z + daz) % 360.0


@pytest.mark.slow
@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    camera_id=st.sampled_from(["LPC", "LPE", "LSS", "LSW"]),
    offset=st.floats(0.0, 20.0),
    bearing=st.floats(0.0, 360.0),
    roll=st.floats(0.0, 360.0),
    mirror=st.booleans(),
)
def test_any_roll_either_parity_far_from_the_config_solves_blind(
    camera_id, offset, bearing, roll, mirror, cfg, cat, index, stars
) -> None:
    camera = cfg.camera(camera_id)
    alt, az = offset_pointing(camera.alt_deg, camera.az_deg, offset, bearing)
    true = true_model(cfg, camera_id, alt_deg=alt, az_deg=az, roll_deg=roll, mirror=mirror)
    frame = render(cfg, cat, camera_id, true, seed=5)
    found = solve_frame(frame, index, stars, CameraModel.from_config(camera))
    assert_true_solution(found, frame, cat)


@pytest.mark.slow
def test_mirrored_camera_with_legendre_terms_and_a_low_pointing(cfg, cat, index, stars) -> None:
    """A mirrored camera 25 degrees above the horizon, focal 1 % off, k1 20 % off and a
    Legendre distortion of a pixel or two: solved, and reported mirrored."""
    rng = np.random.default_rng(8)
    terms = legendre_terms(3)
    cx = tuple(rng.normal(0, 1.5) if i + j >= 2 else 0.0 for i, j in terms)
    cy = tuple(rng.normal(0, 1.5) if i + j >= 2 else 0.0 for i, j in terms)
    nominal = CameraModel.from_config(cfg.camera("LSE"))
    true = nominal.replace(
        alt_deg=25.0,
        az_deg=120.0,
        roll_deg=45.0,
        mirror=True,
        focal_px=nominal.focal_px * 0.99,
        k1=nominal.k1 * 0.8,
        coeffs_x=cx,
        coeffs_y=cy,
    )
    frame = render(cfg, cat, "LSE", true, seed=2)
    found = solve_frame(frame, index, stars, nominal)
    assert_true_solution(found, frame, cat)
    assert found.mirrored


# --- bad input: a clear answer, never a wrong solution --------------------------------------


@pytest.fixture(scope="module")
def overcast(cfg, cat) -> Frame:
    """An LPE frame without one star (shared, read-only)."""
    return render(cfg, cat, "LPE", true_model(cfg, "LPE"), vmax=-5.0)


def test_overcast_frame_has_no_stars(cfg, overcast, index, stars) -> None:
    frame = overcast
    with pytest.raises(BlindSolveFailed) as info:
        solve_frame(frame, index, stars, CameraModel.from_config(cfg.camera("LPE")))
    assert info.value.kind == "no_stars"
    assert "overcast" in str(info.value)
    assert info.value.ndetected < blind.MIN_DETECTIONS


def test_twilight_frame_is_too_bright(cfg, cat, index, stars) -> None:
    """Just after sunset the sky saturates most of the chip."""
    frame = render(cfg, cat, "LPW", true_model(cfg, "LPW"), utc="2026-11-09T18:40:00")
    assert np.median(frame.image) > 20000
    with pytest.raises(BlindSolveFailed) as info:
        solve_frame(frame, index, stars, CameraModel.from_config(cfg.camera("LPW")))
    assert info.value.kind == "too_bright"
    assert "too bright" in str(info.value)


@pytest.mark.slow
def test_trail_hot_pixels_and_cosmic_rays_do_not_mislead(cfg, cat, index, stars) -> None:
    frame = render(
        cfg,
        cat,
        "LPS",
        true_model(cfg, "LPS", roll_deg=95.0),
        seed=4,
        trail_probability=1.0,
        render=RenderSettings(hot_pixel_fraction=3e-4),
    )
    image = frame.image.copy()
    rng = np.random.default_rng(3)
    ny, nx = image.shape
    n = 3000  # single-pixel hits
    image[rng.integers(0, ny, n), rng.integers(0, nx, n)] += rng.uniform(2000, 60000, n)
    for _ in range(300):  # short tracks
        y0, x0 = rng.integers(10, ny - 10), rng.integers(10, nx - 10)
        t = np.arange(rng.integers(2, 8))
        angle = rng.uniform(0, np.pi)
        image[(y0 + t * np.sin(angle)).astype(int), (x0 + t * np.cos(angle)).astype(int)] += (
            rng.uniform(3000, 30000)
        )
    frame = Frame(image, frame.header, frame.truth, frame.true, frame.raw)
    found = solve_frame(frame, index, stars, CameraModel.from_config(cfg.camera("LPS")))
    assert_true_solution(found, frame, cat)


@pytest.mark.slow
def test_frame_of_another_camera_gives_its_true_pointing(
    cfg, cat, index, stars, station_frames
) -> None:
    """An LPE frame solved with LPN's configuration: the pointing found is LPE's."""
    frame = station_frame(station_frames, cfg, cat, "LPE")
    found = solve_frame(frame, index, stars, CameraModel.from_config(cfg.camera("LPN")))
    assert_true_solution(found, frame, cat)
    assert abs(found.pointing[1] - 90.0) < 0.05


@pytest.mark.slow
def test_frame_of_another_sites_sky_is_refused(cfg, cat, index, stars, station_frames) -> None:
    """La Silla's southern sky solved as if at La Palma matches only below the horizon:
    refused with the reason, never accepted."""
    frame = station_frame(station_frames, cfg, cat, "LSS")
    with pytest.raises(BlindSolveFailed) as info:
        solve_frame(frame, index, stars, CameraModel.from_config(cfg.camera("LPS")))
    assert info.value.kind == "below_horizon"
    assert "another site" in str(info.value)
    assert info.value.best_pointing is not None
    assert info.value.best_pointing[0] < 0  # the camera would look below the horizon


def test_random_star_field_is_never_solved(cfg, index, stars) -> None:
    """5,000 stars at random places: not a sky, so no orientation may be accepted."""
    rng = np.random.default_rng(1)
    ny, nx = 2672, 4008
    n = 5000
    x, y = rng.uniform(20, nx - 20, n), rng.uniform(20, ny - 20, n)
    field = StarField(x, y, x + 1.0, y, 10 ** rng.uniform(4.0, 6.5, n))
    light, _ = render_star_electrons((ny, nx), field, RenderSettings())
    image = (light + rng.normal(300.0, 20.0, (ny, nx))).astype(np.float32)
    with pytest.raises(BlindSolveFailed) as info:
        blind_solve(
            image,
            index,
            stars,
            CameraModel.from_config(cfg.camera("LPE")),
            lst_hours=3.0,
            jd=2461354.5,
        )
    assert info.value.kind == "too_few_matched"
    assert info.value.ndetected > 4000
    assert info.value.nmatched < 60  # chance: a few dozen at 10 px, thousands for the sky


def test_a_chance_match_is_impossible_by_the_criterion() -> None:
    """The acceptance numbers of the docstring: 2,500 predicted stars, 5,000 detections on
    the chip, 1.5 px: chance gives about 10 matches; 60 % of 2,500 is beyond any chance."""
    density = 5000 / (4008 * 2672)
    assert blind._log10_pfa(1500, 2500, 1.5, density, 10**6) < -1000
    assert blind._log10_pfa(25, 2500, 1.5, density, 10**6) > blind.ACCEPT_LOG10_PFA
    assert blind._log10_pfa(0, 2500, 1.5, density, 1) == 0.0


@settings(max_examples=300, deadline=None)
@given(k=st.integers(1, 3000), n=st.integers(1, 5000), radius=st.floats(0.5, 5.0),
       log_density=st.floats(-7.0, -2.0))
def test_the_chance_of_a_match_is_scipy_stats_poisson_tail(k: int, n: int, radius: float,
                                                           log_density: float) -> None:
    """log10 P(X >= k) of a Poisson count, from scipy.special, is that of
    scipy.stats.poisson (which the solver no longer imports), where the tail is in double
    precision."""
    from scipy import stats

    lam = n * math.pi * radius**2 * 10**log_density
    expected = float(stats.poisson.logsf(k - 1, lam)) / math.log(10.0)
    if math.isfinite(expected):
        assert blind._log10_pfa(k, n, radius, 10**log_density, 1) == min(expected, 0.0)


# --- the index cache ------------------------------------------------------------------------


def test_index_is_cached_as_npy_and_rebuilt_when_stale_or_corrupt(
    cat, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = cat.select(vmax=4.5)  # a few hundred stars: a quick index
    monkeypatch.setattr(blind_index, "_LOADED", {})
    built = BlindIndex.load(small, cache_dir=tmp_path)
    npy, sidecar = tmp_path / "blind_index.npy", tmp_path / "blind_index.json"
    assert npy.is_file()
    assert sidecar.is_file()
    np.load(npy, allow_pickle=False)  # plain .npy, no pickle
    assert json.loads(sidecar.read_text())["n_triangles"] == len(built) > 100

    def reload() -> BlindIndex:
        blind_index._LOADED.clear()
        return BlindIndex.load(small, cache_dir=tmp_path)

    again = reload()
    assert np.array_equal(again.triangles, built.triangles)
    assert np.array_equal(again.keys, built.keys)
    npy.write_bytes(npy.read_bytes()[:-100])  # truncated
    assert np.array_equal(reload().keys, built.keys)
    assert np.load(npy, allow_pickle=False).shape == (len(built),)
    fewer = cat.select(vmax=4.0)  # other stars: the fingerprint differs
    blind_index._LOADED.clear()
    rebuilt = BlindIndex.load(fewer, cache_dir=tmp_path)
    assert len(rebuilt.stars) == len(blind_index.index_stars(fewer)) < len(built.stars)
    assert json.loads(sidecar.read_text())["n_stars"] == len(rebuilt.stars)


# --- the science path: the configured pointing first, blind when it fails --------------------


@pytest.mark.slow
def test_reduction_falls_back_to_blind_when_the_config_is_far_off(cfg, cat, tmp_path: Path) -> None:
    """A camera 10 degrees and 90 degrees of roll away from its configuration: the solve
    from the configured pointing fails, the blind one finds it."""
    camera = cfg.camera("LPE")
    alt, az = offset_pointing(camera.alt_deg, camera.az_deg, 10.0, 45.0)
    true = true_model(cfg, "LPE", alt_deg=alt, az_deg=az, roll_deg=camera.roll_deg + 90.0)
    frame = render(cfg, cat, "LPE", true, seed=6)
    path = write_raw(tmp_path / raw_filename(frame.header.lstseq, "E"), frame.raw, frame.header)
    session = ReductionSession.open("LPE")
    solution = session.solve(path, None)
    assert rms_vs_truth(solution.model, frame, cat) <= 0.1
    assert angle_deg(solution.model.axes[2], true.axes[2]) <= 0.05
    result = session.reduce_frame(path, solution)
    assert result.nstars > 3000


def test_reduction_says_what_to_do_when_nothing_solves(overcast, tmp_path: Path) -> None:
    frame = overcast
    path = write_raw(tmp_path / raw_filename(frame.header.lstseq, "E"), frame.raw, frame.header)
    with pytest.raises(AstrometryFailed) as info:
        ReductionSession.open("LPE").solve(path, None)
    text = str(info.value)
    for words in ("camera LPE", "stars detected", "matched", "mascara-actors solve", str(path)):
        assert words in text
