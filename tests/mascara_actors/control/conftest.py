"""Fixtures of the control-socket tests: a fresh socket path per test, a fake station."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mascara_actors.control.support import FakeStation


@pytest.fixture
def socket_path() -> Iterator[Path]:
    """A fresh path ``/tmp/mctl-XXXX/state/control.sock`` for one test (removed after).

    Short, because a Unix socket path has at most 107 bytes; and its parent is 0755 so that
    any user may reach ``state/`` (the server makes that one 0700): only the server's own
    permissions keep another user out. ``state/`` does not exist yet.
    """
    base = Path(tempfile.mkdtemp(prefix="mctl-", dir="/tmp"))
    base.chmod(0o755)
    yield base / "state" / "control.sock"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def station() -> FakeStation:
    """A fresh fake station (records its commands)."""
    return FakeStation()
