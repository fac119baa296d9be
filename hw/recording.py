"""Record simulated nights: one camera's raw frames plus a truth file (DESIGN.md section 3).

A recorded night is a directory of raw frames named by lstseq, exactly as a station writes
them, so ``--replay DIR`` needs nothing else. :func:`record_night` renders them with
:class:`~hw.simulator.SimulatedSky`: the dusk calibration (bias, dark with the shutter closed,
optional flats) in the slots just before the science frames, then the science frames, and
``truth.fits`` with what the reduction should find:

``TRUTH``
    one row per star and science frame (:data:`~hw.simulator.TRUTH_DTYPE`: lstseq, HIP id,
    mid-exposure science-region pixel x/y, flux deposited in ADU, cloud transmission,
    transit factor), sorted by lstseq; lstseq is stored as a signed 64-bit column because
    FITS has no unsigned one.
``FRAMES``
    one row per file written: lstseq, IMAGETYP, file name, JDMID, EXPTIME, CCDTEMP and the
    number of truth rows of the frame.
``MODEL`` and ``LEGENDRE``
    the true camera model (the geometry the stars were rendered through), lossless float64.
``TRANSITS``
    the injected transits (HIP id, depth, duration in hours, mid-transit JD, period in days).
``SETTINGS``
    every numeric simulation and render setting as (name, value) rows.

The night is built in a sibling scratch directory ``.part-NAME`` and renamed into place at
the end, so a directory under the final name is always complete. Truth rows are streamed to
disk frame by frame, so memory stays flat for a whole full-size night (6,000 stars x 6,750
frames is 1.6 GB of truth). Everything is deterministic for a seed: two runs with the same
arguments give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from hw.simulator import TRUTH_DTYPE, SimulatedSky, SimulationSettings, Transit
from mascara_actors.camera_model import CameraModel, legendre_terms
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, SensorConfig
from mascara_actors.ephemeris import sun_altitude
from mascara_actors.errors import StorageError
from mascara_actors.night_window import first_slot_past
from mascara_actors.rawframe import raw_filename, write_raw

__all__ = [
    "TRUTH_FILENAME",
    "RecordedNightInfo",
    "TruthFile",
    "choose_start_lstseq",
    "read_truth",
    "record_night",
]

log = logging.getLogger(__name__)

TRUTH_FILENAME = "truth.fits"
"""Name of the truth file inside a simulated night's directory."""

_COMPRESSIONS = (".fits", ".fits.gz", ".fits.fz")
_FITS_BLOCK = 2880
_COPY_CHUNK = 16 * 1024 * 1024
_JD_UNIX_EPOCH = 2440587.5
_GRID_STEP_D = 10.0 / 1440.0  # the Sun moves < 2.5 deg in 10 minutes: one crossing per step

# FITS stores big-endian values and has no unsigned 64-bit column type.
_TRUTH_FILE_DTYPE = np.dtype(
    [
        (name, ">i8" if kind == np.dtype("u8") else kind.newbyteorder(">"))
        for name, (kind, _offset) in (TRUTH_DTYPE.fields or {}).items()
    ]
)
_TRUTH_UNITS = {"x": "pixel", "y": "pixel", "flux": "adu"}

_FRAMES_DTYPE = np.dtype(
    [
        ("lstseq", ">i8"),
        ("imagetyp", "S8"),
        ("filename", "S40"),
        ("jdmid", ">f8"),
        ("exptime", ">f8"),
        ("ccdtemp", ">f8"),
        ("ntruth", ">i4"),
    ]
)
_MODEL_FIELDS = (
    "latitude_deg",
    "alt_deg",
    "az_deg",
    "roll_deg",
    "focal_px",
    "nx",
    "ny",
    "k1",
    "k2",
    "refraction",
)
_TRANSITS_DTYPE = np.dtype(
    [
        ("hip", ">i4"),
        ("depth", ">f8"),
        ("duration_h", ">f8"),
        ("epoch_jd", ">f8"),
        ("period_d", ">f8"),
    ]
)


@dataclass(frozen=True, slots=True)
class RecordedNightInfo:
    """What :func:`record_night` wrote.

    Attributes
    ----------
    directory
        The night's directory.
    camera_id
        Camera id, e.g. ``"LPC"``; ``camera`` is its letter as in the CAMERA header key.
    first_lstseq
        Slot of the first calibration frame (``start_lstseq`` when there are none).
    start_lstseq, end_lstseq
        First and last science slot (inclusive).
    n_bias, n_dark, n_flat, n_science
        Frames of each kind written.
    n_truth_rows
        Rows of the TRUTH table (stars x science frames).
    truth_path
        The truth file.
    elapsed_s
        Wall-clock time of the recording, seconds.
    """

    directory: Path
    camera_id: str
    camera: str
    first_lstseq: int
    start_lstseq: int
    end_lstseq: int
    n_bias: int
    n_dark: int
    n_flat: int
    n_science: int
    n_truth_rows: int
    truth_path: Path
    elapsed_s: float

    @property
    def n_frames(self) -> int:
        """Raw frames written, all kinds."""
        return self.n_bias + self.n_dark + self.n_flat + self.n_science


@dataclass(frozen=True, slots=True)
class TruthFile:
    """The contents of a ``truth.fits`` (see the module docstring).

    Attributes
    ----------
    truth
        Rows of :data:`~hw.simulator.TRUTH_DTYPE`, native byte order, sorted by lstseq.
    frames
        One row per raw frame: lstseq, imagetyp, filename (str), jdmid, exptime, ccdtemp,
        ntruth.
    model
        The true camera model of the night.
    transits
        The injected transits.
    meta
        Primary header values (CAMID, CAMERA, SITE-OBS, SENSOR, SEED, ...).
    settings
        Simulation and render settings by name.
    """

    truth: np.ndarray
    frames: np.ndarray
    model: CameraModel
    transits: tuple[Transit, ...]
    meta: dict[str, Any]
    settings: dict[str, float]


ProgressCallback = Callable[[int, int], None]


def record_night(
    outdir: str | os.PathLike[str],
    camera: CameraConfig,
    catalogue: Catalogue,
    *,
    start_lstseq: int,
    n_science: int,
    sensor: SensorConfig | None = None,
    true_model: CameraModel | None = None,
    settings: SimulationSettings | None = None,
    n_bias: int = 10,
    n_dark: int = 10,
    n_flat: int = 0,
    compression: str = ".fits.fz",
    progress: ProgressCallback | None = None,
) -> RecordedNightInfo:
    """Render and write a recorded night of one camera.

    Calibration frames take the ``n_bias + n_dark + n_flat`` slots just before
    ``start_lstseq``, in that order (bias, dark, flat); science frames take the slots
    ``start_lstseq .. start_lstseq + n_science - 1``.

    Parameters
    ----------
    outdir
        The night's directory; it must not exist or be empty. Its parent is created.
    camera
        The configured camera (site, letter, lens, nominal pointing).
    catalogue
        The star catalogue (Hipparcos).
    start_lstseq
        Slot of the first science frame.
    n_science
        Number of science frames, >= 0.
    sensor
        Sensor to render (default ``camera.sensor``); a crop gives small nights.
    true_model
        The camera's real geometry (default: the nominal model of ``camera``).
    settings
        Seed, magnitude limit, clouds, trails, transits (default ``SimulationSettings()``).
    n_bias, n_dark, n_flat
        Calibration frames, >= 0 each.
    compression
        ``".fits"``, ``".fits.gz"`` or ``".fits.fz"`` (Rice, lossless for uint16).
    progress
        Called as ``progress(done, total)`` with ``done = 0`` first and after every frame
        (``total`` = raw frames), from the caller's thread; it should return quickly.

    Returns
    -------
    RecordedNightInfo

    Raises
    ------
    ValueError
        For a negative count, no frames at all, an unknown compression, or calibration
        slots before lstseq 0.
    StorageError
        If ``outdir`` is not empty or the files cannot be written.
    """
    if compression not in _COMPRESSIONS:
        raise ValueError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}")
    counts = {"n_science": n_science, "n_bias": n_bias, "n_dark": n_dark, "n_flat": n_flat}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    total = sum(counts.values())
    if total == 0:
        raise ValueError("nothing to record: n_science, n_bias, n_dark and n_flat are all 0")
    n_cal = n_bias + n_dark + n_flat
    first = int(start_lstseq) - n_cal
    if first < 0:
        raise ValueError(
            f"start_lstseq = {start_lstseq} leaves no room for {n_cal} calibration slots "
            f"before it: start at lstseq >= {n_cal}"
        )
    plan = (
        [(first + i, "bias") for i in range(n_bias)]
        + [(first + n_bias + i, "dark") for i in range(n_dark)]
        + [(first + n_bias + n_dark + i, "flat") for i in range(n_flat)]
        + [(int(start_lstseq) + i, "science") for i in range(n_science)]
    )

    outdir = Path(outdir)
    _check_empty(outdir)
    t0 = time.perf_counter()
    sky = SimulatedSky(camera, catalogue, true_model=true_model, sensor=sensor, settings=settings)
    scratch = outdir.parent / f".part-{outdir.name}"
    done_ok = False
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        if scratch.exists():
            log.warning("removing %s left by an interrupted recording", scratch)
            shutil.rmtree(scratch)
        scratch.mkdir()
        frames = np.zeros(len(plan), _FRAMES_DTYPE)
        rows_path = scratch / ".truth.rows"
        n_rows = 0
        if progress is not None:
            progress(0, total)
        with rows_path.open("wb") as rows:
            for i, (lstseq, kind) in enumerate(plan):
                frame = sky.exposure(lstseq, kind)
                name = raw_filename(lstseq, camera.letter, kind, ext=compression)
                write_raw(scratch / name, frame.raw, frame.header)
                if len(frame.truth):
                    rows.write(_file_rows(frame.truth).tobytes())
                    n_rows += len(frame.truth)
                h = frame.header
                frames[i] = (lstseq, kind, name, h.jdmid, h.exptime, h.ccdtemp, len(frame.truth))
                if progress is not None:
                    progress(i + 1, total)
        _write_truth(
            scratch / TRUTH_FILENAME,
            rows_path,
            n_rows,
            primary=_primary_header(sky, camera, plan, start_lstseq, counts, compression),
            frames=frames,
            model=sky.model,
            settings=sky.settings,
        )
        rows_path.unlink()
        _fsync_dir(scratch)
        # rename(2) replaces an empty directory atomically.
        os.replace(scratch, outdir)
        _fsync_dir(outdir.parent)
        done_ok = True
    except OSError as exc:
        raise StorageError(
            f"cannot write the recorded night {outdir}: {exc}; check the disk space and "
            "permissions of its parent directory"
        ) from exc
    finally:
        if not done_ok:
            shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    log.info(
        "recorded %d frames (%d science) of %s in %s in %.1f s",
        total,
        n_science,
        camera.id,
        outdir,
        elapsed,
    )
    return RecordedNightInfo(
        directory=outdir,
        camera_id=camera.id,
        camera=camera.letter,
        first_lstseq=first,
        start_lstseq=int(start_lstseq),
        end_lstseq=int(start_lstseq) + n_science - 1,
        n_bias=n_bias,
        n_dark=n_dark,
        n_flat=n_flat,
        n_science=n_science,
        n_truth_rows=n_rows,
        truth_path=outdir / TRUTH_FILENAME,
        elapsed_s=elapsed,
    )


def choose_start_lstseq(
    camera_config: CameraConfig, date: dt.date | dt.datetime | str, *, sun_alt_deg: float = -12.0
) -> int:
    """The first slot of a night whose start has the Sun below ``sun_alt_deg``.

    The night is the one whose sunset (the Sun's centre crossing the horizon downwards) falls
    on the UTC date ``date``, as :func:`mascara_actors.ephemeris.night_date` dates nights.
    The Sun's altitude is sampled every 10 minutes over 36 hours from that date's 00:00 UTC
    (one vectorised call), the crossing of ``sun_alt_deg`` nearest that sunset is
    bracketed, and the ~95 slots inside the bracket are checked in a second call.

    Parameters
    ----------
    camera_config
        The camera; only its site is used.
    date
        The night's date (UTC date of the evening's sunset): a ``date``, a ``datetime``
        (its date is used) or an ISO string such as ``"2026-03-20"`` or ``"20260320"``.
    sun_alt_deg
        Solar altitude, degrees, between -18 and +10 (default -12, nautical twilight).

    Returns
    -------
    int
        The lstseq of the first slot that starts with the Sun below ``sun_alt_deg``.

    Raises
    ------
    ValueError
        For a malformed date, an altitude out of range, or a date with no sunset at the
        site (polar day or night).
    """
    if not -18.0 <= float(sun_alt_deg) <= 10.0:
        raise ValueError(f"sun_alt_deg must be between -18 and 10 degrees, got {sun_alt_deg!r}")
    night = _as_date(date)
    site = camera_config.site
    jd0 = _JD_UNIX_EPOCH + (night - dt.date(1970, 1, 1)).days
    grid = jd0 + np.arange(0, round(1.5 / _GRID_STEP_D) + 1) * _GRID_STEP_D
    alt = sun_altitude(grid, site)
    # The night's sunset: the downward horizon crossing (interpolated) on the night's date.
    sets = np.flatnonzero((alt[:-1] >= 0.0) & (alt[1:] < 0.0))
    t_set = grid[sets] + _GRID_STEP_D * alt[sets] / (alt[sets] - alt[sets + 1])
    sets = sets[(t_set >= jd0) & (t_set < jd0 + 1.0)]
    downs = np.flatnonzero((alt[:-1] >= sun_alt_deg) & (alt[1:] < sun_alt_deg))
    if sets.size == 0 or downs.size == 0:
        raise ValueError(
            f"the Sun does not set below {sun_alt_deg} deg at {site.name} on {night}: "
            "choose another date or altitude"
        )
    k = int(downs[np.argmin(np.abs(downs - sets[0]))])
    # Between two samples the Sun sinks monotonically: the first slot starting below the
    # altitude is in the bracket, whose first slot starts at or before grid[k].
    return first_slot_past(site, float(grid[k]), float(grid[k + 1]), sun_alt_deg, rising=False)


def read_truth(path: str | os.PathLike[str]) -> TruthFile:
    """Read a ``truth.fits`` written by :func:`record_night` (the whole TRUTH table).

    Raises
    ------
    StorageError
        If the file is missing, not FITS, or lacks one of the tables.
    """
    path = Path(path)
    try:
        with fits.open(path, memmap=False) as hdul:
            meta = {k: v for k, v in hdul[0].header.items() if k not in ("COMMENT", "HISTORY")}
            truth = _native(hdul["TRUTH"].data, TRUTH_DTYPE)
            frames_raw = np.asarray(hdul["FRAMES"].data)
            model_row = hdul["MODEL"].data[0]
            leg = np.asarray(hdul["LEGENDRE"].data)
            tr = np.asarray(hdul["TRANSITS"].data)
            st = np.asarray(hdul["SETTINGS"].data)
            model_values = {name: model_row[name] for name in _MODEL_FIELDS}
    except (OSError, KeyError, IndexError, ValueError, TypeError) as exc:
        raise StorageError(
            f"{path}: not a readable truth file ({exc}); record the night again with "
            "hw.recording.record_night"
        ) from None
    frames = np.empty(
        len(frames_raw),
        [
            (n, "U40" if n in ("imagetyp", "filename") else _FRAMES_DTYPE[n].newbyteorder("="))
            for n in _FRAMES_DTYPE.names or ()
        ],
    )
    for name in frames.dtype.names or ():
        col = frames_raw[name]
        frames[name] = np.char.decode(col, "ascii") if col.dtype.kind == "S" else col
    model = CameraModel(
        latitude_deg=float(model_values["latitude_deg"]),
        alt_deg=float(model_values["alt_deg"]),
        az_deg=float(model_values["az_deg"]),
        roll_deg=float(model_values["roll_deg"]),
        focal_px=float(model_values["focal_px"]),
        nx=int(model_values["nx"]),
        ny=int(model_values["ny"]),
        k1=float(model_values["k1"]),
        k2=float(model_values["k2"]),
        coeffs_x=tuple(float(c) for c in leg["coeff_x"]),
        coeffs_y=tuple(float(c) for c in leg["coeff_y"]),
        refraction=bool(model_values["refraction"]),
    )
    transits = tuple(
        Transit(
            hip=int(r["hip"]),
            depth=float(r["depth"]),
            duration_h=float(r["duration_h"]),
            epoch_jd=float(r["epoch_jd"]),
            period_d=float(r["period_d"]),
        )
        for r in tr
    )
    settings = {
        (n.decode("ascii") if isinstance(n, bytes) else str(n)).strip(): float(v)
        for n, v in zip(st["name"], st["value"], strict=True)
    }
    return TruthFile(
        truth=truth, frames=frames, model=model, transits=transits, meta=meta, settings=settings
    )


# --- helpers ---------------------------------------------------------------------------------


def _as_date(value: dt.date | dt.datetime | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(
            f"night date {value!r} is not a date: give YYYY-MM-DD or YYYYMMDD"
        ) from None


def _check_empty(outdir: Path) -> None:
    if outdir.exists():
        if not outdir.is_dir():
            raise StorageError(f"{outdir} exists and is not a directory: choose a new directory")
        entries = sorted(p.name for p in outdir.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
            raise StorageError(
                f"{outdir} is not empty (it holds {shown}): a recorded night needs a new or "
                "empty directory"
            )


def _file_rows(truth: np.ndarray) -> np.ndarray:
    out = np.empty(len(truth), _TRUTH_FILE_DTYPE)
    for name in TRUTH_DTYPE.names or ():
        out[name] = truth[name]
    return out


def _native(data: Any, dtype: np.dtype) -> np.ndarray:
    out = np.empty(len(data), dtype)
    for name in dtype.names or ():
        out[name] = data[name]
    return out


def _primary_header(
    sky: SimulatedSky,
    camera: CameraConfig,
    plan: list[tuple[int, str]],
    start_lstseq: int,
    counts: dict[str, int],
    compression: str,
) -> fits.Header:
    s = sky.settings
    header = fits.Header()
    header["CAMID"] = (camera.id, "camera id")
    header["CAMERA"] = (camera.letter, "camera letter as in the raw frames")
    header["SITE-OBS"] = camera.site.name
    header["SENSOR"] = (sky.sensor.name, "sensor rendered")
    header["XSIZE"] = (sky.sensor.xsize, "science region width, pixels")
    header["YSIZE"] = (sky.sensor.ysize, "science region height, pixels")
    header["SEED"] = (s.seed, "simulation seed")
    header["VMAX"] = (s.vmax, "faintest star rendered, V mag")
    header["CLOUDS"] = (s.clouds, "drifting cloud patches")
    header["NTRANSIT"] = (len(s.transits), "injected transits (TRANSITS table)")
    header["LSTSEQ0"] = (plan[0][0], "first slot recorded")
    header["LSTSEQS"] = (int(start_lstseq), "first science slot")
    header["NSCI"] = counts["n_science"]
    header["NBIAS"] = counts["n_bias"]
    header["NDARK"] = counts["n_dark"]
    header["NFLAT"] = counts["n_flat"]
    header["COMPRESS"] = (compression, "raw frame file suffix")
    return header


def _settings_rows(settings: SimulationSettings) -> np.ndarray:
    pairs: list[tuple[str, float]] = []
    for prefix, obj in (("", settings), ("render.", settings.render)):
        for fld in dataclasses.fields(obj):
            value = getattr(obj, fld.name)
            if isinstance(value, bool | int | float) and math.isfinite(float(value)):
                pairs.append((prefix + fld.name, float(value)))
    return np.array(pairs, dtype=[("name", "S40"), ("value", ">f8")])


def _table(data: np.ndarray, name: str, header: fits.Header | None = None) -> fits.BinTableHDU:
    return fits.BinTableHDU(data, header=header, name=name)


def _model_hdus(model: CameraModel) -> list[fits.BinTableHDU]:
    row = np.zeros(1, [(n, ">f8") for n in _MODEL_FIELDS])
    for n in _MODEL_FIELDS:
        row[n] = float(getattr(model, n))
    header = fits.Header()
    header["ALT"] = (model.alt_deg, "optical axis altitude, deg")
    header["AZ"] = (model.az_deg, "optical axis azimuth, deg")
    header["ROLL"] = (model.roll_deg, "roll about the axis, deg")
    header["FOCALPX"] = (model.focal_px, "focal length, pixels")
    terms = legendre_terms(model.order) if model.coeffs_x else []
    leg = np.zeros(
        len(model.coeffs_x), [("i", ">i2"), ("j", ">i2"), ("coeff_x", ">f8"), ("coeff_y", ">f8")]
    )
    if len(leg):
        leg["i"] = [t[0] for t in terms[: len(leg)]]
        leg["j"] = [t[1] for t in terms[: len(leg)]]
        leg["coeff_x"] = model.coeffs_x
        leg["coeff_y"] = model.coeffs_y
    return [_table(row, "MODEL", header), _table(leg, "LEGENDRE")]


def _write_truth(
    path: Path,
    rows_path: Path,
    n_rows: int,
    *,
    primary: fits.Header,
    frames: np.ndarray,
    model: CameraModel,
    settings: SimulationSettings,
) -> None:
    transits = np.array(
        [(t.hip, t.depth, t.duration_h, t.epoch_jd, t.period_d) for t in settings.transits],
        dtype=_TRANSITS_DTYPE,
    )
    hdul = fits.HDUList(
        [
            fits.PrimaryHDU(header=primary),
            _table(frames, "FRAMES"),
            *_model_hdus(model),
            _table(transits, "TRANSITS"),
            _table(_settings_rows(settings), "SETTINGS"),
        ]
    )
    part = path.with_name(".part-" + path.name)
    hdul.writeto(part, overwrite=True)
    # The TRUTH table is appended by hand so that its rows stream from disk.
    header = fits.BinTableHDU(np.empty(0, _TRUTH_FILE_DTYPE), name="TRUTH").header
    header["NAXIS2"] = n_rows
    for i, name in enumerate(_TRUTH_FILE_DTYPE.names or (), start=1):
        if name in _TRUTH_UNITS:
            header[f"TUNIT{i}"] = _TRUTH_UNITS[name]
    nbytes = n_rows * _TRUTH_FILE_DTYPE.itemsize
    with part.open("ab") as out, rows_path.open("rb") as src:
        out.write(header.tostring().encode("ascii"))
        shutil.copyfileobj(src, out, _COPY_CHUNK)
        out.write(b"\0" * (-nbytes % _FITS_BLOCK))
        out.flush()
        os.fsync(out.fileno())
    os.replace(part, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
