"""A stand-in for a camera's process under the station supervisor, for the supervisor's quick
tests: it speaks the channel of :mod:`mascara_actors.app.camera_channel` without a camera.

``python fake_camera.py CAMERA FRAMES --supervisor-fd FD``: a status line, then one
``FrameReducedEvent`` every 50 ms (lstseq 1000, 1001 ...) until FRAMES are sent (exit 0);
``pause`` holds the frames, ``resume`` lets them go on, other commands are answered with
what they were; SIGINT exits 130 at once, as a stopped night does. A last argument
``incomplete`` (its night over, a product missing) or ``lost`` (its camera lost mid-night)
makes it exit 1 instead of 0 after its frames.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

from mascara_actors.app.camera_channel import (
    decode_command_line,
    encode_event,
    encode_reply,
    encode_status,
)
from mascara_actors.messages import FrameReducedEvent


def main() -> int:
    camera, frames, _, fd = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    sock = socket.socket(fileno=fd)
    lock = threading.Lock()
    paused = threading.Event()

    def send(line: bytes) -> None:
        with lock:
            sock.sendall(line)

    def commands() -> None:
        for raw in sock.makefile("rb"):
            command = decode_command_line(raw)
            if command.cmd == "pause":
                paused.set()
            elif command.cmd == "resume":
                paused.clear()
            send(encode_reply(command.id, result=f"{camera} {command.cmd}"))
        os._exit(3)  # the supervisor is gone

    threading.Thread(target=commands, daemon=True).start()
    send(encode_status({"phase": "science", "pid": os.getpid(), "night_dir": None}))
    sent = 0
    while sent < frames:
        time.sleep(0.05)
        if paused.is_set():
            continue
        event = FrameReducedEvent(
            lstseq=1000 + sent, nstars=100, nflagged=1, latency_s=0.1, timings={},
            sky=500.0, ccdtemp=-20.0,
        )
        send(encode_event(event))
        sent += 1
    ending = sys.argv[5] if len(sys.argv) > 5 else ""
    over = ending != "lost"
    send(encode_status({"phase": "night done", "pid": os.getpid(), "night_over": over}))
    return 1 if ending else 0


if __name__ == "__main__":
    sys.exit(main())
