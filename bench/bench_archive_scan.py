"""Scanning a large archive: the first step of ``mascara-actors archive``, on a million frames."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._core import bench, figure

_PER_DIRECTORY = 5_000
_NIGHT = Path(__file__).resolve().parents[1] / "replay_data" / "night"
_CHILD = """
import json, pickle, resource, sys, time
from pathlib import Path
from mascara_actors.app.archive.scan import scan_archive
from mascara_actors.app.archive.scan_memory import ScanMemory
from mascara_actors.app.archive.task import NightTask
from mascara_actors.config import load_config
root, out = Path(sys.argv[1]), Path(sys.argv[2])
config = load_config()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
memory = ScanMemory.load(out, config.directory, root)
scan = scan_archive(root, config, memory=memory)
memory.save()
seconds = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tasks = sum(len(pickle.dumps(NightTask(n, out, config.directory, ("archive",),
                                       Path("/stop"), root)))
            for n in scan.nights)
print(json.dumps({"seconds": seconds, "peak_mb": after / 1024,
                  "peak_growth_mb": (after - before) / 1024,
                  "tasks_mb": tasks / 1e6, "files": scan.files, "nights": len(scan.nights),
                  "unchanged": scan.unchanged, "directories": scan.directories}))
"""


def _archive(frames: int) -> Path:
    """``frames`` raw frame names in directories of 5,000 (made once): in each, symbolic
    links to the committed night's frames, whose headers the scan reads, and links named as
    later frames of the night to its last frame, which it does not."""
    from mascara_actors.rawframe import parse_raw_filename

    cache = Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "mascara-actors-bench"))
    root = cache / f"scan-{frames}"
    if root.is_dir():
        return root
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    night = sorted(p for p in _NIGHT.iterdir() if parse_raw_filename(p.name) is not None)
    last = night[-1]
    parsed = parse_raw_filename(last.name)
    assert parsed is not None
    for d in range(-(-frames // _PER_DIRECTORY)):
        directory = partial / f"d{d:04d}"
        directory.mkdir(parents=True)
        n = min(_PER_DIRECTORY, frames - d * _PER_DIRECTORY)
        for path in night[:n]:
            os.symlink(path, directory / path.name)
        for k in range(n - len(night)):
            os.symlink(last, directory / f"{parsed[0] + 1 + k:08d}{parsed[1]}.fits.fz")
    # dated an hour back, as an archive's directories are: the scan's memory keeps only
    # directories that have settled
    hour_ago = time.time() - 3600
    for directory in [*partial.iterdir(), partial]:
        os.utime(directory, (hour_ago, hour_ago))
    partial.rename(root)
    return root


@bench("archive_scan_s")
def run():
    """Figure: archive_scan_s (s) - ``scan_archive`` of ``BENCH_SCAN_FRAMES`` raw frames
    (default 1,000,000) in directories of 5,000, in a fresh process, the scan's memory
    loaded before and saved after (the tree of symbolic links is made once in
    ``BENCH_CACHE``, about 30 s). Context: that process's peak memory and its growth during
    the scan, and the pickled size of the night tasks it would submit, MB: none may grow
    with the frames (a camera-night names where its frames lie, not each frame; a million
    paths took 335 MB before). Figure: archive_rescan_s (s) - the same in another fresh
    process, as a resumed run scans: with the first scan's memory, no directory read again.
    """
    frames = int(os.environ.get("BENCH_SCAN_FRAMES", 1_000_000))
    root = _archive(frames)
    with tempfile.TemporaryDirectory(prefix="bench_scan_") as out:
        first, again = (_scan(root, Path(out)) for _ in range(2))
        memory_mb = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file()) / 1e6
    yield figure("archive_scan_s", round(first["seconds"], 2), "s", frames=first["files"],
                 nights=first["nights"], peak_mb=round(first["peak_mb"], 1),
                 peak_growth_mb=round(first["peak_growth_mb"], 1),
                 tasks_mb=round(first["tasks_mb"], 3))
    yield figure("archive_rescan_s", round(again["seconds"], 2), "s", frames=again["files"],
                 nights=again["nights"], directories=again["directories"],
                 unchanged=again["unchanged"], memory_mb=round(memory_mb, 3),
                 peak_mb=round(again["peak_mb"], 1))


def _scan(root: Path, out: Path) -> dict[str, Any]:
    """What the child process measured of one scan of ``root``, its memory in ``out``."""
    done = subprocess.run([sys.executable, "-c", _CHILD, str(root), str(out)],
                          capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
