"""Candidate sheets: one PNG per transit candidate for a person to vet, and an HTML index.

A sheet (:func:`render_sheet`, about 1600 x 1100 px) shows the periodogram with the
sidereal-day aliases, the light curve folded on the candidate's period with its running bins
and the box model, the best-covered individual transits, odd against even transits, and the
numbers and vetting verdicts of the candidate. :func:`write_index` lists the candidates in a
self-contained ``index.html`` that links each row to its sheet.

Figures are built with the object API (``Figure``, never ``pyplot``) and written whole or not
at all (:func:`~mascara_actors.figures.write_png`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import quote

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mascara_actors import __version__
from mascara_actors.atomic_files import atomic_write_text
from mascara_actors.figures import write_png
from mascara_actors.search.candidates import Candidate
from mascara_actors.search.lightcurve import StarLightCurve
from mascara_actors.search.measure import phase_days
from mascara_actors.search.settings import SIDEREAL_DAY
from mascara_actors.sidereal import jd_to_datetime

__all__ = ["INDEX_HTML", "fold_hours", "render_sheet", "sheet_name", "write_index"]

INDEX_HTML = "index.html"

_DPI = 100
_FIGSIZE = (16.0, 11.0)
"""Inches: 1600 x 1100 px at :data:`_DPI`."""
_ALIAS_ORDERS = (1, 2, 3, 4)
_FOLD_DURATIONS = 3.0
"""Half-width of the folded panels, in transit durations."""
_TRANSIT_DURATIONS = 2.0
"""Half-width of each individual-transit panel, in transit durations."""
_MAX_TRANSITS = 8
_PERIOD_TICKS = (0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)
_BIN_HOURS = 10.0 / 60.0
_NO_POINTS = "no points"


def sheet_name(c: Candidate) -> str:
    """File name of the candidate's sheet: ``HIP{hip}_{rank}.png``."""
    return f"HIP{c.hip}_{c.rank}.png"


def fold_hours(jd: np.ndarray, period_d: float, epoch_jd: float) -> np.ndarray:
    """Time of each JD from the nearest mid-transit (``epoch_jd + n * period_d``), hours,
    in ``[-P/2, P/2)``."""
    folded: np.ndarray = 24.0 * phase_days(np.asarray(jd, dtype=float), period_d, epoch_jd)
    return folded


@dataclass(frozen=True)
class _Points:
    """The light curve's usable points (finite time and flux), folded on the candidate."""

    hours: np.ndarray
    """From the nearest mid-transit."""
    number: np.ndarray
    """Which transit that is, counted from the candidate's epoch."""
    flux: np.ndarray

    @classmethod
    def fold(cls, c: Candidate, lc: StarLightCurve) -> _Points:
        jd = np.asarray(lc.jd, dtype=float)
        flux = np.asarray(lc.flux, dtype=float)
        ok = np.isfinite(jd) & np.isfinite(flux)
        jd, flux = jd[ok], flux[ok]
        hours = fold_hours(jd, c.period, c.epoch)
        # Derived from the fold itself, so a point and its transit number never disagree at
        # the half-period boundary.
        number = np.rint((jd - c.epoch - hours / 24.0) / c.period).astype(np.int64)
        return cls(hours, number, flux)

    def within(self, half_width_h: float) -> np.ndarray:
        """Mask of the points at most ``half_width_h`` hours from mid-transit."""
        inside: np.ndarray = np.abs(self.hours) <= half_width_h
        return inside


def _binned(x: np.ndarray, y: np.ndarray, lo: float, hi: float, width: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Centres and means of the non-empty bins of ``width`` between ``lo`` and ``hi``."""
    nbins = max(1, math.ceil((hi - lo) / width))
    idx = np.clip(np.floor((x - lo) / width).astype(np.int64), 0, nbins - 1)
    counts = np.bincount(idx, minlength=nbins)
    sums = np.bincount(idx, weights=y, minlength=nbins)
    filled = counts > 0
    centres = lo + (np.arange(nbins) + 0.5) * width
    return centres[filled], sums[filled] / counts[filled]


def _box(ax: Axes, c: Candidate, half_width_h: float) -> None:
    half = c.duration * 12.0
    x = [-half_width_h, -half, -half, half, half, half_width_h]
    low = 1.0 - c.depth
    ax.plot(x, [1.0, 1.0, low, low, 1.0, 1.0], "C3-", lw=1.5, label="box model")


def _no_points(ax: Axes, what: str = _NO_POINTS, y: float = 0.8) -> None:
    # Above the middle by default, where the box model's out-of-transit line does not cross.
    ax.text(0.5, y, what, ha="center", va="center", transform=ax.transAxes, color="0.4",
            multialignment="center")


def _flux_limits(c: Candidate, flux: np.ndarray) -> tuple[float, float]:
    """A flux range that shows the whole dip and most of the scatter, not every outlier."""
    dip = c.depth if math.isfinite(c.depth) and c.depth > 0 else 0.0
    lo, hi = 1.0 - 1.6 * dip - 2e-3, 1.0 + 0.6 * dip + 2e-3
    if flux.size:
        q_lo, q_hi = np.percentile(flux, [0.5, 99.5])
        lo, hi = min(lo, float(q_lo)), max(hi, float(q_hi))
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def _periodogram(ax: Axes, c: Candidate, periods: np.ndarray, sde: np.ndarray) -> None:
    periods = np.asarray(periods, dtype=float)
    sde = np.asarray(sde, dtype=float)
    ok = np.isfinite(periods) & np.isfinite(sde) & (periods > 0)
    ax.set_title("BLS periodogram")
    ax.set_xlabel("period (d)")
    ax.set_ylabel("SDE")
    if not ok.any():
        _no_points(ax, "no periodogram")
        return
    p, s = periods[ok], sde[ok]
    ax.plot(p, s, "k-", lw=0.7)
    ax.set_xscale("log")
    lo, hi = float(p.min()), float(p.max())
    # Plain numbers of days: the default log labels show only the powers of ten. Those
    # ticks are dense enough to read a period off; minor ticks would only add drawing time.
    ticks = [t for t in _PERIOD_TICKS if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    aliases = sorted({SIDEREAL_DAY * k for k in _ALIAS_ORDERS}
                     | {SIDEREAL_DAY / k for k in _ALIAS_ORDERS})
    shown = [a for a in aliases if lo <= a <= hi]
    for i, a in enumerate(shown):
        ax.axvline(a, color="C0", alpha=0.3, lw=1, ls=":",
                   label="sidereal-day aliases" if i == 0 else None)
    if math.isfinite(c.period) and c.period > 0:
        ax.axvline(c.period, color="C3", alpha=0.6, lw=2, label=f"P = {c.period:.5f} d")
    if lo < hi:
        ax.set_xlim(lo, hi)
    ax.legend(loc="upper right", fontsize="small")


def _fold_panel(ax: Axes, c: Candidate, pts: _Points, half_width_h: float,
                ylim: tuple[float, float]) -> None:
    near = pts.within(half_width_h)
    ax.set_title(f"folded on P = {c.period:.5f} d (±{_FOLD_DURATIONS:g} durations)")
    ax.set_xlabel("hours from mid-transit")
    ax.set_ylabel("relative flux")
    ax.set_xlim(-half_width_h, half_width_h)
    ax.set_ylim(*ylim)
    _box(ax, c, half_width_h)
    if not near.any():
        _no_points(ax)
        return
    x, y = pts.hours[near], pts.flux[near]
    ax.plot(x, y, ".", color="0.6", ms=2, alpha=0.5, label=f"points ({near.sum()})")
    bx, by = _binned(x, y, -half_width_h, half_width_h, _BIN_HOURS)
    ax.plot(bx, by, "o", color="C0", ms=4, label=f"{_BIN_HOURS * 60:.0f}-minute bins")
    ax.legend(loc="lower right", fontsize="small")


def _transit_panels(axes: Sequence[Axes], c: Candidate, pts: _Points,
                    ylim: tuple[float, float]) -> None:
    half_width_h = _TRANSIT_DURATIONS * c.duration * 24.0
    near = pts.within(half_width_h)
    numbers, which, counts = np.unique(pts.number[near], return_inverse=True,
                                       return_counts=True)
    in_transit = np.bincount(which, weights=pts.within(c.duration * 12.0)[near].astype(float),
                             minlength=len(numbers))
    best = np.lexsort((-counts, -in_transit))[:len(axes)]
    chosen = np.sort(numbers[best])
    if not len(chosen):
        axes[0].set_xticks([])
        axes[0].set_yticks([])
        _no_points(axes[0], f"{_NO_POINTS} within\n±{_TRANSIT_DURATIONS:g} durations\n"
                            "of a transit", y=0.5)
    for ax in axes[max(1, len(chosen)):]:
        ax.set_axis_off()
    for ax, n in zip(axes, chosen.tolist(), strict=False):
        sel = near & (pts.number == n)
        when = jd_to_datetime(c.epoch + n * c.period)
        ax.plot(pts.hours[sel], pts.flux[sel], ".", color="0.3", ms=3)
        _box(ax, c, half_width_h)
        ax.set_xlim(-half_width_h, half_width_h)
        ax.set_ylim(*ylim)
        ax.set_title(f"{when:%Y-%m-%d %H:%M} UTC (#{n})", fontsize="small")
        # Few ticks: the small panels are for the eye, and every tick costs drawing time.
        ax.locator_params(nbins=4)
        ax.tick_params(labelsize="x-small")


def _odd_even(axes: Sequence[Axes], c: Candidate, pts: _Points, half_width_h: float,
              ylim: tuple[float, float]) -> None:
    near = pts.within(half_width_h)
    in_transit = pts.within(c.duration * 12.0)
    odd = pts.number % 2 == 1
    for ax, parity, colour, name in ((axes[0], ~odd, "C0", "even"),
                                     (axes[1], odd, "C1", "odd")):
        ax.set_xlim(-half_width_h, half_width_h)
        ax.set_ylim(*ylim)
        ax.set_xlabel("hours from mid-transit")
        ax.axhline(1.0 - c.depth, color="C3", ls="--", lw=1, label="all transits")
        sel = near & parity
        ax.plot(pts.hours[sel], pts.flux[sel], ".", color=colour, ms=2, alpha=0.4)
        inside = in_transit & parity
        if not inside.any():
            ax.set_title(f"{name} transits", fontsize="medium")
            _no_points(ax, f"{_NO_POINTS} in an {name} transit")
            continue
        level = float(pts.flux[inside].mean())
        half = c.duration * 12.0
        ax.plot([-half, half], [level, level], "-", color=colour, lw=3,
                label=f"{name} mean in transit")
        ax.set_title(f"{name} transits: depth {100 * (1 - level):.2f} %"
                     f" ({int(inside.sum())} in transit)", fontsize="medium")
        ax.legend(loc="lower right", fontsize="x-small")
    axes[0].set_ylabel("relative flux")
    axes[1].tick_params(labelleft=False)
    axes[0].text(0.02, 0.97, f"odd/even: {_num(c.odd_even_sigma, '.1f')} sigma",
                 transform=axes[0].transAxes, va="top", fontsize="small")


def _num(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "n/a"


def _text_lines(c: Candidate, lc: StarLightCurve, npoints: int) -> list[tuple[str, str]]:
    """(line, colour) of the sheet's text block."""
    epoch_utc = (f"{jd_to_datetime(c.epoch):%Y-%m-%d %H:%M} UTC"
                 if math.isfinite(c.epoch) else "n/a")
    blend = (f"HIP {c.blend_hip} (S/N {_num(c.blend_snr, '.1f')})" if c.blend_hip
             else "none")
    lines = [
        f"HIP {c.hip}   candidate {c.rank}",
        f"camera      {c.camera}",
        f"points      {npoints} usable ({lc.camera})",
        f"V           {_num(c.vmag, '.2f')}",
        f"spectral    {c.sptype}",
        f"RA, Dec     {_num(c.ra, '.4f')}, {_num(c.dec, '+.4f')} deg",
        "",
        f"period      {_num(c.period, '.5f')} d",
        *([f"  or        {_periods(c.alias_periods)} d (the same transits)"]
          if c.alias_periods else []),
        f"epoch       JD {_num(c.epoch, '.5f')}",
        f"            {epoch_utc}",
        f"duration    {_num(c.duration * 24, '.2f')} h",
        f"depth       {_num(100 * c.depth, '.3f')} ± {_num(100 * c.depth_err, '.3f')} %",
        f"SDE         {_num(c.sde, '.1f')}",
        f"SNR         {_num(c.snr, '.1f')}",
        f"transits    {c.ntransits}",
        f"in transit  {_num(100 * c.in_transit_fraction, '.2f')} % of {c.npoints} bins",
        f"odd/even    {_num(c.odd_even_sigma, '.1f')} sigma",
        f"secondary   {_num(100 * c.secondary_depth, '.3f')} % "
        f"({_num(c.secondary_sigma, '.1f')} sigma)",
        f"ellipsoidal {_num(100 * c.ellipsoidal_amp, '.3f')} % "
        f"({_num(c.ellipsoidal_sigma, '.1f')} sigma)",
        f"blend       {blend}",
        "",
    ]
    out = [(line, "black") for line in lines]
    out.append(("vetting     " + ("PASSED" if c.passed else "FAILED"),
                "darkgreen" if c.passed else "darkred"))
    out += [(f"  {'PASS' if ok else 'FAIL'}  {name}", "darkgreen" if ok else "darkred")
            for name, ok in c.checks.items()]
    return out


def _periods(periods: Sequence[float]) -> str:
    """Days, comma-separated (empty for none)."""
    return ", ".join(f"{p:.5f}" for p in periods)


def _text_block(ax: Axes, c: Candidate, lc: StarLightCurve, npoints: int) -> None:
    ax.set_axis_off()
    lines = _text_lines(c, lc, npoints)
    step = min(0.033, 0.98 / len(lines))
    for i, (line, colour) in enumerate(lines):
        ax.text(0.0, 1.0 - i * step, line, transform=ax.transAxes, va="top",
                family="monospace", fontsize=11, color=colour,
                weight="bold" if i == 0 else "normal")


def render_sheet(path: Path, c: Candidate, lc: StarLightCurve, periods: np.ndarray,
                 sde: np.ndarray, *, durable: bool = False) -> Path:
    """Write the candidate's sheet as a PNG at ``path`` (whole or not at all; ``durable``
    as in :func:`~mascara_actors.figures.write_png`) and return ``path``.

    ``lc`` is the star's light curve (JD UTC, relative flux); ``periods`` (days) and ``sde``
    its periodogram. Points with a non-finite time or flux are left out; panels without a
    point say so.

    Raises
    ------
    ValueError
        The light curve is of another star than the candidate.
    """
    if lc.hip != c.hip:
        raise ValueError(f"the light curve is of HIP {lc.hip}, the candidate of HIP {c.hip}")
    pts = _Points.fold(c, lc)
    half_width_h = min(_FOLD_DURATIONS * c.duration * 24.0, c.period * 12.0)
    ylim = _flux_limits(c, pts.flux[pts.within(half_width_h)])

    fig = Figure(figsize=_FIGSIZE, dpi=_DPI)
    # Fixed margins rather than a layout engine, which would measure every text of the
    # sheet in an extra drawing pass and double the time a sheet takes.
    outer = fig.add_gridspec(3, 2, width_ratios=(3.2, 1), height_ratios=(1, 1.25, 1.25),
                             left=0.05, right=0.99, bottom=0.04, top=0.93, wspace=0.08,
                             hspace=0.3)
    _periodogram(fig.add_subplot(outer[0, 0]), c, periods, sde)
    middle = outer[1, 0].subgridspec(1, 3, width_ratios=(1.4, 1, 1), wspace=0.25)
    _fold_panel(fig.add_subplot(middle[0]), c, pts, half_width_h, ylim)
    even = fig.add_subplot(middle[1])
    _odd_even([even, fig.add_subplot(middle[2], sharey=even)], c, pts, half_width_h, ylim)
    bottom = outer[2, 0].subgridspec(2, _MAX_TRANSITS // 2, hspace=0.45, wspace=0.25)
    _transit_panels([fig.add_subplot(bottom[row, col]) for row in range(2)
                     for col in range(_MAX_TRANSITS // 2)], c, pts, ylim)
    _text_block(fig.add_subplot(outer[:, 1]), c, lc, len(pts.flux))
    verdict = "passed" if c.passed else "failed"
    fig.suptitle(f"HIP {c.hip} candidate {c.rank}: P = {_num(c.period, '.5f')} d, depth "
                 f"{_num(100 * c.depth, '.2f')} %, SDE {_num(c.sde, '.1f')}, vetting {verdict}",
                 fontsize="x-large")
    return write_png(fig, path, dpi=_DPI, durable=durable)


_CSS = ("body{font-family:sans-serif;margin:1em auto;max-width:1100px}"
        "table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}"
        "td.text,th{text-align:left}"
        "tr.passed{background:#d9f2d0;font-weight:bold}"
        ".failed{color:#a33}")


def _index_row(c: Candidate, sheet: str | None) -> str:
    hip = f"HIP {c.hip}"
    star = (f'<a href="{escape(quote(sheet))}">{escape(hip)}</a>' if sheet is not None
            else escape(hip))
    if c.passed:
        verdict = "passed"
    else:
        failed = ", ".join(name for name, ok in c.checks.items() if not ok)
        verdict = f'<span class="failed">failed: {escape(failed)}</span>'
    numbers = [str(c.rank), _num(c.vmag, ".2f"), _num(c.period, ".5f"),
               _periods(c.alias_periods), _num(100 * c.depth, ".2f"),
               _num(24 * c.duration, ".2f"), _num(c.sde, ".1f"), _num(c.snr, ".1f"),
               str(c.ntransits)]
    row_class = ' class="passed"' if c.passed else ""
    return (f'<tr{row_class}><td class="text">{star}</td>'
            f'<td class="text">{escape(c.camera)}</td>'
            + "".join(f"<td>{escape(v)}</td>" for v in numbers)
            + f'<td class="text">{verdict}</td></tr>')


def write_index(outdir: Path, rows: Sequence[Candidate],
                sheets: Mapping[tuple[int, int], str]) -> Path:
    """Write ``outdir/index.html`` (atomically): a self-contained page listing ``rows`` in
    the given order, each linked to its sheet when ``sheets`` (``(hip, rank)`` -> file name
    relative to ``outdir``) has one; rows that passed the vetting are highlighted."""
    title = "Transit candidates"
    npassed = sum(c.passed for c in rows)
    head = ["HIP", "camera", "rank", "V", "period (d)", "or (d)", "depth (%)",
            "duration (h)", "SDE", "SNR", "transits", "vetting"]
    out = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{escape(title)}</h1>",
        f'<p><span id="ncandidates">{len(rows)}</span> candidates, '
        f'<span id="npassed">{npassed}</span> passed the vetting (highlighted); '
        f"mascara-actors {escape(__version__)}.</p>",
        "<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>",
    ]
    out += [_index_row(c, sheets.get((c.hip, c.rank))) for c in rows]
    out += ["</table>", "</body>", "</html>", ""]
    return atomic_write_text(Path(outdir) / INDEX_HTML, "\n".join(out))
