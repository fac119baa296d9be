"""Fixtures of the summary tests: a reduced replay night and a self-signed certificate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.mascara_actors.summary._smtp import Cert

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def replay_night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed replay night reduced once per session (shared, read-only): returns its
    camera-night directory. Built by the real command line in a subprocess."""
    out = tmp_path_factory.mktemp("replay_out")
    code = "import sys; from mascara_actors.cli import main; sys.exit(main(sys.argv[1:]))"
    subprocess.run(
        [sys.executable, "-c", code, "--replay", str(REPO / "replay_data" / "night"),
         "--out", str(out)],
        check=True, cwd=REPO, capture_output=True, timeout=240,
    )
    (night_dir,) = [p for p in out.glob("[0-9]"*8 + "[A-Z]"*3) if p.is_dir()]
    return night_dir


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1 and localhost (shared, read-only), made with
    openssl (the `cryptography` package is not installed)."""
    d = tmp_path_factory.mktemp("tls")
    c = Cert(d / "cert.pem", d / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(c.key), "-out", str(c.cert), "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return c
