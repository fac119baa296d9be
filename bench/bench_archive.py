"""Archive re-reduction of full-size camera-nights through ``mascara-actors archive``.

Four full-size simulated camera-nights (LPC and LPN, nights of 2026-03-20 and -21, from
astronomical dusk; 10 darks and ``BENCH_ARCHIVE_FRAMES`` science frames each, default 120)
are recorded once into ``BENCH_CACHE`` (default ``~/.cache/mascara-actors-bench``; 1-2 s a
frame, two at a time, not timed) and kept for later runs. The frames are Rice-compressed
``.fits.fz`` as the simulator records them; ``BENCH_ARCHIVE_FORM=.fits.gz`` records them
gzipped, as the legacy archive holds them (or ``.fits``). Then the command runs as a child
process, exactly as an observer would run it, on a LocalCluster of two workers and of one;
the wall time of each whole command (cluster start, scan, reduction, provenance, summaries,
manifest) is timed. Every frame is read once before (not timed), so that both runs find
the archive in the page cache: the figures are the reduction's, not the disk's (the first
run would otherwise read a cold archive from disk and the second a warm one). The context
gives ``host_ref_ms`` before and after the runs (:func:`bench._core.host_reference_ms`):
on a shared machine the same code runs up to twice as long at busy moments, and figures of
different moments compare roughly in proportion to it (on this 2-core machine 17 ms at its
fastest moments and 32-43 ms at its busiest, in one evening).
It also gives the user and system CPU seconds of each run's processes: the system time
(page faults, the page cache) grows most when the machine is short of free memory.
``time_split_2_workers`` says where the two-worker run's time went (:func:`time_split`):
the steady frame rate between each night's first and last reduced frame, what each night
costs besides (its masters and first solve before the first frame; its last set, nightly
combines, provenance and summary after the last), and what the run costs outside its
nights (start-up, scan, the workers' imports, the final table).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench._core import bench, figure, host_cpu, host_reference_ms
from hw.sim.night_start import choose_start_lstseq
from hw.sim.recording import record_night
from hw.sim.sky import SimulationSettings
from mascara_actors.app.archive.manifest import read_manifest
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import load_config
from mascara_actors.sidereal import slot_length_solar_s
from mascara_actors.storage.layout import event_log_path

_NIGHTS = (("LPC", "2026-03-20"), ("LPN", "2026-03-20"), ("LPC", "2026-03-21"),
           ("LPN", "2026-03-21"))
_DEFAULT_FRAMES = 120
_DEFAULT_FORM = ".fits.fz"
_FORM_SUFFIX = {".fits.fz": "", ".fits.gz": "-gz", ".fits": "-plain"}
"""Cache directory suffix per file form (the Rice nights keep their original name)."""


def _record(camera_id: str, date: str, frames: int, form: str, out: Path) -> Path:
    """Record one night into ``out`` unless it is there already (written whole: renamed)."""
    if out.is_dir():
        return out
    camera = load_config().camera(camera_id)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        for p in partial.iterdir():
            p.unlink()
        partial.rmdir()
    record_night(partial, camera, Catalogue.load(),
                 start_lstseq=choose_start_lstseq(camera, date, sun_alt_deg=-18.0),
                 n_science=frames, n_bias=0, n_dark=10, settings=SimulationSettings(seed=6),
                 compression=form)
    partial.rename(out)
    return out


def archive_nights(frames: int, form: str = _DEFAULT_FORM) -> Path:
    """The root of the four recorded nights, frames stored as ``form`` (recorded now when
    missing)."""
    cache = Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "mascara-actors-bench"))
    root = cache / (f"archive-{frames}" + _FORM_SUFFIX[form])
    root.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(2) as pool:
        jobs = [pool.submit(_record, cam, date, frames, form, root / f"{cam}-{date}")
                for cam, date in _NIGHTS]
        for job in jobs:
            job.result()
    return root


def _read_once(root: Path) -> None:
    """Read every file under ``root`` (into the page cache)."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as f:
                while f.read(1 << 24):
                    pass


def _archive(root: Path, out: Path, workers: int) -> tuple[float, tuple[float, float], str]:
    """Wall seconds, (user, system) CPU seconds of all its processes, and stderr of one
    ``mascara-actors archive`` run."""
    script = Path(sys.executable).parent / "mascara-actors"
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(script), "archive", str(root), "--out", str(out), "--workers", str(workers)],
        capture_output=True, text=True,
    )
    wall_s = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"the archive run failed (exit {done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    cpu = (round(r1.ru_utime - r0.ru_utime, 1), round(r1.ru_stime - r0.ru_stime, 1))
    return wall_s, cpu, done.stderr


def time_split(out: Path, wall_s: float) -> dict[str, float]:
    """Where the wall time ``wall_s`` of an archive run into ``out`` went.

    ``frame_phase_x_per_core``: x real time of each worker while its nights reduce frames
    steadily (a night's frames over the time from its first to its last reduced frame,
    scaled by n / (n - 1)); ``night_fixed_s``: the mean time a night takes besides its
    frames at that rate; ``outside_nights_s``: the run's wall time less the busiest
    worker's nights.
    """
    (manifest,) = sorted((out / "manifests").glob("archive-*.csv"))[-1:]
    frames = steady_s = fixed_s = 0.0
    per_worker: dict[str, float] = {}
    rows = [r for r in read_manifest(manifest) if r["status"] == "reduced"]
    for row in rows:
        with event_log_path(out / (row["night"] + row["camera"])).open() as log:
            times = [e["time"] for e in map(json.loads, log)
                     if e["kind"] == "FrameReducedEvent"]
        n, span = len(times), max(times) - min(times)
        steady = span * n / (n - 1)
        frames, steady_s = frames + n, steady_s + steady
        fixed_s += float(row["wall_s"]) - steady
        per_worker[row["worker"]] = per_worker.get(row["worker"], 0.0) + float(row["wall_s"])
    return {"frame_phase_x_per_core": round(frames * slot_length_solar_s() / steady_s, 2),
            "night_fixed_s": round(fixed_s / len(rows), 2),
            "outside_nights_s": round(wall_s - max(per_worker.values()), 2)}


@bench("archive_x_realtime_per_core")
def run():
    """Figure: archive_x_realtime_per_core (x) - science frames x 6.38 s over the wall time
    of ``mascara-actors archive`` with two workers, divided by the two workers (bar 30);
    figure: archive_scaling_2_workers (x) - its throughput over that of one worker
    (bar 1.8)."""
    frames = int(os.environ.get("BENCH_ARCHIVE_FRAMES", _DEFAULT_FRAMES))
    form = os.environ.get("BENCH_ARCHIVE_FORM", _DEFAULT_FORM)
    if form not in _FORM_SUFFIX:
        raise SystemExit(f"BENCH_ARCHIVE_FORM={form!r}: use one of {sorted(_FORM_SUFFIX)}")
    root = archive_nights(frames, form)
    _read_once(root)
    total = frames * len(_NIGHTS)
    ref_before = host_reference_ms()
    with tempfile.TemporaryDirectory(prefix="bench_archive_") as tmp:
        two_s, two_cpu, stderr = _archive(root, Path(tmp) / "two", 2)
        split = time_split(Path(tmp) / "two", two_s)
        one_s, one_cpu, _ = _archive(root, Path(tmp) / "one", 1)
    ref_after = host_reference_ms()
    summary = [line for line in stderr.splitlines() if "real time per worker" in line]
    context = {"nights": len(_NIGHTS), "frames": total, "frames_per_night": frames,
               "form": form, "wall_2_workers_s": round(two_s, 1),
               "wall_1_worker_s": round(one_s, 1), "cpu_count": os.cpu_count(),
               "host_ref_ms": [ref_before, ref_after], **host_cpu(),
               "cpu_user_sys_2_workers_s": two_cpu, "cpu_user_sys_1_worker_s": one_cpu,
               "time_split_2_workers": split, "summary": summary[0] if summary else ""}
    yield figure("archive_x_realtime_per_core",
                 round(total * slot_length_solar_s() / two_s / 2, 2), "x", bar=30, **context)
    yield figure("archive_scaling_2_workers", round(one_s / two_s, 2), "x", bar=1.8, **context)
