"""StreamSession: framing choice, provider detection, timeline and timings."""

from __future__ import annotations

import pytest
from helpers import chunkings, ndjson_line, run_session, sse_event, summary_without_timing

from ssemedic.core.session import StreamSession, percentile

CHUNK = {"object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {"content": "Да 👍"}}]}
STOP = {"object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
BODY = sse_event(CHUNK) + sse_event(STOP) + b"data: [DONE]\n\n"


def test_same_summary_in_every_chunking() -> None:
    expected = summary_without_timing(run_session([BODY]))
    assert expected["text"] == "Да 👍" and expected["complete"]
    for name, chunks in chunkings(BODY):
        assert summary_without_timing(run_session(chunks)) == expected, name


def test_framing_from_content_type_wins_over_sniffing() -> None:
    session = run_session([b'{"a": 1}\n'], content_type="text/event-stream; charset=utf-8")
    assert session.framing == "sse"


def test_framing_sniffed_from_first_non_blank_byte() -> None:
    assert run_session([b"\n", b"  {\"a\": 1}\n"]).framing == "ndjson"
    assert run_session([b"\n", b"data: x\n\n"]).framing == "sse"


def test_framing_follows_detected_provider_when_no_content_type() -> None:
    line = ndjson_line({"model": "llama3", "created_at": "2026-01-01T00:00:00Z", "response": "hi", "done": False})
    session = run_session([line], path="/api/generate")
    assert session.framing == "ndjson"


def test_invalid_framing_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="framing"):
        StreamSession(framing="xml")


def test_provider_detected_from_path() -> None:
    assert StreamSession(path="/v1/chat/completions?x=1").provider == "openai-chat"


def test_provider_detected_from_first_payload_without_path() -> None:
    assert run_session([BODY]).provider == "openai-chat"


def test_unknown_format_parses_as_generic_sse() -> None:
    session = run_session([b"event: tick\ndata: hello\n\ndata: [DONE]\n\n"])
    assert session.provider == "generic"
    assert session.event_count == 2
    assert session.message.markers == ["[DONE]"]


def test_records_carry_event_time_and_parts() -> None:
    session = StreamSession(started_at=10.0)
    assert session.feed(BODY[:20], at=10.5) == []
    records = session.feed(BODY[20:], at=11.0)
    assert [r.index for r in records] == [0, 1, 2]
    assert records[0].time == 11.0
    assert records[0].parts[-1].text == "Да 👍"  # type: ignore[union-attr]


def test_timing_from_passed_in_clock() -> None:
    session = StreamSession(started_at=100.0)
    events = [sse_event(CHUNK), sse_event(CHUNK), sse_event(STOP)]
    session.feed(events[0], at=100.25)  # first byte and first token
    session.feed(events[1], at=100.5)
    session.feed(events[2], at=101.5)
    session.close(at=102.0)
    timing = session.timing()
    assert timing.ttfb == pytest.approx(0.25)
    assert timing.ttft == pytest.approx(0.25)
    assert timing.duration == pytest.approx(2.0)
    assert timing.gap_max == pytest.approx(1.0)
    assert timing.gap_p50 == pytest.approx(0.25)
    assert (timing.bytes, timing.chunks, timing.events) == (sum(map(len, events)), 3, 3)


def test_ttft_waits_for_a_token_not_the_first_event() -> None:
    role_only = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    session = StreamSession(started_at=0.0)
    session.feed(sse_event(role_only), at=0.1)
    session.feed(sse_event(CHUNK), at=0.7)
    session.close(at=1.0)
    assert session.timing().ttfb == pytest.approx(0.1)
    assert session.timing().ttft == pytest.approx(0.7)


def test_unknown_times_give_no_timings_rather_than_invented_ones() -> None:
    session = StreamSession(started_at=0.0)
    session.feed(BODY[:30], at=0.1)
    session.feed(BODY[30:], at=None)
    session.close()
    timing = session.timing()
    assert (timing.ttfb, timing.ttft, timing.duration, timing.gap_p50) == (None, None, None, None)
    assert timing.events == 3 and timing.bytes == len(BODY)


def test_timing_dict_uses_milliseconds() -> None:
    session = run_session([BODY])
    timing = session.summary()["timing"]
    assert set(timing) == {
        "ttfb_ms", "ttft_ms", "duration_ms", "gap_p50_ms", "gap_p99_ms", "gap_max_ms", "bytes", "chunks", "events",
        "keepalives",
    }
    assert timing["ttfb_ms"] == pytest.approx(1.0)


def test_summary_has_the_report_keys() -> None:
    summary = run_session([BODY]).summary()
    for key in ("provider", "events", "text", "reasoning", "tool_calls", "usage", "finish_reason",
                "errors", "timing", "faults"):
        assert key in summary
    assert summary["faults"] == []


def test_malformed_payload_is_reported_with_its_event_index() -> None:
    session = run_session([sse_event(CHUNK) + b"data: {not json\n\n" + sse_event(STOP)])
    issues = session.summary()["issues"]
    assert [(i["kind"], i["event_index"]) for i in issues] == [("invalid-json", 1)]
    assert session.message.text == "Да 👍"


def test_feed_after_close_is_a_usage_error() -> None:
    session = run_session([BODY])
    with pytest.raises(RuntimeError):
        session.feed(b"data: x\n\n", at=1.0)


def test_close_on_an_empty_stream() -> None:
    session = run_session([])
    assert session.event_count == 0 and session.summary()["text"] == ""


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1.0], 0.5, 1.0), ([1.0, 2.0], 0.5, 1.0), ([1.0, 2.0, 3.0, 4.0], 0.99, 4.0), ([1.0, 2.0, 3.0], 0.5, 2.0)],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


# -- properties ----------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ssemedic.core import providers  # noqa: E402

_FRAGMENTS = st.sampled_from(
    [b"data: ", b"event: ", b"id: 1", b"retry: 5", b": ping", b"\n", b"\r\n", b"\r", b"\n\n", b"[DONE]",
     b'{"choices": [{"index": 0, "delta": {"content": "\xd0\x9f\xf0\x9f\x91\x8b"}}]}', b'{"type": "message_start"',
     b'"message_type": "assistant_message", "content": "x"}', b'{"done": true, "model": "m", "created_at": "t"}',
     b'{"candidates": [{"content": {"parts": [{"text": "a"}]}}]}', b"{", b"}", b"\xff", b"\xf0\x9f", b"null"]
)
_STREAMS = st.one_of(st.binary(max_size=300), st.lists(_FRAGMENTS, max_size=40).map(b"".join))


@settings(max_examples=300, deadline=None)
@given(
    body=_STREAMS,
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
    provider=st.sampled_from([None, *providers.names()]),
)
def test_any_bytes_any_chunking_any_provider_same_summary_never_raises(
    body: bytes, cuts: list[int], provider: str | None
) -> None:
    points = sorted({c for c in cuts if c <= len(body)})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)])]
    whole = summary_without_timing(run_session([body], provider=provider))
    assert summary_without_timing(run_session(chunks, provider=provider)) == whole


# -- what the session hands on -----------------------------------------------------------


def test_rules_follow_the_provider_when_the_payload_overrides_the_guess() -> None:
    letta = sse_event({"message_type": "assistant_message", "id": "m1", "content": "hi"})
    session = StreamSession(path="/v1/chat/completions", content_type="text/event-stream")
    assert session.rules.name == "openai-chat"
    session.feed(letta)
    assert (session.provider, session.rules.name, session.provider_source) == ("letta", "letta", "payload")


def test_boundary_is_where_the_whole_blocks_end_in_every_chunking() -> None:
    for name, chunks in chunkings(BODY):
        session = StreamSession(content_type="text/event-stream")
        assert session.boundary == 0
        fed = 0
        for chunk in chunks:
            session.feed(chunk)
            fed += len(chunk)
            ends = [i + 2 for i in range(len(BODY) - 1) if BODY[i : i + 2] == b"\n\n" and i + 2 <= fed]
            assert session.boundary == (ends[-1] if ends else 0), (name, fed)


def test_outcome_is_the_streams_result_as_values() -> None:
    session = run_session([BODY[:-14]], path="/v1/chat/completions")  # without data: [DONE]
    outcome = session.outcome()
    assert outcome.provider is session.rules and outcome.provider.end_marker == "[DONE]"
    assert (outcome.framing, outcome.complete, outcome.bytes, outcome.events, outcome.boundary) == (
        "sse", True, len(BODY) - 14, 2, len(BODY) - 14)
    assert outcome.message is session.message
    assert outcome.line_endings == {"lf": 4, "crlf": 0, "cr": 0}
    ndjson = run_session([ndjson_line({"model": "m", "response": "x", "done": True})], path="/api/generate")
    assert ndjson.outcome().line_endings is None and ndjson.outcome().framing == "ndjson"
