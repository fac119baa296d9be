"""The channel between the station supervisor and one camera's process: the wire format.

The supervisor makes a Unix socket pair for each start of a camera's process and passes one
end to it (``mascara-actors live --supervisor-fd FD``; no other descriptor is inherited).
Over it go newline-delimited JSON objects, at most :data:`MAX_LINE_BYTES` bytes a line.

Camera process to supervisor:

``{"event": {...}}``
    An event of the night, as :func:`mascara_actors.messages.to_json` writes it in
    ``logs/events.jsonl``, in the order the night's state applied it.
``{"status": {"phase": ..., "link": ..., ...}}``
    What the events do not say (the station's phase, the camera link in words, the night's
    directory), sent when it changes.
``{"reply": 3, "ok": true, "result": ...}`` / ``{"reply": 3, "ok": false, "error": "..."}``
    The answer to command 3.

Supervisor to camera process:

``{"id": 3, "cmd": "pause"}``
    One of :data:`CAMERA_COMMANDS`.

Stopping is not a command: the supervisor sends SIGINT, and the camera process stops its
night for a restart as ``live`` does on Ctrl-C. A camera process whose channel closes (its
supervisor died) stops its night the same way, so no night is left running unsupervised.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from mascara_actors.errors import MascaraError
from mascara_actors.messages import Event, from_json, to_json

__all__ = [
    "CAMERA_COMMANDS",
    "MAX_LINE_BYTES",
    "CameraCommand",
    "ChannelError",
    "CommandLine",
    "EventLine",
    "ReplyLine",
    "StatusLine",
    "decode_camera_line",
    "decode_command_line",
    "encode_command",
    "encode_event",
    "encode_reply",
    "encode_status",
    "finite",
]

MAX_LINE_BYTES = 1 << 20
"""Longest line either side sends, bytes (an event is well under 1 kB)."""

CameraCommand = Literal["pause", "resume", "take_darks", "end_night"]
"""What the supervisor asks of a camera process."""

CAMERA_COMMANDS: tuple[CameraCommand, ...] = get_args(CameraCommand)


class ChannelError(MascaraError):
    """A line of the channel that breaks its format (a bug of the other side: logged)."""


@dataclass(frozen=True, slots=True)
class EventLine:
    event: Event


@dataclass(frozen=True, slots=True)
class StatusLine:
    status: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReplyLine:
    id: int
    ok: bool
    result: Any = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class CommandLine:
    id: int
    cmd: CameraCommand


def finite(value: float) -> float | None:
    """``value``, or None when it is not a finite number (JSON has no NaN)."""
    return value if math.isfinite(value) else None


def _line(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def encode_event(event: Event) -> bytes:
    return b'{"event":' + to_json(event).encode() + b"}\n"


def encode_status(status: Mapping[str, Any]) -> bytes:
    return _line({"status": dict(status)})


def encode_reply(request: int, *, result: object = None, error: str | None = None) -> bytes:
    if error is not None:
        return _line({"reply": request, "ok": False, "error": error})
    return _line({"reply": request, "ok": True, "result": result})


def encode_command(request: int, cmd: CameraCommand) -> bytes:
    return _line({"id": request, "cmd": cmd})


def _object(line: bytes) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ChannelError(f"not a JSON line ({exc}): {line[:200]!r}") from None
    if not isinstance(data, dict):
        raise ChannelError(f"not a JSON object: {line[:200]!r}")
    return data


def decode_camera_line(line: bytes) -> EventLine | StatusLine | ReplyLine:
    """A line from a camera process (the supervisor's side)."""
    data = _object(line)
    try:
        if "event" in data:
            return EventLine(from_json(json.dumps(data["event"])))
        if "status" in data and isinstance(data["status"], dict):
            return StatusLine(data["status"])
        if "reply" in data and isinstance(data["reply"], int):
            ok = data.get("ok") is True
            if ok:
                return ReplyLine(data["reply"], True, result=data.get("result"))
            return ReplyLine(data["reply"], False, error=str(data.get("error", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ChannelError(f"bad line ({type(exc).__name__}: {exc}): {line[:200]!r}") from None
    raise ChannelError(f"not an event, status or reply line: {line[:200]!r}")


def decode_command_line(line: bytes) -> CommandLine:
    """A line from the supervisor (the camera process's side)."""
    data = _object(line)
    request, cmd = data.get("id"), data.get("cmd")
    if not isinstance(request, int) or cmd not in CAMERA_COMMANDS:
        raise ChannelError(f"not a command line: {line[:200]!r}")
    return CommandLine(request, cmd)
