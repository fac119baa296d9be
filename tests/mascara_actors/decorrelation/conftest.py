"""Shared simulated nights for the calibration tests (session scope: made once)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mascara_actors.decorrelation import (
    CalibrationResult,
    DecorrelationSettings,
    calibrate_baseline,
)
from mascara_actors.lcsim import LightCurveSimulation, SimulationReport, simulate_lightcurves
from mascara_actors.storage.baseline import build_baseline

# 15 nights, mostly clear, some cloudy, one overcast in the middle
WEATHER = ("clear", "cloudy", "clear", "clear", "clear", "clear", "cloudy", "overcast",
           "clear", "clear", "cloudy", "clear", "clear", "clear", "clear")


@dataclasses.dataclass
class Calibrated:
    sim: SimulationReport
    baseline: Path
    out: Path
    result: CalibrationResult


@pytest.fixture(scope="session")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Calibrated:
    """A 15-night LPC baseline: every star of the camera with dec 26-34 (full star density,
    > 2,000 stars), one set of 50 exposures in 25 simulated over whole nights (so the stars
    cross the whole field), 4 % of the stars with 1 % transits; calibrated on two workers."""
    root = tmp_path_factory.mktemp("calib")
    sim = LightCurveSimulation(camera="LPC", nights=15, seed=11, every_set=25,
                               dec_range=(26.0, 34.0), weather=WEATHER, compression=None,
                               transit_fraction=0.04, transit_depth=(0.01, 0.01))
    report = simulate_lightcurves(root / "nights", sim)
    base = build_baseline(report.nightly_files, root / "baseline.hdf5", compression=None)
    # one set in 25: a star has 25 times fewer points than in a real baseline
    result = calibrate_baseline(base.output, root / "out",
                                DecorrelationSettings(workers=2, min_points=40))
    return Calibrated(report, base.output, root / "out", result)


@dataclasses.dataclass
class Small:
    sim: SimulationReport
    root: Path


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Small:
    """Three short nights (20 minutes) of 300 stars: quick inputs for the bad-input tests."""
    root = tmp_path_factory.mktemp("small")
    sim = LightCurveSimulation(camera="LPC", nights=3, seed=3, stars=300, hours=0.35,
                               offset_hours=4.0, weather=("clear", "cloudy", "clear"),
                               compression=None)
    return Small(simulate_lightcurves(root / "nights", sim), root)


def quick_settings(**changes: object) -> DecorrelationSettings:
    """Settings for the small inputs: one worker, fewer points per star, looser tolerance."""
    base = DecorrelationSettings(workers=1, min_points=30, tol=1e-3, max_iter=20)
    return dataclasses.replace(base, **changes)
