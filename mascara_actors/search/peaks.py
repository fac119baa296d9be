"""From a coarse periodogram to a few peaks: the sidereal-day alias mask, the SDE, and the
refinement of a peak on a fine grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mascara_actors.search.bls import box_least_squares
from mascara_actors.search.settings import SIDEREAL_DAY

__all__ = ["Refined", "alias_free", "calibration_sidebands", "pick_peaks", "refine_peak",
           "sde"]


def alias_free(periods: np.ndarray, tolerance: float,
               sidebands: tuple[float, ...] = (), width: float = 0.0) -> np.ndarray:
    """True where a period (days) is further than ``tolerance`` (a fraction) from every
    k sidereal days and every sidereal day over k (k = 1, 2, ...), and whose frequency is
    outside the band each of ``sidebands`` (1/day) spans with the sidereal day, widened by
    ``width`` (1/day) beyond the sideband (:func:`calibration_sidebands` says why a band)."""
    periods = np.asarray(periods, float)
    ratio = periods / SIDEREAL_DAY
    # the nearest whole multiple, and the nearest whole fraction
    k = np.maximum(np.rint(ratio), 1.0)
    near_multiple = np.abs(ratio / k - 1.0) < tolerance
    kk = np.maximum(np.rint(1.0 / ratio), 1.0)
    near_fraction = np.abs(ratio * kk - 1.0) < tolerance
    out: np.ndarray = ~(near_multiple | near_fraction)
    freq, day = 1.0 / periods, 1.0 / SIDEREAL_DAY
    for f in sidebands:
        # widened away from the sidereal day only: the day itself is the alias mask's
        lo, hi = (f - width, day) if f < day else (day, f + width)
        out &= (freq < lo) | (freq > hi)
    return out


def calibration_sidebands(file_days: Sequence[float]) -> tuple[float, ...]:
    """Frequencies (1/day) down to which the sidereal day leaks when it is calibrated in
    pieces of ``file_days`` days each: ``1/sidereal day - 1/T`` for the median length T
    (none for files of a day or less).

    The calibration fits the sidereal-day systematics of each calibrated file on its own;
    what it leaves changes from one file to the next, so the sidereal day of the season's
    light curves is modulated by a step every T days. Steps of random heights have their
    power at every frequency up to about 1/T, so the leak fills the band between the
    sidereal day and this frequency, not only its edge: quiet stars show dips at 1.07 days
    in 15-day files, and also at 1.03-1.05 days (16 of the 1,356 quiet stars of the
    benchmark's band season did, at S/N 10-12, while the mask was a band about the edge
    alone). The typical length sets the modulation: a short file at the end of a season
    adds little. The upper sideband (periods under a day) is outside the search."""
    spans = [float(t) for t in file_days if t > 1.0]
    if not spans:
        return ()
    return (1.0 / SIDEREAL_DAY - 1.0 / float(np.median(spans)),)


def sde(power: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Signal detection efficiency of each period: (power - median) / spread, over the
    allowed periods (0 at the masked ones). The spread is 1.4826 times the median absolute
    deviation, so a strong transit is not hidden by the power its own harmonics and aliases
    add, but at least half the standard deviation: with few points most periods find the
    same boxes, and the deviation alone would be nearly 0."""
    sel = power[allowed]
    if len(sel) < 2:
        return np.zeros(len(power))
    med = float(np.median(sel))
    spread = max(1.4826 * float(np.median(np.abs(sel - med))), 0.5 * float(np.std(sel)))
    if spread == 0.0:
        return np.zeros(len(power))
    out: np.ndarray = np.where(allowed, (power - med) / spread, 0.0)
    return out


def pick_peaks(periods: np.ndarray, score: np.ndarray, n: int, separation: float = 0.02
               ) -> list[int]:
    """Indices of the ``n`` highest scores, each at least ``separation`` (a fraction) in
    period from the higher ones; only positive scores."""
    out: list[int] = []
    order = np.argsort(score)[::-1]
    for i in order[: max(50 * n, 200)].tolist():
        if score[i] <= 0 or len(out) == n:
            break
        if all(abs(periods[i] / periods[j] - 1.0) >= separation for j in out):
            out.append(i)
    return out


class Refined:
    """The best box near a coarse peak, on a fine grid."""

    __slots__ = ("duration", "epoch", "period", "power")

    def __init__(self, period: float, epoch: float, duration: float, power: float) -> None:
        self.period, self.epoch, self.duration, self.power = period, epoch, duration, power


def refine_peak(t: np.ndarray, y: np.ndarray, dy: np.ndarray, period: float, step: float,
                duration: float, coarse_bin: float, durations: tuple[float, float]) -> Refined:
    """The best box within two coarse steps (``step``, a fraction of the period) of
    ``period`` and one coarse phase bin (``coarse_bin``, days) of ``duration``: 21 periods,
    phase bins of a quarter of a coarse one, durations in steps of a fine bin, kept within
    ``durations`` (days)."""
    periods = period * np.exp(np.linspace(-2 * step, 2 * step, 21))
    bin_days = coarse_bin / 4.0
    lo = max(duration - coarse_bin, durations[0])
    hi = min(duration + coarse_bin, durations[1])
    grid = np.arange(lo, hi + 0.5 * bin_days, bin_days)
    bls = box_least_squares(t, y, dy, periods, grid, bin_days=bin_days)
    i = int(np.argmax(bls.power))
    return Refined(float(periods[i]), float(bls.epoch[i]), float(bls.duration[i]),
                   float(bls.power[i]))
