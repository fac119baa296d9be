"""Latency panel: a sparkline of the per-frame latency (arrival to records)."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline

from tui.messages import Snapshot

__all__ = ["LatencyPanel"]


class LatencyPanel(Vertical):
    """Title with the last and worst latency, over a sparkline of the recent frames."""

    def compose(self) -> ComposeResult:
        yield Label("latency", id="latency-label")
        yield Sparkline([], id="latency-spark")

    def show(self, snap: Snapshot) -> None:
        values = [v for v in snap.latencies if math.isfinite(v)]
        label = self.query_one("#latency-label", Label)
        if values:
            label.update(f"latency {values[-1]:.2f} s (max {max(values):.2f} s)")
        else:
            label.update("latency: no frame yet")
        spark = self.query_one("#latency-spark", Sparkline)
        if list(spark.data or []) != values:
            spark.data = values
