"""One camera's compact panel on the station view: what it does, how its night goes, and a
sparkline of the stars it measured on its latest frames."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from tui.station_link import RemoteCamera

__all__ = ["CameraPanel", "panel_state", "panel_text"]


def panel_state(camera: RemoteCamera) -> str:
    """One word for the panel's colour (its CSS class): ``failed``, ``lost``, ``restarting``,
    ``paused``, ``done``, ``stopped`` or ``running``."""
    if camera.status.get("fatal"):
        return "failed"
    if camera.link_lost:
        return "lost"
    state = camera.process_state
    if state in ("restarting", "done", "stopped"):
        return state
    return "paused" if camera.paused else "running"


def _num(value: float, fmt: str) -> str:
    return "--" if not math.isfinite(value) else format(value, fmt)


def panel_text(camera: RemoteCamera) -> Text:
    """The panel's lines, each under 40 characters (five panels fit a 200-column terminal,
    two rows of them an 80-column one)."""
    c = camera
    t = Text(no_wrap=True, overflow="ellipsis")
    state = panel_state(c)
    t.append(c.phase + "\n", style="bold red" if state in ("failed", "lost") else "bold")
    lstseq = c.status.get("lstseq")
    t.append(f"lstseq {lstseq if lstseq is not None else '--'}\n")
    expected = c.count("frames_expected")
    failed = c.count("frames_failed")
    t.append(f"frames {c.count('frames_reduced')}" + (f"/{expected}" if expected else ""))
    t.append(f"  {failed} failed\n", style="bold red" if failed else "")
    t.append(f"stars {c.count('stars')} ({c.count('stars_flagged')} flagged)\n")
    t.append(f"resid {_num(c.number('residual_px'), '.3f')} px  aflag {c.count('aflag')}\n")
    errors = c.count("errors")
    t.append(f"errors {errors}", style="bold red" if errors else "")
    t.append(f"  warnings {c.count('warnings')}\n")
    t.append(f"link {c.link}", style="bold red" if state == "lost" else "")
    restarts = (c.status.get("process") or {}).get("restarts") or 0
    if restarts:
        t.append(f"\nrestarts {restarts}", style="yellow")
    return t


class CameraPanel(Vertical, can_focus=True):
    """A camera's panel; focused, Enter opens its detailed view (the App's binding)."""

    def __init__(self, camera_id: str) -> None:
        super().__init__(id=f"camera-{camera_id}", classes="camera-panel")
        self.camera_id = camera_id
        self.border_title = camera_id

    def compose(self) -> ComposeResult:
        yield Static(id=f"text-{self.camera_id}", classes="camera-text")
        yield Sparkline([], id=f"spark-{self.camera_id}", classes="camera-spark")

    def show(self, camera: RemoteCamera) -> None:
        """Draw ``camera``; its state becomes the panel's CSS class (``-paused`` ...)."""
        self.query_one(".camera-text", Static).update(panel_text(camera))
        self.query_one(".camera-spark", Sparkline).data = list(camera.stars)
        state = panel_state(camera)
        for word in ("running", "paused", "restarting", "done", "stopped", "lost", "failed"):
            self.set_class(state == word, f"-{word}")
        self.border_subtitle = "PAUSED" if camera.paused else ""
