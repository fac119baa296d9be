"""Light-curve-level simulator: nightly fast files of one camera with a known truth.

Rendering images is far too slow for the many nights a calibration needs, so this simulator
writes what the reduction would have measured: for the real Hipparcos stars of a camera
(positions through the camera model, at the 6.4 sidereal-second cadence of the lstseq clock,
inside the configured night windows) it computes fluxes in both fast apertures and writes
them as the pipeline does, so the files are exactly the pipeline's:
``OUT/{night}{SITE}{CAM}/lightcurves/fast_{night}{SITE}{CAM}.hdf5``, and a truth file
``OUT/truth_{SITE}{CAM}.fits``. Memory stays bounded: one set of 50 exposures is made at a
time.

The instrumental magnitude of star ``s`` on exposure ``t`` (before noise) is::

    m = V_s + offset_s + T(x, y, alt) + ipx(x, y) + clouds(patch_s, t) + var_s(t) + transit_s(t)

One module per concept: :mod:`.settings` (what to simulate), :mod:`.schedule` (the slots of
each night), :mod:`.stars` (the stars, offsets, variables, transits), :mod:`.systematics`
(T and the intrapixel modulation), :mod:`.clouds` (the weather), :mod:`.transits`,
:mod:`.noise` (the photometry's fluxes, noise and flags), :mod:`.night` (one night, set by
set), :mod:`.truth_file` (what was injected, written and read back), :mod:`.simulate` (the
whole run) and :mod:`.scoring` (how well a calibration recovers the truth).
"""

from mascara_actors.atmosphere import airmass as airmass
from mascara_actors.lcsim.clouds import WEATHER as WEATHER
from mascara_actors.lcsim.noise import NoiseModel as NoiseModel
from mascara_actors.lcsim.settings import LightCurveSimulation as LightCurveSimulation
from mascara_actors.lcsim.settings import SimulationReport as SimulationReport
from mascara_actors.lcsim.simulate import simulate_lightcurves as simulate_lightcurves
from mascara_actors.lcsim.systematics import TruthModel as TruthModel
from mascara_actors.lcsim.transits import TransitSpec as TransitSpec
from mascara_actors.lcsim.transits import transit_shape as transit_shape
from mascara_actors.lcsim.truth_file import Truth as Truth
from mascara_actors.lcsim.truth_file import read_truth as read_truth
from mascara_actors.lcsim.truth_file import truth_file_path as truth_file_path

__all__ = [
    "WEATHER",
    "LightCurveSimulation",
    "NoiseModel",
    "SimulationReport",
    "TransitSpec",
    "Truth",
    "TruthModel",
    "airmass",
    "read_truth",
    "simulate_lightcurves",
    "transit_shape",
    "truth_file_path",
]
