"""Status panel: site, camera, clocks, slot, Sun, counters, astrometry, CCD and disk."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import Static

from tui.messages import Snapshot

__all__ = ["StatusPanel", "run_state", "status_text"]


def _num(value: float, fmt: str, unit: str = "") -> str:
    return "--" if not math.isfinite(value) else f"{value:{fmt}}{unit}"


def run_state(snap: Snapshot) -> str:
    """One word for what the pipeline is doing: the CSS class of the panel too."""
    if snap.fatal:
        return "failed"
    if snap.finished:
        return "finished"
    if snap.stopping:
        return "stopping"
    if snap.paused:
        return "paused"
    return "running"


def status_text(snap: Snapshot) -> Text:
    """The panel's lines (each under 78 characters, so it fits an 80-column terminal)."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{snap.site} {snap.camera}", style="bold")
    t.append(f"  night {snap.night or '--'}   UTC {snap.utc}   LST {snap.lst_hours:7.4f} h\n")
    t.append(f"slot lstseq {snap.lstseq} lstidx {snap.lstidx} set {snap.setidx}   ")
    t.append(f"Sun {snap.sun_alt_deg:+5.1f} deg ")
    t.append(snap.night_state, style="bold")
    t.append("\n")
    done = f"{snap.frames_reduced}"
    if snap.frames_expected:
        done += f"/{snap.frames_expected}"
    t.append(f"frames {done} reduced, ")
    t.append(f"{snap.frames_failed} failed", style="bold red" if snap.frames_failed else "")
    t.append(f", {snap.rate_hz:.2f}/s   last frame {snap.last_lstseq or '--'} ")
    t.append(f"latency {_num(snap.last_latency_s, '.2f', ' s')}\n")
    clean = snap.last_nstars - snap.last_nflagged
    t.append(f"stars {snap.last_nstars} expected, {clean} clean, {snap.last_nflagged} flagged  ")
    t.append(f"astrometry {_num(snap.astrometry_dr, '.3f', ' px')} aflag {snap.aflag}\n")
    t.append(f"CCD {_num(snap.ccdtemp, '.1f', ' C')}   disk {snap.disk_free_gb:.1f} GB free   ")
    state = run_state(snap)
    t.append(state.upper(), style="bold reverse")
    if snap.spooled:
        t.append(f"   spooled {snap.spooled}")
    if snap.camera_link or snap.phase:
        lost = snap.camera_link.startswith("NOT ANSWERING")
        t.append("\ncamera ")
        t.append(snap.camera_link or "--", style="bold red" if lost else "")
        t.append(f"   {snap.phase}")
    if snap.fatal:
        t.append(f"\n{snap.fatal}", style="bold red")
    return t


class StatusPanel(Static):
    """Always-visible status of the camera-night."""

    def show(self, snap: Snapshot) -> None:
        """Draw ``snap``; the run state (running, paused, ...) becomes a CSS class."""
        self.update(status_text(snap))
        self.set_class(snap.night_state != "night", "-daylight")
        for state in ("running", "paused", "stopping", "finished", "failed"):
            self.set_class(run_state(snap) == state, f"-{state}")
