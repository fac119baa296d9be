"""The record types of the pipeline: per-star data, per-star header, station and astrometry rows.

Pure numpy: structured dtypes, small builders and a table of every field with its unit. The
data record follows the seed's ``indexArray`` (data mode) extended with the legacy fields
(pflag, aflag, peak, x, y, sky, esky); the star record follows its header mode. Storage keeps
whatever structured dtype it is given, so a new field only needs to be added here.

Conventions: fluxes are ADU per exposure (not normalised by exposure time), sky is ADU per
pixel, positions are science-region pixels (0-based, pixel centres at integers), angles are
degrees, times are JD (UTC) or hours of LST, ``id`` is the Hipparcos (HIP) number.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mascara_actors.errors import StorageError

__all__ = [
    "FAST_NAPER",
    "SLOW_NAPER",
    "FieldDoc",
    "astrometry_dtype",
    "describe",
    "describe_markdown",
    "empty_records",
    "fast_record_dtype",
    "field_units",
    "lightcurve_dtype",
    "record_dtype",
    "records_from_columns",
    "slow_record_dtype",
    "slow_station_dtype",
    "star_dtype",
    "station_dtype",
    "with_flag",
]

FAST_NAPER = 2
"""Number of apertures of the fast (per-exposure) photometry (2.5 and 4.5 px)."""
SLOW_NAPER = 4
"""Number of apertures of the slow (binned) photometry (2.5, 3.5, 4.5, 5.5 px)."""


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One documented field of one record type."""

    table: str
    """Record type: ``record``, ``star``, ``station``, ``slow_station`` or ``astrometry``."""
    name: str
    """Field name (``flux{i}`` stands for ``flux0``, ``flux1``...)."""
    dtype: str
    """numpy type string, for example ``u8`` or ``f4``."""
    unit: str
    """Unit, or ``""`` for counts, flags and identifiers."""
    description: str


# (name, dtype, unit, description); the order is the field order of the dtype.
_RECORD_HEAD = [
    ("lstseq", "u8", "", "exposure sequence number (fast); middle frame of the set (slow)"),
    ("lstidx", "u4", "", "lstseq % 13500: slot of the sidereal day"),
    ("flag", "u1", "", "0 good, 1 when pflag or aflag is non-zero"),
    ("pflag", "u1", "", "photometry flag bits (1 edge, 2 bad sky pixel, 4 negative sky, "
     "8 saturated, 16 negative flux, 32 near the Moon)"),
    ("aflag", "u1", "", "astrometry flag of the set (0 good)"),
]
_RECORD_APER = [
    ("flux{i}", "f8", "ADU", "flux in aperture i, ADU per exposure (not exptime normalised)"),
    ("eflux{i}", "f8", "ADU", "1-sigma error of flux{i}"),
]
_RECORD_TAIL = [
    ("sky", "f8", "ADU/pixel", "robust sky level in the 6-21 px annulus"),
    ("esky", "f8", "ADU/pixel", "scatter of the sky pixels"),
    ("peak", "f8", "ADU", "highest pixel in the largest aperture, sky included"),
    ("x", "f4", "pixel", "column, science region, 0-based, pixel centres at integers"),
    ("y", "f4", "pixel", "row, science region, 0-based, pixel centres at integers"),
    ("alt", "f4", "deg", "altitude of the star at mid-exposure"),
    ("az", "f4", "deg", "azimuth of the star at mid-exposure"),
    ("ccdtemp", "f4", "deg C", "CCD temperature"),
    ("exptime", "f8", "s", "exposure time"),
    ("jdmid", "f8", "d", "JD (UTC) at mid-exposure"),
    ("lst", "f8", "h", "hours of LST at the start of the exposure"),
]
_ID = ("id", "i4", "", "Hipparcos (HIP) number of the star")

_STAR = [
    _ID,
    ("ra", "f8", "deg", "right ascension, ICRS, at the catalogue epoch (J2000)"),
    ("dec", "f8", "deg", "declination, ICRS, at the catalogue epoch (J2000)"),
    ("vmag", "f4", "mag", "Johnson V magnitude"),
    ("bmag", "f4", "mag", "Johnson B magnitude"),
    ("sptype", "S2", "", "spectral type, first two characters"),
    ("blend", "u1", "", "1 when another catalogue star overlaps the apertures"),
    ("blendvalue", "f4", "", "blend measure (0 not blended, 1 overlapping)"),
    ("jdstart", "f8", "d", "JD (UTC) of the star's first observation of the night"),
    ("nobs", "u4", "", "number of points of the star in the file"),
    ("lstseqmin", "u8", "", "first lstseq of the star in the file"),
    ("lstseqmax", "u8", "", "last lstseq of the star in the file"),
]

_SUNMOON = [
    ("sunra", "f4", "deg", "right ascension of the Sun, geocentric, mean equinox of date"),
    ("sundec", "f4", "deg", "declination of the Sun, geocentric, mean equinox of date"),
    ("sunalt", "f4", "deg", "altitude of the Sun"),
    ("moonra", "f4", "deg", "right ascension of the Moon, geocentric, mean equinox of date"),
    ("moondec", "f4", "deg", "declination of the Moon, geocentric, mean equinox of date"),
    ("moonalt", "f4", "deg", "altitude of the Moon"),
    ("moonx", "f4", "pixel", "column of the Moon on the chip, NaN when off the chip"),
    ("moony", "f4", "pixel", "row of the Moon on the chip, NaN when off the chip"),
    ("moonph", "f4", "", "fraction of the Moon illuminated"),
]

_STATION = [
    ("lstseq", "u8", "", "exposure sequence number"),
    ("lstidx", "u4", "", "lstseq % 13500"),
    ("lstday", "u4", "", "lstseq // 13500"),
    ("jd", "f8", "d", "JD (UTC) at the start of the exposure"),
    ("jdmid", "f8", "d", "JD (UTC) at mid-exposure"),
    ("lst", "f8", "h", "hours of LST at the start of the exposure"),
    ("exptime", "f4", "s", "exposure time"),
    ("ccdtemp", "f4", "deg C", "CCD temperature"),
    ("dwldtime", "f4", "s", "readout (download) time"),
    ("margtime", "f4", "s", "margin left before the next exposure"),
    ("imnzero", "u4", "", "raw pixels equal to 0"),
    ("imnsat", "u4", "", "raw pixels above the saturation level"),
    ("imstd", "f4", "ADU", "standard deviation of the raw frame"),
    ("immed", "f4", "ADU", "median of the raw frame"),
    ("oversca0", "f4", "ADU", "median of the top overscan strip"),
    ("oversca1", "f4", "ADU", "median of the left overscan strip"),
    ("oversca2", "f4", "ADU", "median of the bottom overscan strip"),
    ("oversca3", "f4", "ADU", "median of the right overscan strip"),
    ("darkfile", "u8", "", "lstseq of the master dark subtracted, 0 if none"),
    ("utc", "S26", "", "UTC-OBS of the frame, '%Y-%m-%d %H:%M:%S.%f'"),
    *_SUNMOON,
    ("nstars", "u4", "", "stars measured on the frame"),
    ("nflagged", "u4", "", "stars with a non-zero flag on the frame"),
    ("aflag", "u1", "", "astrometry flag of the solution the frame was measured with (0 good)"),
]

_SLOW_STATION = [
    ("lstseq", "u8", "", "lstseq of the reference (middle) frame of the set"),
    ("setidx", "u8", "", "set number, lstseq // 50"),
    ("nimages", "u2", "", "frames co-added into the binned image"),
    ("setflag", "u1", "", "binned-set flag: 1 too few frames (no image, no slow photometry), "
     "2 frames refused, 4 no reference frame"),
    ("exptime", "f4", "s", "mean exposure time of the co-added frames"),
    ("lst", "f8", "h", "hours of LST at the start of the reference frame"),
    ("jd", "f8", "d", "JD (UTC) at the start of the reference frame"),
    ("lstmid", "f8", "h", "mean LST of the co-added frames (24 h wrap handled)"),
    ("jdmid", "f8", "d", "mean JD (UTC) at mid-exposure of the co-added frames"),
    ("ccdtemp", "f4", "deg C", "mean CCD temperature"),
    *_SUNMOON,
]

_ASTROMETRY_HEAD = [
    ("lstseq", "u8", "", "lstseq of the reference frame of the solution"),
    ("setidx", "u8", "", "set number, lstseq // 50"),
    ("nstars", "u4", "", "stars looked for"),
    ("nused", "u4", "", "stars used in the fit"),
    ("dx", "f4", "pixel", "median residual along x"),
    ("dy", "f4", "pixel", "median residual along y"),
    ("dr", "f4", "pixel", "RMS radial residual"),
    ("aflag", "u1", "", "astrometry flag of the set (0 good)"),
]
_ASTROMETRY_PARAMS = ("params", "f8", "", "camera-model parameters (see the camera model)")


def _check_naper(naper: int) -> int:
    if int(naper) != naper or naper < 1:
        raise StorageError(f"naper={naper!r} must be a positive integer (2 fast, 4 slow)")
    return int(naper)


def record_dtype(naper: int, *, with_id: bool = True) -> np.dtype:
    """The per-star, per-exposure data record.

    Parameters
    ----------
    naper : int
        Number of apertures; gives fields ``flux0, eflux0, ..., flux{naper-1}, eflux{naper-1}``.
    with_id : bool
        Put ``id`` (i4, HIP number) first, as in memory and in per-set files. Per-star
        datasets leave it out (the dataset name is the id).

    Returns
    -------
    numpy.dtype
        Packed structured dtype (see :func:`describe` for the units).
    """
    naper = _check_naper(naper)
    fields = [(_ID[0], _ID[1])] if with_id else []
    fields += [(n, t) for n, t, _, _ in _RECORD_HEAD]
    for i in range(naper):
        fields += [(n.format(i=i), t) for n, t, _, _ in _RECORD_APER]
    fields += [(n, t) for n, t, _, _ in _RECORD_TAIL]
    return np.dtype(fields)


def fast_record_dtype(naper: int = FAST_NAPER, *, with_id: bool = True) -> np.dtype:
    """Data record of the fast photometry (one per star and exposure); see :func:`record_dtype`."""
    return record_dtype(naper, with_id=with_id)


def slow_record_dtype(naper: int = SLOW_NAPER, *, with_id: bool = True) -> np.dtype:
    """Data record of the slow photometry (one per star and set); see :func:`record_dtype`."""
    return record_dtype(naper, with_id=with_id)


def lightcurve_dtype(dtype: np.dtype) -> np.dtype:
    """``dtype`` without its ``id`` field: the dtype of a stored per-star light curve."""
    names = [n for n in dtype.names or () if n != "id"]
    if not names:
        raise StorageError(f"dtype {dtype} has no fields besides 'id': not a record dtype")
    return np.dtype([(n, dtype[n]) for n in names])


star_dtype = np.dtype([(n, t) for n, t, _, _ in _STAR])
"""Per-star header record (seed ``indexArray`` header mode): catalogue data and night counts."""

station_dtype = np.dtype([(n, t) for n, t, _, _ in _STATION])
"""Fast station record: one row per exposure (times, image statistics, Sun and Moon)."""

slow_station_dtype = np.dtype([(n, t) for n, t, _, _ in _SLOW_STATION])
"""Slow station record: one row per set of 50 (the binned image)."""


def astrometry_dtype(nparams: int) -> np.dtype:
    """One row per solved set: residuals, stars used and the camera-model parameters.

    Parameters
    ----------
    nparams : int
        Length of the ``params`` sub-array (the camera model's parameter vector).
    """
    if int(nparams) != nparams or nparams < 1:
        raise StorageError(f"nparams={nparams!r} must be a positive integer")
    fields: list[tuple[str, str] | tuple[str, str, tuple[int]]] = [
        (n, t) for n, t, _, _ in _ASTROMETRY_HEAD
    ]
    fields.append((_ASTROMETRY_PARAMS[0], _ASTROMETRY_PARAMS[1], (int(nparams),)))
    return np.dtype(fields)


def empty_records(n: int, dtype: np.dtype) -> np.ndarray:
    """An array of ``n`` records of ``dtype``: floats NaN, integers 0, strings empty."""
    out = np.zeros(n, dtype=dtype)
    for name in dtype.names or ():
        base = dtype[name].base
        if base.kind in "fc":
            out[name] = np.nan
    return out


def with_flag(records: np.ndarray) -> np.ndarray:
    """A copy of ``records`` with ``flag`` set to 1 where ``pflag`` or ``aflag`` is non-zero."""
    out = records.copy()
    out["flag"] = ((records["pflag"] != 0) | (records["aflag"] != 0)).astype(np.uint8)
    return out


def records_from_columns(
    columns: Mapping[str, ArrayLike],
    dtype: np.dtype,
    *,
    fill: Mapping[str, ArrayLike] | None = None,
) -> np.ndarray:
    """Build a record array from a mapping of columns (the seed's ``indexArray``).

    Parameters
    ----------
    columns : mapping of str to array-like
        One entry per field; scalars are broadcast. Names not in ``dtype`` are an error.
    dtype : numpy.dtype
        Target structured dtype (for example :func:`fast_record_dtype`).
    fill : mapping, optional
        Values for fields missing from ``columns``. A field absent from both is an error,
        except ``flag``, which is derived from ``pflag`` and ``aflag``.

    Returns
    -------
    numpy.ndarray
        New structured array; the inputs are not modified.
    """
    fill = dict(fill or {})
    names = dtype.names or ()
    unknown = sorted(set(columns) - set(names))
    if unknown:
        raise StorageError(f"columns {unknown} are not fields of the record dtype; "
                           f"known fields: {list(names)}")
    derive_flag = "flag" in names and "flag" not in columns and "flag" not in fill
    missing = [n for n in names if n not in columns and n not in fill
               and not (n == "flag" and derive_flag)]
    if missing:
        raise StorageError(f"record fields {missing} have no column and no fill value: "
                           "give them in columns or fill=")
    lengths = {np.shape(v)[0] for v in columns.values() if np.ndim(v) > 0}
    if len(lengths) > 1:
        raise StorageError(f"columns have different lengths {sorted(lengths)}: "
                           "every column must have one value per record")
    n = lengths.pop() if lengths else 1
    out = np.zeros(n, dtype=dtype)
    for name in names:
        if name in columns:
            out[name] = columns[name]
        elif name in fill:
            out[name] = fill[name]
    if derive_flag:
        out["flag"] = ((out["pflag"] != 0) | (out["aflag"] != 0)).astype(np.uint8)
    return out


_TABLES = {
    "record": [_ID, *_RECORD_HEAD, *_RECORD_APER, *_RECORD_TAIL],
    "star": _STAR,
    "station": _STATION,
    "slow_station": _SLOW_STATION,
    "astrometry": [*_ASTROMETRY_HEAD, _ASTROMETRY_PARAMS],
}


def describe() -> tuple[FieldDoc, ...]:
    """Every field of every record type with its dtype, unit and meaning (for the README)."""
    return tuple(FieldDoc(table, n, t, u, d)
                 for table, rows in _TABLES.items() for n, t, u, d in rows)


def describe_markdown() -> str:
    """:func:`describe` as a Markdown table (table, field, dtype, unit, meaning)."""
    lines = ["| table | field | dtype | unit | meaning |", "|---|---|---|---|---|"]
    lines += [f"| {f.table} | `{f.name}` | {f.dtype} | {f.unit} | {f.description} |"
              for f in describe()]
    return "\n".join(lines) + "\n"


def field_units() -> dict[str, str]:
    """Unit of every field name (aperture fields expanded up to ``SLOW_NAPER``)."""
    return dict(_field_units())


@functools.cache
def _field_units() -> dict[str, str]:
    units: dict[str, str] = {}
    for f in describe():
        if "{i}" in f.name:
            for i in range(SLOW_NAPER):
                units.setdefault(f.name.format(i=i), f.unit)
        else:
            units.setdefault(f.name, f.unit)
    return units
