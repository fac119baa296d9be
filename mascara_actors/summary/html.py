"""The night summary as a self-contained HTML page and as plain text.

Every number in the HTML sits in an element whose ``id`` names it (``frames_reduced``,
``astro_dr_median`` ...), so scripts and tests can read the page back. Images are embedded
either as ``data:`` URIs (the page on disk needs no other file) or as ``cid:`` references
(the e-mail, whose images travel as related MIME parts).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Literal

from mascara_actors.summary.known_candidates import ObservedCandidate, utc_window
from mascara_actors.summary.report import NightSummary, frame_stats

__all__ = ["CANDIDATES_TITLE", "Image", "candidate_cells", "render_html", "render_text",
           "summary_rows"]

CANDIDATES_TITLE = "Known candidates observed"


@dataclass(frozen=True, slots=True)
class Image:
    """One PNG of the report."""

    name: str
    """File name, e.g. ``20260320LPC_overview.png``; also the e-mail content id."""
    title: str
    png: bytes
    note: str = ""
    """Shown under the image (for example the overview's fallback range)."""

    @property
    def cid(self) -> str:
        """Content id for the e-mail (no angle brackets)."""
        return self.name.replace("_", ".") + "@mascara-actors"


def _fmt(value: float | int, digits: int = 3) -> str:
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"


def _percent(fraction: float) -> str:
    """A fraction as a percentage: ``1.0`` -> ``100%``, ``0.4567`` -> ``45.7%``."""
    return "n/a" if not math.isfinite(fraction) else f"{_fmt(100.0 * fraction)}%"


def _master(name: str | None, without: str) -> str:
    """A master frame's row: its file name, what its absence means, or "not recorded"."""
    if name is None:
        return "not recorded (an earlier version's log)"
    return name or f"none: {without}"


def _fixed(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def candidate_cells(c: ObservedCandidate) -> list[tuple[str, str, str]]:
    """One candidate's line of the report: ``[(id, label, value), ...]``."""
    return [
        ("hip", "HIP", str(c.hip)),
        ("vmag", "V", _fixed(c.vmag, 2)),
        ("period", "Period (d)", _fixed(c.period, 5)),
        ("depth", "Depth (%)", _fmt(100.0 * c.depth)),
        ("transits", "Transits this night (UTC)",
         "; ".join(utc_window(a, b) for a, b in c.transits) or "none"),
        ("in_transit", "Points in transit", f"{c.points_in_transit} of {c.points}"),
    ]


def _time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def summary_rows(s: NightSummary) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The report's tables: ``[(section, [(id, label, value), ...]), ...]``.

    Values are already formatted; ``n/a`` stands for a number that could not be computed.
    """
    st = frame_stats(s)

    def mmm(name: str, digits: int = 3) -> str:
        lo, med, hi = st[name]
        if not math.isfinite(med):
            return "n/a"
        return f"{_fmt(med, digits)} (min {_fmt(lo, digits)}, max {_fmt(hi, digits)})"

    w = s.weather
    frames = [
        ("frames_expected", "Frames expected", str(s.frames_expected)),
        ("frames_taken", "Frames taken", str(s.frames_taken)),
        ("frames_reduced", "Frames reduced", str(s.frames_reduced)),
        ("frames_failed", "Frames failed", str(s.frames_failed)),
        ("frames_in_file", "Frames in the nightly file", str(s.frames_in_file)),
        ("stars_in_file", "Stars in the nightly file", str(s.stars_in_file)),
        ("sets_saved", "Sets saved", str(s.sets_saved)),
    ]
    processing = [
        ("wall_s", "Wall time (s)", _fmt(s.wall_s, 4)),
        ("rate_fps", "Processing rate (frames/s)", _fmt(s.rate_fps)),
        ("realtime_factor", "Times faster than the camera cadence", _fmt(s.realtime_factor)),
        ("latency_s", "Latency per frame (s), median", mmm("latency_s")),
        ("runs", "Runs (resumed night when > 1)", str(s.runs)),
        ("finished", "Night finished", "yes" if s.finished else "no"),
    ]
    science = [
        ("master_dark", "Master dark", _master(s.dark, "only the overscan level subtracted")),
        ("master_flat", "Master flat", _master(s.flat, "the frames are not flat-fielded")),
        ("astro_solutions", "Astrometry checks / solutions", str(len(s.astro_dr))),
        ("astro_dr_median", "Astrometry RMS residual (px), median", _fmt(s.astro_dr_median)),
        ("astro_dr_max", "Astrometry RMS residual (px), max", _fmt(s.astro_dr_max)),
        ("astro_aflag_sets", "Sets with a non-zero aflag",
         str(int((s.astro_aflag != 0).sum()))),
        ("nstars", "Stars measured per frame, median", mmm("nstars")),
        ("nflagged", "Stars flagged per frame, median", mmm("nflagged")),
        ("sky", "Sky level (ADU/px), median", mmm("sky", 4)),
        ("ccdtemp", "CCD temperature (deg C), median", mmm("ccdtemp")),
    ]
    weather = [
        ("cloud_fraction", "Cloud fraction (mean over frames)",
         _fmt(w.night_cloud_fraction) if w else "n/a"),
        ("clear_percent", "Clear frames (transmission >= 0.8)",
         _percent(w.clear_fraction) if w else "n/a"),
        ("zero_point", "Clear-sky zero point (mag)", _fmt(w.zero_point_mag, 5) if w else "n/a"),
        ("calibration", "Live calibration (maps of earlier nights)",
         Path(s.calibration).name if s.calibration else "none: the light curves stay raw"),
        ("sets_calibrated", "Sets calibrated live (clouds solved)", str(s.sets_calibrated)),
    ]
    log_rows = [
        ("errors", "Errors (failed frames)", str(s.errors)),
        ("warnings", "Warnings", str(s.warnings)),
        ("log_lines", "Event log lines", str(s.log_lines)),
        ("log_bad_lines", "Unreadable log lines", str(s.log_bad_lines)),
        ("log_unknown", "Unknown event kinds",
         ", ".join(f"{k} x{n}" for k, n in sorted(s.log_unknown_kinds.items())) or "none"),
    ]
    return [("Frames", frames), ("Processing", processing), ("Astrometry and photometry",
            science), ("Weather proxy", weather), ("Log", log_rows)]


def _notes(s: NightSummary) -> list[str]:
    notes = []
    if s.log_missing:
        notes.append(f"The event log {s.log_path} is missing.")
    elif s.log_lines == 0:
        notes.append(f"The event log {s.log_path} is empty.")
    if s.frames_taken == 0:
        notes.append("No frame was reduced this night.")
    if s.nightly_file is None:
        notes.append("No nightly light-curve file: no light curves, no weather proxy.")
    if s.runs and not s.finished:
        notes.append("The log has no NightFinished event: the run was cut short or is going on.")
    if s.log_bad_lines:
        notes.append(f"{s.log_bad_lines} unreadable log line(s) were skipped (torn writes).")
    if s.missing:
        notes.append(f"The night is NOT complete: {len(s.missing)} product(s) missing ("
                     + "; ".join(s.missing[:5]) + ("; ..." if len(s.missing) > 5 else "")
                     + "). Mend the cause in the errors below and run the same command "
                     "again: it makes only what is missing.")
    return notes


def render_html(s: NightSummary, images: Sequence[Image] = (), *,
                embed: Literal["data", "cid"] = "data") -> str:
    """The report as one HTML page.

    Parameters
    ----------
    s : NightSummary
    images : sequence of Image
        Figures, shown in order after the tables.
    embed : {"data", "cid"}
        ``data``: images inline as base64 ``data:`` URIs (self-contained file);
        ``cid``: ``src="cid:..."`` for an e-mail with related image parts.

    Returns
    -------
    str
    """
    title = f"Reduction Summary {s.tag}"
    out = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:1em auto;}"
        "table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{border:1px solid #bbb;padding:2px 8px;text-align:left}"
        ".note{color:#a40}.error{color:#b00}</style>",
        "</head>", "<body>",
        f"<h1>{escape(title)}</h1>",
        f'<p>Night <span id="night">{escape(s.night)}</span>, site '
        f'<span id="site">{escape(s.site)}</span>, camera '
        f'<span id="camera">{escape(s.camera)}</span>; generated '
        f"{escape(s.generated.strftime('%Y-%m-%d %H:%M:%S UTC'))}.</p>",
    ]
    for note in _notes(s):
        out.append(f'<p class="note">{escape(note)}</p>')
    for section, rows in summary_rows(s):
        out.append(f"<h2>{escape(section)}</h2><table>")
        for key, label, value in rows:
            out.append(f"<tr><th>{escape(label)}</th>"
                       f'<td id="{escape(key)}">{escape(value)}</td></tr>')
        out.append("</table>")
    out.append("<h2>Errors and warnings</h2>")
    if s.problems:
        out.append('<table id="problems"><tr><th>level</th><th>source</th><th>count</th>'
                   "<th>first</th><th>lstseq</th><th>first message</th></tr>")
        for p in s.problems:
            out.append(
                f'<tr class="{escape(p.level)}"><td>{escape(p.level)}</td>'
                f"<td>{escape(p.source)}</td><td>{p.count}</td>"
                f"<td>{escape(_time(p.first_time))}</td>"
                f"<td>{'' if p.first_lstseq is None else p.first_lstseq}</td>"
                f"<td>{escape(p.first_message)}</td></tr>")
        out.append("</table>")
    else:
        out.append('<p id="problems">None.</p>')
    out.append("<h2>Sets without a binned image</h2>")
    if s.sets_without_image:
        out.append('<table id="unbinned"><tr><th>set</th><th>why</th></tr>')
        out += [f"<tr><td>{setidx}</td><td>{escape(why)}</td></tr>"
                for setidx, why in s.sets_without_image]
        out.append("</table>")
    else:
        out.append('<p id="unbinned">None: every set was binned.</p>')
    out += _candidates_html(s)
    for img in images:
        if embed == "cid":
            src = f"cid:{img.cid}"
        else:
            src = "data:image/png;base64," + base64.b64encode(img.png).decode("ascii")
        out.append(f"<h2>{escape(img.title)}</h2>")
        out.append(f'<img src="{src}" alt="{escape(img.title)}" '
                   f'id="img-{escape(img.name)}" style="max-width:100%">')
        if img.note:
            out.append(f'<p class="note">{escape(img.note)}</p>')
    files = [("Event log", str(s.log_path)),
             ("Nightly file", str(s.nightly_file) if s.nightly_file else "none")]
    out.append("<h2>Files</h2><ul>")
    out += [f"<li>{escape(k)}: <code>{escape(v)}</code></li>" for k, v in files]
    out += ["</ul>", "</body>", "</html>", ""]
    return "\n".join(out)


def _candidates_html(s: NightSummary) -> list[str]:
    k = s.candidates
    if k is None:
        return []
    out = [f"<h2>{CANDIDATES_TITLE}</h2>"]
    if k.error:
        return [*out, f'<p id="candidates" class="error">{escape(k.error)}</p>']
    if not k.observed:
        return [*out, '<p id="candidates">None: no known candidate was observed this night '
                f"(<code>{escape(str(k.path))}</code>).</p>"]
    out.append('<table id="candidates"><tr>'
               + "".join(f"<th>{escape(label)}</th>"
                         for _, label, _ in candidate_cells(k.observed[0])) + "</tr>")
    for i, c in enumerate(k.observed):
        # numbered, not keyed by HIP: a star may have several candidate periods
        out.append("<tr>" + "".join(f'<td id="candidate{i}_{key}">{escape(value)}</td>'
                                    for key, _, value in candidate_cells(c)) + "</tr>")
    out.append(f"</table><p>From <code>{escape(str(k.path))}</code> (rows that passed the "
               "vetting); transits are epoch + n period +- duration/2.</p>")
    return out


def _candidates_text(s: NightSummary) -> list[str]:
    k = s.candidates
    if k is None:
        return []
    out = ["", CANDIDATES_TITLE, "-" * len(CANDIDATES_TITLE)]
    if k.error:
        return [*out, f"  {k.error}"]
    if not k.observed:
        return [*out, "  none"]
    for c in k.observed:
        v = {key: value for key, _, value in candidate_cells(c)}
        out.append(f"  HIP {v['hip']}: V {v['vmag']}, period {v['period']} d, depth "
                   f"{v['depth']}%, transits {v['transits']}; {v['in_transit']} points in "
                   "transit")
    return [*out, f"  (from {k.path})"]


def render_text(s: NightSummary, images: Sequence[Image] = ()) -> str:
    """The report as plain text (the e-mail's text alternative), same numbers as the HTML."""
    lines = [f"Reduction Summary {s.tag}",
             f"night {s.night}, site {s.site}, camera {s.camera}; generated "
             f"{s.generated.strftime('%Y-%m-%d %H:%M:%S UTC')}"]
    lines += [f"NOTE: {n}" for n in _notes(s)]
    for section, rows in summary_rows(s):
        lines += ["", section, "-" * len(section)]
        width = max(len(label) for _, label, _ in rows)
        lines += [f"  {label:<{width}}  {value}" for _, label, value in rows]
    lines += ["", "Errors and warnings", "-------------------"]
    if not s.problems:
        lines.append("  none")
    for p in s.problems:
        where = "" if p.first_lstseq is None else f" at lstseq {p.first_lstseq}"
        lines.append(f"  {p.level} x{p.count} [{p.source}] first {_time(p.first_time)}"
                     f"{where}: {p.first_message}")
    lines += ["", "Sets without a binned image", "---------------------------"]
    lines += [f"  set {setidx}: {why}" for setidx, why in s.sets_without_image] or [
        "  none: every set was binned"]
    lines += _candidates_text(s)
    if images:
        lines += ["", "Figures (attached to the HTML version)"]
        lines += [f"  {img.name}: {img.title}" + (f" ({img.note})" if img.note else "")
                  for img in images]
    lines += ["", f"Event log: {s.log_path}",
              f"Nightly file: {s.nightly_file if s.nightly_file else 'none'}", ""]
    return "\n".join(lines)
