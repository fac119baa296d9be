"""Crash test: a writer process killed with SIGKILL at random moments never leaves a corrupt
file, and the combine after a restart equals the combine of an uninterrupted run.

The writers are forked by one long-lived child (the "zygote", see ``_data.CRASH_ZYGOTE``) so
that each trial costs a fork, not a Python start-up.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mascara_actors.errors import StorageError
from mascara_actors.storage import NightFile, NightId
from mascara_actors.storage._sources import SetSource
from tests.mascara_actors.storage._data import (
    CRASH_ZYGOTE,
    NIGHT,
    make_night,
    nightly_content,
    run_night,
)

REPO = Path(__file__).resolve().parents[3]
SEED, NSETS, NSTARS = 21, 4, 40
TRIALS = 30


class Zygote:
    """Talks to the forking child: one writer per :meth:`start`."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CRASH_ZYGOTE, str(SEED), str(NSETS), str(NSTARS)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._line() == ["zygote"]

    def _line(self) -> list[str]:
        """The next whole line's words (every line is written by one ``os.write``)."""
        line = self.proc.stdout.readline()
        if not line.endswith("\n"):
            pytest.fail(f"the zygote stopped; its output ended with {line!r}")
        return line.split()

    def start(self, night_dir: Path) -> int:
        """Fork a writer on ``night_dir``; return its pid once it runs."""
        self.proc.stdin.write(f"{night_dir}\n")
        self.proc.stdin.flush()
        word, pid = self._line()
        assert word == "ready"
        return int(pid)

    def wait(self, pid: int) -> tuple[int, float | None]:
        """Wait for the writer's end: (wait status, its working time if it finished)."""
        work = None
        while True:
            line = self._line()
            if len(line) == 2 and line[0] == "done":
                work = float(line[1])
            elif len(line) == 3 and line[0] == "exit" and line[1] == str(pid):
                return int(line[2]), work
            else:  # a broken protocol must fail clearly, never be misread
                pytest.fail(f"unexpected line from the zygote while waiting for {pid}: {line}")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    """The forking child, shared by the module's tests."""
    z = Zygote()
    yield z
    z.close()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, zygote: Zygote
                  ) -> tuple[bytes, dict, float]:
    """Bytes and content of the nightly file of an uninterrupted writer, and the shortest
    working time of three such writers in seconds (shared, read-only)."""
    files, times = [], []
    for _ in range(3):
        night_dir = tmp_path_factory.mktemp("reference") / NIGHT
        status, work = zygote.wait(zygote.start(night_dir))
        assert status == 0
        files.append((night_dir / "lightcurves" / f"fast_{NIGHT}.hdf5").read_bytes())
        times.append(work)
    assert files[0] == files[1] == files[2]
    path = night_dir / "lightcurves" / f"fast_{NIGHT}.hdf5"
    return files[0], nightly_content(path), min(times)


def _check_no_corrupt_file(night_dir: Path, reference: dict) -> None:
    nid = NightId.from_dir(night_dir)
    for path in sorted((night_dir / "tmp").glob("*.hdf5")):
        SetSource.open_checked(path, nid, "fast")  # raises on any incomplete file
    for path in sorted((night_dir / "lightcurves").glob("*.hdf5")):
        with NightFile(path) as nf:
            assert len(nf.ids()) > 0
        # a nightly file is only ever installed complete
        assert nightly_content(path) == reference


def test_kill_at_random_moments(tmp_path: Path, zygote: Zygote,
                                uninterrupted: tuple[bytes, dict, float]) -> None:
    ref_bytes, ref_content, work_s = uninterrupted
    sets = make_night(SEED, nsets=NSETS, nstars=NSTARS)
    rng = random.Random(5)
    killed = 0
    for trial in range(TRIALS):
        night_dir = tmp_path / str(trial) / NIGHT
        pid = zygote.start(night_dir)
        time.sleep(rng.uniform(0, work_s))
        with contextlib.suppress(ProcessLookupError):  # it may have finished already
            os.kill(pid, signal.SIGKILL)
        status, _ = zygote.wait(pid)
        killed += os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        try:
            _check_no_corrupt_file(night_dir, ref_content)
        except StorageError as exc:  # pragma: no cover - the failure this test exists for
            pytest.fail(f"trial {trial}: corrupt file after kill -9: {exc}")
        # restart: the writer cleans up, writes what is missing and combines again
        out = run_night(night_dir, sets)
        assert nightly_content(out) == ref_content, f"trial {trial}"
        assert out.read_bytes() == ref_bytes, f"trial {trial}"
        assert not any(night_dir.rglob("*.tmp"))
        assert list((night_dir / "tmp").glob("*.hdf5")) == []
    # the kills landed mid-run often enough to mean something (timing varies with load)
    assert killed >= TRIALS // 2
