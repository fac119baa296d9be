"""Run benchmarks: ``python -m bench [NAME ...]``; one JSON line per figure on stdout."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import bench
from bench._core import BENCHES, emit


def _load_all() -> None:
    for mod in pkgutil.iter_modules(bench.__path__):
        if mod.name.startswith("bench_"):
            importlib.import_module(f"bench.{mod.name}")


def main(argv: list[str] | None = None) -> int:
    _load_all()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the mascara-actors benchmarks; each figure is one JSON line.",
    )
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default all): {sorted(BENCHES)}"
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHES)}")
    for name in args.names or sorted(BENCHES):
        for fig in BENCHES[name]():
            emit(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
