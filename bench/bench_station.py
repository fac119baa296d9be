"""The station service of issue #16: event latency at a console, and the supervisor's CPU.

``mascara-actors station`` runs as a child process, exactly as an operator would start it:
five simulated cameras (LPN, LPE, LPS, LPW, LPC) on the ``crop512`` sensor, their clocks
``BENCH_STATION_SPEED`` times faster than real time (default 3: 2.1 s a frame per camera,
five frames per 2.1 s at the station, three times the real rate), each night ended after
``BENCH_STATION_FRAMES`` science frames (default 60). Its configuration is a copy of
``config/`` with a short night made as the tests make theirs (3 frames per calibration kind,
the night between Sun altitudes of -10 degrees, a camera timeout of 600 s so that a loaded
machine does not end a night). It is made here with library code (``load_config`` finds the
directory, the keys are edited in the copy) rather than imported from ``tests/``: no
benchmark imports the test suite.

One console-like client (:class:`~mascara_actors.control.ControlClient`) attaches to
``OUT/state/station/control.sock`` as soon as it exists and reads every event.

What the latency measures: a :class:`~mascara_actors.messages.FrameReducedEvent`'s ``time``
is the wall clock (``time.time()``, UNIX seconds) at which the event was made in the
camera's pipeline process, by its reducer actor, once the worker process had returned the
frame's reduction (records ready) and the ``FrameReduced`` message had been handed on to the
channel feeding the saver and the binner; it is not the instant the worker finished (the
worker-to-pipeline hop precedes it). From there the event goes through the pipeline's event
channel to the summariser, which applies it to the night state; the camera process's uplink
forwards it over the socket pair to the supervisor, which decodes it, applies it and
publishes it on the control socket; the client decodes the line and hands it to
``events()``. The figure is the median, over every FrameReducedEvent of the five cameras, of
the wall clock when ``events()`` yielded it minus its ``time`` (same machine, same clock).

The supervisor's CPU: the station's own pid (the supervisor and the control socket's server
run in that one process; the camera processes, their devices and workers are children, not
counted) is read from ``/proc/PID/stat`` (``utime + stime`` of all its threads, without its
children's). The window is the night: from the control socket appearing (the imports and
start-up before it are given as context) to the station closing the client's connection,
which it does when every camera's night is over and the supervisor's run ends. What the
process does after that (the station report of the night, plots included, made once at
dawn) is not the supervisor's or the socket's work: it is given as context
(``after_night_cpu_s``, read once more from the zombie before it is reaped). The share is the
window's CPU time over its wall time, in % of one core. At ``--speed S`` the per-frame part
of that work comes S times faster than at a real night (the periodic part does not).

``BENCH_STATION_PROFILE=FILE`` runs the supervisor under cProfile (``python -m cProfile -o
FILE``) to see where its CPU goes; the figures are then inflated by the profiler.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import numpy as np

from bench._core import Figure, bench, figure
from mascara_actors.config import load_config
from mascara_actors.control import ControlClient, Dropped

_CAMERAS = ("LPN", "LPE", "LPS", "LPW", "LPC")
_SENSOR = "crop512"
_DEFAULT_FRAMES = 60
_DEFAULT_SPEED = 3.0
_SAMPLE_S = 0.1
_QUICK = 3
_BAR_LATENCY_S = 0.2
_BAR_SHARE_PCT = 2.0


def _quick_config(directory: Path) -> Path:
    """A copy of the repository's config with a short night (see the module docstring)."""
    dst = directory / "config"
    shutil.copytree(load_config().directory, dst)
    toml = dst / "reduction.toml"
    text = toml.read_text()
    values: dict[str, float] = {
        **{f"{p}_{k}": _QUICK for p in ("n", "min") for k in ("bias", "dark", "flat")},
        "calibration_gap_slots": 3,
        "sun_alt_start_deg": -10.0,
        "sun_alt_stop_deg": -10.0,
        "camera_timeout_s": 600.0,
    }
    for key, value in values.items():
        text, n = re.subn(rf"(?m)^{key}\s*=\s*[-0-9.]+", f"{key} = {value}", text)
        if n != 1:
            raise RuntimeError(f"{toml}: no single `{key} = ...` line to edit")
    toml.write_text(text)
    load_config(dst)  # still valid
    return dst


def _stat(pid: int) -> tuple[str, int] | None:
    """State letter and own CPU clock ticks (utime + stime, children not included) of
    ``pid``; None once it is gone (reaped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[11]) + int(fields[12])


@dataclass
class _Seen:
    """What the client and the /proc sampler saw of the night."""

    latencies: list[float] = field(default_factory=list)
    reduction_latencies: list[float] = field(default_factory=list)
    per_camera: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    status_pid: int = 0
    ready_at: float = 0.0
    ready_ticks: int = 0
    closed_at: float = 0.0
    closed_ticks: int = 0
    ended_at: float = 0.0
    end_ticks: int = 0
    load_at_ready: tuple[float, float, float] = (0.0, 0.0, 0.0)


async def _watch(pid: int, sock: Path, timeout_s: float) -> _Seen:
    seen = _Seen()
    with anyio.fail_after(timeout_s):
        while not sock.exists():
            st = _stat(pid)
            if st is None or st[0] == "Z":
                raise RuntimeError("the station ended before its control socket was made")
            await anyio.sleep(0.05)
        st = _stat(pid)
        assert st is not None
        seen.ready_at, seen.ready_ticks = time.time(), st[1]
        seen.load_at_ready = os.getloadavg()

        async def listen(client: ControlClient) -> None:
            async for item in client.events():
                received = time.time()
                if isinstance(item, Dropped):
                    seen.dropped += item.count
                    continue
                event = item.event
                kind = str(event.get("kind"))
                seen.kinds[kind] += 1
                if kind == "FrameReducedEvent":
                    seen.latencies.append(received - float(event["time"]))
                    seen.reduction_latencies.append(float(event["latency_s"]))
                    seen.per_camera[str(item.camera)] += 1
            # the station closed the socket: its supervisor's run is over
            st = _stat(pid)
            seen.closed_at = time.time()
            seen.closed_ticks = st[1] if st is not None else seen.end_ticks

        async def sample() -> None:
            while True:
                st = _stat(pid)
                if st is None:
                    raise RuntimeError("the station was reaped before its last CPU reading")
                seen.ended_at, seen.end_ticks = time.time(), st[1]
                if st[0] == "Z":
                    return
                await anyio.sleep(_SAMPLE_S)

        async with ControlClient(sock) as client, anyio.create_task_group() as tg:
            tg.start_soon(listen, client)
            tg.start_soon(sample)
            status = (await client.send("status")).unwrap()
            seen.status_pid = int(status["station"]["pid"])
        # the listener ends when the station closes the socket (the nights are over), the
        # sampler at the process's exit (after the station report of the night)
    return seen


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@bench("station_event_latency_s")
def run() -> Iterator[Figure]:
    """Figure: station_event_latency_s (s) - median time from a frame reduced (its
    FrameReducedEvent's ``time``) to its event at an attached console, five cameras (bar
    0.2 s); figure: station_supervisor_cpu_share (% of one core) - CPU of the supervisor
    process (control socket included, camera processes not) over the night (bar 2 %).
    """
    frames = int(os.environ.get("BENCH_STATION_FRAMES", _DEFAULT_FRAMES))
    speed = float(os.environ.get("BENCH_STATION_SPEED", _DEFAULT_SPEED))
    profile = os.environ.get("BENCH_STATION_PROFILE")
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    # science at speed S: 6.4 s / S a frame; calibrations, combine and a loaded machine on top
    timeout_s = 600.0 + 3 * frames * 6.4 / speed
    with tempfile.TemporaryDirectory(prefix="bench_station_") as tmp_name:
        tmp = Path(tmp_name)
        config_dir = _quick_config(tmp)
        out = tmp / "out"
        sock = out / "state" / "station" / "control.sock"
        python = [sys.executable]
        if profile:
            python += ["-m", "cProfile", "-o", str(Path(profile).resolve())]
        cmd = [
            *python, "-m", "mascara_actors.cli", "--config", str(config_dir), "station",
            "--cameras", ",".join(_CAMERAS), "--sensor", _SENSOR, "--frames", str(frames),
            "--speed", repr(speed), "--out", str(out),
        ]
        err_path = tmp / "station.err"
        t0 = time.time()
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
            try:
                seen = anyio.run(_watch, proc.pid, sock, timeout_s)
                code = proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        stderr = _tail(err_path)
        station_log = _tail(out / "state" / "station" / "station.log", 6000)
        if code not in (0, 1):
            raise RuntimeError(f"the station failed (exit {code}):\n{stderr}\n{station_log}")
        if code == 1:  # the nights are over, the station report after them failed
            print(f"station exit 1 (its report after the nights):\n{stderr}", file=sys.stderr)
        outcome = [
            m[1] for line in station_log.splitlines()
            if (m := re.search(r"station: (LP[A-Z]: .*)", line))
        ]
        print("station outcome:\n  " + "\n  ".join(outcome), file=sys.stderr, flush=True)
    if seen.status_pid != proc.pid:
        raise RuntimeError(f"measured pid {proc.pid}, the station says it is {seen.status_pid}")
    if not seen.latencies:
        raise RuntimeError("no FrameReducedEvent reached the client")

    lat = np.asarray(seen.latencies)
    wall_s = seen.closed_at - seen.ready_at
    cpu_s = (seen.closed_ticks - seen.ready_ticks) / ticks_per_s
    events = sum(seen.kinds.values())
    context = {
        "cameras": ",".join(_CAMERAS),
        "sensor": _SENSOR,
        "frames": frames,
        "speed": speed,
        "night_wall_s": round(wall_s, 1),
        "events": events,
        "events_per_s": round(events / wall_s, 2),
        "load_avg_at_start": [round(x, 2) for x in seen.load_at_ready],
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "station_exit": code,
        "profiled": bool(profile),
    }
    yield figure(
        "station_event_latency_s",
        round(float(np.median(lat)), 4),
        "s",
        bar=_BAR_LATENCY_S,
        p95_s=round(float(np.percentile(lat, 95)), 4),
        max_s=round(float(lat.max()), 4),
        min_s=round(float(lat.min()), 4),
        n_events=int(lat.size),
        n_expected=frames * len(_CAMERAS),
        per_camera=dict(sorted(seen.per_camera.items())),
        dropped=seen.dropped,
        reduction_latency_median_s=round(statistics.median(seen.reduction_latencies), 3),
        **context,
    )
    yield figure(
        "station_supervisor_cpu_share",
        round(100.0 * cpu_s / wall_s, 3),
        "% of one core",
        bar=_BAR_SHARE_PCT,
        cpu_s=round(cpu_s, 2),
        wall_s=round(wall_s, 1),
        cpu_ms_per_event=round(1000.0 * cpu_s / max(events, 1), 3),
        startup_cpu_s=round(seen.ready_ticks / ticks_per_s, 2),
        startup_wall_s=round(seen.ready_at - t0, 1),
        after_night_cpu_s=round((seen.end_ticks - seen.closed_ticks) / ticks_per_s, 2),
        after_night_wall_s=round(seen.ended_at - seen.closed_at, 1),
        pid=proc.pid,
        **context,
    )
