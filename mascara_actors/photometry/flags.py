"""The single table of quality flag bits: pflag (per star, photometry) and aflag (per set,
astrometry).

The photometry bits 1-32 and the astrometry bits 1-4 are those of the legacy lsreduce
pipeline (reference/legacy-pipeline.md, sections 4.2 and 5), so old and new files read the
same. Bit 64 of pflag and bit 8 of aflag are new. Both flags are stored as uint8.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "AFLAG_DEFINITIONS",
    "PFLAG_DEFINITIONS",
    "AFlag",
    "FlagDefinition",
    "PFlag",
    "decode_flags",
    "flag_table",
]


class PFlag(enum.IntFlag):
    """Photometry flag bits of one star in one image (``pflag``, uint8)."""

    EDGE = 1
    BAD_SKY_PIXEL = 2
    NEGATIVE_SKY = 4
    SATURATED = 8
    NEGATIVE_FLUX = 16
    NEAR_MOON = 32
    NAN_IN_APERTURE = 64


class AFlag(enum.IntFlag):
    """Astrometry flag bits of one set of images (``aflag``, uint8)."""

    BRIGHT_SKY = 1
    VERY_BRIGHT_SKY = 2
    SOLVE_FAILED = 4
    LARGE_RESIDUAL = 8


@dataclass(frozen=True, slots=True)
class FlagDefinition:
    """One flag bit.

    Attributes
    ----------
    bit : int
        The bit value (a power of two).
    name : str
        Short name, as returned by :func:`decode_flags`.
    description : str
        What the bit means and what the pipeline did about it.
    """

    bit: int
    name: str
    description: str


PFLAG_DEFINITIONS: tuple[FlagDefinition, ...] = (
    FlagDefinition(
        PFlag.EDGE, "edge",
        "the star's sky box (2 x ceil(outer sky radius) + 1 pixels wide) leaves the image, "
        "the star is within the edge margin, or its position is not finite: no photometry, "
        "flux, sky and peak are NaN"),
    FlagDefinition(
        PFlag.BAD_SKY_PIXEL, "bad_sky_pixel",
        "a sky annulus pixel is at or above the saturation level; such pixels are left out "
        "of the sky estimate"),
    FlagDefinition(
        PFlag.NEGATIVE_SKY, "negative_sky",
        "the sky level is negative, or the sky estimate failed (fewer good annulus pixels "
        "than the minimum, legacy 20), in which case sky and flux are NaN"),
    FlagDefinition(
        PFlag.SATURATED, "saturated",
        "the peak pixel in the largest aperture is at or above the saturation level (on a "
        "flat-fielded frame, the level divided by the flat at the star: the detector "
        "saturates before the flat)"),
    FlagDefinition(
        PFlag.NEGATIVE_FLUX, "negative_flux",
        "the sky-subtracted flux in at least one aperture is negative"),
    FlagDefinition(
        PFlag.NEAR_MOON, "near_moon",
        "the star is within the Moon radius (legacy 30 px) of the Moon's position on the "
        "image; the photometry is done as usual"),
    FlagDefinition(
        PFlag.NAN_IN_APERTURE, "nan_in_aperture",
        "a NaN pixel overlaps an aperture: the flux of that aperture is NaN (new; NaN pixels "
        "in the sky annulus are simply left out of the sky estimate)"),
)
"""The pflag bits, in bit order."""

AFLAG_DEFINITIONS: tuple[FlagDefinition, ...] = (
    FlagDefinition(
        AFlag.BRIGHT_SKY, "bright_sky",
        "bright sky (95th percentile above 9500 ADU or standard deviation above 2000 ADU) "
        "on the frame used for the astrometry; the set was still solved"),
    FlagDefinition(
        AFlag.VERY_BRIGHT_SKY, "very_bright_sky",
        "very bright sky (median above 20000 ADU): no astrometric solution was attempted, "
        "the previous solution is used"),
    FlagDefinition(
        AFlag.SOLVE_FAILED, "solve_failed",
        "the astrometric solve failed or matched too few stars; the previous solution is "
        "used"),
    FlagDefinition(
        AFlag.LARGE_RESIDUAL, "large_residual",
        "the astrometric residual is above the configured threshold (new)"),
)
"""The aflag bits, in bit order."""


def decode_flags(flags: ArrayLike,
                 definitions: Sequence[FlagDefinition] = PFLAG_DEFINITIONS,
                 ) -> list[str] | list[list[str]]:
    """Names of the bits set in a flag value, or in each value of an array.

    Parameters
    ----------
    flags : int or array_like of int
        Flag value(s), e.g. a ``pflag`` column.
    definitions : sequence of FlagDefinition
        The table to decode with: :data:`PFLAG_DEFINITIONS` (default) or
        :data:`AFLAG_DEFINITIONS`.

    Returns
    -------
    list of str, or list of list of str
        For a scalar, the names of its set bits in bit order (empty when 0); for an array,
        one such list per element (flattened).

    Raises
    ------
    ValueError
        If a value is negative or has a bit that the table does not define.
    """
    values = np.asarray(flags)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"flag values must be integers, got dtype {values.dtype}")
    known = 0
    for d in definitions:
        known |= int(d.bit)
    flat = values.reshape(-1).astype(np.int64)
    unknown = flat[(flat < 0) | ((flat & ~known) != 0)]
    if unknown.size:
        raise ValueError(
            f"flag value {int(unknown[0])} has bits outside the table (known bits sum to "
            f"{known}): decode it with the matching definitions (pflag or aflag)"
        )
    decoded = [[d.name for d in definitions if v & int(d.bit)] for v in flat.tolist()]
    return decoded[0] if values.ndim == 0 else decoded


def flag_table(definitions: Sequence[FlagDefinition] = PFLAG_DEFINITIONS) -> str:
    """The flag bits as a Markdown table (bit, name, meaning), e.g. for the README.

    Parameters
    ----------
    definitions : sequence of FlagDefinition
        :data:`PFLAG_DEFINITIONS` (default) or :data:`AFLAG_DEFINITIONS`.

    Returns
    -------
    str
        The table, one line per bit, ending with a newline.
    """
    lines = ["| bit | name | meaning |", "|---|---|---|"]
    lines += [f"| {int(d.bit)} | `{d.name}` | {d.description} |" for d in definitions]
    return "\n".join(lines) + "\n"
