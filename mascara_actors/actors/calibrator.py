"""The calibrator actor: each saved set calibrated live with the camera's earlier nights.

When the camera has a calibration (``OUT/calibration/{camera}/maps_*.hdf5``, made by
``mascara-actors calibrate``), the saver hands every set it writes to this actor, which
solves the set's clouds per sky patch and exposure, writes the calibrated points
(``{night}/calibrated/set_*.hdf5``) and reports the set's cloud map (:class:`SetCalibrated`).
The numpy work runs in a thread, off the event loop. A set that cannot be calibrated fails
alone with a warning: the raw light curves are saved as always, and the night goes on.

At the start, the sets an earlier run of the night saved without calibrating them (a crash
between the two) are calibrated from their per-set files first.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from mascara_actors.config import CameraConfig
from mascara_actors.decorrelation.live import LiveCalibration, calibration_dir, find_calibration
from mascara_actors.errors import StorageError
from mascara_actors.messages import Event, SetCalibrated, SetRecords, WarningEvent
from mascara_actors.sidereal import SET_SIZE
from mascara_actors.storage import SetFile, list_set_files
from mascara_actors.storage.live_sets import list_live_sets, write_live_set

__all__ = ["calibrate_set", "load_calibration", "run"]

log = logging.getLogger(__name__)


def load_calibration(out_dir: Path, camera: CameraConfig) -> tuple[LiveCalibration | None, str]:
    """The camera's calibration of earlier nights for the nights reduced into ``out_dir``
    (None without one), and what is wrong with the one found ("" when nothing is)."""
    where = calibration_dir(out_dir, camera.id)
    path = find_calibration(out_dir, camera.id)
    if path is None:
        log.info("%s: no calibration in %s: the light curves stay raw tonight (make one with "
                 "`mascara-actors calibrate BASELINE --out %s`)", camera.id, where, where)
        return None, ""
    try:
        calibration = LiveCalibration.load(path, pupil_m=camera.lens.aperture_mm / 1e3)
    except StorageError as exc:
        return None, f"{exc}: the light curves stay raw tonight"
    if calibration.camera_id != camera.id:
        return None, (f"{path} is a calibration of camera {calibration.camera_id}, not of "
                      f"{camera.id}: the light curves stay raw tonight; move it to "
                      f"{calibration_dir(out_dir, calibration.camera_id)}")
    log.info("%s: each set is calibrated with %s as it is saved", camera.id, path)
    return calibration, ""


def calibrate_set(calibration: LiveCalibration, night_dir: Path, camera: str,
                  msg: SetRecords) -> SetCalibrated:
    """Calibrate one set and write its calibrated points (blocking: run it in a thread)."""
    t0 = time.monotonic()
    live = calibration.calibrate(msg.setidx, msg.records, msg.stars, msg.station)
    path = write_live_set(night_dir, msg.setidx, camera=camera, maps=calibration.path,
                          points=live.points, bins=live.bins, clouds=live.clouds)
    patches, clouds = live.patch_clouds()
    measured = np.isfinite(clouds)
    return SetCalibrated(setidx=msg.setidx, path=str(path),
                         nstars=len(np.unique(live.bins["id"])),
                         patches=tuple(patches[measured].tolist()),
                         clouds=tuple(np.round(clouds[measured], 4).tolist()),
                         seconds=time.monotonic() - t0)


def _saved_set(path: Path) -> SetRecords:
    with SetFile(path) as f:
        return SetRecords(setidx=f.setidx, records=f.lightcurves(f.ids()), stars=f.stars(),
                          station=f.station())


async def run(
    *,
    inbox: ObjectReceiveStream[SetRecords],
    events: ObjectSendStream[Event],
    calibration: LiveCalibration,
    night_dir: Path,
    camera: str,
) -> None:
    """Calibrate the sets saved before without it, then every set of ``inbox``."""

    async def one(msg: SetRecords) -> None:
        try:
            done = await anyio.to_thread.run_sync(calibrate_set, calibration, night_dir,
                                                  camera, msg)
        except Exception as exc:
            log.exception("set %d not calibrated", msg.setidx)
            await events.send(WarningEvent(
                source="calibrator",
                message=f"set {msg.setidx}: not calibrated ({type(exc).__name__}: {exc}); "
                "its raw light curves are saved as always",
                lstseq=msg.setidx * SET_SIZE))
            return
        await events.send(done)

    async with inbox, events:
        calibrated = await anyio.to_thread.run_sync(list_live_sets, night_dir)
        saved = await anyio.to_thread.run_sync(list_set_files, night_dir, "fast")
        for setidx, path in saved.items():
            if setidx in calibrated:
                continue
            try:
                msg = await anyio.to_thread.run_sync(_saved_set, path)
            except Exception as exc:
                log.warning("set %d of %s not calibrated: %s", setidx, night_dir, exc)
                continue
            await one(msg)
        async for msg in inbox:
            await one(msg)
