"""Build, write and (optionally) mail the summary of one camera-night: the end-of-night hook.

:func:`summarise_night` is synchronous and CPU/IO bound (plots, SMTP); the pipeline runs it
in a worker thread (``await anyio.to_thread.run_sync(summarise_night, night_dir)``), so the
event loop is never blocked. It never raises for bad input or a mail failure: the report is
written first, and every failure is logged with its reason and returned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from mascara_actors.atomic_files import atomic_write_bytes, atomic_write_text
from mascara_actors.config import Config, load_config
from mascara_actors.errors import ConfigError, StorageError
from mascara_actors.storage import NightFile
from mascara_actors.storage.layout import report_path, summary_dir
from mascara_actors.storage.live_sets import read_live_night
from mascara_actors.summary import live_plots, plots
from mascara_actors.summary.html import Image, render_html, render_text
from mascara_actors.summary.mail import MailResult, mail_report
from mascara_actors.summary.mailconfig import MailConfig
from mascara_actors.summary.report import NightSummary, collect_summary

__all__ = ["SummaryOutcome", "candidates_file", "make_images", "summarise_night"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryOutcome:
    """What :func:`summarise_night` did."""

    summary: NightSummary
    html_path: Path | None
    """The self-contained HTML report, None when it could not be written."""
    text_path: Path | None
    image_paths: tuple[Path, ...] = ()
    mail: MailResult | None = None
    """None when no mail was asked for."""
    problems: tuple[str, ...] = field(default_factory=tuple)
    """Everything that went wrong (also logged), e.g. a figure that failed."""
    write_error: str | None = None
    """Why the report's files were not all written (a full disk), None when they were."""


def make_images(summary: NightSummary, *,
                mag_range: tuple[float, float] = plots.DEFAULT_MAG_RANGE
                ) -> tuple[list[Image], list[str]]:
    """The report's figures: light-curve overview (with a nightly file), diagnostics, and the
    transmission map (when a ``*trans*.fits`` is in the night directory).

    Returns
    -------
    images, problems
        A figure that fails is left out and its reason put in ``problems``.
    """
    tag = summary.tag
    images: list[Image] = []
    problems: list[str] = []
    # A figure is an extra: whatever goes wrong in matplotlib or in a damaged file must only
    # drop that figure (the legacy summary did the same), hence the broad except clauses.
    if summary.nightly_file is not None:
        try:
            with NightFile(summary.nightly_file) as nf:
                ov = plots.light_curve_overview(nf, mag_range)
            images.append(Image(f"{tag}_overview.png", "Light-curve overview", ov.png, ov.note))
        except Exception as exc:
            problems.append(f"light-curve overview not made: {type(exc).__name__}: {exc}")
    try:
        images.append(Image(f"{tag}_diagnostics.png", "Night diagnostics",
                            plots.night_diagnostics(summary)))
    except Exception as exc:
        problems.append(f"diagnostics figure not made: {type(exc).__name__}: {exc}")
    trans = plots.find_transmission_map(summary.night_dir)
    if trans is not None:
        try:
            images.append(Image(f"{tag}_transmission.png", "Transmission map",
                                plots.transmission_map(trans), str(trans.name)))
        except Exception as exc:
            problems.append(f"transmission map {trans} not drawn: {type(exc).__name__}: {exc}")
    try:
        live = read_live_night(summary.night_dir)
        if live is not None:
            images.append(Image(f"{tag}_noise.png", "Noise diagram (calibrated live)",
                                live_plots.noise_diagram(live, tag)))
            images.append(Image(f"{tag}_clouds.png", "Clouds (calibrated live)",
                                live_plots.clouds_figure(live, tag)))
    except Exception as exc:
        problems.append(f"live calibration figures not made: {type(exc).__name__}: {exc}")
    for p in problems:
        log.warning("summary of %s: %s", tag, p)
    return images, problems


def summarise_night(
    night_dir: str | Path,
    *,
    send: bool = False,
    mail_config: MailConfig | str | Path | None = None,
    secrets_file: str | Path | None = None,
    mag_range: tuple[float, float] = plots.DEFAULT_MAG_RANGE,
    out_dir: str | Path | None = None,
    config: Config | str | Path | None = None,
) -> SummaryOutcome:
    """Collect, draw and write the summary of a night; mail it when ``send``.

    Parameters
    ----------
    night_dir : path-like
        Camera-night directory ``{YYYYMMDD}{SITE}{CAM}``.
    send : bool
        E-mail the summary to the configured recipients.
    mail_config : MailConfig or path-like, optional
        Mail settings, or the path of a ``mail.toml`` (default ``config/mail.toml``).
    secrets_file : path-like, optional
        SMTP credentials file (mode 600); default the config's ``secrets_file``, then the
        environment (``MASCARA_SMTP_USER`` / ``MASCARA_SMTP_PASSWORD``).
    mag_range : (float, float)
        V range of the light-curve overview, mag.
    out_dir : path-like, optional
        Where the files go (default ``{night_dir}/summary``).
    config : Config or path-like, optional
        The configuration, or its directory (default
        :func:`~mascara_actors.config.default_config_dir`), whose ``summary.candidates``
        names the known transit candidates to list (none when empty).

    Returns
    -------
    SummaryOutcome
        Files written ``summary_{tag}.html``, ``summary_{tag}.txt`` and the PNGs, and the
        mail result. Failures are in ``problems`` and in the log, never raised.
    """
    summary = collect_summary(night_dir, candidates=candidates_file(config))
    images, problems = make_images(summary, mag_range=mag_range)
    out = Path(out_dir) if out_dir is not None else summary_dir(night_dir)
    html_path = text_path = write_error = None
    image_paths: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        html_path = atomic_write_text(report_path(out, summary.tag, ".html"),
                                      render_html(summary, images, embed="data"))
        text_path = atomic_write_text(report_path(out, summary.tag, ".txt"),
                                      render_text(summary, images))
        image_paths = [atomic_write_bytes(out / img.name, img.png) for img in images]
        log.info("summary of %s written to %s", summary.tag, html_path)
    except (OSError, StorageError) as exc:
        write_error = f"report not written to {out}: {exc}"
        problems.append(write_error)
        log.error("summary of %s not written to %s: %s", summary.tag, out, exc)
    mail: MailResult | None = None
    if send:
        mail = _mail(summary, images, mail_config, secrets_file)
        if not mail.ok:
            problems.append(f"mail not sent: {mail.error}")
    return SummaryOutcome(summary=summary, html_path=html_path, text_path=text_path,
                          image_paths=tuple(image_paths), mail=mail, problems=tuple(problems),
                          write_error=write_error)


def candidates_file(config: Config | str | Path | None) -> Path | None:
    """``summary.candidates`` of ``config`` (a Config, its directory, None: the default one);
    None when it is empty or the configuration cannot be read (logged)."""
    try:
        cfg = config if isinstance(config, Config) else load_config(config)
    except ConfigError as exc:
        # the configuration is checked where the night is run; here it only decides an
        # optional section, which is not worth losing the report for
        log.warning("night summary without the known candidates: %s", exc)
        return None
    return cfg.candidates_file()


def _mail(summary: NightSummary, images: list[Image],
          mail_config: MailConfig | str | Path | None,
          secrets_file: str | Path | None) -> MailResult:
    return mail_report(
        lambda config: config.subject_for(
            night=summary.night, site=summary.site, camera=summary.camera),
        render_text(summary, images), render_html(summary, images, embed="cid"), images,
        mail_config=mail_config, secrets_file=secrets_file)
