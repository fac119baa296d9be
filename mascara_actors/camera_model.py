"""Geometry of a fixed camera: (hour angle, declination) <-> science-region pixels.

A MASCARA camera does not track, so a star at a given hour angle always falls on the same
pixel: the model needs no time, only the site latitude and the camera's own parameters.
The chain, from the sky to the chip:

1. equatorial (HA, dec) of date -> local horizon (east, north, up) at the site latitude;
2. atmospheric refraction raises the apparent altitude (Saemundsson 1986, scaled to the
   pressure of a 2,400 m site);
3. gnomonic projection onto the plane of the camera, whose optical axis points at
   (alt, az) and is rolled by ``roll`` about that axis;
4. radial lens distortion ``r_d = r (1 + k1 r^2 + k2 r^4)`` (``r = tan`` of the off-axis
   angle), times the focal length in pixels, about the centre of the science region;
5. a low-order 2-D Legendre correction of x and y for what the terms above miss.

A mirrored camera (``mirror=True``: an odd number of mirrors in the light path, or a
readout that flips columns) has x flipped about the centre of the science region after
step 4, before the Legendre terms; with ``mirror=False`` (the default) nothing changes.

Pixel coordinates are 0-based with pixel centres at integers (as photutils and sep), over the
science region only. Angles are degrees; the hour angle grows westwards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.polynomial import legendre

from mascara_actors.config import CameraConfig

__all__ = ["CameraModel", "legendre_terms"]

# Refraction at a 2,400 m site (P ~ 770 hPa, T ~ 10 C) relative to the Saemundsson formula at
# sea level (1010 hPa, 10 C); the residual is absorbed by the per-night fit.
_REFRACTION_SCALE = 770.0 / 1010.0


def legendre_terms(order: int) -> list[tuple[int, int]]:
    """The (i, j) degree pairs with ``i + j <= order``, in a fixed order."""
    return [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]


def _refraction_deg(alt_deg: np.ndarray) -> np.ndarray:
    """Refraction (apparent - true altitude) for a true altitude, degrees."""
    h = np.maximum(alt_deg, -1.0)
    refraction: np.ndarray = (
        _REFRACTION_SCALE * (1.02 / np.tan(np.radians(h + 10.3 / (h + 5.11)))) / 60.0
    )
    return refraction


def _small_rotation(tx_deg: float, ty_deg: float, tz_deg: float) -> np.ndarray:
    """Rotation of camera-frame axes by angles about the camera's y, x and optical axes, deg."""
    a, b, c = np.radians([ty_deg, tx_deg, tz_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    rotation: np.ndarray = rz @ ry @ rx
    return rotation


def _altaz_vector(alt_deg: float, az_deg: float) -> np.ndarray:
    a, z = np.radians(alt_deg), np.radians(az_deg)
    return np.array([np.cos(a) * np.sin(z), np.cos(a) * np.cos(z), np.sin(a)])


def _pointing_of_axes(axes: np.ndarray) -> tuple[float, float, float]:
    """(alt, az, roll) in degrees whose axes, built as in ``CameraModel.__post_init__``,
    are ``axes`` (rows x, y, optical axis in east, north, up)."""
    e1, _e2, b = axes
    alt = float(np.degrees(np.arcsin(np.clip(b[2], -1.0, 1.0))))
    # Within 1e-9 of the zenith the azimuth is lost in rounding; any value with the
    # matching roll gives the same axes, so take 0.
    az = float(np.degrees(np.arctan2(b[0], b[1])) % 360.0) if np.hypot(b[0], b[1]) > 1e-9 else 0.0
    up = _altaz_vector(alt + 90.0, az)
    right = np.cross(_altaz_vector(alt, az), up)
    roll = float(np.degrees(np.arctan2(e1 @ up, e1 @ right)) % 360.0)
    return alt, az, roll


@dataclass(frozen=True, slots=True)
class CameraModel:
    """The camera model; parameters in degrees and pixels.

    Parameters
    ----------
    latitude_deg
        Site latitude, degrees north.
    alt_deg, az_deg, roll_deg
        Optical axis altitude and azimuth (from north through east), and roll about it.
    focal_px
        Focal length in pixels.
    nx, ny
        Size of the science region, pixels; the optical axis is at its centre.
    k1, k2
        Radial distortion coefficients.
    coeffs_x, coeffs_y
        Legendre correction coefficients, pixels, one per term of :func:`legendre_terms`.
    refraction
        Whether to apply atmospheric refraction.
    tilt_x_deg, tilt_y_deg, spin_deg
        Small rotations of the camera about its own y axis, x axis and optical axis, applied
        after (alt, az, roll). The astrometric fit adjusts these rather than alt/az/roll,
        which are degenerate for a camera looking at the zenith.
    mirror
        Mirrored parity: x is flipped about the centre of the science region after the
        lens distortion (the image is seen in a mirror).
    """

    latitude_deg: float
    alt_deg: float
    az_deg: float
    roll_deg: float
    focal_px: float
    nx: int
    ny: int
    k1: float = 0.0
    k2: float = 0.0
    coeffs_x: tuple[float, ...] = ()
    coeffs_y: tuple[float, ...] = ()
    refraction: bool = True
    tilt_x_deg: float = 0.0
    tilt_y_deg: float = 0.0
    spin_deg: float = 0.0
    mirror: bool = False
    _axes: np.ndarray = field(init=False, repr=False, compare=False)
    _rmax: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.coeffs_x) != len(self.coeffs_y):
            raise ValueError("coeffs_x and coeffs_y must have the same length")
        b = _altaz_vector(self.alt_deg, self.az_deg)
        up = _altaz_vector(self.alt_deg + 90.0, self.az_deg)
        right = np.cross(b, up)
        rho = np.radians(self.roll_deg)
        e1 = np.cos(rho) * right + np.sin(rho) * up
        e2 = -np.sin(rho) * right + np.cos(rho) * up
        axes = np.stack([e1, e2, b])
        if self.tilt_x_deg or self.tilt_y_deg or self.spin_deg:
            axes = _small_rotation(self.tilt_x_deg, self.tilt_y_deg, self.spin_deg) @ axes
        object.__setattr__(self, "_axes", axes)
        # Off-axis tangent of the chip corners, plus a margin: beyond it the radial
        # polynomial is not constrained and could fold far stars back onto the chip.
        corner = np.hypot(self.nx / 2.0, self.ny / 2.0) / self.focal_px
        object.__setattr__(self, "_rmax", 1.3 * corner + 0.05)

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, camera: CameraConfig, *, nx: int | None = None, ny: int | None = None, order: int = 0
    ) -> CameraModel:
        """The nominal model of a configured camera.

        ``nx, ny`` override the science-region size (e.g. from a frame's XSIZE/YSIZE);
        ``order`` sets the number of (zero) Legendre terms.
        """
        nterms = len(legendre_terms(order)) if order > 0 else 0
        return cls(
            latitude_deg=camera.site.latitude_deg,
            alt_deg=camera.alt_deg,
            az_deg=camera.az_deg,
            roll_deg=camera.roll_deg,
            focal_px=camera.focal_px,
            nx=nx if nx is not None else camera.sensor.xsize,
            ny=ny if ny is not None else camera.sensor.ysize,
            k1=camera.lens.radial_k1,
            k2=camera.lens.radial_k2,
            coeffs_x=(0.0,) * nterms,
            coeffs_y=(0.0,) * nterms,
            # A configuration that knows the parity says so; older ones are all unmirrored.
            mirror=bool(getattr(camera, "mirror", False)),
        )

    def replace(self, **changes: Any) -> CameraModel:
        """A copy with some parameters changed (names and types checked by the dataclass)."""
        return dataclasses.replace(self, **changes)

    @property
    def order(self) -> int:
        """Order of the Legendre correction (0 when there is none)."""
        n = len(self.coeffs_x)
        order = 0
        while len(legendre_terms(order)) < n:
            order += 1
        return order if n else 0

    @property
    def centre(self) -> tuple[float, float]:
        """Pixel position of the optical axis."""
        return (self.nx - 1) / 2.0, (self.ny - 1) / 2.0

    @property
    def axes(self) -> np.ndarray:
        """The camera's x, y and optical axes as rows of unit (east, north, up) vectors,
        tilts included (a copy)."""
        return self._axes.copy()

    def pointing(self) -> tuple[float, float, float]:
        """(alt, az, roll) of the actual axes, degrees: the small tilts folded back in.

        The convention of ``alt_deg, az_deg, roll_deg`` (and of config/cameras.toml); az in
        [0, 360), roll in [0, 360). At the zenith the azimuth is undefined and taken as 0.
        """
        return _pointing_of_axes(self._axes)

    def with_axes(self, axes: np.ndarray, *, mirror: bool | None = None) -> CameraModel:
        """A copy whose camera axes are ``axes`` (rows x, y, optical axis in east, north,
        up), expressed as alt/az/roll with zero tilts; ``mirror`` sets the parity."""
        alt, az, roll = _pointing_of_axes(np.asarray(axes, float))
        return self.replace(
            alt_deg=alt,
            az_deg=az,
            roll_deg=roll,
            tilt_x_deg=0.0,
            tilt_y_deg=0.0,
            spin_deg=0.0,
            mirror=self.mirror if mirror is None else bool(mirror),
        )

    # --- sky -> pixel ----------------------------------------------------------------------

    def hadec_to_pixel(
        self, ha_deg: np.ndarray, dec_deg: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixel position of (hour angle, declination of date), degrees.

        Points more than 80 degrees off the optical axis give NaN.
        """
        cam = self.enu_vectors(ha_deg, dec_deg) @ self._axes.T
        return self.camera_to_pixel(cam)

    def enu_vectors(self, ha_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
        """Apparent unit vectors (east, north, up), shape (..., 3), of (HA, dec of date) in
        degrees: refraction applied when the model has it."""
        ha, dec = np.radians(np.asarray(ha_deg, float)), np.radians(np.asarray(dec_deg, float))
        phi = np.radians(self.latitude_deg)
        cd = np.cos(dec)
        ex, ny_, z = -cd * np.sin(ha), cd * np.cos(ha), np.sin(dec)
        north = -np.sin(phi) * ny_ + np.cos(phi) * z
        up = np.cos(phi) * ny_ + np.sin(phi) * z
        vec = np.stack([ex, north, up], axis=-1)
        if self.refraction:
            vec = self._refract(vec, +1.0)
        return vec

    def camera_to_pixel(self, cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel position of directions in the camera frame (..., 3): components along the
        camera's x, y and optical axes. More than 80 degrees off the axis gives NaN."""
        cam = np.asarray(cam, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            front = cam[..., 2] > np.cos(np.radians(80.0))
            xi = np.where(front, cam[..., 0] / cam[..., 2], np.nan)
            eta = np.where(front, cam[..., 1] / cam[..., 2], np.nan)
        if self.mirror:
            xi = -xi
        r2 = xi * xi + eta * eta
        with np.errstate(invalid="ignore"):
            r2 = np.where(r2 > self._rmax**2, np.nan, r2)
        d = 1.0 + self.k1 * r2 + self.k2 * r2 * r2
        cx, cy = self.centre
        x = cx + self.focal_px * xi * d
        y = cy + self.focal_px * eta * d
        if self.coeffs_x:
            # The polynomials only describe the chip; far outside it a cubic would fold
            # distant stars back onto it, so those positions become NaN instead.
            with np.errstate(invalid="ignore"):
                far = (np.abs(2 * x / self.nx - 1) > 1.5) | (np.abs(2 * y / self.ny - 1) > 1.5)
            dx, dy = self._legendre(x, y)
            x = np.where(far, np.nan, x + dx)
            y = np.where(far, np.nan, y + dy)
        return x, y

    def radec_to_pixel(
        self, ra_deg: np.ndarray, dec_deg: np.ndarray, lst_hours: float | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixel position of (RA, dec) of date at local sidereal time ``lst_hours``."""
        ha = np.asarray(lst_hours) * 15.0 - np.asarray(ra_deg)
        return self.hadec_to_pixel(ha, dec_deg)

    def on_chip(self, x: np.ndarray, y: np.ndarray, *, margin: float = 0.0) -> np.ndarray:
        """True where (x, y) lies at least ``margin`` pixels inside the science region."""
        with np.errstate(invalid="ignore"):
            inside: np.ndarray = (
                np.isfinite(x)
                & np.isfinite(y)
                & (x >= margin)
                & (x <= self.nx - 1 - margin)
                & (y >= margin)
                & (y <= self.ny - 1 - margin)
            )
        return inside

    # --- pixel -> sky ----------------------------------------------------------------------

    def pixel_to_hadec(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hour angle, dec of date) of pixel positions, degrees in [0, 360) and [-90, 90]."""
        xi, eta = self._tangent_plane(x, y)
        e1, e2, b = self._axes
        vec = b + xi[..., None] * e1 + eta[..., None] * e2
        vec /= np.linalg.norm(vec, axis=-1, keepdims=True)
        if self.refraction:
            vec = self._refract(vec, -1.0)
        east, north, up = vec[..., 0], vec[..., 1], vec[..., 2]
        phi = np.radians(self.latitude_deg)
        xe = -np.sin(phi) * north + np.cos(phi) * up
        ze = np.cos(phi) * north + np.sin(phi) * up
        ha = np.degrees(np.arctan2(-east, xe)) % 360.0
        dec = np.degrees(np.arcsin(np.clip(ze, -1.0, 1.0)))
        return ha, dec

    def pixel_to_camera(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Unit vectors (..., 3) in the camera frame (x, y, optical axis) of pixel positions:
        the lens alone, independent of where the camera points."""
        xi, eta = self._tangent_plane(x, y)
        vec = np.stack([xi, eta, np.ones_like(xi)], axis=-1)
        unit: np.ndarray = vec / np.linalg.norm(vec, axis=-1, keepdims=True)
        return unit

    def _tangent_plane(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Undistorted gnomonic coordinates (tan units) of pixel positions."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        if self.coeffs_x:
            # The correction is a few pixels and smooth, so a fixed-point iteration converges fast.
            x0, y0 = x.copy(), y.copy()
            for _ in range(6):
                dx, dy = self._legendre(x0, y0)
                x0, y0 = x - dx, y - dy
            x, y = x0, y0
        cx, cy = self.centre
        xid = (x - cx) / self.focal_px
        if self.mirror:
            xid = -xid
        etad = (y - cy) / self.focal_px
        rd = np.hypot(xid, etad)
        r = rd.copy()
        for _ in range(8):  # Newton on r (1 + k1 r^2 + k2 r^4) = rd
            f = r * (1 + self.k1 * r**2 + self.k2 * r**4) - rd
            fp = 1 + 3 * self.k1 * r**2 + 5 * self.k2 * r**4
            r = r - f / fp
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(rd > 0, r / rd, 1.0)
        return xid * scale, etad * scale

    def pixel_to_radec(
        self, x: np.ndarray, y: np.ndarray, lst_hours: float | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(RA, dec) of date of pixel positions at local sidereal time ``lst_hours``, degrees."""
        ha, dec = self.pixel_to_hadec(x, y)
        return (np.asarray(lst_hours) * 15.0 - ha) % 360.0, dec

    # --- helpers ---------------------------------------------------------------------------

    def _refract(self, vec: np.ndarray, sign: float) -> np.ndarray:
        """Raise (sign=+1, true -> apparent) or lower (sign=-1) the altitude of unit vectors."""
        alt = np.degrees(np.arcsin(np.clip(vec[..., 2], -1.0, 1.0)))
        if sign > 0:
            new_alt = alt + _refraction_deg(alt)
        else:
            new_alt = alt.copy()
            for _ in range(6):  # true = apparent - R(true)
                new_alt = alt - _refraction_deg(new_alt)
        horiz = np.hypot(vec[..., 0], vec[..., 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            k = np.where(horiz > 0, np.cos(np.radians(new_alt)) / horiz, 0.0)
        out = np.empty_like(vec)
        out[..., 0] = vec[..., 0] * k
        out[..., 1] = vec[..., 1] * k
        out[..., 2] = np.sin(np.radians(new_alt))
        return out

    def _legendre(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        design = self.legendre_design(x, y, self.order)
        return design @ np.asarray(self.coeffs_x), design @ np.asarray(self.coeffs_y)

    def legendre_design(self, x: np.ndarray, y: np.ndarray, order: int) -> np.ndarray:
        """Design matrix of the Legendre terms at pixel positions, shape (..., nterms)."""
        u = 2.0 * np.asarray(x, float) / self.nx - 1.0
        v = 2.0 * np.asarray(y, float) / self.ny - 1.0
        pu = legendre.legvander(u, order)
        pv = legendre.legvander(v, order)
        return np.stack([pu[..., i] * pv[..., j] for i, j in legendre_terms(order)], axis=-1)
