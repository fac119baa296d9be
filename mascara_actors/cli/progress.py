"""Progress bars of the long commands (replay, simulate, live, archive), on stderr, by rich.

On a terminal the bar is redrawn in place; elsewhere (a log, CI) rich draws it once, when it
stops, so logs stay short.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["RateColumn", "progress_bar"]


class RateColumn(ProgressColumn):
    """``12.3 frames/s``: the task's recent steps per second, in its ``unit`` field."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        return Text(f"{task.speed:5.1f} {unit}/s" if task.speed else f"  -.- {unit}/s")


def progress_bar(*, console: Console | None = None) -> Progress:
    """``<description> [#####     ] 50/100 frames 12.3 frames/s 0:00:04 ETA 0:00:04 <note>``;
    add each task with its fields ``unit`` (``frames``) and ``note`` (remarks such as the
    errors so far, updated as it goes)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console or Console(stderr=True),
    )
