"""Framing tests for ssemedic.core.ndjson.NDJSONParser: every case runs whole, byte
by byte and cut at every split point, and a hypothesis property compares any
chunking of any bytes with a single feed."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import chunkings
from hypothesis import given, settings
from hypothesis import strategies as st

from ssemedic.core.events import BOM, IssueKind, ParseIssue, ServerSentEvent
from ssemedic.core.ndjson import NDJSONParser


def parse(chunks: list[bytes], **kwargs: Any) -> tuple[list[ServerSentEvent], list[ParseIssue]]:
    parser = NDJSONParser(**kwargs)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    return events, parser.issues


# (name, input, expected data of each line, expected issue kinds)
CASES: list[tuple[str, bytes, list[str], list[str]]] = [
    ("lf-lines", b'{"a":1}\n{"b":2}\n', ['{"a":1}', '{"b":2}'], []),
    ("crlf-lines", b'{"a":1}\r\n{"b":2}\r\n', ['{"a":1}', '{"b":2}'], []),
    ("blank-lines-skipped", b'\n{"a":1}\n\n  \n\t\r\n\r\n{"b":2}\n\n', ['{"a":1}', '{"b":2}'], []),
    ("bom-stripped-at-start", BOM + b'{"a":1}\n', ['{"a":1}'], ["bom"]),
    ("bom-later-is-data", b'{"a":1}\n' + BOM + b'{"b":2}\n', ['{"a":1}', '\ufeff{"b":2}'], []),
    ("bom-only", BOM, [], ["bom"]),
    ("multibyte-characters", '{"t":"é€😀𝄞"}\n'.encode(), ['{"t":"é€😀𝄞"}'], []),
    ("invalid-utf8-replaced-and-reported", b'{"t":"\xff"}\n{"u":1}\n', ['{"t":"\ufffd"}', '{"u":1}'], ["invalid-utf8"]),
    ("truncated-sequence-before-newline", b'{"t":"\xe2\x82"}\n', ['{"t":"\ufffd"}'], ["invalid-utf8"]),
    ("final-line-without-newline-dispatched", b'{"a":1}\n{"b":2}', ['{"a":1}', '{"b":2}'], ["missing-final-newline"]),
    ("only-line-without-newline", b'{"a":1}', ['{"a":1}'], ["missing-final-newline"]),
    ("final-crlf-less-line-with-cr", b'{"a":1}\r', ['{"a":1}'], ["missing-final-newline"]),
    ("final-whitespace-without-newline-ignored", b'{"a":1}\n  ', ['{"a":1}'], []),
    ("lone-cr-is-not-a-line-end", b"a\rb\n", ["a\rb"], []),
    ("non-json-lines-are-still-framed", b"hello\n[1, 2]\n", ["hello", "[1, 2]"], []),
    ("surrounding-spaces-kept", b'  {"a":1}  \n', ['  {"a":1}  '], []),
    ("empty-stream", b"", [], []),
]


@pytest.mark.parametrize(("stream", "expected", "kinds"), [pytest.param(s, e, k, id=n) for n, s, e, k in CASES])
def test_framing_in_every_chunking(stream: bytes, expected: list[str], kinds: list[str]) -> None:
    whole = parse([stream])
    for how, chunks in chunkings(stream):
        events, issues = parse(chunks)
        assert [e.data for e in events] == expected, how
        assert all(e.event == "message" and e.id is None and e.retry is None for e in events), how
        assert [issue.kind for issue in issues] == kinds, how
        assert (events, issues) == whole, how


def test_raw_and_offsets_cover_each_line() -> None:
    stream = BOM + b'{"a":1}\r\n\n{"b":2}\n{"c":3}'
    for how, chunks in chunkings(stream):
        events, _ = parse(chunks)
        assert [(e.raw, e.offset) for e in events] == [
            (b'{"a":1}\r\n', 3),
            (b'{"b":2}\n', 13),
            (b'{"c":3}', 21),
        ], how


def test_split_multibyte_character_at_every_offset() -> None:
    stream = '{"t":"😀"}\n{"u":"é"}\n'.encode()
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            events, issues = parse([stream[:i], stream[i:j], stream[j:]])
            assert [e.json() for e in events] == [{"t": "😀"}, {"u": "é"}], (i, j)
            assert issues == []


def test_missing_final_newline_reported_at_line_start() -> None:
    _, issues = parse([b'{"a":1}\n{"b":2}'])
    assert [(i.kind, i.offset) for i in issues] == [(IssueKind.MISSING_FINAL_NEWLINE, 8)]


def test_oversized_line_skipped_and_later_lines_parsed() -> None:
    stream = b'{"a":1}\n' + b"x" * 100 + b'\n{"b":2}\n'
    for how, chunks in chunkings(stream):
        events, issues = parse(chunks, max_event_size=16)
        assert [e.data for e in events] == ['{"a":1}', '{"b":2}'], how
        assert [(i.kind, i.offset) for i in issues] == [(IssueKind.OVERSIZED_EVENT, 8)], how
        assert events[1].offset == 109, how


def test_unterminated_oversized_line_reported_at_close() -> None:
    stream = b'{"a":1}\n' + b"x" * 100
    for how, chunks in chunkings(stream):
        events, issues = parse(chunks, max_event_size=16)
        assert [e.data for e in events] == ['{"a":1}'], how
        assert [i.kind for i in issues] == [IssueKind.OVERSIZED_EVENT, IssueKind.INCOMPLETE_EVENT], how


def test_line_exactly_at_the_cap_is_kept() -> None:
    for how, chunks in chunkings(b"y" * 16 + b"\n"):
        events, issues = parse(chunks, max_event_size=16)
        assert [e.data for e in events] == ["y" * 16], how
        assert issues == [], how


def test_memory_stays_bounded_while_feeding_a_huge_line() -> None:
    cap = 4096
    parser = NDJSONParser(max_event_size=cap)
    for _ in range(500):
        assert parser.feed(b"z" * 1000) == []
        assert len(parser._buf) <= cap
    assert [e.data for e in parser.feed(b'\n{"ok":1}\n')] == ['{"ok":1}']
    assert [i.kind for i in parser.issues] == [IssueKind.OVERSIZED_EVENT]


def test_feed_after_close_raises() -> None:
    parser = NDJSONParser()
    parser.close()
    with pytest.raises(RuntimeError):
        parser.feed(b"{}\n")


def test_close_twice_is_harmless() -> None:
    parser = NDJSONParser()
    parser.feed(b"{}")
    assert [e.data for e in parser.close()] == ["{}"]
    assert parser.close() == []
    assert [i.kind for i in parser.issues] == [IssueKind.MISSING_FINAL_NEWLINE]


def test_empty_feed_returns_nothing() -> None:
    parser = NDJSONParser()
    assert parser.feed(b"") == []
    assert parser.feed(b"{}") == []
    assert parser.feed(b"") == []
    assert [e.data for e in parser.feed(b"\n")] == ["{}"]


# --- properties -------------------------------------------------------------

NDJSON_LIKE = st.lists(
    st.one_of(
        st.sampled_from([b"\n", b"\r\n", b"\r", b" ", b"\t", BOM, b"\xff", b"\xe2\x82", "é😀".encode(), b"{}", b"[1]"]),
        st.text(st.characters(codec="utf-8"), max_size=6).map(str.encode),
        st.binary(max_size=4),
    ),
    max_size=30,
).map(b"".join)


@st.composite
def cut(draw: st.DrawFn, streams: st.SearchStrategy[bytes]) -> tuple[bytes, list[bytes]]:
    """A stream and any chunking of it (empty chunks included)."""
    data = draw(streams)
    points = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=10))))
    return data, [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def check_chunking_invariance(data: bytes, chunks: list[bytes], **kwargs: Any) -> None:
    whole_events, whole_issues = parse([data], **kwargs)
    assert parse(chunks, **kwargs) == (whole_events, whole_issues)
    for event in whole_events:
        assert data[event.offset : event.offset + len(event.raw)] == event.raw


@settings(max_examples=400, deadline=None)
@given(cut(st.binary(max_size=120)))
def test_any_bytes_any_chunking_matches_single_feed(case: tuple[bytes, list[bytes]]) -> None:
    check_chunking_invariance(*case)


@settings(max_examples=300, deadline=None)
@given(cut(NDJSON_LIKE))
def test_ndjson_like_streams_any_chunking_match_single_feed(case: tuple[bytes, list[bytes]]) -> None:
    check_chunking_invariance(*case)


@settings(max_examples=200, deadline=None)
@given(cut(NDJSON_LIKE))
def test_small_cap_any_chunking_matches_single_feed(case: tuple[bytes, list[bytes]]) -> None:
    check_chunking_invariance(*case, max_event_size=6)
