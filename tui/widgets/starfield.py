"""Star-field preview: the latest frame, downsampled to character cells."""

from __future__ import annotations

import numpy as np
from textual.widgets import Static

__all__ = ["StarField", "starfield_text"]

_RAMP = " .:-=+*#%@"


def starfield_text(image: np.ndarray, width: int, height: int) -> str:
    """``image`` as ``height`` lines of ``width`` characters, brightest pixel of each cell.

    Each cell shows the maximum of its block (stars are a few pixels wide and would vanish
    in a mean), scaled between the 50th and 99.9th percentile of the cell maxima on a
    square-root stretch.
    """
    width, height = max(int(width), 1), max(int(height), 1)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2 or img.size == 0:
        return "\n".join(" " * width for _ in range(height))
    ny, nx = img.shape
    # cell edges: every cell gets at least one pixel row/column
    ye = np.linspace(0, ny, min(height, ny) + 1).astype(int)
    xe = np.linspace(0, nx, min(width, nx) + 1).astype(int)
    cells = np.maximum.reduceat(np.maximum.reduceat(img, ye[:-1], axis=0), xe[:-1], axis=1)
    lo, hi = np.nanpercentile(cells, [50.0, 99.9])
    scaled = np.sqrt(np.clip((cells - lo) / max(hi - lo, 1e-6), 0.0, 1.0))
    idx = np.minimum((scaled * len(_RAMP)).astype(int), len(_RAMP) - 1)
    chars = np.array(list(_RAMP))[idx]
    lines = ["".join(row).ljust(width) for row in chars]
    lines += [" " * width] * (height - len(lines))
    return "\n".join(lines)


class StarField(Static):
    """The latest frame's science region at the widget's size (redrawn when a frame comes)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__("(no frame yet)", **kwargs)  # type: ignore[arg-type]
        self.image: np.ndarray | None = None
        self.caption = ""

    def set_image(self, image: np.ndarray | None, caption: str) -> None:
        """Show ``image`` (science region, ADU) with ``caption`` as the border title."""
        self.image, self.caption = image, caption
        self.border_title = caption
        self.redraw()

    def redraw(self) -> None:
        if self.image is None:
            return
        w, h = self.content_size.width, self.content_size.height
        if w < 1 or h < 1:
            return
        self.update(starfield_text(self.image, w, h))

    def on_resize(self) -> None:
        self.redraw()
