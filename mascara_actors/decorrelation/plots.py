"""Plots of the fitted maps (matplotlib object API): transmission, intrapixel amplitudes,
clouds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mascara_actors.figures import write_png
from mascara_actors.storage.calibrated import MapsFile

__all__ = ["write_plots"]

_NIGHT_GAP_SLOTS = 564
"""A gap of more than an hour (564 slots) between exposures starts a new night."""


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _extent_of(values: np.ndarray, ha: np.ndarray, dec: np.ndarray
               ) -> tuple[slice, slice, tuple[float, float, float, float]]:
    """Rows and columns holding data, and their extent for imshow."""
    ok = np.isfinite(values)
    if values.ndim == 3:
        ok = ok.any(axis=2)
    rows = np.flatnonzero(ok.any(axis=1))
    cols = np.flatnonzero(ok.any(axis=0))
    if len(rows) == 0:
        return slice(0, 0), slice(0, 0), (0.0, 1.0, 0.0, 1.0)
    r, c = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    dh = ha[1] - ha[0] if len(ha) > 1 else 1.0
    dd = dec[1] - dec[0] if len(dec) > 1 else 1.0
    return r, c, (float(ha[c.start] - dh / 2), float(ha[c.stop - 1] + dh / 2),
                  float(dec[r.start] - dd / 2), float(dec[r.stop - 1] + dd / 2))


def _transmission(trans: dict[str, Any], title: str) -> Figure:
    """T relative to its median, in HA and dec."""
    values = trans["values"]
    r, c, extent = _extent_of(values, trans["ha"], trans["dec"])
    fig = _figure(9, 5)
    ax = fig.add_subplot()
    shown = values[r, c] - np.nanmedian(values)
    im = ax.imshow(shown, origin="lower", extent=extent, aspect="auto", cmap="viridis_r")
    fig.colorbar(im, ax=ax, label="T - median(T) [mag]")
    ax.set_xlabel("hour angle [deg]")
    ax.set_ylabel("declination [deg]")
    ax.set_title(title)
    return fig


def _intrapixel(ipx: dict[str, Any]) -> Figure:
    """Intrapixel amplitudes along x and y."""
    amp = ipx["amplitudes"]
    ha_c = 0.5 * (ipx["ha_edges"][1:] + ipx["ha_edges"][:-1])
    dec_c = 0.5 * (ipx["dec_edges"][1:] + ipx["dec_edges"][:-1])
    r, c, extent = _extent_of(amp, ha_c, dec_c)
    fig = _figure(12, 4.5)
    for k, (name, i) in enumerate((("x", 0), ("y", 2))):
        ax = fig.add_subplot(1, 2, k + 1)
        a = np.hypot(amp[r, c, i], amp[r, c, i + 1]) * 1e3
        im = ax.imshow(a, origin="lower", extent=extent, aspect="auto", cmap="magma")
        fig.colorbar(im, ax=ax, label="amplitude [mmag]")
        ax.set_xlabel("hour angle [deg]")
        ax.set_ylabel("declination [deg]")
        ax.set_title(f"intrapixel amplitude along {name}")
    return fig


def _clouds(clouds: dict[str, Any], title: str) -> Figure:
    """Clouds per patch and exposure, nights side by side."""
    vals = clouds["values"]
    fig = _figure(12, 5)
    ax = fig.add_subplot()
    if vals.size:
        order = np.argsort(clouds["patch"])
        im = ax.imshow(vals[:, order].T, origin="lower", aspect="auto", cmap="Greys",
                       vmin=-0.05, vmax=0.5, interpolation="nearest")
        for b in np.flatnonzero(np.diff(clouds["lstseq"]) > _NIGHT_GAP_SLOTS):
            ax.axvline(b + 0.5, color="tab:red", lw=0.8)
        fig.colorbar(im, ax=ax, label="clouds [mag]")
    ax.set_xlabel("exposure (nights separated by red lines)")
    ax.set_ylabel("sky patch (HEALPix nside 8)")
    ax.set_title(title)
    return fig


def write_plots(directory: str | Path, maps_path: str | Path) -> list[Path]:
    """``transmission.png``, ``intrapixel.png`` and ``clouds.png`` of a maps file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with MapsFile(maps_path) as mf:
        head = mf.header
        trans, ipx, clouds = mf.group("transmission"), mf.group("intrapix"), mf.group("clouds")
    cam = head.get("camera", "")
    nights = len(head.get("nights", []))
    figures = {
        "transmission.png": _transmission(
            trans, f"{cam} camera transmission (vignetting + extinction), {nights} nights"),
        "intrapixel.png": _intrapixel(ipx),
        "clouds.png": _clouds(clouds, f"{cam} clouds per sky patch and exposure"),
    }
    return [write_png(fig, directory / name, durable=False) for name, fig in figures.items()]
