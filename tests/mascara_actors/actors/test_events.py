"""Events (one JSON line each) and the summariser's counters (issue 6)."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from mascara_actors.actors import summariser
from mascara_actors.actors.worker import Worker
from mascara_actors.messages import (
    ActorFailed,
    AstrometryDone,
    Event,
    FrameFailed,
    FrameReducedEvent,
    NightFinished,
    NightStarted,
    QueueDepths,
    SetBinned,
    SetSaved,
    Spooled,
    WarningEvent,
    WorkerSpec,
    from_json,
    to_json,
)
from mascara_actors.night_state import NightState

EXAMPLES: list[Event] = [
    NightStarted(night="20260320", camera="LPC", out_dir="/x", frames_expected=60),
    FrameReducedEvent(
        lstseq=65344200,
        nstars=74,
        nflagged=12,
        latency_s=0.25,
        timings={"read": 0.1, "total": 0.2},
        sky=799.5,
        ccdtemp=-15.0,
    ),
    FrameFailed(lstseq=65344201, path="/x/65344201C.fits", reason="truncated"),
    AstrometryDone(
        lstseq=65344200, setidx=1306884, dr=0.02, nstars=46, nused=45, aflag=0, solved=True
    ),
    SetSaved(kind_="fast", setidx=1306884, nframes=50, nrecords=3700, path="/x/t.hdf5"),
    SetBinned(setidx=1306884, nimages=49, nrefused=1, flag=0, path="/x/b.fits", nstars=900),
    QueueDepths(depths={"spool": 3, "frames": 8, "records": 4}),
    Spooled(spooled=5, caught_up=2),
    WarningEvent(source="reducer", message="worker replaced", lstseq=65344230),
    ActorFailed(source="reducer", message="worker keeps dying"),
    NightFinished(frames_reduced=58, frames_failed=2, nightly_files=["/x/f.hdf5"], wall_s=9.5),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda ev: ev.kind)
def test_every_event_survives_a_json_line(event: Event) -> None:
    line = to_json(event)
    assert "\n" not in line
    assert line.startswith(f'{{"kind":"{event.kind}","time":')
    assert from_json(line) == event


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event kind 'Nope'"):
        from_json('{"kind": "Nope", "time": 0}')


def test_night_state_counts_events() -> None:
    state = NightState()
    for ev in EXAMPLES:
        state.apply(ev)
    assert (state.night, state.camera, state.frames_expected) == ("20260320", "LPC", 60)
    assert (state.frames_reduced, state.frames_failed, state.frames_done) == (1, 1, 2)
    assert (state.stars_measured, state.flags_raised) == (74, 12)
    assert (state.spooled, state.caught_up) == (5, 2)
    assert state.queue_depths == {"spool": 3, "frames": 8, "records": 4}
    assert (state.sets_saved, state.sets_binned, state.warnings) == (1, 1, 1)
    assert state.fatal == "reducer: worker keeps dying"
    levels = [(level, lstseq) for _, level, lstseq, _ in state.problems]
    assert levels == [("error", 65344201), ("warning", 65344230), ("error", None)]


@pytest.mark.anyio
@pytest.mark.backends("asyncio", "trio")
async def test_summariser_appends_and_mends_a_torn_last_line(anyio_backend, tmp_path) -> None:
    log_path = tmp_path / "logs" / "events.jsonl"
    log_path.parent.mkdir()
    log_path.write_text(to_json(EXAMPLES[0]) + "\n" + to_json(EXAMPLES[1])[:30])  # killed
    send, receive = anyio.create_memory_object_stream[Event](4)
    state = NightState()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: summariser.run(inbox=receive, log_path=log_path, state=state))
        async with send:
            for ev in EXAMPLES[2:5]:
                await send.send(ev)
    lines = log_path.read_text().splitlines()
    assert len(lines) == 5
    assert from_json(lines[0]) == EXAMPLES[0]
    assert [from_json(line) for line in lines[2:]] == EXAMPLES[2:5]
    assert state.frames_failed == 1


def test_worker_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        Worker("reducer", mode="cluster")
    assert dataclasses.replace(WorkerSpec("LPC"), dark="d.fits").dark == "d.fits"
