"""Calibrated points binned per set of 50 exposures (the legacy "red" files, section 7.6).

One point per star and set with points: the set index (``lstseq // 50``), the mean JD and
LST (24 h wrap handled) of its points, the calibrated magnitude (plain mean of the points:
weights fitted from the same residuals would pull a transit's bins up, as the extra variance
of a cell holds the star's own deviation), its error (from the points' variances, extra
variances included), the number of good points and flags (:data:`CFLAG_BITS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mascara_actors.atmosphere import airmass, altitude_deg, scintillation
from mascara_actors.binning.displacement import lst_difference_hours
from mascara_actors.decorrelation.ingest import MAG_PER_RELATIVE_FLUX
from mascara_actors.decorrelation.patch import PatchPoints
from mascara_actors.decorrelation.station_times import StationTimes
from mascara_actors.sidereal import SET_SIZE, set_index

__all__ = ["BIN_DTYPE", "CFLAG_BITS", "CalibratedPoints", "Scintillation", "bin_points",
           "cell_rms"]

BIN_DTYPE = np.dtype([
    ("setidx", "u8"), ("jd", "f8"), ("lst", "f8"), ("mag", "f4"), ("emag", "f4"),
    ("nobs", "u2"), ("cflag", "u1"), ("trans", "f4"), ("clouds", "f4"), ("x", "f4"),
    ("y", "f4"),
])
"""One calibrated point per star and set of 50: set index (``lstseq // 50``), mean JD (UTC,
mid-exposure) and mean LST (hours, start of exposure; 24 h wrap handled) of its points,
calibrated magnitude (mean of the points), its error (from the points' variances, extra
variances included; mag), number of good points, flags, and the mean transmission +
intrapixel and clouds removed (mag), mean x, y (pixels)."""

CFLAG_BITS = {
    1: ("few_points", "fewer good points than half a set (25 of 50)"),
    2: ("cloudy", "mean clouds above 0.25 mag, or cloud cells with an extra sigma 0.05 mag "
                  "(RMS over the set) beyond their scintillation"),
    4: ("few_cloud_stars", "some points were left out: their cloud cell had too few other "
                           "stars to measure the clouds without them"),
}
"""Bits of ``cflag`` in the calibrated light curves."""

_CLOUDY_MAG = 0.25
_CLOUDY_SIGMA = 0.05


@dataclass(frozen=True)
class CalibratedPoints:
    """A patch's points after the calibration (one value per point of the patch)."""

    mag: np.ndarray
    """Calibrated magnitude ``mag - T - ipx - clouds (leave-one-out)``."""
    var: np.ndarray
    """Variance (error squared plus extra variances), mag^2."""
    use: np.ndarray
    """Points that enter the bins."""
    cloud_ok: np.ndarray
    """Points whose cloud could be measured without their star."""
    trans: np.ndarray
    """T + intrapixel removed, mag."""
    clouds: np.ndarray
    """Clouds removed, mag."""
    cloud_sigma: np.ndarray
    """Extra sigma of each point's cloud cell, mag."""
    scint_sigma: np.ndarray
    """Scintillation expected in each point's cloud cell, mag (the RMS over the cell's
    points at their airmasses, :func:`cell_rms`): it is not in the flux errors, so a cell's
    extra sigma holds it (6 % at 25 degrees altitude); only what the cell has beyond it is
    patchy cloud."""


@dataclass(frozen=True)
class Scintillation:
    """What the scintillation of a camera's exposures depends on besides the airmass."""

    lat_deg: float
    """Site latitude, degrees."""
    height_m: float
    """Site height above sea level, metres."""
    pupil_m: float
    """Entrance pupil of the camera's lens, metres."""

    def sigma_mag(self, ha_deg: np.ndarray, dec_deg: np.ndarray, exptime_s: np.ndarray
                  ) -> np.ndarray:
        """Scintillation noise (mag) of exposures of ``exptime_s`` seconds of stars at hour
        angle ``ha_deg`` and declination ``dec_deg``."""
        x = airmass(altitude_deg(ha_deg, dec_deg, self.lat_deg))
        out: np.ndarray = MAG_PER_RELATIVE_FLUX * scintillation(
            x, pupil_m=self.pupil_m, height_m=self.height_m, exptime_s=exptime_s)
        return out


def cell_rms(values: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """The RMS of ``values`` over each cell (``cell``: the cell index of each value), on
    every value of the cell."""
    n = np.bincount(cell)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(np.bincount(cell, values * values, minlength=len(n)) / n)
    out: np.ndarray = rms[cell]
    return out


def bin_points(p: PatchPoints, cal: CalibratedPoints, station: StationTimes
               ) -> list[tuple[int, np.ndarray]]:
    """The binned light curves (:data:`BIN_DTYPE`) of a patch's stars, as (id, bins)."""
    s = p.star
    lstseq = p.lstseq[p.t]
    setidx = set_index(lstseq)
    # every (star, set) with points, and whether some were lost for lack of cloud stars
    key_all = s.astype(np.int64) * (1 << 40) + setidx
    keys_lost = np.unique(key_all[~cal.cloud_ok])
    sel = np.flatnonzero(cal.use)
    if len(sel) == 0:
        return []
    key = key_all[sel]
    # points are sorted by star then lstseq, so each bin is one run
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    nobs = np.diff(np.r_[starts, len(sel)])
    rows = station.rows(lstseq[sel])

    def mean(values: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.add.reduceat(values, starts) / nobs
        return out

    out = np.zeros(len(starts), BIN_DTYPE)
    out["setidx"] = setidx[sel][starts]
    out["jd"] = mean(station.jdmid[rows])
    out["lst"] = _mean_hours(station.lst[rows], starts, nobs)
    out["mag"] = mean(cal.mag[sel])
    out["emag"] = np.sqrt(np.add.reduceat(cal.var[sel], starts)) / nobs
    out["nobs"] = np.minimum(nobs, np.iinfo(np.uint16).max)
    out["trans"] = mean(cal.trans[sel])
    clouds = mean(cal.clouds[sel])
    out["clouds"] = clouds
    out["x"] = mean(p.x[sel].astype(float))
    out["y"] = mean(p.y[sel].astype(float))
    flag = np.zeros(len(starts), np.uint8)
    flag[nobs < SET_SIZE // 2] |= 1
    # the set's patchy scatter, as the RMS over its exposures: one cell's extra sigma,
    # measured from a handful of stars, is too noisy to flag a set alone
    patchy = np.maximum(cal.cloud_sigma[sel] ** 2 - cal.scint_sigma[sel] ** 2, 0.0)
    cloudy = (np.abs(clouds) > _CLOUDY_MAG) | (mean(patchy) > _CLOUDY_SIGMA**2)
    flag[cloudy] |= 2
    flag[np.isin(key[starts], keys_lost)] |= 4
    out["cflag"] = flag
    star_of_bin = s[sel][starts]
    bounds = np.flatnonzero(np.r_[True, star_of_bin[1:] != star_of_bin[:-1]])
    ends = np.r_[bounds[1:], len(starts)]
    return [(int(p.ids[star_of_bin[a]]), out[a:b]) for a, b in
            zip(bounds.tolist(), ends.tolist(), strict=True)]


def _mean_hours(lst: np.ndarray, starts: np.ndarray, nobs: np.ndarray) -> np.ndarray:
    """Mean LST of each run, hours in [0, 24): offsets from the run's first value wrapped
    into [-12, 12) h and averaged (a run spans minutes, so 23.9 h and 0.1 h give 0 h)."""
    offsets = lst_difference_hours(lst, np.repeat(lst[starts], nobs))
    out: np.ndarray = (lst[starts] + np.add.reduceat(offsets, starts) / nobs) % 24.0
    return out
