"""One camera-night of an archive as a task on Dask: what it is given and what it gives back.

The reduction itself is :func:`mascara_actors.app.archive.night.reduce_camera_night`; this
module stays light, so that the client that submits the tasks starts without importing the
pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mascara_actors.app.archive.scan import CameraNight

__all__ = ["STATUSES", "NightOutcome", "NightTask", "frames_changed"]

STATUSES = ("reduced", "verified", "stopped", "incomplete", "failed", "not started")
"""An outcome's status: reduced by this run; complete before and verified (not reduced);
stopped at a set's end by the run's stop; ran to its end with products missing; refused or
failed (the error says why); not begun because the run was stopping."""


@dataclass(frozen=True, slots=True)
class NightTask:
    """What a worker needs to reduce one camera-night (picklable, paths on a shared disk)."""

    night: CameraNight
    out: Path
    config_dir: Path
    command: tuple[str, ...]
    stop_file: Path
    """Its existence asks the night to stop at the end of its current set."""
    archive_root: Path
    thorough: bool = False
    """Hash every product of a complete night to verify it, not only those whose size or
    modification time differ from the record's."""


@dataclass(frozen=True, slots=True)
class NightOutcome:
    """One row of the run's manifest."""

    night: str
    camera: str
    status: str
    """One of :data:`STATUSES`."""
    frames: int
    """Science frames of the night in the archive."""
    reduced: int = 0
    """Frames reduced by this run."""
    failed: int = 0
    """Frames that failed in this run (unreadable, no stars...)."""
    warnings: int = 0
    """Warnings this run logged for the night (no dark of its own, calibration frames left
    out, a resumed night...): its report lists them."""
    wall_s: float = 0.0
    worker: str = ""
    error: str = ""

    @property
    def key(self) -> str:
        return f"{self.night}{self.camera}"


def frames_changed(night: CameraNight, recorded: int) -> str:
    """Why a night recorded complete from ``recorded`` science frames no longer matches the
    archive ("" when it does): frames of it added (a copy still arriving, a directory
    found later) or taken away since. Its products would be verified and kept, though they
    are not those of the frames there are now."""
    if night.science == recorded:
        return ""
    return (f"it was reduced complete from {recorded} science frames, and the archive now "
            f"holds {night.science}: move {night.key} out of the output directory (or reduce "
            "into another --out) to reduce the night again")
