"""The star look-up screen: type a HIP number, see its light curve so far."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import anyio.to_thread
import numpy as np
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from mascara_actors.errors import MascaraError
from tui.messages import LightCurve, StarRequested
from tui.widgets import LightCurvePlot

__all__ = ["LookupScreen", "parse_hip"]


def parse_hip(text: str) -> int:
    """A HIP number from what the operator typed (``"HIP 1234"``, ``"1234"``).

    Raises
    ------
    ValueError
        With a message saying what a HIP number looks like.
    """
    raw = text.strip().upper().removeprefix("HIP").strip()
    if not raw.isdigit() or not 0 < int(raw) <= 120404:
        raise ValueError(f"{text.strip()!r} is not a HIP number: type a number 1-120404, "
                         "e.g. 32349")
    return int(raw)


class LookupScreen(ModalScreen[None]):
    """Ask for a HIP number and plot the star's light curve so far (Esc closes)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, lookup: Callable[[int], LightCurve] | None) -> None:
        super().__init__()
        self.lookup = lookup
        """HIP number -> the light curve so far (blocking); None: no look-up here."""
        self.last: LightCurve | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="lookup"):
            yield Label("Star look-up: HIP number, Enter (Esc closes)", id="lookup-title")
            yield Input(placeholder="HIP number, e.g. 32349", id="lookup-input")
            yield Label("", id="lookup-message")
            yield LightCurvePlot(id="lookup-plot")

    def action_close(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.post_message(StarRequested(event.value))

    async def on_star_requested(self, message: StarRequested) -> None:
        label = self.query_one("#lookup-message", Label)
        plot = self.query_one("#lookup-plot", LightCurvePlot)
        try:
            hip = parse_hip(message.text)
        except ValueError as exc:
            label.update(str(exc))
            label.set_class(True, "-error")
            plot.set_curve(None)
            return
        if self.lookup is None:
            label.update("star look-up is not available in this console")
            label.set_class(True, "-error")
            return
        label.update(f"HIP {hip}: reading...")
        try:
            curve = await anyio.to_thread.run_sync(self.lookup, hip)
        except MascaraError as exc:
            label.update(f"HIP {hip}: {exc}")
            label.set_class(True, "-error")
            plot.set_curve(None)
            return
        self.last = curve
        good = int(np.count_nonzero(~curve.flagged))
        label.update(f"HIP {hip}  V {curve.vmag:.2f}  {curve.lstseq.size} points "
                     f"({good} unflagged), lstseq {int(curve.lstseq.min())}-"
                     f"{int(curve.lstseq.max())}  mag = 25 - 2.5 log10(flux0)")
        label.set_class(False, "-error")
        plot.set_curve(curve)
