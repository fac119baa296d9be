"""The coarse decorrelation of multi-night baselines (camera transmission, intrapixel, clouds).

Model (legacy-pipeline.md section 10.4, after Collier Cameron et al. 2006), for star ``s``
on exposure ``t`` (``lstseq``), with ``mag = 25 - 2.5 log10(flux / exptime)``::

    mag = m_s + T(HA, dec) + sum_i a_i(HA, dec) b_i(x, y) + c(patch_s, t)

``T`` is the camera transmission (vignetting, clear-sky extinction and the zero point),
``b = [sin 2 pi x, cos 2 pi x, sin 2 pi y, cos 2 pi y]`` the pixel phase with amplitudes
``a`` (intrapixel), ``c`` the clouds of the star's HEALPix nside-8 patch on that exposure.
Each point has the weight ``1 / (emag^2 + sigma_s^2 + sigma_t^2)``, with an extra variance
per star (variability, scintillation) and per cloud cell (patchy clouds).

Where the legacy solver is weak, this one does otherwise:

- **The spatial step is one joint least-squares solution** of T, the intrapixel amplitudes
  and the star magnitudes (:mod:`.spatial`), not an alternation of T and the amplitudes per
  declination ring, which converges slowly or stops early at a biased split.
- **T on bilinear nodes** (1 deg x 1 deg, curvature-regularised, :mod:`.penalties`)
  instead of 13,500 x 720 cells of 0.027 x 0.25 deg: each legacy cell is fed by the few
  stars of one 0.25 deg ring, so it is noisy and absorbs part of their own signal (a
  transit of the only star of a ring goes into T). **Intrapixel amplitudes are smooth
  across cells** (a weak first-difference penalty).
- **Magnitudes are fitted**, not fixed to the catalogue V, so catalogue errors and colour
  terms do not become stripes in T; what the data cannot tell apart is fixed explicitly:
  the clouds are zero for the clear sky (:mod:`.clear_sky`) and the declination profile of
  T follows the catalogue on average (a weak prior, :mod:`.spatial`).
- **Extra variances** by a fixed-point solution with the leverage of the fitted means
  (:mod:`.extra_variance`), not 10 bisection steps (2 mmag resolution, biased low for cells
  of a few stars).
- **Leave-one-out clouds** when the calibration is applied (:mod:`.temporal`): a star
  never removes its own transit through the clouds. The bins are plain means
  (:mod:`.bins`).
- Points and stars are dropped for stated reasons and counted (:mod:`.ingest`,
  :mod:`.report`); memory stays bounded (scratch files per sky patch, :mod:`.patch`) and
  both cores work (:mod:`.processes`).

The modules: :mod:`.calibrate` (the whole run), :mod:`.settings`, :mod:`.errors`,
:mod:`.sky` (patches, hour angles), :mod:`.grids` (nodes, cells, pixel phase),
:mod:`.station_times`, :mod:`.ingest`, :mod:`.patch`, :mod:`.temporal`,
:mod:`.normal_equations`, :mod:`.spatial`, :mod:`.penalties`, :mod:`.clear_sky`,
:mod:`.extra_variance`, :mod:`.bins`, :mod:`.worker`, :mod:`.processes`, :mod:`.report`,
:mod:`.plots`.
"""

from mascara_actors.decorrelation.bins import BIN_DTYPE as BIN_DTYPE
from mascara_actors.decorrelation.bins import CFLAG_BITS as CFLAG_BITS
from mascara_actors.decorrelation.calibrate import calibrate_baseline as calibrate_baseline
from mascara_actors.decorrelation.errors import DecorrelationError as DecorrelationError
from mascara_actors.decorrelation.errors import NotConverged as NotConverged
from mascara_actors.decorrelation.report import CalibrationResult as CalibrationResult
from mascara_actors.decorrelation.settings import DecorrelationSettings as DecorrelationSettings

__all__ = [
    "BIN_DTYPE",
    "CFLAG_BITS",
    "CalibrationResult",
    "DecorrelationError",
    "DecorrelationSettings",
    "NotConverged",
    "calibrate_baseline",
]
