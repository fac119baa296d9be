"""Issue 9: the summary e-mail, sent to real SMTP servers on loopback (aiosmtpd)."""

from __future__ import annotations

import argparse
import json
import logging
import socket
from pathlib import Path

import pytest

from mascara_actors.cli import summary as summary_cli
from mascara_actors.errors import ConfigError
from mascara_actors.summary import (
    Credentials,
    MailConfig,
    build_message,
    load_credentials,
    load_mail_config,
    send_summary,
    summarise_night,
)
from mascara_actors.summary.mailconfig import ENV_PASSWORD, ENV_USER
from tests.mascara_actors.summary._smtp import (
    Cert,
    Handler,
    authenticator,
    free_port,
    smtp_server,
)

USER, PASSWORD = "station-lpc", "s3cret-Pa55word"
RECIPIENTS = ("team@example.org", "night@example.org")


def _config(port: int, **kw: object) -> MailConfig:
    opts: dict[str, object] = {
        "sender": "lpc@example.org", "recipients": RECIPIENTS, "host": "127.0.0.1",
        "port": port, "security": "none", "timeout_s": 5.0, "retries": 0, "backoff_s": 0.0,
    }
    opts.update(kw)
    return MailConfig(**opts)  # type: ignore[arg-type]


def _secrets(tmp_path: Path, mode: int = 0o600, *, password: str = PASSWORD) -> Path:
    path = tmp_path / "smtp-secrets.toml"
    path.write_text(f'user = "{USER}"\npassword = "{password}"\n')
    path.chmod(mode)
    return path


@pytest.fixture
def small_night(tmp_path: Path) -> Path:
    """A fresh night directory with a short event log (no nightly file): 3 frames reduced,
    one failed."""
    night = tmp_path / "20260320LPC"
    (night / "logs").mkdir(parents=True)
    lines = [{"kind": "NightStarted", "time": 1000.0, "night": "20260320", "camera": "LPC",
              "out_dir": str(night), "frames_expected": 4, "resumed_sets": 0}]
    for i in range(3):
        lines.append({"kind": "FrameReducedEvent", "time": 1001.0 + i, "lstseq": 65344200 + i,
                      "nstars": 70 + i, "nflagged": 2, "latency_s": 0.5, "timings": {},
                      "sky": 800.0, "ccdtemp": -15.0})
    lines.append({"kind": "FrameFailed", "time": 1004.0, "lstseq": 65344203,
                  "path": "x.fits", "reason": "unreadable FITS"})
    (night / "logs" / "events.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return night


def _check_message(received: object, outcome: object, night_tag: str) -> None:
    msg = received.message  # type: ignore[attr-defined]
    assert msg["Subject"] == f"Reduction Summary {night_tag}"
    assert sorted(received.rcpt_tos) == sorted(RECIPIENTS)  # type: ignore[attr-defined]
    assert received.mail_from == "lpc@example.org"  # type: ignore[attr-defined]
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert "Frames reduced" in text.get_content()
    html_text = html.get_content()
    assert "<html" in html_text
    assert "data:image" not in html_text
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    on_disk = {p.name: p.read_bytes() for p in outcome.image_paths}  # type: ignore[attr-defined]
    assert len(images) == len(on_disk) >= 1
    for part in images:
        cid = part["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html_text
        assert part.get_content() == on_disk[part.get_filename()]


def test_plain_smtp_delivers_text_html_and_image(small_night: Path) -> None:
    handler = Handler()
    with smtp_server(handler) as port:
        out = summarise_night(small_night, send=True, mail_config=_config(port))
    assert out.mail is not None
    assert out.mail.ok
    assert out.mail.attempts == 1
    (received,) = handler.received
    _check_message(received, out, "20260320LPC")
    assert received.login is None


def test_starttls_with_login_delivers(small_night: Path, cert: Cert, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    handler = Handler()
    caplog.set_level(logging.DEBUG)
    with smtp_server(handler, tls_context=cert.server_context(), require_starttls=True,
                     authenticator=authenticator(USER, PASSWORD), auth_required=True) as port:
        out = summarise_night(
            small_night, send=True, secrets_file=_secrets(tmp_path),
            mail_config=_config(port, security="starttls", cafile=str(cert.cert)))
    assert out.mail is not None
    assert out.mail.ok, out.mail
    (received,) = handler.received
    assert received.login == USER
    _check_message(received, out, "20260320LPC")
    assert PASSWORD not in caplog.text


def test_implicit_tls_delivers(small_night: Path, cert: Cert) -> None:
    handler = Handler()
    with smtp_server(handler, ssl_context=cert.server_context()) as port:
        out = summarise_night(small_night, send=True,
                              mail_config=_config(port, security="tls", cafile=str(cert.cert)))
    assert out.mail is not None
    assert out.mail.ok, out.mail
    assert len(handler.received) == 1


def test_untrusted_certificate_is_a_permanent_failure(small_night: Path, cert: Cert) -> None:
    handler = Handler()
    with smtp_server(handler, tls_context=cert.server_context()) as port:
        out = summarise_night(small_night, send=True,
                              mail_config=_config(port, security="starttls", retries=2))
    assert out.mail is not None
    assert not out.mail.ok
    assert out.mail.permanent
    assert out.mail.attempts == 1
    assert "certificate" in out.mail.error
    assert handler.received == []


def test_wrong_password_report_written_failure_logged(
        small_night: Path, cert: Cert, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-Pa55word"
    with smtp_server(Handler(), tls_context=cert.server_context(), require_starttls=True,
                     authenticator=authenticator(USER, PASSWORD), auth_required=True) as port:
        out = summarise_night(
            small_night, send=True, secrets_file=_secrets(tmp_path, password=wrong),
            mail_config=_config(port, security="starttls", cafile=str(cert.cert), retries=3))
    assert out.html_path is not None
    assert out.html_path.is_file()
    assert out.mail is not None
    assert not out.mail.ok
    assert out.mail.permanent
    assert out.mail.attempts == 1
    assert "login refused" in out.mail.error
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("login refused" in r.getMessage() for r in warnings)
    assert wrong not in caplog.text
    assert PASSWORD not in caplog.text


def test_unreachable_server_retries_then_gives_up(small_night: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    out = summarise_night(small_night, send=True,
                          mail_config=_config(port, retries=2, backoff_s=0.01))
    assert out.html_path is not None
    assert out.html_path.is_file()
    assert out.text_path is not None
    assert out.text_path.is_file()
    assert out.mail is not None
    assert not out.mail.ok
    assert not out.mail.permanent
    assert out.mail.attempts == 3
    assert "ConnectionRefusedError" in out.mail.error
    assert any("NOT sent" in r.getMessage() and "ConnectionRefusedError" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


def test_backoff_doubles_between_attempts(small_night: Path) -> None:
    waits: list[float] = []
    msg = build_message("s", "text", "<p>html</p>", sender="a@b.c", recipients=["d@e.f"])
    result = send_summary(msg, _config(free_port(), retries=3, backoff_s=1.5),
                          sleep=waits.append)
    assert not result.ok
    assert result.attempts == 4
    assert waits == [1.5, 3.0, 6.0]


def test_refusing_server_is_not_retried(small_night: Path) -> None:
    handler = Handler(refuse_rcpt=True)
    with smtp_server(handler) as port:
        out = summarise_night(small_night, send=True, mail_config=_config(port, retries=3))
    assert out.html_path is not None
    assert out.html_path.is_file()
    assert out.mail is not None
    assert not out.mail.ok
    assert out.mail.permanent
    assert out.mail.attempts == 1
    assert "relaying denied" in out.mail.error
    assert handler.received == []


def test_silent_server_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the TCP connection, never greets
        port = listener.getsockname()[1]
        msg = build_message("s", "t", "<p>h</p>", sender="a@b.c", recipients=["d@e.f"])
        result = send_summary(msg, _config(port, timeout_s=0.3))
    assert not result.ok
    assert not result.permanent
    assert result.error == "timed out waiting for the server's reply"


def test_world_readable_secrets_file_is_refused(tmp_path: Path) -> None:
    path = _secrets(tmp_path, 0o644)
    with pytest.raises(ConfigError, match=r"mode 644.*refused; run `chmod 600 "):
        load_credentials(path)
    path.chmod(0o640)
    with pytest.raises(ConfigError, match=r"group or by others"):
        load_credentials(path)


def test_world_readable_secrets_file_does_not_stop_the_report(
        small_night: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    handler = Handler()
    with smtp_server(handler) as port:
        out = summarise_night(small_night, send=True, secrets_file=_secrets(tmp_path, 0o604),
                              mail_config=_config(port))
    assert out.html_path is not None
    assert out.html_path.is_file()
    assert out.mail is not None
    assert not out.mail.ok
    assert "chmod 600" in out.mail.error
    assert handler.received == []
    assert PASSWORD not in caplog.text


def test_credentials_from_file_and_environment(tmp_path: Path) -> None:
    creds = load_credentials(_secrets(tmp_path, 0o400))
    assert creds == Credentials(USER, PASSWORD, str(tmp_path / "smtp-secrets.toml"))
    assert PASSWORD not in repr(creds)
    assert PASSWORD not in str(creds)
    env = load_credentials(environ={ENV_USER: "u", ENV_PASSWORD: "p"})
    assert env is not None
    assert (env.user, env.password, env.source) == ("u", "p", "environment")
    assert load_credentials(environ={}) is None
    with pytest.raises(ConfigError, match=ENV_PASSWORD):
        load_credentials(environ={ENV_USER: "u"})


def test_password_not_sent_in_clear_to_a_remote_host() -> None:
    msg = build_message("s", "t", "<p>h</p>", sender="a@b.c", recipients=["d@e.f"])
    config = _config(25, host="smtp.invalid", retries=2)
    result = send_summary(msg, config, credentials=Credentials("u", "pw"))
    assert not result.ok
    assert result.permanent
    assert result.attempts == 1
    assert "unencrypted" in result.error


def test_repository_mail_config_loads_and_has_no_secrets() -> None:
    config = load_mail_config()
    assert config.security in ("starttls", "tls")
    assert config.recipients
    assert "@" in config.sender
    text = (Path(__file__).resolve().parents[3] / "config" / "mail.toml").read_text()
    assert "password =" not in text.replace('#     password = "..."', "")


def test_mail_config_rejects_unknown_and_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "mail.toml"
    path.write_text('[mail]\nsender = "a@b.c"\nrecipients = ["d@e.f"]\nhost = "h"\n'
                    'password = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['password'\]"):
        load_mail_config(path)
    path.write_text('[mail]\nsender = "a@b.c"\nrecipients = ["d@e.f"]\nhost = "h"\n'
                    'security = "ssl"\n')
    with pytest.raises(ConfigError, match=r"security='ssl' must be one of"):
        load_mail_config(path)


def test_cli_send_failure_exits_1_with_the_report_written(small_night: Path,
                                                          tmp_path: Path) -> None:
    config = tmp_path / "mail.toml"
    config.write_text(f'[mail]\nsender = "a@b.c"\nrecipients = ["d@e.f"]\n'
                      f'host = "127.0.0.1"\nport = {free_port()}\nsecurity = "none"\n'
                      "retries = 0\ntimeout_s = 2.0\n")
    parser = argparse.ArgumentParser()
    summary_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["summary", str(small_night), "--send", "--mail-config",
                              str(config)])
    assert summary_cli.run(args) == 1
    assert (small_night / "summary" / "summary_20260320LPC.html").is_file()
