"""The exceptions of mascara-actors.

One root, :class:`MascaraError`, and a few leaves that callers handle differently. Each
message names the value, the rule it broke and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AstrometryFailed",
    "CalibrationError",
    "CameraDisconnected",
    "CameraError",
    "CameraTimeout",
    "CatalogueError",
    "ConfigError",
    "FrameError",
    "MascaraError",
    "StorageError",
    "TimeError",
]


class MascaraError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(MascaraError):
    """A configuration file is missing, malformed or holds an impossible value.

    Fix the file named in the message and start again.
    """


class TimeError(MascaraError, ValueError):
    """A time could not be interpreted (malformed date, NaN, out of range)."""


class CatalogueError(MascaraError):
    """The star catalogue is missing or unreadable."""


class FrameError(MascaraError):
    """One frame cannot be reduced (wrong shape, missing header keys, unreadable file).

    The frame is skipped and counted; the night goes on.
    """


class CalibrationError(MascaraError):
    """Calibration frames are missing or too few to build a master."""


class AstrometryFailed(MascaraError):
    """The astrometric solver did not converge; the set is flagged, not dropped."""


class StorageError(MascaraError):
    """An output file could not be written or a stored file is foreign or corrupt."""


class CameraError(MascaraError):
    """The camera misbehaved (bad reply, corrupt frame)."""


class CameraTimeout(CameraError):
    """The camera did not answer in time; retry."""


class CameraDisconnected(CameraError):
    """The camera's port or readout link went away; the driver reconnects with backoff."""
