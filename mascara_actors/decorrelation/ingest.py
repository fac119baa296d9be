"""Reading a sky patch's stars from the baseline: the points the fit can use, and what it
cannot, counted by reason.

Points are dropped when flagged (any ``pflag`` or ``aflag``), NaN or infinite, with a flux,
error or exposure time <= 0, or below S/N 10 (``max_emag``). Stars are left out with fewer
than ``min_points`` good points, or when saturated on most of their points (on clear nights:
their good points would be the cloudy ones, and their magnitude the clouds').
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mascara_actors.decorrelation.patch import PatchPoints
from mascara_actors.decorrelation.settings import DecorrelationSettings
from mascara_actors.decorrelation.sky import slot_hour_angle
from mascara_actors.decorrelation.station_times import StationTimes
from mascara_actors.storage.baseline_file import BaselineFile

__all__ = [
    "MAG_PER_RELATIVE_FLUX",
    "MAG_ZERO_POINT",
    "POINT_REASONS",
    "SATURATED",
    "IngestedPatch",
    "PatchAssignment",
    "flux_to_mag",
    "good_points",
    "ingest_patch",
]

MAG_ZERO_POINT = 25.0
"""``mag = 25 - 2.5 log10(flux / exptime)``, as the legacy code."""
SATURATED = 8
"""The photometry's saturation bit (pflag)."""
MAG_PER_RELATIVE_FLUX = 2.5 / np.log(10.0)
"""``d(mag) = 1.0857 d(flux) / flux``: a relative flux error in magnitudes."""
_FIELDS = ("lstseq", "x", "y", "pflag", "aflag")
POINT_REASONS = ("flagged points", "points with NaN or infinite flux",
                 "points with flux or error <= 0", "points below S/N 10",
                 "points of stars with too few good points")


def flux_to_mag(flux: np.ndarray, eflux: np.ndarray, exptime: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude ``25 - 2.5 log10(flux / exptime)`` and its error ``1.0857 eflux / flux``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = MAG_ZERO_POINT - 2.5 * np.log10(flux / exptime)
        emag = MAG_PER_RELATIVE_FLUX * eflux / flux
    return mag, emag


@dataclass(frozen=True)
class PatchAssignment:
    """The stars of one sky patch given to a worker (catalogue order of the baseline)."""

    patch: int
    ids: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    vmag: np.ndarray
    ra0: float
    """RA of the patch centre, degrees."""


@dataclass
class IngestedPatch:
    """The good points of a patch (None when it has none) and what was left out."""

    points: PatchPoints | None
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(POINT_REASONS, 0))
    few_points: list[int] = field(default_factory=list)
    """Stars with too few good points."""
    mostly_saturated: list[int] = field(default_factory=list)
    """Stars saturated on most of their points."""


def ingest_patch(bf: BaselineFile, item: PatchAssignment, settings: DecorrelationSettings,
                 station: StationTimes, lon_offset: float) -> IngestedPatch:
    """Read the stars of ``item`` and keep their good points (see the module docstring)."""
    a = settings.aperture
    fields = [*_FIELDS, f"flux{a}", f"eflux{a}"]
    stored = bf.lightcurve_dtype().names or ()
    if "exptime" in stored:
        fields.append("exptime")
    data, counts = bf.read(item.ids, fields)
    star = np.repeat(np.arange(len(item.ids)), counts)
    if "exptime" in fields:
        exptime = data["exptime"].astype(float)
    else:
        exptime = station.exptime[station.rows(data["lstseq"])]
    out = IngestedPatch(None)
    good, mag, emag = good_points(data, exptime, a, settings.max_emag, out.dropped)
    ok_star = _usable_stars(item, star, good, data["pflag"], counts, settings, out)
    out.dropped["points of stars with too few good points"] += int(
        np.bincount(star[good], minlength=len(item.ids))[~ok_star].sum())
    good &= ok_star[star]
    if not np.any(good):
        return out
    # renumber the kept stars
    new_index = np.cumsum(ok_star) - 1
    star = new_index[star[good]]
    t_lstseq, t = np.unique(data["lstseq"][good].astype(np.int64), return_inverse=True)
    ra = item.ra[ok_star]
    out.points = PatchPoints(
        ids=item.ids[ok_star], dec=item.dec[ok_star], vmag=item.vmag[ok_star], ra0=item.ra0,
        star=star, t=t, lstseq=t_lstseq, mag=mag[good], emag=emag[good],
        ha=slot_hour_angle(t_lstseq[t], ra[star], lon_offset),
        x=data["x"][good], y=data["y"][good])
    return out


def good_points(data: np.ndarray, exptime: np.ndarray, aperture: int, max_emag: float,
                dropped: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which points are good, and their magnitudes and errors (mag); counts the others in
    ``dropped`` (by the reasons of :data:`POINT_REASONS`)."""
    flux = data[f"flux{aperture}"].astype(float)
    eflux = data[f"eflux{aperture}"].astype(float)
    flagged = (data["pflag"] != 0) | (data["aflag"] != 0)
    finite = np.isfinite(flux) & np.isfinite(eflux) & np.isfinite(exptime)
    positive = (flux > 0) & (eflux > 0) & (exptime > 0)
    mag, emag = flux_to_mag(np.where(positive, flux, 1.0), np.where(positive, eflux, 1.0),
                            np.where(positive, exptime, 1.0))
    snr_ok = emag <= max_emag
    dropped["flagged points"] += int(np.count_nonzero(flagged))
    dropped["points with NaN or infinite flux"] += int(np.count_nonzero(~flagged & ~finite))
    dropped["points with flux or error <= 0"] += int(
        np.count_nonzero(~flagged & finite & ~positive))
    dropped["points below S/N 10"] += int(
        np.count_nonzero(~flagged & finite & positive & ~snr_ok))
    return ~flagged & finite & positive & snr_ok, mag, emag


def _usable_stars(item: PatchAssignment, star: np.ndarray, good: np.ndarray,
                  pflag: np.ndarray, counts: np.ndarray, settings: DecorrelationSettings,
                  out: IngestedPatch) -> np.ndarray:
    """Stars with enough good points and not saturated on most; lists the others."""
    nstar = len(item.ids)
    ngood = np.bincount(star[good], minlength=nstar)
    # saturated alone: in bright twilight every star is flagged saturated as well
    nsat = np.bincount(star[pflag == SATURATED], minlength=nstar)
    mostly = nsat > settings.max_saturated_fraction * np.maximum(counts, 1)
    out.few_points.extend(item.ids[(ngood < settings.min_points) & ~mostly].tolist())
    out.mostly_saturated.extend(item.ids[mostly].tolist())
    ok: np.ndarray = (ngood >= settings.min_points) & ~mostly
    return ok
