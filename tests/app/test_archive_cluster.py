"""The archive's local cluster lets in only its owner; its dashboard only when asked for."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest
from distributed import Worker

from mascara_actors.app.archive.night import _worker_threads
from mascara_actors.app.archive.run import archive_client


def _http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _handshake(address: str) -> None:
    """A TLS handshake with the scheduler, as anyone without the run's certificate would."""
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw) as tls:
        tls.sendall(b"\0" * 16)
        tls.recv(16)


@pytest.mark.parametrize("dashboard", [False, True])
def test_only_the_run_joins_the_local_cluster_and_http_serves_nothing_unasked(
        dashboard: bool) -> None:
    with archive_client(workers=1, dashboard=dashboard) as client:
        info = client.scheduler_info()
        assert info["address"].startswith("tls://127.0.0.1:")
        assert len(info["workers"]) == 1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake(info["address"])
        port = info["services"]["dashboard"]
        assert _http_status(port, "/info/main/workers.html") == (200 if dashboard else 404)
        assert _http_status(port, "/health") == (200 if dashboard else 404)
        if dashboard:
            assert client.dashboard_link.startswith("http://127.0.0.1:")
        # The workers sample their threads for the dashboard's Profile page only when it is
        # served.
        profiling = client.run(_profiling)
        assert list(profiling.values()) == [dashboard]
        # A worker's own log stays quiet (what fails reaches the run as an outcome), and so
        # does the scheduler's chatter here: the command logs at WARNING without -v.
        assert list(client.run(_distributed_log_level).values()) == [logging.CRITICAL]
        assert not logging.getLogger("distributed.scheduler").isEnabledFor(logging.INFO)
        # A night's task compresses its nightly files with its worker's one thread (one
        # worker per core), not with a thread per core of the machine.
        assert client.submit(_worker_threads, pure=False).result() == 1
        if not dashboard:  # a worker that restarts (after a crash) stays quiet
            client.restart()
            assert list(client.run(_distributed_log_level).values()) == [logging.CRITICAL]


def test_what_a_night_logs_on_a_worker_is_logged_by_the_command(
        caplog: pytest.LogCaptureFixture) -> None:
    """As the command logs (its level; above its progress bar), not on the worker's own
    stderr, which broke through the bar and which nobody reads on a remote worker."""
    caplog.set_level(logging.WARNING)
    with archive_client(workers=1) as client:
        client.submit(_log_as_a_night_does, pure=False).result()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _forwarded(caplog):
            time.sleep(0.05)
    forwarded = _forwarded(caplog)
    assert [(r.name, r.levelno, r.getMessage()) for r in forwarded] == [
        ("mascara_actors.calibration.masters", logging.WARNING,
         "no master dark from this sequence: 3 darks"),
        ("hw.recorded", logging.WARNING, "skipped unreadable frame: 1C.fits"),
    ]
    assert all(r.process != os.getpid() for r in forwarded)  # they came from the worker


def _forwarded(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(("mascara_actors.c", "hw."))]


def _log_as_a_night_does() -> None:
    masters = logging.getLogger("mascara_actors.calibration.masters")
    masters.info("masters made: dark")  # below the command's level: not sent
    masters.warning("no master dark from this sequence: %d darks", 3)
    time.sleep(0.2)  # in this order
    logging.getLogger("hw.recorded").warning("skipped unreadable frame: %s", "1C.fits")


def _distributed_log_level() -> int:
    return logging.getLogger("distributed").getEffectiveLevel()


def _profiling(dask_worker: Worker) -> bool:
    return "profile" in dask_worker.periodic_callbacks


def test_outside_a_dask_worker_a_night_compresses_with_a_thread_per_core() -> None:
    assert _worker_threads() is None  # run_night's default: one per core
