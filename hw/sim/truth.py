"""The truth file of a simulated night, ``truth.fits``: what the reduction should find.

:func:`~hw.sim.recording.record_night` writes it beside the raw frames; tests and benchmarks
read it back with :func:`read_truth`. Its HDUs:

``TRUTH``
    one row per star and science frame (:data:`~hw.sim.sky.TRUTH_DTYPE`: lstseq, HIP id,
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

The TRUTH rows are streamed to a scratch file frame by frame (:func:`truth_file_rows`) and
appended at the end (:func:`write_truth`): a full-size night (6,000 stars x 6,750 frames) has
1.6 GB of truth.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from hw.sim.effects import Transit
from hw.sim.sky import TRUTH_DTYPE, SimulatedSky, SimulationSettings
from mascara_actors.camera_model import CameraModel, legendre_terms
from mascara_actors.config import CameraConfig
from mascara_actors.errors import StorageError

__all__ = [
    "FRAMES_DTYPE",
    "TRUTH_FILENAME",
    "TruthFile",
    "read_truth",
    "truth_file_rows",
    "truth_primary_header",
    "write_truth",
]

TRUTH_FILENAME = "truth.fits"
"""Name of the truth file inside a simulated night's directory."""

_FITS_BLOCK = 2880
_COPY_CHUNK = 16 * 1024 * 1024

# FITS stores big-endian values and has no unsigned 64-bit column type.
_TRUTH_FILE_DTYPE = np.dtype(
    [
        (name, ">i8" if kind == np.dtype("u8") else kind.newbyteorder(">"))
        for name, kind in ((n, TRUTH_DTYPE[n]) for n in TRUTH_DTYPE.names or ())
    ]
)
_TRUTH_UNITS = {"x": "pixel", "y": "pixel", "flux": "adu"}

FRAMES_DTYPE = np.dtype(
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
class TruthFile:
    """The contents of a ``truth.fits`` (see the module docstring).

    Attributes
    ----------
    truth
        Rows of :data:`~hw.sim.sky.TRUTH_DTYPE`, native byte order, sorted by lstseq.
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
            "hw.sim.recording.record_night"
        ) from None
    frames = np.empty(
        len(frames_raw),
        [
            (n, "U40" if n in ("imagetyp", "filename") else FRAMES_DTYPE[n].newbyteorder("="))
            for n in FRAMES_DTYPE.names or ()
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


def truth_file_rows(truth: np.ndarray) -> np.ndarray:
    """Truth rows (:data:`~hw.sim.sky.TRUTH_DTYPE`) as the TRUTH table stores them."""
    out = np.empty(len(truth), _TRUTH_FILE_DTYPE)
    for name in TRUTH_DTYPE.names or ():
        out[name] = truth[name]
    return out


def truth_primary_header(
    sky: SimulatedSky,
    camera: CameraConfig,
    plan: list[tuple[int, str]],
    start_lstseq: int,
    counts: dict[str, int],
    compression: str,
) -> fits.Header:
    """The truth file's primary header: camera, sensor, seed and the night's plan."""
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


def write_truth(
    path: Path,
    rows_path: Path,
    n_rows: int,
    *,
    primary: fits.Header,
    frames: np.ndarray,
    model: CameraModel,
    settings: SimulationSettings,
) -> None:
    """Write ``truth.fits`` at ``path`` (a new file in the night's scratch directory, which
    is renamed into place whole) from the truth rows streamed to ``rows_path``.

    The HDUs other than TRUTH are written by astropy; the TRUTH table is appended by hand
    so that its ``n_rows`` rows stream from disk (memory stays flat for a full-size night).
    The file is fsynced before returning.
    """
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
    hdul.writeto(path)
    # The TRUTH table is appended by hand so that its rows stream from disk.
    header = fits.BinTableHDU(np.empty(0, _TRUTH_FILE_DTYPE), name="TRUTH").header
    header["NAXIS2"] = n_rows
    for i, name in enumerate(_TRUTH_FILE_DTYPE.names or (), start=1):
        if name in _TRUTH_UNITS:
            header[f"TUNIT{i}"] = _TRUTH_UNITS[name]
    nbytes = n_rows * _TRUTH_FILE_DTYPE.itemsize
    with path.open("ab") as out, rows_path.open("rb") as src:
        out.write(header.tostring().encode("ascii"))
        shutil.copyfileobj(src, out, _COPY_CHUNK)
        out.write(b"\0" * (-nbytes % _FITS_BLOCK))
        out.flush()
        os.fsync(out.fileno())


# --- helpers ---------------------------------------------------------------------------------


def _native(data: Any, dtype: np.dtype) -> np.ndarray:
    out = np.empty(len(data), dtype)
    for name in dtype.names or ():
        out[name] = data[name]
    return out


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
