"""Files of the coarse decorrelation: calibrated light curves and fitted maps.

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
(The JSON report is :mod:`mascara_actors.decorrelation.report`.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import h5py
import numpy as np

from mascara_actors import __version__
from mascara_actors.errors import StorageError
from mascara_actors.sidereal import SET_SIZE
from mascara_actors.storage import layout as L
from mascara_actors.storage._h5 import create_dataset, read_dataset
from mascara_actors.storage._sources import attr_value, read_field_group
from mascara_actors.storage.atomic import atomic_hdf5

__all__ = [
    "STAR_FIT_DTYPE",
    "CalibratedFile",
    "CellGrid",
    "FittedMaps",
    "MapsFile",
    "NodeGrid",
    "PatchClouds",
    "write_calibrated",
    "write_maps",
]

STAR_FIT_DTYPE = np.dtype([("id", "i8"), ("mag", "f8"), ("sigma", "f8"), ("npoints", "i8"),
                           ("patch", "i8")])
"""The fit of one star: HIP number, fitted magnitude, extra scatter (mag), good points and
its HEALPix nside-8 sky patch."""


class NodeGrid(Protocol):
    """The transmission grid as the maps file needs it."""

    @property
    def nha(self) -> int: ...
    @property
    def ndec(self) -> int: ...
    @property
    def ha_nodes(self) -> np.ndarray: ...
    @property
    def dec_nodes(self) -> np.ndarray: ...
    def attrs(self) -> dict[str, float | int]: ...


class CellGrid(Protocol):
    """The intrapixel grid as the maps file needs it."""

    @property
    def nha(self) -> int: ...
    @property
    def ndec(self) -> int: ...
    @property
    def ha_edges(self) -> np.ndarray: ...
    @property
    def dec_edges(self) -> np.ndarray: ...
    def attrs(self) -> dict[str, float | int]: ...


@dataclass(frozen=True)
class PatchClouds:
    """The fitted clouds of one sky patch, per exposure where its stars were measured."""

    patch: int
    lstseq: np.ndarray
    values: np.ndarray
    """Clouds, mag."""
    sigma: np.ndarray
    """Extra sigma of the cloud cell, mag."""
    nstars: np.ndarray
    """Stars measured."""


@dataclass(frozen=True)
class FittedMaps:
    """What a calibration fitted, for :func:`write_maps`."""

    grid: NodeGrid
    T: np.ndarray
    """Transmission at the nodes (flat), mag."""
    t_weight: np.ndarray
    t_sampled: np.ndarray
    ipx_grid: CellGrid
    ipx: np.ndarray
    """Intrapixel amplitudes (cells, 4), mag."""
    ipx_weight: np.ndarray
    ipx_sampled: np.ndarray
    clouds: Sequence[PatchClouds]
    star_fit: np.ndarray
    """Rows of :data:`STAR_FIT_DTYPE`."""


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
    skip = ("baseline", "kind", "format_version", "software_version")
    return {key: value for key, value in header.items() if key not in skip}


def _write_table(parent: h5py.Group, name: str, *tables: np.ndarray) -> None:
    """A group with one dataset per field of ``tables`` (rows aligned)."""
    group = parent.create_group(name, track_order=True)
    for rows in tables:
        for field in rows.dtype.names or ():
            create_dataset(group, field, rows[field])


def _filelist(f: h5py.File, filelist: Sequence[str]) -> None:
    create_dataset(f, "filelist", np.array([p.encode() for p in filelist], dtype="S1024"))


def write_calibrated(path: str | Path, *, provenance: dict[str, Any], header: dict[str, Any],
                     filelist: Sequence[str], stars: np.ndarray, star_fit: np.ndarray,
                     curves: Sequence[tuple[int, np.ndarray]],
                     flags: dict[int, tuple[str, str]]) -> Path:
    """Write the calibrated light curves (see the module docstring).

    ``stars`` are the baseline's star rows (sorted by id), ``star_fit`` the fitted stars
    (:data:`STAR_FIT_DTYPE`), ``curves`` (id, binned records) sorted by id.
    """
    path = Path(path)
    ids = np.array([i for i, _ in curves], np.int64)
    rows = stars[np.searchsorted(stars["id"], ids)]
    order = np.argsort(star_fit["id"])
    fit = star_fit[order[np.searchsorted(star_fit["id"][order], ids)]]
    extra = np.zeros(len(ids), [("mag", "f4"), ("sigma", "f4"), ("npoints", "u4"),
                                ("nbins", "u4")])
    for name in ("mag", "sigma", "npoints"):
        extra[name] = fit[name]
    extra["nbins"] = [len(c) for _, c in curves]
    attrs = {**_copy_header(header), **provenance, "kind": "calibrated",
             "format_version": L.FORMAT_VERSION, "software_version": __version__,
             "set_size": SET_SIZE,
             "cflag_bits": json.dumps({str(k): list(v) for k, v in flags.items()})}
    with atomic_hdf5(path) as ah:
        f = ah.file
        _attrs(f.create_group(L.GROUP_HEADER, track_order=True), attrs)
        _filelist(f, filelist)
        _write_table(f, L.GROUP_STARS, rows, extra)
        lcs = f.create_group(L.GROUP_LIGHTCURVES, track_order=True)
        for i, records in curves:
            create_dataset(lcs, str(int(i)), records)
            ah.check()
    return path


def _cloud_images(clouds: Sequence[PatchClouds], lstseq: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Patches and (exposure, patch) images of the clouds, their sigma and star counts."""
    patches = np.array(sorted(c.patch for c in clouds), np.int64)
    shape = (len(lstseq), len(patches))
    values = np.full(shape, np.nan, np.float32)
    sigma = np.full(shape, np.nan, np.float32)
    nstars = np.zeros(shape, np.uint16)
    for c in clouds:
        col = int(np.searchsorted(patches, c.patch))
        row = np.searchsorted(lstseq, c.lstseq)
        values[row, col], sigma[row, col], nstars[row, col] = c.values, c.sigma, c.nstars
    return patches, values, sigma, nstars


def _magnitudes(star_fit: np.ndarray, stars: np.ndarray) -> np.ndarray:
    mags = np.zeros(len(star_fit), [("id", "i4"), ("vmag", "f4"), ("mag", "f4"),
                                    ("sigma", "f4"), ("npoints", "u4"), ("patch", "i4")])
    fit = star_fit[np.argsort(star_fit["id"])]
    for name in ("id", "mag", "sigma", "npoints", "patch"):
        mags[name] = fit[name]
    mags["vmag"] = stars["vmag"][np.searchsorted(stars["id"], mags["id"])]
    return mags


def _history(history: list[dict[str, float]]) -> np.ndarray:
    hist = np.zeros(len(history), [(k, "f8") for k in (history[0] if history else {})])
    for n, row in enumerate(history):
        for k, v in row.items():
            hist[n][k] = v
    return hist


def write_maps(path: str | Path, *, provenance: dict[str, Any], header: dict[str, Any],
               filelist: Sequence[str], settings: dict[str, Any],
               history: list[dict[str, float]], maps: FittedMaps, station_lstseq: np.ndarray,
               stars: np.ndarray) -> Path:
    """Write the fitted maps (see the module docstring); the clouds are given on every
    exposure ``station_lstseq`` of the baseline."""
    path = Path(path)
    grid, ipx_grid = maps.grid, maps.ipx_grid
    values = np.where(maps.t_sampled, maps.T, np.nan).reshape(grid.ndec, grid.nha)
    amp = np.where(maps.ipx_sampled[:, None], maps.ipx, np.nan).reshape(
        ipx_grid.ndec, ipx_grid.nha, 4)
    lstseq = np.asarray(station_lstseq, np.int64)
    patches, cvals, csig, cnst = _cloud_images(maps.clouds, lstseq)
    hist = _history(history)
    attrs = {**{k: v for k, v in _copy_header(header).items()
                if k in ("site-obs", "cam-obs", "site", "camera", "lat", "lon", "height")},
             **provenance, "kind": "maps", "model": MODEL,
             "format_version": L.FORMAT_VERSION, "software_version": __version__,
             **{f"setting_{k}": (v if v is not None else "default")
                for k, v in settings.items()}}
    with atomic_hdf5(path) as ah:
        f = ah.file
        _attrs(f.create_group(L.GROUP_HEADER, track_order=True), attrs)
        _filelist(f, filelist)
        if len(hist):
            create_dataset(f, "history", hist)
        g = f.create_group("transmission", track_order=True)
        _attrs(g, grid.attrs())
        create_dataset(g, "ha", grid.ha_nodes)
        create_dataset(g, "dec", grid.dec_nodes)
        create_dataset(g, "values", values)
        create_dataset(g, "weight", np.asarray(maps.t_weight).reshape(grid.ndec, grid.nha))
        g = f.create_group("intrapix", track_order=True)
        _attrs(g, ipx_grid.attrs())
        create_dataset(g, "ha_edges", ipx_grid.ha_edges)
        create_dataset(g, "dec_edges", ipx_grid.dec_edges)
        create_dataset(g, "amplitudes", amp)
        create_dataset(g, "weight", np.asarray(maps.ipx_weight).reshape(ipx_grid.ndec,
                                                                        ipx_grid.nha))
        g = f.create_group("clouds", track_order=True)
        _attrs(g, {"nside": 8, "order": "ring"})
        create_dataset(g, "patch", patches)
        create_dataset(g, "lstseq", lstseq)
        chunks = (min(4096, max(len(lstseq), 1)), max(len(patches), 1))
        for name, arr in (("values", cvals), ("sigma", csig), ("nstars", cnst)):
            create_dataset(g, name, arr, chunks=chunks if arr.size else None,
                           compression="gzip" if arr.size else None, level=4, shuffle=True)
        _write_table(f, "magnitudes", _magnitudes(maps.star_fit, stars))
    return path


class _Reader:
    """A file of one ``kind`` opened for reading (a context manager)."""

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
        """The ``header`` attributes."""
        return {k: attr_value(v) for k, v in self._file[L.GROUP_HEADER].attrs.items()}

    @property
    def filelist(self) -> list[str]:
        """The nightly files of the baseline."""
        return [p.decode() for p in self._file["filelist"][()]]

    def close(self) -> None:
        """Close the file; closing twice is a no-op."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class CalibratedFile(_Reader):
    """A calibrated light-curve file opened for reading (a context manager)."""

    kind = "calibrated"

    @property
    def stars(self) -> np.ndarray:
        """The calibrated stars (baseline rows plus ``mag``, ``sigma``, ``npoints``,
        ``nbins``)."""
        return read_field_group(self._file[L.GROUP_STARS])

    def ids(self) -> np.ndarray:
        """HIP numbers of the calibrated stars, ascending."""
        out: np.ndarray = self._file[L.GROUP_STARS]["id"][()].astype(np.int64)
        return out

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
        """One row per iteration of the fit."""
        if "history" not in self._file:
            return np.empty(0)
        out: np.ndarray = self._file["history"][()]
        return out
