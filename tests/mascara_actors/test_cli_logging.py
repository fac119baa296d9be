"""The command line's log lines go where ``sys.stderr`` points when each is logged."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from rich.console import Console

from mascara_actors.cli import _StderrNow
from mascara_actors.cli.progress import progress_bar


def test_a_line_logged_while_a_progress_bar_shows_is_printed_above_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a terminal's stderr: rich's bar takes it over while it shows (not on a plain file)
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    handler = _StderrNow()  # made before the bar, as the command makes it at its start
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    console = Console(stderr=True, force_terminal=True, width=80)
    with progress_bar(console=console) as bar:
        task = bar.add_task("frames", total=10, unit="frames", note="")
        bar.update(task, completed=3)
        taken_over = sys.stderr
        handler.emit(logging.LogRecord("mascara_actors.x", logging.WARNING, __file__, 1,
                                       "a dark left out: %s", ("1Cdark.fits",), None))
    assert taken_over is not terminal  # the bar had taken stderr over
    text = terminal.getvalue()
    line = "WARNING mascara_actors.x: a dark left out: 1Cdark.fits\n"
    assert line in text
    # printed by the bar's console, which erases its bar's line first (carriage return,
    # erase line) and draws the bar again below; not after the bar's text on its line
    assert text[:text.index(line)].endswith("\r\x1b[2K"), repr(text[-400:])
    assert sys.stderr is terminal
