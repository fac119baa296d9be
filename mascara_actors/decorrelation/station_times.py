"""The baseline's exposures: when each lstseq was taken, for the bins and the magnitudes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mascara_actors.sidereal import slot_length_solar_s

__all__ = ["StationTimes"]


@dataclass(frozen=True)
class StationTimes:
    """One row per exposure of the baseline, sorted by lstseq."""

    lstseq: np.ndarray
    """Exposure slots (int64, ascending)."""
    jdmid: np.ndarray
    """JD (UTC) at mid-exposure."""
    lst: np.ndarray
    """LST at the start of the exposure, hours (the ``lst`` of the station table)."""
    exptime: np.ndarray
    """Exposure time, seconds."""

    @classmethod
    def from_table(cls, station: np.ndarray) -> StationTimes:
        """From a station table: ``exptime`` defaults to one slot and ``jdmid`` to
        ``jd + exptime / 2`` when a table has no such field."""
        names = station.dtype.names or ()
        exptime = (station["exptime"].astype(float) if "exptime" in names
                   else np.full(len(station), slot_length_solar_s()))
        if "jdmid" in names:
            jdmid = station["jdmid"].astype(float)
        else:
            jdmid = station["jd"].astype(float) + 0.5 * exptime / 86400.0
        return cls(station["lstseq"].astype(np.int64), jdmid, station["lst"].astype(float),
                   exptime)

    def rows(self, lstseq: np.ndarray) -> np.ndarray:
        """Row of each exposure ``lstseq`` (the nearest row for an lstseq not in the table)."""
        pos = np.searchsorted(self.lstseq, np.asarray(lstseq, np.int64))
        out: np.ndarray = np.clip(pos, 0, len(self.lstseq) - 1)
        return out
