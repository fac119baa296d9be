"""``mascara-actors solve FRAME``: where a camera points, from one raw frame and nothing else.

Solves the frame blind (:mod:`mascara_actors.blind_solve`: no configured pointing used) and
prints the pointing in the convention of ``config/cameras.toml`` (``alt_deg``, ``az_deg``,
``roll_deg``; the fit's small tilts folded back in), the focal length, the distortion terms,
the parity, the stars matched, the RMS residual and the time taken. ``--write-config``
updates that camera's entry in ``cameras.toml`` (comments and layout kept); ``--plot PNG``
draws the matched catalogue stars over the frame.

Exit codes: 0 solved; 1 no solution (the reason is printed: sky too bright, no stars, too
few matched, sky below the horizon); 2 bad input (unreadable frame, unknown camera, a frame
of another camera than named with ``--write-config``, a parity the configuration cannot
hold).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mascara_actors.atomic_files import atomic_write_bytes
from mascara_actors.config import CameraConfig, Config, load_config
from mascara_actors.errors import ConfigError, FrameError

if TYPE_CHECKING:
    from mascara_actors.blind_solve import BlindSolution
    from mascara_actors.catalogue import Catalogue
    from mascara_actors.rawframe import RawHeader

__all__ = ["add_parser", "run", "update_camera_entry"]

#: Decimals written to cameras.toml: 1e-4 degree is 0.005 px on the chip.
_DECIMALS = 4


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "solve",
        help="find where a camera points from one raw frame (blind astrometric solve)",
        description=(
            "Solve one raw science frame blind, from the image and the star catalogue alone "
            "(the configured pointing is not used), and print the pointing as in "
            "config/cameras.toml (alt_deg, az_deg, roll_deg), the focal length, distortion, "
            "parity, stars matched, RMS residual and time taken. Exit codes: 0 solved, "
            "1 no solution, 2 bad input."
        ),
    )
    p.add_argument("frame", type=Path, metavar="FRAME", help="raw FITS frame (.fits, .gz, .fz)")
    p.add_argument(
        "--camera",
        metavar="ID",
        default=None,
        help="camera id (e.g. LPE); default from the frame's SITE-OBS and CAMERA keys",
    )
    p.add_argument(
        "--write-config",
        action="store_true",
        help="write the pointing into that camera's entry of cameras.toml (comments kept)",
    )
    p.add_argument(
        "--plot", type=Path, default=None, metavar="PNG", help="draw the matched stars on the frame"
    )
    # Also accepted before the command; SUPPRESS keeps that value when not given here.
    p.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="configuration directory (default: the config/ of this install)",
    )


def _header_camera(config: Config, header: RawHeader) -> CameraConfig | None:
    """The configured camera the frame's SITE-OBS and CAMERA keys name, if any."""
    for camera in config.cameras.values():
        if camera.site.name == header.site and camera.letter == header.camera:
            return camera
    return None


def _choose_camera(
    config: Config, header: RawHeader, frame: Path, camera_id: str | None
) -> tuple[CameraConfig, CameraConfig | None, str | None]:
    """(camera named, camera whose sky the frame shows, mismatch note or None)."""
    taken_by = _header_camera(config, header)
    if camera_id is None:
        if taken_by is None:
            raise ConfigError(
                f"{frame}: SITE-OBS {header.site!r} CAMERA {header.camera!r} is not a camera of "
                f"{config.directory / 'cameras.toml'}: pass --camera ID"
            )
        return taken_by, taken_by, None
    named = config.camera(camera_id)
    if taken_by is not None and taken_by.id == named.id:
        return named, taken_by, None
    note = (
        f"{frame} was taken by {header.site} camera {header.camera} (SITE-OBS, CAMERA), "
        f"not by {named.id} ({named.site.name} camera {named.letter})"
    )
    return named, taken_by, note


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""
    # the solver, the catalogue and astropy load here, not with --help
    from mascara_actors.astrometry import astrometry_stars
    from mascara_actors.blind_solve import BlindIndex, BlindSolveFailed, blind_solve
    from mascara_actors.calibration import Calibrator
    from mascara_actors.camera_model import CameraModel
    from mascara_actors.catalogue import Catalogue
    from mascara_actors.rawframe import read_raw
    from mascara_actors.sidereal import lst_mid_hours

    t0 = time.perf_counter()
    frame: Path = args.frame
    config = load_config(getattr(args, "config", None))
    raw = read_raw(frame)
    h = raw.header
    if h.imagetyp != "science":
        raise FrameError(f"{frame}: IMAGETYP is {h.imagetyp!r}; solve needs a science frame")
    named, taken_by, note = _choose_camera(config, h, frame, args.camera)
    if note:
        print(f"mascara-actors solve: warning: {note}", file=sys.stderr)
    # The sky on the frame is that of the site where it was taken: solving it at another
    # site's latitude would give a pointing that is nowhere.
    sky_camera = taken_by or named
    image = Calibrator().calibrate(raw).image
    lens = CameraModel.from_config(named, nx=h.xsize, ny=h.ysize).replace(
        latitude_deg=sky_camera.site.latitude_deg
    )
    catalogue = Catalogue.load()
    astro = config.reduction.astrometry
    stars = astrometry_stars(catalogue, vmin=astro.vmin, vmax=astro.vmax)
    try:
        found = blind_solve(
            image,
            BlindIndex.load(catalogue),
            stars,
            lens,
            lst_hours=lst_mid_hours(h.lst, h.jd, h.jdmid),
            jd=h.jdmid,
            lstseq=h.lstseq,
            order=astro.legendre_order,
            min_match_fraction=astro.min_match_fraction,
            saturation=config.reduction.photometry.saturation_adu,
        )
    except BlindSolveFailed as exc:
        print(f"mascara-actors solve: {frame}: no solution: {exc.describe()}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t0
    _report(frame, h, sky_camera, found, stars, astro.vmin, astro.vmax, seconds)
    if args.plot is not None:
        _plot(args.plot, image, found, stars, lst_mid_hours(h.lst, h.jd, h.jdmid), h, frame)
        print(f"plot       {args.plot}")
    if args.write_config:
        return _write_config(config, named, note, found)
    return 0


def _report(
    frame: Path,
    h: RawHeader,
    camera: CameraConfig,
    found: BlindSolution,
    stars: Catalogue,
    vmin: float,
    vmax: float,
    seconds: float,
) -> None:
    """Print the solution, one ``key value`` line each."""
    from mascara_actors.camera_model import CameraModel

    m = found.model
    alt, az, roll = found.pointing
    sol = found.solution
    corr = 0.0
    if m.coeffs_x:
        yy, xx = np.mgrid[0 : m.ny : 64, 0 : m.nx : 64]
        design = m.legendre_design(xx, yy, m.order)
        corr = float(
            np.max(np.hypot(design @ np.asarray(m.coeffs_x), design @ np.asarray(m.coeffs_y)))
        )
    configured = CameraModel.from_config(camera, nx=m.nx, ny=m.ny)
    off = math.degrees(math.acos(min(1.0, float(configured.axes[2] @ m.axes[2]))))
    droll = (roll - configured.pointing()[2] + 180.0) % 360.0 - 180.0
    lines = [
        ("frame", f"{frame} ({h.site} camera {h.camera}, lstseq {h.lstseq}, UTC {h.utc})"),
        ("camera", camera.id),
        (
            "pointing",
            f"alt_deg = {alt:.{_DECIMALS}f}  az_deg = {az:.{_DECIMALS}f}  "
            f"roll_deg = {roll:.{_DECIMALS}f}  (cameras.toml convention)",
        ),
        ("parity", "mirrored" if found.mirrored else "normal"),
        (
            "focal",
            f"{m.focal_px:.2f} px = {m.focal_px * camera.sensor.pixel_um / 1000.0:.3f} mm "
            f"(lens {camera.lens.name}: {camera.lens.focal_mm:g} mm)",
        ),
        ("distortion", f"k1 = {m.k1:.5f}  k2 = {m.k2:.5f}  (r_d = r (1 + k1 r^2 + k2 r^4))"),
        ("legendre", f"order {m.order}, largest correction {corr:.2f} px"),
        (
            "matched",
            f"{found.nmatched} of {found.npredicted} predicted stars (V {vmin:g}-{vmax:g}) "
            f"within 1.5 px of {found.ndetected} detected; chance probability "
            f"1e{found.log10_false_alarm:.0f}",
        ),
        ("rms", f"{sol.dr:.3f} px (x {sol.dx:.3f}, y {sol.dy:.3f}) on {sol.nused} stars"),
        (
            "configured",
            f"alt {camera.alt_deg:g} az {camera.az_deg:g} roll {camera.roll_deg:g}: the optical "
            f"axis is {off:.3f} deg from it, roll {droll:+.3f} deg",
        ),
        ("time", f"{seconds:.2f} s"),
    ]
    for key, value in lines:
        print(f"{key:<10} {value}")


def _plot(
    png: Path,
    image: np.ndarray,
    found: BlindSolution,
    stars: Catalogue,
    lst_hours: float,
    h: RawHeader,
    frame: Path,
) -> None:
    """The frame with circles on the matched catalogue stars (matplotlib, Agg)."""
    from matplotlib.figure import Figure

    ra, dec = stars.positions_at(h.jdmid)
    x, y = found.model.radec_to_pixel(ra[found.matched], dec[found.matched], lst_hours)
    step = 2  # half resolution is plenty to see the circles sit on the stars
    shown = np.asarray(image[::step, ::step], float)
    lo, hi = np.nanpercentile(shown, [5.0, 99.5])
    fig = Figure(figsize=(14, 9.6), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(
        np.arcsinh((shown - lo) / max(hi - lo, 1.0) * 10.0),
        origin="lower",
        cmap="gray",
        extent=(-0.5, image.shape[1] - 0.5, -0.5, image.shape[0] - 0.5),
        interpolation="nearest",
    )
    ax.scatter(x, y, s=40, facecolors="none", edgecolors="lime", linewidths=0.6)
    alt, az, roll = found.pointing
    parity = ", mirrored" if found.mirrored else ""
    ax.set_title(
        f"{frame.name}: alt {alt:.3f} az {az:.3f} roll {roll:.3f} deg{parity}; "
        f"{found.nmatched} stars matched, RMS {found.solution.dr:.3f} px"
    )
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


def _write_config(
    config: Config, camera: CameraConfig, note: str | None, found: BlindSolution
) -> int:
    """Write the pointing into the camera's entry; the exit code."""
    path = config.directory / "cameras.toml"
    if note:
        print(
            f"mascara-actors solve: not written: {note}; solve a frame of {camera.id} or name "
            "the camera that took it",
            file=sys.stderr,
        )
        return 2
    alt, az, roll = found.pointing
    values: dict[str, Any] = {
        "alt_deg": round(min(alt, 90.0), _DECIMALS),
        "az_deg": round(az % 360.0, _DECIMALS) % 360.0,
        "roll_deg": round(roll % 360.0, _DECIMALS) % 360.0,
    }
    if found.mirrored or camera.mirror:  # (an unmirrored camera's entry gets no new key)
        values["mirror"] = found.mirrored
    update_camera_entry(path, camera.id, values)
    print(f"written    [cameras.{camera.id}] in {path}")
    return 0


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    raise TypeError(f"cannot write {value!r}")


_TABLE = re.compile(r"^\s*\[\s*([^\[\]#]+?)\s*\]\s*(#.*)?$")


def update_camera_entry(path: Path, camera_id: str, values: dict[str, Any]) -> None:
    """Set ``values`` in the ``[cameras.ID]`` table of a cameras.toml, keeping everything else.

    A careful line edit rather than a TOML round trip: only the value text of each key
    changes; comments, alignment, blank lines and the other tables stay byte for byte (a
    trailing comment keeps its column when the new value fits). A key the table lacks is
    added after its last key. The result is parsed back and must differ from the original
    in exactly these values, else nothing is written; the file is replaced atomically.
    """
    text = path.read_bytes().decode("utf-8")  # as is: CRLF line ends stay CRLF
    lines = text.splitlines(keepends=True)
    header = f"cameras.{camera_id}"
    start = next(
        (i for i, line in enumerate(lines) if (m := _TABLE.match(line)) and m[1] == header), None
    )
    if start is None:
        raise ConfigError(f"{path}: no [{header}] table to update")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines)
    )
    last_key = start
    for i in range(start + 1, end):
        if re.match(r"^\s*[A-Za-z0-9_-]+\s*=", lines[i]):
            last_key = i
    for key, value in values.items():
        new = _toml_value(value)
        pattern = re.compile(
            rf"^(\s*{re.escape(key)}\s*=\s*)([^#\r\n]*?)([ \t]*)(#[^\r\n]*)?(\r?\n)?$"
        )
        for i in range(start + 1, end):
            m = pattern.match(lines[i])
            if m is None:
                continue
            lead, old, gap, comment, eol = m.group(1, 2, 3, 4, 5)
            if comment:
                # keep the comment's column when the new value leaves room for it
                width = len(old) + len(gap)
                gap = " " * max(width - len(new), 1)
            lines[i] = f"{lead}{new}{gap if comment else ''}{comment or ''}{eol or ''}"
            break
        else:
            eol = "\n" if not lines[last_key].endswith("\r\n") else "\r\n"
            lines.insert(last_key + 1, f"{key} = {new}{eol}")
            last_key += 1
            end += 1
    updated = "".join(lines)
    before = tomllib.loads(text)
    after = tomllib.loads(updated)
    expected = dict(before)
    expected["cameras"] = {
        **before["cameras"],
        camera_id: {**before["cameras"][camera_id], **values},
    }
    if after != expected:
        raise ConfigError(f"{path}: could not update [{header}] safely; edit it by hand")
    atomic_write_bytes(path, updated.encode("utf-8"))
