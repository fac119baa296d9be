"""Queue panel: the depth of every bounded channel, so backpressure is visible."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.messages import Snapshot

__all__ = ["QueuePanel", "queue_text"]

_BAR = 10


def queue_text(depths: dict[str, int], spooled: int = 0) -> Text:
    """One line per channel: name, depth and a bar (full bar at 10 items or more)."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("queues\n", style="bold")
    if not depths:
        t.append("(no channel reported yet)")
    for i, (name, depth) in enumerate(sorted(depths.items())):
        n = min(int(depth), _BAR)
        style = "red" if depth >= _BAR else ("yellow" if depth > 1 else "green")
        t.append(f"{name[:9]:<9} {depth:>3} ")
        t.append("#" * n, style=style)
        t.append("." * (_BAR - n))
        if i < len(depths) - 1:
            t.append("\n")
    if spooled:
        t.append(f"\nspooled to disk {spooled}", style="yellow")
    return t


class QueuePanel(Static):
    """Depth of every channel of the pipeline."""

    def show(self, snap: Snapshot) -> None:
        self.update(queue_text(snap.queue_depths, snap.spooled))
        self.set_class(any(d >= _BAR for d in snap.queue_depths.values()), "-backpressure")
