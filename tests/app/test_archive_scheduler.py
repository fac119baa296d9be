"""`mascara-actors archive --scheduler ADDRESS` on loopback, quickly: an address where no Dask
scheduler answers (a silent TCP listener, an HTTP server, the dashboard's http:// address) is
refused within seconds in one line, and a night whose worker dies reports the retries the
scheduler gave it (its own setting, which a client cannot change); and SIGTERM stops a run
with its own exit status. The committed night is the archive; only the SIGTERM test reduces
some of it, on the local cluster."""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mascara_actors.app.archive.manifest import read_manifest
from mascara_actors.app.archive.run import ArchiveRun, archive_client
from mascara_actors.app.archive.scan import scan_archive
from mascara_actors.cli import main
from mascara_actors.config import load_config
from tests.app.dask_daemons import ENV, dask_cluster

NIGHT = Path(__file__).resolve().parents[2] / "replay_data" / "night"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An archive of the committed night (hard links to its frames, or copies)."""
    root = tmp_path / "raw"
    root.mkdir()
    for path in NIGHT.iterdir():
        try:
            os.link(path, root / path.name)
        except OSError:
            shutil.copyfile(path, root / path.name)
    return root


@contextlib.contextmanager
def _silent_listener() -> Iterator[int]:
    """A TCP port on loopback that accepts connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@contextlib.contextmanager
def _http_server() -> Iterator[int]:
    """A real HTTP server on loopback (as a Dask dashboard is)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _archive(root: Path, out: Path, scheduler: str) -> tuple[int, float]:
    """The command's exit code and its time in seconds."""
    t0 = time.monotonic()
    code = main(["archive", str(root), "--out", str(out), "--scheduler", scheduler])
    return code, time.monotonic() - t0


@pytest.mark.parametrize("server", ["silent", "http"])
def test_a_port_that_answers_but_not_as_a_scheduler_is_said_within_seconds(
        server: str, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It used to wait for Dask's handshake for ever."""
    with (_silent_listener() if server == "silent" else _http_server()) as port:
        address = f"tcp://127.0.0.1:{port}"
        code, took = _archive(root, tmp_path / "out", address)
    err = capsys.readouterr().err
    assert code == 2, err
    assert took < 10
    (line,) = [line for line in err.splitlines() if line.startswith("mascara-actors:")]
    assert line.startswith(f"mascara-actors: no Dask scheduler answers at {address} within 3 s")
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "manifests").exists()


def test_the_dashboards_http_address_is_refused_saying_what_to_give(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It used to end in a traceback (ValueError: unknown address scheme 'http')."""
    with _http_server() as port:
        address = f"http://127.0.0.1:{port}"
        code, took = _archive(root, tmp_path / "out", address)
    err = capsys.readouterr().err
    assert code == 2, err
    assert took < 10
    assert "Traceback" not in err
    assert (f"mascara-actors: --scheduler {address}: http:// is a web page's address (the "
            "dashboard's); give the scheduler's, tcp://HOST:8786 as `dask scheduler` prints "
            "it") in err


def test_an_out_that_is_a_file_is_said_before_the_scan(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("not a directory")
    for out in (tmp_path / "afile", tmp_path / "afile" / "reduced"):
        for dry in ([], ["--dry-run"]):
            assert main(["archive", str(root), "--out", str(out), *dry]) == 2
            err = capsys.readouterr().err
            assert (f"mascara-actors: {tmp_path / 'afile'} is a file, not a directory: pass a "
                    "directory (or a path that does not exist yet) as --out, or move the file "
                    "away") in err, err
            assert "raw frames" not in err, err  # before the scan


def _one_worker(tmp_path: Path, allowed_failures: int, preload: Path,
                ) -> contextlib.AbstractContextManager[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A `dask scheduler` with that ``distributed.scheduler.allowed-failures`` and one `dask
    worker` (no nanny: one that dies stays dead) with that preload script."""
    return dask_cluster(
        tmp_path, [(["--no-nanny", "--preload", str(preload)], {})],
        {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(allowed_failures)})


def test_a_night_whose_worker_dies_reports_the_schedulers_retries_not_the_clients(
        root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The scheduler's allowed-failures (0 here) decides how often a night whose worker dies
    is tried again, whatever --retries says (2 here): the run warns at the start, and the
    manifest gives the scheduler's number (it used to say "after 2 retries")."""
    preload = tmp_path / "dies.py"
    preload.write_text("import os\nimport mascara_actors.app.archive.night as night\n"
                       "night.reduce_camera_night = lambda task: os._exit(1)\n")
    config = load_config()
    nights = scan_archive(root, config).nights
    run = ArchiveRun(nights, root=root, out=tmp_path / "out", config_dir=config.directory,
                     command=("test",), retries=2)
    with (_one_worker(tmp_path, 0, preload) as (address, _),
          caplog.at_level(logging.WARNING, logger="mascara_actors"),
          archive_client(address, retries=2) as client):
        t0 = time.monotonic()
        (outcome,) = run.run(client, lambda _: None)
        assert time.monotonic() - t0 < 30
    assert (f"the scheduler at {address} tries a night whose worker dies 0 more times, not "
            "--retries 2 (its distributed.scheduler.allowed-failures, which a client cannot "
            "change)") in caplog.text
    assert outcome.status == "failed"
    assert outcome.error.startswith("KilledWorker: Attempted to run task")
    assert outcome.error.endswith("(after 0 retries: the scheduler's allowed-failures)")
    (row,) = read_manifest(run.manifest)
    assert row["error"] == outcome.error


def test_relative_paths_reach_a_worker_that_runs_elsewhere(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`archive raw --out out --scheduler ...` from the archive's parent directory: a `dask
    worker` started in another directory sees every path of the night's task (its nights all
    failed, "does not see the archive raw")."""
    preload = tmp_path / "sees.py"
    preload.write_text(
        "import mascara_actors.app.archive.night as night\n"
        "from mascara_actors.app.archive.task import NightOutcome\n"
        "def sees(task):\n"
        "    paths = (task.archive_root, task.out, task.config_dir, *task.night.frames())\n"
        "    unseen = [str(p) for p in paths if not p.exists()]\n"
        "    return NightOutcome(night=task.night.night, camera=task.night.camera_id,\n"
        "                        status='failed' if unseen else 'verified',\n"
        "                        frames=task.night.science, error=' '.join(unseen))\n"
        "night.reduce_camera_night = sees\n")
    config_dir = tmp_path / "config"
    shutil.copytree(load_config().directory, config_dir)
    with _one_worker(tmp_path, 0, preload) as (address, _):  # its worker runs where pytest does
        monkeypatch.chdir(tmp_path)
        (night,) = scan_archive(Path("raw"), load_config(Path("config"))).nights
        run = ArchiveRun([night], root=Path("raw"), out=Path("out"), config_dir=Path("config"),
                         command=("test",))
        with archive_client(address) as client:
            (outcome,) = run.run(client, lambda _: None)
    assert (outcome.status, outcome.error) == ("verified", "")


def test_sigterm_stops_the_run_at_a_sets_end_with_its_own_exit_status(root: Path,
                                                                       tmp_path: Path) -> None:
    """As systemd stops a service: SIGTERM to the command alone. The running night saves its
    current set and stops; the exit status says which signal it was (143), as the other
    commands' do."""
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "mascara_actors.cli", "archive", str(root),
                            "--out", str(out), "--workers", "1"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        events = out / "20260320LPC" / "logs" / "events.jsonl"
        while time.monotonic() < deadline and not events.exists():
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 128 + signal.SIGTERM, err
    assert "stopped: run the same command again to finish the nights" in err
    (manifest,) = (out / "manifests").glob("archive-*.csv")
    (row,) = read_manifest(manifest)
    assert row["status"] == "stopped", row
