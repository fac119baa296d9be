"""How well a calibration recovers what the simulator injected (issue 18, "Done when").

Every figure compares the calibration's output with the truth file, never with the
calibration itself; the tests assert them and ``bench_calibrate`` reports them.

- :func:`map_errors`: RMS of the fitted transmission and intrapixel amplitudes minus the
  truth at the points of a sample of stars. T is compared after removing the best function
  of declination: every star keeps its declination, so T + g(dec) with m - g(dec) fits the
  data equally well, and g is fixed by the catalogue, not by the data.
- :func:`noise_floor`: RMS of the calibrated 50-exposure bins of quiet stars (no
  variability, no transit) against the noise the simulator injected into those very bins,
  and the same for the raw magnitudes binned alike.
- :func:`transit_depth`: the depth of the injected transits in the calibrated bins (bins
  wholly in the flat bottom against the bins more than half an hour from any transit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mascara_actors.decorrelation.grids import IntrapixelGrid, TransmissionGrid
from mascara_actors.decorrelation.ingest import flux_to_mag
from mascara_actors.decorrelation.sky import slot_hour_angle
from mascara_actors.lcsim.transits import transit_shape
from mascara_actors.lcsim.truth_file import Truth
from mascara_actors.sidereal import REFERENCE_LONGITUDE_DEG, SET_SIZE, slot_length_solar_s
from mascara_actors.storage.baseline_file import BaselineFile
from mascara_actors.storage.calibrated import CalibratedFile, MapsFile

__all__ = ["MapErrors", "NoiseFloor", "TransitDepth", "map_errors", "noise_floor",
           "transit_depth"]

_FULL_BIN = 45
"""Bins with fewer good points are not scored."""


@dataclass(frozen=True)
class MapErrors:
    """Fitted maps minus the truth at the points of the sampled stars, mag."""

    transmission_rms: float
    """RMS of T minus the truth, after the best function of declination is removed."""
    intrapixel_rms: tuple[float, float, float, float]
    """RMS of each intrapixel amplitude minus the truth (aperture 0)."""
    t_sampled: float
    """Fraction of the points where the fitted T is defined."""
    ipx_sampled: float
    """Fraction of the points where the fitted amplitudes are defined."""


@dataclass(frozen=True)
class NoiseFloor:
    """Scatter of the 50-exposure bins of quiet stars over the injected noise."""

    ratio: float
    """sqrt(mean calibrated bin variance / mean injected bin variance)."""
    median_star_ratio: float
    """The same per star, median over the stars."""
    raw_ratio: float
    """The raw magnitudes of the same bins over the injected noise."""
    nstars: int


@dataclass(frozen=True)
class TransitDepth:
    """Measured over injected transit depth."""

    ratio: float
    """sum(measured depth) / sum(injected depth) over the in-transit bins."""
    nbins: int
    """In-transit bins measured."""


def map_errors(truth: Truth, baseline: Path, maps: Path, *, nstars: int = 400,
               vmin: float = 5.0, vmax: float = 8.4, seed: int = 1) -> MapErrors:
    """Compare the fitted maps with the truth at the good points of ``nstars`` random stars
    of ``vmin < V <= vmax``."""
    with MapsFile(maps) as mf:
        trans, ipx = mf.group("transmission"), mf.group("intrapix")
    with BaselineFile(baseline) as bf:
        stars, lon = bf.stars, float(bf.header["lon"])
        pick = stars[(stars["vmag"] <= vmax) & (stars["vmag"] > vmin)]
        ids = np.sort(np.random.default_rng(seed).choice(pick["id"], min(nstars, len(pick)),
                                                          replace=False))
        d, counts = bf.read(ids, ["lstseq", "x", "y", "alt", "pflag", "aflag"])
    sid = np.repeat(ids, counts)
    pos = np.searchsorted(stars["id"], sid)
    good = (d["pflag"] == 0) & (d["aflag"] == 0)
    d, sid, pos = d[good], sid[good], pos[good]
    ha = slot_hour_angle(d["lstseq"], stars["ra"][pos], lon - REFERENCE_LONGITUDE_DEG)
    dec = stars["dec"][pos].astype(float)
    grid = TransmissionGrid.from_attrs(trans["attrs"])
    fitted = grid.evaluate(trans["values"].reshape(-1), ha, dec)
    ok = np.isfinite(fitted)
    diff = (fitted - truth.model.transmission_mag(d["x"], d["y"], d["alt"]))[ok]
    t_rms = _rms_without_dec_profile(diff, sid[ok], dec[ok])
    igrid = IntrapixelGrid.from_attrs(ipx["attrs"])
    amp = ipx["amplitudes"].reshape(-1, 4)[igrid.cell(ha, dec)]
    iok = np.all(np.isfinite(amp), axis=1)
    idiff = (amp - truth.model.intrapixel_amplitudes(d["x"], d["y"], 0))[iok]
    irms = np.sqrt(np.mean(idiff**2, axis=0))
    return MapErrors(t_rms, (float(irms[0]), float(irms[1]), float(irms[2]), float(irms[3])),
                     float(ok.mean()), float(iok.mean()))


def _rms_without_dec_profile(diff: np.ndarray, star: np.ndarray, dec: np.ndarray) -> float:
    """RMS of ``diff`` after the mean per 1-degree band of the star means is removed."""
    _, inv = np.unique(star, return_inverse=True)
    star_mean = np.bincount(inv, diff) / np.bincount(inv)
    star_dec = np.bincount(inv, dec) / np.bincount(inv)
    _, binv = np.unique(np.floor(star_dec), return_inverse=True)
    band_mean = np.bincount(binv, star_mean) / np.bincount(binv)
    return float(np.sqrt(np.mean((diff - band_mean[binv][inv]) ** 2)))


def _clear_bins(lc: np.ndarray, overcast: np.ndarray) -> np.ndarray:
    """Unflagged full bins outside the overcast nights."""
    ok: np.ndarray = (lc["cflag"] == 0) & (lc["nobs"] >= _FULL_BIN)
    first = lc["setidx"].astype(np.int64) * SET_SIZE
    for row in overcast:
        ok &= ~((first >= row["lstseq0"]) & (first < row["lstseq0"] + row["nexp"]))
    return ok


def _raw_bin_variance(bf: BaselineFile, hip: int, sets: np.ndarray) -> float:
    """Variance of the raw magnitudes (aperture 0) binned over the same sets."""
    raw, _ = bf.read([hip], ["lstseq", "flux0", "eflux0", "exptime", "pflag", "aflag"])
    raw = raw[(raw["pflag"] == 0) & (raw["aflag"] == 0)]
    mag, _ = flux_to_mag(raw["flux0"], raw["eflux0"], raw["exptime"])
    raw_sets = raw["lstseq"].astype(np.int64) // SET_SIZE
    keep = np.isin(raw_sets, sets)
    _, inv = np.unique(raw_sets[keep], return_inverse=True)
    binned = np.bincount(inv, mag[keep]) / np.bincount(inv)
    return float(np.var(binned, ddof=1))


def noise_floor(truth: Truth, calibrated: Path, baseline: Path, *, vmin: float = 7.0,
                vmax: float = 8.0, min_bins: int = 8) -> NoiseFloor:
    """The calibrated and raw scatter of quiet stars with ``vmin <= V < vmax`` over the
    injected noise, from their clear full bins (stars with fewer than ``min_bins`` left
    out)."""
    ts = truth.stars
    overcast = truth.nights[truth.nights["weather"] == "overcast"]
    cal_var, floor_var, raw_var = [], [], []
    with CalibratedFile(calibrated) as cf, BaselineFile(baseline) as bf:
        ids = cf.ids()
        k = truth.star_index(ids)
        quiet = (k >= 0) & (ts["var_amp"][k] == 0) & (ts["transit"][k] == 0) \
            & (ts["vmag"][k] >= vmin) & (ts["vmag"][k] < vmax)
        for hip in ids[quiet].tolist():
            lc = cf.lightcurve(hip)
            ok = _clear_bins(lc, overcast)
            if ok.sum() < min_bins:
                continue
            sets = lc["setidx"][ok].astype(np.int64)
            _, var = truth.set_noise(hip, sets, 0)
            cal_var.append(float(np.var(lc["mag"][ok].astype(float), ddof=1)))
            floor_var.append(float(np.mean(var / lc["nobs"][ok])))
            raw_var.append(_raw_bin_variance(bf, hip, sets))
    if not cal_var:
        return NoiseFloor(float("nan"), float("nan"), float("nan"), 0)
    cal, floor, raw = np.array(cal_var), np.array(floor_var), np.array(raw_var)
    return NoiseFloor(float(np.sqrt(cal.mean() / floor.mean())),
                      float(np.median(np.sqrt(cal / floor))),
                      float(np.sqrt(raw.mean() / floor.mean())), len(cal))


def transit_depth(truth: Truth, calibrated: Path) -> TransitDepth:
    """Depth of the injected transits in the calibrated bins over the injected depth."""
    measured, injected = [], []
    half_bin = 0.5 * SET_SIZE * slot_length_solar_s() / 86400.0
    with CalibratedFile(calibrated) as cf:
        present = set(cf.ids().tolist())
        for row in truth.transits:
            if int(row["id"]) not in present:
                continue
            lc = cf.lightcurve(int(row["id"]))
            ok = (lc["cflag"] == 0) & (lc["nobs"] >= _FULL_BIN)
            jd = lc["jd"]
            period, epoch, duration = row["period"], row["epoch"], row["duration"]
            bottom = ok & (np.minimum(transit_shape(jd - half_bin, period, epoch, duration),
                                      transit_shape(jd + half_bin, period, epoch, duration))
                           >= 1)
            outside = ok & (transit_shape(jd, period, epoch, duration + 1.0) == 0)
            if bottom.sum() == 0 or outside.sum() < 5:
                continue
            depth = lc["mag"][bottom].mean() - np.median(lc["mag"][outside])
            measured += [depth] * int(bottom.sum())
            injected += [-2.5 * np.log10(1 - row["depth"])] * int(bottom.sum())
    if not measured:
        return TransitDepth(float("nan"), 0)
    return TransitDepth(float(np.sum(measured) / np.sum(injected)), len(measured))
