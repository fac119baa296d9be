"""Camera control protocol: framing, message kinds and an incremental byte-stream parser.

One message per line, ASCII, with a CRC-32 that detects corruption::

    $<seq>,<KIND>[,<arg>...]*<CRC32 as 8 upper-case hex digits>\\r\\n

The CRC-32 (zlib/IEEE 802.3) covers the bytes strictly between ``$`` and ``*``. ``seq`` is a
decimal integer 0-99999. ``KIND`` is a command (host to camera), ``OK`` or ``ERR`` (the
camera's reply, carrying the ``seq`` of the command it answers) or ``EVT`` (an asynchronous
camera event with the camera's own event counter as ``seq``). Arguments are printable ASCII
without ``$``, ``*`` or ``,``. The full specification is ``docs/camera-protocol.md``.

The parser is incremental: :meth:`LineParser.feed` takes any chunk of bytes and returns the
messages completed by it. Garbage, partial lines, bad checksums, unknown kinds and overlong
lines are counted and skipped; the parser resynchronises on the next ``$``, which can never
occur inside a valid message.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from mascara_actors.errors import CameraError

__all__ = [
    "COMMANDS",
    "ERR",
    "EVT",
    "KINDS",
    "MAX_LINE_BYTES",
    "MAX_SEQ",
    "OK",
    "CommandRejected",
    "ErrorCode",
    "FrameType",
    "LineParser",
    "Message",
    "ParserStats",
    "crc32_hex",
    "format_kv",
    "parse_kv",
]

#: Commands the host sends. ``FAULT`` is the simulator's hidden fault-injection command.
COMMANDS = frozenset(
    {"IDN", "STATUS", "COOLER", "SETPOINT", "TEMP?", "ARM", "ABORT", "READOUT", "FAULT"}
)
OK = "OK"
ERR = "ERR"
EVT = "EVT"
KINDS = COMMANDS | {OK, ERR, EVT}

#: Largest sequence number; the host wraps around to 1 after it.
MAX_SEQ = 99_999
#: Longest line (``$`` to ``\\n`` inclusive) the parser accepts; longer ones are dropped.
MAX_LINE_BYTES = 512

# Printable ASCII except the three framing characters.
_ARG_BYTES = bytes(b for b in range(0x20, 0x7F) if b not in b"$*,")
_BODY_BYTES = _ARG_BYTES + b","
_HEX_UPPER = b"0123456789ABCDEF"
_TRAILER_LEN = len(b"*XXXXXXXX\r\n")


class ErrorCode(StrEnum):
    """Codes carried by an ``ERR`` reply (first argument)."""

    UNKNOWN = "UNKNOWN"
    """The command is not known to this camera."""
    BADARG = "BADARG"
    """Wrong number of arguments or a value out of range."""
    BUSY = "BUSY"
    """The camera is already armed; ABORT first."""
    LATE = "LATE"
    """The first lstseq slot of an ARM has already started."""
    INTERNAL = "INTERNAL"
    """The camera failed internally; see its log."""


class FrameType(StrEnum):
    """What an armed sequence exposes (the optional third argument of ``ARM``)."""

    LIGHT = "LIGHT"
    """Shutter open for the whole slot: a science frame (the default)."""
    DARK = "DARK"
    """Shutter closed for the whole slot: dark current plus bias."""
    BIAS = "BIAS"
    """Shutter closed, zero exposure time: the bias level and pattern."""
    FLAT = "FLAT"
    """Shutter open for the whole slot on the twilight sky, tagged as a flat-field frame."""

    @property
    def imagetyp(self) -> str:
        """The raw frame's ``IMAGETYP`` (``science``, ``dark``, ``bias`` or ``flat``)."""
        return "science" if self is FrameType.LIGHT else self.value.lower()

    @classmethod
    def of(cls, imagetyp: str) -> FrameType:
        """The frame type that gives raw frames of ``IMAGETYP`` ``imagetyp``."""
        for kind in cls:
            if kind.imagetyp == imagetyp:
                return kind
        raise ValueError(
            f"imagetyp={imagetyp!r} is not one of {[k.imagetyp for k in cls]}"
        )


class CommandRejected(CameraError):
    """The camera answered ``ERR``: the command was understood and refused.

    Attributes
    ----------
    code : ErrorCode or str
        The camera's error code.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def crc32_hex(body: bytes) -> bytes:
    """CRC-32 of ``body`` as 8 upper-case hexadecimal ASCII digits."""
    return b"%08X" % zlib.crc32(body)


@dataclass(frozen=True, slots=True)
class Message:
    """One protocol line.

    Attributes
    ----------
    seq : int
        Sequence number, 0 to :data:`MAX_SEQ`. A reply carries the ``seq`` of its command.
    kind : str
        A command name, ``OK``, ``ERR`` or ``EVT``.
    args : tuple of str
        Arguments, printable ASCII without ``$``, ``*`` or ``,``.
    """

    seq: int
    kind: str
    args: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """The framed line, ``$...*CRC\\r\\n``.

        Raises
        ------
        ValueError
            If ``seq`` is out of range, ``kind`` unknown or an argument holds a forbidden
            character.
        """
        if not 0 <= self.seq <= MAX_SEQ:
            raise ValueError(f"seq {self.seq} must be within 0..{MAX_SEQ}")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {sorted(KINDS)}")
        parts = [str(self.seq).encode(), self.kind.encode()]
        for arg in self.args:
            raw = arg.encode("ascii", errors="backslashreplace")
            if raw != arg.encode("utf-8") or raw.translate(None, _ARG_BYTES):
                raise ValueError(
                    f"argument {arg!r} holds a character outside printable ASCII or one of "
                    "'$', '*', ','; sanitise it (see Message.sanitise)"
                )
            parts.append(raw)
        body = b",".join(parts)
        return b"$" + body + b"*" + crc32_hex(body) + b"\r\n"

    @staticmethod
    def sanitise(text: str) -> str:
        """``text`` made safe as one argument (forbidden characters become spaces)."""
        raw = text.encode("ascii", errors="replace")
        return bytes(b if b in _ARG_BYTES else 0x20 for b in raw).decode("ascii")


def format_kv(values: Mapping[str, object]) -> tuple[str, ...]:
    """Arguments ``key=value`` for the replies that carry named values (IDN, STATUS)."""
    return tuple(Message.sanitise(f"{k}={v}") for k, v in values.items())


def parse_kv(args: Sequence[str]) -> dict[str, str]:
    """Inverse of :func:`format_kv`; arguments without ``=`` are skipped."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class ParserStats:
    """Counters of a :class:`LineParser` since it was created.

    Attributes
    ----------
    messages : int
        Valid messages returned.
    garbage_bytes : int
        Bytes outside any ``$``-started line.
    truncated : int
        Lines cut off by a new ``$`` before their end.
    malformed : int
        Complete lines with a bad structure (missing ``*``, bad hex, forbidden byte ...).
    bad_checksum : int
        Well-formed lines whose CRC-32 does not match.
    unknown_kind : int
        Lines with a valid checksum but a kind this side does not know.
    overlong : int
        Lines dropped for exceeding :data:`MAX_LINE_BYTES`.
    """

    messages: int = 0
    garbage_bytes: int = 0
    truncated: int = 0
    malformed: int = 0
    bad_checksum: int = 0
    unknown_kind: int = 0
    overlong: int = 0

    @property
    def errors(self) -> int:
        """Number of rejected lines (all counters except messages and garbage bytes)."""
        return (
            self.truncated + self.malformed + self.bad_checksum + self.unknown_kind + self.overlong
        )


class LineParser:
    """Incremental parser of a protocol byte stream.

    Feed it chunks of any size; it returns each valid message exactly once, in order, and
    counts what it skips (see :class:`ParserStats`). Memory is bounded by
    :data:`MAX_LINE_BYTES` plus one chunk.

    Parameters
    ----------
    kinds : set of str, optional
        Kinds accepted; others are counted as ``unknown_kind``. Default :data:`KINDS`.
    """

    def __init__(self, kinds: frozenset[str] = KINDS) -> None:
        self._kinds = kinds
        self._buf = bytearray()
        self._in_line = False
        self._counts = dict.fromkeys(ParserStats.__dataclass_fields__, 0)

    @property
    def stats(self) -> ParserStats:
        """A snapshot of the counters."""
        return ParserStats(**self._counts)

    def reset(self) -> None:
        """Forget any partial line (after a reconnect); counters are kept."""
        self._buf.clear()
        self._in_line = False

    def feed(self, data: bytes) -> list[Message]:
        """Consume ``data``; return the messages it completes, in stream order."""
        buf = self._buf
        buf += data
        out: list[Message] = []
        counts = self._counts
        i = 0
        n = len(buf)
        while i < n:
            if not self._in_line:
                start = buf.find(b"$", i)
                if start < 0:
                    counts["garbage_bytes"] += n - i
                    i = n
                    break
                counts["garbage_bytes"] += start - i
                i = start
                self._in_line = True
            end = buf.find(b"\n", i + 1)
            restart = buf.find(b"$", i + 1, n if end < 0 else end)
            if restart >= 0:
                counts["truncated"] += 1
                i = restart
                continue
            if end < 0:
                if n - i > MAX_LINE_BYTES:
                    counts["overlong"] += 1
                    self._in_line = False
                    i = n
                break
            self._in_line = False
            line = bytes(buf[i : end + 1])
            i = end + 1
            if len(line) > MAX_LINE_BYTES:
                counts["overlong"] += 1
                continue
            msg = self._decode(line)
            if msg is not None:
                counts["messages"] += 1
                out.append(msg)
        del buf[:i]
        return out

    def _decode(self, line: bytes) -> Message | None:
        """One complete line ``$...\\n`` to a message, or None (counted)."""
        counts = self._counts
        if len(line) < 1 + 1 + _TRAILER_LEN or not line.endswith(b"\r\n"):
            counts["malformed"] += 1
            return None
        body = line[1:-_TRAILER_LEN]
        trailer = line[-_TRAILER_LEN:]
        crc = trailer[1:9]
        if (
            trailer[:1] != b"*"
            or crc.translate(None, _HEX_UPPER)
            or body.translate(None, _BODY_BYTES)
        ):
            counts["malformed"] += 1
            return None
        if crc32_hex(body) != crc:
            counts["bad_checksum"] += 1
            return None
        fields = body.decode("ascii").split(",")
        if len(fields) < 2 or not fields[0].isdigit() or len(fields[0]) > len(str(MAX_SEQ)):
            counts["malformed"] += 1
            return None
        if fields[1] not in self._kinds:
            counts["unknown_kind"] += 1
            return None
        return Message(int(fields[0]), fields[1], tuple(fields[2:]))
