"""The simulated sky as the frame source of the simulated camera device.

The device (:mod:`hw.sim.device`) renders its frames through a pluggable factory named
``"module:factory"`` (:mod:`hw.sim.exposure`); :func:`sky_renderer` is that factory for
realistic frames: it builds one :class:`~hw.sim.sky.SimulatedSky` (real Hipparcos catalogue,
the configured camera model, detector effects) and returns ``render(lstseq, meta)``, which
gives exactly ``SimulatedSky(...).exposure(lstseq).raw`` (the full readout, overscan
included, uint16 ADU). :func:`sky_device_config` builds a
:class:`~hw.sim.device_config.DeviceConfig` whose frame shape and camera letter agree with
the sky's sensor and camera, so the two cannot drift apart::

    cfg = sky_device_config(workdir, camera_id="LPC", sensor="crop512", speed=10.0)
    async with DeviceProcess(cfg) as dev, SerialCamera(dev.tty_path, dev.readout_address) as cam:
        ...

The factory runs once, inside the device process, before the device publishes its ready
file: loading the catalogue and warming the Sun/Moon tables (a few seconds) happens there,
not on the first exposure.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from hw.protocol import FrameType
from hw.sim.device_config import DeviceConfig
from hw.sim.exposure import ExposureMeta, Renderer
from hw.sim.sky import SimulatedSky, SimulationSettings, misaligned_model
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.errors import ConfigError
from mascara_actors.sidereal import REFERENCE_SITE, jd_now

__all__ = ["SKY_RENDER", "build_sky", "sky_device_config", "sky_renderer"]

log = logging.getLogger(__name__)

SKY_RENDER = "hw.sim.sky_renderer:sky_renderer"
"""The ``DeviceConfig.render`` value that selects :func:`sky_renderer`."""


def build_sky(
    *,
    seed: int = 1,
    camera: str = "LPC",
    sensor: str | None = "crop512",
    config_dir: str | Path | None = None,
    vmax: float = 10.5,
    clouds: bool = False,
    trail_probability: float = 0.0,
    pointing_error_deg: float = 0.0,
    catalogue: Catalogue | None = None,
) -> SimulatedSky:
    """The :class:`~hw.sim.sky.SimulatedSky` that :func:`sky_renderer` renders through.

    Parameters
    ----------
    seed
        Simulation seed (noise, hot pixels, clouds, trails).
    camera
        Camera id in ``config_dir/cameras.toml``, e.g. ``"LPC"``.
    sensor
        Sensor name in ``cameras.toml`` (``"crop512"`` gives 544 x 400 pixel frames);
        None for the camera's own sensor (full size).
    config_dir
        Configuration directory; default the repository's ``config/``.
    vmax
        Faintest star rendered, V mag.
    clouds, trail_probability
        Drifting clouds; chance per frame of a satellite trail.
    pointing_error_deg
        The true pointing is off the nominal one by this much in altitude and azimuth,
        degrees (as ``mascara-actors simulate --pointing-error``).
    catalogue
        The star catalogue; default ``Catalogue.load()``.

    Raises
    ------
    ConfigError
        For an unknown camera or sensor.
    """
    config = load_config(config_dir)
    cam = config.camera(camera)
    sens = config.sensor(sensor) if sensor is not None else cam.sensor
    cat = catalogue if catalogue is not None else Catalogue.load()
    true_model = misaligned_model(cam, sens, pointing_error_deg) if pointing_error_deg else None
    settings = SimulationSettings(
        seed=int(seed), vmax=vmax, clouds=clouds, trail_probability=trail_probability
    )
    return SimulatedSky(cam, cat, true_model=true_model, sensor=sens, settings=settings)


def sky_renderer(
    shape: tuple[int, int],
    seed: int = 1,
    *,
    camera: str = "LPC",
    sensor: str | None = "crop512",
    config_dir: str | None = None,
    vmax: float = 10.5,
    clouds: bool = False,
    trail_probability: float = 0.0,
    pointing_error_deg: float = 0.0,
    follow_ccdtemp: bool = False,
    warm_jd: float | None = None,
) -> Renderer:
    """Device frame source: science exposures of the simulated sky.

    Called once by the device as ``factory(shape=(ny, nx), seed=seed, **render_options)``.

    Parameters
    ----------
    shape
        The device's frame shape (ny, nx), pixels; must equal the sensor's full readout.
    seed
        Simulation seed (the device's seed).
    camera, sensor, config_dir, vmax, clouds, trail_probability, pointing_error_deg
        As for :func:`build_sky`.
    follow_ccdtemp
        False (default): every frame is ``sky.exposure(lstseq).raw``, with the dark current
        of the simulation's fixed CCD temperature. True: the dark current follows the
        device's CCD temperature, ``sky.exposure(lstseq, ccdtemp_c=meta.ccdtemp_c).raw``
        (the temperature the frame header reports).
    warm_jd
        JD (UTC) near which the device will expose; the Sun/Moon table is computed for it
        at start-up. Default: now.

    Returns
    -------
    callable
        ``render(lstseq, meta) -> ndarray[uint16] of shape (ny, nx)``: a science, dark, bias
        or flat exposure as ``meta.frame_type`` asks (shutter open, closed, closed with zero
        exposure, or a uniformly lit twilight flat). If rendering fails
        the error is logged and an empty array is returned, which the device drops and
        reports as ``DROPPED <lstseq> render`` (a failing frame never stops the device).

    Raises
    ------
    ConfigError
        If ``shape`` is not the sensor's full readout, or the camera or sensor is unknown.
    """
    sky = build_sky(
        seed=seed,
        camera=camera,
        sensor=sensor,
        config_dir=config_dir,
        vmax=vmax,
        clouds=clouds,
        trail_probability=trail_probability,
        pointing_error_deg=pointing_error_deg,
    )
    full = (sky.sensor.ny, sky.sensor.nx)
    if tuple(shape) != full:
        raise ConfigError(
            f"device frame shape {tuple(shape)} differs from the full readout {full} (ny, nx) "
            f"of sensor {sky.sensor.name!r}: set DeviceConfig.shape to {full} "
            "(sky_device_config does)"
        )
    t0 = time.perf_counter()
    jd = warm_jd if warm_jd is not None else jd_now()
    # The first Sun/Moon look-up loads the IERS tables and fills a day of the ephemeris
    # table (seconds): do it now rather than on the first exposure.
    sky.sky_level_e(sky.header(int(REFERENCE_SITE.local_sidereal_time(jd).lstseq)))
    log.info(
        "sky renderer ready: %s on %s, seed %d, %d stars to V %.1f (warm-up %.1f s)",
        sky.camera.id,
        sky.sensor.name,
        seed,
        len(sky.stars),
        vmax,
        time.perf_counter() - t0,
    )

    def render(lstseq: int, meta: ExposureMeta) -> np.ndarray:
        try:
            ccdtemp = meta.ccdtemp_c if follow_ccdtemp else None
            kind = FrameType(meta.frame_type).imagetyp
            return sky.exposure(int(lstseq), kind, ccdtemp_c=ccdtemp).raw
        except Exception:  # the device must go on: it drops this frame as a render failure
            log.exception("rendering lstseq %d failed", lstseq)
            return np.empty((0, 0), np.uint16)

    return render


def sky_device_config(
    workdir: str | Path,
    *,
    camera_id: str = "LPC",
    sensor: str | None = "crop512",
    config_dir: str | Path | None = None,
    seed: int = 1,
    **device_options: Any,
) -> DeviceConfig:
    """A device configuration that renders the simulated sky of one camera.

    The frame shape and camera letter are taken from the configuration, so they always
    match the sky's sensor and camera.

    Parameters
    ----------
    workdir
        The device's working directory (pty link, ready file, log).
    camera_id, sensor, config_dir, seed
        As for :func:`build_sky`.
    **device_options
        Other :class:`~hw.sim.device_config.DeviceConfig` fields (``speed``, ``start_jd``,
        ``readout_s``, ...); ``render_options`` entries are passed on to
        :func:`sky_renderer` (``vmax``, ``follow_ccdtemp``, ...).

    Raises
    ------
    ConfigError
        For an unknown camera or sensor.
    """
    config = load_config(config_dir)
    cam = config.camera(camera_id)
    sens = config.sensor(sensor) if sensor is not None else cam.sensor
    options = dict(device_options.pop("render_options", {}))
    options.update(camera=camera_id, sensor=sens.name)
    if config_dir is not None:
        options["config_dir"] = str(config_dir)
    if "warm_jd" not in options and device_options.get("start_jd") is not None:
        options["warm_jd"] = float(device_options["start_jd"])
    return DeviceConfig(
        workdir=str(workdir),
        camera=cam.letter,
        shape=(sens.ny, sens.nx),
        seed=seed,
        render=SKY_RENDER,
        render_options=options,
        **device_options,
    )
