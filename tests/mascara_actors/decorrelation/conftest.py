"""Shared simulated nights for the calibration tests (session scope: each is made once).

- ``calibrated``: the issue's Done-when baseline (15 nights, > 2,000 stars), calibrated;
- ``small``: three short nights of 300 stars, for the simulator, the baselines and the bad
  input; ``small_baseline`` merges them once; ``damaged``: a copy with NaN, negative and
  flagged points, calibrated once for the tests of what the fit drops.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from mascara_actors.decorrelation import (
    CalibrationResult,
    DecorrelationSettings,
    calibrate_baseline,
)
from mascara_actors.lcsim import LightCurveSimulation, SimulationReport, simulate_lightcurves
from mascara_actors.storage.baseline import BaselineReport, build_baseline

# 15 nights, mostly clear, some cloudy, one overcast in the middle; then the night the live
# calibration is tried on, cloudy
WEATHER = ("clear", "cloudy", "clear", "clear", "clear", "clear", "cloudy", "overcast",
           "clear", "clear", "cloudy", "clear", "clear", "clear", "clear", "cloudy")


@dataclasses.dataclass
class Calibrated:
    sim: SimulationReport
    baseline: Path
    out: Path
    result: CalibrationResult
    next_night: Path
    """The nightly file of the night after the baseline's (not in it)."""


@pytest.fixture(scope="session")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Calibrated:
    """A 15-night LPC baseline: every star of the camera with dec 26-34 (full star density,
    > 2,000 stars), one set of 50 exposures in 25 simulated over whole nights (so the stars
    cross the whole field), 4 % of the stars with 1 % transits; calibrated on two workers
    with the default settings (but for the points a star needs: it has 25 times fewer).
    A 16th night is simulated with them, for the live calibration."""
    root = tmp_path_factory.mktemp("calib")
    sim = LightCurveSimulation(camera="LPC", nights=16, seed=11, every_set=25,
                               dec_range=(26.0, 34.0), weather=WEATHER, compression=None,
                               transit_fraction=0.04, transit_depth=(0.01, 0.01))
    report = simulate_lightcurves(root / "nights", sim)
    nights = sorted(report.nightly_files)
    base = build_baseline(nights[:15], root / "baseline.hdf5", compression=None)
    result = calibrate_baseline(base.output, root / "out",
                                DecorrelationSettings(workers=2, min_points=40))
    return Calibrated(report, base.output, root / "out", result, nights[15])


@dataclasses.dataclass
class Small:
    sim: SimulationReport
    root: Path
    sim_settings: LightCurveSimulation

    def copy_nights(self, dest: Path) -> list[Path]:
        """The nightly files copied under ``dest`` (same relative layout)."""
        out = []
        for f in self.sim.nightly_files:
            path = dest / f.parent.parent.name / "lightcurves" / f.name
            path.parent.mkdir(parents=True)
            shutil.copy(f, path)
            out.append(path)
        return out


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Small:
    """Three short nights (20 minutes) of 300 stars of dec 26-34 (a few per sky patch)."""
    root = tmp_path_factory.mktemp("small")
    sim = LightCurveSimulation(camera="LPC", nights=3, seed=3, stars=300, hours=0.35,
                               offset_hours=4.0, dec_range=(26.0, 34.0),
                               weather=("clear", "cloudy", "clear"), compression=None)
    return Small(simulate_lightcurves(root / "nights", sim), root, sim)


@pytest.fixture(scope="session")
def small_baseline(small: Small) -> BaselineReport:
    """The small nights merged (read only: copy it before changing it)."""
    return build_baseline(small.sim.nightly_files, small.root / "baseline.hdf5",
                          compression=None)


def quick_settings(**changes: object) -> DecorrelationSettings:
    """Settings for the small inputs: one worker, fewer points per star, looser tolerance."""
    base = DecorrelationSettings(workers=1, min_points=30, tol=1e-3, max_iter=20)
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass
class Damaged:
    expected: dict[str, int]
    """Points of the damaged nights, counted here by reason: flagged, unflagged NaN,
    unflagged non-positive flux."""
    result: CalibrationResult


def _count_bad_points(files: list[Path]) -> dict[str, int]:
    counts = {"flagged": 0, "nan": 0, "non_positive": 0}
    for path in files:
        with h5py.File(path, "r") as f:
            for name in f["lightcurves"]:
                d = f["lightcurves"][name][()]
                flagged = (d["pflag"] != 0) | (d["aflag"] != 0)
                finite = np.isfinite(d["flux0"])
                counts["flagged"] += int(np.count_nonzero(flagged))
                counts["nan"] += int(np.count_nonzero(~flagged & ~finite))
                counts["non_positive"] += int(np.count_nonzero(~flagged & finite
                                                               & (d["flux0"] <= 0)))
    return counts


@pytest.fixture(scope="session")
def damaged(small: Small, tmp_path_factory: pytest.TempPathFactory) -> Damaged:
    """The small nights with NaN, negative and flagged points in 30 stars of the second
    night, calibrated with stars needing 120 good points (some have fewer)."""
    root = tmp_path_factory.mktemp("damaged")
    files = small.copy_nights(root)
    with h5py.File(files[1], "r+") as f:
        lcs = f["lightcurves"]
        for k, name in enumerate(list(lcs)[:30]):
            data = lcs[name][()]
            data["flux0"][::7] = np.nan if k % 2 else -5.0
            data["pflag"][1::9] = 16
            lcs[name][...] = data
    base = build_baseline(files, root / "b.hdf5", compression=None)
    result = calibrate_baseline(base.output, root / "out", quick_settings(min_points=120))
    return Damaged(_count_bad_points(files), result)
