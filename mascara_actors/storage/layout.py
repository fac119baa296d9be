"""Names and places of the stored products: directories, file names, groups, attributes.

One camera-night lives in ``{outdir}/{night}{SITE}{CAM}/`` (for example ``20240315LPC``):
``tmp/{kind}_{setidx:09d}.hdf5`` holds the per-set files, ``lightcurves/{kind}_{night}{SITE}
{CAM}.hdf5`` the nightly files and ``starfiles/`` the per-star FITS tables.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path

from mascara_actors.errors import StorageError

__all__ = [
    "CAMERAS",
    "FORMAT_VERSION",
    "GROUP_ASTROMETRY",
    "GROUP_HEADER",
    "GROUP_LIGHTCURVES",
    "GROUP_STARS",
    "GROUP_STATION",
    "KINDS",
    "LOCK_NAME",
    "NIGHTLY_FIXED_ATTRS",
    "SET_ATTRS",
    "SITE_NAMES",
    "NightId",
    "binned_dir",
    "check_kind",
    "event_log_path",
    "lightcurve_dir",
    "nightly_file_path",
    "parse_set_file_name",
    "report_path",
    "set_file_path",
    "star_file_name",
    "starfile_dir",
    "summary_dir",
    "tmp_dir",
]

FORMAT_VERSION = 1
"""Version of the file layout written by this package (attribute ``format_version``)."""

KINDS = ("fast", "slow")
"""Light-curve kinds: per-exposure (fast) and per-set binned (slow) photometry."""

SITE_NAMES = {"LP": "LaPalma", "LS": "LaSilla"}
"""Two-letter site codes and their SITE-OBS names."""

CAMERAS = "NESWC"
"""Camera letters: north, east, south, west, centre."""

LOCK_NAME = "night.lock"
"""Lock file in the night directory held by the one writer of the camera-night."""

GROUP_HEADER = "header"
GROUP_STATION = "station"
GROUP_STARS = "stars"
GROUP_ASTROMETRY = "astrometry"
GROUP_LIGHTCURVES = "lightcurves"

# datasets of a per-set file
SET_RECORDS = "records"
SET_INDEX = "index"
SET_STARS = "stars"
SET_STATION = "station"
SET_ASTROMETRY = "astrometry"
SET_HEADER = "header"

SET_ATTRS = ("night", "site", "camera", "kind", "setidx", "format_version")
"""Attributes every per-set file carries; a file without them is foreign."""

NIGHTLY_FIXED_ATTRS = ("site-obs", "cam-obs", "night", "site", "camera", "kind",
                       "format_version", "software_version", "minobs")
"""Header attributes of a nightly file set by the combine (the rest come from the writer)."""

_NIGHT_DIR_RE = re.compile(r"^(\d{8})([A-Z]{2})([A-Z])$")
_SET_FILE_RE = re.compile(r"^(fast|slow)_(\d{9,})\.hdf5$")


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is ``fast`` or ``slow``, else raise StorageError."""
    if kind not in KINDS:
        raise StorageError(f"kind={kind!r} is not a light-curve kind: use one of {KINDS}")
    return kind


@dataclass(frozen=True, slots=True)
class NightId:
    """Identity of one camera-night: UTC date of the evening, site code, camera letter."""

    night: str
    """``YYYYMMDD``, UTC date of the evening's sunset."""
    site: str
    """Two-letter site code, ``LP`` (La Palma) or ``LS`` (La Silla)."""
    camera: str
    """Camera letter, one of N, E, S, W, C."""

    def __post_init__(self) -> None:
        if not (isinstance(self.night, str) and re.fullmatch(r"\d{8}", self.night)):
            raise StorageError(f"night={self.night!r} must be a date written YYYYMMDD")
        try:
            _dt.datetime.strptime(self.night, "%Y%m%d")
        except ValueError:
            raise StorageError(f"night={self.night!r} is not a calendar date (YYYYMMDD)") from None
        if not (isinstance(self.site, str) and re.fullmatch(r"[A-Z]{2}", self.site)):
            raise StorageError(f"site={self.site!r} must be a two-letter upper-case site code "
                               f"such as {sorted(SITE_NAMES)}")
        if not (isinstance(self.camera, str) and len(self.camera) == 1
                and self.camera in CAMERAS):
            raise StorageError(f"camera={self.camera!r} must be one letter of {CAMERAS}")

    @property
    def name(self) -> str:
        """``{night}{SITE}{CAM}``, the name of the night directory."""
        return f"{self.night}{self.site}{self.camera}"

    @property
    def site_obs(self) -> str:
        """SITE-OBS name of the site (``LaPalma``), or the code when it is not a known site."""
        return SITE_NAMES.get(self.site, self.site)

    @classmethod
    def from_dir(cls, night_dir: str | Path) -> NightId:
        """Parse a night directory name such as ``20240315LPC``."""
        name = Path(night_dir).name
        m = _NIGHT_DIR_RE.match(name)
        if m is None:
            raise StorageError(f"directory {str(night_dir)!r} is not a camera-night directory: "
                               "its name must be {YYYYMMDD}{SITE}{CAM}, e.g. 20240315LPC")
        return cls(*m.groups())

    def night_dir(self, outdir: str | Path) -> Path:
        """``{outdir}/{night}{SITE}{CAM}``."""
        return Path(outdir) / self.name

    def attrs(self) -> dict[str, str]:
        """The identity as file attributes."""
        return {"night": self.night, "site": self.site, "camera": self.camera}


def binned_dir(night_dir: Path) -> Path:
    """Directory of the binned images and the masters of the night."""
    return Path(night_dir) / "binned"


def tmp_dir(night_dir: Path) -> Path:
    """Directory of the per-set files."""
    return Path(night_dir) / "tmp"


def lightcurve_dir(night_dir: Path) -> Path:
    """Directory of the nightly files."""
    return Path(night_dir) / "lightcurves"


def starfile_dir(night_dir: Path) -> Path:
    """Default directory of the per-star FITS tables."""
    return Path(night_dir) / "starfiles"


def set_file_path(night_dir: Path, kind: str, setidx: int) -> Path:
    """``{night_dir}/tmp/{kind}_{setidx:09d}.hdf5``."""
    if int(setidx) != setidx or setidx < 0:
        raise StorageError(f"setidx={setidx!r} must be a non-negative integer")
    return tmp_dir(night_dir) / f"{check_kind(kind)}_{int(setidx):09d}.hdf5"


def parse_set_file_name(path: Path) -> tuple[str, int] | None:
    """``(kind, setidx)`` from a per-set file name, or None when the name does not match."""
    m = _SET_FILE_RE.match(Path(path).name)
    return (m.group(1), int(m.group(2))) if m else None


def nightly_file_path(night_dir: Path, kind: str) -> Path:
    """``{night_dir}/lightcurves/{kind}_{night}{SITE}{CAM}.hdf5``."""
    nid = NightId.from_dir(night_dir)
    return lightcurve_dir(night_dir) / f"{check_kind(kind)}_{nid.name}.hdf5"


def event_log_path(night_dir: str | Path) -> Path:
    """``{night_dir}/logs/events.jsonl``: the night's event log."""
    return Path(night_dir) / "logs" / "events.jsonl"


def summary_dir(night_dir: str | Path) -> Path:
    """``{night_dir}/summary``, where the night's report files go."""
    return Path(night_dir) / "summary"


def report_path(directory: Path, tag: str, suffix: str) -> Path:
    """The report page ``{directory}/summary_{tag}{suffix}`` (``.html`` or ``.txt``) of a
    camera-night (tag ``20260320LPC``) or of a station's night (``20260320LP``)."""
    return directory / f"summary_{tag}{suffix}"


def star_file_name(kind: str, star_id: int, nid: NightId) -> str:
    """``{kind}_HIP{id}_{night}{SITE}{CAM}.fits``: one star's light curve of one night."""
    return f"{check_kind(kind)}_HIP{int(star_id)}_{nid.name}.fits"
