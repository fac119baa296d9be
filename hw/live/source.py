"""The live frame source: :func:`live_frames` and the :class:`LiveFrames` it returns.

A :class:`LiveFrames` ties the parts of a run together: the camera side
(:mod:`hw.live.sequence`), the slots (:mod:`hw.live.slots`), the raw archive
(:mod:`hw.live.archive`) and the camera's signs of life (:mod:`hw.live.watchdog`). It waits
for each frame on the driver's readout stream, polls the camera when none comes for
``poll_s``, and ends on ``stop``, at the end of the run or on a failure, releasing the camera
in every case. Its counters are :attr:`LiveFrames.stats`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from hw.driver import CameraDriver
from hw.live.archive import RawArchive
from hw.live.sequence import CameraSequence
from hw.live.slots import GapReport, SlotLedger
from hw.live.stats import LiveStats
from hw.live.watchdog import Watchdog
from hw.protocol import FrameType
from hw.readout import ReadoutFrame
from mascara_actors.config import SensorConfig
from mascara_actors.errors import CameraDisconnected
from mascara_actors.frames import FrameReady
from mascara_actors.rawframe import raw_filename
from mascara_actors.sidereal import slot_length_solar_s

__all__ = ["LiveFrames", "live_frames"]

log = logging.getLogger(__name__)

_CLEANUP_S = 5.0


def live_frames(
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
    max_frames: int | None = None,
    camera_timeout_s: float | None = None,
    on_gap: GapReport | None = None,
) -> LiveFrames:
    """A source that exposes back to back, writes each frame into ``archive_dir`` and yields
    it; its counters are its :attr:`~LiveFrames.stats`.

    Nothing is sent to the camera before the first ``__anext__``; see :mod:`hw.live` for the
    sequence, the bad-input rules and ``stop``.

    Parameters
    ----------
    driver
        An open camera (``async with`` it around the iteration).
    archive_dir
        The raw archive (created if needed); files are named ``{lstseq:08d}{camera}{ext}``.
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
        Set it to end the source cleanly (see :mod:`hw.live`).
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
    max_frames
        End once this many frames were yielded, whatever slots they took (the exposures still
        armed are aborted): a frame lost on the way is replaced by the next slot of the same
        sequence, with no hole. None: no limit but ``count``.
    camera_timeout_s
        Real seconds without a sign of the camera (see :mod:`hw.live`) before
        :class:`~hw.live.watchdog.CameraLost` is raised; None: wait for it for ever.
    on_gap
        Called with ``(first, last, why)`` for each run of armed slots that gave no frame.

    Returns
    -------
    LiveFrames
        Yields :class:`~mascara_actors.frames.FrameReady`: ``path`` of the written raw frame,
        its ``lstseq``, and ``arrived`` (``time.time()`` when the frame came off the readout
        link). Lstseqs increase strictly.

    Raises
    ------
    ValueError
        Here, for an argument out of range (nothing is sent to the camera). The errors
        below come from the iteration.
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
    _check_limits(count, max_frames, camera_timeout_s, lead_slots)
    frame_type = FrameType.of(imagetyp)
    raw_filename(0, camera, imagetyp, ext=ext)  # checks ext before any command is sent
    poll = _checked_poll_s(poll_s)
    slots = SlotLedger(camera, count=count, max_frames=max_frames, on_gap=on_gap)
    watchdog = Watchdog(camera, camera_timeout_s)
    return LiveFrames(
        CameraSequence(
            driver,
            camera=camera,
            sensor=sensor,
            frame_type=frame_type,
            lead_slots=lead_slots,
            retry_s=poll,
            slots=slots,
            watchdog=watchdog,
        ),
        RawArchive(
            Path(archive_dir),
            camera=camera,
            site=site,
            sensor=sensor,
            imagetyp=frame_type.imagetyp,
            ext=ext,
        ),
        first_lstseq=first_lstseq,
        stop=stop,
        poll_s=poll,
    )


def _check_limits(
    count: int | None, max_frames: int | None, camera_timeout_s: float | None, lead_slots: int
) -> None:
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


def _checked_poll_s(poll_s: float | None) -> float:
    poll = slot_length_solar_s() if poll_s is None else float(poll_s)
    if not (math.isfinite(poll) and poll > 0):
        raise ValueError(f"poll_s={poll_s} must be a positive number of seconds")
    return poll


class LiveFrames:
    """A camera's frames into the raw archive: a :class:`~hw.source.FrameSource` that owns
    its counters (:attr:`stats`). Made by :func:`live_frames`.

    It behaves exactly as an async generator of
    :class:`~mascara_actors.frames.FrameReady` (its iteration is one, private): the camera
    is first spoken to at the first ``__anext__``; a consumer cancelled in ``__anext__``, a
    failure, the end of the run or :meth:`aclose` end it, releasing the camera (abort,
    readout off) before ``__anext__`` or :meth:`aclose` returns; after that ``__anext__``
    raises ``StopAsyncIteration``.

    Parameters
    ----------
    sequence
        The camera side of the run, with its slots and watchdog.
    archive
        Where the frames are written.
    first_lstseq
        First slot to expose; None: ahead of the camera's clock.
    stop
        Set it to end the source cleanly.
    poll_s
        Real seconds without a frame before the camera is polled.
    """

    def __init__(
        self,
        sequence: CameraSequence,
        archive: RawArchive,
        *,
        first_lstseq: int | None,
        stop: anyio.Event,
        poll_s: float,
    ) -> None:
        self._sequence = sequence
        self._archive = archive
        # not a method of self: an abandoned source is finalised as soon as it is dropped
        self._iteration = _run(
            sequence, archive, first_lstseq=first_lstseq, stop=stop, poll_s=poll_s
        )

    @property
    def stats(self) -> LiveStats:
        """The counters so far: a snapshot (read it again for newer counts)."""
        return _stats(self._sequence, self._archive)

    def __aiter__(self) -> LiveFrames:
        return self

    async def __anext__(self) -> FrameReady:
        """The next frame written; ``StopAsyncIteration`` once the source is over."""
        return await self._iteration.__anext__()

    async def aclose(self) -> None:
        """End the source and release the camera; idempotent, safe when cancelled."""
        await self._iteration.aclose()


def _stats(sequence: CameraSequence, archive: RawArchive) -> LiveStats:
    slots = sequence.slots
    return LiveStats(
        frames=slots.kept,
        missing=slots.missing,
        rejected=archive.rejected,
        stale=slots.stale,
        write_failed=archive.write_failed,
        arms=sequence.arms,
        link_errors=sequence.link_errors,
        existing=archive.existing,
    )


async def _run(
    sequence: CameraSequence,
    archive: RawArchive,
    *,
    first_lstseq: int | None,
    stop: anyio.Event,
    poll_s: float,
) -> AsyncGenerator[FrameReady, None]:
    """The iteration of a :class:`LiveFrames`."""
    driver, slots = sequence.driver, sequence.slots
    try:
        await _start(sequence, archive, first_lstseq)
        while not stop.is_set() and not slots.done:
            frame = await _receive(driver.frames, stop, poll_s)
            if frame is not None:
                ready = await _take(sequence, archive, frame)
                if ready is not None:
                    yield ready
            elif not stop.is_set():
                await sequence.poll()
        # Frames already read out when ``stop`` came are the ones in flight: keep them.
        while not slots.done:
            try:
                frame = driver.frames.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            ready = await _take(sequence, archive, frame)
            if ready is not None:
                yield ready
    finally:
        with anyio.move_on_after(_CLEANUP_S, shield=True):
            await _release(sequence, archive)


async def _start(sequence: CameraSequence, archive: RawArchive, first_lstseq: int | None) -> None:
    """Prepare the archive; check, start and arm the camera."""
    sequence.watchdog.start()
    await archive.prepare()
    archive.describe(await sequence.start(first_lstseq))
    count = sequence.slots.count
    log.info(
        "live: camera %s armed from lstseq %d for %s %s frames into %s",
        sequence.camera,
        sequence.slots.first,
        archive.imagetyp,
        count if count is not None else "unlimited",
        archive.directory,
    )


async def _take(
    sequence: CameraSequence, archive: RawArchive, frame: ReadoutFrame
) -> FrameReady | None:
    """One frame off the readout link: its message once written, or None if left out."""
    arrived = time.time()
    sequence.watchdog.heard()
    if not sequence.slots.admit(int(frame.header.lstseq)):
        return None
    ready = await archive.write(frame, arrived)
    if ready is not None:
        sequence.slots.keep()
    return ready


async def _release(sequence: CameraSequence, archive: RawArchive) -> None:
    """Release the camera; log what the run did."""
    await sequence.release()
    if sequence.slots.first < 0:
        return
    s = _stats(sequence, archive)
    log.info(
        "live: camera %s stopped after lstseq %d: %d frames, %d missing, %d rejected, "
        "%d stale, %d not written, %d kept on disk, %d sequences armed",
        sequence.camera,
        sequence.slots.expected - 1,
        s.frames,
        s.missing,
        s.rejected,
        s.stale,
        s.write_failed,
        s.existing,
        s.arms,
    )


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
