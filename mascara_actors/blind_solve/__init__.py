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

One module per step: :mod:`.detection` (stars of the image), :mod:`.triangles` (the hash),
:mod:`.index` (the cached index of the catalogue's triangles) and :mod:`.solve` (vote, fit,
acceptance).
"""

from mascara_actors.blind_solve.detection import Detections, detect_stars
from mascara_actors.blind_solve.index import INDEX_FORMAT_VERSION, BlindIndex
from mascara_actors.blind_solve.solve import BlindSolution, BlindSolveFailed, blind_solve

__all__ = [
    "INDEX_FORMAT_VERSION",
    "BlindIndex",
    "BlindSolution",
    "BlindSolveFailed",
    "Detections",
    "blind_solve",
    "detect_stars",
]
