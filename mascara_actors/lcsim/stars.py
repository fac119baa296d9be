"""The simulated stars: the real Hipparcos stars the camera sees, and what each one does.

Every star gets an offset from its catalogue V (catalogue error and passband mismatch); a
fraction are sinusoidal variables, a fraction have transits (never both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.decorrelation.sky import patch_of, slot_hour_angle
from mascara_actors.lcsim.schedule import NightSlots
from mascara_actors.lcsim.settings import LightCurveSimulation
from mascara_actors.lcsim.transits import TransitSpec
from mascara_actors.sidereal import SLOTS_PER_SIDEREAL_DAY, lstseq2date

__all__ = ["EDGE_MARGIN_PX", "SimulatedStars", "choose_stars"]

EDGE_MARGIN_PX = 50.0
"""The photometry does not measure stars closer to the edge of the chip."""
_SAMPLE_SLOTS = 38
"""Slots between the samples of the field (4 minutes: a star moves 1 deg, 50 px)."""


@dataclass(frozen=True)
class SimulatedStars:
    """The simulated stars and their truth (catalogue order = ascending HIP)."""

    cat: Catalogue
    patch: np.ndarray
    """HEALPix nside-8 patch of the catalogue position."""
    offset: np.ndarray
    """V offset, mag."""
    var_amp: np.ndarray
    """Amplitude of the variability, mag (0: constant)."""
    var_period: np.ndarray
    """Period, days."""
    var_phase: np.ndarray
    """Phase, radians."""
    transits: dict[int, TransitSpec]
    """Transits by HIP number."""

    def variability_mag(self, index: np.ndarray, jd: np.ndarray) -> np.ndarray:
        """Intrinsic variability of stars ``index`` at times ``jd``, mag."""
        period = np.where(self.var_period[index] > 0, self.var_period[index], 1.0)
        out: np.ndarray = self.var_amp[index] * np.sin(2 * np.pi * jd / period
                                                       + self.var_phase[index])
        return out

    def transit_mag(self, index: np.ndarray, jd: np.ndarray) -> np.ndarray:
        """Dimming by the transits of stars ``index`` at times ``jd``, mag."""
        out = np.zeros(len(index))
        hip = self.cat.hip[index]
        for h in np.intersect1d(hip, np.fromiter(self.transits, np.int64)).tolist():
            k = np.flatnonzero(hip == h)
            out[k] = self.transits[int(h)].dimming_mag(jd[k])
        return out


def _field_stars(sim: LightCurveSimulation, catalogue: Catalogue, model: CameraModel,
                 lon_offset: float, nights: list[NightSlots], rng: np.random.Generator
                 ) -> Catalogue:
    """The stars (V <= vmax, in ``sim.dec_range``) on the chip at some time of the nights,
    all or ``sim.stars`` of them at random."""
    bright = catalogue.select(vmax=sim.vmax)
    jd_mid = float(lstseq2date((nights[0].first + nights[-1].stop) // 2, format="jd"))
    ra, dec = bright.positions_at(jd_mid)
    # only stars in the declinations the chip covers (its border, with a margin)
    across, down = np.linspace(0, model.nx - 1, 64), np.linspace(0, model.ny - 1, 64)
    edge_x = np.r_[across, np.full(64, model.nx - 1), across, np.zeros(64)]
    edge_y = np.r_[np.zeros(64), down, np.full(64, model.ny - 1), down]
    _, edge_dec = model.pixel_to_hadec(edge_x, edge_y)
    lo, hi = np.nanmin(edge_dec) - 2, np.nanmax(edge_dec) + 2
    if sim.dec_range is not None:
        lo, hi = max(lo, sim.dec_range[0]), min(hi, sim.dec_range[1])
    inside_dec = np.flatnonzero((dec >= lo) & (dec <= hi))
    ra_c, dec_c = ra[inside_dec], dec[inside_dec]
    step = _SAMPLE_SLOTS
    lstidx = np.unique(np.concatenate([
        np.r_[np.arange(n.first, n.stop, step), n.stop - 1] % SLOTS_PER_SIDEREAL_DAY
        // step * step for n in nights]))
    seen = np.zeros(len(inside_dec), bool)
    for idx in lstidx.tolist():
        x, y = model.hadec_to_pixel(slot_hour_angle(idx, ra_c, lon_offset), dec_c)
        seen |= model.on_chip(x, y, margin=EDGE_MARGIN_PX)
    index = inside_dec[seen]
    if sim.stars is not None and sim.stars < len(index):
        index = np.sort(rng.choice(index, sim.stars, replace=False))
    return Catalogue(bright.stars[index], blend_radius_arcsec=bright.blend_radius_arcsec)


def _transits(sim: LightCurveSimulation, cat: Catalogue, variables: np.ndarray, jd0: float,
              rng: np.random.Generator) -> dict[int, TransitSpec]:
    """Random transits of stars that are not variables, and the requested ones."""
    transits: dict[int, TransitSpec] = {}
    ntr = round(sim.transit_fraction * len(cat))
    if ntr:
        pool = np.setdiff1d(np.arange(len(cat)), variables)
        for k in rng.choice(pool, min(ntr, len(pool)), replace=False).tolist():
            period = float(rng.uniform(1.5, 6.0))
            transits[int(cat.hip[k])] = TransitSpec(
                hip=int(cat.hip[k]), period_d=period,
                epoch_jd=jd0 + float(rng.uniform(0, period)),
                depth=float(rng.uniform(*sim.transit_depth)),
                duration_h=float(rng.uniform(1.5, 4.0)))
    for tr in sim.transits:
        transits[int(tr.hip)] = tr
    return transits


def choose_stars(sim: LightCurveSimulation, catalogue: Catalogue, model: CameraModel,
                 lon_offset: float, nights: list[NightSlots], rng: np.random.Generator
                 ) -> SimulatedStars:
    """The stars of the simulation and their truth (see the module docstring)."""
    cat = _field_stars(sim, catalogue, model, lon_offset, nights, rng)
    n = len(cat)
    offset = rng.normal(0.0, sim.offset_sigma, n)
    var_amp = np.zeros(n)
    var_period = np.zeros(n)
    var_phase = np.zeros(n)
    nvar = round(sim.variable_fraction * n)
    variables = rng.choice(n, nvar, replace=False) if nvar else np.empty(0, np.int64)
    var_amp[variables] = np.exp(rng.uniform(np.log(0.003), np.log(0.1), nvar))
    var_period[variables] = np.exp(rng.uniform(np.log(0.1), np.log(20.0), nvar))
    var_phase[variables] = rng.uniform(0, 2 * np.pi, nvar)
    jd0 = float(lstseq2date(nights[0].first, format="jd"))
    transits = _transits(sim, cat, variables, jd0, rng)
    # a transit star is not also an intrinsic variable
    var_amp[np.isin(cat.hip, list(transits))] = 0.0
    return SimulatedStars(cat, patch_of(cat["ra_deg"], cat["dec_deg"]), offset, var_amp,
                          var_period, var_phase, transits)

