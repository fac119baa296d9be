"""The station summary's sky map (matplotlib, object API as in :mod:`.plots`).

:func:`station_sky_map` draws two all-sky Mollweide panels of one night: where each camera
looked (its stars, one colour per camera, :data:`CAMERA_COLOURS`) and what it measured (the
same stars coloured by their number of points in the fast nightly file). Right ascension
grows to the left, as on the sky; 0 h is in the middle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mascara_actors.figures import png_bytes
from mascara_actors.summary.plots import _DPI

__all__ = ["CAMERA_COLOURS", "CameraSky", "camera_colour", "station_sky_map"]

CAMERA_COLOURS = {
    "N": "#1f77b4",  # blue
    "E": "#ff7f0e",  # orange
    "S": "#2ca02c",  # green
    "W": "#d62728",  # red
    "C": "#9467bd",  # purple
}
"""Colour of each camera letter on the sky map (matplotlib's tab10, far from viridis)."""

_OTHER_COLOUR = "#7f7f7f"


def camera_colour(camera: str) -> str:
    """The sky-map colour of a camera id such as ``LPN`` (by its last letter), grey when the
    letter is not one of N, E, S, W, C."""
    return CAMERA_COLOURS.get(camera[-1:], _OTHER_COLOUR)


@dataclass(frozen=True, slots=True)
class CameraSky:
    """The stars of one camera's fast nightly file."""

    camera: str
    """Camera id, e.g. ``LPN``."""
    ra_deg: np.ndarray
    """Right ascension (ICRS, J2000), degrees."""
    dec_deg: np.ndarray
    """Declination (ICRS, J2000), degrees."""
    nobs: np.ndarray
    """Points of each star in the nightly file."""


def _xy(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mollweide axes coordinates, radians: RA wrapped to (-180, 180] deg and mirrored, so
    that east is on the left as on the sky."""
    lon = (np.asarray(ra_deg, dtype=float) + 180.0) % 360.0 - 180.0
    return -np.radians(lon), np.radians(np.asarray(dec_deg, dtype=float))


def _sky_axes(ax: Axes, title: str) -> None:
    ticks = np.arange(-120, 121, 60)
    ax.set_xticks(np.radians(ticks))
    ax.set_xticklabels([f"{(-t % 360) // 15:.0f}h" for t in ticks], fontsize="small")
    ax.tick_params(axis="y", labelsize="small")
    ax.grid(True, color="#cccccc", linewidth=0.5)
    ax.set_title(title, fontsize="medium", pad=12)


def _label(ax: Axes, sky: CameraSky, text: str, colour: str) -> None:
    """``text`` at the middle of the camera's stars (circular mean RA, median Dec): the map's
    legend, written where the camera looked."""
    ra = np.radians(sky.ra_deg)
    mean_ra = np.degrees(np.arctan2(np.sin(ra).mean(), np.cos(ra).mean()))
    x, y = _xy(np.array([mean_ra]), np.array([np.median(sky.dec_deg)]))
    ax.text(float(x[0]), float(y[0]), text, ha="center", va="center", fontsize="medium",
            fontweight="bold", color=colour,
            path_effects=[patheffects.withStroke(linewidth=3, foreground="white")])


def station_sky_map(skies: Sequence[CameraSky], *, title: str = "") -> bytes:
    """Where each camera looked and what it measured, as a PNG.

    Parameters
    ----------
    skies : sequence of CameraSky
        One per camera; a camera with no stars (no nightly file) is named in the top
        panel's note instead.
    title : str
        Figure title (e.g. ``Station 20260320LP``).

    Returns
    -------
    bytes
        PNG of 800 x 880 pixels: top panel one colour per camera, each camera named (with
        its number of stars) in its colour amid its stars; bottom panel the points per star
        (viridis, with a colour bar).
    """
    fig = Figure(figsize=(10, 11))
    top = fig.add_subplot(2, 1, 1, projection="mollweide")
    bottom = fig.add_subplot(2, 1, 2, projection="mollweide")
    _sky_axes(top, "Where each camera looked (its stars, one colour per camera)")
    _sky_axes(bottom, "What it measured (points per star in the fast nightly file)")
    with_stars = [s for s in skies if len(s.ra_deg)]
    without = [s.camera for s in skies if not len(s.ra_deg)]
    for sky in with_stars:
        x, y = _xy(sky.ra_deg, sky.dec_deg)
        # opaque, edgeless markers: each camera keeps exactly its colour (the tests count it)
        top.scatter(x, y, s=6, c=camera_colour(sky.camera), linewidths=0)
    for sky in with_stars:  # over every camera's stars, so that no label is hidden
        _label(top, sky, f"{sky.camera} ({len(sky.ra_deg)})", camera_colour(sky.camera))
    if with_stars:
        x = np.concatenate([_xy(s.ra_deg, s.dec_deg)[0] for s in with_stars])
        y = np.concatenate([_xy(s.ra_deg, s.dec_deg)[1] for s in with_stars])
        nobs = np.concatenate([np.asarray(s.nobs, dtype=float) for s in with_stars])
        points = bottom.scatter(x, y, s=6, c=nobs, cmap="viridis", linewidths=0,
                                vmin=0.0, vmax=max(float(nobs.max()), 1.0))
        fig.colorbar(points, ax=bottom, orientation="horizontal", fraction=0.05, pad=0.06,
                     label="points per star")
        for sky in with_stars:
            _label(bottom, sky, sky.camera, "black")
    else:
        for ax in (top, bottom):
            ax.text(0.0, 0.0, "no star measured by any camera", ha="center", va="center")
    if without:
        top.text(0.0, -0.12, "no stars: " + ", ".join(without), transform=top.transAxes,
                 fontsize="small")
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.04, right=0.96, top=0.93, bottom=0.05, hspace=0.25)
    return png_bytes(fig, dpi=_DPI)
