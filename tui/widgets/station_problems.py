"""The station view's problem list: the latest warnings and errors of every camera, newest
at the bottom, each with its camera and frame."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.text import Text
from textual.widgets import Static

from tui.station_link import RemoteCamera

__all__ = ["StationProblems", "problems_text"]

ROWS = 12
"""Problems shown (the latest)."""


def problems_text(cameras: Iterable[RemoteCamera], rows: int = ROWS) -> Text:
    """The latest ``rows`` problems heard since attaching, oldest first: UTC, camera, level,
    lstseq, message."""
    heard = sorted(
        ((p[0], camera.id, p) for camera in cameras for p in camera.state.problems),
        key=lambda item: item[0],
    )
    t = Text(no_wrap=True, overflow="ellipsis")
    if not heard:
        t.append("no warning or error since attaching", style="dim")
        return t
    for when, camera_id, (_, level, lstseq, message) in heard[-rows:]:
        stamp = time.strftime("%H:%M:%S", time.gmtime(when)) if when == when else "--:--:--"
        t.append(f"{stamp} {camera_id} ")
        t.append(f"{level:7s}", style="bold red" if level == "error" else "yellow")
        t.append(f" {lstseq if lstseq is not None else '--':>8} {message}\n")
    t.rstrip()
    return t


class StationProblems(Static):
    """The station's latest warnings and errors (all cameras)."""

    def show(self, cameras: Iterable[RemoteCamera]) -> None:
        cameras = list(cameras)
        self.update(problems_text(cameras))
        count = sum(len(c.state.problems) for c in cameras)
        self.border_title = f"errors and warnings since attaching ({count})"
