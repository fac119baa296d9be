"""Send the night summary by e-mail (the seed's ``send_summary``), standard-library smtplib.

The message is ``multipart/alternative``: the plain-text report, then the HTML report with
its images as ``multipart/related`` parts referenced by ``cid:``. :func:`send_summary` uses
STARTTLS or implicit TLS (verified against the system trust store or a given CA bundle),
a timeout on every connection and command, and retries transient failures with exponential
backoff. It never raises: the outcome is returned and logged, because mail must never stop
or block the pipeline. Credentials are never logged (smtplib's debug output, which would
show the AUTH exchange, stays off).
"""

from __future__ import annotations

import ipaddress
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from mascara_actors.errors import MascaraError
from mascara_actors.summary.html import Image
from mascara_actors.summary.mailconfig import (
    Credentials,
    MailConfig,
    load_credentials,
    load_mail_config,
)

__all__ = ["MailResult", "build_message", "mail_report", "send_summary"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MailResult:
    """Outcome of :func:`send_summary`."""

    ok: bool
    attempts: int
    """Connections tried."""
    error: str = ""
    """Why the last attempt failed ("" when sent); never holds the password."""
    permanent: bool = False
    """True when the failure would not pass by retrying (auth, refused, TLS)."""


def build_message(
    subject: str,
    text: str,
    html_cid: str,
    images: Sequence[Image] = (),
    *,
    sender: str,
    recipients: Sequence[str],
) -> EmailMessage:
    """The summary e-mail: text alternative, HTML with related images.

    Parameters
    ----------
    subject : str
    text : str
        Plain-text report (:func:`~mascara_actors.summary.html.render_text`).
    html_cid : str
        HTML report whose images are ``cid:`` references
        (:func:`~mascara_actors.summary.html.render_html` with ``embed="cid"``).
    images : sequence of Image
        The PNGs the HTML refers to, attached with ``Content-ID: <{image.cid}>``.
    sender, recipients
        From: and To:.
    """
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain="mascara-actors")
    msg.set_content(text)
    msg.add_alternative(html_cid, subtype="html")
    html_part = list(msg.iter_parts())[1]  # text/plain, then text/html
    for img in images:
        html_part.add_related(img.png, maintype="image", subtype="png", cid=f"<{img.cid}>",
                              filename=img.name)
    return msg


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_context(config: MailConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=config.cafile or None)


def _deliver(msg: EmailMessage, config: MailConfig, credentials: Credentials | None) -> None:
    """One attempt: connect, secure, log in, send, quit. Raises on any failure."""
    smtp: smtplib.SMTP
    if config.security == "tls":
        smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout_s,
                                context=_tls_context(config))
    else:
        smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
    with smtp:
        smtp.ehlo()
        if config.security == "starttls":
            smtp.starttls(context=_tls_context(config))
            smtp.ehlo()
        if credentials is not None:
            smtp.login(credentials.user, credentials.password)
        smtp.send_message(msg, from_addr=config.sender, to_addrs=list(config.recipients))


class _Refused(Exception):
    """Sending was refused before connecting (a local rule, not the server)."""


def _classify(exc: BaseException) -> tuple[bool, str]:
    """(permanent, reason) of a failed attempt."""
    if isinstance(exc, _Refused):
        return True, str(exc)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return True, f"login refused by the server ({exc.smtp_code}): check the user/password"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {r: (c, m.decode(errors="replace")) for r, (c, m) in exc.recipients.items()}
        return True, f"recipients refused: {refused}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return True, f"server does not support a required extension: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return True, f"TLS certificate not trusted ({exc.verify_message}): set cafile in " \
                     "config/mail.toml or fix the server certificate"
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(
            exc.smtp_error, bytes) else str(exc.smtp_error)
        return exc.smtp_code >= 500, f"server replied {exc.smtp_code} {text}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib turns a read timeout into "Connection unexpectedly closed: timed out"
        if "timed out" in str(exc):
            return False, "timed out waiting for the server's reply"
        return False, f"server closed the connection: {exc}"
    if isinstance(exc, TimeoutError):
        return False, "timed out connecting to the server"
    if isinstance(exc, OSError):
        return False, f"{type(exc).__name__}: {exc.strerror or exc}"
    return False, f"{type(exc).__name__}: {exc}"


def send_summary(
    msg: EmailMessage,
    config: MailConfig,
    *,
    credentials: Credentials | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> MailResult:
    """Send ``msg`` to ``config.recipients``; never raises for a mail failure.

    Parameters
    ----------
    msg : EmailMessage
        From :func:`build_message`.
    config : MailConfig
        Server, security mode, timeout, retries and backoff.
    credentials : Credentials, optional
        SMTP login; without it the message is sent without AUTH. Not sent over an
        unencrypted connection unless the server is on the loopback interface.
    sleep : callable
        Waits between attempts (seconds); tests pass a recorder.

    Returns
    -------
    MailResult
        ``ok`` or the reason of the last failure; a failure is also logged as a warning.
    """
    target = f"{config.host}:{config.port} ({config.security})"
    attempts = 0
    permanent, reason = False, ""
    for attempt in range(config.retries + 1):
        attempts = attempt + 1
        try:
            if (credentials is not None and config.security == "none"
                    and not _is_loopback(config.host)):
                raise _Refused("refusing to send the SMTP password unencrypted: set "
                               "security = 'starttls' or 'tls' in config/mail.toml")
            _deliver(msg, config, credentials)
        except (smtplib.SMTPException, OSError, _Refused) as exc:
            permanent, reason = _classify(exc)
            if credentials is not None and credentials.password in reason:
                reason = reason.replace(credentials.password, "<hidden>")
            if permanent or attempt == config.retries:
                break
            wait = config.backoff_s * 2**attempt
            log.info("summary mail via %s, attempt %d failed (%s); retrying in %.1f s",
                     target, attempts, reason, wait)
            sleep(wait)
        else:
            log.info("summary mail %r sent to %s via %s (attempt %d)", msg["Subject"],
                     ", ".join(config.recipients), target, attempts)
            return MailResult(ok=True, attempts=attempts)
    log.warning("summary mail %r NOT sent via %s after %d attempt(s): %s", msg["Subject"],
                target, attempts, reason)
    return MailResult(ok=False, attempts=attempts, error=reason, permanent=permanent)


def mail_report(
    subject: Callable[[MailConfig], str],
    text: str,
    html_cid: str,
    images: Sequence[Image] = (),
    *,
    mail_config: MailConfig | str | Path | None = None,
    secrets_file: str | Path | None = None,
) -> MailResult:
    """Load the mail settings and the SMTP login, build the message and send it.

    Parameters
    ----------
    subject : callable
        The subject, given the mail settings (their ``subject`` template, e.g.
        ``config.subject_for(...)``).
    text, html_cid, images
        As for :func:`build_message`.
    mail_config : MailConfig or path-like, optional
        Mail settings, or the path of a ``mail.toml`` (default ``config/mail.toml``).
    secrets_file : path-like, optional
        SMTP credentials file (mode 600); default the settings' ``secrets_file``, then the
        environment (``MASCARA_SMTP_USER`` / ``MASCARA_SMTP_PASSWORD``).

    Returns
    -------
    MailResult
        Never raises: bad settings or credentials come back as a permanent failure.
    """
    try:
        config = (mail_config if isinstance(mail_config, MailConfig)
                  else load_mail_config(mail_config))
        credentials = load_credentials(secrets_file or config.secrets_file or None)
        title = subject(config)
    except (MascaraError, KeyError, ValueError) as exc:
        # KeyError/ValueError: a subject template with an unknown {field} or a stray brace
        log.warning("summary mail NOT sent: %s", exc)
        return MailResult(ok=False, attempts=0, error=str(exc), permanent=True)
    msg = build_message(title, text, html_cid, images, sender=config.sender,
                        recipients=config.recipients)
    return send_summary(msg, config, credentials=credentials)
