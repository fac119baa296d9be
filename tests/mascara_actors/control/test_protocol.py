"""The wire format: commands and server lines encode and decode, and each bad line gets an
error that says what is wrong and what to send instead."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest

from mascara_actors.control import (
    COMMANDS,
    MAX_LINE_BYTES,
    Command,
    CommandFailed,
    Dropped,
    EventNotice,
    ProtocolError,
    Reply,
    UnknownCamera,
)
from mascara_actors.control.protocol import (
    decode_command,
    decode_server_line,
    encode_command,
    encode_dropped,
    encode_error,
    encode_event,
    encode_reply,
)
from mascara_actors.messages import CameraLink, to_json
from tests.mascara_actors.control.support import frame_event

EXAMPLE_HINT = 'e.g. {"id": 1, "cmd": "status"}'
NOT_UNICODE = "send characters as UTF-8 (or escape one beyond U+FFFF as a surrogate pair)"


@pytest.mark.parametrize("cmd", COMMANDS)
@pytest.mark.parametrize("camera", [None, "LPC"])
@pytest.mark.parametrize("request_id", [7, "console-3"])
def test_a_command_survives_the_wire(cmd: str, camera: str | None, request_id: int | str) -> None:
    command = Command(id=request_id, cmd=cmd, camera=camera)  # type: ignore[arg-type]
    line = encode_command(command)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert decode_command(line[:-1]) == command


def test_commands_as_typed_by_hand_are_read() -> None:
    assert decode_command(b'  {"cmd": "pause", "camera": "LPE", "id": 3}\r') == Command(
        id=3, cmd="pause", camera="LPE"
    )
    assert decode_command(b'{"id": 1, "cmd": "status", "camera": null}') == Command(
        id=1, cmd="status"
    )
    assert decode_command(b'{"id": "\\ud83d\\ude00", "cmd": "status"}') == Command(
        id="\U0001f600", cmd="status"
    )  # a surrogate pair is one character, as JSON means


@pytest.mark.parametrize("line", [b"", b"   ", b"\r", b"\t \x0b"])
def test_a_blank_line_is_no_command(line: bytes) -> None:
    assert decode_command(line) is None


@pytest.mark.parametrize(
    ("line", "message", "request_id"),
    [
        (
            b"\xff\xfegarbage",
            "not UTF-8 text (byte 0xff at offset 0); send one JSON object per line, "
            + EXAMPLE_HINT,
            None,
        ),
        (
            b"{not json",
            "invalid JSON (Expecting property name enclosed in double quotes at column 2); "
            "send one JSON object per line, " + EXAMPLE_HINT,
            None,
        ),
        (b"[1, 2]", "expected a JSON object, got an array; send " + EXAMPLE_HINT, None),
        (b'"status"', "expected a JSON object, got a string; send " + EXAMPLE_HINT, None),
        (
            b'{"cmd": "status"}',
            '"id" is missing: give each command an integer or string id (its reply carries it), '
            + EXAMPLE_HINT,
            None,
        ),
        (
            b'{"id": 1.5, "cmd": "status"}',
            '"id" must be an integer or a string of at most 256 characters, got a number',
            None,
        ),
        (
            b'{"id": true, "cmd": "status"}',
            '"id" must be an integer or a string of at most 256 characters, got a boolean',
            None,
        ),
        (
            b'{"id": "' + b"x" * 300 + b'", "cmd": "status"}',
            '"id" must be an integer or a string of at most 256 characters, got a string of 300',
            None,
        ),
        (
            b'{"id": 4, "cmd": "fly"}',
            '"cmd" "fly" is not a command; commands: status, pause, resume, take_darks, '
            "end_night, stop",
            4,
        ),
        (
            b'{"id": "a", "cmd": ["stop"]}',
            '"cmd" ["stop"] is not a command; commands: status, pause, resume, take_darks, '
            "end_night, stop",
            "a",
        ),
        (
            b'{"id": 5}',
            '"cmd" is missing; commands: status, pause, resume, take_darks, end_night, stop',
            5,
        ),
        (
            b'{"id": 6, "cmd": "pause", "camera": 3}',
            '"camera" must be a camera id (a string) or left out, got an integer',
            6,
        ),
        (
            b'{"id": 8, "cmd": "pause", "camara": "LPC"}',
            'unknown key(s) "camara"; a command has "id", "cmd" and, optionally, "camera"',
            8,
        ),
        (
            b'{"id": "a\\ud800", "cmd": "status"}',
            '"id" holds a lone surrogate (\\ud800), which is not Unicode text: ' + NOT_UNICODE,
            None,
        ),
        (
            b'{"id": 9, "cmd": "pause", "camera": "\\udc8f"}',
            "a key or a string holds a lone surrogate (\\udc8f), which is not Unicode text: "
            + NOT_UNICODE,
            9,
        ),
    ],
)
def test_a_bad_command_says_what_is_wrong(
    line: bytes, message: str, request_id: int | str | None
) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_command(line)
    assert str(caught.value) == message
    assert caught.value.request_id == request_id


def test_json_that_would_exhaust_the_parser_is_an_error() -> None:
    with pytest.raises(ProtocolError, match=r"^invalid JSON \(nested too deeply\)"):
        decode_command(b"[" * 60_000)
    with pytest.raises(ProtocolError, match=r"^invalid JSON \(Exceeds the limit \(4300 digits\)"):
        decode_command(b'{"id": ' + b"9" * 5000 + b', "cmd": "status"}')


def test_the_line_limit_is_65536_bytes_without_the_newline() -> None:
    command = b'{"id": 1, "cmd": "status"}'
    longest = command + b" " * (MAX_LINE_BYTES - len(command))
    assert decode_command(longest) == Command(id=1, cmd="status")
    with pytest.raises(ProtocolError, match=r"^line longer than 65536 bytes$"):
        decode_command(longest + b" ")


def test_replies_and_notices_survive_the_wire() -> None:
    ok = encode_reply(3, {"paused": ["LPC"], "residual_px": 0.12})
    assert decode_server_line(ok[:-1]) == Reply(
        id=3, ok=True, result={"paused": ["LPC"], "residual_px": 0.12}
    )
    error = encode_error("x", "no camera 'LPX'")
    assert decode_server_line(error[:-1]) == Reply(id="x", ok=False, error="no camera 'LPX'")
    assert decode_server_line(encode_dropped(120)[:-1]) == Dropped(count=120)
    assert json.loads(encode_dropped(5)) == {"dropped": 5}
    assert json.loads(error) == {"reply": "x", "ok": False, "error": "no camera 'LPX'"}


def test_an_event_is_sent_as_to_json_writes_it() -> None:
    event = frame_event(65344200)
    line = encode_event(event, "LPC")
    data = json.loads(line)
    assert data == {"event": json.loads(to_json(event)), "camera": "LPC"}
    notice = decode_server_line(line[:-1])
    assert isinstance(notice, EventNotice)
    assert notice.camera == "LPC"
    assert notice.to_event() == event


def test_a_station_event_has_a_null_camera_and_nan_passes() -> None:
    event = CameraLink(time=1.7e9, answering=False, detail="timeout")
    notice = decode_server_line(encode_event(event, None)[:-1])
    assert notice == EventNotice(event=json.loads(to_json(event)), camera=None)
    nan = dataclasses.replace(frame_event(1), sky=math.nan)
    decoded = decode_server_line(encode_event(nan, "LPC")[:-1])
    assert isinstance(decoded, EventNotice)
    assert math.isnan(decoded.event["sky"])


def test_a_reply_too_long_for_a_line_or_not_json_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^the reply is \d+ bytes, over the 65536-byte"):
        encode_reply(1, "x" * MAX_LINE_BYTES)
    with pytest.raises(TypeError):
        encode_reply(1, object())


def test_a_reply_holding_a_lone_surrogate_is_written_as_its_escape_and_reads_back() -> None:
    """A file name decoded with surrogateescape has no UTF-8 form: the reply must not fail
    (the client would get end of stream), it carries the string's JSON escape instead."""
    name = os.fsdecode(b"/data/raw/LPC/\x8f.fits")
    line = encode_reply("\ud800", {"path": name})
    assert line == b'{"reply":"\\ud800","ok":true,"result":{"path":"/data/raw/LPC/\\udc8f.fits"}}\n'
    assert decode_server_line(line[:-1]) == Reply(id="\ud800", ok=True, result={"path": name})
    error = encode_error("\ud800", f"no file {name}")
    assert decode_server_line(error[:-1]) == Reply(id="\ud800", ok=False, error=f"no file {name}")


def test_a_long_error_message_is_cut_to_fit() -> None:
    line = encode_error(1, "x" * 100_000)
    assert len(line) < 5000
    assert json.loads(line)["error"].endswith("...")


@pytest.mark.parametrize(
    "line", [b"{}", b'{"reply": 1}', b'{"event": 3}', b'{"dropped": true}', b"[]", b"\xff"]
)
def test_a_line_the_station_never_sends_is_an_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_server_line(line)


def test_reply_unwrap_and_unknown_camera_say_what_to_do() -> None:
    assert Reply(id=1, ok=True, result=[1]).unwrap() == [1]
    with pytest.raises(CommandFailed, match=r"^LPC is not paused$"):
        Reply(id=1, ok=False, error="LPC is not paused").unwrap()
    assert str(UnknownCamera("LPX", ["LPN", "LPC"])) == (
        "no camera 'LPX' at this station (cameras: LPC, LPN); name one of them, "
        'or leave "camera" out for the whole station'
    )
