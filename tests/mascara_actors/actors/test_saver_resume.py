"""The savers when a set could not be written, and in the re-run that makes it again.

A set whose fast file cannot be written while the rest of the night can (a foreign file in
its way, a disk short of space for a moment): the night's other points are kept until the
re-run that makes the set again, which then gives the nightly file of an unbroken night. In
that re-run, the set's slow side, already on disk, is not written a second time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import numpy as np
import pytest

from mascara_actors.actors import saver
from mascara_actors.astrometry import AstrometricSolution
from mascara_actors.camera_model import CameraModel
from mascara_actors.config import load_config
from mascara_actors.messages import (
    BinnedOutput,
    Event,
    FrameReduced,
    NightlyFileWritten,
    ProductFailed,
)
from mascara_actors.storage import NightFile, SetWriter
from mascara_actors.storage import layout as L
from tests.mascara_actors.storage._data import (
    HEADER,
    NIGHT,
    SetData,
    make_night,
    nightly_content,
)

pytestmark = [pytest.mark.anyio, pytest.mark.backends("trio")]

MINOBS = 20
FAILED = 2
"""The set (index into the night) whose fast file cannot be written the first time."""


def _frames(sets: list[SetData], model: CameraModel) -> list[FrameReduced]:
    """The reducer's messages for ``sets``: one per exposure, records in frame order."""
    out = []
    for s in sets:
        solution = AstrometricSolution(model=model, lstseq=int(s.station["lstseq"][0]),
                                       nstars=len(s.stars), nused=len(s.stars), dx=0.0, dy=0.0)
        for row in s.station:
            out.append(FrameReduced(lstseq=int(row["lstseq"]), setidx=s.setidx,
                                    path=Path(f"{row['lstseq']}C.fits"),
                                    records=s.records[s.records["lstseq"] == row["lstseq"]],
                                    station=row[None], solution=solution))
    return out


async def _save(night_dir: Path, frames: list[FrameReduced],
                star_rows: Callable[[np.ndarray], np.ndarray]) -> list[Event]:
    """Run the fast saver over ``frames`` to the end of the night; its events."""
    send, inbox = anyio.create_memory_object_stream[FrameReduced](len(frames))
    events_in, events_out = anyio.create_memory_object_stream[Event](10_000)
    for frame in frames:
        send.send_nowait(frame)
    send.close()
    with SetWriter(night_dir, header=HEADER) as writer:
        await saver.run(inbox=inbox, events=events_in, writer=writer,
                        star_rows=star_rows, stopping=anyio.Event(),
                        combine_options={"minobs": MINOBS})
    with events_out:
        return [e async for e in events_out]


def _star_rows(sets: list[SetData]) -> Callable[[np.ndarray], np.ndarray]:
    """The savers' ``star_rows``: the star rows of the ids in a set's records."""
    every = np.concatenate([s.stars for s in sets])
    stars = every[np.unique(every["id"], return_index=True)[1]]
    return lambda records: stars[np.isin(stars["id"], records["id"])]


def _enough(ids: np.ndarray) -> np.ndarray:
    """The ids with at least MINOBS records."""
    unique, counts = np.unique(ids, return_counts=True)
    return unique[counts >= MINOBS]


async def test_a_set_not_written_loses_no_point_of_the_others(tmp_path: Path) -> None:
    sets = make_night(7, nsets=4, nstars=80)
    star_rows = _star_rows(sets)
    frames = _frames(sets, CameraModel.from_config(load_config().camera("LPC")))
    ids = np.concatenate([s.records["id"] for s in sets])
    others = np.concatenate([s.records["id"] for s in sets if s is not sets[FAILED]])
    # stars with enough points only with the failed set: the ones a partial combine loses
    at_risk = sorted(set(_enough(ids).tolist()) - set(_enough(others).tolist()))
    assert len(at_risk) >= 3, "the night must have stars short of minobs without that set"

    unbroken = tmp_path / "unbroken" / NIGHT
    await _save(unbroken, frames, star_rows)

    night = tmp_path / "broken" / NIGHT
    in_the_way = L.set_file_path(night, "fast", sets[FAILED].setidx)
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_bytes(b"not a per-set file")
    events = await _save(night, frames, star_rows)
    failed = [e for e in events if isinstance(e, ProductFailed)]
    # its write failed, and the foreign file in its place was left out of the nightly file
    assert [(e.setidx, e.product) for e in failed] == [(sets[FAILED].setidx, "fast")] * 2
    assert "was left out of the nightly file" in failed[1].reason
    with NightFile(L.nightly_file_path(night, "fast")) as nf:
        assert not set(at_risk) & set(nf.stars["id"].tolist())  # short of minobs for now
    kept = sorted(p.name for p in L.tmp_dir(night).glob("fast_*.hdf5"))
    assert kept == sorted(L.set_file_path(night, "fast", s.setidx).name for s in sets)

    # the re-run: the foreign file moved away, the set made again from its frames
    in_the_way.unlink()
    again = [f for f in frames if f.setidx == sets[FAILED].setidx]
    assert not [e for e in await _save(night, again, star_rows) if isinstance(e, ProductFailed)]
    assert nightly_content(L.nightly_file_path(night, "fast")) == nightly_content(
        L.nightly_file_path(unbroken, "fast"))
    with NightFile(L.nightly_file_path(night, "fast")) as nf:
        assert set(at_risk) <= set(nf.stars["id"].tolist())
    assert not list(L.tmp_dir(night).glob("fast_*.hdf5")), "per-set files left after the re-run"


async def test_a_slow_set_on_disk_is_not_written_again(tmp_path: Path) -> None:
    sets = make_night(8, nsets=2, nstars=30)
    night = tmp_path / NIGHT
    with SetWriter(night, header=HEADER) as writer:  # what the earlier run left
        writer.write_set("slow", sets[0].setidx, sets[0].records, stars=sets[0].stars,
                         station=sets[0].station[:1])
    send, inbox = anyio.create_memory_object_stream[BinnedOutput](2)
    events_in, events_out = anyio.create_memory_object_stream[Event](100)
    for s in sets:
        send.send_nowait(BinnedOutput(setidx=s.setidx, nimages=50, nrefused=0, flag=0,
                                      path=None, records=s.records, station=s.station[:1]))
    send.close()
    with SetWriter(night, header=HEADER) as writer:
        nightly = await saver.run_slow(
            inbox=inbox, events=events_in, writer=writer, star_rows=_star_rows(sets),
            stopping=anyio.Event(), combine_options={}, on_disk=frozenset({sets[0].setidx}))
    with events_out:
        events = [e async for e in events_out]
    assert [type(e) for e in events] == [NightlyFileWritten], events
    assert nightly is not None
    with NightFile(nightly) as nf:
        assert nf.station["lstseq"].tolist() == [int(s.station["lstseq"][0]) for s in sets]


async def test_a_set_of_another_layout_left_out_of_the_nightly_file_is_reported(
        tmp_path: Path) -> None:
    sets = make_night(9, nsets=3, nstars=30)
    other = make_night(9, nsets=3, nstars=30, naper=3)[1]  # as another configuration wrote it
    night = tmp_path / NIGHT
    with SetWriter(night, header=HEADER) as writer:  # an earlier run, before the change
        writer.write_set("fast", other.setidx, other.records, stars=other.stars,
                         station=other.station, astrometry=other.astrometry)
    frames = _frames([sets[0], sets[2]], CameraModel.from_config(load_config().camera("LPC")))
    events = await _save(night, frames, _star_rows(sets))
    (failed,) = [e for e in events if isinstance(e, ProductFailed)]
    path = L.set_file_path(night, "fast", other.setidx)
    assert (failed.setidx, failed.product) == (other.setidx, "fast")
    assert f"{path} was left out of the nightly file (its record layout differs" in failed.reason
    assert path.exists()
