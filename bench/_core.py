"""Registry of benchmarks; each one yields figures as dicts."""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Figure = dict[str, Any]
BenchFn = Callable[[], Iterable[Figure]]

BENCHES: dict[str, BenchFn] = {}


def bench(name: str) -> Callable[[BenchFn], BenchFn]:
    """Register a benchmark under ``name`` (the name of its first figure)."""

    def register(fn: BenchFn) -> BenchFn:
        BENCHES[name] = fn
        return fn

    return register


def figure(name: str, value: float, unit: str, **context: Any) -> Figure:
    """One figure: ``{"bench": name, "value": value, "unit": unit, ...context}``."""
    return {"bench": name, "value": value, "unit": unit, **context}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def tree_rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` and all its descendants now, MB (from /proc;
    0 once it is gone)."""
    total_kb, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total_kb / 1024.0


def emit(fig: Figure) -> None:
    """Print one figure as a JSON line."""
    sys.stdout.write(json.dumps(fig) + "\n")
    sys.stdout.flush()
