"""Small JSON state files, written atomically.

(The dark table, the other small state file, is :mod:`mascara_actors.calibration.dark_table`.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from mascara_actors.atomic_files import atomic_write_text
from mascara_actors.errors import StorageError

__all__ = ["read_json_state", "write_json_state"]


def write_json_state(path: str | Path, state: Mapping[str, object]) -> Path:
    """Write a small JSON state file atomically (sorted keys, so equal states give equal files)."""
    try:
        text = json.dumps(dict(state), sort_keys=True, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"state for {path} is not plain JSON ({exc}): use numbers, "
                           "strings, lists and dicts") from exc
    return atomic_write_text(Path(path), text + "\n")


def read_json_state(path: str | Path, default: Mapping[str, object] | None = None
                    ) -> dict[str, object]:
    """Read a JSON state file; ``default`` (or ``{}``) when it does not exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return dict(default or {})
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StorageError(f"state file {path} is not valid JSON ({exc}); it was written "
                           "atomically, so something else changed it: remove it") from exc
    if not isinstance(value, dict):
        raise StorageError(f"state file {path} holds {type(value).__name__}, not an object")
    return value
