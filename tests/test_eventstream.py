"""The AWS event-stream parser: frames built from the spec and published test
vectors, compared with botocore's own decoder over any chunking; corruption
reported with its offset, never raised."""

from __future__ import annotations

import json
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from aws_frames import event_frame, exception_frame, frame
from botocore.eventstream import EventStreamBuffer
from helpers import chunkings
from hypothesis import given, settings
from hypothesis import strategies as st

from ssemedic.core.events import IssueKind, ServerSentEvent
from ssemedic.core.eventstream import EventStreamEvent, EventStreamParser, encode_frame, valid_prelude
from ssemedic.core.framing import framing_for_content_type, sniff_framing
from ssemedic.core.session import StreamSession
from ssemedic.files import sources

# -- published test vectors ---------------------------------------------------------
# From boto/botocore, tests/unit/test_eventstream.py (POSITIVE_CASES and
# NEGATIVE_CASES): the encoded bytes, with the headers and payload they decode to.
BOTOCORE_POSITIVE = [
    (b"\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2H\xeb}\x98\xc8\xff", {}, b""),
    (b"\x00\x00\x00\x17\x00\x00\x00\x07)\x86\x01X\x04byte\x02\xff\xc2\xf8i\xdc", {"byte": -1}, b""),
    (b"\x00\x00\x00\x19\x00\x00\x00\tq\x0e\x92>\x05short\x03\xff\xff\xb2|\xb6\xcc", {"short": -1}, b""),
    (b"\x00\x00\x00\x1d\x00\x00\x00\r\x83\xe3\xf0\xe7\x07integer\x04\xff\xff\xff\xff\x8b\x8e\x12\xeb",
     {"integer": -1}, b""),
    (b"\x00\x00\x00\x1e\x00\x00\x00\x0e]J\xdb\x8d\x04long\x05\xff\xff\xff\xff\xff\xff\xff\xffK\xc22\xda",
     {"long": -1}, b""),
    (b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'}\xc3e96", {}, b"{'foo':'bar'}"),
    (b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent-type\x07\x00\x10application/json{'foo':'bar'}"
     b"\x8d\x9c\x08\xb1", {"content-type": "application/json"}, b"{'foo':'bar'}"),
    (b"\x00\x00\x00\x62\x00\x00\x00\x52\x03\xb5\xcb\x9c\x010\x00\x011\x01\x012\x02\x02\x013\x03\x00\x03"
     b"\x014\x04\x00\x00\x00\x04\x015\x05\x00\x00\x00\x00\x00\x00\x00\x05\x016\x06\x00\x05bytes\x017\x07\x00\x04utf8"
     b"\x018\x08\x00\x00\x00\x00\x00\x00\x00\x08\x019\x090123456789abcdef\x63\x35\x36\x71",
     {"0": True, "1": False, "2": 2, "3": 3, "4": 4, "5": 5, "6": b"bytes", "7": "utf8", "8": 8,
      "9": uuid.UUID(bytes=b"0123456789abcdef")}, b""),
    (b"\x00\x00\x00\x52\x00\x00\x00\x42\xbf\x23\x63\x7e\x0d:message-type\x07\x00\x05error"
     b"\x0b:error-code\x07\x00\x04code\x0e:error-message\x07\x00\x07message\x6b\x6c\xea\x3d",
     {":message-type": "error", ":error-code": "code", ":error-message": "message"}, b""),
]
BOTOCORE_NEGATIVE = [  # name, bytes, the issue ssemedic reports
    ("corrupted length", b"\x01\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'}\xc3e96", IssueKind.BAD_PRELUDE_CRC),
    ("corrupted payload", b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'\x8d\xc3e96", IssueKind.BAD_MESSAGE_CRC),
    ("corrupted headers", b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent+type\x07\x00\x10application/json"
     b"{'foo':'bar'}\x8d\x9c\x08\xb1", IssueKind.BAD_MESSAGE_CRC),
    ("corrupted header length", b"\x00\x00\x00=\xff\x00\x01\x02\x07\xfd\x83\x96\x0ccontent-type\x07\x00"
     b"\x10application/json{'foo':'bar'}\x8d\x9c\x08\xb1", IssueKind.BAD_PRELUDE_CRC),
]

def parse(chunks: list[bytes], **kwargs: Any) -> tuple[list[ServerSentEvent], EventStreamParser]:
    parser = EventStreamParser(**kwargs)
    events = [e for c in chunks for e in parser.feed(c)]
    events += parser.close()
    return events, parser


def botocore_messages(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(m.headers, m.payload) for m in buffer]


def comparable(headers: Any) -> dict[str, Any]:
    """Our headers as botocore gives them: a UUID as its 16 bytes."""
    return {k: v.bytes if isinstance(v, uuid.UUID) else v for k, v in headers.items()}


# -- the frames ----------------------------------------------------------------------


@pytest.mark.parametrize("encoded, headers, payload", BOTOCORE_POSITIVE)
def test_botocore_vectors(encoded: bytes, headers: dict[str, Any], payload: bytes) -> None:
    for name, chunks in chunkings(encoded):
        events, parser = parse(chunks)
        assert [(e.headers, e.data.encode(), e.raw, e.offset) for e in events] == [(headers, payload, encoded, 0)], name
        assert parser.issues == []


def test_botocore_vectors_in_one_stream_keep_offsets() -> None:
    body = b"".join(v[0] for v in BOTOCORE_POSITIVE)
    events, parser = parse([body])
    offsets = [0]
    for encoded, _, _ in BOTOCORE_POSITIVE[:-1]:
        offsets.append(offsets[-1] + len(encoded))
    assert [e.offset for e in events] == offsets
    assert b"".join(e.raw for e in events) == body
    assert parser.boundary == parser.consumed == len(body)


@pytest.mark.parametrize("name, encoded, kind", BOTOCORE_NEGATIVE)
def test_botocore_negative_vectors_are_issues_not_exceptions(name: str, encoded: bytes, kind: IssueKind) -> None:
    good = BOTOCORE_POSITIVE[5][0]
    for how, chunks in chunkings(encoded + good):
        events, parser = parse(chunks)
        assert parser.issues[0].kind == kind and parser.issues[0].offset == 0, (name, how)
        if kind == IssueKind.BAD_MESSAGE_CRC:  # the length was sound: the next frame is read
            assert [e.raw for e in events] == [good], (name, how)
        else:  # the length cannot be trusted: nothing after it is
            assert events == []
            assert [i.kind for i in parser.issues] == [kind, IssueKind.UNPARSED]


def test_event_names_follow_the_message_type() -> None:
    body = event_frame("contentBlockDelta", {"delta": {"text": "hi"}}) + exception_frame("throttlingException", "slow")
    body += BOTOCORE_POSITIVE[-1][0]  # :message-type error
    events, parser = parse([body])
    assert [e.event for e in events] == ["contentBlockDelta", "throttlingException", "code"]
    assert json.loads(events[1].data) == {"message": "slow"}
    assert all(isinstance(e, EventStreamEvent) for e in events) and parser.issues == []


def test_encode_frame_reads_back_in_botocore() -> None:
    data = encode_frame({":message-type": "exception", ":exception-type": "internalServerException"}, b'{"m":1}')
    assert botocore_messages(data) == [
        ({":message-type": "exception", ":exception-type": "internalServerException"}, b'{"m":1}')]


# -- differential: botocore's decoder, any frames, any chunking ------------------------

_header_values = st.one_of(
    st.tuples(st.just(0), st.just(True)), st.tuples(st.just(1), st.just(False)),
    st.tuples(st.just(2), st.integers(-128, 127)), st.tuples(st.just(3), st.integers(-(2**15), 2**15 - 1)),
    st.tuples(st.just(4), st.integers(-(2**31), 2**31 - 1)), st.tuples(st.just(5), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just(6), st.binary(max_size=40)), st.tuples(st.just(7), st.text(max_size=20)),
    st.tuples(st.just(8), st.integers(-(2**63), 2**63 - 1)), st.tuples(st.just(9), st.binary(min_size=16, max_size=16)),
)
_frames = st.lists(
    st.tuples(
        st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda n: len(n.encode()) < 256), _header_values,
                        max_size=5),
        st.text(max_size=60).map(str.encode),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(frames=_frames, cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_matches_botocore_over_any_chunking(frames: list[tuple[dict[str, Any], bytes]], cuts: list[int]) -> None:
    body = b"".join(frame([(n, k, v) for n, (k, v) in headers.items()], payload) for headers, payload in frames)
    points = sorted({min(c, len(body)) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)])]
    events, parser = parse(chunks)
    assert parser.issues == []
    assert [(comparable(e.headers), e.data.encode()) for e in events] == botocore_messages(body)


# -- corruption: reported at its offset, never raised ------------------------------------

SMALL = [event_frame("messageStart", {"role": "assistant"}),
         event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hé"}}),
         event_frame("messageStop", {"stopReason": "end_turn"})]


def test_a_flipped_byte_anywhere_is_reported_with_its_frame() -> None:
    body = b"".join(SMALL)
    starts = [0, len(SMALL[0]), len(SMALL[0]) + len(SMALL[1])]
    for position in range(len(body)):
        corrupt = bytearray(body)
        corrupt[position] ^= 0x41
        which = max(i for i, s in enumerate(starts) if s <= position)
        in_prelude = position - starts[which] < 12
        for how, chunks in (("whole", [bytes(corrupt)]), ("split", [bytes(corrupt[:position]), bytes(corrupt[position:])])):
            events, parser = parse(chunks)
            first = parser.issues[0]
            assert first.offset == starts[which], (position, how)
            if in_prelude:
                assert first.kind == IssueKind.BAD_PRELUDE_CRC, (position, how)
                assert [e.raw for e in events] == SMALL[:which]
                assert parser.issues[-1].kind == IssueKind.UNPARSED
            else:
                assert first.kind == IssueKind.BAD_MESSAGE_CRC, (position, how)
                assert [e.raw for e in events] == SMALL[:which] + SMALL[which + 1 :]


def test_truncated_frame_is_an_incomplete_event() -> None:
    body = b"".join(SMALL)
    for cut in range(1, len(SMALL[2])):
        events, parser = parse([body[:-cut]])
        assert len(events) == 2
        assert [(i.kind, i.offset) for i in parser.issues] == [(IssueKind.INCOMPLETE_EVENT, len(SMALL[0]) + len(SMALL[1]))]


def test_oversized_frame_is_skipped_unheld_and_the_next_read() -> None:
    big = event_frame("contentBlockDelta", {"delta": {"text": "x" * 5000}})
    body = SMALL[0] + big + SMALL[1]
    for how, chunks in chunkings(body, max_splits=50):
        parser = EventStreamParser(max_event_size=1000)
        events = []
        most_held = 0
        for chunk in chunks:
            events += parser.feed(chunk)
            most_held = max(most_held, len(parser.pending_bytes))
        events += parser.close()
        assert [e.raw for e in events] == [SMALL[0], SMALL[1]], how
        assert [(i.kind, i.offset) for i in parser.issues] == [(IssueKind.OVERSIZED_EVENT, len(SMALL[0]))], how
        assert most_held <= 1000, how  # the big frame is never held
        assert parser.boundary == len(body)


def test_boundary_and_inside_block_follow_whole_frames() -> None:
    body = b"".join(SMALL)
    parser = EventStreamParser()
    parser.feed(body[:5])
    assert parser.inside_block and parser.boundary == 0 and parser.pending == 5
    parser.feed(body[5 : len(SMALL[0])])
    assert not parser.inside_block and parser.boundary == len(SMALL[0]) and parser.pending == 0
    parser.feed(body[len(SMALL[0]) :])
    assert parser.boundary == len(body) and parser.pending_bytes == b""


def test_invalid_utf8_payload_is_replaced_and_reported() -> None:
    data = frame([(":event-type", 7, "x")], b'{"a":"\xff"}')
    (event,), parser = parse([data])
    assert event.data == '{"a":"\ufffd"}'
    assert [(i.kind, i.offset) for i in parser.issues] == [(IssueKind.INVALID_UTF8, 12 + 16 + 6)]


def test_headers_running_past_their_length_skip_the_frame() -> None:
    bad = frame([(":event-type", 7, "x")])
    # Claim fewer header bytes than there are (and fix the CRCs): the value runs past.
    prelude = len(bad).to_bytes(4, "big") + (5).to_bytes(4, "big")
    prelude += zlib.crc32(prelude).to_bytes(4, "big")
    body = prelude + bad[12:-4]
    body += zlib.crc32(body).to_bytes(4, "big")
    events, parser = parse([body + SMALL[0]])
    assert [e.raw for e in events] == [SMALL[0]]
    assert [i.kind for i in parser.issues] == [IssueKind.INVALID_FRAME]


# -- framing: content type and sniffing --------------------------------------------------


def test_content_type_and_sniffing() -> None:
    assert framing_for_content_type("application/vnd.amazon.eventstream") == "eventstream"
    assert sniff_framing(SMALL[0]) == "eventstream" and valid_prelude(SMALL[0])
    assert sniff_framing(SMALL[0][:11]) is None
    assert sniff_framing(b"\x00" * 12) is None  # a zero CRC of zero lengths is no prelude
    assert sniff_framing(b"data: {}\n\n") == "sse"


def test_session_sniffs_an_untyped_binary_body_in_any_chunking() -> None:
    body = b"".join(SMALL)
    for how, chunks in chunkings(body):
        session = StreamSession(started_at=0.0)
        for chunk in chunks:
            session.feed(chunk, at=0.1)
        session.close(at=0.2)
        assert session.framing == "eventstream", how
        assert session.event_count == 3 and session.issues == [], how
        # A binary chunk boundary is no split character.
        assert "utf8-split" not in {f.kind for f in session.faults}, how


def test_report_reads_a_raw_bin_body_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "capture.txt"
    path.write_bytes(b"".join(SMALL))
    assert sources.file_kind(path.read_bytes()) == "eventstream"
    (capture,) = sources.load(path)
    session = capture.session()
    assert session.framing == "eventstream" and session.provider == "bedrock"
    assert session.message.text == "Hé" and session.complete


def test_a_repeated_bad_header_block_is_reported_every_time() -> None:
    # Header blocks are remembered once read; one that had an issue must not be.
    good = frame([(":event-type", 7, "x")])
    bad = good[:-5] + b"\xff"  # the event name's one byte, not UTF-8
    bad += zlib.crc32(bad).to_bytes(4, "big")
    events, parser = parse([bad, bad, SMALL[0], SMALL[0]])
    assert [e.event for e in events] == ["\ufffd", "\ufffd", "messageStart", "messageStart"]
    assert [(i.kind, i.offset) for i in parser.issues] == [(IssueKind.INVALID_UTF8, 12 + 15),
                                                           (IssueKind.INVALID_UTF8, len(bad) + 12 + 15)]
