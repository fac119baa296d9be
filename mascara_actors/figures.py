"""Matplotlib figures as PNG: bytes for a report, or a file written whole (atomically).

Figures are built with the object API (``matplotlib.figure.Figure``, never ``pyplot``), so
they render with the Agg canvas, need no display and leave the global backend alone.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from mascara_actors.atomic_files import atomic_write_bytes

__all__ = ["png_bytes", "write_png"]


def png_bytes(fig: Figure, *, dpi: float = 100) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def write_png(fig: Figure, path: str | Path, *, dpi: float = 100, durable: bool = True
              ) -> Path:
    """Write the figure as a PNG file, whole or not at all (see
    :func:`~mascara_actors.atomic_files.atomic_write_bytes` for ``durable``)."""
    return atomic_write_bytes(Path(path), png_bytes(fig, dpi=dpi), durable=durable)
