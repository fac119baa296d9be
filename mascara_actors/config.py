"""Typed, validated station configuration loaded from the TOML files in ``config/``.

Four files make a configuration directory:

``sites.toml``
    the observing sites;
``cameras.toml``
    sensors, lenses and the ten cameras;
``reduction.toml``
    the reduction parameters of DESIGN.md section 4 (and the night summary's list of
    known transit candidates, ``[summary]``).

Everything is checked once, at start-up (:mod:`mascara_actors.typed_toml`): a missing key,
an unknown key, a key that is gone (:data:`GONE_KEYS`), a wrong type or an impossible value
raises :class:`~mascara_actors.errors.ConfigError` with one message that names the file, the
key and the rule. The objects are frozen dataclasses; each field's unit
is in its name or its docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mascara_actors.errors import ConfigError
from mascara_actors.typed_toml import (
    between,
    build,
    check_keys,
    field,
    increasing_pair,
    named_tables,
    non_negative,
    one_of,
    positive,
    read_toml,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "GONE_KEYS",
    "CameraConfig",
    "Config",
    "LensConfig",
    "ReductionConfig",
    "SensorConfig",
    "SiteConfig",
    "SummaryConfig",
    "default_config_dir",
    "load_config",
]

GONE_KEYS: dict[str, str] = {
    "lstseq": "the lstseq clock is the contract of DESIGN.md section 2, not a setting "
    "(reference longitude -17.88 deg east, epoch 2013-01-01T00:00:00 UTC, slots of 6.4 "
    "sidereal seconds: mascara_actors.sidereal)",
    "binning.set_size": "a set is 50 exposures by contract (lstseq // 50: "
    "mascara_actors.sidereal.SET_SIZE), not a setting",
}
"""Keys that configuration files used to hold (``table.key``), and why they are gone."""


def _letter(v: Any) -> str | None:
    return None if v in ("N", "E", "S", "W", "C") else "must be one of N, E, S, W, C"


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """One observing site."""

    name: str = field("site name as in SITE-OBS, e.g. LaPalma")
    code: str = field("two-letter site code used in camera ids, e.g. LP")
    latitude_deg: float = field("geodetic latitude, degrees north", between(-90, 90))
    longitude_deg: float = field("longitude, degrees east", between(-180, 180))
    height_m: float = field("height above sea level, metres", between(-500, 9000))


@dataclass(frozen=True, slots=True)
class SensorConfig:
    """A CCD sensor and its readout geometry."""

    name: str = field("sensor name")
    nx: int = field("full readout width including overscan, pixels", positive)
    ny: int = field("full readout height including overscan, pixels", positive)
    x0: int = field("first science column, pixels", non_negative)
    y0: int = field("first science row, pixels", non_negative)
    xsize: int = field("science region width, pixels", positive)
    ysize: int = field("science region height, pixels", positive)
    pixel_um: float = field("pixel pitch, micrometres", positive)
    gain_e_per_adu: float = field("gain, e-/ADU", positive)
    read_noise_e: float = field("read noise, electrons", non_negative)
    full_well_adu: int = field("digital saturation, ADU", positive)
    bias_adu: float = field("bias level, ADU", non_negative)

    @property
    def science_slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices of the science region in a raw frame."""
        return slice(self.y0, self.y0 + self.ysize), slice(self.x0, self.x0 + self.xsize)


@dataclass(frozen=True, slots=True)
class LensConfig:
    """A lens: focal length and radial distortion."""

    name: str = field("lens name")
    focal_mm: float = field("focal length, mm", positive)
    aperture_mm: float = field("entrance pupil diameter, mm", positive)
    radial_k1: float = field("radial distortion r(1 + k1 r^2 + k2 r^4), r = tan(off-axis angle)")
    radial_k2: float = field("fourth-order radial distortion coefficient")


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """One camera of a station: where it points and what it is built from."""

    id: str = field("camera id: site code + letter, e.g. LPC")
    site: SiteConfig = field("the site the camera stands at")
    letter: str = field("N, E, S, W or C, as in the CAMERA header key", _letter)
    sensor: SensorConfig = field("the sensor")
    lens: LensConfig = field("the lens")
    alt_deg: float = field("nominal altitude of the optical axis, degrees", between(0, 90))
    az_deg: float = field("nominal azimuth, degrees from north through east", between(0, 360))
    roll_deg: float = field("nominal roll about the optical axis, degrees", between(-360, 360))
    mirror: bool = field(
        "the image is mirrored (an odd number of mirrors in the light path, or a readout "
        "that flips columns): x is flipped about the centre of the science region",
        default=False,
    )
    tty: str = field(
        "serial port of the camera's control line on the station computer, e.g. "
        "/dev/ttyUSB0; empty: the camera is not attached here (the simulator stands in)",
        default="",
    )
    readout: str = field("HOST:PORT of the camera's readout stream (with tty)", default="")

    @property
    def focal_px(self) -> float:
        """Focal length in pixels."""
        return self.lens.focal_mm * 1000.0 / self.sensor.pixel_um

    @property
    def pixel_scale_arcsec(self) -> float:
        """Pixel scale on the optical axis, arcsec per pixel."""
        return math.degrees(math.atan(1.0 / self.focal_px)) * 3600.0


@dataclass(frozen=True, slots=True)
class PhotometryConfig:
    fast_vmax: float = field("V limit of the per-exposure photometry, mag", between(-2, 16))
    slow_vmax: float = field("V limit of the binned-image photometry, mag", between(-2, 16))
    fast_apertures_px: tuple[float, ...] = field("aperture radii, pixels", positive)
    slow_apertures_px: tuple[float, ...] = field("aperture radii, pixels", positive)
    sky_radii_px: tuple[float, ...] = field("sky annulus [inner, outer], pixels", increasing_pair)
    sky_estimator: str = field("robust sky estimator", one_of("mmm", "clipped_median"))
    min_sky_pixels: int = field("minimum good annulus pixels", positive)
    gain_e_per_adu: float = field("gain used for photon noise, e-/ADU", positive)
    saturation_adu: float = field("bad pixel / saturation level, ADU", positive)
    edge_margin_px: int = field("stars closer to the edge are not measured, pixels", non_negative)
    moon_radius_px: float = field("flag stars this close to the Moon, pixels", non_negative)


@dataclass(frozen=True, slots=True)
class AstrometryConfig:
    vmin: float = field("brightest astrometry star, V mag", between(-2, 16))
    vmax: float = field("faintest astrometry star, V mag", between(-2, 16))
    legendre_order: int = field("order of the 2-D Legendre correction", between(0, 8))
    max_residual_px: float = field("refit the set when the residual exceeds this, pixels", positive)
    min_match_fraction: float = field(
        "fraction of predicted stars that must be found", between(0, 1)
    )


@dataclass(frozen=True, slots=True)
class BinningConfig:
    min_frames: int = field("sets with fewer frames are flagged, not binned", positive)


@dataclass(frozen=True, slots=True)
class CalibrationConfig:
    min_bias: int = field("minimum bias frames for a master", positive)
    min_dark: int = field("minimum dark frames for a master", positive)
    min_flat: int = field("minimum flat frames for a master", positive)
    n_bias: int = field("bias frames per sequence", positive)
    n_dark: int = field("dark frames per sequence", positive)
    n_flat: int = field("flat frames per sequence", positive)
    dark_history: int = field("entries kept in the dark table", positive)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    minobs: int = field("points a star needs to enter the nightly file", positive)
    compression: str = field("HDF5 compression", one_of("gzip", "lzf", "none"))


@dataclass(frozen=True, slots=True)
class NightConfig:
    sun_alt_start_deg: float = field(
        "the night starts below this Sun altitude, degrees", between(-18, 10)
    )
    sun_alt_stop_deg: float = field(
        "the night ends above this Sun altitude, degrees", between(-18, 10)
    )
    ccd_setpoint_c: float = field(
        "CCD temperature the station sets and switches the cooler on for, degrees Celsius",
        between(-80, 40),
    )
    calibration_gap_slots: int = field(
        "slots between a calibration sequence and the science frames (the masters are made "
        "in them)",
        positive,
    )
    camera_timeout_s: float = field(
        "seconds of camera time a live camera may stay silent (no reply, no frame due) before "
        "the station ends the night with what was measured",
        positive,
        default=120.0,
    )


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    frames: int = field("camera -> reducer channel size, messages", positive)
    records: int = field("reducer -> saver/binner channel size, messages", positive)
    events: int = field("event channel size, messages", positive)


@dataclass(frozen=True, slots=True)
class SummaryConfig:
    candidates: str = field(
        "the known transit candidates the night summary lists when the night observed them: "
        "a candidates.csv of the transit search (its rows that passed the vetting), relative "
        "to the configuration directory unless absolute; empty: no list",
        default="",
    )


@dataclass(frozen=True, slots=True)
class ReductionConfig:
    """The reduction parameters (``reduction.toml``)."""

    photometry: PhotometryConfig = field("fast and slow photometry")
    astrometry: AstrometryConfig = field("astrometric solution")
    binning: BinningConfig = field("sets of 50")
    calibration: CalibrationConfig = field("bias, dark and flat sequences")
    storage: StorageConfig = field("light-curve files")
    night: NightConfig = field("night control")
    channels: ChannelConfig = field("bounded channel sizes")
    summary: SummaryConfig = field("the night summary", default=SummaryConfig())


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration directory."""

    directory: Path
    sites: dict[str, SiteConfig]
    sensors: dict[str, SensorConfig]
    cameras: dict[str, CameraConfig]
    reduction: ReductionConfig

    def candidates_file(self) -> Path | None:
        """The known candidates of the night summary (``summary.candidates`` of
        ``reduction.toml``, relative to :attr:`directory`), None when none is set."""
        text = self.reduction.summary.candidates.strip()
        if not text:
            return None
        return self.directory / Path(text).expanduser()

    def sensor(self, name: str) -> SensorConfig:
        """The sensor ``name`` (e.g. ``"crop1024"``); ConfigError lists the known ones."""
        try:
            return self.sensors[name]
        except KeyError:
            known = ", ".join(sorted(self.sensors))
            raise ConfigError(
                f"unknown sensor {name!r} in {self.directory / 'cameras.toml'}: "
                f"choose one of {known}"
            ) from None

    def camera(self, camera_id: str) -> CameraConfig:
        """The camera ``camera_id`` (e.g. ``"LPC"``); ConfigError lists the known ids."""
        try:
            return self.cameras[camera_id]
        except KeyError:
            known = ", ".join(sorted(self.cameras))
            raise ConfigError(
                f"unknown camera {camera_id!r} in {self.directory / 'cameras.toml'}: "
                f"choose one of {known}"
            ) from None

    def site(self, name: str) -> SiteConfig:
        """The site ``name`` (e.g. ``"LaPalma"``); ConfigError lists the known sites."""
        try:
            return self.sites[name]
        except KeyError:
            known = ", ".join(sorted(self.sites))
            raise ConfigError(
                f"unknown site {name!r} in {self.directory / 'sites.toml'}: choose one of {known}"
            ) from None


_T = TypeVar("_T", bound="DataclassInstance")


def _build(cls: type[_T], table: Any, *, file: Path, key: str,
           extra: dict[str, Any] | None = None) -> _T:
    """:func:`~mascara_actors.typed_toml.build` with the keys that are gone (:data:`GONE_KEYS`)."""
    return build(cls, table, file=file, key=key, gone=GONE_KEYS, extra=extra)


def _check_keys(table: dict[str, Any], known: list[str], *, file: Path, what: str) -> None:
    """:func:`~mascara_actors.typed_toml.check_keys` on a file's top-level sections."""
    check_keys(table, known, file=file, key="", gone=GONE_KEYS, what=what)


def _check_apertures_inside_the_sky(phot: PhotometryConfig, path: Path) -> None:
    """Every fast and slow aperture must end inside the sky annulus's inner radius.

    An aperture that reaches the annulus counts the star's own light as sky.
    """
    inner = phot.sky_radii_px[0]
    for key in ("fast_apertures_px", "slow_apertures_px"):
        radii = getattr(phot, key)
        if any(r >= inner for r in radii):
            raise ConfigError(
                f"{path}: key 'photometry.{key}' = {list(radii)}: every aperture radius must "
                f"be smaller than the inner sky radius (photometry.sky_radii_px[0] = {inner})"
            )


def default_config_dir() -> Path:
    """The ``config/`` directory of the source tree (or of an installed copy)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "config", here / "config"):
        if (candidate / "sites.toml").is_file():
            return candidate
    raise ConfigError(f"no config/ directory found beside {here}; pass --config DIR")


def load_config(directory: str | Path | None = None) -> Config:
    """Load and validate the configuration directory (default :func:`default_config_dir`).

    Raises
    ------
    ConfigError
        One message naming the file, the key and the problem.
    """
    cfg_dir = Path(directory) if directory is not None else default_config_dir()
    if not cfg_dir.is_dir():
        raise ConfigError(f"configuration directory {cfg_dir} does not exist")

    sites_path = cfg_dir / "sites.toml"
    sites_doc = read_toml(sites_path)
    _check_keys(sites_doc, ["sites"], file=sites_path, what="section")
    sites = {
        name: _build(SiteConfig, table, file=sites_path, key=f"sites.{name}", extra={"name": name})
        for name, table in named_tables(sites_doc, "sites", sites_path).items()
    }

    cams_path = cfg_dir / "cameras.toml"
    cams_doc = read_toml(cams_path)
    _check_keys(cams_doc, ["sensors", "lenses", "cameras"], file=cams_path, what="section")
    sensors = {
        name: _build(SensorConfig, t, file=cams_path, key=f"sensors.{name}", extra={"name": name})
        for name, t in named_tables(cams_doc, "sensors", cams_path).items()
    }
    for name, s in sensors.items():
        if s.x0 + s.xsize > s.nx or s.y0 + s.ysize > s.ny:
            raise ConfigError(
                f"{cams_path}: [sensors.{name}] science region x0+xsize={s.x0 + s.xsize}, "
                f"y0+ysize={s.y0 + s.ysize} does not fit in the {s.nx} x {s.ny} readout"
            )
    lenses = {
        name: _build(LensConfig, t, file=cams_path, key=f"lenses.{name}", extra={"name": name})
        for name, t in named_tables(cams_doc, "lenses", cams_path).items()
    }
    cameras: dict[str, CameraConfig] = {}
    for cam_id, table in named_tables(cams_doc, "cameras", cams_path).items():
        key = f"cameras.{cam_id}"
        if not isinstance(table, dict):
            raise ConfigError(f"{cams_path}: [{key}] must be a table")
        refs = {}
        for ref, pool, label in (
            ("site", sites, f"a site of {sites_path}"),
            ("sensor", sensors, "a [sensors.*] table"),
            ("lens", lenses, "a [lenses.*] table"),
        ):
            ref_name = table.get(ref)
            if not isinstance(ref_name, str) or ref_name not in pool:
                raise ConfigError(
                    f"{cams_path}: key '{key}.{ref}' = {ref_name!r} must name {label}: "
                    f"one of {sorted(pool)}"
                )
            refs[ref] = pool[ref_name]
        cam = _build(CameraConfig, table, file=cams_path, key=key, extra={"id": cam_id, **refs})
        if cam_id != cam.site.code + cam.letter:
            raise ConfigError(
                f"{cams_path}: camera id {cam_id!r} must be the site code "
                f"{cam.site.code!r} followed by the letter {cam.letter!r}"
            )
        cameras[cam_id] = cam

    red_path = cfg_dir / "reduction.toml"
    reduction = _build(ReductionConfig, read_toml(red_path), file=red_path, key="")
    _check_apertures_inside_the_sky(reduction.photometry, red_path)
    return Config(
        directory=cfg_dir,
        sites=sites,
        sensors=sensors,
        cameras=cameras,
        reduction=reduction,
    )
