"""Lost-in-space astrometry: the camera model of a frame from the image and the catalogue alone.

:func:`blind_solve` finds where a camera points (any altitude, azimuth and roll, either
parity) without the configured pointing; only the lens (focal length, radial distortion),
the site latitude and the frame's LST and JD are used. It then hands the rough model to the
fit of :mod:`mascara_actors.astrometry` (pointing, focal length, distortion, Legendre terms)
and accepts the result only when a chance match is impossible.

How
---
1. Detect stars (saturated ones too: the brightest stars are the best to hash) and turn the
   brightest ``IMAGE_STARS`` into unit vectors in the camera frame through the lens model.
   Distortion is thus undone before hashing; what is left of it (the lens being a little
   off) bends a triangle a few degrees across by well under 1 %.
2. Hash triangles of near neighbours (all sides 0.5-7 degrees) by their shape (the two
   shorter sides over the longest) and size (log of the longest side). Side lengths do not
   change under rotation or reflection, so one index serves every roll and both parities.
3. Look each image triangle up in the index (:class:`BlindIndex`: every such triangle of the
   Hipparcos stars V <= 6.5 without a bright neighbour, built once and cached as ``.npy``
   beside the catalogue cache); each hit gives a rotation or reflection (Procrustes on the
   three vertices) from the camera frame to the local sky (east, north, up).
4. Vote: correct hits agree on one orientation, chance hits scatter over all of them. The
   densest clusters are checked in turn: predict the index stars, count detections within
   10 px, and keep the first whose count is impossible by chance.
5. Refine with the astrometric fit (tilts, spin, focal; then distortion and Legendre terms at
   8, 4 and 2 px), and accept by the criterion below.

Acceptance (no chance match)
----------------------------
After the fit, the astrometry stars (V 4-7.5, unblended) predicted on the chip are matched to
the detections within ``r = 1.5`` px. With ``n`` stars predicted and ``N`` detections on an
area ``A``, a wrong model would match each predicted star with probability
``p = pi r^2 N / A`` (about 0.003 for 5,000 detections on the full chip), so the number of
chance matches is Poisson with mean ``lambda = n p`` (about 8 for 2,500 predicted stars).
The solution is accepted only when

- at least ``max(10, min_match_fraction * n)`` stars match (0.6 by default, as for the
  solve from the configured pointing), and
- the false-alarm probability ``P(X >= k | lambda)`` times the number of orientations tried
  is below ``1e-9``.

On a full frame a true solution matches 1,500-2,500 stars where chance gives about 8
(a false-alarm probability below 1e-1000); the fraction rule alone already excludes a chance
match. A candidate orientation is refined only if it passed the same test on the index stars
(10 px, ``P < 1e-6``; about 45 of some 700 predicted, where a true orientation matches
500 and the best chance one on a field of 5,000 random "stars" 25), so a wrong one is never
fitted into place.

Library or own solver
---------------------
Measured on 22 full-size frames of this project's simulator (4008 x 2672, 3,700-6,700 stars
V <= 8.4): the N/E/S/W/C cameras of both sites as configured, 8 at random roll and up to
20 degrees off (4 mirrored), all with the focal length 0.3 % and k1 5 % off the lens in the
configuration, and 5 harder ones (focal length up to 1 % and k1 up to 20 % off, Legendre
terms of 1-2 px, clouds, 2 mirrored, one 22 degrees above the horizon); on the shared
2-core machine, one core each.

- This module: 22 of 22 solved, pointing within 0.001 degree, RMS 0.001-0.006 px against
  the truth, parity always right. 0.53 s median per frame pinned to one core (the
  ``blind_solve_s`` bench: detection 0.26 s, hashing 0.15 s, vote 0.02 s, fit 0.09 s),
  up to 1.3 s on the loaded machine; plus 0.5 s once per process to load the cached
  index (833,000 triangles of 8,362 stars, 20 MB; 1-2 s to build).
- cedar-solve 0.5.1 (the kept fork of ESA's tetra3): fed the centroids after our lens model
  has undone the distortion, 22 of 22 pattern matches in about 0.01 s each (the fit and the
  acceptance above are still needed); with its own one-term distortion model 15 of 22, up
  to 95 s for a failure. Not taken: it pins Pillow < 9 (no wheel for our Python) and calls
  ``np.math``, gone in NumPy 2 (this project runs NumPy 2.4), so it would hold the whole
  project back on old versions; its rotation fit is unconstrained and reports no parity
  (a mirrored frame comes back as a reflection with a meaningless roll); its database is
  built from a ``hip_main`` file that we would have to write out of hip2.
- astroalign 2.6.2: matches two planar point lists by a similarity transform, with no sky
  model. With the catalogue projected at the true optical axis it fails at its 2 px
  tolerance (a 74-degree field is not similar to a tangent-plane projection to 2 px);
  loosened to 15 px it matches in 0.1-0.2 s, but a tangent point 10 degrees off gives
  7-14 matches at a scale of 0.92, and each wrong parity or tile costs 1-6 s to fail.
  A blind solve would tile the sky (about 100 tiles above the horizon, two parities):
  minutes per frame. Not viable.

So the solver is our own: no new dependency, parity found and reported, an index built from
the shipped catalogue and cached like it, and the whole solve well under the 10 s bar.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage, stats
from scipy.spatial import cKDTree

from mascara_actors.astrometry import (
    AFLAG_TOO_BRIGHT,
    AstrometricSolution,
    _fit,
    _match,
    _refine,
    sky_brightness_flag,
)
from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue, _atomic_write, default_cache_dir
from mascara_actors.centroids import windowed_centroids
from mascara_actors.errors import AstrometryFailed

__all__ = [
    "INDEX_FORMAT_VERSION",
    "BlindIndex",
    "BlindSolution",
    "BlindSolveFailed",
    "Detections",
    "blind_solve",
    "detect_stars",
]

log = logging.getLogger(__name__)

#: Version of the cached index layout and rules; bump it when they change.
INDEX_FORMAT_VERSION = 1
#: Index stars: V <= this, unblended. The brightest ``IMAGE_STARS`` detections of a frame
#: reach V ~ 5.5-6 (fainter in the vignetted corners): 0.5-1 mag of margin.
INDEX_VMAX = 6.5
#: Triangle sides, degrees: long enough for a well-measured shape, short enough that the
#: lens model error stays small across a triangle and the index stays small.
SIDE_MIN_DEG = 0.5
SIDE_MAX_DEG = 7.0
#: Sides closer than this (fraction of the longest) make the vertex order ambiguous; such
#: triangles are left out of the index and of the image.
SIDE_GAP = 0.015
#: Triangles flatter than this ((a + b) / c - 1) do not fix the parity.
MIN_FLATNESS = 0.05
#: Lookup tolerances: shape ratios (absolute) and size (log of the longest side, i.e. a
#: focal length wrong by up to about this fraction).
SHAPE_TOL = 0.008
SIZE_TOL = 0.03
#: Detections hashed (the brightest).
IMAGE_STARS = 150
#: Orientation clusters: radius in the 9-d space of the rotation matrices (~1.5 degrees).
CLUSTER_RADIUS = 0.04
#: Vote cells: width in each component of the sky vectors of the camera axes (~2 degrees).
VOTE_BIN = 0.035
#: Orientation clusters checked at most, densest first.
MAX_CANDIDATES = 6
#: Acceptance: match radius (px) and false-alarm probability of the final check.
ACCEPT_RADIUS_PX = 1.5
ACCEPT_LOG10_PFA = -9.0
#: Candidate check on the index stars: radius (px) and false-alarm probability.
CHECK_RADIUS_PX = 10.0
CHECK_LOG10_PFA = -6.0
#: Fewer detections than this: nothing to solve (overcast, shutter closed).
MIN_DETECTIONS = 15

_INDEX_STEM = "blind_index"
_INDEX_EPOCH_JD = 2460676.5  # 2025-01-01: star motions since then are far below the tolerance
INDEX_DTYPE = np.dtype([("hip", "<i4", (3,)), ("key", "<f4", (3,))])


class BlindSolveFailed(AstrometryFailed):
    """No blind solution. ``kind`` says why, in one word: ``too_bright`` (twilight, Moon,
    daylight), ``no_stars`` (overcast, dome or shutter closed), ``too_few_matched`` (no
    orientation matched enough stars to rule out chance) or ``below_horizon`` (the stars
    matched are below the horizon: the frame's site or time is wrong). The other
    attributes say what was found, for a message an operator can act on."""

    def __init__(
        self,
        kind: str,
        reason: str,
        *,
        lstseq: int = 0,
        ndetected: int = 0,
        nmatched: int = 0,
        best_pointing: tuple[float, float, float] | None = None,
        mirrored: bool | None = None,
    ) -> None:
        self.kind = kind
        self.reason = reason
        self.lstseq = lstseq
        self.ndetected = ndetected
        self.nmatched = nmatched
        self.best_pointing = best_pointing
        self.mirrored = mirrored
        super().__init__(f"lstseq {lstseq}: {self.describe()}")

    def describe(self) -> str:
        """Why, the stars detected and matched and the best pointing tried, in one line."""
        text = f"{self.reason}; {self.ndetected} stars detected, {self.nmatched} matched"
        if self.best_pointing is not None:
            alt, az, roll = self.best_pointing
            parity = ", mirrored" if self.mirrored else ""
            text += f"; best pointing tried alt {alt:.1f} az {az:.1f} roll {roll:.1f} deg{parity}"
        return text


# --------------------------------------------------------------------------------------------
# Triangles


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between unit vectors, degrees (chord form: accurate for small angles)."""
    return np.degrees(2.0 * np.arcsin(np.clip(np.linalg.norm(a - b, axis=-1) / 2.0, 0.0, 1.0)))


def _triangles(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of unit vectors whose sides are all within SIDE_MIN_DEG..SIDE_MAX_DEG.

    Returns vertex indices (t, 3), the vertex opposite the shortest side first, and keys
    (t, 3): shortest / longest side, middle / longest side, ln(longest side in degrees).
    """
    n = len(vec)
    empty = np.empty((0, 3), np.int64), np.empty((0, 3))
    if n < 3:
        return empty
    chord = 2.0 * math.sin(math.radians(SIDE_MAX_DEG) / 2.0)
    pairs = cKDTree(vec).query_pairs(chord, output_type="ndarray").astype(np.int64)
    if len(pairs) == 0:
        return empty
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]  # i < j, sorted by (i, j)
    out_deg = np.bincount(pairs[:, 0], minlength=n)
    start = np.concatenate([[0], np.cumsum(out_deg)[:-1]])
    # Every path i < j < k along edges (i, j), (j, k); a triangle when (i, k) is an edge too.
    deg_j = out_deg[pairs[:, 1]]
    edge = np.repeat(np.arange(len(pairs)), deg_j)
    step = np.arange(deg_j.sum()) - np.repeat(np.cumsum(deg_j) - deg_j, deg_j)
    i, j = pairs[edge, 0], pairs[edge, 1]
    k = pairs[start[j] + step, 1]
    edge_key = pairs[:, 0] * n + pairs[:, 1]
    want = i * n + k
    pos = np.minimum(np.searchsorted(edge_key, want), len(edge_key) - 1)
    ok = edge_key[pos] == want
    tri = np.stack([i[ok], j[ok], k[ok]], axis=1)
    if len(tri) == 0:
        return empty
    v = vec[tri]
    sides = np.stack(
        [_angle_deg(v[:, 1], v[:, 2]), _angle_deg(v[:, 0], v[:, 2]), _angle_deg(v[:, 0], v[:, 1])],
        axis=1,
    )
    order = np.argsort(sides, axis=1)
    sides = np.take_along_axis(sides, order, axis=1)
    tri = np.take_along_axis(tri, order, axis=1)
    a, b, c = sides.T
    keep = (
        (a >= SIDE_MIN_DEG)
        & ((b - a) >= SIDE_GAP * c)
        & ((c - b) >= SIDE_GAP * c)
        & ((a + b) / c - 1.0 >= MIN_FLATNESS)
    )
    keys = np.stack([a / c, b / c, np.log(c)], axis=1)
    return tri[keep], keys[keep]


def _scaled(keys: np.ndarray) -> np.ndarray:
    """Keys scaled so that the lookup tolerance is a unit ball."""
    return keys / np.array([SHAPE_TOL, SHAPE_TOL, SIZE_TOL])


# --------------------------------------------------------------------------------------------
# The index


def _index_stars(catalogue: Catalogue) -> Catalogue:
    sel = catalogue.select(vmax=INDEX_VMAX)
    return sel.select(hip=sel.hip[sel["blend"] == 0])


def _fingerprint(stars: Catalogue) -> str:
    """SHA-256 of what the index depends on: the stars, their positions and the rules."""
    digest = hashlib.sha256()
    for name in ("hip", "ra_deg", "dec_deg", "pmra_masyr", "pmdec_masyr", "vmag"):
        digest.update(np.ascontiguousarray(stars[name]).tobytes())
    rules = (INDEX_VMAX, SIDE_MIN_DEG, SIDE_MAX_DEG, SIDE_GAP, MIN_FLATNESS, _INDEX_EPOCH_JD)
    digest.update(json.dumps(rules).encode())
    return digest.hexdigest()


def _unit(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)


@dataclass(frozen=True, eq=False)
class BlindIndex:
    """Triangles of bright stars for the blind solve, with a lookup tree over their keys.

    Build it with :meth:`load` (cached) or :meth:`build`.
    """

    stars: Catalogue
    """The index stars (V <= INDEX_VMAX, unblended), HIP order."""
    triangles: np.ndarray
    """(t, 3) rows into ``stars``, the vertex opposite the shortest side first."""
    keys: np.ndarray
    """(t, 3) shape ratios and ln(longest side / deg)."""
    tree: cKDTree = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tree", cKDTree(_scaled(self.keys)))

    def __len__(self) -> int:
        return len(self.triangles)

    @classmethod
    def build(cls, catalogue: Catalogue) -> BlindIndex:
        """Build the index from the full catalogue (about 2 s)."""
        stars = _index_stars(catalogue)
        ra, dec = stars.positions_icrs_at(_INDEX_EPOCH_JD)
        tri, keys = _triangles(_unit(ra, dec))
        # The cache keeps float32 keys; a fresh index uses the same values.
        return cls(stars, tri.astype(np.int32), keys.astype(np.float32).astype(float))

    @classmethod
    def load(
        cls, catalogue: Catalogue, cache_dir: str | os.PathLike[str] | None = None
    ) -> BlindIndex:
        """The index of ``catalogue`` from the cache, rebuilt when missing, stale or corrupt.

        The cache is ``blind_index.npy`` (``allow_pickle=False``) plus ``blind_index.json``
        (format version, a fingerprint of the stars and rules, the ``.npy`` SHA-256) in
        ``cache_dir`` (default the catalogue's cache directory), both written atomically.
        An unwritable cache directory is logged and the index returned anyway.
        """
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        stars = _index_stars(catalogue)
        fingerprint = _fingerprint(stars)
        memo_key = (fingerprint, str(cache))
        if memo_key in _LOADED:
            return _LOADED[memo_key]
        index = cls._load(stars, catalogue, cache, fingerprint)
        _LOADED.clear()  # one index per process is all a solver needs
        _LOADED[memo_key] = index
        return index

    @classmethod
    def _load(
        cls, stars: Catalogue, catalogue: Catalogue, cache: Path, fingerprint: str
    ) -> BlindIndex:
        t0 = time.perf_counter()
        table = _read_index(cache, fingerprint)
        if table is not None:
            rows = np.searchsorted(stars.hip, table["hip"])
            rows = np.minimum(rows, len(stars) - 1)
            if np.array_equal(stars.hip[rows], table["hip"]):
                index = cls(stars, rows.astype(np.int32), table["key"].astype(float))
                log.info("blind index loaded from %s in %.2f s", cache, time.perf_counter() - t0)
                return index
            log.warning("blind index in %s names stars not in the catalogue; rebuilding", cache)
        index = cls.build(catalogue)
        try:
            _write_index(cache, index, fingerprint)
        except OSError as exc:
            log.warning("cannot write the blind index cache in %s (%s); continuing", cache, exc)
        log.info(
            "blind index built (%d triangles of %d stars) in %.2f s",
            len(index),
            len(stars),
            time.perf_counter() - t0,
        )
        return index


#: The index last loaded in this process, by (fingerprint, cache directory): a second
#: solve (the CLI, the next night of a worker) skips the 0.5 s of loading.
_LOADED: dict[tuple[str, str], BlindIndex] = {}


def _index_paths(cache_dir: Path) -> tuple[Path, Path]:
    return cache_dir / f"{_INDEX_STEM}.npy", cache_dir / f"{_INDEX_STEM}.json"


def _read_index(cache_dir: Path, fingerprint: str) -> np.ndarray | None:
    """The cached triangle table if intact and made from these stars and rules, else None."""
    npy_path, sidecar_path = _index_paths(cache_dir)
    try:
        meta = json.loads(sidecar_path.read_text(encoding="utf-8"))
        blob = npy_path.read_bytes()
    except FileNotFoundError:
        log.info("no blind index cache in %s; building it", cache_dir)
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("blind index cache in %s is unreadable (%s); rebuilding", cache_dir, exc)
        return None
    if not isinstance(meta, dict) or meta.get("format_version") != INDEX_FORMAT_VERSION:
        log.info("blind index cache in %s has another format; rebuilding", cache_dir)
        return None
    if meta.get("fingerprint") != fingerprint:
        log.info(
            "blind index cache in %s is stale (catalogue or rules changed); rebuilding", cache_dir
        )
        return None
    if hashlib.sha256(blob).hexdigest() != meta.get("npy_sha256"):
        log.warning("blind index cache %s is corrupt or truncated; rebuilding", npy_path)
        return None
    try:
        table = np.load(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        log.warning("blind index cache %s does not load (%s); rebuilding", npy_path, exc)
        return None
    if table.dtype != INDEX_DTYPE or table.ndim != 1 or len(table) != meta.get("n_triangles"):
        log.warning("blind index cache %s has the wrong layout; rebuilding", npy_path)
        return None
    return table


def _write_index(cache_dir: Path, index: BlindIndex, fingerprint: str) -> None:
    npy_path, sidecar_path = _index_paths(cache_dir)
    table = np.empty(len(index), INDEX_DTYPE)
    table["hip"] = index.stars.hip[index.triangles]
    table["key"] = index.keys
    buf = io.BytesIO()
    np.save(buf, table, allow_pickle=False)
    blob = buf.getvalue()
    meta = {
        "format_version": INDEX_FORMAT_VERSION,
        "fingerprint": fingerprint,
        "n_stars": len(index.stars),
        "n_triangles": len(index),
        "npy_sha256": hashlib.sha256(blob).hexdigest(),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The sidecar goes last: its checksum is what makes the cache valid.
    _atomic_write(npy_path, blob)
    _atomic_write(sidecar_path, json.dumps(meta, indent=1).encode())


# --------------------------------------------------------------------------------------------
# Detection


def _background(image: np.ndarray, box: int = 64) -> np.ndarray:
    """Smooth sky: medians of ``box`` x ``box`` blocks, bilinearly interpolated.

    The same map as :func:`mascara_actors.centroids.background_map`, several times faster:
    the medians come from every fourth pixel of each block (still 256 values, so the sky is
    known to a tenth of the pixel noise) and the interpolation, separable, is two small
    matrix products.
    """
    ny, nx = image.shape
    by, bx = max(ny // box, 1), max(nx // box, 1)
    step = 4 if box >= 32 else 1
    m = box // step
    core = image[: by * box : step, : bx * box : step].reshape(by, m, bx, m)
    blocks = core.transpose(0, 2, 1, 3).reshape(by, bx, m * m)
    med = np.nanmedian(blocks, axis=2) if np.isnan(blocks).any() else np.median(blocks, axis=2)

    def weights(n: int, nb: int) -> np.ndarray:
        t = np.clip((np.arange(n) + 0.5) / box - 0.5, 0, nb - 1)
        i0 = np.floor(t).astype(int)
        i1 = np.minimum(i0 + 1, nb - 1)
        w = np.zeros((n, nb), np.float32)
        np.add.at(w, (np.arange(n), i0), 1.0 - (t - i0))
        np.add.at(w, (np.arange(n), i1), t - i0)
        return w

    return weights(ny, by) @ med.astype(np.float32) @ weights(nx, bx).T


@dataclass(frozen=True, slots=True)
class Detections:
    """Stars found on a frame, brightest first."""

    xy: np.ndarray
    """(n, 2) windowed centroids, pixels."""
    height: np.ndarray
    """(n,) smoothed peak height above the sky, ADU (the brightness order)."""
    saturated: np.ndarray
    """(n,) True where the star reaches the saturation level (centroid less precise)."""
    shape: tuple[int, int]
    """(ny, nx) of the image."""

    def __len__(self) -> int:
        return len(self.xy)

    @property
    def density(self) -> float:
        """Detections per square pixel."""
        return len(self.xy) / float(self.shape[0] * self.shape[1])


def _peaks(
    sub: np.ndarray, *, nmax: int, threshold_sigma: float = 10.0, margin: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima (5 x 5) of the smoothed background-subtracted image above
    ``threshold_sigma`` times its robust noise: the ``nmax`` highest, as
    :func:`mascara_actors.centroids.find_peaks` finds them but testing only the pixels
    above the threshold (a few per cent) for being a maximum."""
    smooth = ndimage.gaussian_filter(sub, 1.0, truncate=3.0)
    sample = smooth[::7, ::7]
    med = float(np.median(sample))
    noise = 1.4826 * float(np.median(np.abs(sample - med)))
    above = smooth > med + threshold_sigma * max(noise, 1e-6)
    above[:margin] = above[-margin:] = False
    above[:, :margin] = above[:, -margin:] = False
    y, x = np.nonzero(above)
    h = smooth[y, x]
    # The 8 nearest neighbours first: they leave few candidates for the outer 16.
    for ring in (1, 2):
        is_max = np.ones(h.shape, bool)
        for dy in range(-ring, ring + 1):
            for dx in range(-ring, ring + 1):
                if max(abs(dy), abs(dx)) == ring:
                    is_max &= h >= smooth[y + dy, x + dx]
        x, y, h = x[is_max], y[is_max], h[is_max]
    order = np.argsort(h)[::-1][:nmax]
    return x[order], y[order], h[order]


def detect_stars(image: np.ndarray, *, nmax: int = 5000, saturation: float = 63000.0) -> Detections:
    """The ``nmax`` brightest star-like peaks of a calibrated image, saturated ones included.

    Single-pixel spikes (hot pixels, cosmic rays) are dropped: a star's peak pixel is at
    most ~2.5 times its smoothed height, a spike's about 6 times.
    """
    image = np.asarray(image, np.float32)
    sub = image - _background(image)
    x, y, h = _peaks(sub, nmax=nmax)
    ny, nx = image.shape
    # 3x3 and 5x5 neighbourhoods of each peak, gathered at once.
    off5 = np.arange(-2, 3)
    gy = np.clip(y[:, None, None] + off5[None, :, None], 0, ny - 1)
    gx = np.clip(x[:, None, None] + off5[None, None, :], 0, nx - 1)
    raw = image[gy, gx]
    peak = sub[gy[:, 1:4, :], gx[:, :, 1:4]].max(axis=(1, 2))
    saturated = raw.max(axis=(1, 2)) >= saturation
    sharp = (peak > 3.5 * h) & ~saturated
    x, y, h, saturated = x[~sharp], y[~sharp], h[~sharp], saturated[~sharp]
    # Five iterations from the integer peak: within 0.001 px of eight for 99 % of stars.
    xc, yc, ok = windowed_centroids(sub, x, y, iterations=5)
    return Detections(
        xy=np.column_stack([xc[ok], yc[ok]]),
        height=h[ok].astype(float),
        saturated=saturated[ok],
        shape=(ny, nx),
    )


# --------------------------------------------------------------------------------------------
# The solve


@dataclass(frozen=True, slots=True)
class BlindSolution:
    """A blind solution and how it was found."""

    solution: AstrometricSolution
    """The refined camera model and its residuals (as from the solve from a pointing)."""
    pointing: tuple[float, float, float]
    """(alt, az, roll) of the optical axis, degrees, tilts folded in (config convention)."""
    mirrored: bool
    """Mirrored parity."""
    ndetected: int
    """Stars detected on the frame."""
    nmatched: int
    """Predicted astrometry stars matched within ACCEPT_RADIUS_PX."""
    npredicted: int
    """Astrometry stars predicted on the chip."""
    log10_false_alarm: float
    """log10 of the probability that the matches are chance (times the trials)."""
    matched: np.ndarray
    """(k,) rows of the astrometry stars matched (for plots)."""
    seconds: float
    """Wall time of the whole solve, s."""
    timings: dict[str, float]
    """Seconds per step: detect, hash, vote, refine, accept."""

    @property
    def model(self) -> CameraModel:
        return self.solution.model


def _procrustes(cam: np.ndarray, sky: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Orthogonal matrices M (..., 3, 3), rotation or reflection, minimising
    sum |M c - s|^2 over the rows c of ``cam`` and s of ``sky`` (..., k, 3)."""
    if weight is not None:
        sky = sky * weight[..., None]
    h = np.einsum("...ki,...kj->...ij", sky, cam)
    u, _, vt = np.linalg.svd(h)
    return u @ vt


def _hypotheses(
    cam: np.ndarray, index: BlindIndex, sky: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (image triangle, index triangle) pair of matching keys: the image and index
    vertex rows (m, 3) each and the orientation (m, 3, 3) from camera to sky it implies."""
    itri, ikeys = _triangles(cam)
    if len(itri) == 0:
        return np.empty((0, 3), int), np.empty((0, 3), int), np.empty((0, 3, 3))
    hits = cKDTree(_scaled(ikeys)).sparse_distance_matrix(index.tree, 1.0, output_type="ndarray")
    img = itri[hits["i"]]
    idx = index.triangles[hits["j"]].astype(np.int64)
    return img, idx, _procrustes(cam[img], sky[idx])


def _consensus(img: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One index star per image star (and back) from the vertex pairs of a cluster: the most
    frequent pairing wins. Returns image rows, index rows and how often each pair was seen."""
    pairs, counts = np.unique(
        np.stack([img.ravel(), idx.ravel()], axis=1), axis=0, return_counts=True
    )
    order = np.argsort(-counts, kind="stable")
    pairs, counts = pairs[order], counts[order]
    _, first_img = np.unique(pairs[:, 0], return_index=True)
    keep = np.zeros(len(pairs), bool)
    keep[first_img] = True
    _, first_idx = np.unique(pairs[keep][:, 1], return_index=True)
    rows = np.flatnonzero(keep)[first_idx]
    return pairs[rows, 0], pairs[rows, 1], counts[rows]


def _votes(orients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin the orientations by where they send the camera's x and optical axes (cells of
    VOTE_BIN, about 2 degrees) and their parity. Returns the votes of each hypothesis (its
    bin's count) and its bin number.

    A histogram keeps the vote linear in the number of hits (10^5 on a rich frame).
    """
    m = len(orients)
    q = np.floor(orients[:, :, [0, 2]].reshape(m, 6) / VOTE_BIN).astype(np.int64)
    parity = (np.linalg.det(orients) > 0).astype(np.int64) if m else np.empty(0, np.int64)
    shift = math.ceil(1.0 / VOTE_BIN) + 1  # cell indices lie in [-shift, shift)
    key = parity
    for col in q.T:
        key = key * (2 * shift) + (col + shift)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return counts[inverse], inverse


def _log10_pfa(k: int, n: int, radius: float, density: float, trials: int) -> float:
    """log10 of the chance of ``k`` or more of ``n`` predictions having a detection within
    ``radius`` px at random, with detections at ``density`` per px^2, over ``trials``."""
    lam = n * math.pi * radius**2 * density
    if k <= 0:
        return 0.0
    log_p = float(stats.poisson.logsf(k - 1, lam))
    if not math.isfinite(log_p):
        # Beyond double precision: P(X >= k) = pmf(k) (1 + lam/(k+1) + ...), k >> lam.
        log_p = float(stats.poisson.logpmf(k, lam)) - math.log1p(-min(lam / (k + 1), 0.5))
    return min(log_p / math.log(10.0) + math.log10(max(trials, 1)), 0.0)


def _check(
    orient: np.ndarray,
    sky: np.ndarray,
    base: CameraModel,
    det_xy: np.ndarray,
    density: float,
    trials: int,
) -> tuple[np.ndarray, int, float]:
    """Check an orientation on the index stars: predict them, match the detections within
    CHECK_RADIUS_PX, refit the orientation on the matches and match again.

    Returns the refined orientation, the number matched and log10 of the false-alarm
    probability.
    """
    cam_det = base.pixel_to_camera(det_xy[:, 0], det_xy[:, 1])
    k, log10_p = 0, 0.0
    for _ in range(2):
        x, y = base.camera_to_pixel(sky @ orient)
        on = base.on_chip(x, y)
        pred = np.column_stack([x[on], y[on]])
        ip, jd = _match(pred, det_xy, CHECK_RADIUS_PX)
        k = int(ip.size)
        log10_p = _log10_pfa(k, int(on.sum()), CHECK_RADIUS_PX, density, trials)
        if k < 3:
            break
        orient = _procrustes(cam_det[jd], sky[np.flatnonzero(on)[ip]])
    return orient, k, log10_p


def blind_solve(
    image: np.ndarray,
    index: BlindIndex,
    stars: Catalogue,
    lens: CameraModel,
    *,
    lst_hours: float,
    jd: float,
    lstseq: int = 0,
    order: int = 3,
    min_match_fraction: float = 0.6,
    saturation: float = 63000.0,
) -> BlindSolution:
    """Solve a calibrated frame from scratch.

    Parameters
    ----------
    image
        Calibrated science region, ADU.
    index
        The triangle index (:meth:`BlindIndex.load`).
    stars
        Astrometry stars for the fit and the acceptance
        (:func:`~mascara_actors.astrometry.astrometry_stars`).
    lens
        A model of the camera whose pointing, tilts, parity and Legendre terms are ignored:
        only the site latitude, focal length, radial distortion, refraction and chip size
        are used.
    lst_hours, jd
        LST (hours) and JD (UTC) at mid-exposure.
    order
        Order of the Legendre correction fitted.
    min_match_fraction
        Fraction of the predicted astrometry stars that must be matched.

    Raises
    ------
    BlindSolveFailed
        With the reason (sky too bright, no stars, too few matched, sky below the horizon),
        the stars detected and matched and the best orientation tried.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    flag = sky_brightness_flag(image)
    if flag & AFLAG_TOO_BRIGHT:
        level = float(np.nanmedian(np.asarray(image)[::8, ::8]))
        raise BlindSolveFailed(
            "too_bright",
            f"sky too bright to solve (median {level:.0f} ADU > 20000: twilight, Moon glare "
            "or daylight)",
            lstseq=lstseq,
        )
    det = detect_stars(image, saturation=saturation)
    timings["detect"] = time.perf_counter() - t0
    if len(det) < MIN_DETECTIONS:
        raise BlindSolveFailed(
            "no_stars",
            "no stars to solve on (overcast, dome or shutter closed?)",
            lstseq=lstseq,
            ndetected=len(det),
        )
    base = lens.replace(
        alt_deg=90.0,
        az_deg=0.0,
        roll_deg=0.0,
        tilt_x_deg=0.0,
        tilt_y_deg=0.0,
        spin_deg=0.0,
        mirror=False,
        coeffs_x=(),
        coeffs_y=(),
    )
    t = time.perf_counter()
    bright = det.xy[:IMAGE_STARS]
    cam = base.pixel_to_camera(bright[:, 0], bright[:, 1])
    ra, dec = index.stars.positions_at(jd)
    sky = base.enu_vectors(lst_hours * 15.0 - ra, dec)
    img, idx, orients = _hypotheses(cam, index, sky)
    timings["hash"] = time.perf_counter() - t
    ntrials = max(len(orients), 1)
    log.info("blind solve: %d detections, %d triangle hits", len(det), len(orients))

    t_vote = time.perf_counter()
    flat = orients.reshape(-1, 9)
    votes, bins = _votes(orients)
    # The check uses detections about as bright as the index stars.
    check_xy = det.xy[: 4 * IMAGE_STARS]
    check_density = len(check_xy) / float(det.shape[0] * det.shape[1])
    parity_ref = np.sign(np.linalg.det(base.axes))
    ra_a, dec_a = stars.positions_at(jd)
    ha_a = lst_hours * 15.0 - ra_a
    det_fit = det.xy[~det.saturated][:1500]
    best: tuple[int, CameraModel] | None = None
    tried = np.zeros(len(flat), bool)
    for _ in range(MAX_CANDIDATES):
        free = np.flatnonzero(~tried)
        if free.size == 0 or votes[free].max() < 2:
            break
        seed = free[np.argmax(votes[free])]
        # The cluster: every hit near the mean orientation of the seed's bin.
        centre = flat[bins == bins[seed]].mean(axis=0)
        dist = np.linalg.norm(flat - centre, axis=1)
        members = np.flatnonzero(dist < CLUSTER_RADIUS)
        tried[dist < 2 * CLUSTER_RADIUS] = True
        tried[bins == bins[seed]] = True
        if members.size == 0:
            continue
        ci, cu, cw = _consensus(img[members], idx[members])
        orient = _procrustes(cam[ci], sky[cu], cw.astype(float))
        orient, k, log10_p = _check(orient, sky, base, check_xy, check_density, ntrials)
        mirrored = bool(np.sign(np.linalg.det(orient)) != parity_ref)
        axes = (np.diag([-1.0, 1.0, 1.0]) @ orient.T) if mirrored else orient.T
        model0 = base.with_axes(axes, mirror=mirrored)
        log.info(
            "blind solve: candidate with %d votes: alt %.2f az %.2f roll %.2f%s, %d index "
            "stars matched, log10 P(chance) %.1f",
            votes[seed],
            *model0.pointing(),
            " mirrored" if mirrored else "",
            k,
            log10_p,
        )
        if best is None or k > best[0]:
            best = (k, model0)
        if log10_p > CHECK_LOG10_PFA:
            continue
        t = time.perf_counter()
        timings["vote"] = t - t_vote  # up to the candidate that passed the check
        try:
            model = _refine_from(model0, ha_a, dec_a, det_fit, order=order, lstseq=lstseq)
        except AstrometryFailed as exc:
            log.info("blind solve: candidate did not refine (%s)", exc)
            continue
        timings["refine"] = time.perf_counter() - t
        t = time.perf_counter()
        result = _accept(
            model,
            ha_a,
            dec_a,
            det,
            min_match_fraction=min_match_fraction,
            trials=ntrials,
            lstseq=lstseq,
            flag=flag,
        )
        timings["accept"] = time.perf_counter() - t
        if isinstance(result, str):
            log.info("blind solve: candidate refused (%s)", result)
            best = (max(best[0], k), model)
            continue
        solution, matched, log10_pfa = result
        return BlindSolution(
            solution=solution,
            pointing=model.pointing(),
            mirrored=model.mirror,
            ndetected=len(det),
            nmatched=int(matched.size),
            npredicted=solution.nstars,
            log10_false_alarm=log10_pfa,
            matched=matched,
            seconds=time.perf_counter() - t0,
            timings=timings,
        )
    raise BlindSolveFailed(
        "too_few_matched",
        "too few stars matched the catalogue in any orientation to rule out chance "
        "(clouds, a wrong lens, or not a sky frame?)",
        lstseq=lstseq,
        ndetected=len(det),
        nmatched=best[0] if best else 0,
        best_pointing=best[1].pointing() if best else None,
        mirrored=best[1].mirror if best else None,
    )


def _refine_from(
    model0: CameraModel,
    ha: np.ndarray,
    dec: np.ndarray,
    det_xy: np.ndarray,
    *,
    order: int,
    lstseq: int,
) -> CameraModel:
    """The fit of the solve from a pointing, started from a blind orientation."""
    pred = np.column_stack(model0.hadec_to_pixel(ha, dec))
    ip, jd = _match(pred, det_xy, 15.0)
    if ip.size < 10:
        raise AstrometryFailed(f"lstseq {lstseq}: only {ip.size} stars within 15 px")
    model = _fit(model0, ha[ip], dec[ip], det_xy[jd], fit_distortion=False, order=0)
    return _refine(
        model,
        ha,
        dec,
        det_xy,
        steps=((8.0, 0), (4.0, order), (2.0, order)),
        prior=model0,
        lstseq=lstseq,
    )


def _accept(
    model: CameraModel,
    ha: np.ndarray,
    dec: np.ndarray,
    det: Detections,
    *,
    min_match_fraction: float,
    trials: int,
    lstseq: int,
    flag: int,
) -> tuple[AstrometricSolution, np.ndarray, float] | str:
    """The solution if it passes the acceptance rule (module docstring), else why not."""
    x, y = model.hadec_to_pixel(ha, dec)
    on = np.flatnonzero(model.on_chip(x, y, margin=20))
    pred = np.column_stack([x[on], y[on]])
    ip, jd = _match(pred, det.xy, ACCEPT_RADIUS_PX)
    n, k = len(on), int(ip.size)
    log10_p = _log10_pfa(k, n, ACCEPT_RADIUS_PX, det.density, trials)
    need = max(10, math.ceil(min_match_fraction * n))
    if k < need or log10_p > ACCEPT_LOG10_PFA:
        return f"{k} of {n} predicted stars matched within {ACCEPT_RADIUS_PX} px, {need} needed"
    # A real frame cannot show mostly stars below the horizon: then the site or the time is
    # not the frame's. (Half, not all: a low camera may see below the horizon in the
    # simulator, which has no ground.)
    alt = np.degrees(np.arcsin(np.clip(model.enu_vectors(ha[on[ip]], dec[on[ip]])[:, 2], -1, 1)))
    if np.median(alt) < 0.0:
        raise BlindSolveFailed(
            "below_horizon",
            f"the stars matched lie below the horizon of latitude {model.latitude_deg:.2f} "
            "at this LST: is the frame from another site, or its time wrong?",
            lstseq=lstseq,
            ndetected=len(det),
            nmatched=k,
            best_pointing=model.pointing(),
            mirrored=model.mirror,
        )
    good = ~det.saturated[jd]
    if not good.any():  # residuals from saturated stars rather than none
        good[:] = True
    d = det.xy[jd[good]] - pred[ip[good]]
    r = np.hypot(*d.T)
    # 3-sigma clip for blends and cosmic rays hitting a star, as the solve from a pointing
    keep = r < max(3.0 * float(np.sqrt(np.mean(r**2))), 0.2)
    d = d[keep]
    solution = AstrometricSolution(
        model=model,
        lstseq=lstseq,
        nstars=n,
        nused=int(keep.sum()),
        dx=float(np.sqrt(np.mean(d[:, 0] ** 2))),
        dy=float(np.sqrt(np.mean(d[:, 1] ** 2))),
        aflag=flag,
    )
    return solution, on[ip], log10_p
