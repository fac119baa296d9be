"""The wire format of the control socket: newline-delimited JSON, one object per line.

Client to station, a command::

    {"id": 7, "cmd": "pause", "camera": "LPC"}

``id`` is an integer or a string chosen by the client (its reply carries it); ``cmd`` one
of :data:`COMMANDS`; ``camera`` optional (left out: the whole station). Station to client,
three kinds of line::

    {"reply": 7, "ok": true, "result": {...}}
    {"reply": 7, "ok": false, "error": "what went wrong and what to do"}
    {"event": {"kind": "FrameReducedEvent", "time": ..., ...}, "camera": "LPC"}
    {"dropped": 120}

``reply`` is null when the line it answers had no readable id. ``event`` is the event as
:func:`mascara_actors.messages.to_json` writes it (``NaN`` may appear for missing numbers).
``dropped`` says how many events the station left out because this client fell behind; it
comes just before the next line the client receives. Every line, either way, is at most
:data:`MAX_LINE_BYTES` bytes before its newline (UTF-8). See ``docs/control-socket.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from mascara_actors.control.errors import CommandFailed, ProtocolError
from mascara_actors.messages import Event, from_json, to_json

__all__ = [
    "COMMANDS",
    "EXAMPLE",
    "MAX_ID_CHARS",
    "MAX_LINE_BYTES",
    "Command",
    "CommandName",
    "Dropped",
    "EventNotice",
    "Reply",
    "RequestId",
    "ServerLine",
    "decode_command",
    "decode_server_line",
    "encode_command",
    "encode_dropped",
    "encode_error",
    "encode_event",
    "encode_reply",
]

MAX_LINE_BYTES = 65_536
"""Longest line either side may send, bytes of UTF-8, the newline not counted."""

MAX_ID_CHARS = 256
"""Longest string ``id`` of a command, characters."""

CommandName = Literal["status", "pause", "resume", "take_darks", "end_night", "stop"]
"""What a client may ask of the station."""

COMMANDS: tuple[CommandName, ...] = get_args(CommandName)

RequestId = int | str
"""A command's ``id``, chosen by the client and echoed in its reply."""

EXAMPLE = '{"id": 1, "cmd": "status"}'
"""A valid command, quoted in error messages."""

_COMMAND_KEYS = frozenset({"id", "cmd", "camera"})

_JSON_NAMES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _json_name(value: object) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _line(value: object) -> bytes:
    """``value`` as one line of JSON in UTF-8, without its newline; never fails to encode.

    A lone surrogate (a string from a file name decoded with ``surrogateescape``, say) has no
    UTF-8 form; ``backslashreplace`` writes it as ``\\udXXX``, which is its JSON escape: the
    line stays valid JSON and reads back as the same string.
    """
    return _dumps(value).encode("utf-8", "backslashreplace")


def _lone_surrogate(text: str) -> str:
    """The first lone surrogate in ``text`` as its JSON escape (``\\ud800``); "" if none."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"\\u{ord(text[exc.start]):04x}"
    return ""


def _not_unicode(what: str, escape: str, request_id: RequestId | None = None) -> ProtocolError:
    """The refusal of a string holding the lone surrogate ``escape`` (named, not quoted)."""
    return ProtocolError(
        f"{what} holds a lone surrogate ({escape}), which is not Unicode text: send characters "
        "as UTF-8 (or escape one beyond U+FFFF as a surrogate pair)",
        request_id=request_id,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """One command from a client."""

    id: RequestId
    cmd: CommandName
    camera: str | None = None
    """The camera it is for (its station id, e.g. ``LPC``); None for the whole station."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """The station's answer to one command: ``result`` when ``ok``, else ``error``."""

    id: RequestId | None
    """The command's id; None when the line answered had no readable id."""
    ok: bool
    result: Any = None
    error: str = ""

    def unwrap(self) -> Any:
        """The result; :class:`~mascara_actors.control.errors.CommandFailed` for an error."""
        if not self.ok:
            raise CommandFailed(self.error)
        return self.result


@dataclass(frozen=True, slots=True, kw_only=True)
class EventNotice:
    """One event of the station, as the stream carries it."""

    event: Mapping[str, Any]
    """The event as :func:`mascara_actors.messages.to_json` wrote it (``kind``, ``time``,
    its fields)."""
    camera: str | None
    """The camera that reported it; None for the station itself."""

    def to_event(self) -> Event:
        """The event as its :mod:`mascara_actors.messages` class; ValueError if unknown
        (a newer station)."""
        return from_json(json.dumps(dict(self.event)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Dropped:
    """Events left out because the client fell behind (its buffer was full)."""

    count: int


ServerLine = Reply | EventNotice | Dropped
"""Any line the station sends."""


# -- client -> station -------------------------------------------------------------------


def encode_command(command: Command) -> bytes:
    """One command line, newline included."""
    data: dict[str, object] = {"id": command.id, "cmd": command.cmd}
    if command.camera is not None:
        data["camera"] = command.camera
    return _line(data) + b"\n"


def _parse_json(line: bytes) -> object:
    """JSON value of one line; ProtocolError when the bytes are not UTF-8 or not JSON."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            f"not UTF-8 text (byte 0x{line[exc.start]:02x} at offset {exc.start}); "
            f"send one JSON object per line, e.g. {EXAMPLE}"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at column {exc.colno}"
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        reason = str(exc).split(";")[0]
    raise ProtocolError(f"invalid JSON ({reason}); send one JSON object per line, e.g. {EXAMPLE}")


def _request_id(data: Mapping[str, object]) -> RequestId:
    if "id" not in data:
        raise ProtocolError(
            f'"id" is missing: give each command an integer or string id (its reply carries '
            f"it), e.g. {EXAMPLE}"
        )
    value = data["id"]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ProtocolError(
            f'"id" must be an integer or a string of at most {MAX_ID_CHARS} characters, '
            f"got {_json_name(value)}"
        )
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise ProtocolError(
            f'"id" must be an integer or a string of at most {MAX_ID_CHARS} characters, '
            f"got a string of {len(value)}"
        )
    if isinstance(value, str) and (escape := _lone_surrogate(value)):
        raise _not_unicode('"id"', escape)
    return value


def _check_unicode(data: Mapping[str, object], request_id: RequestId) -> None:
    """ProtocolError when a key or a string value holds a lone surrogate: such a string
    would reach the log and the error messages, and cannot be written as UTF-8."""
    for text in (*data, *(value for value in data.values() if isinstance(value, str))):
        if escape := _lone_surrogate(text):
            raise _not_unicode("a key or a string", escape, request_id)


def decode_command(line: bytes) -> Command | None:
    """The command on one line (without its newline); None for a blank line.

    Raises
    ------
    ProtocolError
        The line is not a valid command; its ``request_id`` is the line's id when that
        could be read. The message says what is wrong and what a valid line looks like.
    """
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"line longer than {MAX_LINE_BYTES} bytes")
    if not line.strip():
        return None
    data = _parse_json(line)
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, got {_json_name(data)}; send e.g. {EXAMPLE}")
    request_id = _request_id(data)
    _check_unicode(data, request_id)
    unknown = sorted(set(data) - _COMMAND_KEYS)
    if unknown:
        names = ", ".join(_dumps(key) for key in unknown)
        raise ProtocolError(
            f'unknown key(s) {names}; a command has "id", "cmd" and, optionally, "camera"',
            request_id=request_id,
        )
    cmd = data.get("cmd")
    if cmd not in COMMANDS:
        what = "is missing" if cmd is None else f"{_dumps(cmd)} is not a command"
        raise ProtocolError(f'"cmd" {what}; commands: {", ".join(COMMANDS)}', request_id=request_id)
    camera = data.get("camera")
    if camera is not None and not isinstance(camera, str):
        raise ProtocolError(
            f'"camera" must be a camera id (a string) or left out, got {_json_name(camera)}',
            request_id=request_id,
        )
    return Command(id=request_id, cmd=cmd, camera=camera)


# -- station -> client -------------------------------------------------------------------


def encode_reply(request_id: RequestId | None, result: object) -> bytes:
    """A success reply, newline included.

    Raises
    ------
    TypeError, ValueError
        ``result`` is not JSON (a handler's bug).
    ProtocolError
        The line would be longer than :data:`MAX_LINE_BYTES`.
    """
    line = _line({"reply": request_id, "ok": True, "result": result})
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(
            f"the reply is {len(line)} bytes, over the {MAX_LINE_BYTES}-byte line limit; "
            "ask for one camera at a time",
            request_id=request_id,
        )
    return line + b"\n"


def encode_error(request_id: RequestId | None, message: str) -> bytes:
    """An error reply, newline included (a message over the limit is cut)."""
    text = message if len(message) <= 4096 else message[:4096] + "..."
    return _line({"reply": request_id, "ok": False, "error": text}) + b"\n"


def encode_event(event: Event, camera: str | None) -> bytes:
    """One event line, newline included (the event as ``to_json`` writes it)."""
    return b'{"event":%s,"camera":%s}\n' % (to_json(event).encode(), _dumps(camera).encode())


def encode_dropped(count: int) -> bytes:
    """The notice that ``count`` events were left out, newline included."""
    return b'{"dropped":%d}\n' % count


def decode_server_line(line: bytes) -> ServerLine:
    """What one line from the station (without its newline) says.

    Raises
    ------
    ProtocolError
        The line is none of the station's kinds (a station of another version?).
    """
    data = _parse_json(line)
    if isinstance(data, dict):
        if "reply" in data and isinstance(data.get("ok"), bool):
            if data["ok"]:
                return Reply(id=data["reply"], ok=True, result=data.get("result"))
            return Reply(id=data["reply"], ok=False, error=str(data.get("error", "")))
        if isinstance(data.get("event"), dict):
            camera = data.get("camera")
            return EventNotice(
                event=data["event"], camera=camera if isinstance(camera, str) else None
            )
        count = data.get("dropped")
        if isinstance(count, int) and not isinstance(count, bool):
            return Dropped(count=count)
    raise ProtocolError(f"not a line the station sends: {line[:200]!r}")
