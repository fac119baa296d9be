"""The station summary at dawn: one report over the cameras of a site for one night.

:func:`summarise_station` reads each camera's night directory ``OUT/{night}{SITE}{CAM}/``
(:func:`~.station_report.camera_row`: its event log and nightly files) and writes, beside
them, the directory ``OUT/{night}{SITE}-station/`` (e.g. ``night_out/20260320LP-station/``):

- ``summary_{night}{SITE}.html``: one row per camera (frames expected, reduced and failed,
  frames in the nightly file, sets, stars measured, median astrometric residual, cloud
  fraction, restarts, warnings, errors, nightly files made or missing, a link to the camera's
  own summary), the station's totals, and the sky map; self-contained;
- ``summary_{night}{SITE}.txt``: the same as plain text (the e-mail's text part);
- ``{night}{SITE}_skymap.png``: where each camera looked and what it measured
  (:func:`~.station_plots.station_sky_map`);
- ``mailed.json``: written after the report was mailed (``mailed_utc``, ``attempts``); while
  it is there the report is not mailed again, unless ``force_mail``.

A camera with no night directory, no event log or no nightly file gets a row saying so: one
camera's bad night never stops the station's report. Every file is written atomically. The
cameras' own summaries (``{night_dir}/summary/``) are left as they are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mascara_actors.atomic_files import atomic_write_bytes, atomic_write_text
from mascara_actors.errors import ConfigError, StorageError
from mascara_actors.storage import NightId, read_json_state, write_json_state
from mascara_actors.storage.layout import report_path
from mascara_actors.summary.html import Image
from mascara_actors.summary.mail import MailResult, mail_report
from mascara_actors.summary.mailconfig import MailConfig
from mascara_actors.summary.station_html import render_station_html, render_station_text
from mascara_actors.summary.station_plots import CameraSky, station_sky_map
from mascara_actors.summary.station_report import CameraRow, camera_row

__all__ = ["MAILED_MARKER", "StationSummaryOutcome", "station_dir", "summarise_station"]

log = logging.getLogger(__name__)

MAILED_MARKER = "mailed.json"
"""In the station directory: written after the report was mailed."""


def station_dir(out_dir: str | Path, night: str, site: str) -> Path:
    """``{out_dir}/{night}{site}-station``, beside the camera nights of the same night."""
    return Path(out_dir) / f"{night}{site}-station"


@dataclass(frozen=True, slots=True, kw_only=True)
class StationSummaryOutcome:
    """What :func:`summarise_station` did."""

    night: str
    site: str
    rows: tuple[CameraRow, ...]
    station_dir: Path
    generated: datetime
    """When the report was made (UTC)."""
    html_path: Path | None = None
    """None when the report could not be written (see ``write_error``)."""
    text_path: Path | None = None
    image_paths: tuple[Path, ...] = ()
    mail: MailResult | None = None
    """None when no mail was asked for, or it had been sent before (``already_mailed``)."""
    already_mailed: str | None = None
    """When the report was mailed before (UTC, ISO 8601): it was not mailed again."""
    problems: tuple[str, ...] = field(default_factory=tuple)
    """What went wrong with the report itself (the sky map, the disk, the mail); logged too.
    A camera's bad night is not a problem of the report: it is in its row."""
    write_error: str | None = None
    """Why the report's files were not all written, None when they were."""

    @property
    def tag(self) -> str:
        """``{night}{SITE}``."""
        return f"{self.night}{self.site}"


def _check(night: str, cameras: Sequence[str], site: str) -> None:
    if not re.fullmatch(r"\d{8}", night):
        raise ConfigError(f"night {night!r}: give the night as YYYYMMDD, e.g. 20260320")
    if not cameras:
        raise ConfigError("the station summary needs at least one camera, e.g. LPN")
    if len(set(cameras)) != len(cameras):
        raise ConfigError(f"cameras {list(cameras)}: a camera is named twice")
    for camera in cameras:
        if not camera.startswith(site) or len(camera) != len(site) + 1:
            raise ConfigError(f"camera {camera!r} is not a camera of site {site!r}: a camera "
                              f"id is the site code and one letter, e.g. {site}C")
        try:
            NightId(night, site, camera[-1])
        except StorageError as exc:
            raise ConfigError(f"camera {camera}, night {night}: {exc}") from None


def summarise_station(
    out_dir: str | Path,
    night: str,
    cameras: Sequence[str],
    *,
    site: str,
    send_mail: bool = False,
    force_mail: bool = False,
    mail_config: MailConfig | str | Path | None = None,
    secrets_file: str | Path | None = None,
    weather: bool = True,
) -> StationSummaryOutcome:
    """Collect, draw and write the station report of one night; mail it once when asked.

    Parameters
    ----------
    out_dir : path-like
        The station's output directory, holding ``{night}{SITE}{CAM}/`` per camera.
    night : str
        ``YYYYMMDD``, the UTC date of the evening's sunset.
    cameras : sequence of str
        Camera ids (``LPN``, ``LPE`` ...), one row each, in this order.
    site : str
        Two-letter site code, the start of every camera id (``LP``).
    send_mail : bool
        Mail the report, unless ``mailed.json`` says it was mailed before.
    force_mail : bool
        With ``send_mail``: mail it even if it was mailed before.
    mail_config : MailConfig or path-like, optional
        Mail settings, or the path of a ``mail.toml`` (default ``config/mail.toml``).
    secrets_file : path-like, optional
        SMTP credentials file (mode 600); default the settings', then the environment.
    weather : bool
        Compute each camera's cloud-fraction proxy (reads up to 400 light curves each).

    Returns
    -------
    StationSummaryOutcome
        The rows and the files written to ``OUT/{night}{site}-station/``. A camera's bad
        night is in its row; failures of the report (the sky map, the disk, the mail) are in
        ``problems`` and the log, never raised.

    Raises
    ------
    ConfigError
        ``night``, ``site`` or a camera id is malformed (the caller's mistake).
    """
    out_dir = Path(out_dir)
    _check(night, cameras, site)
    rows = tuple(camera_row(out_dir, night, site, c, weather=weather) for c in cameras)
    generated = datetime.now(UTC)
    tag = f"{night}{site}"
    target = station_dir(out_dir, night, site)
    problems: list[str] = []
    images: list[Image] = []
    empty = np.empty(0)
    try:
        png = station_sky_map([r.sky or CameraSky(r.camera, empty, empty, empty) for r in rows],
                              title=f"Station {tag}: {len(rows)} cameras")
        images.append(Image(f"{tag}_skymap.png", "Sky map", png))
    except Exception as exc:
        # a figure is an extra: matplotlib failing must not cost the table (as in night.py)
        problems.append(f"sky map not made: {type(exc).__name__}: {exc}")
    html_path = text_path = write_error = None
    image_paths: list[Path] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        html_path = atomic_write_text(
            report_path(target, tag, ".html"),
            render_station_html(tag, rows, images, generated=generated, base=target))
        text_path = atomic_write_text(
            report_path(target, tag, ".txt"),
            render_station_text(tag, rows, images, generated=generated))
        image_paths = [atomic_write_bytes(target / img.name, img.png) for img in images]
        log.info("station summary of %s written to %s", tag, html_path)
    except (OSError, StorageError) as exc:
        write_error = f"station report not written to {target}: {exc}"
        problems.append(write_error)
    mail, already = None, None
    if send_mail:
        mail, already, mail_problem = _mail_once(
            night, site, rows, images, target, generated=generated, force=force_mail,
            mail_config=mail_config, secrets_file=secrets_file)
        problems += [mail_problem] if mail_problem else []
    for p in problems:
        log.warning("station summary of %s: %s", tag, p)
    return StationSummaryOutcome(
        night=night, site=site, rows=rows, station_dir=target, generated=generated,
        html_path=html_path, text_path=text_path, image_paths=tuple(image_paths), mail=mail,
        already_mailed=already, problems=tuple(problems), write_error=write_error)


def _mail_once(night: str, site: str, rows: Sequence[CameraRow], images: list[Image],
               target: Path, *, generated: datetime, force: bool,
               mail_config: MailConfig | str | Path | None, secrets_file: str | Path | None
               ) -> tuple[MailResult | None, str | None, str]:
    """(mail result, when it was mailed before, problem): the report mailed unless it was
    before (``force`` mails it anyway)."""
    tag = f"{night}{site}"
    marker = target / MAILED_MARKER
    try:
        before = read_json_state(marker)
    except StorageError as exc:
        # a damaged marker must not block the mail for good: mail, then write it anew
        log.warning("station summary of %s: %s", tag, exc)
        before = {}
    if before and not force:
        when = str(before.get("mailed_utc", "?"))
        log.info("station summary of %s was mailed at %s (%s): not mailed again", tag, when,
                 marker)
        return None, when, ""

    def subject(config: MailConfig) -> str:
        # the site's template with no camera, e.g. "Reduction Summary 20260320LP (station...)"
        return (f"{config.subject_for(night=night, site=site, camera='')} "
                f"(station, {len(rows)} cameras)")

    mail = mail_report(
        subject, render_station_text(tag, rows, images, generated=generated),
        render_station_html(tag, rows, images, generated=generated, embed="cid"), images,
        mail_config=mail_config, secrets_file=secrets_file)
    if not mail.ok:
        return mail, None, f"mail not sent: {mail.error}"
    try:
        target.mkdir(parents=True, exist_ok=True)
        write_json_state(marker, {"mailed_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                                  "attempts": mail.attempts})
    except (OSError, StorageError) as exc:
        return mail, None, f"mailed, but {marker} not written (a re-run mails again): {exc}"
    return mail, None, ""
