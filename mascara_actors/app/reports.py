"""What a station night did: its calibration sequences and its report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mascara_actors.actors.pipeline import NightReport
from mascara_actors.calibration import Masters
from mascara_actors.config import Config
from mascara_actors.night_window import NightWindow
from mascara_actors.rawframe import parse_raw_filename

__all__ = ["KINDS", "CalibrationRun", "StationReport", "calibration_start"]

KINDS = ("bias", "dark", "flat")
"""The calibration frames of a sequence, in the order they are taken."""


@dataclass(frozen=True, slots=True)
class CalibrationRun:
    """One calibration sequence the station took."""

    when: str
    """``dusk``, ``start`` (darks first: started in the night with no master dark), ``operator``
    (darks asked for in the night) or ``dawn``."""
    frames: dict[str, list[Path]]
    """Raw frames written, by kind (``bias``, ``dark``, ``flat``)."""
    masters: Masters
    """The masters made from them (and the dark-table fallback)."""

    @property
    def lstseqs(self) -> tuple[int, int] | None:
        """First and last slot of the sequence, None if no frame came."""
        names = (parse_raw_filename(p.name) for paths in self.frames.values() for p in paths)
        seqs = [name[0] for name in names if name is not None]
        return (min(seqs), max(seqs)) if seqs else None


@dataclass
class StationReport:
    """What a station night did."""

    window: NightWindow
    night_dir: Path
    calibrations: list[CalibrationRun] = field(default_factory=list)
    science: NightReport | None = None
    summary_html: Path | None = None
    stopped_by: str | None = None
    """Name of the signal that stopped the night for a restart, if one did."""
    camera_lost: str | None = None
    """Why the night ended early when the camera stayed away (which camera, since when, what
    to check); None when it did not."""

    @property
    def ok(self) -> bool:
        """True when the night was reduced completely (every set's products, the nightly
        files)."""
        return self.science is not None and self.science.ok


def calibration_start(window: NightWindow, config: Config, *, lead_slots: int = 2) -> int:
    """First slot of the dusk calibration sequence of ``window``.

    The sequence (``n_bias + n_dark + n_flat`` frames, each kind armed after the previous
    one, a few slots apart) ends ``calibration_gap_slots`` before the first science slot.
    """
    cal = config.reduction.calibration
    gap = config.reduction.night.calibration_gap_slots
    n_cal = cal.n_bias + cal.n_dark + cal.n_flat
    return window.start_lstseq - gap - n_cal - len(KINDS) * (lead_slots + 1)
