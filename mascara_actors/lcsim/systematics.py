"""What the camera and the clear sky do to every star: the truth the calibration must find.

- ``T``: vignetting ``-2.5 log10(1 - vignetting * rho^2)`` with ``rho`` the distance from
  the (slightly offset) optical centre in units of half the chip width (30 % at the left and
  right edges), plus extinction ``extinction * (X - 1)`` (Kasten & Young airmass X);
- ``ipx``: ``A(x, y) * (c0 sin 2 pi x + c1 cos 2 pi x + c2 sin 2 pi y + c3 cos 2 pi y)`` with
  ``A = max(0.3, 1 - ipx_falloff * rho^2)``, times ``ipx_aperture_scale[a]`` for aperture a
  (about 1.6 % peak to peak at the centre for aperture 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mascara_actors.atmosphere import airmass
from mascara_actors.decorrelation.grids import pixel_basis

__all__ = ["HeaderCard", "TruthModel"]

HeaderCard = tuple[str, object, str]
"""A FITS header card: key, value, comment."""


@dataclass(frozen=True, slots=True)
class TruthModel:
    """The camera and the clear sky the simulator injects (evaluated again by the tests)."""

    nx: int
    ny: int
    vignetting: float = 0.30
    """Light lost at ``rho = 1`` (the left and right chip edges), fraction."""
    centre_offset: tuple[float, float] = (80.0, -50.0)
    """Optical centre of the vignetting from the chip centre, pixels."""
    extinction: float = 0.10
    """Clear-sky extinction, mag per airmass."""
    ipx_coeffs: tuple[float, float, float, float] = (0.004, -0.003, 0.003, 0.002)
    """Intrapixel amplitudes at the centre (sin 2 pi x, cos 2 pi x, sin 2 pi y, cos 2 pi y),
    mag."""
    ipx_falloff: float = 0.4
    ipx_aperture_scale: tuple[float, float] = (1.0, 0.35)

    def _rho2(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        cx = (self.nx - 1) / 2.0 + self.centre_offset[0]
        cy = (self.ny - 1) / 2.0 + self.centre_offset[1]
        half = self.nx / 2.0
        out: np.ndarray = ((np.asarray(x, float) - cx) ** 2
                           + (np.asarray(y, float) - cy) ** 2) / half**2
        return out

    def vignetting_mag(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Magnitudes lost to vignetting at chip position (x, y)."""
        trans = np.maximum(1.0 - self.vignetting * self._rho2(x, y), 0.2)
        out: np.ndarray = -2.5 * np.log10(trans)
        return out

    def extinction_mag(self, alt_deg: np.ndarray) -> np.ndarray:
        """Clear-sky extinction relative to the zenith, magnitudes."""
        out: np.ndarray = self.extinction * (airmass(alt_deg) - 1.0)
        return out

    def transmission_mag(self, x: np.ndarray, y: np.ndarray, alt_deg: np.ndarray
                         ) -> np.ndarray:
        """The true transmission term T: vignetting plus extinction, magnitudes."""
        out: np.ndarray = self.vignetting_mag(x, y) + self.extinction_mag(alt_deg)
        return out

    def intrapixel_amplitudes(self, x: np.ndarray, y: np.ndarray, aperture: int = 0
                              ) -> np.ndarray:
        """True intrapixel amplitudes at (x, y), shape (n, 4), magnitudes."""
        scale = np.maximum(1.0 - self.ipx_falloff * self._rho2(x, y), 0.3)
        scale = scale * self.ipx_aperture_scale[aperture]
        out: np.ndarray = scale[:, None] * np.asarray(self.ipx_coeffs)[None, :]
        return out

    def intrapixel_mag(self, x: np.ndarray, y: np.ndarray, aperture: int = 0) -> np.ndarray:
        """The true intrapixel term at (x, y), magnitudes."""
        amp = self.intrapixel_amplitudes(x, y, aperture)
        out: np.ndarray = np.einsum("in,ni->n", pixel_basis(x, y), amp)
        return out

    def header_cards(self) -> list[HeaderCard]:
        """The model as FITS header cards (read back by :meth:`from_header`)."""
        c = self.ipx_coeffs
        return [
            ("NX", self.nx, "science region width, px"),
            ("NY", self.ny, "science region height, px"),
            ("VIGNET", self.vignetting, "light lost at rho = 1 (left/right edges)"),
            ("VIGCX", self.centre_offset[0], "vignetting centre - chip centre, x, px"),
            ("VIGCY", self.centre_offset[1], "vignetting centre - chip centre, y, px"),
            ("EXTINCT", self.extinction, "clear-sky extinction, mag per airmass"),
            ("IPXC0", c[0], "ipx sin 2 pi x amplitude at centre, mag"),
            ("IPXC1", c[1], "ipx cos 2 pi x amplitude at centre, mag"),
            ("IPXC2", c[2], "ipx sin 2 pi y amplitude at centre, mag"),
            ("IPXC3", c[3], "ipx cos 2 pi y amplitude at centre, mag"),
            ("IPXFALL", self.ipx_falloff, "ipx scale max(0.3, 1 - IPXFALL rho^2)"),
            ("IPXAP0", self.ipx_aperture_scale[0], "intrapixel scale of aperture 0"),
            ("IPXAP1", self.ipx_aperture_scale[1], "intrapixel scale of aperture 1"),
        ]

    @classmethod
    def from_header(cls, h: Any) -> TruthModel:
        """The model of a truth file's primary header (an ``astropy.io.fits.Header``)."""
        return cls(nx=int(h["NX"]), ny=int(h["NY"]), vignetting=float(h["VIGNET"]),
                   centre_offset=(float(h["VIGCX"]), float(h["VIGCY"])),
                   extinction=float(h["EXTINCT"]),
                   ipx_coeffs=(float(h["IPXC0"]), float(h["IPXC1"]), float(h["IPXC2"]),
                               float(h["IPXC3"])),
                   ipx_falloff=float(h["IPXFALL"]),
                   ipx_aperture_scale=(float(h["IPXAP0"]), float(h["IPXAP1"])))
