"""The search of one star: detrend, coarse periodogram, peaks, refinement, measurement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mascara_actors.search.bls import box_least_squares, period_grid
from mascara_actors.search.detrend import Detrended, detrend
from mascara_actors.search.lightcurve import RawPoints, StarLightCurve
from mascara_actors.search.measure import TransitMeasure, measure_transit, phase_days
from mascara_actors.search.peaks import alias_free, pick_peaks, refine_peak, sde
from mascara_actors.search.settings import SearchSettings

__all__ = ["CoarseGrid", "Peak", "StarResult", "detrend_points", "same_transits",
           "search_points"]


@dataclass(frozen=True)
class CoarseGrid:
    """The trial periods every star of a season is searched at (days), and which of them
    the alias mask leaves."""

    periods: np.ndarray
    allowed: np.ndarray
    step: float
    """Log step between neighbouring periods."""

    @classmethod
    def for_season(cls, baseline_days: float, s: SearchSettings) -> CoarseGrid:
        """The grid of ``s`` for a season of ``baseline_days``. The band the calibration
        leaks the sidereal day into is searched: a transit there is far deeper than the leak, and
        the vetting asks a peak there to stand above it
        (:attr:`~.vetting.Thresholds.sideband_snr`)."""
        periods = period_grid(baseline_days, s.period_min, s.period_max, min(s.durations),
                              s.oversample)
        step = float(np.log(periods[1] / periods[0])) if len(periods) > 1 else 0.0
        allowed = alias_free(periods, s.alias_tolerance)
        return cls(periods, allowed, step)


@dataclass(frozen=True)
class Peak:
    """One peak of a star's periodogram, refined and measured."""

    rank: int
    """1 for the highest measured S/N of the star's kept peaks (the search ranks those that
    pass the vetting first once it has vetted them: :class:`~.candidates.Candidate`)."""
    sde: float
    measure: TransitMeasure
    lightcurve: StarLightCurve | None = None
    """The light curve it was measured on (detrended without its transits); dropped from
    the search's report once the sheets are drawn."""
    same_transits: tuple[int, ...] = ()
    """Ranks of the star's other peaks that fit the same points in transit as well
    (:func:`same_transits`): periods the data cannot tell from this one."""


@dataclass(frozen=True)
class StarResult:
    """What the search of one star found, or why it was skipped."""

    hip: int
    npoints: int
    nights: int
    skipped: str | None = None
    peaks: tuple[Peak, ...] = ()
    sde: np.ndarray | None = None
    """The SDE periodogram on the coarse grid (float32), kept when a peak is written."""


def same_transits(jd: np.ndarray, peaks: Sequence[TransitMeasure], overlap: float,
                  snr_errors: float) -> list[tuple[int, ...]]:
    """For each peak, the ranks (1-based) of the others that fit the same transits as well:
    their boxes share at least ``overlap`` of the points in either, and their S/N differ by
    less than ``snr_errors`` times the larger of their standard errors.

    On nights of a few hours a transit is seen only when it falls at night, so the transits
    seen are often n times some interval apart, and every period that divides the interval
    a whole number of times folds them into its box, its other transits falling in daytime.
    Those periods fit the data equally well; only more nights, or a follow-up, can choose."""
    inside = [np.abs(phase_days(jd, m.period, m.epoch)) < 0.5 * m.duration for m in peaks]
    out: list[tuple[int, ...]] = []
    for i, a in enumerate(inside):
        same = []
        for j, b in enumerate(inside):
            union = np.count_nonzero(a | b)
            if (j != i and union and np.count_nonzero(a & b) >= overlap * union
                    and abs(peaks[j].snr - peaks[i].snr)
                    < snr_errors * max(peaks[i].snr_err, peaks[j].snr_err)):
                same.append(j + 1)
        out.append(tuple(same))
    return out


def detrend_points(pts: RawPoints, s: SearchSettings, exclude: np.ndarray | None = None
                   ) -> Detrended:
    """A star's points detrended on the settings' scales (``exclude``: points left out of
    the fit)."""
    return detrend(pts.jd, pts.lst, pts.mag, pts.emag, days=s.detrend_days,
                   lst_h=s.detrend_lst_h, clip=s.clip, exclude=exclude)


def search_points(hip: int, camera: str, pts: RawPoints, grid: CoarseGrid,
                  s: SearchSettings) -> StarResult:
    """Search one star's points; a star without enough of them is skipped with the reason."""
    n, nights = len(pts), pts.nights if len(pts) else 0
    if n < s.min_points or nights < s.min_nights:
        return StarResult(hip, n, nights, f"{n} good points on {nights} nights (the search "
                          f"needs {s.min_points} on {s.min_nights})")
    if float(np.ptp(pts.mag)) == 0.0:
        return StarResult(hip, n, nights, "constant light curve (every point the same)")
    d = detrend_points(pts, s)
    y, dy = d.flux - 1.0, d.flux_err
    durations = np.asarray(s.durations)
    coarse_bin = float(durations.min()) / s.coarse_bins
    bls = box_least_squares(pts.jd, y, dy, grid.periods, durations, bin_days=coarse_bin)
    # on the chi-square gain (the power squared): it separates a transit from the noise
    # peaks of a season about twice as well as the power itself
    score = sde(bls.power ** 2, grid.allowed)
    # the highest powers (the box's S/N), not SDEs: with few nights a deep transit raises
    # the whole periodogram (a box catches one of its transits at any period), and its SDE
    # is low although it stands out
    power = np.where(grid.allowed, bls.power, 0.0)
    measured = []
    for i in pick_peaks(grid.periods, power, s.candidates):
        ref = refine_peak(pts.jd, y, dy, float(grid.periods[i]), grid.step,
                          float(bls.duration[i]), coarse_bin,
                          (float(durations.min()), float(durations.max())))
        # measured on the light curve detrended again without this peak's transits (and
        # an hour either side), so the trend cannot have eaten into any of them
        mask = np.abs(phase_days(pts.jd, ref.period, ref.epoch)) < 0.5 * ref.duration + 1 / 24
        d2 = detrend_points(pts, s, exclude=mask)
        m = measure_transit(pts.jd, d2.flux, d2.flux_err, ref.period, ref.epoch, ref.duration)
        if m.snr >= s.snr_keep:
            lc = StarLightCurve(hip, camera, pts.jd, pts.lst, d2.flux, d2.flux_err)
            measured.append((m, float(score[i]), lc))
    # ranked by the S/N measured on the points: on sparse nights the coarse grid's power
    # often puts an alias a little above the true period
    measured.sort(key=lambda x: -x[0].snr)
    kept = measured[:s.peaks]
    same = same_transits(pts.jd, [m for m, _, _ in kept], s.same_transits,
                         s.same_transits_snr)
    peaks = [Peak(rank, sde_, m, lc, same[rank - 1])
             for rank, (m, sde_, lc) in enumerate(kept, start=1)]
    if not peaks:
        return StarResult(hip, n, nights)
    return StarResult(hip, n, nights, peaks=tuple(peaks), sde=score.astype(np.float32))
