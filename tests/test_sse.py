"""Conformance and property tests for ssemedic.core.sse.SSEParser.

Rules are those of WHATWG HTML 9.2.6 "Interpreting an event stream"; every
case runs whole, byte by byte and cut at every split point, and a hypothesis
property compares any chunking of any bytes with a single feed and with the
spec-transcribed oracle in ``sse_reference``.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest
from helpers import chunkings
from hypothesis import given, settings
from hypothesis import strategies as st
from sse_reference import reference_events

from ssemedic.core.events import BOM, IssueKind, ParseIssue, ServerSentEvent
from ssemedic.core.sse import SSEParser

Fields = tuple[str, str, str | None, int | None]


def parse(chunks: list[bytes], **kwargs: Any) -> tuple[list[ServerSentEvent], list[ParseIssue]]:
    parser = SSEParser(**kwargs)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    return events, parser.issues


def fields(events: list[ServerSentEvent]) -> list[Fields]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


def msg(data: str, id: str | None = None, retry: int | None = None, event: str = "message") -> Fields:
    return (event, data, id, retry)


# (name, input, expected (event, data, id, retry) tuples, expected issue kinds)
CASES: list[tuple[str, bytes, list[Fields], list[str]]] = [
    # --- the spec's own examples, verbatim ---
    (
        "spec-intro-three-messages",
        b"data: This is the first message.\n\n"
        b"data: This is the second message, it\n"
        b"data: has two lines.\n\n"
        b"data: This is the third message.\n\n",
        [
            msg("This is the first message."),
            msg("This is the second message, it\nhas two lines."),
            msg("This is the third message."),
        ],
        [],
    ),
    (
        "spec-intro-event-types",
        b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n",
        [msg("73857293", event="add"), msg("2153", event="remove"), msg("113411", event="add")],
        [],
    ),
    ("spec-stock-multiline-data", b"data: YHOO\ndata: +2\ndata: 10\n\n", [msg("YHOO\n+2\n10")], []),
    (
        "spec-test-stream-comment-and-ids",
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
        [msg("first event", "1"), msg("second event", ""), msg(" third event", "")],
        [],
    ),
    (
        "spec-two-events-last-block-unterminated",
        b"data\n\ndata\ndata\n\ndata:",
        [msg(""), msg("\n")],
        ["incomplete-event"],
    ),
    ("spec-data-colon-space-optional", b"data:test\n\ndata: test\n\n", [msg("test"), msg("test")], []),
    # --- line endings ---
    ("lf", b"data: a\n\n", [msg("a")], []),
    ("crlf", b"data: a\r\n\r\n", [msg("a")], []),
    ("cr", b"data: a\r\r", [msg("a")], []),
    ("mixed-line-endings", b"data: a\r\ndata: b\rdata: c\n\r\n", [msg("a\nb\nc")], []),
    ("crlf-split-across-feeds", b"data: a\r\n\r\ndata: b\r\n\r\n", [msg("a"), msg("b")], []),
    ("crlf-is-one-line-end-not-two", b"data: a\r\ndata: b\r\n\r\n", [msg("a\nb")], []),
    ("lf-then-cr-is-a-blank-line", b"data: a\n\rdata: b\n\n", [msg("a"), msg("b")], []),
    ("cr-cr-lf-is-line-end-then-blank-line", b"data: a\r\r\ndata: b\n\n", [msg("a"), msg("b")], []),
    ("cr-as-last-byte-ends-the-blank-line-at-close", b"data: a\n\r", [msg("a")], []),
    ("cr-as-last-byte-ends-a-line-but-not-the-block", b"data: a\r", [], ["incomplete-event"]),
    ("crlf-blank-line-at-the-very-end", b"data: a\r\n\r\n", [msg("a")], []),
    # --- BOM ---
    ("bom-stripped-at-start", BOM + b"data: a\n\n", [msg("a")], ["bom"]),
    ("second-bom-is-part-of-the-field-name", BOM + BOM + b"data: a\n\n", [], ["bom", "unknown-field"]),
    ("bom-after-the-start-is-a-field-name-byte", b"data: a\n\n" + BOM + b"data: b\n\n", [msg("a")], ["unknown-field"]),
    ("bom-inside-a-value-is-data", b"data: " + BOM + b"a\n\n", [msg("\ufeffa")], []),
    ("bom-only-stream", BOM, [], ["bom"]),
    ("partial-bom-is-invalid-utf8", b"\xef\xbbdata: a\n\n", [], ["unknown-field", "invalid-utf8"]),
    # --- comments ---
    ("comment-line-ignored", b": hello\ndata: a\n\n", [msg("a")], []),
    ("colon-alone-is-a-comment", b":\ndata: a\n\n", [msg("a")], []),
    ("comment-only-block-dispatches-nothing", b": ping\n\n: pong\r\n\r\n", [], []),
    ("comment-inside-event-keeps-data-lines", b"data: a\n: c\ndata: b\n\n", [msg("a\nb")], []),
    # --- field syntax ---
    ("field-without-colon-has-empty-value", b"data\n\n", [msg("")], []),
    ("event-without-colon-means-message", b"event\ndata: a\n\n", [msg("a")], []),
    ("exactly-one-leading-space-stripped", b"data:  a\n\n", [msg(" a")], []),
    ("no-space-after-colon", b"data:a\n\n", [msg("a")], []),
    ("tab-after-colon-is-kept", b"data:\ta\n\n", [msg("\ta")], []),
    ("trailing-spaces-kept", b"data: a  \n\n", [msg("a  ")], []),
    ("value-keeps-later-colons", b"data: a: b:c\n\n", [msg("a: b:c")], []),
    ("several-data-lines-joined-with-lf", b"data: a\ndata: b\ndata: c\n\n", [msg("a\nb\nc")], []),
    ("empty-data-lines-keep-their-newlines", b"data\ndata:\ndata: x\n\n", [msg("\n\nx")], []),
    ("nul-in-data-is-kept", b"data: a\x00b\n\n", [msg("a\x00b")], []),
    # --- dispatch ---
    ("data-with-empty-value-dispatches", b"data:\n\n", [msg("")], []),
    ("event-without-data-dispatches-nothing", b"event: x\n\n", [], []),
    ("event-type-does-not-leak-into-next-block", b"event: x\n\ndata: a\n\n", [msg("a")], []),
    ("event-sets-the-type", b"event: add\ndata: 1\n\n", [msg("1", event="add")], []),
    ("empty-event-means-message", b"event:\ndata: a\n\n", [msg("a")], []),
    ("last-event-field-wins", b"event: a\nevent: b\ndata: x\n\n", [msg("x", event="b")], []),
    ("event-type-resets-after-dispatch", b"event: a\ndata: x\n\ndata: y\n\n", [msg("x", event="a"), msg("y")], []),
    ("event-then-several-data-lines", b"event: a\ndata: x\ndata: y\n\n", [msg("x\ny", event="a")], []),
    ("event-with-empty-value-then-data", b"event: \ndata: x\n\n", [msg("x")], []),
    ("event-then-data-without-space", b"event: a\ndata:x\n\n", [msg("x", event="a")], []),
    ("event-then-data-then-id", b"event: a\ndata: x\nid: 7\n\n", [msg("x", "7", event="a")], []),
    ("extra-blank-lines-dispatch-nothing", b"\n\n\ndata: a\n\n\n\n\r\r", [msg("a")], []),
    ("empty-stream", b"", [], []),
    # --- id ---
    ("id-persists-across-events", b"id: 1\ndata: a\n\ndata: b\n\n", [msg("a", "1"), msg("b", "1")], []),
    ("id-after-data-in-same-block-applies", b"data: a\nid: 5\n\n", [msg("a", "5")], []),
    ("id-only-block-sets-the-id", b"id: 7\n\ndata: a\n\n", [msg("a", "7")], []),
    (
        "id-with-nul-is-ignored",
        b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
        [msg("a", "1"), msg("b", "1")],
        ["invalid-id"],
    ),
    ("id-with-nul-never-accepted-stays-none", b"id: \x00\ndata: a\n\n", [msg("a")], ["invalid-id"]),
    ("empty-id-resets-to-empty-string", b"id: 1\ndata: a\n\nid:\ndata: b\n\n", [msg("a", "1"), msg("b", "")], []),
    ("id-is-none-when-never-set", b"data: a\n\ndata: b\n\n", [msg("a"), msg("b")], []),
    ("id-keeps-inner-spaces", b"id:  x y \ndata: a\n\n", [msg("a", " x y ")], []),
    # --- retry ---
    ("retry-all-digits", b"retry: 1000\ndata: a\n\n", [msg("a", retry=1000)], []),
    ("retry-leading-zeros", b"retry: 007\ndata: a\n\n", [msg("a", retry=7)], []),
    ("retry-decimal-ignored", b"retry: 1.5\ndata: a\n\n", [msg("a")], ["invalid-retry"]),
    ("retry-empty-ignored", b"retry:\ndata: a\n\n", [msg("a")], ["invalid-retry"]),
    ("retry-without-colon-ignored", b"retry\ndata: a\n\n", [msg("a")], ["invalid-retry"]),
    ("retry-negative-ignored", b"retry: -1\ndata: a\n\n", [msg("a")], ["invalid-retry"]),
    ("retry-trailing-space-ignored", b"retry: 10 \ndata: a\n\n", [msg("a")], ["invalid-retry"]),
    ("retry-unicode-digits-ignored", "retry: ١٢\ndata: a\n\n".encode(), [msg("a")], ["invalid-retry"]),
    ("retry-fullwidth-digits-ignored", "retry: １２\ndata: a\n\n".encode(), [msg("a")], ["invalid-retry"]),
    ("retry-only-from-own-block", b"retry: 5\ndata: a\n\ndata: b\n\n", [msg("a", retry=5), msg("b")], []),
    ("retry-in-block-without-data-not-carried", b"retry: 5\n\ndata: a\n\n", [msg("a")], []),
    (
        "last-valid-retry-in-block-wins",
        b"retry: 1\nretry: x\nretry: 2\ndata: a\n\n",
        [msg("a", retry=2)],
        ["invalid-retry"],
    ),
    ("invalid-retry-keeps-earlier-valid-one", b"retry: 1\nretry: x\ndata: a\n\n", [msg("a", retry=1)], ["invalid-retry"]),
    # --- unknown fields, case ---
    ("unknown-field-ignored", b"foo: bar\ndata: a\n\n", [msg("a")], ["unknown-field"]),
    (
        "field-names-are-case-sensitive",
        b"Data: a\nEVENT: x\nId: 3\ndata: b\n\n",
        [msg("b")],
        ["unknown-field", "unknown-field", "unknown-field"],
    ),
    ("space-before-colon-makes-another-field", b"data : a\n\n", [], ["unknown-field"]),
    ("leading-space-makes-another-field", b" data: a\n\n", [], ["unknown-field"]),
    # --- end of stream ---
    ("final-block-without-blank-line-not-dispatched", b"data: a\n\ndata: b\n", [msg("a")], ["incomplete-event"]),
    ("final-block-without-any-line-end", b"data: a", [], ["incomplete-event"]),
    ("final-comment-without-newline-is-incomplete", b"data: a\n\n: ping", [msg("a")], ["incomplete-event"]),
    ("trailing-blank-lines-are-not-incomplete", b"data: a\n\n\n\r\n", [msg("a")], []),
    # --- UTF-8 ---
    ("multibyte-data", "data: héllo €😀\n\n".encode(), [msg("héllo €😀")], []),
    (
        "multibyte-event-and-id",
        "event: ünï\nid: 日本\ndata: 😀\n\n".encode(),
        [msg("😀", "日本", event="ünï")],
        [],
    ),
    ("invalid-utf8-replaced", b"data: a\xffb\n\n", [msg("a\ufffdb")], ["invalid-utf8"]),
    ("truncated-sequence-before-line-end", b"data: \xe2\x82\n\n", [msg("\ufffd")], ["invalid-utf8"]),
    ("truncated-sequence-before-colon", b"data\xe2\x82: x\n\n", [], ["unknown-field", "invalid-utf8"]),
    ("encoded-surrogate-is-invalid", b"data: \xed\xa0\x80\n\n", [msg("\ufffd\ufffd\ufffd")], ["invalid-utf8"]),
    ("invalid-utf8-in-comment-reported", b": \xff\ndata: a\n\n", [msg("a")], ["invalid-utf8"]),
    ("invalid-utf8-in-unknown-field-reported", b"foo: \xff\ndata: a\n\n", [msg("a")], ["unknown-field", "invalid-utf8"]),
    (
        "invalid-utf8-in-event-and-id",
        b"event: \xff\nid: \xfe\ndata: a\n\n",
        [msg("a", "\ufffd", event="\ufffd")],
        ["invalid-utf8", "invalid-utf8"],
    ),
    ("invalid-utf8-in-retry-reported", b"retry: 1\xff\ndata: a\n\n", [msg("a")], ["invalid-retry", "invalid-utf8"]),
    ("invalid-utf8-in-nul-id-reported", b"id: \x00\xff\ndata: a\n\n", [msg("a")], ["invalid-id", "invalid-utf8"]),
]


@pytest.mark.parametrize(("stream", "expected", "kinds"), [pytest.param(s, e, k, id=n) for n, s, e, k in CASES])
def test_conformance_in_every_chunking(stream: bytes, expected: list[Fields], kinds: list[str]) -> None:
    whole = parse([stream])
    for how, chunks in chunkings(stream):
        events, issues = parse(chunks)
        assert fields(events) == expected, how
        assert [issue.kind for issue in issues] == kinds, how
        assert (events, issues) == whole, how


@pytest.mark.parametrize(("stream", "expected"), [pytest.param(s, e, id=n) for n, s, e, _ in CASES])
def test_reference_agrees_with_conformance_table(stream: bytes, expected: list[Fields]) -> None:
    assert reference_events(stream) == expected


# --- properties -------------------------------------------------------------

_VALUES = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=6).map(str.encode),
    st.sampled_from(
        [b"1", b"42", b"007", b"1.5", b"-1", b"", b" ", b"  x", b"\x00", "١٢".encode(), b"\xff", b"\xe2\x82",
         b"\xed\xa0\x80", BOM, "é€😀".encode(), b"\xf0\x9f"]
    ),
)
_EOL = st.sampled_from([b"\n", b"\r", b"\r\n"])
_NAMES = st.sampled_from([b"data", b"data", b"event", b"id", b"retry", b"Data", b"foo", b"", BOM + b"data"])
_FIELD_LINE = st.tuples(_NAMES, st.sampled_from([b":", b": ", b":  ", b""]), _VALUES, _EOL).map(b"".join)
_COMMENT_LINE = st.tuples(st.just(b":"), _VALUES, _EOL).map(b"".join)
SSE_LIKE = st.lists(
    st.one_of(_FIELD_LINE, _FIELD_LINE, _COMMENT_LINE, _EOL, _EOL, st.just(BOM), st.binary(max_size=6)),
    max_size=24,
).map(b"".join)


@st.composite
def cut(draw: st.DrawFn, streams: st.SearchStrategy[bytes]) -> tuple[bytes, list[bytes]]:
    """A stream and any chunking of it (empty chunks included)."""
    data = draw(streams)
    points = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=10))))
    return data, [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def counted_line_endings(data: bytes) -> dict[str, int]:
    crlf = data.count(b"\r\n")
    return {"lf": data.count(b"\n") - crlf, "crlf": crlf, "cr": data.count(b"\r") - crlf}


def check_chunking_invariance(data: bytes, chunks: list[bytes]) -> None:
    whole, chunked = SSEParser(), SSEParser()
    whole_events = whole.feed(data) + whole.close()
    chunked_events = [e for chunk in chunks for e in chunked.feed(chunk)] + chunked.close()
    assert chunked_events == whole_events
    assert chunked.issues == whole.issues
    assert chunked.line_endings == whole.line_endings == counted_line_endings(data)
    assert (chunked.last_event_id, chunked.reconnection_time) == (whole.last_event_id, whole.reconnection_time)
    for event in whole_events:
        assert data[event.offset : event.offset + len(event.raw)] == event.raw
    for issue in whole.issues:
        if issue.kind is IssueKind.INVALID_UTF8:  # the offset is that of the byte named
            assert repr(data[issue.offset : issue.offset + 1]) in issue.detail
    assert fields(whole_events) == reference_events(data)


@settings(max_examples=400, deadline=None)
@given(cut(st.binary(max_size=120)))
def test_any_bytes_any_chunking_matches_single_feed_and_reference(case: tuple[bytes, list[bytes]]) -> None:
    check_chunking_invariance(*case)


@settings(max_examples=400, deadline=None)
@given(cut(SSE_LIKE))
def test_sse_like_streams_any_chunking_match_single_feed_and_reference(case: tuple[bytes, list[bytes]]) -> None:
    check_chunking_invariance(*case)


@settings(max_examples=150, deadline=None)
@given(cut(SSE_LIKE))
def test_small_cap_any_chunking_matches_single_feed(case: tuple[bytes, list[bytes]]) -> None:
    data, chunks = case
    whole = parse([data], max_event_size=8)
    assert parse(chunks, max_event_size=8) == whole
    assert parse([data[i : i + 1] for i in range(len(data))], max_event_size=8) == whole


# Token streams: mostly single "data: " lines ending in LF LF, the shape the
# parser's whole-run fast path takes, with the odd other block, stray blank
# line, invalid UTF-8 or multi-byte character mixed in so that runs fall back.
_LF_VALUES = _VALUES.filter(lambda v: b"\n" not in v and b"\r" not in v)
_DATA_EVENT = _LF_VALUES.map(lambda v: b"data: " + v + b"\n\n")
_LF_FIELD_LINE = _FIELD_LINE.filter(lambda line: b"\r" not in line)
TOKEN_STREAM = st.lists(
    st.one_of(_DATA_EVENT, _DATA_EVENT, _DATA_EVENT, _LF_FIELD_LINE, st.just(b"\n"), st.just(b"data:x\n\n")),
    max_size=30,
).map(b"".join)


# Typed streams (Anthropic, OpenAI Responses): "event: " then "data: " blocks,
# the shape of the block-by-block path's second shortcut, and near misses.
_TYPED_EVENT = st.tuples(
    st.just(b"event: "),
    _LF_VALUES,
    st.sampled_from([b"\ndata: ", b"\ndata: ", b"\ndata:", b"\nid: 1\ndata: ", b"\r\ndata: "]),
    _LF_VALUES,
    st.sampled_from([b"\n\n", b"\n\n", b"\ndata: more\n\n", b"\nid: 7\n\n", b"\r\n\r\n", b"\n"]),
).map(b"".join)
TYPED_STREAM = st.lists(
    st.one_of(_TYPED_EVENT, _TYPED_EVENT, _DATA_EVENT, _LF_FIELD_LINE, st.just(b"\n")),
    max_size=20,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(cut(TYPED_STREAM))
def test_typed_streams_any_chunking_match_single_feed_and_reference(case: tuple[bytes, list[bytes]]) -> None:
    check_chunking_invariance(*case)


@settings(max_examples=400, deadline=None)
@given(cut(TOKEN_STREAM))
def test_token_streams_any_chunking_match_single_feed_and_reference(case: tuple[bytes, list[bytes]]) -> None:
    check_chunking_invariance(*case)


@settings(max_examples=150, deadline=None)
@given(cut(TOKEN_STREAM))
def test_token_streams_small_cap_any_chunking_matches_single_feed(case: tuple[bytes, list[bytes]]) -> None:
    data, chunks = case
    whole = parse([data], max_event_size=10)
    assert parse(chunks, max_event_size=10) == whole
    assert parse([data[i : i + 1] for i in range(len(data))], max_event_size=10) == whole
    parser = SSEParser(max_event_size=10)
    for chunk in chunks:
        parser.feed(chunk)
    assert parser.line_endings == counted_line_endings(data)  # skipped bytes too
    parser.close()
    assert parser.line_endings == counted_line_endings(data)


def test_run_of_data_lines_matches_block_by_block() -> None:
    # The same events, offsets and raw bytes whether a feed holds the whole
    # run (fast path) or one byte at a time (every block alone).
    stream = "".join(f"data: {{\"t\": \"токен {i} 😀\"}}\n\n" for i in range(50)).encode()
    whole = SSEParser().feed(stream)
    assert whole == parse([stream[i : i + 1] for i in range(len(stream))])[0]
    assert [e.data for e in whole] == [f'{{"t": "токен {i} 😀"}}' for i in range(50)]
    assert b"".join(e.raw for e in whole) == stream
    assert [e.offset for e in whole] == [stream.index(e.raw) for e in whole]


def test_run_with_an_oversized_event_reports_it() -> None:
    stream = b"data: a\n\ndata: " + b"x" * 20 + b"\n\ndata: b\n\n"
    events, issues = parse([stream], max_event_size=10)
    assert fields(events) == [msg("a"), msg("b")]
    assert [i.kind for i in issues] == [IssueKind.OVERSIZED_EVENT]


def test_run_with_invalid_utf8_reports_where() -> None:
    stream = b"data: a\n\ndata: b\xffc\n\n"
    events, issues = parse([stream])
    assert fields(events) == [msg("a"), msg("b\ufffdc")]
    assert [(i.kind, i.offset) for i in issues] == [(IssueKind.INVALID_UTF8, 16)]


def test_event_is_a_frozen_dataclass() -> None:
    event = ServerSentEvent("update", "x", "7", 10, b"event: update\ndata: x\n\n", 3)
    assert dataclasses.is_dataclass(event)
    assert [f.name for f in dataclasses.fields(ServerSentEvent)] == ["event", "data", "id", "retry", "raw", "offset"]
    assert (event.event, event.data, event.id, event.retry, event.offset) == ("update", "x", "7", 10, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = "y"  # type: ignore[misc]
    assert dataclasses.replace(event, data="y").data == "y"
    assert dataclasses.asdict(event)["raw"] == b"event: update\ndata: x\n\n"
    assert ServerSentEvent() == ServerSentEvent(event="message", data="", id=None, retry=None, raw=b"", offset=0)
    assert event != dataclasses.replace(event, offset=4)
    assert pickle.loads(pickle.dumps(event)) == event
    assert copy.deepcopy(event) == event and hash(copy.copy(event)) == hash(event)
    assert repr(ServerSentEvent(data="d")) == (
        "ServerSentEvent(event='message', data='d', id=None, retry=None, raw=b'', offset=0)"
    )
    assert SSEParser().feed(b"data: x\n\n") == [ServerSentEvent(data="x", raw=b"data: x\n\n")]


# --- the rules one by one ---------------------------------------------------


def test_crlf_split_across_feeds() -> None:
    events, issues = parse([b"data: a\r", b"\n\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert fields(events) == [msg("a"), msg("b")]
    assert [e.raw for e in events] == [b"data: a\r\n\r\n", b"data: b\r\n\r\n"]
    assert issues == []


def test_cr_at_end_of_feed_waits_for_a_possible_lf() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\r") == []
    [event] = parser.feed(b"\n")
    assert event.raw == b"data: a\n\r\n"


def test_cr_as_last_byte_is_a_line_end_at_close() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r\r") == []
    assert fields(parser.close()) == [msg("a")]
    assert parser.issues == []


def test_bom_only_stripped_at_start() -> None:
    events, issues = parse([BOM + b"data: a\n\n" + BOM + b"data: b\n\ndata: " + BOM + b"\n\n"])
    assert fields(events) == [msg("a"), msg("\ufeff")]
    assert [(i.kind, i.offset) for i in issues] == [(IssueKind.BOM, 0), (IssueKind.UNKNOWN_FIELD, 12)]
    assert events[0].offset == 3


def test_bom_split_across_feeds_is_still_stripped() -> None:
    events, issues = parse([b"\xef", b"\xbb", b"\xbfdata: a\n\n"])
    assert fields(events) == [msg("a")]
    assert [i.kind for i in issues] == [IssueKind.BOM]


def test_multibyte_character_split_at_every_byte_offset() -> None:
    stream = "event: é\nid: €\ndata: 😀𝄞\n\n".encode()
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            events, issues = parse([stream[:i], stream[i:j], stream[j:]])
            assert fields(events) == [msg("😀𝄞", "€", event="é")], (i, j)
            assert issues == []


def test_invalid_utf8_is_reported_at_its_byte_offset() -> None:
    events, issues = parse([b"data: ok\n\ndata: a\xffb\n\n"])
    assert fields(events) == [msg("ok"), msg("a\ufffdb")]
    assert [(i.kind, i.offset) for i in issues] == [(IssueKind.INVALID_UTF8, 17)]


def test_huge_retry_is_reported_not_raised() -> None:
    # Python's int() refuses strings of over 4300 digits by default.
    stream = b"retry: " + b"9" * 5000 + b"\ndata: a\n\nretry: " + b"0" * 5000 + b"12\ndata: b\n\n"
    for how, chunks in chunkings(stream, max_splits=40):
        events, issues = parse(chunks)
        assert fields(events) == [msg("a"), msg("b", retry=12)], how
        assert [i.kind for i in issues] == [IssueKind.INVALID_RETRY], how


def test_reconnection_time_and_last_event_id_are_stream_state() -> None:
    parser = SSEParser()
    parser.feed(b"retry: 300\nid: 9\n\nretry: x\n\n")
    assert (parser.reconnection_time, parser.last_event_id) == (300, "9")


def test_issue_offsets_are_stream_offsets() -> None:
    stream = BOM + b"data: a\n\nfoo: 1\nid: \x00\nretry: x\ndata: b\n\ndata: c"
    _, issues = parse([stream])
    assert [(i.kind, i.offset) for i in issues] == [
        (IssueKind.BOM, 0),
        (IssueKind.UNKNOWN_FIELD, 12),
        (IssueKind.INVALID_ID, 19),
        (IssueKind.INVALID_RETRY, 25),
        (IssueKind.INCOMPLETE_EVENT, 43),
    ]


def test_raw_bytes_of_consecutive_events_concatenate_to_the_input() -> None:
    body = b"event: a\r\ndata: 1\r\n\r\ndata: 2\rid: x\r\rretry: 5\ndata: \xc3\xa9\n\n"
    for stream, start in [(body, 0), (BOM + body, 3)]:
        for how, chunks in chunkings(stream):
            events, _ = parse(chunks)
            assert b"".join(e.raw for e in events) == stream[start:], how
            assert [e.offset for e in events] == [start, start + 21, start + 36], how


# --- caps and memory --------------------------------------------------------


def test_oversized_event_skipped_and_reported_in_every_chunking() -> None:
    big = b"data: " + b"x" * 200 + b"\n\n"
    stream = b"data: a\n\n" + big + b"data: b\n\n"
    for how, chunks in chunkings(stream):
        events, issues = parse(chunks, max_event_size=64)
        assert fields(events) == [msg("a"), msg("b")], how
        assert [(i.kind, i.offset) for i in issues] == [(IssueKind.OVERSIZED_EVENT, 9)], how
        assert events[1].offset == 9 + len(big), how


def test_oversized_event_with_crlf_and_many_lines_is_skipped() -> None:
    big = b"data: xxxxxxxx\r\n" * 20 + b"\r\n"
    stream = b"id: 1\r\ndata: a\r\n\r\n" + big + b"data: b\r\n\r\n"
    for how, chunks in chunkings(stream):
        events, issues = parse(chunks, max_event_size=64)
        assert fields(events) == [msg("a", "1"), msg("b", "1")], how
        assert [i.kind for i in issues] == [IssueKind.OVERSIZED_EVENT], how


def test_event_exactly_at_the_cap_is_kept() -> None:
    block = b"data: " + b"x" * 58  # 64 bytes before the blank line
    for how, chunks in chunkings(block + b"\r\n\r\n"):
        events, issues = parse(chunks, max_event_size=64)
        assert fields(events) == [msg("x" * 58)], how
        assert issues == [], how


def test_unterminated_oversized_event_reported_at_close() -> None:
    stream = b"data: a\n\ndata: " + b"x" * 200
    for how, chunks in chunkings(stream):
        events, issues = parse(chunks, max_event_size=64)
        assert fields(events) == [msg("a")], how
        assert [i.kind for i in issues] == [IssueKind.OVERSIZED_EVENT, IssueKind.INCOMPLETE_EVENT], how


@pytest.mark.parametrize(
    "piece",
    [b"x" * 1000, b"data: xyz\n" * 100, b"data: xyz\r" * 100, b"data: xyz\r\n" * 80, b":" * 1000],
    ids=["one-line", "lf-lines", "cr-lines", "crlf-lines", "comment"],
)
def test_memory_stays_bounded_while_feeding_a_huge_event(piece: bytes) -> None:
    cap = 4096
    parser = SSEParser(max_event_size=cap)
    parser.feed(b"data: ")
    for _ in range(500):  # about 500 kB of one event
        assert parser.feed(piece) == []
        # The cap, plus at most three bytes that may start the blank line.
        assert len(parser._buf) <= cap + 3
    assert fields(parser.feed(b"\n\ndata: ok\n\n")) == [msg("ok")]
    assert [i.kind for i in parser.issues] == [IssueKind.OVERSIZED_EVENT]


def test_memory_stays_bounded_when_fed_byte_by_byte() -> None:
    cap = 64
    parser = SSEParser(max_event_size=cap)
    for byte in b"data: " + b"y" * 5000:
        parser.feed(bytes([byte]))
        assert len(parser._buf) <= cap + 3
    assert fields(parser.feed(b"\r\rdata: ok\r\r")) == []
    assert fields(parser.close()) == [msg("ok")]


# --- bookkeeping and API ----------------------------------------------------


def test_line_endings_are_counted_by_kind_in_every_chunking() -> None:
    stream = b"data: a\r\n\r\ndata: b\n\ndata: c\r\r: x\r\n\n"
    for how, chunks in chunkings(stream):
        parser = SSEParser()
        for chunk in chunks:
            parser.feed(chunk)
        parser.close()
        assert parser.line_endings == {"crlf": 3, "lf": 3, "cr": 2}, how


def test_feed_after_close_raises() -> None:
    parser = SSEParser()
    parser.close()
    with pytest.raises(RuntimeError):
        parser.feed(b"data: a\n\n")


def test_close_twice_is_harmless() -> None:
    parser = SSEParser()
    parser.feed(b"data: a\n\ndata: b")
    assert parser.close() == []
    assert parser.close() == []
    assert [i.kind for i in parser.issues] == [IssueKind.INCOMPLETE_EVENT]


def test_empty_feed_returns_nothing() -> None:
    parser = SSEParser()
    assert parser.feed(b"") == []
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"") == []
    assert fields(parser.feed(b"\n")) == [msg("a")]


def test_bytearray_and_memoryview_are_accepted() -> None:
    parser = SSEParser()
    assert fields(parser.feed(bytearray(b"data: a\n\n")) + parser.feed(memoryview(b"data: b\n\n"))) == [
        msg("a"),
        msg("b"),
    ]


def test_nonpositive_cap_is_rejected() -> None:
    with pytest.raises(ValueError):
        SSEParser(max_event_size=0)
