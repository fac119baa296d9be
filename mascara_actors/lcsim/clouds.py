"""The simulated weather: clouds per sky patch and exposure.

A night is clear (no clouds), cloudy (4-8 Gaussian blobs of 0.05-0.8 mag, 6-18 degrees
wide, drifting with the wind over part of the night) or overcast (2.5-4.5 mag over the whole
sky, slowly changing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mascara_actors.decorrelation.sky import patch_centres

__all__ = ["WEATHER", "WEATHER_ODDS", "CloudField", "SkyPatches"]

WEATHER = ("clear", "cloudy", "overcast")
"""Night types: clear (no clouds), cloudy (drifting clouds over part of the sky and night),
overcast (2.5-4.5 mag of clouds over the whole sky)."""
WEATHER_ODDS = (0.6, 0.3, 0.1)
"""How often each night type is drawn."""


@dataclass(frozen=True)
class CloudField:
    """Clouds of one night: drifting Gaussian blobs (cloudy) or a thick layer (overcast)."""

    weather: str
    blobs: np.ndarray
    """(nblob, 8): HA, dec at the start (deg), their drift (deg/h), depth (mag), width
    (deg), on and off times (hours from the start)."""
    base: tuple[float, float, float]
    """Overcast: level (mag), amplitude (mag) and period (h) of the layer."""
    t0: float
    """JD of the start of the night."""

    @classmethod
    def random(cls, weather: str, rng: np.random.Generator, t0: float, length_h: float
               ) -> CloudField:
        """Clouds of a night of ``weather`` starting at JD ``t0``, ``length_h`` long."""
        nblob = int(rng.integers(4, 9)) if weather == "cloudy" else 0
        blobs = np.empty((nblob, 8))
        if nblob:
            blobs[:, 0] = rng.uniform(-90, 90, nblob)
            blobs[:, 1] = rng.uniform(-10, 70, nblob)
            blobs[:, 2] = rng.uniform(-25, 25, nblob)  # deg per hour: the wind
            blobs[:, 3] = rng.uniform(-5, 5, nblob)
            blobs[:, 4] = np.exp(rng.uniform(np.log(0.05), np.log(0.8), nblob))
            blobs[:, 5] = rng.uniform(6, 18, nblob)
            on = rng.uniform(-0.2, 0.7, nblob) * length_h
            blobs[:, 6] = on
            blobs[:, 7] = on + rng.uniform(0.2, 0.6, nblob) * length_h
        base = (float(rng.uniform(2.5, 3.5)), float(rng.uniform(0.3, 1.0)),
                float(rng.uniform(1.0, 4.0)))
        return cls(weather, blobs, base, t0)

    def evaluate(self, jd: np.ndarray, ha_q: np.ndarray, dec_q: np.ndarray) -> np.ndarray:
        """Clouds (mag) at times ``jd`` (n,) for patches at ``ha_q`` (n, npatch), ``dec_q``."""
        shape = np.shape(ha_q)
        if self.weather == "clear":
            return np.zeros(shape)
        hours = ((np.asarray(jd, float) - self.t0) * 24.0)[:, None]
        if self.weather == "overcast":
            level, amp, period = self.base
            wave = np.sin(2 * np.pi * hours / period + np.radians(ha_q) * 2.0)
            layer: np.ndarray = level + amp * wave * np.cos(np.radians(dec_q))[None, :]
            return layer
        out = np.zeros(shape)
        sd = np.sin(np.radians(dec_q))[None, :]
        cd = np.cos(np.radians(dec_q))[None, :]
        for ha0, dec0, vha, vdec, amp, width, t_on, t_off in self.blobs:
            env = np.clip((hours - t_on) / 0.5, 0, 1) * np.clip((t_off - hours) / 0.5, 0, 1)
            if not np.any(env):
                continue
            ha_b = ha0 + vha * hours
            dec_b = np.radians(dec0 + vdec * hours)
            cosd = sd * np.sin(dec_b) + cd * np.cos(dec_b) * np.cos(np.radians(ha_q - ha_b))
            d = np.degrees(np.arccos(np.clip(cosd, -1, 1)))
            out += amp * env * np.exp(-0.5 * (d / width) ** 2)
        return out


@dataclass(frozen=True)
class SkyPatches:
    """The HEALPix nside-8 patches of the simulated stars, with their centres."""

    patch: np.ndarray
    """Patch numbers, ascending (ring order)."""
    ra: np.ndarray
    dec: np.ndarray
    """Centres, degrees."""

    @classmethod
    def of(cls, star_patches: np.ndarray) -> SkyPatches:
        """The patches holding stars of ``star_patches``."""
        patches = np.unique(star_patches)
        ra, dec = patch_centres(patches)
        return cls(patches, ra, dec)

    def column(self, patch: np.ndarray) -> np.ndarray:
        """Column (index into :attr:`patch`) of each patch of ``patch``."""
        out: np.ndarray = np.searchsorted(self.patch, patch)
        return out
