"""The station view (one compact panel per camera), a camera's detailed view, and the
question asked before anything that cannot be undone."""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Label, Static

from tui.feed import Sky
from tui.screens.main import MainScreen
from tui.station_link import RemoteCamera, StationLink
from tui.widgets.camera_panel import CameraPanel
from tui.widgets.station_problems import StationProblems

__all__ = ["CameraScreen", "ConfirmScreen", "StationScreen", "station_line"]


def station_line(link: StationLink) -> Text:
    """The line over the panels: the station, its output, how long it runs, the link."""
    st = link.station
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"station {st.get('site') or '?'}", style="bold")
    t.append(f"  pid {st.get('pid', '--')}  output {st.get('out_dir', '--')}")
    uptime = st.get("uptime_s")
    if isinstance(uptime, int | float):
        t.append(f"  up {int(uptime) // 3600}h{int(uptime) % 3600 // 60:02d}m")
    if st.get("stopping"):
        t.append(f"  STOPPING ({st['stopping']})", style="bold yellow")
    if link.dropped:
        t.append(f"  {link.dropped} events missed (the console fell behind)", style="yellow")
    if link.lost:
        t.append(f"\n{link.lost}: q quits", style="bold red")
    elif not link.connected.is_set():
        t.append("\nconnecting to the station ...", style="italic")
    else:
        ago = time.time() - link.last_event_at
        heard = f"last event {ago:.0f} s ago" if ago == ago else "no event yet"
        t.append(f"\n{link.events} events since attaching, {heard}", style="dim")
    return t


class StationScreen(Screen[None]):
    """Every camera of the station at a glance; Enter opens the focused camera."""

    def __init__(self, link: StationLink, *, refresh_hz: float = 4.0) -> None:
        super().__init__()
        self.link = link
        self.refresh_hz = refresh_hz

    def compose(self) -> ComposeResult:
        yield Header(show_clock=True, icon="*")
        yield Static(id="station-line")
        yield Grid(id="camera-grid")
        yield StationProblems(id="station-problems")
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(1.0 / self.refresh_hz, self.redraw)

    def redraw(self) -> None:
        """Draw the station line and every camera's panel (a panel per camera the station
        has, made when it first appears)."""
        self.query_one("#station-line", Static).update(station_line(self.link))
        grid = self.query_one("#camera-grid", Grid)
        panels = {p.camera_id: p for p in self.query(CameraPanel)}
        for cam_id, camera in self.link.cameras.items():
            panel = panels.get(cam_id)
            if panel is None:
                panel = CameraPanel(cam_id)
                grid.mount(panel)
                if len(panels) == 0 and self.focused is None:
                    self.call_after_refresh(panel.focus)
                panels[cam_id] = panel
            if panel.is_mounted and panel.children:
                panel.show(camera)
        self.query_one("#station-problems", StationProblems).show(self.link.cameras.values())

    def selected(self) -> str | None:
        """The camera whose panel has the focus."""
        focused = self.focused
        return focused.camera_id if isinstance(focused, CameraPanel) else None


class CameraScreen(MainScreen):
    """One camera's detailed view (the console of a single camera); Esc goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Station view")]

    def __init__(self, camera: RemoteCamera, *, sky: Sky | None, refresh_hz: float) -> None:
        super().__init__(camera, sky=sky, refresh_hz=refresh_hz)
        self.camera_id = camera.id

    def action_back(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; y or Enter on Yes answers yes, n or Esc no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(self.question, id="confirm-question")
            with Grid(id="confirm-buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
