"""The configuration of the simulated camera device, and the files it publishes.

:class:`DeviceConfig` crosses a process boundary (the parent passes it as JSON to the device
process), so it holds JSON values only. The frame source is named, not passed:
``render="module:factory"`` (see :mod:`hw.sim.exposure`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hw.sim.faults import FAULTS
from mascara_actors.sidereal import slot_length_solar_s

__all__ = ["READY_FILE", "TTY_LINK", "DeviceConfig"]

READY_FILE = "device.json"
"""Written (atomically) into the work directory once the device is ready:
``{"tty", "pts", "readout_host", "readout_port", "pid"}``."""
TTY_LINK = "ttyCAM"
"""Stable symlink in the work directory to the device's current pty (like udev's
``/dev/serial/by-id`` links); re-pointed when the device comes back after a ``vanish``."""


@dataclass(frozen=True, kw_only=True)
class DeviceConfig:
    """Everything the simulated device needs; JSON-serialisable (it crosses a process).

    Attributes
    ----------
    workdir : str
        Directory for the pty link ``ttyCAM``, the ready file ``device.json`` and the log.
    start_jd : float or None
        Device clock at start-up, JD (UTC); None for the host's current time.
    speed : float
        Device seconds per real second (> 0).
    camera : str
        Camera letter reported by IDN (N, E, S, W or C).
    shape : tuple of int
        Frame shape (ny, nx), pixels, overscan included.
    exptime_s : float or None
        Exposure time, seconds (solar); None for the whole slot (6.3825 s).
    readout_s : float
        Readout duration, device seconds (solar); must be shorter than a slot.
    ambient_c, start_temp_c : float
        Ambient temperature and CCD temperature at start-up, degrees Celsius.
    tau_s : float
        Time constant of the CCD temperature, device seconds.
    max_cooling_c : float
        Largest cooling below ambient, kelvin.
    temp_event_interval_s : float
        Device seconds between ``EVT TEMP`` events; 0 disables them.
    render : str
        Frame source ``"module:factory"`` (see :mod:`hw.sim.exposure`).
    render_options : dict
        Extra keyword arguments for the factory (JSON values).
    seed : int
        Seed of the frame source and of the garbage generator.
    faults : dict
        Faults armed at start-up, name to count (or seconds for ``mute``/``vanish``); see
        :mod:`hw.sim.faults`.
    readout_port : int
        TCP port of the readout server on 127.0.0.1; 0 picks a free one.
    max_queued_frames : int
        Frames held for the readout link; beyond it the oldest is dropped (counted).
    """

    workdir: str
    start_jd: float | None = None
    speed: float = 1.0
    camera: str = "C"
    shape: tuple[int, int] = (64, 96)
    exptime_s: float | None = None
    readout_s: float = 1.0
    ambient_c: float = 15.0
    start_temp_c: float | None = None
    tau_s: float = 120.0
    max_cooling_c: float = 45.0
    temp_event_interval_s: float = 60.0
    render: str = "hw.sim.exposure:seeded_pattern"
    render_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    faults: dict[str, float] = field(default_factory=dict)
    readout_port: int = 0
    max_queued_frames: int = 4

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed={self.speed} must be a finite number > 0")
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"shape={self.shape} must be (ny, nx) with both >= 1")
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))
        slot = slot_length_solar_s()
        if self.exptime_s is not None and not 0 < self.exptime_s <= slot:
            raise ValueError(f"exptime_s={self.exptime_s} must be in (0, {slot:.4f}] s")
        if not 0 <= self.readout_s < slot:
            raise ValueError(f"readout_s={self.readout_s} must be in [0, {slot:.4f}) s")
        if self.tau_s <= 0:
            raise ValueError(f"tau_s={self.tau_s} must be > 0 device seconds")
        unknown = set(self.faults) - FAULTS
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; choose from {sorted(FAULTS)}")

    @property
    def exposure_s(self) -> float:
        """Exposure time of a light, dark or flat frame, seconds (solar)."""
        return self.exptime_s if self.exptime_s is not None else slot_length_solar_s()

    def to_json(self) -> str:
        """The configuration as a JSON string."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DeviceConfig:
        """Inverse of :meth:`to_json`."""
        values = json.loads(text)
        values["shape"] = tuple(values["shape"])
        return cls(**values)
