"""Fixtures of the actor-runtime tests: the committed night, replays of it, their outputs.

A replay costs a worker process start (imports, catalogue, Sun/Moon table: 10-20 s on the
2-core test machine) plus about 0.2 s per frame, so each night is replayed once per session
and every test reads the result. The nights are shared and read-only: a test that needs to
change a night or an output works on a copy.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import signal
from collections import Counter
from pathlib import Path

import anyio
import numpy as np
import pytest

from hw.recorded import paced_frames
from mascara_actors.actors.pipeline import NightReport, run_night
from mascara_actors.app.replay import ReplayJob, plan_replay
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import Config, load_config
from mascara_actors.messages import Event, from_json
from mascara_actors.night_state import NightState

REPO = Path(__file__).resolve().parents[3]
NIGHT = REPO / "replay_data" / "night"
"""The committed 60-frame crop512 night of LPC (lstseq 65344200-65344259, two sets): 10
darks, 60 science frames and the simulator's truth. Read-only."""

TRUNCATED_LSTSEQ = 65344250
"""First frame of the night's second set: cut in half in the faulty night."""
GARBAGE_LSTSEQ = 65344210
"""A frame whose primary header is overwritten with garbage in the faulty night."""
KILL_AFTER_FRAMES = 20
"""The faulty replay stops and then kills its worker process after this many frames."""


@dataclasses.dataclass(frozen=True)
class Replayed:
    """One in-process replay of a night and what it left behind."""

    job: ReplayJob
    report: NightReport
    events: list[Event]
    killed_pid: int | None = None

    @property
    def night_dir(self) -> Path:
        return self.job.plan.night_dir

    @property
    def nightly(self) -> Path:
        """The fast nightly file."""
        (path,) = [p for p in self.report.nightly_files if Path(p).name.startswith("fast_")]
        return path

    def kinds(self) -> Counter[str]:
        return Counter(ev.kind for ev in self.events)


def read_events(night_dir: Path) -> list[Event]:
    """Every line of the night's ``logs/events.jsonl``, parsed."""
    text = (night_dir / "logs" / "events.jsonl").read_text(encoding="utf-8")
    return [from_json(line) for line in text.splitlines()]


def worker_pids(role: str = "reducer") -> list[int]:
    """Pids of this process's worker processes of ``role`` (reducer, binner)."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # the command name may hold spaces or parentheses: fields follow the last ')'
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if ppid == me and f"mascara-actors-{role}".encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="session")
def config() -> Config:
    """The repository's configuration (shared, immutable)."""
    return load_config()


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    """Hipparcos 2 (shared, read-only)."""
    return Catalogue.load()


def _replay(
    directory: Path,
    out: Path,
    config: Config,
    catalogue: Catalogue,
    *,
    backend: str,
    kill_worker_after: int | None = None,
) -> Replayed:
    """Plan ``directory`` as the CLI does and reduce it with ``run_night`` (worker process)."""
    job = plan_replay(directory, out, config=config)
    state = NightState()
    killed: list[int] = []

    async def kill_worker() -> None:
        # Freeze the worker, wait until the reducer is stuck on it (its job sent), then kill
        # it: the job fails with BrokenWorkerProcess and must be run again on a new worker.
        while state.frames_done < kill_worker_after:
            await anyio.sleep(0.05)
        (pid,) = worker_pids()
        os.kill(pid, signal.SIGSTOP)
        try:
            done, still = state.frames_done, 0.0
            while still < 1.5:
                await anyio.sleep(0.1)
                still = still + 0.1 if state.frames_done == done else 0.0
                done = state.frames_done
        finally:
            os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    async def main() -> NightReport:
        async with anyio.create_task_group() as tg:
            if kill_worker_after is not None:
                tg.start_soon(kill_worker)
            report = await run_night(job.plan, paced_frames(job.frames), catalogue, state=state)
            tg.cancel_scope.cancel()
        return report

    report = anyio.run(main, backend=backend)
    return Replayed(
        job=job,
        report=report,
        events=read_events(job.plan.night_dir),
        killed_pid=killed[0] if killed else None,
    )


@pytest.fixture(scope="session")
def clean_trio(tmp_path_factory, config, catalogue) -> Replayed:
    """The committed night replayed on trio (shared, read-only): the reference output that
    a crashed and resumed command-line replay must reproduce exactly."""
    out = tmp_path_factory.mktemp("clean_trio")
    return _replay(NIGHT, out, config, catalogue, backend="trio")


@pytest.fixture(scope="session")
def faulty_night(tmp_path_factory) -> Path:
    """A copy of the committed night, its files written in shuffled order, with frame
    TRUNCATED_LSTSEQ cut in half and the primary header of GARBAGE_LSTSEQ overwritten
    (shared, read-only)."""
    directory = tmp_path_factory.mktemp("faulty") / "night"
    directory.mkdir()
    files = sorted(NIGHT.iterdir())
    random.Random(6).shuffle(files)
    for f in files:
        shutil.copyfile(f, directory / f.name)
    cut = directory / f"{TRUNCATED_LSTSEQ}C.fits.fz"
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    garbage = directory / f"{GARBAGE_LSTSEQ}C.fits.fz"
    data = garbage.read_bytes()
    garbage.write_bytes(b"garbage!" * 360 + data[2880:])
    return directory


@pytest.fixture(scope="session")
def faulty_asyncio(tmp_path_factory, faulty_night, config, catalogue) -> Replayed:
    """The faulty night replayed on asyncio, its worker process killed mid-night (shared,
    read-only)."""
    out = tmp_path_factory.mktemp("faulty_asyncio")
    return _replay(
        faulty_night,
        out,
        config,
        catalogue,
        backend="asyncio",
        kill_worker_after=KILL_AFTER_FRAMES,
    )


def science_lstseqs(directory: Path = NIGHT) -> np.ndarray:
    """lstseq of every science frame of a recorded night, from the file names."""
    return np.array(
        sorted(int(p.name[:8]) for p in directory.iterdir() if p.name.endswith("C.fits.fz"))
    )
