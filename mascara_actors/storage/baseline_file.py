"""A baseline (or a single nightly file) opened for the calibration: checked on opening,
with the list of its source files and the records of many stars read at once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mascara_actors.errors import StorageError
from mascara_actors.storage import layout as L
from mascara_actors.storage._h5 import read_dataset
from mascara_actors.storage.nightly_info import inspect_nightly
from mascara_actors.storage.reader import NightFile

__all__ = ["BaselineFile"]


class BaselineFile(NightFile):
    """A baseline (or a single nightly file) opened for reading; a context manager.

    Raises
    ------
    StorageError
        Naming the file: missing, not HDF5, foreign, an older layout, damaged, no star.
    """

    def __init__(self, path: str | Path) -> None:
        self.info = inspect_nightly(path)
        super().__init__(path)
        try:
            stars, _ = self.stars, self.station
            self.filelist: list[str] = [
                p.decode() if isinstance(p, bytes) else str(p)
                for p in (self._file["filelist"][()] if "filelist" in self._file else [])]
        except (OSError, RuntimeError, KeyError) as exc:
            self.close()
            raise StorageError(f"{self.path} cannot be read ({exc}): the file is damaged") \
                from exc
        if len(stars) == 0 or "id" not in (stars.dtype.names or ()):
            self.close()
            raise StorageError(f"{self.path} holds no star: nothing to calibrate")

    @property
    def nights(self) -> tuple[str, ...]:
        """The nights it holds (YYYYMMDD)."""
        return self.info.nights

    @property
    def camera_id(self) -> str:
        """Site code + camera letter, e.g. ``LPC``."""
        return self.info.camera_id

    def lightcurve_dtype(self) -> np.dtype:
        """dtype of the stored light curves."""
        if self.info.lc_dtype is None:
            raise StorageError(f"{self.path} holds no light curve")
        return self.info.lc_dtype

    def read(self, ids: Sequence[int] | np.ndarray, fields: Sequence[str]
             ) -> tuple[np.ndarray, np.ndarray]:
        """The records of stars ``ids`` (only ``fields``), concatenated, and their counts.

        Raises
        ------
        StorageError
            A field is not stored, or a light curve cannot be read.
        """
        stored = self.lightcurve_dtype()
        names = stored.names or ()
        unknown = [n for n in fields if n not in names]
        if unknown:
            raise StorageError(f"{self.path}: fields {unknown} are not stored; stored fields: "
                               f"{list(names)}")
        dtype = np.dtype([(n, stored[n]) for n in fields])
        lcs = self._file[L.GROUP_LIGHTCURVES]
        parts, counts = [], []
        for i in np.asarray(ids, np.int64).tolist():
            key = str(i)
            if key not in lcs:
                counts.append(0)
                continue
            try:
                data = read_dataset(lcs, key, dtype)
            except (OSError, RuntimeError) as exc:
                raise StorageError(f"{self.path}: cannot read the light curve of star {i} "
                                   f"({exc}); the file is damaged") from exc
            parts.append(data)
            counts.append(len(data))
        out = np.concatenate(parts) if parts else np.empty(0, dtype)
        return out, np.asarray(counts, np.int64)
