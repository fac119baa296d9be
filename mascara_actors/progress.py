"""A one-line text progress bar for long commands (replay, simulate), on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``[#####.....] 50/100 frames  12.3/s  ETA 0:00:04  <note>``, redrawn in place.

    On a terminal the line is redrawn at most ten times a second; elsewhere (CI logs) a
    plain line is printed every 10 % so logs stay short.
    """

    def __init__(self, total: int, *, unit: str = "frames", stream: TextIO | None = None) -> None:
        self.total = max(int(total), 0)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def update(self, done: int, note: str = "") -> None:
        """Show ``done`` of ``total`` with an optional note (e.g. errors so far)."""
        now = time.monotonic()
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        frac = done / self.total if self.total else 0.0
        if self.tty:
            if now - self._last_draw < 0.1 and done < self.total:
                return
            self._last_draw = now
        else:
            decile = int(frac * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
        eta = (self.total - done) / rate if rate > 0 and self.total else float("nan")
        eta_txt = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "--:--:--"
        width = 30
        filled = int(width * min(frac, 1.0))
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {done}/{self.total} {self.unit}  {rate:5.1f}/s  ETA {eta_txt}" + (
            f"  {note}" if note else ""
        )
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
