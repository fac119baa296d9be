"""What the simulated device asks of its frame source, and the default source.

The device renders each exposed slot through a factory named ``"module:factory"``
(:attr:`DeviceConfig.render <hw.sim.device_config.DeviceConfig>`): it is called once, in the
device process, as ``factory(shape=(ny, nx), seed=seed, **render_options)`` and returns a
:data:`Renderer`, ``render(lstseq, meta) -> ndarray[uint16] of shape (ny, nx)``, where
``meta`` is the :class:`ExposureMeta` of the slot. Naming the factory (rather than importing
it here) keeps the device free of the sky: :mod:`hw.sim.sky_renderer` depends on this
module, never the reverse.

The default is :func:`seeded_pattern`: seeded noise with the lstseq written into the first
four pixels, cheap enough for protocol tests.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hw.protocol import FrameType
from hw.sim.device_config import DeviceConfig

__all__ = ["ExposureMeta", "Renderer", "decode_pattern_lstseq", "load_renderer", "seeded_pattern"]


@dataclass(frozen=True, slots=True)
class ExposureMeta:
    """What the frame source is told about one exposure.

    Attributes
    ----------
    lstseq : int
        The slot.
    jd_start : float
        Exposure start, JD (UTC).
    exptime_s : float
        Exposure time, seconds (solar).
    ccdtemp_c : float
        CCD temperature during the exposure, degrees Celsius.
    camera : str
        Camera letter.
    frame_type : str
        A :class:`~hw.protocol.FrameType` value: ``LIGHT`` (science), ``DARK`` and ``BIAS``
        (shutter closed), ``FLAT`` (twilight flat field).
    """

    lstseq: int
    jd_start: float
    exptime_s: float
    ccdtemp_c: float
    camera: str
    frame_type: str = FrameType.LIGHT


Renderer = Callable[[int, ExposureMeta], np.ndarray]
"""``render(lstseq, meta) -> ndarray[uint16] of shape (ny, nx)``."""


def seeded_pattern(*, shape: tuple[int, int], seed: int = 0, level: int = 1000) -> Renderer:
    """Default frame source: cheap deterministic frames that tests can verify.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx), pixels; nx must be >= 4.
    seed : int
        Noise seed; frame ``s`` is the same for the same ``(seed, s)``.
    level : int
        Mean level, ADU (noise is uniform within +-100 ADU).

    Returns
    -------
    callable
        ``render(lstseq, meta)``: uint16 ADU; pixels ``[0, 0:4]`` hold the lstseq in
        16-bit words, least significant first (see :func:`decode_pattern_lstseq`).
    """
    ny, nx = shape
    if nx < 4:
        raise ValueError(f"seeded_pattern needs nx >= 4 to encode the lstseq, got shape {shape}")

    def render(lstseq: int, meta: ExposureMeta) -> np.ndarray:
        rng = np.random.default_rng([seed, lstseq])
        img = rng.integers(level - 100, level + 100, size=(ny, nx), dtype=np.uint16)
        img[0, :4] = [(lstseq >> (16 * k)) & 0xFFFF for k in range(4)]
        return img

    return render


def decode_pattern_lstseq(pixels: np.ndarray) -> int:
    """The lstseq written by :func:`seeded_pattern` into ``pixels[0, 0:4]``."""
    words = pixels[0, :4].astype(np.int64)
    return int(sum(int(w) << (16 * k) for k, w in enumerate(words)))


def load_renderer(cfg: DeviceConfig) -> Renderer:
    """Import ``cfg.render`` (``"module:factory"``) and call the factory once.

    Raises
    ------
    ValueError
        If ``cfg.render`` is not ``"module:factory"``.
    """
    module_name, _, attr = cfg.render.partition(":")
    if not attr:
        raise ValueError(f"render={cfg.render!r} must be 'module:factory'")
    factory: Callable[..., Renderer] = getattr(importlib.import_module(module_name), attr)
    return factory(shape=cfg.shape, seed=cfg.seed, **cfg.render_options)
