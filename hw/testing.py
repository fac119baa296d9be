"""A conformance suite for frame sources, and a fake source to test consumers with.

Every frame source (:mod:`hw.source`) promises the same things: frames in strictly
increasing lstseq, each file complete and the frame of its slot; an end of night that stays
ended; a clean close when its consumer stops or is cancelled; failures as a
:class:`~mascara_actors.errors.MascaraError`. :func:`check_frame_source` checks all of them
against any source, the way trio's ``check_two_way_stream`` checks any stream: the test of a
source says how to make one, the suite does the rest::

    @contextlib.asynccontextmanager
    async def make_source():
        async with SerialCamera(tty, readout) as cam:
            async with contextlib.aclosing(live_frames(cam, archive, count=3, ...)) as src:
                yield src

    await check_frame_source(make_source, make_failing_source=wrong_sensor)

Each ``make_source()`` must give a *new* source over a short night (a few frames) that is
closed on leaving the context; the suite may make several. The checks are also callable one
by one (:func:`check_order`, :func:`check_end_of_night`, :func:`check_cancellation`,
:func:`check_failure`). A broken promise raises :class:`FrameSourceContractError` saying
which; nothing here imports pytest.

What "releases its resources" means is checked two ways: generically (no task, open file
descriptor or child process more than before the source was made, once its context is
left; file descriptors and processes are read from ``/proc``, so only on Linux), and by the
optional ``released()`` hook of the caller (e.g. "the camera is idle and its readout off").

:class:`FakeFrameSource` is a source for tests: it writes small raw frames with the real
:func:`~mascara_actors.rawframe.write_raw`, holds a lock file as its "camera", and can be
told to fail or to go out of order.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import numpy as np

from hw.source import FrameSource
from mascara_actors.errors import CameraError, FrameError, MascaraError
from mascara_actors.frames import FrameReady
from mascara_actors.rawframe import RawHeader, parse_raw_filename, raw_filename, read_raw, write_raw
from mascara_actors.sidereal import lstseq2date, slot_length_solar_s

__all__ = [
    "FakeFrameSource",
    "FrameSourceContractError",
    "SourceMaker",
    "check_cancellation",
    "check_end_of_night",
    "check_failure",
    "check_frame_source",
    "check_order",
]

SourceMaker = Callable[[], AbstractAsyncContextManager[FrameSource]]
"""``make_source()``: an async context manager giving a new source, closed on leaving it."""

Released = Callable[[], Awaitable[None]]
"""``await released()``: raises (AssertionError) if what the source held is not released."""

_SETTLE_S = 2.0
"""Real seconds to wait for closed resources to go (asyncio closes transports a loop
iteration late)."""


class FrameSourceContractError(AssertionError):
    """A frame source broke its contract (:mod:`hw.source`); the message says which part."""


def _require(condition: object, message: str) -> None:
    if not condition:
        raise FrameSourceContractError(message)


async def check_frame_source(
    make_source: SourceMaker,
    *,
    make_failing_source: SourceMaker | None = None,
    released: Released | None = None,
    min_frames: int = 2,
) -> MascaraError | None:
    """Check every promise of the frame source contract against one kind of source.

    Parameters
    ----------
    make_source
        Makes a new source over a short night of at least ``min_frames`` frames.
    make_failing_source
        Makes a source that cannot go on (when making it, or after some frames); None when
        the source has no failure a test can provoke.
    released
        Extra check that the source's resources are released, run after each source's
        context is left.
    min_frames
        Frames a night of ``make_source`` must at least give (>= 2: the cancellation check
        stops the consumer after the first).

    Returns
    -------
    MascaraError or None
        The error of the failing source (None without ``make_failing_source``), for the
        caller to check further.

    Raises
    ------
    FrameSourceContractError
        Naming the broken promise.
    """
    if min_frames < 2:
        raise ValueError(f"min_frames={min_frames} must be >= 2")
    await check_order(make_source, min_frames=min_frames, released=released)
    await check_end_of_night(make_source)
    await check_cancellation(make_source, released=released)
    if make_failing_source is None:
        return None
    return await check_failure(make_failing_source, released=released)


async def check_order(
    make_source: SourceMaker, *, min_frames: int = 2, released: Released | None = None
) -> list[FrameReady]:
    """A whole night: ``FrameReady`` messages in strictly increasing lstseq, each naming a
    complete raw science frame of its slot; at least ``min_frames`` of them. Returns them."""
    before = await _resources()
    got: list[FrameReady] = []
    async with make_source() as source:
        async for frame in source:
            _require(
                isinstance(frame, FrameReady),
                f"the source yielded {type(frame).__name__}, not FrameReady",
            )
            if got:
                _require(
                    frame.lstseq > got[-1].lstseq,
                    f"lstseq {frame.lstseq} came after {got[-1].lstseq}: frames must come in "
                    "strictly increasing lstseq",
                )
            _require(
                isinstance(frame.arrived, float) and math.isfinite(frame.arrived),
                f"frame {frame.lstseq}: arrived={frame.arrived!r} is not a finite time",
            )
            problem = await anyio.to_thread.run_sync(_frame_file_problem, frame)
            _require(problem is None, f"frame {frame.lstseq}: {problem}")
            got.append(frame)
    _require(
        len(got) >= min_frames,
        f"the night gave {len(got)} frames, fewer than {min_frames}: make a longer one",
    )
    await _check_released(before, released, "after a whole night")
    return got


async def check_end_of_night(make_source: SourceMaker) -> None:
    """Once the night is over the iteration ends, and stays ended, after ``aclose`` too."""
    async with make_source() as source:
        async for _ in source:
            pass
        for when in ("after the end of the night", "when asked again"):
            _require(await _is_over(source), f"__anext__ yielded a frame {when}")
        await source.aclose()
        await source.aclose()
        _require(await _is_over(source), "__anext__ yielded a frame after aclose()")


async def check_cancellation(make_source: SourceMaker, *, released: Released | None = None) -> None:
    """A consumer cancelled while waiting for the second frame: the source can be closed
    (also from a cancelled scope, and twice), is over, leaves nothing behind, and a new
    source starts at once."""
    before = await _resources()
    async with make_source() as source:
        got: list[FrameReady] = []
        with anyio.CancelScope() as scope:
            async for frame in source:
                got.append(frame)
                scope.cancel()  # the next wait inside __anext__ is cancelled
        _require(got, "the night ended before its first frame")
        _require(
            scope.cancelled_caught,
            f"the consumer could not be cancelled: __anext__ handed out {len(got)} frames "
            "and ended without a checkpoint (every __anext__ must let a cancellation in)",
        )
        with anyio.CancelScope() as closing:
            closing.cancel()
            await source.aclose()  # closes even when cancelled
        await source.aclose()
        _require(await _is_over(source), "__anext__ yielded a frame after a cancelled aclose()")
    await _check_released(before, released, "after a consumer was cancelled")
    async with make_source() as again:
        frame = await again.__anext__()
        _require(isinstance(frame, FrameReady), "a new source did not start after a cancellation")
    await _check_released(before, released, "after a second source")


async def check_failure(
    make_failing_source: SourceMaker, *, released: Released | None = None
) -> MascaraError:
    """A source that cannot go on raises a :class:`~mascara_actors.errors.MascaraError` with a
    message (when made or while iterating), is over afterwards and leaves nothing behind.
    Returns the error."""
    before = await _resources()
    error: Exception | None = None
    ended_cleanly = False
    try:
        async with make_failing_source() as source:
            try:
                async for _ in source:
                    pass
                ended_cleanly = True
            except Exception as exc:
                error = exc
                _require(await _is_over(source), "the source yielded a frame after it failed")
    except FrameSourceContractError:
        raise
    except Exception as exc:  # making or closing the source failed
        error = error or exc
    _require(not ended_cleanly, "the failing source ended its night without an error")
    failure = _single(error)
    if not isinstance(failure, MascaraError):
        raise FrameSourceContractError(
            f"the source failed with {type(failure).__name__}: {failure}; a source must fail "
            "with a MascaraError subclass naming the problem"
        )
    _require(str(failure).strip(), f"{type(failure).__name__} raised without a message")
    await _check_released(before, released, "after the source failed")
    return failure


# -- helpers ------------------------------------------------------------------------------------


def _single(error: BaseException | None) -> BaseException | None:
    """The one error inside (nested) exception groups of one exception."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def _is_over(source: FrameSource) -> bool:
    try:
        await source.__anext__()
    except StopAsyncIteration:
        return True
    return False


def _frame_file_problem(frame: FrameReady) -> str | None:
    """What is wrong with the file a FrameReady names, or None (runs in a worker thread)."""
    path = Path(frame.path)
    if not path.is_file():
        return f"{path} does not exist (a frame is announced once its file is complete)"
    parsed = parse_raw_filename(path.name)
    if parsed is None or parsed[0] != frame.lstseq or parsed[2] != "science":
        return f"{path.name} is not the name of the science frame of lstseq {frame.lstseq}"
    try:
        header = read_raw(path).header
    except FrameError as exc:
        return f"{path} is not a complete raw frame: {exc}"
    if header.lstseq != frame.lstseq:
        return f"{path} holds LSTSEQ {header.lstseq}"
    return None


@dataclass(frozen=True, slots=True)
class _Resources:
    """What a process holds that a source might leak."""

    tasks: tuple[str, ...]
    fds: tuple[str, ...]
    children: tuple[int, ...]

    def more_than(self, before: _Resources) -> list[str]:
        extra = []
        for what, now, then in (
            ("tasks", self.tasks, before.tasks),
            ("open files", self.fds, before.fds),
            ("child processes", self.children, before.children),
        ):
            if len(now) > len(then):
                left = sorted(set(map(str, now)) - set(map(str, then))) or list(map(str, now))
                extra.append(f"{len(now) - len(then)} more {what} ({', '.join(left[:5])})")
        return extra


async def _resources() -> _Resources:
    tasks = tuple(sorted(str(t.name) for t in anyio.get_running_tasks()))
    fds, children = await anyio.to_thread.run_sync(_proc_resources)
    return _Resources(tasks, fds, children)


def _proc_resources() -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Open file descriptors (their targets) and child processes, from ``/proc`` (empty
    where there is none)."""
    fds: list[str] = []
    children: list[int] = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return (), ()
    for name in names:
        try:
            fds.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            continue  # the descriptor listdir itself used
    me = str(os.getpid())
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[1] == me:
            children.append(int(entry.name))
    return tuple(sorted(fds)), tuple(sorted(children))


async def _check_released(before: _Resources, released: Released | None, when: str) -> None:
    with anyio.move_on_after(_SETTLE_S):
        while (await _resources()).more_than(before):
            await anyio.sleep(0.02)
    extra = (await _resources()).more_than(before)
    _require(not extra, f"{when}, the source left behind: {'; '.join(extra)}")
    if released is not None:
        await released()


# -- a fake source ------------------------------------------------------------------------------


class FakeFrameSource:
    """A :class:`~hw.source.FrameSource` over small raw frames it writes as it goes.

    Each frame is a ``shape`` readout (uint16, the lstseq's low bits as its level) written
    with :func:`~mascara_actors.rawframe.write_raw` into ``directory`` in a worker thread,
    then announced. The source holds a lock file in ``directory`` (its "camera") from the
    first ``__anext__`` until it ends, fails or is closed; :attr:`released` says whether it
    let go.

    Parameters
    ----------
    directory
        Where frames are written (created if needed).
    lstseqs
        The slots to deliver, in this order (give them out of order for a broken source).
    camera
        Camera letter of the frames.
    shape
        Full readout (ny, nx), pixels; the science region leaves 2 pixels of overscan.
    period_s
        Seconds (of the event loop's clock) before each frame; 0: as fast as they are
        written (each ``__anext__`` is still a checkpoint).
    fail_after
        Raise :class:`~mascara_actors.errors.CameraError` instead of frame number
        ``fail_after`` (0: before the first); None: never.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        lstseqs: Sequence[int],
        *,
        camera: str = "C",
        shape: tuple[int, int] = (12, 16),
        period_s: float = 0.0,
        fail_after: int | None = None,
    ) -> None:
        if not (math.isfinite(period_s) and period_s >= 0):
            raise ValueError(f"period_s={period_s} must be a finite number of seconds >= 0")
        self.directory = Path(directory)
        self.lstseqs = tuple(int(s) for s in lstseqs)
        self.camera = camera
        self.shape = shape
        self.period_s = period_s
        self.fail_after = fail_after
        self.yielded = 0
        """Frames handed out so far."""
        self._lock: int | None = None
        self._over = False

    @property
    def released(self) -> bool:
        """True unless the source holds its lock file."""
        return self._lock is None

    def __aiter__(self) -> AsyncIterator[FrameReady]:
        return self

    async def __anext__(self) -> FrameReady:
        if self._over or self.yielded >= len(self.lstseqs):
            self._end()
            raise StopAsyncIteration
        if self._lock is None:
            self._lock = await anyio.to_thread.run_sync(self._acquire)
        if self.period_s:
            await anyio.sleep(self.period_s)
        else:
            await anyio.lowlevel.checkpoint()
        if self.fail_after is not None and self.yielded >= self.fail_after:
            self._end()
            raise CameraError(
                f"fake camera {self.camera} failed after {self.yielded} frames (as asked with "
                "fail_after)"
            )
        lstseq = self.lstseqs[self.yielded]
        path = await anyio.to_thread.run_sync(self._write, lstseq)
        self.yielded += 1
        return FrameReady(path=path, lstseq=lstseq, arrived=time.time())

    async def aclose(self) -> None:
        """End the source and release its lock file (idempotent)."""
        self._end()
        await anyio.lowlevel.checkpoint()

    def _end(self) -> None:
        self._over = True
        self._release()

    def _acquire(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        return os.open(self.directory / ".fake-camera.lock", os.O_RDWR | os.O_CREAT, 0o644)

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            os.close(lock)

    def _write(self, lstseq: int) -> Path:
        ny, nx = self.shape
        header = RawHeader.of_exposure(
            lstseq,
            jd=float(lstseq2date(lstseq, format="jd")),
            exptime=slot_length_solar_s(),
            ccdtemp=-15.0,
            site="LaPalma",
            camera=self.camera,
            imagetyp="science",
            x0=2,
            xsize=nx - 4,
            y0=2,
            ysize=ny - 4,
        )
        data = np.full(self.shape, 1000 + lstseq % 1000, np.uint16)
        return write_raw(self.directory / raw_filename(lstseq, self.camera), data, header)
