"""Calibrated light-curve files of a made-up season, in the real format (written with
``write_calibrated``), for the search's fast tests: white noise of a known level, a slow
drift and an LST term, and box transits where asked. The search's accuracy on the real
simulator and calibration is tested on the season of ``conftest.season``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from mascara_actors.decorrelation.bins import BIN_DTYPE, CFLAG_BITS
from mascara_actors.lcsim.transits import TransitSpec
from mascara_actors.sidereal import REFERENCE_SITE
from mascara_actors.storage.calibrated import STAR_FIT_DTYPE, write_calibrated

JD0 = 2461049.85  # 2026-01-08, 08:24 UTC: an evening at La Palma, 20:24 UTC
SETS_PER_NIGHT = 108  # 9.6 h of sets of 50 exposures of 6.38 s
SET_DAYS = 50 * 6.38253 / 86400.0

# Real Hipparcos stars (V < 8.4, dec 28-32, RA 60-90 deg); 24019 and 24020 are within
# 700 arcsec of each other (a blend pair)
STARS = (18687, 18781, 18841, 18965, 18972, 19087, 19197, 19205, 19365, 19385, 19397, 19428,
         19572, 19576, 19715, 19835, 24019, 24020)
BLEND_PAIR = (24019, 24020)


def season_points(night_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """JD, LST (hours) and set index of every set of the nights (0 = the first night)."""
    jd = np.concatenate([JD0 + n + np.arange(SETS_PER_NIGHT) * SET_DAYS for n in night_ids])
    lst = REFERENCE_SITE.local_sidereal_time(jd)
    return jd, np.asarray(lst.lst, float), np.asarray(lst.lstseq, np.int64) // 50


def write_season(path: Path, *, nights: Sequence[int] = tuple(range(40)),
                 stars: Sequence[int] = STARS, camera: str = "LPC", noise: float = 0.003,
                 transits: Mapping[int, TransitSpec] | None = None, seed: int = 1,
                 edit: Callable[[int, np.ndarray], np.ndarray] | None = None) -> Path:
    """Write one calibrated file of ``stars`` over ``nights``: noise (mag per binned point),
    a 3 mmag drift over the season and a 5 mmag LST term, plus ``transits``; ``edit(hip,
    records)`` may change a star's records before they are written."""
    rng = np.random.default_rng(seed)
    jd, lst, setidx = season_points(nights)
    transits = transits or {}
    curves = []
    for hip in sorted(stars):
        rec = np.zeros(len(jd), BIN_DTYPE)
        rec["setidx"], rec["jd"], rec["lst"] = setidx, jd, lst
        mag = (7.0 + noise * rng.standard_normal(len(jd))
                + 0.003 * (jd - jd[0]) / max(np.ptp(jd), 1.0)
                + 0.005 * np.sin(2 * np.pi * lst / 24.0 * 3))
        if hip in transits:
            mag += transits[hip].dimming_mag(jd)
        rec["mag"], rec["emag"], rec["nobs"] = mag, noise, 50
        if edit is not None:
            rec = edit(hip, rec)
        curves.append((hip, rec))
    ids = np.array(sorted(stars), np.int64)
    rows = np.zeros(len(ids), [("id", "i8"), ("vmag", "f4")])
    rows["id"], rows["vmag"] = ids, 7.0
    fit = np.zeros(len(ids), STAR_FIT_DTYPE)
    fit["id"], fit["mag"], fit["npoints"] = ids, 7.0, len(jd) * 50
    lstseq = setidx * 50
    header = {"camera": camera, "site": "LP", "lstmin": int(lstseq.min()),
              "lstmax": int(lstseq.max() + 49), "nights": [f"n{n}" for n in nights]}
    return write_calibrated(path, provenance={}, header=header, filelist=[], stars=rows,
                            star_fit=fit, curves=curves, flags=CFLAG_BITS)
