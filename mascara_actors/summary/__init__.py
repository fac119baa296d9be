"""Night summary and notifications (the seed's ``reduction_summary``,
``light_curve_overview`` and ``send_summary``).

- :func:`collect_summary`: the numbers of a night from its event log and nightly file.
- :func:`light_curve_overview`, :func:`night_diagnostics`, :func:`transmission_map`: PNGs.
- :func:`render_html`, :func:`render_text`: the report, self-contained HTML and plain text.
- :func:`send_summary`: e-mail it (SMTP, STARTTLS or TLS, retries; never raises).
- :func:`summarise_night`: all of it for one night directory (the end-of-night hook).
"""

from mascara_actors.summary.html import Image as Image
from mascara_actors.summary.html import render_html as render_html
from mascara_actors.summary.html import render_text as render_text
from mascara_actors.summary.mail import MailResult as MailResult
from mascara_actors.summary.mail import build_message as build_message
from mascara_actors.summary.mail import send_summary as send_summary
from mascara_actors.summary.mailconfig import Credentials as Credentials
from mascara_actors.summary.mailconfig import MailConfig as MailConfig
from mascara_actors.summary.mailconfig import load_credentials as load_credentials
from mascara_actors.summary.mailconfig import load_mail_config as load_mail_config
from mascara_actors.summary.night import SummaryOutcome as SummaryOutcome
from mascara_actors.summary.night import summarise_night as summarise_night
from mascara_actors.summary.plots import light_curve_overview as light_curve_overview
from mascara_actors.summary.plots import night_diagnostics as night_diagnostics
from mascara_actors.summary.plots import transmission_map as transmission_map
from mascara_actors.summary.report import NightSummary as NightSummary
from mascara_actors.summary.report import collect_summary as collect_summary
from mascara_actors.summary.weather import cloud_proxy as cloud_proxy

__all__ = [
    "Credentials",
    "Image",
    "MailConfig",
    "MailResult",
    "NightSummary",
    "SummaryOutcome",
    "build_message",
    "cloud_proxy",
    "collect_summary",
    "light_curve_overview",
    "load_credentials",
    "load_mail_config",
    "night_diagnostics",
    "render_html",
    "render_text",
    "send_summary",
    "summarise_night",
    "transmission_map",
]
