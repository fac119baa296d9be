"""A set is binned in the reducer's worker from the frames it reduced, byte for byte as from
disk, and only when its growing stack holds exactly the set's frames (issue 17: each frame
is read and calibrated once)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from mascara_actors.actors import jobs
from mascara_actors.app.replay import plan_replay
from mascara_actors.astrometry import AstrometricSolution
from mascara_actors.config import Config
from mascara_actors.messages import BinnedOutput, StoredSolution, WorkerSpec
from mascara_actors.sidereal import set_index
from tests.mascara_actors.actors.conftest import NIGHT

FRAMES = 8
"""Frames of the night's first set reduced here (a set needs ``binning.min_frames``)."""


@dataclasses.dataclass(frozen=True)
class ReducedSet:
    spec: WorkerSpec
    setidx: int
    paths: list[str]
    solution: AstrometricSolution


@pytest.fixture(scope="module")
def reduced_set(tmp_path_factory: pytest.TempPathFactory, config: Config) -> ReducedSet:
    job = plan_replay(NIGHT, tmp_path_factory.mktemp("plan"), config=config)
    spec = job.plan.worker
    first = job.frames[:FRAMES]
    paths = [str(path) for _, path in first]
    solution = jobs.session_for(spec).solve(paths[0], None)
    setidx = int(set_index(first[0][0]))
    assert {int(set_index(lstseq)) for lstseq, _ in first} == {setidx}
    return ReducedSet(spec, setidx, paths, solution)


@pytest.fixture
def growing(reduced_set: ReducedSet) -> Iterator[None]:
    jobs._GROWING.clear()
    yield
    jobs._GROWING.clear()


def _reduce(rs: ReducedSet, solutions: list[AstrometricSolution]) -> list[tuple[str, int]]:
    for path, solution in zip(rs.paths, solutions, strict=True):
        jobs.reduce_job(rs.spec, path, solution)
    return [(p, s.aflag) for p, s in zip(rs.paths, solutions, strict=True)]


def _assert_same(a: BinnedOutput, b: BinnedOutput) -> None:
    assert (a.setidx, a.nimages, a.nrefused, a.flag) == (b.setidx, b.nimages, b.nrefused, b.flag)
    assert a.path is not None
    assert b.path is not None
    assert Path(a.path).name == Path(b.path).name
    assert Path(a.path).read_bytes() == Path(b.path).read_bytes()
    assert a.records.tobytes() == b.records.tobytes()
    assert a.records.size > 100
    assert a.station.tobytes() == b.station.tobytes()


def test_the_grown_set_is_binned_as_from_disk(reduced_set: ReducedSet, growing: None,
                                              tmp_path: Path) -> None:
    rs = reduced_set
    # One frame whose own astrometry could not be checked is refused by both, and counted.
    solutions = [rs.solution] * FRAMES
    solutions[3] = dataclasses.replace(rs.solution, aflag=4)
    frames = _reduce(rs, solutions)
    for name in ("grown", "disk"):
        (tmp_path / name).mkdir()
    grown = jobs.finish_set(rs.spec, rs.setidx, frames, rs.solution, str(tmp_path / "grown"))
    from_disk = jobs.bin_set(rs.spec, rs.setidx, frames, rs.solution, str(tmp_path / "disk"))
    assert grown is not None
    assert (grown.nimages, grown.nrefused) == (FRAMES - 1, 1)
    _assert_same(grown, from_disk)
    # Finishing takes the stack: a second binning job of the set reads it from disk.
    assert jobs.finish_set(rs.spec, rs.setidx, frames, rs.solution, str(tmp_path)) is None


def test_a_stack_that_does_not_hold_exactly_the_set_is_not_used(
    reduced_set: ReducedSet, growing: None, tmp_path: Path
) -> None:
    rs = reduced_set
    frames = _reduce(rs, [rs.solution] * FRAMES)
    # A frame the binner never heard of (its reduction failed after the co-add, say).
    assert jobs.finish_set(rs.spec, rs.setidx, frames[1:], rs.solution, str(tmp_path)) is None

    frames = _reduce(rs, [rs.solution] * FRAMES)
    other = dataclasses.replace(rs.solution.model, roll_deg=rs.solution.model.roll_deg + 0.01)
    moved = dataclasses.replace(rs.solution, model=other)
    # The set's binning job comes with another model than the stack was grown with.
    assert jobs.finish_set(rs.spec, rs.setidx, frames, moved, str(tmp_path)) is None

    # The solution changed within the set: the set starts again at that frame, so the stack
    # holds only the frames since, and the set is read from disk.
    frames = _reduce(rs, [rs.solution] * 4 + [moved] * (FRAMES - 4))
    assert jobs.finish_set(rs.spec, rs.setidx, frames, moved, str(tmp_path)) is None

    # A stored solution (a resumed night) is never matched: those frames were not reduced.
    frames = _reduce(rs, [rs.solution] * FRAMES)
    s = rs.solution
    stored = StoredSolution(rs.setidx, s.lstseq, s.nstars, s.nused, s.dx, s.dy, s.aflag,
                            tuple(float(p) for p in s.params()))
    assert jobs.finish_set(rs.spec, rs.setidx, frames, stored, str(tmp_path)) is None
    assert not list(tmp_path.iterdir())  # nothing was written by a refused finish


def test_only_the_last_two_sets_are_kept(reduced_set: ReducedSet, growing: None) -> None:
    rs = reduced_set
    _reduce(rs, [rs.solution] * FRAMES)
    assert list(jobs._GROWING) == [rs.setidx]
    # Stacks of sets more than one before the newest are dropped (memory: a few images).
    jobs._GROWING[rs.setidx - 2] = jobs._GROWING[rs.setidx - 1] = jobs._GROWING[rs.setidx]
    jobs.reduce_job(rs.spec, rs.paths[0], rs.solution)
    assert sorted(jobs._GROWING) == [rs.setidx - 1, rs.setidx]
