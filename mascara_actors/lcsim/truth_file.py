"""The truth file of a simulation, ``OUT/truth_{SITE}{CAM}.fits`` (FITS, lossless).

``PRIMARY``
    header keys: CAMERA, SENSOR, SEED, NNIGHTS, OFFSIG, and every model number (``VIGNET``,
    ``VIGCX``, ``VIGCY``, ``EXTINCT``, ``IPXC0..3``, ``IPXFALL``, ``IPXAP0``, ``IPXAP1``,
    ``FLUX84``, ``AP1GAIN``, ``SKYE``, ``RDNOISE``, ``SCINT``, ``GAIN``, ``PEAKFRAC``,
    ``SATURATE``, ``NX``, ``NY``); :func:`read_truth` rebuilds the models from them.
``STARS``
    one row per simulated star: ``id`` (HIP), ``ra``, ``dec`` (catalogue, deg), ``vmag``,
    ``patch`` (HEALPix nside 8, ring order), ``offset`` (mag), ``var_amp`` (mag, 0 when
    constant), ``var_period`` (d), ``var_phase`` (rad), ``transit`` (1 when it has a
    transit), and per night (vectors of length NNIGHTS) ``npoints`` (unflagged points) and
    ``noise_var0``, ``noise_var1``: the mean injected noise variance of an unflagged point
    in aperture 0 and 1, mag^2 (photon + sky + read + scintillation), so the noise floor
    of a bin of n points is ``sqrt(noise_var / n)``.
``TRANSITS``
    ``id``, ``period`` (d), ``epoch`` (JD UTC of mid-transit), ``depth`` (fraction of the
    flux), ``duration`` (h).
``NOISE``
    per star and set of 50: ``id``, ``setidx``, ``n`` (unflagged points), ``var0``,
    ``var1`` (the sum of their injected noise variances in aperture 0 and 1, mag^2): the
    noise floor of the set's mean is ``sqrt(var / n**2)``.
``NIGHTS``
    ``night`` (YYYYMMDD), ``weather`` (clear, cloudy or overcast), ``lstseq0`` and ``nexp``
    (the simulated slots), ``file`` (the nightly file, relative to OUT).
``PATCHES``
    ``patch``, ``ra``, ``dec`` (centre, deg) of the patches of the simulated stars.
``CLOUDS_{night}``
    image (nexp, npatch) float32: the clouds in mag of every patch (columns in PATCHES
    order) on every simulated slot (row k is lstseq ``lstseq0 + k``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from mascara_actors.atomic_files import atomic_write_bytes
from mascara_actors.errors import StorageError
from mascara_actors.lcsim.clouds import SkyPatches
from mascara_actors.lcsim.night import NOISE_DTYPE
from mascara_actors.lcsim.noise import NoiseModel
from mascara_actors.lcsim.stars import SimulatedStars
from mascara_actors.lcsim.systematics import HeaderCard, TruthModel

__all__ = ["NightTruth", "Truth", "read_truth", "truth_file_path", "write_truth"]

_NIGHTS_DTYPE = np.dtype([("night", "U8"), ("weather", "U8"), ("lstseq0", "i8"),
                          ("nexp", "i4"), ("file", "U80")])


def truth_file_path(outdir: str | Path, camera_id: str) -> Path:
    """``OUT/truth_{SITE}{CAM}.fits``."""
    return Path(outdir) / f"truth_{camera_id}.fits"


@dataclass(frozen=True)
class NightTruth:
    """What one simulated night adds to the truth file."""

    night: str
    """YYYYMMDD."""
    weather: str
    lstseq0: int
    nexp: int
    file: str
    """The nightly file, relative to OUT."""
    clouds: np.ndarray
    """(nexp, npatch) clouds, mag."""
    npoints: np.ndarray
    """Unflagged points per star."""
    noise_var: np.ndarray
    """(2, stars): mean injected noise variance of an unflagged point per aperture, mag^2."""
    noise_sets: np.ndarray
    """Rows of ``NOISE_DTYPE``."""


def _primary(header: Sequence[HeaderCard]) -> fits.PrimaryHDU:
    primary = fits.PrimaryHDU()
    for key, value, comment in header:
        primary.header[key] = (value, comment)
    return primary


def _stars_hdu(stars: SimulatedStars, nights: Sequence[NightTruth]) -> fits.BinTableHDU:
    cat, nn = stars.cat, len(nights)
    npoints = np.stack([n.npoints for n in nights], axis=1).astype(np.int32)
    noise_var = np.stack([n.noise_var for n in nights], axis=2).astype(np.float32)
    tr_ids = np.array(sorted(stars.transits), dtype=np.int64)
    return fits.BinTableHDU.from_columns([
        fits.Column("id", "J", array=cat.hip.astype(np.int32)),
        fits.Column("ra", "D", unit="deg", array=cat["ra_deg"]),
        fits.Column("dec", "D", unit="deg", array=cat["dec_deg"]),
        fits.Column("vmag", "E", unit="mag", array=cat.vmag),
        fits.Column("patch", "J", array=stars.patch.astype(np.int32)),
        fits.Column("offset", "D", unit="mag", array=stars.offset),
        fits.Column("var_amp", "D", unit="mag", array=stars.var_amp),
        fits.Column("var_period", "D", unit="d", array=stars.var_period),
        fits.Column("var_phase", "D", unit="rad", array=stars.var_phase),
        fits.Column("transit", "B", array=np.isin(cat.hip, tr_ids).astype(np.uint8)),
        fits.Column("npoints", f"{nn}J", array=npoints),
        fits.Column("noise_var0", f"{nn}E", unit="mag2", array=noise_var[0]),
        fits.Column("noise_var1", f"{nn}E", unit="mag2", array=noise_var[1]),
    ], name="STARS")


def _transits_hdu(stars: SimulatedStars) -> fits.BinTableHDU:
    trs = [stars.transits[i] for i in sorted(stars.transits)]
    return fits.BinTableHDU.from_columns([
        fits.Column("id", "J", array=np.array([t.hip for t in trs], np.int32)),
        fits.Column("period", "D", unit="d", array=np.array([t.period_d for t in trs])),
        fits.Column("epoch", "D", unit="d", array=np.array([t.epoch_jd for t in trs])),
        fits.Column("depth", "D", array=np.array([t.depth for t in trs])),
        fits.Column("duration", "D", unit="h", array=np.array([t.duration_h for t in trs])),
    ], name="TRANSITS")


def _nights_hdu(nights: Sequence[NightTruth]) -> fits.BinTableHDU:
    return fits.BinTableHDU.from_columns([
        fits.Column("night", "8A", array=np.array([n.night for n in nights], dtype="S8")),
        fits.Column("weather", "8A", array=np.array([n.weather for n in nights], dtype="S8")),
        fits.Column("lstseq0", "K", array=np.array([n.lstseq0 for n in nights], np.int64)),
        fits.Column("nexp", "J", array=np.array([n.nexp for n in nights], np.int32)),
        fits.Column("file", "80A", array=np.array([n.file for n in nights], dtype="S80")),
    ], name="NIGHTS")


def _patches_hdu(patches: SkyPatches) -> fits.BinTableHDU:
    return fits.BinTableHDU.from_columns([
        fits.Column("patch", "J", array=patches.patch.astype(np.int32)),
        fits.Column("ra", "D", unit="deg", array=patches.ra),
        fits.Column("dec", "D", unit="deg", array=patches.dec),
    ], name="PATCHES")


def _noise_hdu(nights: Sequence[NightTruth]) -> fits.BinTableHDU:
    rows = np.concatenate([n.noise_sets for n in nights]) if nights \
        else np.zeros(0, NOISE_DTYPE)
    return fits.BinTableHDU.from_columns([
        fits.Column("id", "J", array=rows["id"]),
        fits.Column("setidx", "K", array=rows["setidx"]),
        fits.Column("n", "J", array=rows["n"]),
        fits.Column("var0", "E", unit="mag2", array=rows["var0"]),
        fits.Column("var1", "E", unit="mag2", array=rows["var1"]),
    ], name="NOISE")


def write_truth(path: Path, header: Sequence[HeaderCard], stars: SimulatedStars,
                patches: SkyPatches, nights: Sequence[NightTruth]) -> None:
    """Write the truth file (see the module docstring); ``header`` holds the primary
    header's cards (the run and the models)."""
    hdul = fits.HDUList([
        _primary(header), _stars_hdu(stars, nights), _transits_hdu(stars),
        _nights_hdu(nights), _patches_hdu(patches), _noise_hdu(nights),
        *(fits.ImageHDU(n.clouds, name=f"CLOUDS_{n.night}") for n in nights),
    ])
    buf = io.BytesIO()
    hdul.writeto(buf)
    atomic_write_bytes(path, buf.getvalue())


@dataclass(frozen=True)
class Truth:
    """A truth file read back (see the module docstring for the meaning of each table)."""

    camera: str
    model: TruthModel
    noise: NoiseModel
    stars: np.ndarray
    transits: np.ndarray
    nights: np.ndarray
    patches: np.ndarray
    clouds: dict[str, np.ndarray]
    """Night (YYYYMMDD) -> (nexp, npatch) clouds image, mag."""
    noise_sets: np.ndarray
    """Per star and set of 50: ``id``, ``setidx``, ``n`` (unflagged points), ``var0``,
    ``var1`` (sum of their injected noise variances in aperture 0 and 1, mag^2)."""

    def set_noise(self, star_id: int, setidx: np.ndarray, aperture: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(points, mean injected noise variance per point, mag^2) of a star's sets (0 and
        NaN for a set the star has no unflagged point in)."""
        rows = self.noise_sets[self.noise_sets["id"] == star_id]
        setidx = np.asarray(setidx, np.int64)
        if len(rows) == 0:
            return np.zeros(len(setidx), np.int64), np.full(len(setidx), np.nan)
        pos = np.clip(np.searchsorted(rows["setidx"], setidx), 0, len(rows) - 1)
        found = rows["setidx"][pos] == setidx
        n = np.where(found, rows["n"][pos], 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(found & (n > 0), rows[f"var{aperture}"][pos] / np.maximum(n, 1),
                           np.nan)
        return n, var

    def star_index(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows of :attr:`stars` for HIP numbers ``ids`` (-1 where absent)."""
        ids = np.asarray(ids, np.int64)
        pos = np.clip(np.searchsorted(self.stars["id"], ids), 0, len(self.stars) - 1)
        out: np.ndarray = np.where(self.stars["id"][pos] == ids, pos, -1)
        return out

    def cloud_at(self, lstseq: np.ndarray, patch: np.ndarray) -> np.ndarray:
        """True clouds (mag) at exposures ``lstseq`` for HEALPix patches ``patch``."""
        lstseq = np.asarray(lstseq, np.int64)
        out = np.full(lstseq.shape, np.nan)
        col = np.searchsorted(self.patches["patch"], patch)
        for row in self.nights:
            image = self.clouds[row["night"]]
            k = lstseq - int(row["lstseq0"])
            inside = (k >= 0) & (k < int(row["nexp"]))
            out[inside] = image[k[inside], col[inside]]
        return out


def _native(arr: np.ndarray) -> np.ndarray:
    """A FITS table as a plain native-endian structured array (text columns as str)."""
    names = arr.dtype.names or ()
    dtype = [(n, arr.dtype[n].newbyteorder("=") if arr.dtype[n].byteorder not in "=|"
              else arr.dtype[n]) for n in names]
    dtype = [(n, np.dtype(f"U{t.itemsize}") if t.kind == "S" else t) for n, t in dtype]
    out = np.empty(arr.shape, dtype)
    for n in names:
        col = np.asarray(arr[n])
        out[n] = np.char.decode(col, "ascii") if col.dtype.kind == "S" else col
    return out


def read_truth(path: str | Path) -> Truth:
    """Read a truth file written by :func:`~mascara_actors.lcsim.simulate_lightcurves`."""
    path = Path(path)
    try:
        with fits.open(path, memmap=False) as hdul:
            h = hdul[0].header
            tables = {name: _native(np.asarray(hdul[name].data))
                      for name in ("STARS", "TRANSITS", "NIGHTS", "PATCHES", "NOISE")}
            nights = tables["NIGHTS"].astype(_NIGHTS_DTYPE)
            clouds = {str(n): np.asarray(hdul[f"CLOUDS_{n}"].data, np.float32)
                      for n in nights["night"]}
            return Truth(str(h["CAMERA"]), TruthModel.from_header(h),
                         NoiseModel.from_header(h), tables["STARS"], tables["TRANSITS"],
                         nights, tables["PATCHES"], clouds, tables["NOISE"])
    except (OSError, KeyError) as exc:
        raise StorageError(f"{path} is not a truth file of the light-curve simulator: "
                           f"{exc}") from exc
