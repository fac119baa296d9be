"""A live frame into the raw archive: its raw header, the checks before it is written, the
file.

A frame of the wrong shape or with impossible header values is *rejected*. A raw file is
never overwritten: a frame whose file already exists is left out (the file on disk is kept,
counted as ``existing``, with a warning). A frame that cannot be written is counted and left
out; several in a row end the source with a :class:`~mascara_actors.errors.StorageError`.
Files are checked for and written in a worker thread.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path

import anyio.to_thread

from hw.driver import CameraIdentity
from hw.readout import FrameHeader, ReadoutFrame
from mascara_actors import __version__
from mascara_actors.config import SensorConfig
from mascara_actors.errors import StorageError
from mascara_actors.frames import FrameReady
from mascara_actors.rawframe import RawHeader, raw_filename, write_raw

__all__ = ["RawArchive", "raw_header"]

log = logging.getLogger(__name__)

_MAX_WRITE_FAILURES = 3


def raw_header(
    frame: FrameHeader, *, camera: str, site: str, sensor: SensorConfig, imagetyp: str = "science"
) -> RawHeader:
    """The raw FITS header of a frame, from its readout header and the configuration.

    Parameters
    ----------
    frame
        The camera's header: lstseq, exposure start (JD UTC), exposure and readout times
        (seconds), CCD temperature (degrees C).
    camera
        Camera letter (N, E, S, W or C), the ``CAMERA`` key.
    site
        Site name as in ``SITE-OBS`` (``LaPalma``, ``LaSilla``).
    sensor
        The sensor: ``X0``, ``XSIZE``, ``Y0``, ``YSIZE`` of the science region, pixels.
    imagetyp
        ``science`` (default), ``dark``, ``bias`` or ``flat``.

    Returns
    -------
    RawHeader
        As :meth:`~mascara_actors.rawframe.RawHeader.of_exposure` derives it: ``LSTSEQ`` is
        the camera's slot and ``LSTIDX = LSTSEQ mod 13500``; ``LST`` is the reference-site
        LST (hours) at the exposure start ``JD``; ``JDMID = JD + EXPTIME / 2``; ``UTC-OBS``
        is ``JD`` as a calendar date; ``DWLDTIME`` is the readout time (seconds).
    """
    return RawHeader.of_exposure(
        int(frame.lstseq),
        jd=float(frame.jd_start),
        exptime=float(frame.exptime_s),
        ccdtemp=float(frame.ccdtemp_c),
        site=site,
        camera=camera,
        imagetyp=imagetyp,
        x0=sensor.x0,
        xsize=sensor.xsize,
        y0=sensor.y0,
        ysize=sensor.ysize,
        dwldtime=float(frame.readout_s),
    )


class RawArchive:
    """Where one live run writes its frames, and what became of those not written.

    Parameters
    ----------
    directory
        The raw archive (created by :meth:`prepare`); files are named as
        :func:`~mascara_actors.rawframe.raw_filename` names them.
    camera, site, sensor
        As for :func:`raw_header`.
    imagetyp
        What the frames are (``science``, ``dark``, ``bias`` or ``flat``).
    ext
        File name extension (``.fits``, ``.fits.gz`` or ``.fits.fz``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        camera: str,
        site: str,
        sensor: SensorConfig,
        imagetyp: str,
        ext: str,
    ) -> None:
        self.directory = directory
        self.camera = camera
        self.site = site
        self.sensor = sensor
        self.imagetyp = imagetyp
        self.ext = ext
        self.extra: dict[str, str] = {}
        """Extra header cards: the software and the camera (see :meth:`describe`)."""
        self.rejected = 0
        self.existing = 0
        self.write_failed = 0
        self._failures_in_a_row = 0

    async def prepare(self) -> None:
        """Create the archive directory if needed."""
        await anyio.to_thread.run_sync(partial(self.directory.mkdir, parents=True, exist_ok=True))

    def describe(self, ident: CameraIdentity) -> None:
        """Name this software and the camera ``ident`` in the header of every frame."""
        self.extra = {
            "SWVERSN": f"mascara-actors {__version__}",
            "CAMMODEL": f"{ident.vendor} {ident.model}",
            "CAMSER": ident.serial,
            "CAMFIRM": ident.firmware,
        }

    async def write(self, frame: ReadoutFrame, arrived: float) -> FrameReady | None:
        """Check ``frame`` and write it; its message (``arrived``: when it came off the
        readout link), or None when it is left out."""
        lstseq = int(frame.header.lstseq)
        problem = self._problem(frame)
        if problem is not None:
            self.rejected += 1
            log.error("frame %d of camera %s rejected: %s", lstseq, self.camera, problem)
            return None
        header = raw_header(
            frame.header,
            camera=self.camera,
            site=self.site,
            sensor=self.sensor,
            imagetyp=self.imagetyp,
        )
        path = self.directory / raw_filename(lstseq, self.camera, self.imagetyp, ext=self.ext)
        if await anyio.to_thread.run_sync(path.exists):
            self.existing += 1
            log.warning(
                "frame %d of camera %s not written: %s already exists and is kept (a raw file "
                "is never overwritten); the new frame is left out",
                lstseq,
                self.camera,
                path,
            )
            return None
        try:
            await anyio.to_thread.run_sync(
                partial(write_raw, path, frame.pixels, header, extra=self.extra)
            )
        except (OSError, ValueError, StorageError) as exc:
            self._failed(lstseq, path, exc)
            return None
        self._failures_in_a_row = 0
        log.debug("frame %d written to %s", lstseq, path)
        return FrameReady(path=path, lstseq=lstseq, arrived=arrived)

    def _failed(self, lstseq: int, path: Path, exc: Exception) -> None:
        """Frame ``lstseq`` could not be written: count it; StorageError after too many in a
        row."""
        self.write_failed += 1
        self._failures_in_a_row += 1
        log.error("frame %d could not be written to %s: %s", lstseq, path, exc)
        if self._failures_in_a_row >= _MAX_WRITE_FAILURES:
            raise StorageError(
                f"{self._failures_in_a_row} frames in a row could not be written to the raw "
                f"archive {self.directory} (last: {exc}): check its disk space and permissions"
            ) from exc

    def _problem(self, frame: ReadoutFrame) -> str | None:
        """Why ``frame`` cannot be a raw frame of this sensor, or None."""
        h = frame.header
        full = (self.sensor.ny, self.sensor.nx)
        if frame.pixels.shape != full:
            return f"shape {frame.pixels.shape} is not the sensor's full readout {full}"
        values = (h.jd_start, h.exptime_s, h.ccdtemp_c, h.readout_s)
        if not all(math.isfinite(v) for v in values) or h.exptime_s < 0:
            return f"impossible header values (jd, exptime, ccdtemp, readout) = {values}"
        return None
