"""The live frame source: a camera's frames into the raw archive, as ``FrameReady`` messages.

:func:`live_frames` is the camera actor's source for a real (or simulated) camera, the live
peer of :func:`mascara_actors.actors.pipeline.paced_frames` for recorded nights. It

1. checks that the camera is the configured one (letter and full readout shape);
2. starts the readout stream and arms the camera ahead of its clock
   (:meth:`~hw.driver.CameraDriver.arm_next`, or from a given first slot), aborting a
   sequence left armed by an earlier host;
3. for each verified frame from the readout link builds the raw header
   (:func:`raw_header`), writes the frame into the archive (the spool) in a worker thread,
   and yields ``FrameReady(path, lstseq, arrived)``.

Bad input never travels on: frames the readout link drops (corrupt, short, cut off) never
reach this module; the slots they leave out are logged and counted as ``missing``. Frames of
the wrong shape are counted as ``rejected``, frames of slots before the first one or already
seen as ``stale``. A control link that drops is reconnected by the driver; while no frame
comes, the camera is polled every ``poll_s`` seconds and re-armed if it has lost its
sequence (a power cycle). The counters are in a :class:`LiveStats` the caller may pass in.

Setting ``stop`` ends the source: no new frame is waited for; frames already read out (in
the driver's buffer) and the one being written are written and yielded; then the armed
exposures are aborted and the readout stopped. A consumer that stops iterating early should
close the generator (``contextlib.aclosing``) so this clean-up runs at once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream

from hw.driver import CameraDriver, CameraIdentity
from hw.protocol import CommandRejected, ErrorCode, FrameType
from hw.readout import FrameHeader, ReadoutFrame
from mascara_actors import __version__
from mascara_actors.actors.messages import FrameReady
from mascara_actors.config import SensorConfig
from mascara_actors.errors import CameraDisconnected, CameraError, ConfigError, StorageError
from mascara_actors.rawframe import RawHeader, raw_filename, write_raw
from mascara_actors.sidereal import (
    REFERENCE_SITE,
    SLOTS_PER_SIDEREAL_DAY,
    jd_to_datetime,
    slot_length_solar_s,
)

__all__ = ["MAX_ARM", "LiveStats", "live_frames", "raw_header"]

log = logging.getLogger(__name__)

MAX_ARM = 1_000_000
"""Most exposures one ``ARM`` can ask for (docs/camera-protocol.md)."""

# A frame is read out within the slot after its exposure; it may wait a few more slots in
# the camera's queue (max_queued_frames) before the link delivers it.
_GRACE_SLOTS = 4
_ARM_ATTEMPTS = 3
_MAX_WRITE_FAILURES = 3
_CLEANUP_S = 5.0


@dataclass
class LiveStats:
    """Counters of a :func:`live_frames` run, updated in place as frames come.

    Read it from the same event loop; ``dataclasses.replace(stats)`` gives a snapshot.
    """

    frames: int = 0
    """Frames written to the archive and yielded."""
    missing: int = 0
    """Armed slots whose frame never came (dropped by the camera or the readout check)."""
    rejected: int = 0
    """Frames received but unusable (wrong shape, impossible header values)."""
    stale: int = 0
    """Frames of slots before the first one, repeated or out of order (not yielded)."""
    write_failed: int = 0
    """Frames that could not be written to the archive (not yielded)."""
    arms: int = 0
    """Sequences armed (the first one plus re-arms after the camera lost its sequence)."""
    link_errors: int = 0
    """Polls or re-arms that failed because the camera was silent or away (retried)."""


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
        ``LSTSEQ`` is the camera's slot and ``LSTIDX = LSTSEQ mod 13500``; ``LST`` is the
        reference-site LST (hours) at the exposure start ``JD``; ``JDMID = JD +
        EXPTIME / 2``; ``UTC-OBS`` is ``JD`` as a calendar date; ``DWLDTIME`` is the readout
        time (seconds).
    """
    jd = float(frame.jd_start)
    exptime = float(frame.exptime_s)
    return RawHeader(
        lstseq=int(frame.lstseq),
        lstidx=int(frame.lstseq) % SLOTS_PER_SIDEREAL_DAY,
        lst=float(REFERENCE_SITE.local_sidereal_time(jd).lst),
        jd=jd,
        jdmid=jd + exptime / 2.0 / 86400.0,
        utc=jd_to_datetime(jd).replace(tzinfo=None),
        exptime=exptime,
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


async def live_frames(
    driver: CameraDriver,
    archive_dir: str | Path,
    *,
    camera: str,
    site: str,
    sensor: SensorConfig,
    first_lstseq: int | None = None,
    count: int | None = None,
    stop: anyio.Event,
    imagetyp: str = "science",
    ext: str = ".fits",
    lead_slots: int = 2,
    poll_s: float | None = None,
    stats: LiveStats | None = None,
) -> AsyncIterator[FrameReady]:
    """Expose back to back, write each frame into ``archive_dir`` and yield it.

    See the module docstring for the sequence, the bad-input rules and ``stop``.

    Parameters
    ----------
    driver
        An open camera (``async with`` it around the iteration).
    archive_dir
        The raw archive (created if needed); files are named
        ``{lstseq:08d}{camera}{ext}``.
    camera
        Camera letter; the camera must identify with it.
    site
        Site name for ``SITE-OBS``.
    sensor
        The sensor: its full readout ``(ny, nx)`` must be the camera's, its science region
        goes into the header.
    first_lstseq
        First slot to expose; None: ``lead_slots`` after the camera's current slot.
    count
        Frames to take; None: until ``stop`` is set.
    stop
        Set it to end the source cleanly (see the module docstring).
    imagetyp
        What to expose: ``science`` (default), or a calibration sequence of ``dark`` or
        ``bias`` frames (shutter closed) or twilight ``flat`` frames. Calibration frames are
        named ``{lstseq:08d}{camera}{imagetyp}{ext}`` and carry it in ``IMAGETYP``.
    ext
        ``.fits`` (default, cheapest to write), ``.fits.gz`` or ``.fits.fz``.
    lead_slots
        Slots between the camera's clock and the first armed slot (>= 1).
    poll_s
        Real seconds without a frame before the camera is polled (status, re-arm, end of
        a counted sequence); default one slot (6.38 s).
    stats
        Counters to update (default a private :class:`LiveStats`).

    Yields
    ------
    FrameReady
        ``path`` of the written raw frame, its ``lstseq``, and ``arrived`` (``time.time()``
        when the frame came off the readout link). Lstseqs increase strictly.

    Raises
    ------
    ConfigError
        If the camera's letter or frame shape is not the configured one.
    CameraError
        If the camera cannot be identified or armed at the start (timeouts, ``LATE`` for
        a ``first_lstseq`` already started), or its readout stream ends.
    StorageError
        After several consecutive frames could not be written to the archive.
    """
    if count is not None and count < 1:
        raise ValueError(f"count={count} must be >= 1 frame, or None for no limit")
    if lead_slots < 1:
        raise ValueError(f"lead_slots={lead_slots} must be >= 1")
    frame_type = FrameType.of(imagetyp)
    raw_filename(0, camera, imagetyp, ext=ext)  # checks ext before any command is sent
    poll = slot_length_solar_s() if poll_s is None else float(poll_s)
    if not (math.isfinite(poll) and poll > 0):
        raise ValueError(f"poll_s={poll_s} must be a positive number of seconds")
    session = _Session(
        driver,
        Path(archive_dir),
        camera=camera,
        site=site,
        sensor=sensor,
        count=count,
        ext=ext,
        lead_slots=lead_slots,
        stats=stats if stats is not None else LiveStats(),
        frame_type=frame_type,
    )
    try:
        await session.start(first_lstseq)
        while not stop.is_set() and not session.done:
            frame = await _receive(driver.frames, stop, poll)
            if frame is not None:
                ready = await session.take(frame)
                if ready is not None:
                    yield ready
            elif not stop.is_set():
                await session.poll()
        # Frames already read out when ``stop`` came are the ones in flight: keep them.
        while not session.done:
            try:
                frame = driver.frames.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            ready = await session.take(frame)
            if ready is not None:
                yield ready
    finally:
        with anyio.move_on_after(_CLEANUP_S, shield=True):
            await session.release()


async def _receive(
    frames: MemoryObjectReceiveStream[ReadoutFrame], stop: anyio.Event, timeout_s: float
) -> ReadoutFrame | None:
    """The next frame; None when ``timeout_s`` passes or ``stop`` is set first."""
    got: list[ReadoutFrame] = []
    ended = False

    async def cancel_on_stop(scope: anyio.CancelScope) -> None:
        await stop.wait()
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_on_stop, tg.cancel_scope)
        with anyio.move_on_after(timeout_s):
            try:
                got.append(await frames.receive())
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                ended = True
        tg.cancel_scope.cancel()
    if ended:
        raise CameraDisconnected(
            "the camera driver's readout stream ended while frames were wanted: keep the "
            "driver open (async with) for as long as live_frames runs"
        )
    return got[0] if got else None


class _Session:
    """State of one :func:`live_frames` run: the armed sequence and the frame bookkeeping."""

    def __init__(
        self,
        driver: CameraDriver,
        archive: Path,
        *,
        camera: str,
        site: str,
        sensor: SensorConfig,
        count: int | None,
        ext: str,
        lead_slots: int,
        stats: LiveStats,
        frame_type: FrameType,
    ) -> None:
        self.driver = driver
        self.frame_type = frame_type
        self.archive = archive
        self.camera = camera
        self.site = site
        self.sensor = sensor
        self.count = count
        self.ext = ext
        self.lead_slots = lead_slots
        self.stats = stats
        self.first = -1
        """First slot of the run (set by :meth:`start`)."""
        self.expected = -1
        """Next slot whose frame is due."""
        self.done = False
        self.armed = False
        self.readout_started = False
        self.write_failures = 0
        self.extra: dict[str, str] = {}

    @property
    def last(self) -> int | None:
        """Last slot of a counted run, None without a count."""
        return None if self.count is None else self.first + self.count - 1

    # -- start and end -----------------------------------------------------------------------

    async def start(self, first_lstseq: int | None) -> None:
        """Check the camera, start the readout, arm the first sequence."""
        await anyio.to_thread.run_sync(partial(self.archive.mkdir, parents=True, exist_ok=True))
        ident = await self.driver.identify()
        self._check_identity(ident)
        self.extra = {
            "SWVERSN": f"mascara-actors {__version__}",
            "CAMMODEL": f"{ident.vendor} {ident.model}",
            "CAMSER": ident.serial,
            "CAMFIRM": ident.firmware,
        }
        status = await self.driver.status()
        if status.state != "IDLE":
            cancelled = await self.driver.abort()
            log.warning(
                "camera %s was %s (next slot %s): aborted its %d exposures to arm afresh",
                self.camera,
                status.state,
                status.next_lstseq,
                cancelled,
            )
        await self.driver.start_readout()
        self.readout_started = True
        self.first = await self._arm(first_lstseq, self.count or MAX_ARM)
        self.expected = self.first
        log.info(
            "live: camera %s armed from lstseq %d for %s %s frames into %s",
            self.camera,
            self.first,
            self.frame_type.imagetyp,
            self.count if self.count is not None else "unlimited",
            self.archive,
        )

    def _check_identity(self, ident: CameraIdentity) -> None:
        if ident.camera != self.camera:
            raise ConfigError(
                f"the camera on this link identifies as camera {ident.camera!r} "
                f"(serial {ident.serial}), but camera {self.camera!r} was configured: check "
                "the cabling or the camera id"
            )
        full = (self.sensor.ny, self.sensor.nx)
        if (ident.ny, ident.nx) != full:
            raise ConfigError(
                f"camera {ident.camera} reads out {ident.ny} x {ident.nx} pixels (ny x nx) but "
                f"sensor {self.sensor.name!r} is configured with {full[0]} x {full[1]}: choose "
                "the camera's sensor in cameras.toml"
            )

    async def _arm(self, first: int | None, n: int) -> int:
        """Arm ``n`` slots from ``first`` (None: ahead of the camera clock); the first slot."""
        attempt = 0
        while True:
            attempt += 1
            try:
                if first is None:
                    got = await self.driver.arm_next(
                        n, lead_slots=self.lead_slots, frame_type=self.frame_type
                    )
                else:
                    await self.driver.arm(first, n, self.frame_type)
                    got = first
            except CommandRejected as exc:
                # arm_next races the camera clock: a slow round trip can make its slot LATE
                if exc.code != ErrorCode.LATE or first is not None or attempt >= _ARM_ATTEMPTS:
                    raise
                log.warning("arming was late (%s); trying again", exc)
                continue
            self.armed = True
            self.stats.arms += 1
            return got

    async def release(self) -> None:
        """Abort the armed exposures and stop the readout; failures are logged only."""
        if self.armed:
            try:
                await self.driver.abort()
            except CameraError as exc:
                log.warning(
                    "could not abort the armed exposures of camera %s: %s", self.camera, exc
                )
        if self.readout_started:
            try:
                await self.driver.stop_readout()
            except CameraError as exc:
                log.warning("could not stop the readout of camera %s: %s", self.camera, exc)
        if self.first < 0:
            return
        s = self.stats
        log.info(
            "live: camera %s stopped after lstseq %d: %d frames, %d missing, %d rejected, "
            "%d stale, %d not written, %d sequences armed",
            self.camera,
            self.expected - 1,
            s.frames,
            s.missing,
            s.rejected,
            s.stale,
            s.write_failed,
            s.arms,
        )

    # -- frames ------------------------------------------------------------------------------

    async def take(self, frame: ReadoutFrame) -> FrameReady | None:
        """Check one frame, write it to the archive; its message, or None if it is not kept."""
        arrived = time.time()
        h = frame.header
        lstseq = int(h.lstseq)
        if lstseq < self.expected:
            self.stats.stale += 1
            if lstseq < self.first:
                log.debug("frame %d from before this run (first %d) skipped", lstseq, self.first)
            else:
                log.warning(
                    "frame %d repeated or out of order (expected %d): skipped",
                    lstseq,
                    self.expected,
                )
            return None
        last = self.last
        if last is not None and lstseq > last:
            self.stats.stale += 1
            self._end(f"frame {lstseq} is past the last slot {last}")
            return None
        if lstseq > self.expected:
            self.stats.missing += lstseq - self.expected
            log.warning(
                "frames %d..%d of camera %s never arrived (dropped by the camera or the "
                "readout check)",
                self.expected,
                lstseq - 1,
                self.camera,
            )
        self.expected = lstseq + 1
        if last is not None and lstseq == last:
            self.done = True
        problem = self._problem(frame)
        if problem is not None:
            self.stats.rejected += 1
            log.error("frame %d of camera %s rejected: %s", lstseq, self.camera, problem)
            return None
        kind = self.frame_type.imagetyp
        header = raw_header(
            h, camera=self.camera, site=self.site, sensor=self.sensor, imagetyp=kind
        )
        path = self.archive / raw_filename(lstseq, self.camera, kind, ext=self.ext)
        try:
            await anyio.to_thread.run_sync(
                partial(write_raw, path, frame.pixels, header, extra=self.extra)
            )
        except (OSError, ValueError) as exc:
            self.stats.write_failed += 1
            self.write_failures += 1
            log.error("frame %d could not be written to %s: %s", lstseq, path, exc)
            if self.write_failures >= _MAX_WRITE_FAILURES:
                raise StorageError(
                    f"{self.write_failures} frames in a row could not be written to the raw "
                    f"archive {self.archive} (last: {exc}): check its disk space and permissions"
                ) from exc
            return None
        self.write_failures = 0
        self.stats.frames += 1
        log.debug("frame %d written to %s", lstseq, path)
        return FrameReady(path=path, lstseq=lstseq, arrived=arrived)

    def _problem(self, frame: ReadoutFrame) -> str | None:
        h = frame.header
        full = (self.sensor.ny, self.sensor.nx)
        if frame.pixels.shape != full:
            return f"shape {frame.pixels.shape} is not the sensor's full readout {full}"
        values = (h.jd_start, h.exptime_s, h.ccdtemp_c, h.readout_s)
        if not all(math.isfinite(v) for v in values) or h.exptime_s < 0:
            return f"impossible header values (jd, exptime, ccdtemp, readout) = {values}"
        return None

    def _end(self, why: str) -> None:
        last = self.last
        if last is not None and self.expected <= last:
            self.stats.missing += last - self.expected + 1
            log.warning(
                "frames %d..%d of camera %s never arrived (%s)",
                self.expected,
                last,
                self.camera,
                why,
            )
            self.expected = last + 1
        self.done = True

    # -- no frame for a while ----------------------------------------------------------------

    async def poll(self) -> None:
        """No frame for ``poll_s``: end a finished count, re-arm a camera that went idle."""
        try:
            status = await self.driver.status()
        except CameraError as exc:  # the driver reconnects; try again at the next poll
            self.stats.link_errors += 1
            log.warning("camera %s did not answer a status poll: %s", self.camera, exc)
            return
        last = self.last
        if last is not None and status.lstseq > last + _GRACE_SLOTS:
            self._end(f"the camera clock is at slot {status.lstseq}")
            return
        if status.state != "IDLE":
            return
        # The camera lost its sequence (power cycle, an ABORT from elsewhere): arm again.
        start = status.lstseq + self.lead_slots
        n = MAX_ARM if last is None else min(last - start + 1, MAX_ARM)
        if n < 1:
            return  # the count ends within the lead: the clock check above will end it
        log.warning(
            "camera %s is idle at slot %d with frames still wanted: arming again from %d",
            self.camera,
            status.lstseq,
            start,
        )
        try:
            await self._arm(start, n)
        except CameraError as exc:
            self.stats.link_errors += 1
            log.warning("re-arming camera %s failed: %s; trying again later", self.camera, exc)
