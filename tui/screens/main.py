"""The main screen: status, queues, latency, clouds, star field and the error pane.

Redrawn on a timer from a :class:`~tui.messages.Snapshot` of the feed, never per event.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Protocol

import anyio.to_thread
import numpy as np
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header

from mascara_actors.errors import MascaraError
from mascara_actors.rawframe import read_raw
from tui.feed import Sky
from tui.messages import Snapshot
from tui.widgets import (
    CloudMap,
    ErrorPane,
    LatencyPanel,
    QueuePanel,
    StarField,
    StatusPanel,
)

__all__ = ["MainScreen", "SnapshotSource", "load_preview"]

_DISK_EVERY_S = 5.0
"""Seconds between two readings of the free disk space."""

log = logging.getLogger(__name__)

_PREVIEW_PIXELS = 200_000


def load_preview(path: Path) -> np.ndarray:
    """The science region of a raw frame, decimated to at most ~200,000 pixels (ADU).

    Decimation keeps every k-th pixel after a k x k block maximum, so stars survive.
    """
    data = np.asarray(read_raw(path).science())
    k = max(int(np.ceil(np.sqrt(data.size / _PREVIEW_PIXELS))), 1)
    if k == 1:
        return data.astype(np.float32)
    ny, nx = (data.shape[0] // k) * k, (data.shape[1] // k) * k
    blocks = data[:ny, :nx].reshape(ny // k, k, nx // k, k)
    preview: np.ndarray = blocks.max(axis=(1, 3)).astype(np.float32)
    return preview


class SnapshotSource(Protocol):
    """What the main screen draws from: a camera-night run here
    (:class:`~tui.feed.ConsoleFeed`) or one of a station's cameras
    (:class:`~tui.station_link.RemoteCamera`)."""

    def snapshot(self, sky: Sky | None, *, free_bytes: float) -> Snapshot:
        """Read the night once (``free_bytes``: the latest free space of its disk)."""
        ...

    def free_space(self) -> float:
        """Free bytes on the night's disk, NaN when unknown (a system call: in a thread)."""
        ...


class MainScreen(Screen[None]):
    """Everything the operator needs at a glance, about one camera."""

    def __init__(
        self, source: SnapshotSource, *, sky: Sky | None, refresh_hz: float = 4.0
    ) -> None:
        super().__init__()
        self.source = source
        self.sky = sky
        self.refresh_hz = refresh_hz
        self._preview_path: Path | None = None
        self._free_bytes = float("nan")

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="*")
        yield StatusPanel(id="status")
        with Horizontal(id="middle"):
            with Vertical(id="left"):
                yield QueuePanel(id="queues")
                yield LatencyPanel(id="latency")
                yield CloudMap(id="clouds")
            yield StarField(id="starfield")
        yield ErrorPane(id="errors")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#errors", ErrorPane).border_title = "errors and warnings (0)"
        self.query_one("#starfield", StarField).border_title = "latest frame"
        self.query_one("#clouds", CloudMap).border_title = "clouds"
        # the first snapshot computes the day's Sun and Moon table (astropy), and the free
        # space is a system call: neither on the event loop
        await anyio.to_thread.run_sync(
            partial(self.source.snapshot, self.sky, free_bytes=float("nan"))
        )
        await self._measure_disk()
        self.redraw()
        self.set_interval(1.0 / self.refresh_hz, self.redraw)
        self.set_interval(_DISK_EVERY_S, self._measure_disk)

    async def _measure_disk(self) -> None:
        self._free_bytes = await anyio.to_thread.run_sync(self.source.free_space)

    def redraw(self) -> None:
        """Read the feed once and draw every widget from that snapshot."""
        snap = self.source.snapshot(self.sky, free_bytes=self._free_bytes)
        self.query_one("#status", StatusPanel).show(snap)
        self.query_one("#queues", QueuePanel).show(snap)
        self.query_one("#latency", LatencyPanel).show(snap)
        self.query_one("#clouds", CloudMap).show(snap)
        self.query_one("#errors", ErrorPane).show(snap)
        if snap.latest_frame is not None and snap.latest_frame != self._preview_path:
            self._preview_path = snap.latest_frame
            self.run_worker(self._load(snap.latest_frame), exclusive=True, group="preview")

    async def _load(self, path: Path) -> None:
        # reading a full-size frame takes tens of ms: never on the event loop
        try:
            image = await anyio.to_thread.run_sync(load_preview, path)
        except (MascaraError, OSError) as exc:
            log.warning("preview of %s: %s", path, exc)
            self.query_one("#starfield", StarField).border_title = f"{path.name}: unreadable"
            return
        self.query_one("#starfield", StarField).set_image(image, path.name)
