"""Fixtures shared by the hw tests: a small recorded night of the simulated sky."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hw.sim.effects import Transit
from hw.sim.recording import RecordedNightInfo, record_night
from hw.sim.sky import SimulatedFrame, SimulatedSky, SimulationSettings
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import SensorConfig, load_config
from mascara_actors.sidereal import SiteReference, slot_length_solar_s

NIGHT_UTC = "2026-03-20T23:00:00"
N_SCIENCE, N_BIAS, N_DARK, N_FLAT = 12, 2, 2, 1


def mini_sensor() -> SensorConfig:
    """A 512 x 340 crop of the KAI-11002 with 20/12 px overscan strips."""
    crop = load_config().sensor("crop1024")
    return dataclasses.replace(
        crop, name="mini", nx=552, ny=364, x0=20, y0=12, xsize=512, ysize=340
    )


@dataclasses.dataclass(frozen=True)
class Recorded:
    info: RecordedNightInfo
    sky: SimulatedSky
    settings: SimulationSettings
    first_science: SimulatedFrame
    transit_hip: int
    progress: tuple[tuple[int, int], ...]


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """One small recorded night of LPC on the ``mini`` sensor (Rice-compressed): 2 bias,
    2 dark, 1 flat and 12 science frames, with a transit (shared: never modify its
    directory; copy files out of it)."""
    camera, sensor, catalogue = load_config().camera("LPC"), mini_sensor(), Catalogue.load()
    start = int(SiteReference().local_sidereal_time(NIGHT_UTC).lstseq)
    plain = SimulatedSky(camera, catalogue, sensor=sensor)
    first = plain.exposure(start)
    hip = int(first.truth["id"][np.argmax(first.truth["flux"])])
    transit = Transit(
        hip=hip,
        depth=0.02,
        duration_h=3.5 * slot_length_solar_s() / 3600.0,
        epoch_jd=plain.header(start + 6).jdmid,
    )
    settings = SimulationSettings(transits=(transit,))
    calls: list[tuple[int, int]] = []
    info = record_night(
        tmp_path_factory.mktemp("recorded") / "night",
        camera,
        catalogue,
        start_lstseq=start,
        n_science=N_SCIENCE,
        sensor=sensor,
        settings=settings,
        n_bias=N_BIAS,
        n_dark=N_DARK,
        n_flat=N_FLAT,
        progress=lambda done, total: calls.append((done, total)),
    )
    sky = SimulatedSky(camera, catalogue, sensor=sensor, settings=settings)
    return Recorded(info, sky, settings, first, hip, tuple(calls))
