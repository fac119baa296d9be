"""Typed, validated station configuration loaded from the TOML files in ``config/``.

Four files make a configuration directory:

``sites.toml``
    the lstseq reference and the observing sites;
``cameras.toml``
    sensors, lenses and the ten cameras;
``reduction.toml``
    the reduction parameters of DESIGN.md section 4.

Everything is checked once, at start-up: a missing key, an unknown key, a wrong type or an
impossible value raises :class:`~mascara_actors.errors.ConfigError` with one message that
names the file, the key and the rule. The objects are frozen dataclasses; each field's unit
is in its name or its docstring.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from mascara_actors.errors import ConfigError

__all__ = [
    "CameraConfig",
    "Config",
    "LensConfig",
    "LstseqConfig",
    "ReductionConfig",
    "SensorConfig",
    "SiteConfig",
    "default_config_dir",
    "load_config",
]

Check = Callable[[Any], str | None]


def _between(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo} and {hi}"

    return check


def _positive(v: Any) -> str | None:
    values = v if isinstance(v, tuple) else (v,)
    return None if all(x > 0 for x in values) else "must be > 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {list(choices)}"

    return check


def _increasing_pair(v: Any) -> str | None:
    if len(v) != 2:
        return "must hold exactly two radii [inner, outer]"
    if not 0 < v[0] < v[1]:
        return "inner radius must be > 0 and smaller than the outer radius"
    return None


def _letter(v: Any) -> str | None:
    return None if v in ("N", "E", "S", "W", "C") else "must be one of N, E, S, W, C"


def _iso_utc(v: Any) -> str | None:
    try:
        datetime.fromisoformat(v)
    except ValueError:
        return "must be an ISO date-time such as 2013-01-01T00:00:00"
    return None


def _f(doc: str, check: Check | None = None, default: Any = dataclasses.MISSING) -> Any:
    """A config field with its documentation (unit first) and an optional value check."""
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check})


@dataclass(frozen=True, slots=True)
class LstseqConfig:
    """The lstseq clock (DESIGN.md section 2)."""

    reference_longitude_deg: float = _f("degrees east of the reference site", _between(-180, 180))
    epoch_utc: str = _f(
        "ISO UTC; lstseq 0 is the slot of the LST = 0 h crossing before it", _iso_utc
    )
    slot_sidereal_s: float = _f("sidereal seconds per exposure slot", _positive)
    set_size: int = _f("exposures per binned set", _positive)

    @property
    def epoch(self) -> datetime:
        """The epoch as an aware UTC datetime."""
        return datetime.fromisoformat(self.epoch_utc).replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """One observing site."""

    name: str = _f("site name as in SITE-OBS, e.g. LaPalma")
    code: str = _f("two-letter site code used in camera ids, e.g. LP")
    latitude_deg: float = _f("geodetic latitude, degrees north", _between(-90, 90))
    longitude_deg: float = _f("longitude, degrees east", _between(-180, 180))
    height_m: float = _f("height above sea level, metres", _between(-500, 9000))


@dataclass(frozen=True, slots=True)
class SensorConfig:
    """A CCD sensor and its readout geometry."""

    name: str = _f("sensor name")
    nx: int = _f("full readout width including overscan, pixels", _positive)
    ny: int = _f("full readout height including overscan, pixels", _positive)
    x0: int = _f("first science column, pixels", _non_negative)
    y0: int = _f("first science row, pixels", _non_negative)
    xsize: int = _f("science region width, pixels", _positive)
    ysize: int = _f("science region height, pixels", _positive)
    pixel_um: float = _f("pixel pitch, micrometres", _positive)
    gain_e_per_adu: float = _f("gain, e-/ADU", _positive)
    read_noise_e: float = _f("read noise, electrons", _non_negative)
    full_well_adu: int = _f("digital saturation, ADU", _positive)
    bias_adu: float = _f("bias level, ADU", _non_negative)

    @property
    def science_slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices of the science region in a raw frame."""
        return slice(self.y0, self.y0 + self.ysize), slice(self.x0, self.x0 + self.xsize)


@dataclass(frozen=True, slots=True)
class LensConfig:
    """A lens: focal length and radial distortion."""

    name: str = _f("lens name")
    focal_mm: float = _f("focal length, mm", _positive)
    aperture_mm: float = _f("entrance pupil diameter, mm", _positive)
    radial_k1: float = _f("radial distortion r(1 + k1 r^2 + k2 r^4), r = tan(off-axis angle)")
    radial_k2: float = _f("fourth-order radial distortion coefficient")


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """One camera of a station: where it points and what it is built from."""

    id: str = _f("camera id: site code + letter, e.g. LPC")
    site: SiteConfig = _f("the site the camera stands at")
    letter: str = _f("N, E, S, W or C, as in the CAMERA header key", _letter)
    sensor: SensorConfig = _f("the sensor")
    lens: LensConfig = _f("the lens")
    alt_deg: float = _f("nominal altitude of the optical axis, degrees", _between(0, 90))
    az_deg: float = _f("nominal azimuth, degrees from north through east", _between(0, 360))
    roll_deg: float = _f("nominal roll about the optical axis, degrees", _between(-360, 360))
    mirror: bool = _f(
        "the image is mirrored (an odd number of mirrors in the light path, or a readout "
        "that flips columns): x is flipped about the centre of the science region",
        default=False,
    )
    tty: str = _f(
        "serial port of the camera's control line on the station computer, e.g. "
        "/dev/ttyUSB0; empty: the camera is not attached here (the simulator stands in)",
        default="",
    )
    readout: str = _f("HOST:PORT of the camera's readout stream (with tty)", default="")

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
    fast_vmax: float = _f("V limit of the per-exposure photometry, mag", _between(-2, 16))
    slow_vmax: float = _f("V limit of the binned-image photometry, mag", _between(-2, 16))
    fast_apertures_px: tuple[float, ...] = _f("aperture radii, pixels", _positive)
    slow_apertures_px: tuple[float, ...] = _f("aperture radii, pixels", _positive)
    sky_radii_px: tuple[float, ...] = _f("sky annulus [inner, outer], pixels", _increasing_pair)
    sky_estimator: str = _f("robust sky estimator", _one_of("mmm", "clipped_median"))
    min_sky_pixels: int = _f("minimum good annulus pixels", _positive)
    gain_e_per_adu: float = _f("gain used for photon noise, e-/ADU", _positive)
    saturation_adu: float = _f("bad pixel / saturation level, ADU", _positive)
    edge_margin_px: int = _f("stars closer to the edge are not measured, pixels", _non_negative)
    moon_radius_px: float = _f("flag stars this close to the Moon, pixels", _non_negative)


@dataclass(frozen=True, slots=True)
class AstrometryConfig:
    vmin: float = _f("brightest astrometry star, V mag", _between(-2, 16))
    vmax: float = _f("faintest astrometry star, V mag", _between(-2, 16))
    legendre_order: int = _f("order of the 2-D Legendre correction", _between(0, 8))
    max_residual_px: float = _f("refit the set when the residual exceeds this, pixels", _positive)
    min_match_fraction: float = _f("fraction of predicted stars that must be found", _between(0, 1))


@dataclass(frozen=True, slots=True)
class BinningConfig:
    set_size: int = _f("exposures per set", _positive)
    min_frames: int = _f("sets with fewer frames are flagged, not binned", _positive)


@dataclass(frozen=True, slots=True)
class CalibrationConfig:
    min_bias: int = _f("minimum bias frames for a master", _positive)
    min_dark: int = _f("minimum dark frames for a master", _positive)
    min_flat: int = _f("minimum flat frames for a master", _positive)
    n_bias: int = _f("bias frames per sequence", _positive)
    n_dark: int = _f("dark frames per sequence", _positive)
    n_flat: int = _f("flat frames per sequence", _positive)
    dark_history: int = _f("entries kept in the dark table", _positive)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    minobs: int = _f("points a star needs to enter the nightly file", _positive)
    compression: str = _f("HDF5 compression", _one_of("gzip", "lzf", "none"))


@dataclass(frozen=True, slots=True)
class NightConfig:
    sun_alt_start_deg: float = _f(
        "the night starts below this Sun altitude, degrees", _between(-18, 10)
    )
    sun_alt_stop_deg: float = _f(
        "the night ends above this Sun altitude, degrees", _between(-18, 10)
    )
    ccd_setpoint_c: float = _f(
        "CCD temperature the station sets and switches the cooler on for, degrees Celsius",
        _between(-80, 40),
    )
    calibration_gap_slots: int = _f(
        "slots between a calibration sequence and the science frames (the masters are made "
        "in them)",
        _positive,
    )
    camera_timeout_s: float = _f(
        "seconds of camera time a live camera may stay silent (no reply, no frame due) before "
        "the station ends the night with what was measured",
        _positive,
        default=120.0,
    )


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    frames: int = _f("camera -> reducer channel size, messages", _positive)
    records: int = _f("reducer -> saver/binner channel size, messages", _positive)
    events: int = _f("event channel size, messages", _positive)


@dataclass(frozen=True, slots=True)
class ReductionConfig:
    """The reduction parameters (``reduction.toml``)."""

    photometry: PhotometryConfig = _f("fast and slow photometry")
    astrometry: AstrometryConfig = _f("astrometric solution")
    binning: BinningConfig = _f("sets of 50")
    calibration: CalibrationConfig = _f("bias, dark and flat sequences")
    storage: StorageConfig = _f("light-curve files")
    night: NightConfig = _f("night control")
    channels: ChannelConfig = _f("bounded channel sizes")


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration directory."""

    directory: Path
    lstseq: LstseqConfig
    sites: dict[str, SiteConfig]
    sensors: dict[str, SensorConfig]
    cameras: dict[str, CameraConfig]
    reduction: ReductionConfig

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


# --- building typed objects from TOML tables ------------------------------------------------

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = get_origin(tp)
    if origin is tuple:
        (item_tp, _ellipsis) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list of {_type_name(item_tp)}, got {value!r}")
        return tuple(_coerce(v, item_tp, where) for v in value)
    if origin is UnionType:
        raise TypeError(f"unsupported annotation {tp}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp}")


def _build(
    cls: type[T], table: Any, *, file: Path, key: str, extra: dict[str, Any] | None = None
) -> T:
    """Build dataclass ``cls`` from a TOML table, checking keys, types and values."""
    where_table = f"{file}: [{key}]" if key else f"{file}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where_table} must be a table, got {table!r}")
    extra = extra or {}
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise ConfigError(f"{where_table}: unknown key(s) {unknown}; known keys are {names}")
    values: dict[str, Any] = {}
    for fld in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = fld.name
        if name in extra:
            values[name] = extra[name]
            continue
        dotted = f"{key}.{name}" if key else name
        where = f"{file}: key '{dotted}'"
        if name not in table:
            if fld.default is not dataclasses.MISSING:
                continue
            raise ConfigError(f"{where} is missing ({fld.metadata.get('doc', '')})")
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, table[name], file=file, key=dotted)  # type: ignore[arg-type]
            continue
        value = _coerce(table[name], tp, where)
        check = fld.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{where} = {table[name]!r}: {problem}")
        values[name] = value
    return cls(**values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"{path} is missing: copy it from the config/ folder of the mascara-actors repository"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _named_tables(doc: dict[str, Any], section: str, path: Path) -> dict[str, Any]:
    tables = doc.get(section)
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: section [{section}] is missing or empty")
    return tables


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
    sites_doc = _read_toml(sites_path)
    unknown = sorted(set(sites_doc) - {"lstseq", "sites"})
    if unknown:
        raise ConfigError(f"{sites_path}: unknown section(s) {unknown}")
    lstseq = _build(LstseqConfig, sites_doc.get("lstseq"), file=sites_path, key="lstseq")
    if abs(86400.0 / lstseq.slot_sidereal_s - round(86400.0 / lstseq.slot_sidereal_s)) > 1e-9:
        raise ConfigError(
            f"{sites_path}: key 'lstseq.slot_sidereal_s' = {lstseq.slot_sidereal_s}: "
            "86400 sidereal seconds must hold a whole number of slots"
        )
    sites = {
        name: _build(SiteConfig, table, file=sites_path, key=f"sites.{name}", extra={"name": name})
        for name, table in _named_tables(sites_doc, "sites", sites_path).items()
    }

    cams_path = cfg_dir / "cameras.toml"
    cams_doc = _read_toml(cams_path)
    unknown = sorted(set(cams_doc) - {"sensors", "lenses", "cameras"})
    if unknown:
        raise ConfigError(f"{cams_path}: unknown section(s) {unknown}")
    sensors = {
        name: _build(SensorConfig, t, file=cams_path, key=f"sensors.{name}", extra={"name": name})
        for name, t in _named_tables(cams_doc, "sensors", cams_path).items()
    }
    for name, s in sensors.items():
        if s.x0 + s.xsize > s.nx or s.y0 + s.ysize > s.ny:
            raise ConfigError(
                f"{cams_path}: [sensors.{name}] science region x0+xsize={s.x0 + s.xsize}, "
                f"y0+ysize={s.y0 + s.ysize} does not fit in the {s.nx} x {s.ny} readout"
            )
    lenses = {
        name: _build(LensConfig, t, file=cams_path, key=f"lenses.{name}", extra={"name": name})
        for name, t in _named_tables(cams_doc, "lenses", cams_path).items()
    }
    cameras: dict[str, CameraConfig] = {}
    for cam_id, table in _named_tables(cams_doc, "cameras", cams_path).items():
        key = f"cameras.{cam_id}"
        if not isinstance(table, dict):
            raise ConfigError(f"{cams_path}: [{key}] must be a table")
        refs = {}
        for ref, pool, label in (
            ("site", sites, f"a site of {sites_path}"),
            ("sensor", sensors, "a [sensors.*] table"),
            ("lens", lenses, "a [lenses.*] table"),
        ):
            name = table.get(ref)
            if name not in pool:
                raise ConfigError(
                    f"{cams_path}: key '{key}.{ref}' = {name!r} must name {label}: "
                    f"one of {sorted(pool)}"
                )
            refs[ref] = pool[name]
        cam = _build(CameraConfig, table, file=cams_path, key=key, extra={"id": cam_id, **refs})
        if cam_id != cam.site.code + cam.letter:
            raise ConfigError(
                f"{cams_path}: camera id {cam_id!r} must be the site code "
                f"{cam.site.code!r} followed by the letter {cam.letter!r}"
            )
        cameras[cam_id] = cam

    red_path = cfg_dir / "reduction.toml"
    reduction = _build(ReductionConfig, _read_toml(red_path), file=red_path, key="")
    _check_apertures_inside_the_sky(reduction.photometry, red_path)
    return Config(
        directory=cfg_dir,
        lstseq=lstseq,
        sites=sites,
        sensors=sensors,
        cameras=cameras,
        reduction=reduction,
    )
