"""A set whose fast file cannot be written while the rest of the night can (a foreign file in
its way, a disk short of space for a moment): the night's other points are kept until the
re-run that makes the set again, which then gives the nightly file of an unbroken night."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

from mascara_actors.actors import saver
from mascara_actors.astrometry import AstrometricSolution
from mascara_actors.camera_model import CameraModel
from mascara_actors.config import load_config
from mascara_actors.messages import Event, FrameReduced, ProductFailed
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


async def _save(night_dir: Path, frames: list[FrameReduced], stars: np.ndarray
                ) -> list[Event]:
    """Run the fast saver over ``frames`` to the end of the night; its events."""
    send, inbox = anyio.create_memory_object_stream[FrameReduced](len(frames))
    events_in, events_out = anyio.create_memory_object_stream[Event](10_000)
    for frame in frames:
        send.send_nowait(frame)
    send.close()
    with SetWriter(night_dir, header=HEADER) as writer:
        await saver.run(inbox=inbox, events=events_in, writer=writer,
                        star_rows=lambda records: stars[np.isin(stars["id"], records["id"])],
                        stopping=anyio.Event(), combine_options={"minobs": MINOBS})
    with events_out:
        return [e async for e in events_out]


def _enough(ids: np.ndarray) -> np.ndarray:
    """The ids with at least MINOBS records."""
    unique, counts = np.unique(ids, return_counts=True)
    return unique[counts >= MINOBS]


async def test_a_set_not_written_loses_no_point_of_the_others(tmp_path: Path) -> None:
    sets = make_night(7, nsets=4, nstars=80)
    every = np.concatenate([s.stars for s in sets])
    stars = every[np.unique(every["id"], return_index=True)[1]]
    frames = _frames(sets, CameraModel.from_config(load_config().camera("LPC")))
    ids = np.concatenate([s.records["id"] for s in sets])
    others = np.concatenate([s.records["id"] for s in sets if s is not sets[FAILED]])
    # stars with enough points only with the failed set: the ones a partial combine loses
    at_risk = sorted(set(_enough(ids).tolist()) - set(_enough(others).tolist()))
    assert len(at_risk) >= 3, "the night must have stars short of minobs without that set"

    unbroken = tmp_path / "unbroken" / NIGHT
    await _save(unbroken, frames, stars)

    night = tmp_path / "broken" / NIGHT
    in_the_way = L.set_file_path(night, "fast", sets[FAILED].setidx)
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_bytes(b"not a per-set file")
    events = await _save(night, frames, stars)
    failed = [e for e in events if isinstance(e, ProductFailed)]
    assert [(e.setidx, e.product) for e in failed] == [(sets[FAILED].setidx, "fast")]
    with NightFile(L.nightly_file_path(night, "fast")) as nf:
        assert not set(at_risk) & set(nf.stars["id"].tolist())  # short of minobs for now
    kept = sorted(p.name for p in L.tmp_dir(night).glob("fast_*.hdf5"))
    assert kept == sorted(L.set_file_path(night, "fast", s.setidx).name for s in sets)

    # the re-run: the foreign file moved away, the set made again from its frames
    in_the_way.unlink()
    again = [f for f in frames if f.setidx == sets[FAILED].setidx]
    assert not [e for e in await _save(night, again, stars) if isinstance(e, ProductFailed)]
    assert nightly_content(L.nightly_file_path(night, "fast")) == nightly_content(
        L.nightly_file_path(unbroken, "fast"))
    with NightFile(L.nightly_file_path(night, "fast")) as nf:
        assert set(at_risk) <= set(nf.stars["id"].tolist())
    assert not list(L.tmp_dir(night).glob("fast_*.hdf5")), "per-set files left after the re-run"
