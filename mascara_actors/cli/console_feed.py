"""What ``mascara-actors console --replay`` runs: a recorded night replayed as the camera,
fed to the console, and a star's light curve from what a night has written so far.

Apart from :mod:`mascara_actors.cli.console` so that the console's ``--help`` does not load
the pipeline and the console.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import numpy as np

from hw.recorded import paced_frames
from mascara_actors.actors.gate import PauseGate
from mascara_actors.actors.pipeline import run_night
from mascara_actors.app.replay import ReplayJob
from mascara_actors.catalogue import Catalogue
from mascara_actors.errors import StorageError
from mascara_actors.night_state import NightState
from mascara_actors.sidereal import lstseq2date
from mascara_actors.storage import NightFile, SetFile, list_set_files, nightly_file_path
from tui.feed import ConsoleFeed
from tui.messages import LightCurve

__all__ = ["light_curve_so_far", "replay_feed"]


def light_curve_so_far(night_dir: Path, catalogue: Catalogue, hip: int) -> LightCurve:
    """The fast light curve of star ``hip`` from what the night has written so far.

    Reads the nightly file if it exists, else every per-set file (``tmp/fast_*.hdf5``).

    Raises
    ------
    CatalogueError
        ``hip`` is not in the star catalogue.
    StorageError
        The star has no measurement on this camera yet (or nothing is written yet).
    """
    star = catalogue.by_hip([hip])
    vmag = float(star["vmag"][0])
    night_dir = Path(night_dir)
    nightly = nightly_file_path(night_dir, "fast")
    parts: list[np.ndarray] = []
    if nightly.exists():
        with NightFile(nightly) as nf:
            if hip in set(nf.ids().tolist()):
                parts.append(nf.lightcurve(hip, ["lstseq", "jdmid", "flux0", "flag"]))
    else:
        for path in list_set_files(night_dir, "fast").values():
            with SetFile(path, "fast") as set_file:
                rec = set_file.lightcurves([hip])
            if rec.size:
                parts.append(rec[["lstseq", "jdmid", "flux0", "flag"]])
    if not parts:
        raise StorageError(
            f"star not on this camera: HIP {hip} (V {vmag:.2f}) has no measurement in "
            f"{night_dir} yet; it may be outside this camera's field, fainter than the fast "
            "limit, or its first set is not saved yet"
        )
    rec = np.concatenate([np.asarray(p) for p in parts])
    rec = rec[np.argsort(rec["lstseq"], kind="stable")]
    flux = rec["flux0"].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, 25.0 - 2.5 * np.log10(flux), np.nan)
    return LightCurve(
        hip=hip,
        vmag=vmag,
        lstseq=rec["lstseq"].astype(np.int64),
        jd=rec["jdmid"].astype(float),
        mag=mag,
        flagged=rec["flag"] != 0,
    )


def replay_feed(
    job: ReplayJob, catalogue: Catalogue, *, speed: float, in_process: bool = False
) -> ConsoleFeed:
    """A console feed that replays ``job`` at ``speed`` x real time as the camera.

    The console's clock runs the night's own time: the start of the first frame's slot,
    advanced at ``speed`` from when the feed is made.
    """
    state = NightState()
    gate = PauseGate()
    stop = anyio.Event()
    plan = job.plan
    first = job.frames[0][0] if job.frames else 0
    night_t0: datetime = lstseq2date(first, format="calendar")
    if night_t0.tzinfo is None:
        night_t0 = night_t0.replace(tzinfo=UTC)
    wall0 = time.monotonic()

    def clock() -> datetime:
        return night_t0 + timedelta(seconds=(time.monotonic() - wall0) * speed)

    async def pipeline() -> object:
        source = paced_frames(job.frames, realtime=True, speed=speed)
        return await run_night(
            plan, source, catalogue, state=state, stop=stop, in_process=in_process, gate=gate
        )

    def latest() -> Path | None:
        return Path(state.last_frame) if state.last_frame else None

    return ConsoleFeed(
        state=state,
        camera=plan.camera,
        out_dir=plan.out_dir,
        clock=clock,
        wall=time.time,
        stop=stop,
        gate=gate,
        pipeline=pipeline,
        lookup=functools.partial(light_curve_so_far, plan.night_dir, catalogue),
        latest_frame=latest,
    )
