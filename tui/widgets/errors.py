"""Error pane: warnings and errors, newest at the bottom, each linked to its frame."""

from __future__ import annotations

import time

from textual.coordinate import Coordinate
from textual.widgets import DataTable

from mascara_actors.sidereal import lstidx, set_index
from tui.messages import Snapshot

__all__ = ["ErrorPane", "problem_detail"]

_MAX_ROWS = 500


def problem_detail(problem: tuple[float, str, int | None, str], camera: str = "") -> str:
    """What a row means in full: the frame (lstseq, set, lstidx, file name) and the message."""
    _, level, seq, message = problem
    if seq is None:
        return f"{level}: (no frame) {message}"
    letter = camera[-1:] if camera else "?"
    return (f"{level} at lstseq {seq} (set {int(set_index(seq))}, lstidx {int(lstidx(seq))}, "
            f"raw frame {seq:08d}{letter}.fits): {message}")


class ErrorPane(DataTable[str]):
    """A scrolling table of problems; select a row (Enter) for the frame it belongs to."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._last: tuple[float, str, int | None, str] | None = None
        self._count = 0
        self._problems: dict[str, tuple[float, str, int | None, str]] = {}
        self.camera = ""

    def on_mount(self) -> None:
        self.add_columns("UTC", "level", "lstseq", "message")

    def show(self, snap: Snapshot) -> None:
        """Append the problems not shown yet (the state keeps the latest 200)."""
        self.camera = snap.camera
        problems = snap.problems
        start = 0
        if self._last is not None:
            for i in range(len(problems) - 1, -1, -1):
                if problems[i] is self._last:
                    start = i + 1
                    break
        new = problems[start:]
        if not new:
            return
        for p in new:
            key = str(self._count)
            self._count += 1
            self._problems[key] = p
            stamp = time.strftime("%H:%M:%S", time.gmtime(p[0]))
            style = "bold red" if p[1] == "error" else "yellow"
            self.add_row(stamp, f"[{style}]{p[1]}[/]", "--" if p[2] is None else str(p[2]),
                         p[3], key=key)
        while self.row_count > _MAX_ROWS:
            first = self.coordinate_to_cell_key(Coordinate(0, 0)).row_key
            self._problems.pop(str(first.value), None)
            self.remove_row(first)
        self._last = new[-1]
        self.move_cursor(row=self.row_count - 1)
        self.border_title = f"errors and warnings ({self._count})"

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        problem = self._problems.get(str(event.row_key.value))
        if problem is not None:
            self.app.notify(problem_detail(problem, self.camera),
                            severity="error" if problem[1] == "error" else "warning",
                            timeout=8)
