"""Per-star FITS tables (the seed's ``LCtable``, and ``SaveItAll`` / ``CombinePkl`` without
pickles).

During the night a :class:`StarFileFinaliser` writes the light curve of a star soon after it
left the chip, straight from the per-set files; :meth:`~StarFileFinaliser.finalise_rest`
writes the others at the end of the night (call it before the combine deletes the per-set
files). :func:`export_stars` writes the same tables from a nightly file.

File: ``{kind}_HIP{id}_{night}{SITE}{CAM}.fits``: an empty primary HDU and a binary table
``LIGHTCURVE`` (the stored record fields, sorted by unique lstseq, with TUNITn), both with a
generic header (SITE-OBS, SITE, CAMERA, NIGHT, KIND, the writer's header values) and the
star's keys (HIP, RA, DEC, VMAG, BMAG, SPTYPE, ..., NOBS, LSEQMIN, LSEQMAX).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from mascara_actors import __version__
from mascara_actors.atomic_files import atomic_write_bytes
from mascara_actors.errors import StorageError
from mascara_actors.sidereal import set_index
from mascara_actors.storage import layout as L
from mascara_actors.storage._fits import bintable_fits
from mascara_actors.storage._merge import drop_field, merge_records, merge_rows, merge_star_rows
from mascara_actors.storage._sources import SetSource
from mascara_actors.storage.layout import NightId
from mascara_actors.storage.reader import NightFile, unit_string
from mascara_actors.storage.setfiles import list_set_files
from mascara_actors.storage.state import read_json_state, write_json_state

__all__ = ["StarFileFinaliser", "export_stars", "generic_header", "write_star_fits"]

log = logging.getLogger(__name__)

_STAR_KEYS = {"id": "HIP", "ra": "RA", "dec": "DEC", "vmag": "VMAG", "bmag": "BMAG",
              "sptype": "SPTYPE", "blend": "BLEND", "blendvalue": "BLENDVAL",
              "jdstart": "JDSTART", "nobs": "NOBS", "lstseqmin": "LSEQMIN",
              "lstseqmax": "LSEQMAX"}


def _keyword(name: str) -> str:
    key = name.upper()
    return key if len(key) <= 8 and " " not in key else f"HIERARCH {key}"


def _card_value(value: object) -> object:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("ascii", errors="replace").strip()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # FITS headers hold no NaN: leave the value undefined
    if isinstance(value, list | tuple | np.ndarray):
        return ",".join(str(_card_value(v)) for v in np.asarray(value).ravel().tolist())
    return value


def _state_int(value: object, path: Path) -> int:
    """A number of a JSON state file as an int (StorageError for anything else)."""
    if isinstance(value, int | float | str):
        return int(value)
    raise StorageError(f"state file {path} holds {value!r} where a number belongs; it was "
                       "written atomically, so something else changed it: remove it")


def generic_header(nid: NightId, kind: str, header: Mapping[str, object] | None = None
                   ) -> list[tuple[str, object]]:
    """The generic FITS cards of a star file: identity, then the writer's header values."""
    cards: list[tuple[str, object]] = [
        ("SITE-OBS", nid.site_obs), ("SITE", nid.site), ("CAMERA", nid.camera),
        ("NIGHT", nid.night), ("KIND", kind), ("SOFTWARE", __version__)]
    header = header or {}
    for key in sorted(header):
        if key not in L.NIGHTLY_FIXED_ATTRS:
            cards.append((_keyword(key), header[key]))
    return cards


def write_star_fits(path: str | Path, star_row: np.ndarray | np.void, records: np.ndarray,
                    header: Iterable[tuple[str, object]] | Mapping[str, object] = (), *,
                    durable: bool = True) -> Path:
    """Write one star's light curve as a FITS binary table, atomically (``LCtable``).

    Parameters
    ----------
    path : path-like
        Output file; its directory must exist.
    star_row : structured scalar or 1-row array
        The star's header record (``star_dtype`` or any dtype with ``id``); ``nobs``,
        ``lstseqmin`` and ``lstseqmax`` are recomputed from ``records``.
    records : structured array
        The star's records (an ``id`` field is dropped); sorted by lstseq here, repeated
        lstseq keep the first.
    header : mapping or iterable of (keyword, value)
        Generic cards (see :func:`generic_header`).
    durable : bool
        fsync the file (see :func:`~mascara_actors.atomic_files.atomic_write_bytes`);
        batch writers pass False and sync once.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    row = np.asarray(star_row).reshape(-1)
    names = row.dtype.names
    if len(row) != 1 or names is None or "id" not in names:
        raise StorageError(f"star_row for {path.name} must be one structured row with an 'id'")
    row = row.copy()
    record_names = records.dtype.names
    if record_names is None or "lstseq" not in record_names:
        raise StorageError(f"records for {path.name} must be structured with 'lstseq'")
    recs = drop_field(records, "id") if "id" in record_names else records
    recs = merge_rows([recs], "lstseq")
    if len(recs):
        for name, value in (("nobs", len(recs)), ("lstseqmin", recs["lstseq"][0]),
                            ("lstseqmax", recs["lstseq"][-1])):
            if name in names:
                row[name] = value
    cards = list(header.items()) if isinstance(header, Mapping) else list(header)
    cards += [(_STAR_KEYS.get(n, _keyword(n)), _card_value(row[n][0])) for n in names
              if row.dtype[n].shape == ()]
    units = {n: u for n in recs.dtype.names or () if (u := unit_string(n))}
    data = bintable_fits(recs, [(k, _card_value(v)) for k, v in cards], extname="LIGHTCURVE",
                         units=units)
    return atomic_write_bytes(path, data, durable=durable)


class StarFileFinaliser:
    """Writes each star's FITS file once it has left the chip (``SaveItAll``).

    A star is finalised when it was not seen in the last ``gap_sets`` sets before the
    current one. What was finalised is remembered in ``{outdir}/finalised_{kind}.json``, so
    a restarted process does not redo it; a star seen again later is rewritten whole.

    Parameters
    ----------
    night_dir : path-like
        The camera-night directory (per-set files in ``tmp/``).
    kind : {"fast", "slow"}
    outdir : path-like, optional
        Where the FITS files go; default ``{night_dir}/starfiles``.
    gap_sets : int
        Sets without the star after which it counts as gone (default 2).
    chunk_records : int
        Records held in memory at once when many stars are finalised together.
    """

    def __init__(self, night_dir: str | Path, kind: str = "fast", *,
                 outdir: str | Path | None = None, gap_sets: int = 2,
                 chunk_records: int = 1_000_000) -> None:
        self.night_dir = Path(night_dir)
        self.nid = NightId.from_dir(self.night_dir)
        self.kind = L.check_kind(kind)
        if int(gap_sets) != gap_sets or gap_sets < 0:
            raise StorageError(f"gap_sets={gap_sets!r} must be an integer >= 0")
        self.gap_sets = int(gap_sets)
        self.chunk_records = int(chunk_records)
        self.outdir = Path(outdir) if outdir is not None else L.starfile_dir(self.night_dir)
        self._state_path = self.outdir / f"finalised_{kind}.json"
        state = read_json_state(self._state_path)
        self._done: dict[int, int] = {int(k): _state_int(v, self._state_path)
                                      for k, v in state.items()}
        self._sources: dict[Path, SetSource] = {}
        self._star_rows: dict[Path, np.ndarray] = {}
        self._bad: set[Path] = set()

    @property
    def finalised(self) -> frozenset[int]:
        """HIP numbers whose FITS file is written."""
        return frozenset(self._done)

    def _refresh(self) -> list[SetSource]:
        present = list_set_files(self.night_dir, self.kind)
        for path in list(self._sources):
            if path not in present.values():
                del self._sources[path]
                self._star_rows.pop(path, None)
        for path in present.values():
            if path not in self._sources and path not in self._bad:
                try:
                    self._sources[path] = SetSource.open_checked(path, self.nid, self.kind)
                except StorageError as exc:
                    self._bad.add(path)  # warn once, not at every update
                    log.warning("left alone %s: %s", path, exc)
        sources = sorted(self._sources.values(), key=lambda s: s.setidx)
        if sources:
            ref = sources[0].record_dtype
            sources = [s for s in sources if s.record_dtype == ref]
        return sources

    def _last_seen(self, sources: list[SetSource]) -> tuple[np.ndarray, np.ndarray]:
        if not sources:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        ids = np.concatenate([s.index_ids for s in sources])
        sets = np.concatenate([np.full(len(s.index_ids), s.setidx) for s in sources])
        uniq, inverse = np.unique(ids, return_inverse=True)
        last = np.full(len(uniq), -1, dtype=np.int64)
        np.maximum.at(last, inverse, sets)
        return uniq, last

    def _pending(self, ids: np.ndarray, last: np.ndarray) -> np.ndarray:
        done = np.array([self._done.get(i, -1) for i in ids.tolist()], dtype=np.int64)
        return done < last

    def update(self, current_lstseq: int) -> list[Path]:
        """Write the stars that left the chip, as of exposure ``current_lstseq``.

        Returns
        -------
        list of pathlib.Path
            The FITS files written by this call.
        """
        sources = self._refresh()
        ids, last = self._last_seen(sources)
        current = int(set_index(current_lstseq))
        due = (current - last > self.gap_sets) & self._pending(ids, last)
        return self._finalise(sources, ids[due], last[due])

    def finalise_rest(self) -> list[Path]:
        """Write every star not finalised yet (end of night)."""
        sources = self._refresh()
        ids, last = self._last_seen(sources)
        due = self._pending(ids, last)
        return self._finalise(sources, ids[due], last[due])

    def _finalise(self, sources: list[SetSource], ids: np.ndarray, last: np.ndarray
                  ) -> list[Path]:
        if len(ids) == 0:
            return []
        self.outdir.mkdir(parents=True, exist_ok=True)
        header = generic_header(self.nid, self.kind, sources[0].header)
        stars = merge_star_rows([self._stars_of(s) for s in sources])
        counts = np.zeros(len(ids), dtype=np.int64)
        for s in sources:
            pos = np.searchsorted(ids, s.index_ids)
            hit = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == s.index_ids)
            np.add.at(counts, pos[hit], s.index_count[hit])
        written: list[Path] = []
        try:
            start = 0
            while start < len(ids):
                stop = start + max(1, int(np.searchsorted(np.cumsum(counts[start:]),
                                                          self.chunk_records, side="right")))
                chunk = ids[start:stop]
                merged, _ = merge_records([s.read_ids(chunk) for s in sources])
                bounds = np.searchsorted(merged["id"], chunk, side="left")
                ends = np.searchsorted(merged["id"], chunk, side="right")
                rows = stars[np.searchsorted(stars["id"], chunk)]
                for k, star_id in enumerate(chunk.tolist()):
                    path = self.outdir / L.star_file_name(self.kind, star_id, self.nid)
                    written.append(write_star_fits(path, rows[k], merged[bounds[k]:ends[k]],
                                                   header, durable=False))
                    self._done[star_id] = int(last[start + k])
                start = stop
        finally:
            for s in sources:
                s.close()
            if written:
                # one sync for the batch, before the state file says they are done
                os.sync()
                write_json_state(self._state_path, {str(k): v for k, v in
                                                    sorted(self._done.items())})
        log.info("%s: wrote %d star files (%s)", self.night_dir.name, len(written), self.kind)
        return written

    def _stars_of(self, source: SetSource) -> np.ndarray:
        if source.path not in self._star_rows:
            self._star_rows[source.path] = source.read_stars()
        return self._star_rows[source.path]


def export_stars(nightly_file: str | Path, ids: Iterable[int] | None, outdir: str | Path
                 ) -> list[Path]:
    """Write the FITS files of ``ids`` (or of every star) from a nightly file.

    Parameters
    ----------
    nightly_file : path-like
        ``.../lightcurves/{kind}_{night}{SITE}{CAM}.hdf5``.
    ids : iterable of int, or None
        HIP numbers; None exports every star of the file.
    outdir : path-like
        Output directory (created if missing).

    Raises
    ------
    StorageError
        Some ids are not in the file (nothing is written then).
    """
    outdir = Path(outdir)
    with NightFile(nightly_file) as nf:
        head = nf.header
        try:
            nid = NightId(str(head["night"]), str(head["site"]), str(head["camera"]))
            kind = L.check_kind(str(head["kind"]))
        except KeyError as exc:
            raise StorageError(f"{nightly_file} has no {exc} header attribute: not a "
                               "nightly file of this package") from None
        stars = nf.stars
        wanted = stars["id"] if ids is None else np.unique(np.asarray(list(ids), dtype=np.int64))
        unknown = np.setdiff1d(wanted, stars["id"])
        if len(unknown):
            raise StorageError(f"stars {unknown[:20].tolist()} are not in {nightly_file}; "
                               "NightFile(path).ids() lists the stars it holds")
        outdir.mkdir(parents=True, exist_ok=True)
        cards = generic_header(nid, kind, head)
        fields = nf.fields()
        written = []
        for star_id in np.asarray(wanted).tolist():
            row = stars[np.searchsorted(stars["id"], star_id)]
            recs = nf.lightcurve(star_id, fields)
            path = outdir / L.star_file_name(kind, star_id, nid)
            written.append(write_star_fits(path, row, recs, cards, durable=False))
    os.sync()
    return written
