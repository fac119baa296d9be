"""Fast aperture photometry: exact circular apertures, robust annulus sky, quality flags.

The public names are re-exported here from one module per job: :mod:`.apertures`
(geometry: exact circle/pixel overlap, annulus pixel sets), :mod:`.sky` (robust sky
estimators, on the sorted rows of :mod:`.sorted_rows`), :mod:`.flags` (the single table of
pflag and aflag bits) and :mod:`.measure` (:func:`measure`, the measurement of one frame).
"""

from mascara_actors.photometry.apertures import (
    AnnulusPixels,
    annulus_pixels,
    box_half_size,
    circle_overlap,
    circle_overlap_last,
)
from mascara_actors.photometry.flags import (
    AFLAG_DEFINITIONS,
    PFLAG_DEFINITIONS,
    AFlag,
    FlagDefinition,
    PFlag,
    decode_flags,
    flag_table,
)
from mascara_actors.photometry.measure import PhotometryResult, measure
from mascara_actors.photometry.sky import (
    ClippedMedianSky,
    MMMSky,
    SkyEstimate,
    SkyEstimator,
    sky_estimator,
)
from mascara_actors.photometry.sorted_rows import SortedRows

__all__ = [
    "AFLAG_DEFINITIONS",
    "PFLAG_DEFINITIONS",
    "AFlag",
    "AnnulusPixels",
    "ClippedMedianSky",
    "FlagDefinition",
    "MMMSky",
    "PFlag",
    "PhotometryResult",
    "SkyEstimate",
    "SkyEstimator",
    "SortedRows",
    "annulus_pixels",
    "box_half_size",
    "circle_overlap",
    "circle_overlap_last",
    "decode_flags",
    "flag_table",
    "measure",
    "sky_estimator",
]
