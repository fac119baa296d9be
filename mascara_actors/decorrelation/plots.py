"""Plots of the fitted maps (matplotlib, Agg): transmission, intrapixel amplitudes, clouds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mascara_actors.storage.atomic import atomic_write_bytes
from mascara_actors.storage.calibrated import MapsFile

__all__ = ["write_plots"]


def _figure(width: float, height: float):  # type: ignore[no-untyped-def]
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue(), durable=False)


def _extent_of(values: np.ndarray, ha: np.ndarray, dec: np.ndarray
               ) -> tuple[slice, slice, list[float]]:
    """Rows and columns holding data, and their extent for imshow."""
    ok = np.isfinite(values)
    if values.ndim == 3:
        ok = ok.any(axis=2)
    rows = np.flatnonzero(ok.any(axis=1))
    cols = np.flatnonzero(ok.any(axis=0))
    if len(rows) == 0:
        return slice(0, 0), slice(0, 0), [0, 1, 0, 1]
    r, c = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    dh = ha[1] - ha[0] if len(ha) > 1 else 1.0
    dd = dec[1] - dec[0] if len(dec) > 1 else 1.0
    return r, c, [ha[c.start] - dh / 2, ha[c.stop - 1] + dh / 2,
                  dec[r.start] - dd / 2, dec[r.stop - 1] + dd / 2]


def write_plots(directory: str | Path, maps_path: str | Path) -> list[Path]:
    """``transmission.png``, ``intrapixel.png`` and ``clouds.png`` of a maps file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    with MapsFile(maps_path) as mf:
        head = mf.header
        cam = head.get("camera", "")
        trans = mf.group("transmission")
        ipx = mf.group("intrapix")
        clouds = mf.group("clouds")

    # transmission, relative to its median, in HA and dec
    values = trans["values"]
    r, c, extent = _extent_of(values, trans["ha"], trans["dec"])
    fig = _figure(9, 5)
    ax = fig.add_subplot()
    shown = values[r, c] - np.nanmedian(values)
    im = ax.imshow(shown, origin="lower", extent=extent, aspect="auto", cmap="viridis_r")
    fig.colorbar(im, ax=ax, label="T - median(T) [mag]")
    ax.set_xlabel("hour angle [deg]")
    ax.set_ylabel("declination [deg]")
    nights = len(head.get("nights", []))
    ax.set_title(f"{cam} camera transmission (vignetting + extinction), {nights} nights")
    out.append(_save(fig, directory / "transmission.png"))

    # intrapixel amplitudes along x and y
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
    out.append(_save(fig, directory / "intrapixel.png"))

    # clouds per patch and exposure, nights side by side
    vals = clouds["values"]
    seq = clouds["lstseq"]
    fig = _figure(12, 5)
    ax = fig.add_subplot()
    if vals.size:
        # a gap of more than an hour starts a new night: show the nights side by side
        order = np.argsort(clouds["patch"])
        im = ax.imshow(vals[:, order].T, origin="lower", aspect="auto", cmap="Greys",
                       vmin=-0.05, vmax=0.5, interpolation="nearest")
        breaks = np.flatnonzero(np.diff(seq) > 564)
        for b in breaks:
            ax.axvline(b + 0.5, color="tab:red", lw=0.8)
        fig.colorbar(im, ax=ax, label="clouds [mag]")
    ax.set_xlabel("exposure (nights separated by red lines)")
    ax.set_ylabel("sky patch (HEALPix nside 8)")
    ax.set_title(f"{cam} clouds per sky patch and exposure")
    out.append(_save(fig, directory / "clouds.png"))
    return out
