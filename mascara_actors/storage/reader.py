"""Reading API for nightly light-curve files.

>>> with NightFile("20240315LPC/lightcurves/fast_20240315LPC.hdf5") as nf:  # doctest: +SKIP
...     ids = nf.ids()
...     lc = nf.lightcurve(ids[0], ["lstseq", "flux0", "jd"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import h5py
import numpy as np

from mascara_actors.errors import StorageError
from mascara_actors.records import field_units
from mascara_actors.storage import layout as L
from mascara_actors.storage._h5 import read_dataset
from mascara_actors.storage._sources import SetSource, attr_value, read_field_group

__all__ = ["NightFile", "SetFile", "unit_string"]


def unit_string(name: str) -> str | None:
    """The unit of field ``name`` in FITS/astropy spelling, or None (counts, flags, deg C)."""
    unit = "d" if name == "jd" else field_units().get(name, "")
    if not unit or unit == "deg C":
        return None
    return unit.replace("ADU", "adu").replace("pixel", "pix")


class NightFile:
    """A nightly light-curve file opened for reading (use it as a context manager).

    Parameters
    ----------
    path : path-like
        ``.../lightcurves/{kind}_{night}{SITE}{CAM}.hdf5``.

    Raises
    ------
    StorageError
        The file is missing, unreadable or not a nightly file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except (OSError, RuntimeError) as exc:
            raise StorageError(f"cannot open nightly file {self.path}: {exc}") from exc
        missing = [g for g in (L.GROUP_HEADER, L.GROUP_STATION, L.GROUP_STARS,
                               L.GROUP_LIGHTCURVES) if g not in self._file]
        if missing:
            self._file.close()
            raise StorageError(f"{self.path} is not a nightly light-curve file: groups "
                               f"{missing} are missing")
        self._stars: np.ndarray | None = None
        self._station: np.ndarray | None = None
        self._lc_dtype: np.dtype | None = None

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file; closing twice is a no-op."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- contents ------------------------------------------------------------------------

    @property
    def header(self) -> dict[str, Any]:
        """The ``header`` attributes (site-obs, cam-obs, night, lat, lon, aper, ...)."""
        return {k: attr_value(v) for k, v in self._file[L.GROUP_HEADER].attrs.items()}

    @property
    def stars(self) -> np.ndarray:
        """One row per star (id, ra, dec, vmag, ..., nobs, lstseqmin, lstseqmax)."""
        if self._stars is None:
            self._stars = read_field_group(self._file[L.GROUP_STARS])
        return self._stars

    @property
    def station(self) -> np.ndarray:
        """One row per exposure (fast) or set (slow), sorted by unique lstseq."""
        if self._station is None:
            self._station = read_field_group(self._file[L.GROUP_STATION])
        return self._station

    @property
    def astrometry(self) -> np.ndarray | None:
        """One row per solved set, or None when no set was solved."""
        if L.GROUP_ASTROMETRY not in self._file:
            return None
        return read_field_group(self._file[L.GROUP_ASTROMETRY])

    def ids(self) -> np.ndarray:
        """HIP numbers of the stars in the file, ascending."""
        stars = self.stars
        return stars["id"].copy() if len(stars) else np.empty(0, dtype=np.int32)

    def fields(self) -> list[str]:
        """Names of the stored light-curve fields (the same for every star)."""
        group = self._file[L.GROUP_LIGHTCURVES]
        for key in group:
            return list(group[key].dtype.names)
        return []

    def lightcurve(self, star_id: int, fields: Sequence[str] | None = None, *,
                   as_table: bool = False) -> Any:
        """One star's light curve, sorted by lstseq, with ``jd`` from the station table.

        Parameters
        ----------
        star_id : int
            HIP number (see :meth:`ids`).
        fields : sequence of str, optional
            Fields to return, in this order; ``jd`` (JD (UTC) at the start of the exposure,
            NaN where the station table has no row) may be among them. Default: every
            stored field, then ``jd``.
        as_table : bool
            Return an :class:`astropy.table.Table` with units instead of a numpy array.

        Raises
        ------
        StorageError
            The star is not in the file, or a field does not exist.
        """
        key = str(int(star_id))
        group = self._file[L.GROUP_LIGHTCURVES]
        if key not in group:
            raise StorageError(f"star {int(star_id)} is not in {self.path}: NightFile.ids() "
                               f"lists the {len(group)} stars it holds")
        if self._lc_dtype is None:
            self._lc_dtype = group[key].dtype
        data = read_dataset(group, key, self._lc_dtype)
        stored = list(data.dtype.names or ())
        wanted = [*stored, "jd"] if fields is None else list(fields)
        unknown = [f for f in wanted if f not in stored and f != "jd"]
        if unknown:
            raise StorageError(f"fields {unknown} are not in {self.path}; stored fields: "
                               f"{stored} (plus 'jd')")
        dtype = [(f, data.dtype[f]) if f in stored else (f, np.dtype("f8")) for f in wanted]
        out = np.empty(len(data), dtype=dtype)
        for f in wanted:
            out[f] = self._jd(data["lstseq"]) if f not in stored else data[f]
        if not as_table:
            return out
        from astropy.table import Table

        table = Table(out)
        for f in wanted:
            unit = unit_string(f)
            if unit:
                table[f].unit = unit
        table.meta.update({"HIP": int(star_id), **{k.upper(): v for k, v in self.header.items()
                                                   if np.ndim(v) == 0}})
        return table

    def records(self, fields: Sequence[str]) -> np.ndarray:
        """Every star's points as one table with the star's ``id`` first (as in a per-set
        file), sorted by star then lstseq; ``fields`` as in :meth:`lightcurve`."""
        curves = [(hip, self.lightcurve(hip, fields)) for hip in self.ids().tolist()]
        if not curves:
            return np.zeros(0, [("id", "i4")])
        out = np.zeros(sum(len(c) for _, c in curves),
                       [("id", "i4"), *[(f, curves[0][1].dtype[f]) for f in fields]])
        out["id"] = np.repeat([h for h, _ in curves], [len(c) for _, c in curves])
        for f in fields:
            out[f] = np.concatenate([c[f] for _, c in curves])
        return out

    def _jd(self, lstseq: np.ndarray) -> np.ndarray:
        station = self.station
        jd = np.full(len(lstseq), np.nan)
        if len(station) == 0 or "jd" not in (station.dtype.names or ()):
            return jd
        pos = np.searchsorted(station["lstseq"], lstseq)
        inside = pos < len(station)
        match = np.zeros(len(lstseq), dtype=bool)
        match[inside] = station["lstseq"][pos[inside]] == lstseq[inside]
        jd[match] = station["jd"][pos[match]]
        return jd


class SetFile:
    """A per-set file (``{night}/tmp/{kind}_{setidx:09d}.hdf5``) opened for reading while the
    night runs (use it as a context manager).

    The file is checked on opening against its night (from the directory it is in) and its
    kind; :class:`~mascara_actors.errors.StorageError` says what is wrong with it.
    """

    def __init__(self, path: str | Path, kind: str = "fast") -> None:
        self.path = Path(path)
        nid = L.NightId.from_dir(self.path.parent.parent)
        try:
            self._source = SetSource.open_checked(self.path, nid, L.check_kind(kind))
        except StorageError as exc:
            raise StorageError(f"{self.path}: {exc}") from exc

    @property
    def setidx(self) -> int:
        """The set index."""
        return self._source.setidx

    def __enter__(self) -> SetFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._source.close()

    def ids(self) -> np.ndarray:
        """Star ids (HIP numbers) in the set, ascending."""
        return self._source.index_ids.copy()

    def counts(self) -> np.ndarray:
        """Points per star, in the order of :meth:`ids`."""
        return self._source.index_count.copy()

    def station(self) -> np.ndarray:
        """The station rows (one per exposure)."""
        return self._source.read_station()

    def stars(self) -> np.ndarray:
        """The star rows (catalogue: ``id``, ``ra``, ``dec``, ``vmag`` ...), by id."""
        return self._source.read_stars()

    def astrometry(self) -> np.ndarray | None:
        """The set's astrometry rows, None when it has none."""
        return self._source.read_astrometry()

    def lightcurves(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The records of the stars ``ids`` (those in the set), with their ``id`` field."""
        return self._source.read_ids(np.asarray(ids, np.int64))
