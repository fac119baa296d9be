"""Files of the coarse decorrelation: calibrated light curves, fitted maps, a JSON report.

``calibrated_{stem}.hdf5`` (binned calibrated light curves, legacy "red" files, 7.6)
    ``header`` attributes: the baseline's (site-obs, cam-obs, site, camera, lat, lon ...)
    plus ``kind = "calibrated"``, ``baseline`` (its absolute path), ``baseline_size``,
    ``baseline_mtime_ns``, ``nights``, ``aperture``, ``set_size`` and ``cflag_bits`` (JSON:
    bit -> [name, meaning]); ``filelist`` (the nightly files of the baseline); ``stars`` (the
    baseline's star rows of the calibrated stars plus ``mag`` (fitted magnitude), ``sigma``
    (extra scatter, mag), ``npoints`` and ``nbins``); ``lightcurves/{id}``: one record per
    set of 50 (``setidx``, ``jd``, ``lst``, ``mag``, ``emag``, ``nobs``, ``cflag``,
    ``trans``, ``clouds``, ``x``, ``y``; see ``mascara_actors.decorrelation.BIN_DTYPE``),
    sorted by setidx.
``maps_{stem}.hdf5``
    ``header`` attributes: the provenance above, the settings (``setting_*``) and
    ``model``; ``filelist``; ``history`` (one row per iteration); ``transmission`` (attrs:
    the node grid; ``ha``, ``dec`` (node positions, deg), ``values`` (ndec, nha) mag, NaN
    where the sky was not sampled, ``weight``); ``intrapix`` (attrs: the cell grid;
    ``ha_edges``, ``dec_edges``, ``amplitudes`` (ndec, nha, 4) mag for sin 2 pi x,
    cos 2 pi x, sin 2 pi y, cos 2 pi y, NaN where not sampled, ``weight``); ``clouds``
    (attrs ``nside = 8``, ``order = "ring"``; ``patch``, ``lstseq`` (every exposure of the
    baseline), ``values`` and ``sigma`` (nexp, npatch) mag, NaN where no star was measured,
    ``nstars``); ``magnitudes`` (``id``, ``vmag``, ``mag``, ``sigma``, ``npoints``,
    ``patch``).
``report_{stem}.json``
    converged or not, iterations and their history, what was dropped and why, timings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from mascara_actors import __version__
from mascara_actors.errors import StorageError
from mascara_actors.storage import layout as L
from mascara_actors.storage._h5 import create_dataset, read_dataset
from mascara_actors.storage._sources import attr_value, read_field_group
from mascara_actors.storage.atomic import atomic_hdf5, atomic_write_text

__all__ = [
    "CalibratedFile",
    "MapsFile",
    "write_calibrated",
    "write_maps",
    "write_report",
]

MODEL = ("mag = m_star + T(HA, dec) + sum_i a_i(HA, dec) b_i(x, y) + clouds(patch, lstseq); "
         "b = [sin 2 pi x, cos 2 pi x, sin 2 pi y, cos 2 pi y]; "
         "mag = 25 - 2.5 log10(flux / exptime)")


def _attrs(group: h5py.Group, values: dict[str, Any]) -> None:
    for key in sorted(values):
        value = values[key]
        if isinstance(value, list | tuple):
            value = np.array([str(v).encode() for v in value]) if value and isinstance(
                value[0], str) else np.asarray(value)
        if value is None:
            continue
        group.attrs[key] = value


def _copy_header(header: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in header.items():
        if key in ("baseline", "kind", "format_version", "software_version"):
            continue
        out[key] = value
    return out


def write_calibrated(path: str | Path, *, provenance: dict[str, Any], header: dict[str, Any],
                     filelist: Sequence[str], stars: np.ndarray, star_par: np.ndarray,
                     curves: Sequence[tuple[int, np.ndarray]],
                     flags: dict[int, tuple[str, str]]) -> Path:
    """Write the calibrated light curves (see the module docstring).

    ``star_par`` rows are id, fitted magnitude, extra sigma, good points, patch (one column
    per star); ``curves`` are (id, binned records) sorted by id.
    """
    path = Path(path)
    ids = np.array([i for i, _ in curves], np.int64)
    pos = np.searchsorted(stars["id"], ids)
    rows = stars[pos]
    par_ids = star_par[0].astype(np.int64)
    order = np.argsort(par_ids)
    ppos = order[np.searchsorted(par_ids[order], ids)]
    extra = np.zeros(len(ids), [("mag", "f4"), ("sigma", "f4"), ("npoints", "u4"),
                                ("nbins", "u4")])
    extra["mag"] = star_par[1][ppos]
    extra["sigma"] = star_par[2][ppos]
    extra["npoints"] = star_par[3][ppos]
    extra["nbins"] = [len(c) for _, c in curves]
    attrs = {**_copy_header(header), **provenance, "kind": "calibrated",
             "format_version": L.FORMAT_VERSION, "software_version": __version__,
             "set_size": L.SET_SIZE,
             "cflag_bits": json.dumps({str(k): list(v) for k, v in flags.items()})}
    with atomic_hdf5(path) as ah:
        f = ah.file
        _attrs(f.create_group(L.GROUP_HEADER, track_order=True), attrs)
        create_dataset(f, "filelist", np.array([p.encode() for p in filelist], dtype="S1024"))
        group = f.create_group(L.GROUP_STARS, track_order=True)
        for name in rows.dtype.names or ():
            create_dataset(group, name, rows[name])
        for name in extra.dtype.names or ():
            create_dataset(group, name, extra[name])
        lcs = f.create_group(L.GROUP_LIGHTCURVES, track_order=True)
        for i, records in curves:
            create_dataset(lcs, str(int(i)), records)
            ah.check()
    return path


def write_maps(path: str | Path, *, provenance: dict[str, Any], header: dict[str, Any],
               filelist: Sequence[str], settings: dict[str, Any],
               history: list[dict[str, float]], grid: Any, ipx_grid: Any, T: np.ndarray,
               t_weight: np.ndarray, t_sampled: np.ndarray, ipx: np.ndarray,
               ipx_weight: np.ndarray, ipx_sampled: np.ndarray,
               clouds: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
               station_lstseq: np.ndarray, star_par: np.ndarray, stars: np.ndarray) -> Path:
    """Write the fitted maps (see the module docstring).

    ``grid`` and ``ipx_grid`` are the node and cell grids (``attrs()``, ``ha_nodes``,
    ``dec_nodes``, ``ha_edges``, ``dec_edges``); ``clouds`` holds per patch (patch, lstseq,
    clouds, sigma, nstars).
    """
    path = Path(path)
    nha, ndec = grid.nha, grid.ndec
    values = np.where(t_sampled, T, np.nan).reshape(ndec, nha)
    amp = np.where(ipx_sampled[:, None], ipx, np.nan).reshape(ipx_grid.ndec, ipx_grid.nha, 4)
    patches = np.array(sorted(q for q, *_ in clouds), np.int64)
    lstseq = np.asarray(station_lstseq, np.int64)
    cvals = np.full((len(lstseq), len(patches)), np.nan, np.float32)
    csig = np.full((len(lstseq), len(patches)), np.nan, np.float32)
    cnst = np.zeros((len(lstseq), len(patches)), np.uint16)
    for q, seq, c, sig, nst in clouds:
        col = int(np.searchsorted(patches, q))
        row = np.searchsorted(lstseq, seq)
        cvals[row, col], csig[row, col], cnst[row, col] = c, sig, nst
    mags = np.zeros(star_par.shape[1], [("id", "i4"), ("vmag", "f4"), ("mag", "f4"),
                                       ("sigma", "f4"), ("npoints", "u4"), ("patch", "i4")])
    order = np.argsort(star_par[0])
    mags["id"] = star_par[0][order]
    mags["mag"] = star_par[1][order]
    mags["sigma"] = star_par[2][order]
    mags["npoints"] = star_par[3][order]
    mags["patch"] = star_par[4][order]
    spos = np.searchsorted(stars["id"], mags["id"])
    mags["vmag"] = stars["vmag"][spos]
    hist = np.zeros(len(history), [(k, "f8") for k in (history[0] if history else {})])
    for n, row in enumerate(history):
        for k, v in row.items():
            hist[n][k] = v
    attrs = {**{k: v for k, v in _copy_header(header).items()
                if k in ("site-obs", "cam-obs", "site", "camera", "lat", "lon", "height")},
             **provenance, "kind": "maps", "model": MODEL,
             "format_version": L.FORMAT_VERSION, "software_version": __version__,
             **{f"setting_{k}": (v if v is not None else "default")
                for k, v in settings.items()}}
    with atomic_hdf5(path) as ah:
        f = ah.file
        _attrs(f.create_group(L.GROUP_HEADER, track_order=True), attrs)
        create_dataset(f, "filelist", np.array([p.encode() for p in filelist], dtype="S1024"))
        if len(hist):
            create_dataset(f, "history", hist)
        g = f.create_group("transmission", track_order=True)
        _attrs(g, grid.attrs())
        create_dataset(g, "ha", grid.ha_nodes)
        create_dataset(g, "dec", grid.dec_nodes)
        create_dataset(g, "values", values)
        create_dataset(g, "weight", np.asarray(t_weight).reshape(ndec, nha))
        g = f.create_group("intrapix", track_order=True)
        _attrs(g, ipx_grid.attrs())
        create_dataset(g, "ha_edges", ipx_grid.ha_edges)
        create_dataset(g, "dec_edges", ipx_grid.dec_edges)
        create_dataset(g, "amplitudes", amp)
        create_dataset(g, "weight", np.asarray(ipx_weight).reshape(ipx_grid.ndec, ipx_grid.nha))
        g = f.create_group("clouds", track_order=True)
        _attrs(g, {"nside": 8, "order": "ring"})
        create_dataset(g, "patch", patches)
        create_dataset(g, "lstseq", lstseq)
        chunks = (min(4096, max(len(lstseq), 1)), max(len(patches), 1))
        for name, arr in (("values", cvals), ("sigma", csig), ("nstars", cnst)):
            create_dataset(g, name, arr, chunks=chunks if arr.size else None,
                           compression="gzip" if arr.size else None, level=4, shuffle=True)
        g = f.create_group("magnitudes", track_order=True)
        for name in mags.dtype.names or ():
            create_dataset(g, name, mags[name])
    return path


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def write_report(path: str | Path, result: Any, settings: Any) -> Path:
    """The calibration report as JSON: status, iterations, what was dropped, files."""
    r = result
    doc = {
        "status": "converged" if r.converged else "not converged",
        "baseline": str(r.baseline), "iterations": r.iterations, "history": r.history,
        "nstars": r.nstars, "npoints": r.npoints, "seconds": round(r.seconds, 1),
        "dropped": r.dropped,
        "dropped_stars": {k: {"count": len(v), "ids": v[:1000]}
                          for k, v in r.dropped_stars.items()},
        "files": {"calibrated": r.calibrated_file, "maps": r.maps_file, "plots": r.plots},
        "settings": settings,
        "software_version": __version__,
    }
    return atomic_write_text(Path(path), json.dumps(_jsonable(doc), indent=1) + "\n")


class _Reader:
    kind = ""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except (OSError, RuntimeError) as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        head = self._file.get(L.GROUP_HEADER)
        kind = attr_value(head.attrs.get("kind")) if head is not None else None
        if kind != self.kind:
            self._file.close()
            raise StorageError(f"{self.path} is not a {self.kind} file of mascara-actors "
                               f"(kind {kind!r})")

    @property
    def header(self) -> dict[str, Any]:
        return {k: attr_value(v) for k, v in self._file[L.GROUP_HEADER].attrs.items()}

    @property
    def filelist(self) -> list[str]:
        return [p.decode() for p in self._file["filelist"][()]]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class CalibratedFile(_Reader):
    """A calibrated light-curve file opened for reading (a context manager)."""

    kind = "calibrated"

    @property
    def stars(self) -> np.ndarray:
        return read_field_group(self._file[L.GROUP_STARS])

    def ids(self) -> np.ndarray:
        return self._file[L.GROUP_STARS]["id"][()].astype(np.int64)

    def lightcurve(self, star_id: int) -> np.ndarray:
        """The binned calibrated points of one star, sorted by set index."""
        group = self._file[L.GROUP_LIGHTCURVES]
        key = str(int(star_id))
        if key not in group:
            raise StorageError(f"star {int(star_id)} is not in {self.path}")
        return read_dataset(group, key, group[key].dtype)


class MapsFile(_Reader):
    """A maps file opened for reading (a context manager)."""

    kind = "maps"

    def group(self, name: str) -> dict[str, Any]:
        """Every dataset of a group (``transmission``, ``intrapix``, ``clouds``,
        ``magnitudes``) as arrays, plus its attributes under ``attrs``."""
        g = self._file[name]
        out: dict[str, Any] = {k: g[k][()] for k in g}
        out["attrs"] = {k: attr_value(v) for k, v in g.attrs.items()}
        return out

    @property
    def history(self) -> np.ndarray:
        return self._file["history"][()] if "history" in self._file else np.empty(0)
