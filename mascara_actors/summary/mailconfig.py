"""Mail settings (``config/mail.toml``) and SMTP credentials (never from the repository).

Credentials come from the environment (``MASCARA_SMTP_USER``, ``MASCARA_SMTP_PASSWORD``) or
from a secrets file that only its owner can read (mode 600 or 400): a file readable or
writable by the group or by others is refused, as ssh refuses such a private key. The
password is kept out of ``repr`` and out of every message and log line.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mascara_actors.config import default_config_dir
from mascara_actors.errors import ConfigError

__all__ = [
    "ENV_PASSWORD",
    "ENV_USER",
    "SECURITY_MODES",
    "Credentials",
    "MailConfig",
    "load_credentials",
    "load_mail_config",
]

ENV_USER = "MASCARA_SMTP_USER"
ENV_PASSWORD = "MASCARA_SMTP_PASSWORD"
SECURITY_MODES = ("starttls", "tls", "none")


@dataclass(frozen=True, slots=True, kw_only=True)
class MailConfig:
    """The ``[mail]`` table of ``config/mail.toml``."""

    sender: str
    """From: address."""
    recipients: tuple[str, ...]
    """To: addresses, at least one."""
    host: str
    """SMTP server host name or address."""
    port: int = 587
    """SMTP port (587 STARTTLS, 465 implicit TLS, 25 plain relay)."""
    security: str = "starttls"
    """``starttls``, ``tls`` (implicit) or ``none``."""
    timeout_s: float = 30.0
    """Timeout of each connection and command, seconds."""
    retries: int = 3
    """Further attempts after a transient failure."""
    backoff_s: float = 10.0
    """Wait before the first retry, seconds, doubled for each further one."""
    subject: str = "Reduction Summary {tag}"
    """Subject template; ``{tag}``, ``{night}``, ``{site}``, ``{camera}`` are filled in."""
    cafile: str = ""
    """CA bundle to trust ("" = the system trust store)."""
    secrets_file: str = ""
    """Default secrets file ("" = none)."""

    def __post_init__(self) -> None:
        problems = []
        if not self.sender or "@" not in self.sender:
            problems.append(f"sender={self.sender!r} must be an e-mail address")
        if not self.recipients or any("@" not in r for r in self.recipients):
            problems.append(f"recipients={list(self.recipients)!r} must be a non-empty list "
                            "of e-mail addresses")
        if not self.host:
            problems.append("host must be the SMTP server's name or address")
        if not 0 < self.port < 65536:
            problems.append(f"port={self.port} must be between 1 and 65535")
        if self.security not in SECURITY_MODES:
            problems.append(f"security={self.security!r} must be one of {list(SECURITY_MODES)}")
        if not self.timeout_s > 0:
            problems.append(f"timeout_s={self.timeout_s} must be > 0")
        if self.retries < 0:
            problems.append(f"retries={self.retries} must be >= 0")
        if self.backoff_s < 0:
            problems.append(f"backoff_s={self.backoff_s} must be >= 0")
        if problems:
            raise ConfigError("mail configuration: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, where: str = "[mail]") -> MailConfig:
        """Build from a TOML table, checking key names and types.

        Raises
        ------
        ConfigError
            Unknown or missing key, wrong type, impossible value.
        """
        names = {f.name: f for f in cls.__dataclass_fields__.values()}
        unknown = sorted(set(table) - set(names))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(names)}")
        kwargs: dict[str, Any] = {}
        types: dict[str, type | tuple[type, ...]] = {
            "sender": str, "host": str, "port": int, "security": str,
            "timeout_s": (int, float), "retries": int, "backoff_s": (int, float),
            "subject": str, "cafile": str, "secrets_file": str}
        for key, value in table.items():
            if key == "recipients":
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{where}: recipients must be a list of strings")
                kwargs[key] = tuple(value)
                continue
            want = types[key]
            if isinstance(value, bool) or not isinstance(value, want):
                raise ConfigError(f"{where}: {key}={value!r} has the wrong type")
            seconds = key in ("timeout_s", "backoff_s")
            kwargs[key] = float(value) if seconds and isinstance(value, int | float) else value
        missing = [k for k in ("sender", "recipients", "host") if k not in kwargs]
        if missing:
            raise ConfigError(f"{where}: missing key(s) {missing}")
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def subject_for(self, *, night: str, site: str, camera: str) -> str:
        """The subject of one night's summary."""
        return self.subject.format(tag=f"{night}{site}{camera}", night=night, site=site,
                                   camera=camera)


def load_mail_config(path: str | Path | None = None) -> MailConfig:
    """Read ``config/mail.toml`` (default: the one in :func:`default_config_dir`).

    Raises
    ------
    ConfigError
        The file is missing or invalid; the message names the file and the key.
    """
    path = Path(path) if path is not None else default_config_dir() / "mail.toml"
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing: copy config/mail.toml from the repository "
                          "and fill in the sender, recipients and server") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    extra = sorted(set(doc) - {"mail"})
    if "mail" not in doc or extra:
        raise ConfigError(f"{path} must hold exactly one table [mail] (found {sorted(doc)})")
    return MailConfig.from_mapping(doc["mail"], where=f"{path} [mail]")


@dataclass(frozen=True, slots=True)
class Credentials:
    """SMTP login; ``repr`` and ``str`` never show the password."""

    user: str
    password: str = field(repr=False)
    source: str = ""
    """Where they came from: ``environment`` or the secrets file's path."""

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password=<hidden>, source={self.source!r})"

    __str__ = __repr__


def _read_secrets_file(path: Path) -> Credentials:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ConfigError(f"secrets file {path} does not exist: create it with `user` and "
                          f"`password` and run `chmod 600 {path}`") from None
    except OSError as exc:
        raise ConfigError(f"cannot open secrets file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        # check the opened file itself, so it cannot be swapped between check and read
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"secrets file {path} is not a regular file")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise ConfigError(f"secrets file {path} belongs to uid {st.st_uid}, not to this "
                              f"user (uid {os.getuid()}): it must be owned by the user that "
                              "runs the pipeline")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"secrets file {path} has mode {stat.S_IMODE(st.st_mode):03o}: it is "
                "readable or writable by the group or by others, so it is refused; run "
                f"`chmod 600 {path}`")
        try:
            doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            # the decoder's message gives a position, never the file's content
            raise ConfigError(f"secrets file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"user", "password"})
    if unknown:
        raise ConfigError(f"secrets file {path}: unknown key(s) {unknown}; it holds only "
                          "`user` and `password`")
    user, password = doc.get("user"), doc.get("password")
    if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
        raise ConfigError(f"secrets file {path} must set `user` and `password` as strings")
    return Credentials(user, password, str(path))


def load_credentials(secrets_file: str | Path | None = None, *,
                     environ: Mapping[str, str] | None = None) -> Credentials | None:
    """SMTP credentials from a secrets file or the environment.

    Parameters
    ----------
    secrets_file : path-like, optional
        TOML file with ``user`` and ``password``, owned by this user, mode 600 or 400.
        When given, it is the source (the environment is not consulted).
    environ : mapping, optional
        Environment to read ``MASCARA_SMTP_USER`` / ``MASCARA_SMTP_PASSWORD`` from (default
        ``os.environ``).

    Returns
    -------
    Credentials or None
        None when neither source holds credentials (send without login).

    Raises
    ------
    ConfigError
        The file is missing, group/world accessible, not owned by this user or malformed;
        or only one of the two environment variables is set.
    """
    if secrets_file:
        return _read_secrets_file(Path(secrets_file).expanduser())
    env = os.environ if environ is None else environ
    user, password = env.get(ENV_USER, ""), env.get(ENV_PASSWORD, "")
    if user and password:
        return Credentials(user, password, "environment")
    if user or password:
        missing = ENV_PASSWORD if user else ENV_USER
        raise ConfigError(f"{ENV_USER} and {ENV_PASSWORD} must both be set for an SMTP login; "
                          f"{missing} is not")
    return None
