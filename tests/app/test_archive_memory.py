"""A process that reduces nights keeps the memory its frames freed, for the next frame, and
takes fresh memory without huge pages.

glibc gives blocks of tens of MB back to the system when they are freed, and the next frame
pays for fresh pages again (a tenth of an archive night's wall time). Each case runs in a
fresh process, since the allocator's settings are the process's: it frees a 256 MB array
and reads how much of it the process still holds, or writes one and reads how much of it
the kernel gave as transparent huge pages.
"""

from __future__ import annotations

import inspect
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mascara_actors.app.archive.run import _reduce_on_worker, archive_client
from mascara_actors.app.archive.scan import CameraNight
from mascara_actors.app.archive.task import NightTask

_FREED_MB = 256


def _held_after_freeing(mb: int) -> int:
    """Resident MB still held after an array of ``mb`` MB was written and freed, less what
    was held before."""
    def resident_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    before = resident_mb()
    block = np.ones(mb * 2**20 // 8)
    del block
    return round(resident_mb() - before)


def _huge_pages_mb(mb: int) -> int:
    """MB of an array of ``mb`` MB, just written, that the kernel gave as huge pages."""
    block = np.ones(mb * 2**20 // 8)
    with open("/proc/self/smaps_rollup") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:"))
    del block
    return kb // 1024


def _script(measure: Callable[[int], int]) -> str:
    """A script that prints ``measure(_FREED_MB)``."""
    return ("\nimport os\nimport numpy as np\n" + inspect.getsource(measure)
            + f"print({measure.__name__}({_FREED_MB}))\n")


_MEASURE = _script(_held_after_freeing)
_MEASURE_HUGE = _script(_huge_pages_mb)


def _stopped_task(tmp_path: Path) -> NightTask:
    """A night that does not begin (its stop file exists): only the task's process
    settings remain."""
    stop = tmp_path / "stop"
    stop.touch()
    night = CameraNight("LPC", "20260320", (tmp_path / "65344150LPC.fits",), 1, ())
    return NightTask(night, tmp_path / "out", tmp_path, ("test",), stop, tmp_path)


def _in_fresh_process(setup: str, stdin: bytes = b"", measure: str = _MEASURE) -> int:
    """What ``measure`` prints in a new interpreter that first runs ``setup``."""
    # glibc's and numpy's defaults: a LocalCluster's nanny leaves its workers' MALLOC_*
    # settings in the environment of the process that started it (an earlier test here)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES",
                                                        "NUMPY_MADVISE_HUGEPAGE")}
    done = subprocess.run([sys.executable, "-c", setup + measure], input=stdin, env=env,
                          capture_output=True, timeout=120, check=True)
    return int(done.stdout.split()[-1])


_PREPARED = ("from mascara_actors.actors.process_memory import prepare_process_memory\n"
             "assert prepare_process_memory()\n")


def test_a_reducing_process_keeps_freed_memory_where_a_plain_one_gives_it_back() -> None:
    assert _in_fresh_process("") < 32  # the default: given back at once
    assert _in_fresh_process(_PREPARED) >= _FREED_MB - 8


def test_a_reducing_process_takes_fresh_memory_without_huge_pages() -> None:
    """numpy asks for huge pages, which the kernel may compact memory to find: seconds per
    GB of fresh memory on a machine whose memory holds an archive's files."""
    if "[never]" not in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text():
        assert _in_fresh_process("", measure=_MEASURE_HUGE) > 0  # numpy's default: asked for
    assert _in_fresh_process(_PREPARED, measure=_MEASURE_HUGE) == 0


def _collected_objects(n: int) -> int:
    """Objects a full garbage collection goes through (those not frozen), after ``n`` more
    were made and freed."""
    import gc
    kept = [[i] for i in range(n)]
    del kept
    gc.collect()
    return len(gc.get_objects())


def test_a_reducing_process_leaves_the_objects_it_starts_with_out_of_collections() -> None:
    """Full garbage collections go through every object of the imported modules unless
    they are frozen when the process is prepared (2 % of a night's CPU)."""
    imports = "import mascara_actors.app.archive.night\n"
    measure = _script(_collected_objects)
    plain = _in_fresh_process(imports, measure=measure)
    prepared = _in_fresh_process(imports + _PREPARED, measure=measure)
    assert plain > 100_000
    assert prepared < plain / 10


def test_a_dask_task_keeps_freed_memory_for_the_nights_its_worker_reduces_next(
        tmp_path: Path) -> None:
    setup = ("import pickle, sys\n"
             "from mascara_actors.app.archive.run import _reduce_on_worker\n"
             "assert _reduce_on_worker(pickle.loads(sys.stdin.buffer.read())).status"
             " == 'not started'\n")
    assert _in_fresh_process(setup, pickle.dumps(_stopped_task(tmp_path))) >= _FREED_MB - 8


def _task_holds_mb(task: NightTask) -> int:
    assert _reduce_on_worker(task).status == "not started"
    return _held_after_freeing(_FREED_MB)


def test_a_local_cluster_task_thread_keeps_the_memory_it_frees(tmp_path: Path) -> None:
    """In a worker of the local cluster the task runs in a thread of the worker's pool: with
    an arena of its own, glibc unmapped the blocks it freed whatever the task asked."""
    with archive_client(workers=1) as client:
        held = client.submit(_task_holds_mb, _stopped_task(tmp_path), pure=False).result()
    assert held >= _FREED_MB - 8
