"""What a calibration did, and its JSON report (``report_{stem}.json``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

import numpy as np

from mascara_actors import __version__
from mascara_actors.decorrelation.settings import DecorrelationSettings
from mascara_actors.storage.state import write_json_state

__all__ = ["CalibrationResult", "write_report"]


@dataclass
class CalibrationResult:
    """What :func:`~mascara_actors.decorrelation.calibrate_baseline` did and wrote."""

    baseline: Path
    outdir: Path
    converged: bool = False
    iterations: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    """Per outer iteration: changes of the maps, chi-square, points used and left out."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Points left out, by reason."""
    dropped_stars: dict[str, list[int]] = field(default_factory=dict)
    """Stars left out (HIP numbers), by reason."""
    nstars: int = 0
    npoints: int = 0
    calibrated_file: Path | None = None
    maps_file: Path | None = None
    plots: list[Path] = field(default_factory=list)
    report_file: Path | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        """A few lines for the terminal: what was fitted and what was dropped."""
        lines = [f"{self.nstars} stars, {self.npoints} points, "
                 f"{'converged' if self.converged else 'NOT converged'} after "
                 f"{self.iterations} iterations ({self.seconds:.0f} s)"]
        lines += [f"dropped {n} {reason}" for reason, n in self.dropped.items() if n]
        return "\n".join(lines)


def _plain(value: object) -> object:
    """``value`` as plain JSON (NaN and infinities as null)."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(path: Path, result: CalibrationResult, settings: DecorrelationSettings
                 ) -> Path:
    """The calibration report as JSON: status, iterations, what was dropped, files."""
    r = result
    doc: dict[str, object] = {
        "status": "converged" if r.converged else "not converged",
        "baseline": r.baseline, "iterations": r.iterations, "history": r.history,
        "nstars": r.nstars, "npoints": r.npoints, "seconds": round(r.seconds, 1),
        "dropped": r.dropped,
        "dropped_stars": {k: {"count": len(v), "ids": v[:1000]}
                          for k, v in r.dropped_stars.items()},
        "files": {"calibrated": r.calibrated_file, "maps": r.maps_file, "plots": r.plots},
        "settings": settings,
        "software_version": __version__,
    }
    return write_json_state(path, {key: _plain(value) for key, value in doc.items()})
