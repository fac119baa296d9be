"""Cloud map: the clouds of the latest calibrated set over the camera's sky patches.

Each sky patch (HEALPix nside 8, about 7 degrees across) is one cell, in rows of equal
declination (north up) and, along a row, by right ascension (east left, as on the sky).
"""

from __future__ import annotations

import math

import numpy as np
from textual.widgets import Static

from mascara_actors.decorrelation.sky import patch_centres
from tui.messages import Snapshot

__all__ = ["CloudMap", "cloud_map_text"]

_SHADES = ((0.05, "··"), (0.15, "░░"), (0.3, "▒▒"), (0.6, "▓▓"), (math.inf, "██"))
"""Upper bound of the clouds (mag) of each shade."""
LEGEND = "·· <0.05 ░░ <0.15 ▒▒ <0.3\n▓▓ <0.6 ██ thicker (mag)"


def _shade(value: float) -> str:
    return next(s for bound, s in _SHADES if value < bound)


def cloud_map_text(calibration: str, setidx: int | None,
                   clouds: tuple[tuple[int, float], ...]) -> str:
    """The cloud map as lines of text of at most 32 characters for a camera's patches (a
    note instead when there is no map yet)."""
    if not calibration:
        return "no calibration: the light\ncurves stay raw tonight"
    if setidx is None or not clouds:
        return "calibrated: no set yet"
    patches = np.array([q for q, _ in clouds], np.int64)
    values = np.array([c for _, c in clouds], float)
    ra, dec = patch_centres(patches)
    ring = np.round(dec, 3)
    lines = [f"set {setidx}: {len(patches)} patches", f"median {np.median(values):+.2f} mag"]
    for d in sorted(set(ring.tolist()), reverse=True):
        row = np.flatnonzero(ring == d)
        row = row[np.argsort(-ra[row])]  # east (larger RA) on the left
        lines.append(f"{d:+5.0f} " + " ".join(_shade(v) for v in values[row].tolist()))
    lines.append(LEGEND)
    return "\n".join(lines)


class CloudMap(Static):
    """The latest set's clouds (live calibration), redrawn from each snapshot."""

    def show(self, snap: Snapshot) -> None:
        self.update(cloud_map_text(snap.calibration, snap.clouds_setidx, snap.clouds))
