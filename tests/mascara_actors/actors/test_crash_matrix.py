"""Nothing lost, whatever stops the night (issue 13).

A small recorded night (two sets of six frames of the committed night, with its darks) is
replayed by the real command in its own process group and stopped at every phase boundary
(:mod:`mascara_actors.faults` names them; the process signals its own group as the phase is
reached): with SIGKILL, then with SIGTERM and SIGINT, and with a real full disk (a tmpfs
too small for the night). Each time a plain re-run must end with the fast and slow nightly
files and the binned images byte-identical to an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mascara_actors.faults import FAULT_ENV, fill_file_system
from tests.mascara_actors.actors.conftest import NIGHT

# The module's fixtures run dozens of short nights: more than the default per-test timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SET1, SET2 = 1306884, 1306885
SCIENCE = [*range(65344244, 65344250), *range(65344250, 65344256)]  # 6 frames in each set
PHASES = [
    f"fast-saved:{SET1}",
    f"binning:{SET1}",
    f"slow-saving:{SET1}",
    f"fast-saved:{SET2}",
    f"binning:{SET2}",
    f"slow-saving:{SET2}",
    "combined:fast",
    "combined:slow",
    "nightly-done:night",
]
_TIMEOUT_S = 300


@dataclasses.dataclass(frozen=True)
class Run:
    returncode: int
    stderr: str


@pytest.fixture(scope="session")
def small_night(tmp_path_factory) -> Path:
    """Ten darks and two sets of six science frames of the committed night."""
    night = tmp_path_factory.mktemp("small_night")
    for path in sorted(NIGHT.glob("*Cdark.fits.fz")):
        shutil.copyfile(path, night / path.name)
    for lstseq in SCIENCE:
        name = f"{lstseq}C.fits.fz"
        shutil.copyfile(NIGHT / name, night / name)
    return night


def replay(night: Path, out: Path, fault: str | None = None) -> Run:
    """``mascara-actors --replay`` in a process group of its own (so the fault's signal to
    the group reaches the command and its workers, and nothing else)."""
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault is not None:
        env[FAULT_ENV] = fault
    script = Path(sys.executable).parent / "mascara-actors"
    proc = subprocess.run(
        [str(script), "--replay", str(night), "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=_TIMEOUT_S,
        start_new_session=True,
    )
    return Run(proc.returncode, proc.stderr)


def products(out: Path) -> dict[str, bytes]:
    """The night's products, by path below ``out``: the nightly files and binned images."""
    found = {}
    for pattern in ("*/lightcurves/*.hdf5", "*/binned/bin_*.fits"):
        for path in sorted(out.glob(pattern)):
            found[str(path.relative_to(out))] = path.read_bytes()
    return found


@pytest.fixture(scope="session")
def reference(small_night, tmp_path_factory) -> dict[str, bytes]:
    """The uninterrupted night's products."""
    out = tmp_path_factory.mktemp("reference")
    run = replay(small_night, out)
    assert run.returncode == 0, run.stderr
    found = products(out)
    assert sorted(Path(p).name for p in found) == [
        "bin_65344225C.fits",
        "bin_65344275C.fits",
        "fast_20260320LPC.hdf5",
        "slow_20260320LPC.hdf5",
    ]
    return found


def assert_same_products(out: Path, reference: dict[str, bytes]) -> None:
    got = products(out)
    assert sorted(got) == sorted(reference)
    for name, data in reference.items():
        assert got[name] == data, f"{name} differs from the uninterrupted run's"
    assert not list(out.glob("*/tmp/*.hdf5")), "per-set files left after the nightly combine"
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"


def assert_one_clear_line(run: Run) -> None:
    assert "Traceback" not in run.stderr, run.stderr
    assert "ExceptionGroup" not in run.stderr, run.stderr


SCENARIOS = [(sig, target) for sig in ("SIGKILL", "SIGTERM", "SIGINT") for target in PHASES]


@pytest.fixture(scope="module")
def stopped_nights(small_night, tmp_path_factory) -> dict[tuple[str, str], tuple[Path, Run, Run]]:
    """Every (signal, phase): a run stopped there, then a plain re-run (two at a time)."""
    root = tmp_path_factory.mktemp("stopped")

    def scenario(case: tuple[str, str]) -> tuple[Path, Run, Run]:
        sig, target = case
        out = root / f"{sig}-{target.replace(':', '-')}"
        stopped = replay(small_night, out, f"{target}={sig}")
        return out, stopped, replay(small_night, out)

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(SCENARIOS, pool.map(scenario, SCENARIOS), strict=True))


@pytest.mark.parametrize(("sig", "target"), SCENARIOS)
def test_stopped_at_every_phase_then_resumed(stopped_nights, reference, sig, target) -> None:
    out, stopped, resumed = stopped_nights[(sig, target)]
    signum = signal.Signals[sig]
    if signum == signal.SIGKILL:
        assert stopped.returncode == -signal.SIGKILL, stopped.stderr  # the phase came
    else:
        assert stopped.returncode == 128 + signum, stopped.stderr
        assert f"stopped by {sig}" in stopped.stderr
        assert "run the same command again" in stopped.stderr
        assert_one_clear_line(stopped)
    assert resumed.returncode == 0, resumed.stderr
    assert_one_clear_line(resumed)
    assert_same_products(out, reference)


# --- a full disk, for real ------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A real file system of ``size`` bytes mounted at ``path`` (we run as root)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


FULL_AT = ["start", *PHASES]


@pytest.fixture(scope="module")
def full_disk_nights(small_night, tmp_path_factory) -> Iterator[dict[str, tuple[Path, Run, Run]]]:
    """For each write of the night: the disk fills up just before it (``start``: before the
    night, so the first write fails), the run ends; the filler is removed and the same
    command run again."""
    root = tmp_path_factory.mktemp("full_disk")
    found = {}
    with tmpfs(root / "disk", 256 << 20) as disk:
        for where in FULL_AT:
            out = disk / where.replace(":", "-")
            filler = disk / f"filler-{where.replace(':', '-')}"
            if where == "start":
                fill_file_system(filler)
                run = replay(small_night, out)
            else:
                run = replay(small_night, out, f"{where}=FILL:{filler}")
            filler.unlink()
            found[where] = (out, run, replay(small_night, out))
        yield found


@pytest.mark.parametrize("where", FULL_AT)
def test_disk_full_at_each_write_then_resumed(full_disk_nights, reference, where) -> None:
    out, full, again = full_disk_nights[where]
    assert full.returncode in (1, 2), full.stderr  # the night says it is not complete
    assert "No space left on device" in full.stderr, full.stderr
    assert_one_clear_line(full)
    assert again.returncode == 0, again.stderr
    assert_same_products(out, reference)
