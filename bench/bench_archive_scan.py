"""Scanning a large archive: the first step of ``mascara-actors archive``, on a million frames."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench._core import bench, figure

_PER_DIRECTORY = 5_000
_NIGHT = Path(__file__).resolve().parents[1] / "replay_data" / "night"
_CHILD = """
import json, pickle, resource, sys, time
from pathlib import Path
from mascara_actors.app.archive.scan import scan_archive
from mascara_actors.app.archive.task import NightTask
from mascara_actors.config import load_config
config = load_config()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
scan = scan_archive(Path(sys.argv[1]), config)
seconds = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tasks = sum(len(pickle.dumps(NightTask(n, Path("/out"), config.directory, ("archive",),
                                       Path("/stop"), Path(sys.argv[1]))))
            for n in scan.nights)
print(json.dumps({"seconds": seconds, "peak_mb": after / 1024,
                  "peak_growth_mb": (after - before) / 1024,
                  "tasks_mb": tasks / 1e6, "files": scan.files, "nights": len(scan.nights)}))
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
    partial.rename(root)
    return root


@bench("archive_scan_s")
def run():
    """Figure: archive_scan_s (s) - ``scan_archive`` of ``BENCH_SCAN_FRAMES`` raw frames
    (default 1,000,000) in directories of 5,000, in a fresh process (the tree of symbolic
    links is made once in ``BENCH_CACHE``, about 30 s). Context: that process's peak memory
    and its growth during the scan, and the pickled size of the night tasks it would
    submit, MB: none may grow with the frames (a camera-night names where its frames lie,
    not each frame; a million paths took 335 MB before)."""
    frames = int(os.environ.get("BENCH_SCAN_FRAMES", 1_000_000))
    root = _archive(frames)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(root)], capture_output=True,
                          text=True, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    yield figure("archive_scan_s", round(out["seconds"], 2), "s", frames=out["files"],
                 nights=out["nights"], peak_mb=round(out["peak_mb"], 1),
                 peak_growth_mb=round(out["peak_growth_mb"], 1),
                 tasks_mb=round(out["tasks_mb"], 3))
