"""Readout link throughput: full-size frames over the loopback socket, verified on arrival."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import numpy as np

from bench._core import bench, figure
from hw.readout import FrameHeader, ReadoutReceiver, encode_frame

#: Full readout of a MASCARA camera, overscan included (rows, columns), pixels.
FULL_SHAPE = (2720, 4072)
N_FRAMES = 20
_ROOT = Path(__file__).resolve().parent.parent


def serve_frames(n_frames: int, shape: tuple[int, int] = FULL_SHAPE) -> None:
    """Sender process: listen on 127.0.0.1, print the port, stream ``n_frames`` frames.

    The pixels are seeded noise; each frame is encoded (payload CRC included) as it is sent,
    like a camera would.
    """
    pixels = np.random.default_rng(1).integers(800, 1200, size=shape, dtype=np.uint16)
    with socket.create_server(("127.0.0.1", 0)) as server:
        print(server.getsockname()[1], flush=True)
        conn, _ = server.accept()
        with conn:
            for k in range(n_frames):
                header = FrameHeader(47_000_000 + k, 2460000.5, 6.38, 1.0, -10.0, *shape)
                head, payload = encode_frame(header, pixels)
                conn.sendall(head)
                conn.sendall(payload)
            conn.recv(1)  # wait for the receiver to close


async def _receive(port: int, n_frames: int) -> tuple[float, int, int]:
    async with ReadoutReceiver("127.0.0.1", port, max_buffered_frames=2) as rx:
        t0 = time.perf_counter()
        nbytes = 0
        for _ in range(n_frames):
            frame = await rx.frames.receive()
            nbytes += frame.pixels.nbytes
        elapsed = time.perf_counter() - t0
        dropped = rx.stats.dropped
    return elapsed, nbytes, dropped


@bench("readout_throughput_mb_s")
def run():
    """Figure: readout_throughput_mb_s (MB/s) - 20 full-size uint16 frames from a sender
    process over 127.0.0.1 TCP into ReadoutReceiver (trio backend), each verified (header and
    payload CRC-32) and turned into an array."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")])
    )
    code = f"from bench.bench_readout import serve_frames; serve_frames({N_FRAMES})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=_ROOT, env=env, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        elapsed, nbytes, dropped = anyio.run(_receive, port, N_FRAMES, backend="trio")
    finally:
        proc.wait(30)
    if dropped:
        raise RuntimeError(f"{dropped} frame(s) failed verification on a clean loopback link")
    frame_mb = FULL_SHAPE[0] * FULL_SHAPE[1] * 2 / 1e6
    yield figure(
        "readout_throughput_mb_s",
        round(nbytes / 1e6 / elapsed, 1),
        "MB/s",
        shape=list(FULL_SHAPE),
        frame_mb=round(frame_mb, 2),
        n_frames=N_FRAMES,
        ms_per_frame=round(1000 * elapsed / N_FRAMES, 1),
        realtime_need_mb_s=round(frame_mb / 6.38, 2),
    )
