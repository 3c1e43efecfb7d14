"""A large unfinished event costs time linear in its size (issue: quadratic
diagnosis on a big pending event), and the parsers' ``inside_block`` value
says what searching their buffer used to say."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssemedic import NDJSONParser, SSEParser, StreamSession

# What Diagnoser.chunk used to compute from the whole pending buffer.
_ENDS_IN_BLANK_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r)\Z")


def _old_inside(pending: bytes) -> bool:
    return bool(pending.strip(b"\r\n")) and not _ENDS_IN_BLANK_LINE.search(pending)


def _cpu(body: bytes, chunk: int = 1024) -> float:
    """CPU seconds for a session over ``body`` in ``chunk``-byte pieces (best of 3)."""
    best = float("inf")
    for _ in range(3):
        session = StreamSession(path="/v1/chat/completions", content_type="text/event-stream")
        start = time.process_time()
        for i in range(0, len(body), chunk):
            session.feed(body[i : i + chunk], 0.0)
        session.close(0.0)
        best = min(best, time.process_time() - start)
    return best


def _one_line_event(size: int) -> bytes:
    return b'data: {"x": "' + b"a" * size + b'"}\n\n'


def _many_lines_event(size: int) -> bytes:
    line = b"data: abcdefg\n"
    return line * (size // len(line)) + b"\n"


@pytest.mark.parametrize("make", [_one_line_event, _many_lines_event], ids=["one line", "short data lines"])
def test_a_4_mb_event_costs_about_4_times_a_1_mb_one(make: object) -> None:
    # Measured on a 2-core machine: one line 0.018 s vs 0.067 s, short data
    # lines 0.11 s vs 0.46 s (ratio about 4). Before the parsers held such
    # feeds apart, short data lines took 4.5 s vs 69 s (ratio 15).
    small, large = _cpu(make(1_000_000)), _cpu(make(4_000_000))  # type: ignore[operator]
    assert large < 8 * max(small, 1e-3), (small, large)


pieces = st.lists(
    st.sampled_from([b"data: x", b"\n", b"\r", b"\r\n", b"\n\n", b"ev", b"\xef\xbb\xbf", b": c\n", b"data: y\n\n"]),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(pieces)
def test_sse_inside_block_agrees_with_searching_the_buffer(chunks: list[bytes]) -> None:
    parser = SSEParser()
    for chunk in chunks:
        parser.feed(chunk)
        assert parser.inside_block == _old_inside(parser.pending_bytes), chunks


@settings(max_examples=300, deadline=None)
@given(pieces)
def test_ndjson_inside_block_agrees_with_searching_the_buffer(chunks: list[bytes]) -> None:
    parser = NDJSONParser()
    for chunk in chunks:
        parser.feed(chunk)
        assert parser.inside_block == bool(parser.pending_bytes.strip(b"\r\n")), chunks


def test_held_feeds_give_the_same_events_as_one_feed() -> None:
    body = _many_lines_event(10_000) + _one_line_event(5_000) + b"data: end\n\n"
    whole = SSEParser().feed(body)
    parser = SSEParser()
    events = []
    for i in range(0, len(body), 7):
        events += parser.feed(body[i : i + 7])
    assert [(e.data, e.raw, e.offset) for e in events] == [(e.data, e.raw, e.offset) for e in whole]
