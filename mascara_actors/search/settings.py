"""The settings of the transit search (units: days, hours where named, relative flux)."""

from __future__ import annotations

from dataclasses import dataclass

from mascara_actors.errors import ConfigError
from mascara_actors.sidereal import SIDEREAL_DAY_S

__all__ = ["SIDEREAL_DAY", "SearchSettings"]

SIDEREAL_DAY = SIDEREAL_DAY_S / 86400.0
"""Days (0.99727). The cameras are locked to sidereal time: systematics left by the
calibration repeat at this period and its multiples."""


@dataclass(frozen=True)
class SearchSettings:
    """What :func:`~mascara_actors.search.run.search` searches and how it vets."""

    period_min: float = 1.0
    period_max: float = 20.0
    """Days."""
    durations_h: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
    """Box durations of the coarse search, hours."""
    oversample: float = 2.0
    """Coarse period grid: a transit drifts by the shortest duration over this many steps
    across the baseline."""
    coarse_bins: int = 2
    """Phase bins per shortest duration in the coarse search (the peaks are refined on bins
    four times finer)."""
    candidates: int = 5
    """Peaks measured per star: the highest powers after the alias mask, each at least 2 %
    in period from the stronger ones."""
    peaks: int = 3
    """Of those, the ones with the highest measured S/N are kept."""
    same_transits: float = 0.8
    same_transits_snr: float = 1.0
    """Two peaks of a star whose boxes share at least ``same_transits`` of their points in
    transit (of those in either) and whose S/N differ by less than ``same_transits_snr``
    times the larger of their standard errors (1 from the noise, and at high S/N the
    red-noise factor's own error: :attr:`~.measure.TransitMeasure.snr_err`) fit the same
    transits as well: each names the other as a period the data cannot tell from its
    own."""
    snr_keep: float = 7.0
    """Peaks whose measured depth is less significant are not written to the candidates
    table."""
    alias_tolerance: float = 0.005
    """Periods within this fraction of k sidereal days (k = 1, 2, ...) or of one sidereal
    day over k are masked."""
    min_points: int = 200
    min_nights: int = 5
    """Stars with fewer good binned points or nights are skipped (and reported)."""
    min_nobs: int = 25
    """Binned points of fewer exposures (of 50) are not used."""
    detrend_days: float = 5.0
    """Time scale of the slow trend (its nodes are this many days apart), the legacy
    ``s_jd``."""
    detrend_lst_h: float = 0.25
    """Scale of the LST term (its nodes are this many hours of LST apart), the legacy
    ``s_lst``."""
    clip: float = 3.0
    """The detrending is refitted without points further than this many robust sigma."""
    blend_radius_arcsec: float = 700.0
    """Neighbours this close share light with the star: two fast apertures of 4.5 px at
    77.3 arcsec/px."""
    workers: int = 2
    """Processes searching stars (one per core)."""

    @property
    def durations(self) -> tuple[float, ...]:
        """The box durations, days."""
        return tuple(h / 24.0 for h in self.durations_h)

    def check(self, baseline_days: float | None = None) -> None:
        """Raise :class:`ConfigError` naming the first setting that cannot work."""
        if not 0.2 <= self.period_min < self.period_max <= 1000.0:
            raise ConfigError(
                f"periods {self.period_min:g} to {self.period_max:g} d: give 0.2 <= minimum "
                "< maximum <= 1000 days (the issue's range is 1 to 20)")
        if not self.durations_h or min(self.durations_h) <= 0:
            raise ConfigError(f"durations {self.durations_h} h: give positive hours")
        if max(self.durations_h) / 24.0 >= self.period_min / 2:
            raise ConfigError(
                f"a {max(self.durations_h):g} h transit cannot repeat every "
                f"{self.period_min:g} d: raise the shortest period or shorten the durations")
        if baseline_days is not None and self.period_max > baseline_days:
            raise ConfigError(
                f"periods up to {self.period_max:g} d in {baseline_days:.1f} days of data: "
                "no transit would be seen twice; lower the longest period or give more "
                "nights")
        if (self.workers < 1 or not 1 <= self.peaks <= self.candidates
                or self.oversample <= 0 or self.coarse_bins < 1
                or not 0.0 < self.same_transits <= 1.0 or self.same_transits_snr < 0):
            raise ConfigError("workers, oversample and coarse_bins must be positive, "
                              "1 <= peaks <= candidates, 0 < same_transits <= 1 and "
                              "same_transits_snr >= 0")
