"""The numbers of the station report: one :class:`CameraRow` per camera of a night.

:func:`camera_row` reads a camera-night directory ``OUT/{night}{SITE}{CAM}/`` through
:func:`~.report.collect_summary` (event log, fast nightly file) and the stars of its fast
nightly file for the sky map. A camera with no night directory, no event log or no nightly
file gets a row saying so; nothing here raises for a bad night.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mascara_actors.errors import StorageError
from mascara_actors.storage import NightFile, NightId, nightly_file_path
from mascara_actors.storage.layout import report_path, summary_dir
from mascara_actors.summary.report import NightSummary, collect_summary
from mascara_actors.summary.station_plots import CameraSky

__all__ = ["STATUSES", "CameraRow", "camera_row"]

log = logging.getLogger(__name__)

STATUSES = ("complete", "not finished", "incomplete", "no nightly file", "no night",
            "unreadable")
"""What :attr:`CameraRow.status` may say, best first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraRow:
    """One camera's line of the station report."""

    camera: str
    """Camera id, e.g. ``LPN``."""
    night_dir: Path
    status: str
    """One of :data:`STATUSES`."""
    summary: NightSummary | None = None
    """None when the night directory does not exist (or could not be read)."""
    nightly_files: tuple[tuple[str, bool], ...] = ()
    """(kind, exists) of the fast and slow nightly files."""
    camera_summary: Path | None = None
    """The camera's own summary page, when it was written."""
    sky: CameraSky | None = None
    """Its stars, from the fast nightly file (None without one)."""
    note: str = ""
    """Why the row is short of numbers or the night not complete, when it is."""

    @property
    def restarts(self) -> int:
        """Runs of the night after the first (a restarted night resumes: one more run), from
        the event log."""
        return max(self.summary.runs - 1, 0) if self.summary is not None else 0


def camera_row(out_dir: str | Path, night: str, site: str, camera: str, *,
               weather: bool = True) -> CameraRow:
    """The row of one camera's night; never raises for a bad or missing night.

    Parameters
    ----------
    out_dir : path-like
        Holds the camera-night directories.
    night : str
        ``YYYYMMDD``.
    site : str
        Two-letter site code (``LP``).
    camera : str
        Camera id, the site code and a letter (``LPN``).
    weather : bool
        Compute the cloud-fraction proxy (reads up to 400 light curves).

    Raises
    ------
    StorageError
        ``night``, ``site`` or ``camera`` cannot name a camera-night directory.
    """
    night_dir = NightId(night, site, camera[len(site):]).night_dir(out_dir)
    if not night_dir.is_dir():
        return CameraRow(camera=camera, night_dir=night_dir, status="no night",
                         note=f"no night directory {night_dir}")
    try:
        summary = collect_summary(night_dir, weather=weather)
    except Exception as exc:
        # collect_summary reads damaged logs and files without raising; this is for what it
        # did not foresee, which must cost this camera's row only, not the station's report
        log.exception("station summary: camera %s not read", camera)
        return CameraRow(camera=camera, night_dir=night_dir, status="unreadable",
                         note=f"not read: {type(exc).__name__}: {exc}")
    files = tuple((kind, nightly_file_path(night_dir, kind).is_file())
                  for kind in ("fast", "slow"))
    page = report_path(summary_dir(night_dir), summary.tag, ".html")
    sky, sky_note = None, ""
    if summary.nightly_file is not None:
        try:
            with NightFile(summary.nightly_file) as nf:
                stars = nf.stars
                sky = CameraSky(camera, np.asarray(stars["ra"], dtype=float),
                                np.asarray(stars["dec"], dtype=float),
                                np.asarray(stars["nobs"], dtype=np.int64))
        except (StorageError, OSError, KeyError, ValueError) as exc:
            sky_note = f"stars of {summary.nightly_file} not read: {exc}"
            log.warning("station summary: camera %s: %s", camera, sky_note)
    if summary.nightly_file is None:
        status = "no nightly file"
        note = ("no event log and no nightly file" if summary.log_missing
                else "no fast nightly file")
    elif summary.missing:
        status = "incomplete"
        note = (f"{len(summary.missing)} product(s) missing: " + "; ".join(summary.missing[:3])
                + ("; ..." if len(summary.missing) > 3 else ""))
    elif not summary.finished:
        status = "not finished"
        note = "no NightFinished event: the run was cut short or goes on"
    else:
        status, note = "complete", ""
    note = "; ".join(n for n in (note, sky_note) if n)
    return CameraRow(camera=camera, night_dir=night_dir, status=status, summary=summary,
                     nightly_files=files, camera_summary=page if page.is_file() else None,
                     sky=sky, note=note)
