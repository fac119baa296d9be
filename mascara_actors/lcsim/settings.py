"""What to simulate (:class:`LightCurveSimulation`), checked before anything is written."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from mascara_actors.errors import ConfigError
from mascara_actors.lcsim.clouds import WEATHER
from mascara_actors.lcsim.noise import NoiseModel
from mascara_actors.lcsim.systematics import TruthModel
from mascara_actors.lcsim.transits import TransitSpec

__all__ = ["LightCurveSimulation", "SimulationReport"]


@dataclass(frozen=True)
class LightCurveSimulation:
    """What to simulate."""

    camera: str = "LPC"
    sensor: str | None = None
    """Sensor of config/cameras.toml (default the camera's; ``crop1024`` is the central
    1024 x 680 pixels: a small camera with the full star density, for tests)."""
    nights: int = 15
    start: dt.date = dt.date(2026, 1, 8)
    """Date (UTC, of the sunset) of the first night."""
    stars: int | None = None
    """Simulate this many stars, drawn at random among the camera's stars (default all)."""
    seed: int = 1
    hours: float | None = None
    """Simulate only this many hours of each night (default the whole night window)."""
    offset_hours: float = 0.0
    """With ``hours``: start this long after the night starts."""
    every_set: int = 1
    """Simulate one set of 50 exposures in ``every_set`` (1: all of them). More gives small
    test data with full sets whose stars still cross the whole field."""
    weather: tuple[str, ...] | None = None
    """One of :data:`~mascara_actors.lcsim.clouds.WEATHER` per night; default drawn at
    random (60 % clear, 30 % cloudy, 10 % overcast)."""
    vmax: float = 8.4
    dec_range: tuple[float, float] | None = None
    """Simulate only the camera's stars with declination in this range (degrees): the full
    star density of a part of the field, for small test data."""
    offset_sigma: float = 0.02
    """Scatter of the per-star offsets from the catalogue V (catalogue error, passband),
    mag."""
    variable_fraction: float = 0.04
    transit_fraction: float = 0.01
    transit_depth: tuple[float, float] = (0.005, 0.02)
    """Range of the random transits' depths (fraction of the flux)."""
    transits: tuple[TransitSpec, ...] = ()
    """Transits to inject besides the random ones (a star listed here gets only this)."""
    flag_fraction: float = 0.002
    """Fraction of points flagged at random (bad sky pixel)."""
    compression: str | None = "config"
    """HDF5 compression of the nightly files: ``"gzip"``, ``"lzf"``, None, or ``"config"``
    for the configured one (``[storage] compression``)."""
    truth_model: TruthModel | None = None
    """Default: :class:`~mascara_actors.lcsim.systematics.TruthModel` for the camera's
    chip."""
    noise: NoiseModel = field(default_factory=NoiseModel)

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first setting that cannot work."""
        if self.nights < 1:
            raise ConfigError(f"nights={self.nights}: simulate at least one night")
        if self.weather is not None:
            bad = [w for w in self.weather if w not in WEATHER]
            if bad or len(self.weather) != self.nights:
                raise ConfigError(f"weather={self.weather!r}: give one of {WEATHER} per night "
                                  f"({self.nights} nights)")
        if int(self.every_set) != self.every_set or self.every_set < 1:
            raise ConfigError(f"every_set={self.every_set}: must be a positive whole number")
        if self.hours is not None and not 0 < self.hours <= 24:
            raise ConfigError(f"hours={self.hours}: give the hours of each night to simulate, "
                              "more than 0 and at most 24 (leave it out for whole nights)")
        if self.offset_hours < 0:
            raise ConfigError(f"offset_hours={self.offset_hours}: must not be negative")
        if self.offset_hours and self.hours is None:
            raise ConfigError(f"offset_hours={self.offset_hours} is for part of a night: give "
                              "hours too (whole nights start when the night starts)")
        if self.stars is not None and self.stars < 1:
            raise ConfigError(f"stars={self.stars}: simulate at least one star")


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """What :func:`~mascara_actors.lcsim.simulate_lightcurves` wrote."""

    outdir: Path
    nightly_files: tuple[Path, ...]
    truth_file: Path
    nstars: int
    nrecords: int
