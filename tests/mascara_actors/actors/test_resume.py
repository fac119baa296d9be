"""Crash and resume of ``mascara-actors --replay`` as a subprocess (issue 6).

One output directory goes through four runs of the same command: stopped by SIGTERM at the
start, killed with SIGKILL once the first set is on disk, stopped by SIGINT in the middle
of the last set (paced at 4x real time so the signal lands while frames are reduced), and
run to the end. The nightly file must then equal the uninterrupted replay's, record for
record.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mascara_actors.actors.resume import resume_point
from mascara_actors.camera_model import CameraModel
from mascara_actors.errors import AstrometryFailed
from mascara_actors.rawframe import read_raw
from mascara_actors.sidereal import set_index
from mascara_actors.storage import NightFile
from tests.mascara_actors.actors.conftest import NIGHT, Replayed

_DEADLINE_S = 240.0


@dataclasses.dataclass(frozen=True)
class Run:
    returncode: int
    stderr: str
    set_files: list[str]
    """Per-set files on disk when the run ended."""
    reduced: int
    """Frames this run reduced (FrameReducedEvent lines after its NightStarted)."""


def _command(out: Path, *extra: str) -> list[str]:
    script = Path(sys.executable).parent / "mascara-actors"
    return [str(script), "--replay", str(NIGHT), "--out", str(out), *extra]


def _events(out: Path) -> list[dict]:
    """The event log so far, as dicts (a line being written is left out)."""
    logs = list(out.glob("*/logs/events.jsonl"))
    if not logs:
        return []
    rows = []
    for line in logs[0].read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _this_run(rows: list[dict], nth: int) -> list[dict]:
    """Events of the ``nth`` run (1-based) in the appended log."""
    starts = [i for i, r in enumerate(rows) if r["kind"] == "NightStarted"]
    if len(starts) < nth:
        return []
    end = starts[nth] if len(starts) > nth else len(rows)
    return rows[starts[nth - 1] : end]


def _set_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*/tmp/*.hdf5"))


def _run(
    out: Path,
    nth: int,
    *extra: str,
    until: Callable[[], bool] | None = None,
    send: int | None = None,
) -> Run:
    """Run the command; when ``until()`` becomes true, send it signal ``send``."""
    proc = subprocess.Popen(
        _command(out, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        if until is not None:
            deadline = time.monotonic() + _DEADLINE_S
            while not until():
                assert proc.poll() is None, "the run ended before the signal could be sent"
                assert time.monotonic() < deadline, "the run never got there"
                time.sleep(0.05)
            proc.send_signal(send)
        _, stderr = proc.communicate(timeout=_DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reduced = sum(r["kind"] == "FrameReducedEvent" for r in _this_run(_events(out), nth))
    return Run(proc.returncode, stderr, _set_files(out), reduced)


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> tuple[Path, dict[str, Run]]:
    """The four runs into one output directory (shared, read-only)."""
    out = tmp_path_factory.mktemp("resume")

    def reduced_in_run(nth: int) -> Callable[[], bool]:
        return lambda: any(r["kind"] == "FrameReducedEvent" for r in _this_run(_events(out), nth))

    runs = {
        "sigterm": _run(out, 1, until=reduced_in_run(1), send=signal.SIGTERM),
        "sigkill": _run(out, 2, until=lambda: bool(_set_files(out)), send=signal.SIGKILL),
        "sigint": _run(
            out, 3, "--realtime", "--speed", "4", until=reduced_in_run(3), send=signal.SIGINT
        ),
        "final": _run(out, 4),
    }
    return out, runs


def test_sigterm_stops_gracefully_with_a_message(chain) -> None:
    _, runs = chain
    run = runs["sigterm"]
    assert run.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in run.stderr
    assert "run the same command again" in run.stderr
    assert run.reduced >= 1
    assert run.set_files == []  # the first set was still open: left for the restart


def test_sigkill_leaves_whole_sets_only(chain) -> None:
    _, runs = chain
    run = runs["sigkill"]
    assert run.returncode == -signal.SIGKILL
    # killed once the first set's fast file appeared; its binning may or may not be done
    assert run.set_files[0] == "fast_001306884.hdf5"
    assert set(run.set_files) <= {"fast_001306884.hdf5", "slow_001306884.hdf5"}


def test_sigint_mid_set_keeps_the_open_set_for_the_restart(chain) -> None:
    _, runs = chain
    run = runs["sigint"]
    assert run.returncode == 128 + signal.SIGINT
    assert "stopped by SIGINT" in run.stderr
    assert "resuming: " in run.stderr
    assert 1 <= run.reduced < 10
    # the first set is complete (binned again here if the kill came before its binning)
    assert run.set_files == ["fast_001306884.hdf5", "slow_001306884.hdf5"]


def test_restart_finishes_the_night(chain) -> None:
    out, runs = chain
    run = runs["final"]
    assert run.returncode == 0, run.stderr
    assert "frames: 10 reduced, 0 failed, 50 already on disk, of 60" in run.stderr
    assert run.reduced == 10
    assert run.set_files == []  # combined into the nightly file, then removed
    rows = _events(out)
    assert sum(r["kind"] == "NightStarted" for r in rows) == 4
    assert [r["kind"] for r in rows].count("NightFinished") == 3  # SIGKILL skips the last
    assert not list(out.glob("*/**/*.tmp"))


def _nightly(out: Path) -> Path:
    (path,) = out.glob("*/lightcurves/fast_*.hdf5")
    return path


def _assert_rows_equal(a: np.ndarray, b: np.ndarray, what: str, skip=()) -> None:
    assert a.dtype == b.dtype, what
    assert a.shape == b.shape, what
    for name in a.dtype.names:
        if name in skip:
            continue
        nan = a[name].dtype.kind == "f"
        assert np.array_equal(a[name], b[name], equal_nan=nan), f"{what}: {name}"


def test_resumed_night_equals_an_uninterrupted_one(chain, clean_trio: Replayed) -> None:
    out, _ = chain
    with NightFile(clean_trio.nightly) as ref, NightFile(_nightly(out)) as got:
        _assert_rows_equal(got.stars, ref.stars, "stars")
        _assert_rows_equal(got.astrometry, ref.astrometry, "astrometry")
        # bit for bit, Sun and Moon included: the ephemeris grid is anchored to whole days
        _assert_rows_equal(got.station, ref.station, "station")
        ids = ref.ids()
        assert np.array_equal(got.ids(), ids)
        for star in ids:
            _assert_rows_equal(got.lightcurve(star), ref.lightcurve(star), f"star {star}")
    assert os.path.getsize(_nightly(out)) > 0


def test_resume_point_of_a_finished_night(clean_trio: Replayed, config, tmp_path) -> None:
    rp = resume_point(clean_trio.night_dir)
    with NightFile(clean_trio.nightly) as nf:
        astrometry = nf.astrometry
        sets = set(np.unique(set_index(nf.station["lstseq"])).tolist())
    assert rp.done_sets == sets == {1306884, 1306885}
    assert sorted(rp.solutions) == astrometry["setidx"].tolist()
    assert rp.skips(65344259)
    assert not rp.skips(65344300)  # the next set
    header = read_raw(NIGHT / "65344200C.fits.fz").header
    nominal = CameraModel.from_config(config.camera("LPC"), nx=header.xsize, ny=header.ysize)
    for row in astrometry:
        stored = rp.solutions[int(row["setidx"])]
        rebuilt = stored.rebuild(nominal)
        assert np.array_equal(rebuilt.params(), row["params"])  # bit for bit
        assert (rebuilt.lstseq, rebuilt.nused, rebuilt.aflag) == (
            row["lstseq"],
            row["nused"],
            row["aflag"],
        )
    broken = dataclasses.replace(stored, params=stored.params[:-1])
    with pytest.raises(AstrometryFailed, match="do not fit the layout"):
        broken.rebuild(nominal)
    empty = resume_point(tmp_path / "20260320LPC")
    assert (empty.done_sets, empty.solutions) == (frozenset(), {})
