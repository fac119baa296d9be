"""Light-curve plot in the terminal: one character cell per (time, magnitude) bin."""

from __future__ import annotations

import numpy as np
from textual.widgets import Static

from tui.messages import LightCurve

__all__ = ["LightCurvePlot", "plot_text"]


def plot_text(x: np.ndarray, y: np.ndarray, width: int, height: int, *,
              flagged: np.ndarray | None = None, invert_y: bool = True) -> str:
    """Scatter plot of ``y`` against ``x`` as text, with the y range in a left margin.

    Good points are ``o``, flagged ones ``x`` (a good point wins a shared cell). With
    ``invert_y`` (magnitudes) bright is up. Non-finite points are left out.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    bad = np.zeros(x.shape, bool) if flagged is None else np.asarray(flagged, bool)
    ok = np.isfinite(x) & np.isfinite(y)
    margin = 8
    w, h = max(int(width) - margin, 1), max(int(height), 1)
    if not ok.any():
        return "(no finite points)"
    x, y, bad = x[ok], y[ok], bad[ok]
    y0, y1 = float(np.min(y)), float(np.max(y))
    x0, x1 = float(np.min(x)), float(np.max(x))
    col = np.zeros(x.size, int) if x1 == x0 else np.round((x - x0) / (x1 - x0) * (w - 1))
    frac = np.full(y.size, 0.5) if y1 == y0 else (y - y0) / (y1 - y0)
    row = np.round((frac if invert_y else 1.0 - frac) * (h - 1))
    grid = np.full((h, w), " ", dtype="<U1")
    # draw flagged first so good points overwrite them
    order = np.argsort(~bad)
    grid[row[order].astype(int), col[order].astype(int)] = np.where(bad[order], "x", "o")
    top, bottom = (y0, y1) if invert_y else (y1, y0)
    labels = [""] * h
    labels[0], labels[-1] = f"{top:7.3f}", f"{bottom:7.3f}"
    return "\n".join(f"{lab:>7} " + "".join(r) for lab, r in zip(labels, grid, strict=True))


class LightCurvePlot(Static):
    """The light curve of one star (magnitude against hours since its first point)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.curve: LightCurve | None = None

    def set_curve(self, curve: LightCurve | None) -> None:
        self.curve = curve
        self.redraw()

    def redraw(self) -> None:
        if self.curve is None:
            self.update("")
            return
        c = self.curve
        w, h = self.content_size.width, max(self.content_size.height - 1, 1)
        hours = (c.jd - np.nanmin(c.jd)) * 24.0 if c.jd.size else c.jd
        plot = plot_text(hours, c.mag, max(w, 20), h, flagged=c.flagged)
        span = float(np.nanmax(hours)) if hours.size else 0.0
        self.update(f"{plot}\n{'':8}0 h {'-' * max(w - 24, 1)} {span:.2f} h")

    def on_resize(self) -> None:
        self.redraw()
