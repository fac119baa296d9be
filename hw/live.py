"""The live frame source: a camera's frames into the raw archive, as ``FrameReady`` messages.

:func:`live_frames` is the camera actor's source for a real (or simulated) camera, a
:class:`~hw.source.FrameSource` like :func:`hw.recorded.paced_frames` for recorded nights. It

1. checks that the camera is the configured one (letter and full readout shape);
2. starts the readout stream and arms the camera ahead of its clock
   (:meth:`~hw.driver.CameraDriver.arm_next`, or from a given first slot), aborting a
   sequence left armed by an earlier host;
3. for each verified frame from the readout link builds the raw header
   (:func:`raw_header`), writes the frame into the archive (the spool) in a worker thread,
   and yields ``FrameReady(path, lstseq, arrived)``.

Bad input never travels on: frames the readout link drops (corrupt, short, cut off) never
reach this module; the slots they leave out are logged, counted as ``missing`` and handed to
``on_gap`` with the reason (the station turns them into warning events). Frames of the wrong
shape are counted as ``rejected``, frames of slots before the first one or already seen as
``stale``. A raw file is never overwritten: a frame whose file already exists is left out
(the file on disk is kept, counted as ``existing``, with a warning). A control link that drops
is reconnected by the driver; while no frame comes, the camera is polled every ``poll_s``
seconds and re-armed if it has lost its sequence (a power cycle). The counters are in a
:class:`LiveStats` the caller may pass in.

A camera that stays away is given up after ``camera_timeout_s`` real seconds without a sign
of it (no reply to a poll and no frame while one is due, or no frame although it answers):
:class:`CameraLost` is raised, saying since when and the last error, and the camera is left
as it is (no clean-up commands are sent to it).

Setting ``stop`` ends the source: no new frame is waited for; frames already read out (in
the driver's buffer) and the one being written are written and yielded; then the armed
exposures are aborted and the readout stopped. A consumer that stops iterating early should
close the generator (``contextlib.aclosing``) so this clean-up runs at once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream

from hw.driver import CameraDriver, CameraIdentity
from hw.protocol import CommandRejected, ErrorCode, FrameType
from hw.readout import FrameHeader, ReadoutFrame
from mascara_actors import __version__
from mascara_actors.config import SensorConfig
from mascara_actors.errors import (
    CameraDisconnected,
    CameraError,
    CameraTimeout,
    ConfigError,
    StorageError,
)
from mascara_actors.frames import FrameReady
from mascara_actors.rawframe import RawHeader, raw_filename, write_raw
from mascara_actors.sidereal import (
    slot_length_solar_s,
)

__all__ = ["MAX_ARM", "CameraLost", "GapReport", "LiveStats", "live_frames", "raw_header"]

log = logging.getLogger(__name__)

MAX_ARM = 1_000_000
"""Most exposures one ``ARM`` can ask for (docs/camera-protocol.md)."""

# A frame is read out within the slot after its exposure; it may wait a few more slots in
# the camera's queue (max_queued_frames) before the link delivers it.
_GRACE_SLOTS = 4
_ARM_ATTEMPTS = 3
_MAX_WRITE_FAILURES = 3
_CLEANUP_S = 5.0

_T = TypeVar("_T")

GapReport = Callable[[int, int, str], None]
"""``on_gap(first, last, why)``: slots ``first..last`` (inclusive) gave no frame, and why."""


class CameraLost(CameraError):
    """The camera stayed away longer than the camera timeout.

    Attributes
    ----------
    camera : str
        Camera letter.
    since : float
        Wall-clock time (UNIX seconds) of the last sign of the camera (a frame, or a poll
        answered while no frame was overdue).
    silent_s : float
        Real seconds from ``since`` to the moment it was given up.
    timeout_s : float
        The timeout, real seconds.
    last_error : str
        The last thing that went wrong (a poll that timed out, frames overdue).
    """

    def __init__(
        self, camera: str, *, since: float, silent_s: float, timeout_s: float, last_error: str
    ) -> None:
        self.camera = camera
        self.since = since
        self.silent_s = silent_s
        self.timeout_s = timeout_s
        self.last_error = last_error
        when = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M:%S")
        super().__init__(
            f"camera {camera} silent since {when} UTC ({silent_s:.1f} s, timeout {timeout_s:.1f}"
            f" s): {last_error}; check the camera's power and its control and readout links"
        )


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
    existing: int = 0
    """Frames whose raw file already existed: the file on disk was kept, the frame left out."""


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
    max_frames: int | None = None,
    camera_timeout_s: float | None = None,
    on_gap: GapReport | None = None,
) -> AsyncGenerator[FrameReady, None]:
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
        Slots to expose (frames to take); None: until ``stop`` is set.
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
    max_frames
        End once this many frames were yielded, whatever slots they took (the exposures still
        armed are aborted): a frame lost on the way is replaced by the next slot of the same
        sequence, with no hole. None: no limit but ``count``.
    camera_timeout_s
        Real seconds without a sign of the camera (see the module docstring) before
        :class:`CameraLost` is raised; None: wait for it for ever.
    on_gap
        Called with ``(first, last, why)`` for each run of armed slots that gave no frame.

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
    CameraLost
        With ``camera_timeout_s``: the camera stayed away that long (also at the start).
    StorageError
        After several consecutive frames could not be written to the archive.
    """
    if count is not None and count < 1:
        raise ValueError(f"count={count} must be >= 1 frame, or None for no limit")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames={max_frames} must be >= 1 frame, or None for no limit")
    if camera_timeout_s is not None and not (
        math.isfinite(camera_timeout_s) and camera_timeout_s > 0
    ):
        raise ValueError(f"camera_timeout_s={camera_timeout_s} must be > 0 seconds, or None")
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
        max_frames=max_frames,
        timeout_s=camera_timeout_s,
        retry_s=poll,
        on_gap=on_gap,
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
        max_frames: int | None = None,
        timeout_s: float | None = None,
        retry_s: float = 1.0,
        on_gap: GapReport | None = None,
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
        self.max_frames = max_frames
        self.yielded = 0
        """Frames yielded by this run."""
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.on_gap = on_gap
        self.heard = time.monotonic()
        """Monotonic time of the latest sign of the camera (a frame, or an answered poll while
        no frame was overdue)."""
        self.heard_wall = time.time()
        self.last_error = ""
        self.lost = False
        """True once the camera was given up: no more commands are sent to it."""
        self.rearmed: tuple[int, str] | None = None
        """First slot and reason of the latest re-arm, until its first frame comes."""

    @property
    def last(self) -> int | None:
        """Last slot of a counted run, None without a count."""
        return None if self.count is None else self.first + self.count - 1

    # -- start and end -----------------------------------------------------------------------

    async def start(self, first_lstseq: int | None) -> None:
        """Check the camera, start the readout, arm the first sequence."""
        await anyio.to_thread.run_sync(partial(self.archive.mkdir, parents=True, exist_ok=True))
        ident = await self._until_answered(self.driver.identify)
        self._check_identity(ident)
        self.extra = {
            "SWVERSN": f"mascara-actors {__version__}",
            "CAMMODEL": f"{ident.vendor} {ident.model}",
            "CAMSER": ident.serial,
            "CAMFIRM": ident.firmware,
        }
        status = await self._until_answered(self.driver.status)
        self._heard()
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

    async def _until_answered(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()``, tried again every ``retry_s`` while the camera is silent or away, until
        the camera timeout (without one: the first error is raised)."""
        while True:
            try:
                return await call()
            except (CameraTimeout, CameraDisconnected) as exc:
                if self.timeout_s is None:
                    raise
                self.stats.link_errors += 1
                self.last_error = str(exc)
                self._check_lost()
                log.warning("camera %s does not answer (%s); trying again", self.camera, exc)
                await anyio.sleep(self.retry_s)

    def _heard(self) -> None:
        self.heard, self.heard_wall = time.monotonic(), time.time()
        self.last_error = ""

    def _check_lost(self) -> None:
        """Raise :class:`CameraLost` once the camera has been silent for the timeout."""
        if self.timeout_s is None:
            return
        silent = time.monotonic() - self.heard
        if silent >= self.timeout_s:
            self.lost = True
            raise CameraLost(
                self.camera,
                since=self.heard_wall,
                silent_s=silent,
                timeout_s=self.timeout_s,
                last_error=self.last_error or "no sign of the camera",
            )

    def _gap(self, first: int, last: int, why: str) -> None:
        """Slots ``first..last`` gave no frame: count, log and report them."""
        self.stats.missing += last - first + 1
        log.warning(
            "slots %d..%d of camera %s gave no frame: %s", first, last, self.camera, why
        )
        if self.on_gap is not None:
            self.on_gap(first, last, why)

    async def release(self) -> None:
        """Abort the armed exposures and stop the readout; failures are logged only."""
        if self.lost:
            log.warning(
                "camera %s was given up: its armed exposures and readout are left as they are",
                self.camera,
            )
        elif self.armed:
            try:
                await self.driver.abort()
            except CameraError as exc:
                log.warning(
                    "could not abort the armed exposures of camera %s: %s", self.camera, exc
                )
        if self.readout_started and not self.lost:
            try:
                await self.driver.stop_readout()
            except CameraError as exc:
                log.warning("could not stop the readout of camera %s: %s", self.camera, exc)
        if self.first < 0:
            return
        s = self.stats
        log.info(
            "live: camera %s stopped after lstseq %d: %d frames, %d missing, %d rejected, "
            "%d stale, %d not written, %d kept on disk, %d sequences armed",
            self.camera,
            self.expected - 1,
            s.frames,
            s.missing,
            s.rejected,
            s.stale,
            s.write_failed,
            s.existing,
            s.arms,
        )

    # -- frames ------------------------------------------------------------------------------

    async def take(self, frame: ReadoutFrame) -> FrameReady | None:
        """Check one frame, write it to the archive; its message, or None if it is not kept."""
        arrived = time.time()
        self._heard()
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
            why = (
                "exposed but lost on the way (dropped by the camera, or by the readout link's "
                "check as corrupt, short or cut off)"
            )
            if self.rearmed is not None and self.expected < self.rearmed[0] <= lstseq:
                why = self.rearmed[1]
            self._gap(self.expected, lstseq - 1, why)
        self.rearmed = None
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
        if await anyio.to_thread.run_sync(path.exists):
            self.stats.existing += 1
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
        self.yielded += 1
        if self.max_frames is not None and self.yielded >= self.max_frames:
            self.done = True
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
            self._gap(self.expected, last, f"no frame came before the sequence ended ({why})")
            self.expected = last + 1
        self.done = True

    # -- no frame for a while ----------------------------------------------------------------

    async def poll(self) -> None:
        """No frame for ``poll_s``: end a finished count, re-arm a camera that went idle, give
        up a camera silent for the timeout (:class:`CameraLost`)."""
        # the last poll before the timeout waits no longer than the timeout itself
        left = math.inf if self.timeout_s is None else self.heard + self.timeout_s
        left -= time.monotonic()
        status = None
        error = self.last_error or f"no answer to a status poll within {max(left, 0.1):.1f} s"
        with anyio.move_on_after(max(left, 0.1)):
            try:
                status = await self.driver.status()
            except CameraError as exc:  # the driver reconnects; try again at the next poll
                error = f"no answer to a status poll: {exc}"
        if status is None:
            self.last_error = error
            self.stats.link_errors += 1
            log.warning("camera %s did not answer a status poll: %s", self.camera, self.last_error)
            self._check_lost()
            return
        last = self.last
        if last is not None and status.lstseq > last + _GRACE_SLOTS:
            self._heard()
            self._end(f"the camera clock is at slot {status.lstseq}")
            return
        if status.state != "IDLE":
            awaited = max(self.expected, self.rearmed[0] if self.rearmed else self.expected)
            if status.lstseq > awaited + _GRACE_SLOTS:
                # it answers, but the frames do not come: the readout side is gone (or the
                # frames are late); given up only after the timeout without a frame
                if not self.last_error:
                    log.info(
                        "camera %s answers (clock at slot %d) but no frame came since slot %d",
                        self.camera,
                        status.lstseq,
                        self.expected - 1,
                    )
                self.last_error = (
                    f"the camera answers (clock at slot {status.lstseq}, {status.state}, "
                    f"{status.frames_sent} frames sent) but no frame came since slot "
                    f"{self.expected - 1}: check its readout link"
                )
                self._check_lost()
            else:
                self._heard()
            return
        self._heard()
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
            return
        self.rearmed = (
            start,
            f"the camera lost its armed sequence (found idle at slot {status.lstseq}) and was "
            f"armed again from slot {start}",
        )
