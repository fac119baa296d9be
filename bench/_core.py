"""Registry of benchmarks; each one yields figures as dicts."""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mascara_actors.numpy_dispatch import this_cpu

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


def host_reference_ms(repeats: int = 7) -> float:
    """Median ms of a fixed piece of work shaped like a frame's reduction: sorting 5,000
    rows of 1,280 float32 (a frame's sky annuli) and calibrating a full-size 16-bit frame
    with a float32 dark. The same code on the same machine takes longer when other programs
    share its cores, caches and memory; a figure taken beside this one can be compared with
    another taken at another time in proportion, on the same kind of CPU (:func:`host_cpu`):
    on AMD Zen 4 the sort takes half the time with numpy's AVX2 path, which the package
    chooses there since December 2026 (50-60 ms before at the busiest, 29-32 ms after)."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    rows = rng.normal(1000.0, 30.0, (5000, 1280)).astype(np.float32)
    frame = rng.integers(0, 65535, (2672, 4008), dtype=np.uint16)
    dark = rng.normal(300.0, 5.0, frame.shape).astype(np.float32)
    out = np.empty(frame.shape, np.float32)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.sort(rows, axis=1)
        out[...] = frame
        out -= dark
        times.append(time.perf_counter() - t0)
    return round(1e3 * float(np.median(times)), 1)


def host_cpu() -> dict[str, object]:
    """The CPU's model name and whether numpy runs its AVX-512 (X86_V4) code paths."""
    from numpy._core._multiarray_umath import __cpu_features__

    return {"cpu": this_cpu().get("model name", ""),
            "numpy_avx512": bool(__cpu_features__.get("X86_V4", False))}


def emit(fig: Figure) -> None:
    """Print one figure as a JSON line."""
    sys.stdout.write(json.dumps(fig) + "\n")
    sys.stdout.flush()
