"""Injection-recovery: how many transits of a given depth and period the search finds.

Transits are injected into calibrated light curves (the magnitudes of the chosen stars, as
read, before the detrending) or into a simulated season before its calibration
(:mod:`~mascara_actors.search.season`); the search runs as it does on real data. A transit
is recovered when its star's candidate (the strongest peak that passed the vetting) is at
the injected period or half or twice it, or names one of these among its aliases (periods of
the star's other passed peaks that fold the same points into transit, which the data cannot
tell apart), within ``period_tolerance``, a fraction; the fraction at the period itself is
given too. Every passed candidate of a star without an injected transit is a false
candidate. Only the stars of the season count: those seen on at least half the nights its
files span.
Talens et al. (2018) recovered 84.0, 60.5 and 20.7 % of the transits of 2, 1 and 0.5 %
(periods 1 to 5 days) in a year of La Palma data.

Writes into ``outdir``: ``search/`` (the search's own outputs), ``recovery.csv`` (one row per
injected transit), ``recovery_table.csv`` (per depth and period bin), ``recovery.json`` (the
fractions per depth, the false candidates, Talens et al.'s figures) and ``recovery.png``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mascara_actors.atomic_files import atomic_write_text
from mascara_actors.figures import write_png
from mascara_actors.lcsim.transits import TransitSpec
from mascara_actors.search.candidates import Candidate
from mascara_actors.search.run import SearchProgress, SearchReport, search
from mascara_actors.search.settings import SearchSettings
from mascara_actors.search.vetting import Thresholds

__all__ = ["HARMONICS", "TALENS_2018", "Recovery", "inject_recover", "recovery_figure",
           "recovery_of", "season_nights", "write_recovery"]

log = logging.getLogger(__name__)

TALENS_2018 = {0.02: 0.840, 0.01: 0.605, 0.005: 0.207}
"""Recovered fraction per depth, Talens et al. 2018 (A&A 619, A154), periods 1-5 days."""

PERIOD_BINS = (1.0, 2.0, 3.0, 4.0, 5.0)
"""Days: the edges of the period bins of the table."""


@dataclass(frozen=True)
class Recovery:
    """What the search recovered of the injected transits."""

    injected: tuple[TransitSpec, ...]
    """The transits injected into stars of the season."""
    found: tuple[Candidate | None, ...]
    """Each injected star's rank-1 peak: its strongest that passed the vetting, or its
    strongest when none passed (None: no peak kept)."""
    recovered: np.ndarray
    """Per injected transit: that peak passed the vetting at the period or half or twice
    it, or with one of these among its aliases."""
    exact: np.ndarray
    """That peak passed the vetting at the injected period itself."""
    null_stars: int
    """Stars searched without an injected transit."""
    false: tuple[Candidate, ...]
    """Passed candidates of those stars."""
    search: SearchReport
    through_alias: np.ndarray
    """Per injected transit: recovered only through one of the peak's aliases (at neither
    the peak's period nor half or twice it)."""

    def fraction(self, depth: float, *, exact: bool = False) -> float:
        """Recovered fraction of the transits of this depth (NaN: none injected); ``exact``:
        at the injected period only."""
        sel = np.array([t.depth == depth for t in self.injected], bool)
        hits = self.exact if exact else self.recovered
        return float(hits[sel].mean()) if sel.any() else float("nan")

    def by_an_alias(self, depth: float) -> int:
        """Transits of this depth recovered only through one of the peak's aliases."""
        sel = np.array([t.depth == depth for t in self.injected], bool)
        return int(self.through_alias[sel].sum()) if sel.any() else 0

    @property
    def depths(self) -> list[float]:
        """The injected depths, deepest first."""
        return sorted({t.depth for t in self.injected}, reverse=True)

    @property
    def false_per_1000(self) -> float:
        """False candidates per 1,000 stars without an injected transit."""
        return 1000.0 * len({c.hip for c in self.false}) / max(self.null_stars, 1)

    def table(self) -> list[tuple[float, float, float, int, int]]:
        """(depth, period from, period to, injected, recovered) per depth and period bin;
        periods outside the bins are counted in the nearest one."""
        period = np.array([t.period_d for t in self.injected])
        depth = np.array([t.depth for t in self.injected])
        k = np.clip(np.searchsorted(PERIOD_BINS, period, side="right") - 1, 0,
                    len(PERIOD_BINS) - 2)
        rows = []
        for d in self.depths:
            for b in range(len(PERIOD_BINS) - 1):
                sel = (depth == d) & (k == b)
                rows.append((d, PERIOD_BINS[b], PERIOD_BINS[b + 1], int(sel.sum()),
                             int(self.recovered[sel].sum())))
        return rows


HARMONICS = (0.5, 1.0, 2.0)
"""A transit is recovered at its period or at half or twice it: on nights of a few hours
the data often cannot tell them apart (the other half of the transits falls in daytime),
and a follow-up would."""


def _matches(found: float, injected: float, tolerance: float,
             harmonics: tuple[float, ...] = HARMONICS) -> bool:
    return any(abs(found / (h * injected) - 1.0) < tolerance for h in harmonics)


def season_nights(report: SearchReport) -> int:
    """The nights of the season: those its files span (:attr:`SearchReport.nights`; the
    baseline in days for a report that does not say)."""
    # Not the baseline in days: a season of files weeks apart would have every star below
    # half of it. The nights lost to weather within a file's span count, against every star
    # alike, as they did in Talens et al.'s year: only a star seen on part of the files'
    # nights (the edge of the field's season) is left out.
    return report.nights or max(round(report.baseline_days), 1)


def recovery_of(injected: Sequence[TransitSpec], report: SearchReport, searched: Sequence[int],
                period_tolerance: float = 0.01, min_night_fraction: float = 0.5
                ) -> Recovery:
    """Score a search of stars ``searched`` into which ``injected`` transits were put.

    Only the stars of the season count, injected or not: those with points on at least
    ``min_night_fraction`` of the nights its files span (:func:`season_nights`; a star at
    the edge of the field's season, seen on a few nights, holds too few transits for any
    search). The injected transits left out are logged."""
    nights = season_nights(report)

    def of_season(hip: int) -> bool:
        r = report.results.get(hip)
        return r is not None and r.nights >= min_night_fraction * nights

    best: dict[int, Candidate] = {}
    for c in report.candidates:
        if c.rank == 1:
            best[c.hip] = c
    kept = tuple(t for t in injected if of_season(t.hip))
    if len(kept) < len(injected):
        log.warning("%d of %d injected transits are not scored: their stars have points on "
                    "fewer than %g of the season's %d nights (or were not searched)",
                    len(injected) - len(kept), len(injected), min_night_fraction * nights,
                    nights)
    found = tuple(best.get(t.hip) for t in kept)
    passed = [c if c is not None and c.passed else None for c in found]

    def at(harmonics: tuple[float, ...]) -> np.ndarray:
        return np.array([c is not None and _matches(c.period, t.period_d, period_tolerance,
                                                     harmonics)
                         for t, c in zip(kept, passed, strict=True)], bool)

    direct, exact = at(HARMONICS), at((1.0,))
    through_alias = np.array([c is not None and not at_period
                              and any(_matches(a, t.period_d, period_tolerance)
                                      for a in c.alias_periods)
                              for t, c, at_period in zip(kept, passed, direct, strict=True)],
                             bool)
    hit = {t.hip for t in injected}
    nulls = [h for h in searched if h not in hit and of_season(h)]
    false = tuple(c for c in report.passed if c.hip in set(nulls))
    return Recovery(kept, found, direct | through_alias, exact, len(nulls), false, report,
                    through_alias)


def inject_recover(paths: Sequence[str | Path], outdir: str | Path,
                   injected: Sequence[TransitSpec], *, null_stars: Sequence[int] = (),
                   settings: SearchSettings | None = None,
                   thresholds: Thresholds | None = None, period_tolerance: float = 0.01,
                   progress: SearchProgress | None = None, in_files: bool = False
                   ) -> Recovery:
    """Inject ``injected`` into the calibrated light curves ``paths`` (in memory), search
    them and ``null_stars`` (the stars that count false candidates), score and write the
    recovery files into ``outdir``.

    ``in_files``: the transits are in the light curves already (a season simulated with
    them, :func:`~mascara_actors.search.season.simulate_season`); they are only scored, not
    injected a second time."""
    outdir = Path(outdir)
    stars = sorted({t.hip for t in injected} | {int(h) for h in null_stars})
    report = search(paths, outdir / "search", settings, thresholds, sheets=0, stars=stars,
                    injections=() if in_files else injected, progress=progress)
    rec = recovery_of(injected, report, stars, period_tolerance)
    write_recovery(outdir, rec)
    return rec


def write_recovery(outdir: Path, rec: Recovery) -> None:
    """``recovery.csv``, ``recovery_table.csv``, ``recovery.json`` and ``recovery.png``."""
    lines = ["hip,depth,period,duration_h,epoch,found_period,found_aliases,found_sde,"
             "found_snr,passed,recovered,exact_period"]
    for t, c, ok, exact in zip(rec.injected, rec.found, rec.recovered, rec.exact,
                               strict=True):
        lines.append(",".join(str(v) for v in (
            t.hip, t.depth, t.period_d, t.duration_h, t.epoch_jd,
            "" if c is None else c.period, "" if c is None else c.aliases,
            "" if c is None else c.sde, "" if c is None else c.snr,
            int(c is not None and c.passed), int(ok), int(exact))))
    atomic_write_text(outdir / "recovery.csv", "\n".join(lines) + "\n")
    table = ["depth,period_from,period_to,injected,recovered,fraction"]
    for d, lo, hi, n, k in rec.table():
        table.append(f"{d},{lo},{hi},{n},{k},{k / n if n else float('nan'):.3f}")
    atomic_write_text(outdir / "recovery_table.csv", "\n".join(table) + "\n")
    doc = {
        "fractions": {f"{d:g}": rec.fraction(d) for d in rec.depths},
        "fractions_exact_period": {f"{d:g}": rec.fraction(d, exact=True) for d in rec.depths},
        "recovered_by_an_alias": {f"{d:g}": rec.by_an_alias(d) for d in rec.depths},
        "talens_2018": {f"{d:g}": v for d, v in TALENS_2018.items()},
        "injected": len(rec.injected),
        "recovered": int(rec.recovered.sum()),
        "null_stars": rec.null_stars,
        "false_candidates": [{"hip": c.hip, "period": c.period, "sde": c.sde}
                             for c in rec.false],
        "false_per_1000_stars": rec.false_per_1000,
    }
    atomic_write_text(outdir / "recovery.json", json.dumps(doc, indent=1) + "\n")
    write_png(recovery_figure(rec), outdir / "recovery.png", durable=False)


def recovery_figure(rec: Recovery) -> Figure:
    """Recovered fraction against period, one line per depth, with Talens et al. 2018."""
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    rows = rec.table()
    for n, d in enumerate(rec.depths):
        mine = [(0.5 * (lo + hi), k / m) for dd, lo, hi, m, k in rows if dd == d and m]
        if mine:
            x, y = zip(*mine, strict=True)
            ax.plot(x, y, "o-", color=f"C{n}",
                    label=f"{100 * d:g} %: {100 * rec.fraction(d):.0f} % recovered")
        if d in TALENS_2018:
            ax.axhline(TALENS_2018[d], color=f"C{n}", ls="--", lw=1,
                       label=f"{100 * d:g} %: Talens et al. 2018, {100 * TALENS_2018[d]:.1f} %")
    ax.set_xlabel("period (days)")
    ax.set_ylabel("recovered fraction")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{len(rec.injected)} transits injected, {int(rec.recovered.sum())} "
                 f"recovered; {len(rec.false)} false candidates in {rec.null_stars} stars")
    if ax.get_legend_handles_labels()[0]:  # nothing scored: no line to name
        ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
