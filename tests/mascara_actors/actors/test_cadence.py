"""Cadence and backpressure in virtual time (trio's MockClock), issue 6.

The reduction runs ``inline`` (``worker_mode="inline"``): on the event loop, so it takes no
virtual time. A worker process or thread would not do here: while a task waits for one,
every task is blocked and the autojumping clock runs ahead (anyio's 20 s start-up timeout of
a worker process then fires at once), so virtual durations would depend on real ones.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import numpy as np
import pytest

from hw.recorded import paced_frames
from mascara_actors.actors.pipeline import run_night
from mascara_actors.app.replay import plan_replay
from mascara_actors.frames import FrameReady
from mascara_actors.messages import (
    FrameReducedEvent,
    QueueDepths,
    Spooled,
)
from mascara_actors.sidereal import slot_length_solar_s
from mascara_actors.storage import NightFile
from tests.mascara_actors.actors.conftest import NIGHT, read_events, science_lstseqs

pytestmark = [pytest.mark.anyio, pytest.mark.backends("trio-autojump")]

SLOT_S = slot_length_solar_s()
"""6.4 sidereal seconds in seconds: 6.3825..."""
SAVER_DELAY_S = 20.0
"""A slow disk: the saver takes this long per frame, three slots."""
FRAMES = 30
"""Frames of the committed night played: by the 20th the channels are full and frames go
to the spool."""


async def _stamped(
    source: AsyncIterator[FrameReady], log: list[tuple[int, float]]
) -> AsyncIterator[FrameReady]:
    """Pass frames on, noting the virtual time each was handed to the camera actor."""
    async for frame in source:
        log.append((frame.lstseq, anyio.current_time()))
        yield frame


async def test_paced_frames_release_each_frame_at_the_end_of_its_slot(anyio_backend) -> None:
    lstseqs = [100, 101, 102, 105, 106]  # a gap of two slots
    frames = [(s, Path(f"{s:08d}C.fits")) for s in lstseqs]
    random.Random(1).shuffle(frames)
    got: list[tuple[int, float]] = []
    t0 = anyio.current_time()
    async for frame in _stamped(paced_frames(frames, realtime=True, speed=2.0), got):
        assert frame.path.name == f"{frame.lstseq:08d}C.fits"
    assert [s for s, _ in got] == lstseqs  # lstseq order, whatever the order given
    for lstseq, t in got:
        assert t - t0 == pytest.approx((lstseq - 100 + 1) * SLOT_S / 2.0, abs=1e-9)
    fast: list[tuple[int, float]] = []
    t1 = anyio.current_time()
    async for _ in _stamped(paced_frames(frames), fast):
        pass
    assert [s for s, _ in fast] == lstseqs
    assert all(t == t1 for _, t in fast)
    with pytest.raises(ValueError, match="speed must be > 0"):
        async for _ in paced_frames(frames, realtime=True, speed=0.0):
            pass


async def test_slow_saver_backs_up_to_the_spool_while_the_camera_keeps_time(
    anyio_backend, tmp_path, config, catalogue
) -> None:
    job = plan_replay(NIGHT, tmp_path, config=config, realtime=True)
    assert job.plan.live  # a paced replay: the camera edge must never wait
    released: list[tuple[int, float]] = []
    t0 = anyio.current_time()
    report = await run_night(
        job.plan,
        _stamped(paced_frames(job.frames[:FRAMES], realtime=True), released),
        catalogue,
        worker_mode="inline",
        saver_delay=SAVER_DELAY_S,
    )
    t_end = anyio.current_time()
    lstseqs = science_lstseqs()[:FRAMES]

    # The camera: every frame released on its slot, none late, although the saver needs
    # three slots per frame.
    assert [s for s, _ in released] == lstseqs.tolist()
    due = (lstseqs - lstseqs[0] + 1) * SLOT_S
    assert np.allclose([t - t0 for _, t in released], due, rtol=0, atol=1e-6)

    # Backpressure: the saver sets the pace of the night...
    assert t_end - t0 >= len(lstseqs) * SAVER_DELAY_S
    # ... the reducer's outbox and inbox fill up, and frames wait in the spool.
    events = read_events(job.plan.night_dir)
    channels = config.reduction.channels
    full = [
        ev.depths
        for ev in events
        if isinstance(ev, QueueDepths)
        and ev.depths["records"] == channels.records
        and ev.depths["frames"] == channels.frames
        and ev.depths["spool"] > 0
    ]
    assert full
    spooled = [ev for ev in events if isinstance(ev, Spooled)]
    assert spooled
    assert spooled[-1].spooled > 0
    assert spooled[-1].caught_up == spooled[-1].spooled
    assert max(d["spool"] for d in full) <= spooled[-1].spooled

    # Nothing lost: every frame reduced once and saved.
    reduced = [ev.lstseq for ev in events if isinstance(ev, FrameReducedEvent)]
    assert reduced == lstseqs.tolist()
    assert report.ok
    assert report.state.spooled == report.state.caught_up > 0
    (fast,) = [p for p in report.nightly_files if p.name.startswith("fast_")]
    with NightFile(fast) as nf:
        assert np.array_equal(nf.station["lstseq"], lstseqs)
