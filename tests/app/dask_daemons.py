"""A `dask scheduler` and `dask worker`s as separate processes on loopback, as a cluster's
operator starts them (the archive tests that need real daemons, not a LocalCluster)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from distributed import Client
from distributed.utils import json_load_robust

DASK = str(Path(sys.executable).parent / "dask")
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")},
       "PYTHONWARNINGS": "ignore"}
"""The tests' environment, without the allocator settings a LocalCluster's nanny leaves in
the environment of the process that started it (an earlier test)."""

Worker = tuple[list[str], dict[str, str | None]]
"""A worker's extra arguments and extra environment (None leaves a variable out)."""


@contextlib.contextmanager
def dask_cluster(tmp_path: Path, workers: list[Worker],
                 scheduler_env: dict[str, str] | None = None,
                 ) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A `dask scheduler` (``scheduler_env`` added to its environment) and one `dask worker`
    per entry of ``workers``, all in before it yields (address, [scheduler, *workers]);
    every process is killed after."""
    scheduler_file = tmp_path / "scheduler.json"
    common = ["--no-dashboard", "--host", "127.0.0.1"]
    daemons = [subprocess.Popen(
        [DASK, "scheduler", "--port", "0", "--scheduler-file", str(scheduler_file), *common],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**ENV, **(scheduler_env or {})}, start_new_session=True)]
    try:
        for args, env in workers:
            daemons.append(subprocess.Popen(
                [DASK, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                 *common, *args],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={k: v for k, v in {**ENV, **env}.items() if v is not None},
                start_new_session=True))
        # the file exists, empty or half written, a moment before it can be read
        address = str(json_load_robust(str(scheduler_file), timeout=60)["address"])
        # every worker in before the run starts, so that each is given a night
        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(len(workers), timeout=120)
        yield address, daemons
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                os.killpg(daemon.pid, signal.SIGKILL)
            daemon.communicate()
