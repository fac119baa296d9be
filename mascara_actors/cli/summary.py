"""``mascara-actors summary NIGHT_DIR [--send] [--secrets FILE]``: the report of a night.

Builds the summary of any camera-night directory after the fact (HTML, text and PNGs in
``NIGHT_DIR/summary/``) and, with ``--send``, mails it. Exit codes: 0 report written (and
mail sent when asked); 1 report written but the mail or a figure failed; 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mascara_actors.errors import ConfigError
from mascara_actors.summary.night import summarise_night

__all__ = ["add_parser", "run"]


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
        help="build (and optionally e-mail) the summary of a reduced night",
        description=(
            "Summarise a camera-night directory ({YYYYMMDD}{SITE}{CAM}) from its event log and "
            "nightly light-curve file: frames, errors and warnings, astrometry, sky, CCD "
            "temperature, weather proxy, processing rate, plots. Writes NIGHT_DIR/summary/. "
            "SMTP credentials come from MASCARA_SMTP_USER / MASCARA_SMTP_PASSWORD or --secrets."
        ),
    )
    p.add_argument("night_dir", type=Path, metavar="NIGHT_DIR", help="camera-night directory")
    p.add_argument(
        "--send",
        action="store_true",
        help="e-mail the summary to the recipients of config/mail.toml",
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
        help="write the report here instead of NIGHT_DIR/summary",
    )


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""
    night_dir: Path = args.night_dir
    if not night_dir.is_dir():
        raise ConfigError(
            f"NIGHT_DIR {night_dir} is not a directory: give a camera-night "
            "directory such as night_out/20260320LPC"
        )
    mail_config = args.mail_config
    if mail_config is None and getattr(args, "config", None) is not None:
        mail_config = Path(args.config) / "mail.toml"
    outcome = summarise_night(
        night_dir,
        send=args.send,
        mail_config=mail_config,
        secrets_file=args.secrets,
        mag_range=args.mag_range,
        out_dir=args.out,
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
