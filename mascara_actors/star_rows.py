"""The star table of a per-set or nightly file: one row per star seen, with its catalogue
data and the span of its observations."""

from __future__ import annotations

import numpy as np

from mascara_actors.catalogue import Catalogue
from mascara_actors.records import star_dtype

__all__ = ["star_table"]


def star_table(catalogue: Catalogue, records: np.ndarray) -> np.ndarray:
    """Rows of ``star_dtype`` for the stars in ``records`` (catalogue data + counts)."""
    ids, counts = np.unique(records["id"], return_counts=True)
    order = np.argsort(records["id"], kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])[:-1]
    sorted_lstseq = records["lstseq"][order].astype(np.int64)
    sorted_jd = records["jdmid"][order]
    cat = catalogue.by_hip(ids.tolist())
    out = np.zeros(ids.size, star_dtype)
    out["id"] = ids
    out["ra"] = cat["ra_deg"]
    out["dec"] = cat["dec_deg"]
    out["vmag"] = cat["vmag"]
    out["bmag"] = cat["bmag"]
    out["sptype"] = np.char.encode(cat["sptype"].astype(str), "ascii")
    out["blend"] = cat["blend"]
    out["blendvalue"] = cat["blendvalue"]
    out["nobs"] = counts
    out["lstseqmin"] = np.minimum.reduceat(sorted_lstseq, bounds)
    out["lstseqmax"] = np.maximum.reduceat(sorted_lstseq, bounds)
    out["jdstart"] = np.minimum.reduceat(sorted_jd, bounds)
    return out
