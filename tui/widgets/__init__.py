"""Widgets of the console, one per module; each draws a :class:`~tui.messages.Snapshot`."""

from tui.widgets.clouds import CloudMap
from tui.widgets.errors import ErrorPane
from tui.widgets.latency import LatencyPanel
from tui.widgets.lightcurve import LightCurvePlot, plot_text
from tui.widgets.queues import QueuePanel
from tui.widgets.starfield import StarField, starfield_text
from tui.widgets.status import StatusPanel

__all__ = [
    "CloudMap",
    "ErrorPane",
    "LatencyPanel",
    "LightCurvePlot",
    "QueuePanel",
    "StarField",
    "StatusPanel",
    "plot_text",
    "starfield_text",
]
