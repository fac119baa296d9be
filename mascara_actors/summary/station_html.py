"""The station report as a self-contained HTML page and as plain text.

As in :mod:`.html`, every number sits in an element whose ``id`` names it: the cell of camera
``LPN`` and column ``frames_reduced`` is ``LPN-frames_reduced``, the station's total
``total-frames_reduced``; so scripts and tests can read the page back.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Literal

from mascara_actors.summary.html import Image, _fmt
from mascara_actors.summary.station_report import CameraRow

__all__ = ["COLUMNS", "render_station_html", "render_station_text", "station_table"]

COLUMNS = (
    ("status", "Night"),
    ("frames_expected", "Frames expected"),
    ("frames_reduced", "Frames reduced"),
    ("frames_failed", "Frames failed"),
    ("frames_in_file", "Frames in nightly file"),
    ("sets_saved", "Sets saved"),
    ("stars_in_file", "Stars measured"),
    ("astro_dr_median", "Astrometry residual median (px)"),
    ("cloud_fraction", "Cloud fraction"),
    ("restarts", "Restarts"),
    ("warnings", "Warnings"),
    ("errors", "Errors"),
    ("nightly_files", "Nightly files"),
)
"""(id, label) of the report's columns after the camera's."""

_COUNTS = ("frames_expected", "frames_reduced", "frames_failed", "frames_in_file",
           "sets_saved", "stars_in_file", "warnings", "errors")


def _files(row: CameraRow) -> str:
    if not row.nightly_files:
        return "none"
    made = [k for k, ok in row.nightly_files if ok]
    missing = [k for k, ok in row.nightly_files if not ok]
    parts = [", ".join(made)] if made else []
    if missing:
        parts.append(", ".join(missing) + " missing")
    return "; ".join(parts)


def _cells(row: CameraRow) -> dict[str, str]:
    s = row.summary
    if s is None:
        cells = {key: "n/a" for key, _ in COLUMNS}
        cells.update(status=row.status, nightly_files=_files(row))
        return cells
    cells = {key: str(getattr(s, key)) for key in _COUNTS}
    w = s.weather
    cells.update(status=row.status, astro_dr_median=_fmt(s.astro_dr_median),
                 cloud_fraction=_fmt(w.night_cloud_fraction) if w else "n/a",
                 restarts=str(row.restarts), nightly_files=_files(row))
    return cells


def _totals(rows: Sequence[CameraRow]) -> dict[str, str]:
    done = [r for r in rows if r.summary is not None]
    cells = {key: "" for key, _ in COLUMNS}
    for key in _COUNTS:
        cells[key] = str(sum(int(getattr(r.summary, key)) for r in done))
    cells["status"] = f"{sum(r.status == 'complete' for r in rows)} of {len(rows)} complete"
    cells["restarts"] = str(sum(r.restarts for r in rows))
    made = sum(ok for r in rows for _, ok in r.nightly_files)
    cells["nightly_files"] = f"{made} of {2 * len(rows)}"
    return cells


def station_table(rows: Sequence[CameraRow]) -> list[tuple[str, dict[str, str]]]:
    """``[(camera, {column id: value}), ..., ("total", {...})]``, formatted (``n/a`` for a
    number that is not known, e.g. a camera without a night)."""
    return [(r.camera, _cells(r)) for r in rows] + [("total", _totals(rows))]


def _notes(rows: Sequence[CameraRow]) -> list[str]:
    return [f"{r.camera}: {r.note}." for r in rows if r.note]


def render_station_html(tag: str, rows: Sequence[CameraRow], images: Sequence[Image] = (), *,
                        generated: datetime, embed: Literal["data", "cid"] = "data",
                        base: Path | None = None) -> str:
    """The station report as one HTML page.

    Parameters
    ----------
    tag : str
        ``{night}{SITE}``.
    rows : sequence of CameraRow
    images : sequence of Image
        Figures, shown after the table.
    generated : datetime
        When the report was made (UTC).
    embed : {"data", "cid"}
        Images as ``data:`` URIs (a file on disk) or ``cid:`` references (the e-mail).
    base : Path, optional
        Directory of the page on disk: links to the cameras' summaries are relative to it
        (the output tree may be moved or served). Without it, or in the e-mail, each
        camera's summary is named by its path.
    """
    title = f"Station Summary {tag}"
    out = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:1em auto;}"
        "table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}"
        "tr.total{font-weight:bold}.note{color:#a40}</style>",
        "</head>", "<body>", f"<h1>{escape(title)}</h1>",
        f'<p>Night <span id="night">{escape(tag[:8])}</span>, site '
        f'<span id="site">{escape(tag[8:])}</span>, <span id="ncameras">{len(rows)}</span> '
        f"cameras; generated {escape(generated.strftime('%Y-%m-%d %H:%M:%S UTC'))}.</p>",
    ]
    out += [f'<p class="note">{escape(n)}</p>' for n in _notes(rows)]
    out.append('<table id="cameras"><tr><th>Camera</th>'
               + "".join(f"<th>{escape(label)}</th>" for _, label in COLUMNS)
               + "<th>Camera summary</th></tr>")
    pages = {r.camera: r.camera_summary for r in rows}
    for camera, cells in station_table(rows):
        cls = "total" if camera == "total" else cells["status"].replace(" ", "-")
        line = [f'<tr id="row-{escape(camera)}" class="{escape(cls)}"><th>{escape(camera)}</th>']
        line += [f'<td id="{escape(camera)}-{key}">{escape(cells[key])}</td>'
                 for key, _ in COLUMNS]
        page = pages.get(camera)
        if page is None:
            link = "" if camera == "total" else "none"
        elif base is not None and embed == "data":
            href = Path(os.path.relpath(page, base)).as_posix()
            link = f'<a href="{escape(href)}">{escape(page.name)}</a>'
        else:
            link = f"<code>{escape(str(page))}</code>"
        line.append(f'<td id="{escape(camera)}-summary">{link}</td></tr>')
        out.append("".join(line))
    out.append("</table>")
    for img in images:
        src = (f"cid:{img.cid}" if embed == "cid"
               else "data:image/png;base64," + base64.b64encode(img.png).decode("ascii"))
        out.append(f"<h2>{escape(img.title)}</h2>")
        out.append(f'<img src="{src}" alt="{escape(img.title)}" id="img-{escape(img.name)}" '
                   'style="max-width:100%">')
    out.append("<h2>Camera nights</h2><ul>")
    out += [f"<li>{escape(r.camera)}: <code>{escape(str(r.night_dir))}</code></li>"
            for r in rows]
    out += ["</ul>", "</body>", "</html>", ""]
    return "\n".join(out)


def render_station_text(tag: str, rows: Sequence[CameraRow], images: Sequence[Image] = (), *,
                        generated: datetime) -> str:
    """The station report as plain text (the e-mail's text part), same numbers as the HTML:
    one column per camera and one for the station's total."""
    lines = [f"Station Summary {tag}",
             f"night {tag[:8]}, site {tag[8:]}, {len(rows)} cameras; generated "
             f"{generated.strftime('%Y-%m-%d %H:%M:%S UTC')}"]
    lines += [f"NOTE: {n}" for n in _notes(rows)]
    table = station_table(rows)
    header = [("camera", "Camera"), *COLUMNS]
    values = [{"camera": camera, **cells} for camera, cells in table]
    label_w = max(len(label) for _, label in header)
    widths = [max(len(v[key]) for key, _ in header) for v in values]
    lines.append("")
    for key, label in header:
        lines.append(f"  {label:<{label_w}}  "
                     + "  ".join(f"{v[key]:<{w}}" for v, w in zip(values, widths, strict=True))
                     .rstrip())
    lines += ["", "Camera summaries:"]
    lines += [f"  {r.camera}: {r.camera_summary or 'none'}" for r in rows]
    if images:
        lines += ["", "Figures (attached to the HTML version)"]
        lines += [f"  {img.name}: {img.title}" for img in images]
    lines += ["", "Camera nights:"] + [f"  {r.camera}: {r.night_dir}" for r in rows] + [""]
    return "\n".join(lines)
