"""Photometric transforms of the catalogue: Johnson V from Hp, a spectral class from B-V.

- :func:`johnson_v_from_hp`: Bessell (2000, PASP 112, 961), Table 2;
- :func:`spectral_class_from_bv`: Pecaut & Mamajek (2013, ApJS 208, 9), Table 5.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "VFLAG_COLOUR_CLAMPED",
    "VFLAG_NO_COLOUR",
    "johnson_v_from_hp",
    "spectral_class_from_bv",
]

#: ``vflag`` bit: no B-V in hip2 (B-V, its error and V-I all 0.000); V = Hp, B and sptype
#: unknown.
VFLAG_NO_COLOUR = 1
#: ``vflag`` bit: B-V lies outside Bessell's table (-0.22 .. 1.66); V - Hp is held at the
#: value of the nearest end of the table.
VFLAG_COLOUR_CLAMPED = 2

# Bessell (2000, PASP 112, 961), Table 2 "B-G main-sequence stars and K-M giants": for each
# Tycho colour BT-VT (-0.25 .. 2.00 in steps of 0.05) the columns del(B-V) = (B-V) - (BT-VT)
# and V - Hp, in mmag. Johnson B-V of a row is BT-VT + del(B-V), which rises monotonically,
# so the table gives V - Hp as a function of Johnson B-V.
_BESSELL_BTVT0, _BESSELL_STEP = -0.25, 0.05
_BESSELL_DEL_BV_MMAG = (
    31, 21, 11, 5, 2, -5, -10, -17, -20, -21, -23, -25, -25, -26, -30, -35, -45, -51, -60,
    -68, -76, -85, -94, -104, -113, -122, -131, -142, -154, -166, -178, -189, -199, -210,
    -222, -234, -245, -256, -266, -277, -288, -299, -309, -320, -331, -342,
)  # fmt: skip
_BESSELL_V_HP_MMAG = (
    66, 51, 36, 21, 6, -11, -25, -38, -48, -58, -69, -79, -87, -94, -101, -108, -114, -120,
    -127, -131, -134, -137, -142, -147, -151, -155, -158, -157, -160, -162, -164, -166, -166,
    -165, -164, -161, -157, -153, -148, -143, -137, -131, -125, -119, -112, -106,
)  # fmt: skip
_BESSELL_BV = (
    _BESSELL_BTVT0
    + _BESSELL_STEP * np.arange(len(_BESSELL_DEL_BV_MMAG))
    + np.array(_BESSELL_DEL_BV_MMAG) / 1000.0
)
_BESSELL_V_HP = np.array(_BESSELL_V_HP_MMAG) / 1000.0

# Pecaut & Mamajek (2013, ApJS 208, 9), Table 5 (dwarf sequence, version 2024.05.15): a class
# starts halfway between the B-V of the last subtype of the class before and of its X0V star,
# e.g. A starts at (B-V(B9.5V) + B-V(A0V)) / 2 = (-0.050 + 0.000) / 2.
_SPTYPE_CLASSES = np.array(["O", "B", "A", "F", "G", "K", "M"])
_SPTYPE_EDGES_BV = np.array(
    [
        (-0.307 + -0.301) / 2,  # O9.5V | B0V
        (-0.050 + 0.000) / 2,  # B9.5V | A0V
        (0.270 + 0.295) / 2,  # A9V | F0V
        (0.580 + 0.595) / 2,  # F9.5V | G0V
        (0.775 + 0.816) / 2,  # G9V | K0V
        (1.400 + 1.420) / 2,  # K9V | M0V
    ]
)
_SPTYPE_UNKNOWN = "?"


def johnson_v_from_hp(
    hpmag: np.ndarray | float, bv: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Johnson V from the Hipparcos magnitude Hp and the Johnson colour B-V.

    Uses Bessell (2000, PASP 112, 961), Table 2, valid for B-G main-sequence stars and K-M
    giants: V - Hp as a function of B-V, linearly interpolated between the table rows (rows
    are 0.05 mag apart in BT-VT; the interpolation error is below 0.002 mag). For bright
    constant stars with -0.22 <= B-V <= 1.66 the result agrees with the Bright Star
    Catalogue's Johnson V to 0.01-0.05 mag (see the tests). Redder or bluer stars get the
    value at the nearest end of the table and
    :data:`VFLAG_COLOUR_CLAMPED`; stars without a colour (NaN) get V = Hp and
    :data:`VFLAG_NO_COLOUR`.

    Parameters
    ----------
    hpmag
        Hipparcos Hp magnitude, mag.
    bv
        Johnson B-V, mag; NaN where unknown.

    Returns
    -------
    vmag : ndarray of float64
        Johnson V, mag.
    vflag : ndarray of uint8
        Bit set of ``VFLAG_*`` values, 0 for a clean transformation.
    """
    hp = np.asarray(hpmag, dtype=np.float64)
    colour = np.asarray(bv, dtype=np.float64)
    hp, colour = np.broadcast_arrays(hp, colour)
    known = np.isfinite(colour)
    v_minus_hp = np.interp(np.where(known, colour, 0.0), _BESSELL_BV, _BESSELL_V_HP)
    vmag = np.where(known, hp + v_minus_hp, hp)
    vflag = np.zeros(hp.shape, dtype=np.uint8)
    vflag[~known] |= VFLAG_NO_COLOUR
    outside = known & ((colour < _BESSELL_BV[0]) | (colour > _BESSELL_BV[-1]))
    vflag[outside] |= VFLAG_COLOUR_CLAMPED
    return vmag, vflag


def spectral_class_from_bv(bv: np.ndarray | float) -> np.ndarray:
    """Estimate the spectral class (one letter, O to M) from B-V.

    The class is the one whose main-sequence colour range (Pecaut & Mamajek 2013, ApJS 208,
    9, Table 5) holds B-V; class edges sit halfway between the last subtype of a class and
    the X0V star of the next: O | -0.304 | B | -0.025 | A | 0.2825 | F | 0.5875 | G | 0.7955
    | K | 1.41 | M. Interstellar reddening and luminosity class are ignored, so reddened stars
    and supergiants come out too late (Polaris, F7Ib, B-V 0.64, is called G). A NaN colour
    gives ``"?"``.

    Parameters
    ----------
    bv
        Johnson B-V, mag.

    Returns
    -------
    ndarray of str (``<U1``)
        One of ``O B A F G K M ?`` per star.
    """
    colour = np.asarray(bv, dtype=np.float64)
    cls = _SPTYPE_CLASSES[np.searchsorted(_SPTYPE_EDGES_BV, np.nan_to_num(colour), side="right")]
    return np.where(np.isfinite(colour), cls, _SPTYPE_UNKNOWN).astype("<U1")
