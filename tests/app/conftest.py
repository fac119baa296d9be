"""Fixtures of the station tests: each module names its ``config_dir`` (the night's
configuration); the config, the night's window and the catalogue follow from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mascara_actors.catalogue import Catalogue
from mascara_actors.config import Config, load_config
from mascara_actors.night_window import NightWindow, night_window
from tests.stations import NOON_JD


@pytest.fixture(scope="module")
def config(config_dir: Path) -> Config:
    return load_config(config_dir)


@pytest.fixture(scope="module")
def window(config: Config) -> NightWindow:
    return night_window(config.camera("LPC").site, NOON_JD, config.reduction.night)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()
