"""What stops a transit search."""

from __future__ import annotations

from mascara_actors.errors import MascaraError

__all__ = ["SearchError"]


class SearchError(MascaraError):
    """Nothing can be searched (no readable file of the camera, no star with enough points)."""
