"""Messages between actors: small frozen values (a path and a header, never a raw frame)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mascara_actors.astrometry import AstrometricSolution

__all__ = ["FrameReady", "FrameReduced"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameReady:
    """A raw science frame is on disk (the raw archive is the spool)."""

    path: Path
    lstseq: int
    arrived: float
    """Wall-clock time (time.time()) the frame reached the pipeline, for latency."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameReduced:
    """The fast photometry of one frame, for the saver and the binner."""

    lstseq: int
    setidx: int
    path: Path
    """The raw frame (the binner reads it again in its worker)."""
    records: np.ndarray
    """Fast records with ``id`` (a few hundred kB; in-process, never pickled to disk)."""
    station: np.ndarray
    """One station row."""
    solution: AstrometricSolution
    """The set's astrometric solution the positions came from."""
