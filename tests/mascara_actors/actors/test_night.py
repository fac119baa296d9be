"""A recorded night through the whole actor system, on both anyio backends (issue 6).

``clean_trio`` replays the committed night on trio; ``faulty_asyncio`` replays a copy with
a truncated frame and a frame with a garbage header on asyncio, and kills the worker
process mid-night. Both use a real worker process. The light curves are checked against the
simulator's truth, the tables and the event log against each other.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from scipy.spatial import cKDTree

from hw.recorded import paced_frames
from hw.sim.truth import read_truth
from mascara_actors.actors.pipeline import NightReport, run_night
from mascara_actors.actors.reducer import MAX_BROKEN_IN_A_ROW
from mascara_actors.app.replay import plan_replay
from mascara_actors.errors import CameraDisconnected
from mascara_actors.frames import FrameReady
from mascara_actors.messages import (
    ActorFailed,
    FrameFailed,
    FrameReducedEvent,
    NightFinished,
    NightStarted,
    SetBinned,
    SetSaved,
    WarningEvent,
)
from mascara_actors.sidereal import set_index
from mascara_actors.storage import NightFile
from tests.mascara_actors.actors.conftest import (
    GARBAGE_LSTSEQ,
    NIGHT,
    TRUNCATED_LSTSEQ,
    Replayed,
    read_events,
    science_lstseqs,
    worker_pids,
)

BACKENDS = ["trio", "asyncio"]
RUNS = {"trio": "clean_trio", "asyncio": "faulty_asyncio"}
FAILED = {"trio": set(), "asyncio": {GARBAGE_LSTSEQ, TRUNCATED_LSTSEQ}}


@pytest.fixture(params=BACKENDS)
def replayed(request: pytest.FixtureRequest) -> tuple[str, Replayed]:
    """(backend, replay) for each backend (shared session results, read-only)."""
    return request.param, request.getfixturevalue(RUNS[request.param])


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    """The simulator's truth rows of the committed night (shared, read-only)."""
    return read_truth(NIGHT / "truth.fits").truth


def _isolated_ids(truth: np.ndarray, radius_px: float = 12.0) -> np.ndarray:
    """HIP ids of rendered stars with no other rendered star within ``radius_px`` on the
    night's first frame (the stars drift a few pixels in a night of 60 frames)."""
    first = truth[truth["lstseq"] == truth["lstseq"].min()]
    xy = np.column_stack([first["x"], first["y"]])
    counts = np.array([len(n) for n in cKDTree(xy).query_ball_point(xy, radius_px)])
    return first["id"][counts == 1]


def test_light_curves_match_the_truth(replayed, truth) -> None:
    _, run = replayed
    isolated = set(_isolated_ids(truth).tolist())
    chi, dpos = [], []
    with NightFile(run.nightly) as nf:
        ids = nf.ids()
        assert len(ids) >= 40  # stars seen >= minobs (51) times on the 512 x 384 crop
        for star in ids:
            lc = nf.lightcurve(star, ["lstseq", "flux1", "eflux1", "pflag", "x", "y"])
            assert np.all(np.diff(lc["lstseq"]) > 0)  # sorted, no repeats
            if int(star) not in isolated:
                continue
            t = truth[truth["id"] == star]
            both, il, it = np.intersect1d(lc["lstseq"], t["lstseq"], return_indices=True)
            assert both.size == lc.size  # every measurement has its true value
            good = lc["pflag"][il] == 0
            chi.append(((lc["flux1"][il] - t["flux"][it]) / lc["eflux1"][il])[good])
            dpos.append(np.hypot(lc["x"][il] - t["x"][it], lc["y"][il] - t["y"][it])[good])
    chi_all, dpos_all = np.concatenate(chi), np.concatenate(dpos)
    assert chi_all.size >= 500
    # The 4.5 px aperture holds the whole PSF: measured - true is noise of the stated size.
    assert 0.7 <= np.mean(chi_all**2) <= 1.4
    assert np.mean(np.abs(chi_all) < 3.0) >= 0.98
    assert abs(np.median(chi_all)) < 0.5  # no bias beyond half an error bar
    assert np.sqrt(np.mean(dpos_all**2)) <= 0.15


def test_station_has_one_row_per_reduced_frame(replayed) -> None:
    backend, run = replayed
    expected = np.setdiff1d(science_lstseqs(), sorted(FAILED[backend]))
    with NightFile(run.nightly) as nf:
        station, stars = nf.station, nf.stars
        astrometry = nf.astrometry
        assert np.array_equal(station["lstseq"], expected)
        # a star's nobs is its light curve's length, its range that of its lstseq
        for row in stars[:10]:
            lc = nf.lightcurve(row["id"], ["lstseq"])
            assert row["nobs"] == lc.size
            assert (row["lstseqmin"], row["lstseqmax"]) == (lc["lstseq"][0], lc["lstseq"][-1])
    assert np.all(station["nstars"] > 0)
    # one astrometry row per set, each a solution made on a frame of that set
    assert astrometry is not None
    assert np.array_equal(astrometry["setidx"], np.unique(set_index(expected)))
    assert np.array_equal(set_index(astrometry["lstseq"]), astrometry["setidx"])


def test_event_log_parses_and_counts_match(replayed) -> None:
    backend, run = replayed
    events, report = run.events, run.report
    expected = np.setdiff1d(science_lstseqs(), sorted(FAILED[backend]))
    reduced = [ev.lstseq for ev in events if isinstance(ev, FrameReducedEvent)]
    failed = {ev.lstseq for ev in events if isinstance(ev, FrameFailed)}
    # frames reduced once each, in lstseq order whatever the order of the files
    assert reduced == expected.tolist()
    assert failed == FAILED[backend]
    assert report.state.frames_reduced == len(reduced)
    assert report.state.frames_failed == len(failed)
    (started,) = [ev for ev in events if isinstance(ev, NightStarted)]
    assert started.frames_expected == 60
    assert started.camera == "LPC"
    (finished,) = [ev for ev in events if isinstance(ev, NightFinished)]
    assert events[-1] is finished or events[-1] == finished
    assert (finished.frames_reduced, finished.frames_failed) == (len(reduced), len(failed))
    assert sorted(finished.nightly_files) == sorted(str(p) for p in run.report.nightly_files)
    assert {Path(p).name.split("_")[0] for p in finished.nightly_files} == {"fast", "slow"}
    binned = [ev for ev in events if isinstance(ev, SetBinned)]
    assert [ev.setidx for ev in binned] == np.unique(set_index(expected)).tolist()
    assert all(Path(ev.path).is_file() and ev.nstars > 0 for ev in binned)
    assert sum(ev.nimages for ev in binned) == len(reduced)
    saved = [ev for ev in events if isinstance(ev, SetSaved)]
    assert [ev.setidx for ev in saved] == np.unique(set_index(expected)).tolist()
    assert sum(ev.nframes for ev in saved) == len(reduced)
    with NightFile(run.nightly) as nf:
        assert sum(ev.nrecords for ev in saved) == sum(
            ev.nstars for ev in events if isinstance(ev, FrameReducedEvent)
        )
        assert int(nf.stars["nobs"].sum()) <= sum(ev.nrecords for ev in saved)
    assert report.ok
    assert not report.stopped_early
    assert report.failure is None


def test_bad_frames_fail_alone(faulty_asyncio) -> None:
    events = faulty_asyncio.events
    reasons = {ev.lstseq: ev.reason for ev in events if isinstance(ev, FrameFailed)}
    assert set(reasons) == {GARBAGE_LSTSEQ, TRUNCATED_LSTSEQ}
    assert str(GARBAGE_LSTSEQ) in reasons[GARBAGE_LSTSEQ]
    # the truncated frame opens set 2: its astrometry check fails, the next frame does it
    assert reasons[TRUNCATED_LSTSEQ].startswith("astrometry: ")
    assert "truncated" in reasons[TRUNCATED_LSTSEQ]
    problems = [p for p in faulty_asyncio.report.state.problems if p[1] == "error"]
    assert {p[2] for p in problems} == {GARBAGE_LSTSEQ, TRUNCATED_LSTSEQ}


def test_killed_worker_is_replaced_and_the_night_goes_on(faulty_asyncio) -> None:
    run = faulty_asyncio
    assert run.killed_pid is not None
    assert run.killed_pid not in worker_pids()  # reaped; its replacement ended with the loop
    assert run.report.worker_restarts == 1
    (warning,) = [ev for ev in run.events if isinstance(ev, WarningEvent)]
    assert warning.source == "reducer"
    assert "died and was replaced" in warning.message
    # the frame whose job was lost with the worker was reduced on the new one
    assert warning.lstseq not in FAILED["trio"] | {GARBAGE_LSTSEQ, TRUNCATED_LSTSEQ}
    assert warning.lstseq in [ev.lstseq for ev in run.events if isinstance(ev, FrameReducedEvent)]


def test_a_worker_that_keeps_dying_stops_the_night(tmp_path, config, catalogue) -> None:
    """Every worker process is killed as it starts: after MAX_BROKEN_IN_A_ROW frames the
    reducer gives up, the night stops early and says why, and nothing half-done is saved."""
    job = plan_replay(NIGHT, tmp_path, config=config)

    async def killer() -> None:
        # Kill each worker once it runs its job (it has started importing numpy), not while
        # anyio is still starting it: that path of anyio leaks the worker's pipes.
        while True:
            for pid in worker_pids():
                with contextlib.suppress(OSError):
                    if b"numpy" in Path(f"/proc/{pid}/maps").read_bytes():
                        os.kill(pid, signal.SIGKILL)
            await anyio.sleep(0.01)

    async def main() -> NightReport:
        async with anyio.create_task_group() as tg:
            tg.start_soon(killer)
            report = await run_night(job.plan, paced_frames(job.frames), catalogue)
            tg.cancel_scope.cancel()
        return report

    report = anyio.run(main, backend="trio")
    events = read_events(job.plan.night_dir)
    failed = [ev for ev in events if isinstance(ev, FrameFailed)]
    assert [ev.lstseq for ev in failed] == science_lstseqs()[:MAX_BROKEN_IN_A_ROW].tolist()
    assert all("worker process died twice" in ev.reason for ev in failed)
    (fatal,) = [ev for ev in events if isinstance(ev, ActorFailed)]
    assert fatal.source == "reducer"
    assert "stopping the night" in fatal.message
    assert report.stopped_early
    assert not report.ok
    assert report.failure == f"reducer: {fatal.message}"
    assert report.state.frames_reduced == 0
    assert report.worker_restarts == MAX_BROKEN_IN_A_ROW
    assert report.nightly_files == []
    assert not list(job.plan.night_dir.glob("tmp/*.hdf5"))


def test_a_camera_that_fails_stops_the_night_and_saves_what_it_measured(
    tmp_path, config, catalogue
) -> None:
    """The frame source raises CameraDisconnected after the first set and a few frames of
    the next: the failure is reported, the complete set is saved, the open one is left for
    the restart, and running again with the rest of the frames finishes the night."""
    job = plan_replay(NIGHT, tmp_path, config=config)
    sets = set_index(np.array([s for s, _ in job.frames]))
    n_first = int(np.sum(sets == sets[0]))
    given = n_first + 3

    async def failing() -> AsyncIterator[FrameReady]:
        async for frame in paced_frames(job.frames[:given]):
            yield frame
        raise CameraDisconnected("camera C did not come back on /dev/ttyUSB0")

    report = anyio.run(
        lambda: run_night(job.plan, failing(), catalogue, worker_mode="thread"), backend="asyncio"
    )
    events = read_events(job.plan.night_dir)
    (fatal,) = [ev for ev in events if isinstance(ev, ActorFailed)]
    assert fatal.source == "camera"
    assert "did not come back" in fatal.message
    assert report.stopped_early
    assert not report.ok
    assert report.failure == f"camera: {fatal.message}"
    saved = [ev.setidx for ev in events if isinstance(ev, SetSaved)]
    assert saved == [int(sets[0])]
    assert report.nightly_files == []
    # the restart reduces the rest, skips the saved set and ends with the nightly file
    again = plan_replay(NIGHT, tmp_path, config=config)
    assert again.skipped == n_first
    final = anyio.run(
        lambda: run_night(again.plan, paced_frames(again.frames), catalogue, worker_mode="thread"),
        backend="asyncio",
    )
    assert final.ok
    with NightFile(final.nightly_files[0]) as nf:
        assert nf.station["lstseq"].tolist() == science_lstseqs().tolist()
