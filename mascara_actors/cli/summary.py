"""``mascara-actors summary``: the report of a camera-night, or of a station's night.

``summary NIGHT_DIR [--send]`` builds the summary of any camera-night directory after the
fact (HTML, text and PNGs in ``NIGHT_DIR/summary/``) and, with ``--send`` (or ``--mail``),
mails it. ``summary --station OUT --night YYYYMMDD [--cameras ID,...] [--mail]`` builds the
station report over the cameras' nights in ``OUT`` (into ``OUT/{night}{SITE}-station/``,
see :mod:`mascara_actors.summary.station`) and mails it once: a station report that was
mailed is not mailed again unless ``--mail-again``.

Exit codes: 0 report written (and mail sent when asked); 1 report written but the mail or a
figure failed (or the report could not be written); 2 bad input.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mascara_actors.config import load_config
from mascara_actors.errors import ConfigError, StorageError

__all__ = ["add_parser", "mail_config_path", "run", "station_command", "station_report"]


def _mag_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--mag-range {text!r}: write VMIN:VMAX, e.g. 4.75:4.8"
        ) from None
    return (lo, hi)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "summary",
        help="build (and optionally e-mail) the summary of a reduced night, or of a station's",
        description=(
            "Summarise a camera-night directory ({YYYYMMDD}{SITE}{CAM}) from its event log and "
            "nightly light-curve file: frames, errors and warnings, astrometry, sky, CCD "
            "temperature, weather proxy, processing rate, plots. Writes NIGHT_DIR/summary/. "
            "With --station OUT instead of NIGHT_DIR: the station report of one night over "
            "every camera's night in OUT (one row per camera, a sky map), written to "
            "OUT/{YYYYMMDD}{SITE}-station/; what `mascara-actors station` makes at dawn. "
            "SMTP credentials come from MASCARA_SMTP_USER / MASCARA_SMTP_PASSWORD or --secrets."
        ),
        epilog=(
            "Examples: `mascara-actors summary night_out/20260320LPC --send`; "
            "`mascara-actors summary --station night_out --night 20260320 --mail`. "
            "Exit status: 0 written (and mailed when asked), 1 written but the mail or a "
            "figure failed, 2 bad input (e.g. no camera night of that date in OUT)."
        ),
    )
    p.add_argument(
        "night_dir",
        type=Path,
        nargs="?",
        default=None,
        metavar="NIGHT_DIR",
        help="camera-night directory (leave out with --station)",
    )
    p.add_argument(
        "--send",
        "--mail",
        dest="send",
        action="store_true",
        help="e-mail the summary to the recipients of config/mail.toml (a station report "
        "only once: see --mail-again)",
    )
    p.add_argument(
        "--secrets",
        type=Path,
        default=None,
        metavar="FILE",
        help="SMTP user/password file (TOML, mode 600)",
    )
    p.add_argument(
        "--mail-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="mail settings (default mail.toml in the configuration directory)",
    )
    p.add_argument(
        "--mag-range",
        type=_mag_range,
        default=(4.75, 4.8),
        metavar="VMIN:VMAX",
        help="V range of the light-curve overview (default 4.75:4.8)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the report here instead of NIGHT_DIR/summary (camera nights only)",
    )
    st = p.add_argument_group("the station report (instead of NIGHT_DIR)")
    st.add_argument(
        "--station",
        type=Path,
        default=None,
        metavar="OUT",
        help="the station's output directory (the --out of `mascara-actors station`), "
        "holding OUT/{YYYYMMDD}{SITE}{CAM}/ per camera",
    )
    st.add_argument(
        "--night",
        default=None,
        metavar="YYYYMMDD",
        help="the night (UTC date of its sunset); default the only night in OUT",
    )
    st.add_argument(
        "--cameras",
        default=None,
        metavar="ID,ID,...",
        help="the cameras' rows, comma-separated (default: every camera of the site in "
        "config/cameras.toml and every camera night of that date in OUT); a camera "
        "without a night gets a row saying so",
    )
    st.add_argument(
        "--mail-again",
        action="store_true",
        help="with --mail: mail the station report even if it was mailed before "
        "(OUT/{YYYYMMDD}{SITE}-station/mailed.json)",
    )


def mail_config_path(args: argparse.Namespace) -> Path | None:
    """``--mail-config``, else ``mail.toml`` of ``--config``, else None (the default one)."""
    path: Path | None = getattr(args, "mail_config", None)
    if path is None and getattr(args, "config", None) is not None:
        path = Path(args.config) / "mail.toml"
    return path


def station_command(out: Path, night: str, cameras: Sequence[str], *, mail: bool,
                    config: Path | None = None) -> str:
    """The command line that makes (and with ``mail`` mails) the station report again."""
    argv = ["mascara-actors"]
    if config is not None:
        argv += ["--config", str(config)]
    argv += ["summary", "--station", str(out), "--night", night, "--cameras", ",".join(cameras)]
    if mail:
        argv.append("--mail")
    return shlex.join(argv)


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def station_report(
    out: Path,
    night: str,
    cameras: Sequence[str],
    *,
    site: str,
    mail: bool = False,
    mail_again: bool = False,
    mail_config: Path | None = None,
    secrets: Path | None = None,
    config: Path | None = None,
    say: Callable[[str], None] = _say,
) -> int:
    """Make the station report of one night and say what was done; 0 written (and mailed when
    asked), 1 when the report, a figure or the mail failed (the command to run again is
    said). ``site`` is the two-letter code of the camera ids."""
    from mascara_actors.summary.station import summarise_station  # matplotlib: not for --help

    outcome = summarise_station(out, night, cameras, site=site, send_mail=mail,
                                force_mail=mail_again, mail_config=mail_config,
                                secrets_file=secrets)
    rows = outcome.rows
    complete = sum(r.status == "complete" for r in rows)
    if outcome.html_path is not None:
        say(f"station summary of {outcome.tag}: {complete} of {len(rows)} camera nights "
            f"complete; written to {outcome.html_path}")
    for r in rows:
        if r.status != "complete":
            say(f"  {r.camera}: {r.status}" + (f" ({r.note})" if r.note else ""))
    if outcome.mail is not None and outcome.mail.ok:
        say(f"station summary mailed after {outcome.mail.attempts} attempt(s)")
    if outcome.already_mailed is not None:
        say(f"station summary already mailed at {outcome.already_mailed}: not mailed again "
            "(--mail-again sends it anyway)")
    for problem in outcome.problems:
        say(f"station summary problem: {problem}")
    if outcome.problems:
        say("make the station summary again with: "
            + station_command(out, night, cameras, mail=mail, config=config))
        return 1
    return 0


def _nights_in(out: Path) -> dict[str, list[str]]:
    """Night -> the camera ids with a night directory in ``out``."""
    from mascara_actors.storage import NightId

    nights: dict[str, list[str]] = {}
    for p in sorted(out.iterdir()):
        try:
            nid = NightId.from_dir(p)
        except StorageError:
            continue  # not a camera night (state/, a station report ...)
        if p.is_dir():
            nights.setdefault(nid.night, []).append(nid.site + nid.camera)
    return nights


def _station_args(args: argparse.Namespace) -> tuple[str, str, list[str]]:
    """(night, site code, cameras) of ``summary --station`` (ConfigError says what to fix)."""
    out: Path = args.station
    if not out.is_dir():
        raise ConfigError(f"--station {out} is not a directory: give the --out of the station, "
                          "e.g. --station night_out")
    nights = _nights_in(out)
    night = args.night
    if night is None:
        if len(nights) != 1:
            raise ConfigError(f"--station {out}: "
                              + (f"give --night, one of {sorted(nights)}" if nights else
                                 "no camera night ({YYYYMMDD}{SITE}{CAM}/) in it: check the "
                                 "directory"))
        (night,) = nights
    found = nights.get(night, [])
    if args.cameras is not None:
        cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
        if not cameras:
            raise ConfigError("--cameras: name at least one camera, e.g. --cameras LPN,LPE")
    else:
        if not found:
            cameras = []
        else:
            sites = sorted({c[:-1] for c in found})
            if len(sites) > 1:
                raise ConfigError(f"--station {out}: camera nights of sites {sites} on "
                                  f"{night}: choose with --cameras")
            configured = [c.id for c in load_config(args.config).cameras.values()
                          if c.site.code == sites[0]]
            cameras = configured + [c for c in found if c not in configured]
    if not set(cameras) & set(found):
        raise ConfigError(
            f"no camera night of {night} in {out} for cameras {cameras or 'any'} (no "
            f"{out}/{night}{{SITE}}{{CAM}}/ directory): check --station and --night"
            + (f"; nights there: {sorted(nights)}" if nights else ""))
    return night, cameras[0][:-1], cameras


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""
    if args.station is not None:
        if args.night_dir is not None or args.out is not None:
            raise ConfigError("--station makes the station report of OUT: give no NIGHT_DIR "
                              "and no --out with it")
        night, site, cameras = _station_args(args)
        return station_report(args.station, night, cameras, site=site, mail=args.send,
                              mail_again=args.mail_again, mail_config=mail_config_path(args),
                              secrets=args.secrets, config=getattr(args, "config", None))
    night_dir: Path | None = args.night_dir
    if night_dir is None:
        raise ConfigError("give a camera-night directory (NIGHT_DIR), or --station OUT "
                          "--night YYYYMMDD for the station report")
    if args.night is not None or args.cameras is not None or args.mail_again:
        raise ConfigError("--night, --cameras and --mail-again go with --station OUT")
    if not night_dir.is_dir():
        raise ConfigError(
            f"NIGHT_DIR {night_dir} is not a directory: give a camera-night "
            "directory such as night_out/20260320LPC"
        )
    from mascara_actors.summary.night import summarise_night

    outcome = summarise_night(
        night_dir,
        send=args.send,
        mail_config=mail_config_path(args),
        secrets_file=args.secrets,
        mag_range=args.mag_range,
        out_dir=args.out,
        config=getattr(args, "config", None),
    )
    s = outcome.summary
    if outcome.html_path is not None:
        print(
            f"summary of {s.tag}: {s.frames_reduced} reduced, {s.frames_failed} failed of "
            f"{s.frames_expected} expected; written to {outcome.html_path}",
            file=sys.stderr,
        )
    if outcome.mail is not None:
        if outcome.mail.ok:
            print(f"mailed after {outcome.mail.attempts} attempt(s)", file=sys.stderr)
        else:
            print(f"mail NOT sent: {outcome.mail.error}", file=sys.stderr)
    for problem in outcome.problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if outcome.problems else 0
