"""PNG figures of the night summary (matplotlib).

Figures are built with the object API (``Figure``, never ``pyplot``), so they render with
the Agg canvas, need no display and leave matplotlib's global backend alone.

- :func:`light_curve_overview`: flux per second of the stars in a V range against UTC (the
  seed's ``light_curve_overview``, default 4.75 <= V <= 4.8); when no star is in the range,
  the stars nearest to it in V, with a note saying so.
- :func:`night_diagnostics`: stars per frame, astrometric residual, sky, CCD temperature,
  transmission and cloud fraction, latency, against UTC.
- :func:`transmission_map`: an image of a transmission-map FITS file, when there is one.

Each function returns the PNG as bytes; writing files is the caller's business.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mascara_actors.errors import StorageError
from mascara_actors.figures import png_bytes
from mascara_actors.sidereal import lstseq2date
from mascara_actors.storage import NightFile
from mascara_actors.summary.report import NightSummary

__all__ = [
    "DEFAULT_MAG_RANGE",
    "Overview",
    "find_transmission_map",
    "light_curve_overview",
    "night_diagnostics",
    "slot_utc",
    "transmission_map",
    "utc_axis",
]

log = logging.getLogger(__name__)

DEFAULT_MAG_RANGE = (4.75, 4.8)
"""V range of the light-curve overview (the seed's default), mag."""

_DPI = 80


@dataclass(frozen=True, slots=True)
class Overview:
    """The light-curve overview figure and what it shows."""

    png: bytes
    star_ids: tuple[int, ...]
    """HIP numbers plotted."""
    mag_range: tuple[float, float]
    """V range of the stars plotted, mag."""
    note: str
    """Empty when the requested range held stars; else why another range is shown."""


def slot_utc(lstseq: np.ndarray) -> np.ndarray:
    """UTC start of each slot, datetime64[us]."""
    if len(lstseq) == 0:
        return np.empty(0, dtype="datetime64[us]")
    return np.asarray(lstseq2date(np.asarray(lstseq, dtype=np.int64), format="calendar"))


def utc_axis(ax: Axes) -> None:
    """Label the x axis in UTC hours and minutes."""
    # matplotlib.dates carries no annotations (its other modules do)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    ax.set_xlabel("UTC")


def light_curve_overview(
    nightfile: NightFile,
    mag_range: tuple[float, float] = DEFAULT_MAG_RANGE,
    *,
    max_stars: int = 8,
    fallback_stars: int = 5,
) -> Overview:
    """Flux per second (aperture 0) against UTC of the stars with V in ``mag_range``.

    Parameters
    ----------
    nightfile : NightFile
        An open fast nightly file.
    mag_range : (float, float)
        Inclusive V range, mag.
    max_stars : int
        At most this many stars (the first in V order).
    fallback_stars : int
        When the range is empty, plot this many stars nearest to its centre in V.

    Returns
    -------
    Overview
    """
    lo, hi = sorted(float(m) for m in mag_range)
    stars = nightfile.stars
    vmag = stars["vmag"].astype(float) if len(stars) else np.empty(0)
    inside = np.flatnonzero((vmag >= lo) & (vmag <= hi))
    note = ""
    if len(inside):
        chosen = inside[np.argsort(vmag[inside], kind="stable")][:max_stars]
    elif len(vmag):
        chosen = np.sort(np.argsort(np.abs(vmag - 0.5 * (lo + hi)), kind="stable")[
            :fallback_stars])
        chosen = chosen[np.argsort(vmag[chosen], kind="stable")]
        note = (f"no star with {lo:.2f} <= V <= {hi:.2f} in this night; showing the "
                f"{len(chosen)} nearest in V ({vmag[chosen].min():.2f} - "
                f"{vmag[chosen].max():.2f})")
    else:
        chosen = np.empty(0, dtype=int)
        note = "no star in the nightly file"
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    for i in chosen:
        star = stars[i]
        lc = nightfile.lightcurve(int(star["id"]), ["lstseq", "flux0", "exptime", "pflag"])
        good = (lc["pflag"] == 0) & (lc["exptime"] > 0)
        ax.plot(slot_utc(lc["lstseq"][good]), lc["flux0"][good] / lc["exptime"][good], ".",
                ms=3, label=f"HIP {int(star['id'])} V={float(star['vmag']):.2f}")
    if len(chosen):
        ax.legend(fontsize="small", loc="best")
        shown = (float(vmag[chosen].min()), float(vmag[chosen].max()))
    else:
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes)
        shown = (lo, hi)
    ax.set_ylabel("flux0 / exptime (ADU/s)")
    ax.set_title(f"Light curves, {shown[0]:.2f} <= V <= {shown[1]:.2f}"
                 + (" (fallback range)" if note and len(chosen) else ""))
    utc_axis(ax)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.92, bottom=0.11)
    return Overview(png=png_bytes(fig, dpi=_DPI),
                    star_ids=tuple(int(stars[i]["id"]) for i in chosen), mag_range=shown,
                    note=note)


def night_diagnostics(summary: NightSummary) -> bytes:
    """Six panels against UTC: stars per frame, astrometry residual, sky, CCD temperature,
    transmission / cloud fraction, latency.

    Parameters
    ----------
    summary : NightSummary
        From :func:`~mascara_actors.summary.report.collect_summary`.

    Returns
    -------
    bytes
        PNG; panels without data say so.
    """
    s = summary
    t = slot_utc(s.frame_lstseq)
    fig = Figure(figsize=(9, 10))
    axes = fig.subplots(6, 1, sharex=True)

    def panel(ax: Axes, x: np.ndarray, ys: list[tuple[np.ndarray, str, str]],
              ylabel: str) -> None:
        if len(x) == 0:
            ax.text(0.5, 0.5, "no data", ha="center", va="center",
                    transform=ax.transAxes)
        for y, style, label in ys:
            ax.plot(x, y, style, ms=3, label=label)
        if len(ys) > 1 and len(x):
            ax.legend(fontsize="small", loc="best")
        ax.set_ylabel(ylabel, fontsize="small")

    panel(axes[0], t, [(s.frame_nstars, "k.", "measured"),
                       (s.frame_nflagged, "r.", "flagged")], "stars / frame")
    panel(axes[1], slot_utc(s.astro_lstseq), [(s.astro_dr, "bo", "dr")],
          "astrometry RMS (px)")
    panel(axes[2], t, [(s.frame_sky, "g.", "sky")], "sky (ADU/px)")
    panel(axes[3], t, [(s.frame_ccdtemp, "m.", "ccdtemp")], "CCD temp (deg C)")
    w = s.weather
    if w is not None and len(w.lstseq):
        panel(axes[4], slot_utc(w.lstseq), [(w.transmission, "b.", "transmission"),
                                        (w.cloud_fraction, "r.", "cloud fraction")],
              "weather proxy")
        axes[4].set_ylim(-0.05, max(1.2, float(np.nanmax(w.transmission)) + 0.05))
    else:
        panel(axes[4], np.empty(0), [], "weather proxy")
    panel(axes[5], t, [(s.frame_latency_s, "k.", "latency")], "latency (s)")
    utc_axis(axes[5])
    fig.suptitle(f"Night diagnostics {s.tag}")
    # fixed margins: tight_layout would draw the six date axes once more (twice the time)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.95, bottom=0.05, hspace=0.12)
    return png_bytes(fig, dpi=_DPI)


def find_transmission_map(night_dir: str | Path) -> Path | None:
    """The newest ``*trans*.fits`` (or ``.fits.gz``) in the night directory tree, or None."""
    found = [p for pat in ("*trans*.fits", "*trans*.fits.gz")
             for p in Path(night_dir).rglob(pat) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def transmission_map(path: str | Path) -> bytes:
    """The first image of a transmission-map FITS, scaled to its 0.1-99.9 percentiles.

    Reads the layout of :mod:`mascara_actors.transmission` (primary HDU of shape
    ``(naper, ny_cells, nx_cells)`` in magnitudes, ``BUNIT = 'mag'``, cell sizes ``CELLX``,
    ``CELLY`` in pixels): the first plane is drawn as transmission ``10**(-0.4 dmag)``. A
    plain 2-D image without ``BUNIT = 'mag'`` is drawn as it is.

    Raises
    ------
    StorageError
        The file is unreadable or holds no 2-D or 3-D image.
    """
    from astropy.io import fits

    path = Path(path)
    try:
        with fits.open(path) as hdul:
            hdu = next((h for h in hdul if h.data is not None and np.ndim(h.data) in (2, 3)),
                       None)
            if hdu is not None:
                data = np.asarray(hdu.data, dtype=float)
                header = dict(hdu.header)
    except OSError as exc:
        raise StorageError(f"cannot read transmission map {path}: {exc}") from exc
    if hdu is None:
        raise StorageError(f"{path} holds no 2-D image: a transmission map is one image HDU")
    if data.ndim == 3:
        data = data[0]
    label = "transmission"
    if str(header.get("BUNIT", "")).strip().lower() == "mag":
        data = 10.0 ** (-0.4 * data)
        label = "transmission (median cell = 1)"
    ny, nx = data.shape
    cellx, celly = float(header.get("CELLX", 1.0)), float(header.get("CELLY", 1.0))
    finite = data[np.isfinite(data)]
    vmin, vmax = (np.percentile(finite, [0.1, 99.9]) if len(finite) else (0.0, 1.0))
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    im = ax.imshow(data, origin="lower", vmin=vmin, vmax=vmax, cmap="viridis",
                   extent=(0, nx * cellx, 0, ny * celly), aspect="equal")
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(f"Transmission map ({path.name})")
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    return png_bytes(fig, dpi=_DPI)
