"""Transit candidates: one row per peak kept for a star, and the table they are written to.

``candidates.csv`` and ``candidates.hdf5`` (dataset ``candidates``, one field per column,
attributes ``software_version``, ``criteria`` (JSON: name -> meaning)) hold the same rows,
sorted by significance (SDE, highest first). The columns are the fields of
:class:`Candidate` with ``checks`` spread into one boolean column ``pass_{criterion}`` each.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mascara_actors import __version__
from mascara_actors.atomic_files import atomic_write_bytes
from mascara_actors.storage.atomic import atomic_hdf5

__all__ = ["CANDIDATES_CSV", "CANDIDATES_HDF5", "Candidate", "read_candidates",
           "sort_by_significance", "write_candidates"]

CANDIDATES_CSV = "candidates.csv"
CANDIDATES_HDF5 = "candidates.hdf5"


@dataclass(frozen=True)
class Candidate:
    """One BLS peak of one star, measured on the star's detrended binned points."""

    hip: int
    camera: str
    """The camera(s) whose light curves were searched, comma-separated."""
    vmag: float
    sptype: str
    """Spectral class from B-V (one letter, ``?`` unknown)."""
    ra: float
    """Degrees (J2000)."""
    dec: float
    rank: int
    """The star's candidate is 1: its peak of highest measured S/N of those that passed the
    vetting (or of all, when none passed); then the other passed peaks by S/N, then the
    failed ones."""
    period: float
    """Days."""
    epoch: float
    """Mid-transit, JD (UTC)."""
    duration: float
    """Length of the fitted box, days: about mid-ingress to mid-egress, so about one ingress
    (or egress) shorter than first to last contact (a box fits a sloped ingress and egress
    about half-way down)."""
    depth: float
    """Relative flux lost in transit (0.01 = 1 %), refined on the unbinned points."""
    depth_err: float
    sde: float
    """Signal detection efficiency: (peak - median) / robust standard deviation of the
    chi-square gain over the periodogram (see :func:`~mascara_actors.search.peaks.sde`)."""
    snr: float
    """Depth over its error."""
    npoints: int
    """Binned points searched."""
    ntransits: int
    """Transits with at least one point in them."""
    in_transit_fraction: float
    """Fraction of the points in transit."""
    odd_even_sigma: float
    """|odd depth - even depth| over its error."""
    secondary_depth: float
    """Depth of a box of the same duration at phase 0.5 (relative flux)."""
    secondary_sigma: float
    ellipsoidal_amp: float
    """Amplitude of a cos(4 pi phase) term out of transit (relative flux)."""
    ellipsoidal_sigma: float
    single_night_fraction: float
    """The share of the depth's chi-square that the best single transit brings."""
    anti_transit_ratio: float
    """Chi-square gain of the best dip over that of the best bump at this period."""
    red_noise: float
    """beta: the depth error's factor for correlated noise (at least 1)."""
    blend_hip: int
    """The neighbour (within the blend radius) that shows the dip most significantly, or 0."""
    blend_snr: float
    """Its depth over error at this period and epoch (0 without a neighbour)."""
    snr_err: float = math.nan
    """Standard error of ``snr`` (:attr:`~.measure.TransitMeasure.snr_err`; NaN in a table
    written before it was measured)."""
    aliases: str = ""
    """Other periods (days, space-separated) of the star's peaks that put the same points in
    transit, with an S/N within its standard error of this one's (the larger of the two:
    :attr:`~.measure.TransitMeasure.snr_err`), and passed the vetting too: the data fit
    them as well as this one, and a follow-up must choose."""
    checks: Mapping[str, bool] = field(default_factory=dict)
    """Vetting: criterion name -> passed."""

    @property
    def passed(self) -> bool:
        """Passed every vetting criterion."""
        return all(self.checks.values())

    @property
    def alias_periods(self) -> tuple[float, ...]:
        """:attr:`aliases` as numbers, days."""
        return tuple(float(p) for p in self.aliases.split())


_SCALARS = [f.name for f in dataclasses.fields(Candidate) if f.name != "checks"]


def _columns(rows: Sequence[Candidate]) -> list[str]:
    names = sorted({name for c in rows for name in c.checks})
    return [*_SCALARS, *(f"pass_{n}" for n in names), "passed"]


def _row(c: Candidate, columns: list[str]) -> list[object]:
    out: list[object] = []
    for col in columns:
        if col == "passed":
            out.append(c.passed)
        elif col.startswith("pass_"):
            out.append(bool(c.checks.get(col[5:], False)))
        else:
            out.append(getattr(c, col))
    return out


def sort_by_significance(rows: Iterable[Candidate]) -> list[Candidate]:
    """Highest SDE first (ties: the star's rank, then HIP)."""
    return sorted(rows, key=lambda c: (-c.sde, c.rank, c.hip))


def write_candidates(outdir: Path, rows: Iterable[Candidate],
                     criteria: Mapping[str, str]) -> tuple[Path, Path]:
    """Write ``candidates.csv`` and ``candidates.hdf5`` into ``outdir`` (each whole or not at
    all), sorted by significance; ``criteria`` maps each vetting criterion to its meaning."""
    ordered = sort_by_significance(rows)
    columns = _columns(ordered)
    lines = [",".join(columns)]
    for c in ordered:
        lines.append(",".join(_csv_value(v) for v in _row(c, columns)))
    csv_path = atomic_write_bytes(outdir / CANDIDATES_CSV, ("\n".join(lines) + "\n").encode())
    h5_path = outdir / CANDIDATES_HDF5
    with atomic_hdf5(h5_path) as ah:
        f = ah.file
        dtype = [(col, _h5_type(col)) for col in columns]
        table = np.array([tuple(_row(c, columns)) for c in ordered], dtype=dtype)
        f.create_dataset("candidates", data=table)
        f["candidates"].attrs["software_version"] = __version__
        f["candidates"].attrs["criteria"] = json.dumps(dict(criteria))
    return csv_path, h5_path


def _csv_value(v: object) -> str:
    if isinstance(v, bool | np.bool_):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(float(v))
    text = str(v)
    return f'"{text}"' if "," in text else text


def _h5_type(col: str) -> str:
    if col == "passed" or col.startswith("pass_"):
        return "?"
    if col in ("camera", "sptype"):
        return "S32"
    if col == "aliases":
        return "S64"
    if col in ("hip", "rank", "npoints", "ntransits", "blend_hip"):
        return "i8"
    return "f8"


def read_candidates(path: Path) -> list[Candidate]:
    """The rows of a ``candidates.csv``, in file order."""
    types = {f.name: f.type for f in dataclasses.fields(Candidate)}
    out = []
    with open(path, newline="") as fh:
        for rec in csv.DictReader(fh):
            values: dict[str, object] = {}
            checks: dict[str, bool] = {}
            for key, text in rec.items():
                if key.startswith("pass_"):
                    checks[key[5:]] = text == "1"
                elif key in types:
                    kind = types[key]
                    values[key] = (int(text) if kind == "int" else
                                   float(text) if kind == "float" else text)
            out.append(Candidate(**values, checks=checks))  # type: ignore[arg-type]
    return out
