"""Archive directories as the archive tests need them."""

from __future__ import annotations

import os
import time
from pathlib import Path


def settle(root: Path) -> None:
    """Date ``root`` and every directory under it an hour back, as an archive's are (the
    scan's memory keeps only directories that have settled)."""
    hour_ago = time.time() - 3600
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(directory, (hour_ago, hour_ago))
