"""What the simulated photometry measures: fluxes in both fast apertures, their noise, flags.

Noise: photon noise of star and sky, read noise (in ``eflux``, as the photometry reports
it) and scintillation (not in ``eflux``, as in reality: ``scintillation * X**1.75``, Young
1967 for a 17 mm pupil, 6.4 s and 2,400 m). The outer aperture holds the inner one, so its
noise is the inner's plus that of the ring. Points are flagged as the photometry would:
saturated (8), negative flux (16), bad sky pixel (2, at random and in bright twilight, where
the flux is NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mascara_actors.decorrelation.ingest import MAG_PER_RELATIVE_FLUX
from mascara_actors.lcsim.systematics import HeaderCard

__all__ = ["APERTURE_PX", "NoiseModel", "Photometry", "measure"]

APERTURE_PX = (2.5, 4.5)
"""Radii of the two fast apertures, pixels."""
_REFERENCE_V = 8.4


@dataclass(frozen=True, slots=True)
class NoiseModel:
    """Fluxes and noise of the simulated photometry (electrons unless said otherwise)."""

    flux_v84_e: float = 10000.0
    """Electrons in aperture 0 from a V = 8.4 star at the centre, at the zenith, clear."""
    aperture1_gain: float = 1.12
    """Flux in aperture 1 over aperture 0."""
    sky_e: float = 350.0
    """Dark-sky level at the zenith, electrons per pixel and exposure."""
    read_noise_e: float = 10.0
    gain: float = 0.62
    """e-/ADU."""
    scintillation: float = 0.013
    """Scintillation noise at airmass 1, fraction of the flux."""
    peak_fraction: float = 0.15
    """Fraction of the star's aperture-0 flux in its brightest pixel."""
    saturation_adu: float = 63000.0

    def header_cards(self) -> list[HeaderCard]:
        """The model as FITS header cards (read back by :meth:`from_header`)."""
        return [
            ("FLUX84", self.flux_v84_e, "e- in aperture 0, V=8.4, centre, zenith"),
            ("AP1GAIN", self.aperture1_gain, "flux in aperture 1 / aperture 0"),
            ("SKYE", self.sky_e, "dark sky at zenith, e- per px and exposure"),
            ("RDNOISE", self.read_noise_e, "read noise, e-"),
            ("GAIN", self.gain, "e-/ADU"),
            ("SCINT", self.scintillation, "scintillation at airmass 1, fraction"),
            ("PEAKFRAC", self.peak_fraction, "fraction of the flux in the peak pixel"),
            ("SATURATE", self.saturation_adu, "saturation, ADU"),
        ]

    @classmethod
    def from_header(cls, h: Any) -> NoiseModel:
        """The model of a truth file's primary header (an ``astropy.io.fits.Header``)."""
        keys = ("FLUX84", "AP1GAIN", "SKYE", "RDNOISE", "GAIN", "SCINT", "PEAKFRAC", "SATURATE")
        return cls(*(float(h[k]) for k in keys))

    def sky_e_at(self, airmass: np.ndarray, sun_alt_deg: np.ndarray) -> np.ndarray:
        """Sky per pixel and exposure, electrons: brighter towards the horizon and in
        twilight (0.6 mag per degree of Sun altitude above -18 deg)."""
        sky = self.sky_e * (1.0 + 0.3 * (airmass - 1.0))
        out: np.ndarray = sky * 10.0 ** (0.4 * 0.6 * np.clip(sun_alt_deg + 18.0, 0.0, None))
        return out


@dataclass(frozen=True)
class Photometry:
    """The measurements of a set's points."""

    flux: tuple[np.ndarray, np.ndarray]
    """Per aperture, ADU (NaN in bright twilight)."""
    eflux: tuple[np.ndarray, np.ndarray]
    """Per aperture, ADU (photon, sky and read noise)."""
    noise_var: tuple[np.ndarray, np.ndarray]
    """Per aperture, the injected noise variance in magnitudes (scintillation included)."""
    sky: np.ndarray
    """Measured sky, ADU per pixel."""
    esky: np.ndarray
    sky_level: np.ndarray
    """True sky, ADU per pixel."""
    peak: np.ndarray
    """Brightest pixel, ADU."""
    pflag: np.ndarray


def measure(noise: NoiseModel, mags: tuple[np.ndarray, np.ndarray], airmass: np.ndarray,
            sun_alt_deg: np.ndarray, rng: np.random.Generator, flag_fraction: float
            ) -> Photometry:
    """Measure points whose true magnitudes in apertures 0 and 1 are ``mags``."""
    sky_e = noise.sky_e_at(airmass, sun_alt_deg)
    z = rng.standard_normal((3, len(airmass)))
    scint_sigma = noise.scintillation * airmass**1.75
    scint = scint_sigma * z[2]
    background = [np.pi * r * r * (sky_e + noise.read_noise_e**2) for r in APERTURE_PX]
    fluxes, efluxes, noise_var = [], [], []
    shot0 = np.zeros(len(airmass))
    for a in (0, 1):
        f_e = noise.flux_v84_e * 10.0 ** (-0.4 * (mags[a] - _REFERENCE_V)) * (
            noise.aperture1_gain if a else 1.0)
        var_e = np.maximum(f_e, 0) + background[a]
        if a == 0:
            shot0 = np.sqrt(var_e) * z[0]
            shot = shot0
        else:
            # the outer aperture holds the inner one: its noise adds to the inner's
            inner = np.maximum(f_e / noise.aperture1_gain, 0) + background[0]
            shot = shot0 + np.sqrt(np.maximum(var_e - inner, 0)) * z[1]
        fluxes.append((f_e * (1.0 + scint) + shot) / noise.gain)
        efluxes.append(np.sqrt(var_e) / noise.gain)
        noise_var.append(MAG_PER_RELATIVE_FLUX**2 * (var_e / f_e**2 + scint_sigma**2))
    sky_adu = sky_e / noise.gain
    peak = noise.peak_fraction * fluxes[0] + sky_adu
    pflag = np.zeros(len(airmass), np.uint8)
    pflag[rng.random(len(airmass)) < flag_fraction] |= 2
    bright = sky_adu >= noise.saturation_adu
    pflag[bright] |= 2
    pflag[peak >= noise.saturation_adu] |= 8
    for a in (0, 1):
        fluxes[a][bright] = np.nan
        pflag[fluxes[a] < 0] |= 16
    return Photometry(
        flux=(fluxes[0], fluxes[1]), eflux=(efluxes[0], efluxes[1]),
        noise_var=(noise_var[0], noise_var[1]),
        sky=sky_adu + np.sqrt(sky_e) / noise.gain * 0.05 * z[1],
        esky=np.sqrt(sky_e + noise.read_noise_e**2) / noise.gain, sky_level=sky_adu,
        peak=peak, pflag=pflag)
