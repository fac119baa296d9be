"""The line protocol: framing, and the incremental parser over arbitrary byte streams."""

from __future__ import annotations

import itertools
import zlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hw.protocol import (
    COMMANDS,
    KINDS,
    MAX_LINE_BYTES,
    MAX_SEQ,
    LineParser,
    Message,
    format_kv,
    parse_kv,
)

# -- named strategies ------------------------------------------------------------------------

ARG_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="$*,"), max_size=24
)


def messages() -> st.SearchStrategy[Message]:
    """Valid protocol messages of every kind, with up to 8 arguments."""
    return st.builds(
        Message,
        seq=st.integers(0, MAX_SEQ),
        kind=st.sampled_from(sorted(KINDS)),
        args=st.lists(ARG_TEXT, max_size=8).map(tuple),
    )


def garbage() -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, biased towards the framing characters."""
    framing = st.sampled_from([b"$", b"*", b",", b"\r", b"\n", b"\r\n", b"$1,OK*", b"0A1B"])
    return st.lists(st.one_of(st.binary(max_size=40), framing), max_size=6).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` split at the (sorted, clipped) positions ``cuts``."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def feed_all(parser: LineParser, chunks: list[bytes]) -> list[Message]:
    out: list[Message] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def framed(body: bytes) -> bytes:
    """A line with a correct checksum around an arbitrary body."""
    return b"$" + body + b"*" + b"%08X" % zlib.crc32(body) + b"\r\n"


# -- properties ------------------------------------------------------------------------------


@given(messages(), st.lists(st.integers(0, 600), max_size=6))
def test_encoded_message_round_trips_in_any_chunking(msg: Message, cuts: list[int]) -> None:
    parser = LineParser()
    assert feed_all(parser, chunked(msg.encode(), cuts)) == [msg]
    assert parser.stats.messages == 1
    assert parser.stats.errors == 0


@given(
    st.lists(st.tuples(garbage(), messages()), max_size=8),
    garbage(),
    st.lists(st.integers(0, 4000), max_size=12),
)
@example([(b"$12,IDN", Message(1, "IDN"))], b"$", [3])
@example([(b"\r\n$", Message(0, "OK", ("",)))], b"", [])
def test_messages_between_garbage_are_all_recovered(
    pairs: list[tuple[bytes, Message]], tail: bytes, cuts: list[int]
) -> None:
    stream = b"".join(junk + msg.encode() for junk, msg in pairs) + tail
    parser = LineParser()
    assert feed_all(parser, chunked(stream, cuts)) == [msg for _, msg in pairs]


@given(garbage(), st.lists(st.integers(0, 300), max_size=6))
def test_garbage_never_produces_a_message(junk: bytes, cuts: list[int]) -> None:
    parser = LineParser()
    assert feed_all(parser, chunked(junk, cuts)) == []


@given(messages(), messages(), st.data())
def test_a_corrupted_byte_loses_only_its_own_message(
    msg: Message, after: Message, data: st.DataObject
) -> None:
    line = bytearray(msg.encode())
    pos = data.draw(st.integers(0, len(line) - 1), label="pos")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != line[pos]), label="byte")
    line[pos] = new
    parser = LineParser()
    assert parser.feed(bytes(line) + after.encode()) == [after]
    assert parser.stats.messages == 1


@given(st.lists(messages(), min_size=1, max_size=20))
def test_memory_stays_bounded_by_one_line(msgs: list[Message]) -> None:
    parser = LineParser()
    for msg in msgs:
        line = msg.encode()
        parser.feed(line[:-1])
        assert len(parser._buf) < MAX_LINE_BYTES
        parser.feed(line[-1:])
        assert len(parser._buf) == 0


# -- examples: what is counted ---------------------------------------------------------------


def test_bad_checksum_is_counted_and_skipped() -> None:
    good = Message(7, "IDN").encode()
    bad = good.replace(good[-10:-2], b"00000000" if good[-10:-2] != b"00000000" else b"11111111")
    parser = LineParser()
    assert parser.feed(bad + good) == [Message(7, "IDN")]
    assert parser.stats.bad_checksum == 1
    assert parser.stats.messages == 1


def test_unknown_kind_with_valid_checksum_is_counted() -> None:
    parser = LineParser()
    assert parser.feed(framed(b"3,HELLO,x")) == []
    assert parser.stats.unknown_kind == 1


def test_replies_are_unknown_to_a_command_only_parser() -> None:
    parser = LineParser(COMMANDS)
    assert parser.feed(Message(3, "OK", ("IDN",)).encode()) == []
    assert parser.stats.unknown_kind == 1


@pytest.mark.parametrize(
    ("line", "counter"),
    [
        pytest.param(framed(b"x1,IDN"), "malformed", id="seq-not-digits"),
        pytest.param(framed(b"123456,IDN"), "malformed", id="seq-too-long"),
        pytest.param(framed(b"1"), "malformed", id="no-kind"),
        pytest.param(
            b"$1,IDN*" + b"%08x" % zlib.crc32(b"1,IDN") + b"\r\n", "malformed", id="lowercase-hex"
        ),
        pytest.param(framed(b"1,IDN")[:-2] + b"\n", "malformed", id="no-cr"),
        pytest.param(framed(b"1,IDN,\x07"), "malformed", id="control-char"),
        pytest.param(b"$1,IDN\r\n", "malformed", id="no-checksum"),
    ],
)
def test_malformed_lines_are_counted(line: bytes, counter: str) -> None:
    parser = LineParser()
    assert parser.feed(line) == []
    counts = parser.stats
    assert getattr(counts, counter) == 1
    assert counts.errors == 1


def test_line_cut_by_a_new_start_is_counted_as_truncated() -> None:
    parser = LineParser()
    msg = Message(9, "STATUS")
    assert parser.feed(b"$4,TEMP" + msg.encode()) == [msg]
    assert parser.stats.truncated == 1


def test_overlong_line_is_dropped_and_the_next_one_parsed() -> None:
    parser = LineParser()
    msg = Message(5, "ABORT")
    out = parser.feed(b"$" + b"A" * (MAX_LINE_BYTES + 10))
    out += parser.feed(b"\r\n" + msg.encode())
    assert out == [msg]
    assert parser.stats.overlong == 1


def test_garbage_bytes_are_counted_exactly() -> None:
    parser = LineParser()
    msg = Message(1, "IDN")
    parser.feed(b"noise" + msg.encode() + b"xy")
    assert parser.stats.garbage_bytes == 7


def test_reset_forgets_a_partial_line_but_keeps_counts() -> None:
    parser = LineParser()
    parser.feed(b"junk$1,ID")
    parser.reset()
    assert parser.feed(b"N*00000000\r\n") == []
    assert parser.stats.garbage_bytes == 4 + len(b"N*00000000\r\n")


# -- encoding --------------------------------------------------------------------------------


def test_encoding_matches_the_documented_frame() -> None:
    body = b"42,ARM,47001234,50"
    expected = b"$" + body + b"*%08X\r\n" % zlib.crc32(body)
    assert Message(42, "ARM", ("47001234", "50")).encode() == expected


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (Message(MAX_SEQ + 1, "IDN"), r"^seq 100000 must be within 0\.\.99999$"),
        (Message(-1, "IDN"), r"^seq -1 must be within"),
        (Message(1, "HELLO"), r"^kind 'HELLO' is not one of"),
        (Message(1, "ERR", ("a,b",)), r"^argument 'a,b' holds a character"),
        (Message(1, "ERR", ("é",)), r"^argument 'é' holds a character"),
    ],
)
def test_encode_rejects_invalid_messages(msg: Message, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        msg.encode()


def test_sanitise_makes_any_text_an_argument() -> None:
    text = Message.sanitise("bad, $value* é\n")
    assert text == "bad   value  ? "
    assert LineParser().feed(Message(1, "ERR", (text,)).encode())[0].args == (text,)


def test_key_value_arguments_round_trip() -> None:
    values = {"state": "IDLE", "lstseq": 47001234, "ccdtemp": "-10.000"}
    assert parse_kv(("junk", *format_kv(values))) == {k: str(v) for k, v in values.items()}
