"""The summariser actor: log every event as a JSON line and apply it to the night's state.

It is the one writer of :class:`~mascara_actors.night_state.NightState` while the night runs;
the event log (``logs/events.jsonl``) is what the night summary is built from. The log is
written from a worker thread, so a slow disk never holds the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
from anyio.abc import ObjectReceiveStream

from mascara_actors.atomic_files import write_remedy
from mascara_actors.messages import Event, ProductFailed, to_json
from mascara_actors.night_state import NightState

__all__ = ["record", "run"]

log = logging.getLogger(__name__)


def _end_torn_line(path: Path) -> None:
    """A run killed while writing may leave a last line without its newline: end it, so the
    next run's events start on a line of their own."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            if fh.tell() == 0:
                return
            fh.seek(-1, 2)
            torn = fh.read(1) != b"\n"
    except FileNotFoundError:
        return
    if torn:
        with path.open("ab") as fh:
            fh.write(b"\n")


async def run(*, inbox: ObjectReceiveStream[Event], log_path: Path, state: NightState) -> None:
    """Log and apply every event until every sender has closed.

    Events are appended to ``log_path`` (JSON lines, :func:`~mascara_actors.messages.to_json`),
    one line each, flushed as they come; a restarted night appends to the same log.
    """
    fh = await anyio.to_thread.run_sync(_open_log, log_path)
    failed = False
    try:
        async with inbox:
            async for ev in inbox:
                state.apply(ev)
                if failed:
                    continue
                try:
                    await anyio.to_thread.run_sync(fh.write, (to_json(ev) + "\n").encode())
                except OSError as exc:
                    # A full disk must not stop the night: the counters go on, the log
                    # stops here (the summary says so).
                    failed = True
                    reason = (f"{log_path}: {exc}; no event is logged from here on; "
                              f"{write_remedy(exc)}")
                    log.error("event log %s", reason)
                    state.apply(ProductFailed(setidx=None, product="event log", reason=reason))
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(fh.close)


def _open_log(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    _end_torn_line(path)
    # unbuffered: one write per line, nothing held back that a full disk could fail later
    return path.open("ab", buffering=0)


async def record(events: Sequence[Event], *, log_path: Path, state: NightState) -> None:
    """Log and apply events that came while no night pipeline ran (a station's camera lost
    during its calibration, say): the same lines :func:`run` writes."""
    for ev in events:
        state.apply(ev)
    lines = b"".join((to_json(ev) + "\n").encode() for ev in events)

    def append() -> None:
        with _open_log(log_path) as fh:
            fh.write(lines)

    try:
        await anyio.to_thread.run_sync(append)
    except OSError as exc:
        log.error("event log %s: %d events not written: %s", log_path, len(events), exc)
