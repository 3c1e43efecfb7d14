"""core/telemetry.py: a stream's report as span attributes, events and metric points (no SDK)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ssemedic.core import telemetry
from ssemedic.core.telemetry import Request, build, failure, operation, request_model

HEALTHY: dict[str, Any] = {
    "source": "POST http://127.0.0.1:8000/v1/chat/completions", "status": 200, "provider": "openai-chat",
    "framing": "sse", "events": 4, "text": "Привет!", "reasoning": "думаю", "refusal": "",
    "tool_calls": [{"id": "call_1", "name": "get_time", "arguments": '{"tz": "UTC"}', "arguments_chars": 13}],
    "tool_results": [], "usage": {"input_tokens": 27, "output_tokens": 8, "total_tokens": 35},
    "finish_reason": "stop", "model": "gpt-4o-2024", "response_id": "chatcmpl-1", "complete": True, "errors": [],
    "timing": {"ttfb_ms": 12.5, "ttft_ms": 20.0, "duration_ms": 100.0, "gap_p50_ms": 10.0, "gap_p99_ms": 30.0,
               "gap_max_ms": 30.0, "bytes": 400, "chunks": 3, "events": 4, "keepalives": 1},
    "faults": [{"kind": "utf8-split", "severity": "warning", "message": "split", "hint": "", "detail": "",
                "offset": 17, "count": 2},
               {"kind": "invalid-json", "severity": "error", "message": "bad", "hint": "", "detail": "at 3",
                "event_index": 2, "count": 1}],
}
REQUEST = Request("POST", "/v1/chat/completions", "127.0.0.1", 8000, "gpt-4o")
TIMES = (1000.0125, 1000.02, 1000.05, 1000.06)


def test_request_model_comes_from_the_body_or_the_path() -> None:
    assert request_model("/v1/chat/completions", b'{"model": "gpt-4o", "stream": true}') == "gpt-4o"
    assert request_model("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", b"{}") == "gemini-2.5-flash"
    assert request_model("/model/anthropic.claude-v2/converse-stream", None) == "anthropic.claude-v2"
    assert request_model("/v1/chat/completions", b'{"model": 3}') is None
    assert request_model("/v1/chat/completions", b'{"model": "x"') is None  # not JSON
    assert request_model("/v1/chat/completions", b'["model"]') is None
    assert request_model("/v1/chat/completions", b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}") is None


@pytest.mark.parametrize(("provider", "path", "name"), [
    ("openai-chat", "/v1/chat/completions", "chat"),
    ("openai-chat", "/v1/completions", "text_completion"),
    ("ollama", "/api/generate", "text_completion"),
    ("ollama", "/api/chat", "chat"),
    ("gemini", "/v1beta/models/g:streamGenerateContent", "generate_content"),
    ("letta", "/v1/agents/a/messages/stream", "invoke_agent"),
])
def test_operation_name(provider: str, path: str, name: str) -> None:
    assert operation(provider, path) == name


def test_span_is_named_by_operation_and_request_model() -> None:
    assert build(HEALTHY, REQUEST).span.name == "chat gpt-4o"
    assert build(HEALTHY, Request()).span.name == "chat"  # no model asked for: the operation alone


def test_span_attributes_of_a_healthy_stream() -> None:
    attrs = build(HEALTHY, REQUEST, event_times=TIMES, flow_id="f1").span.attributes
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024"
    assert attrs["gen_ai.response.id"] == "chatcmpl-1"
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (27, 8)
    assert attrs["gen_ai.response.time_to_first_chunk"] == 0.0125
    assert (attrs["server.address"], attrs["server.port"], attrs["http.response.status_code"]) == ("127.0.0.1", 8000, 200)
    assert attrs["ssemedic.faults"] == ["utf8-split", "invalid-json"]
    assert (attrs["ssemedic.gap_p50"], attrs["ssemedic.gap_p99"], attrs["ssemedic.gap_max"]) == (0.01, 0.03, 0.03)
    assert attrs["ssemedic.tool_calls"] == ["get_time"]
    assert attrs["ssemedic.flow_id"] == "f1"
    assert "error.type" not in attrs


def test_no_content_unless_asked() -> None:
    plain = json.dumps(build(HEALTHY, REQUEST).span.attributes, ensure_ascii=False)
    assert "Привет" not in plain and "думаю" not in plain and "UTC" not in plain
    [message] = json.loads(str(build(HEALTHY, REQUEST, content=True).span.attributes["gen_ai.output.messages"]))
    assert message["parts"] == [{"type": "reasoning", "content": "думаю"}, {"type": "text", "content": "Привет!"},
                                {"type": "tool_call", "id": "call_1", "name": "get_time", "arguments": '{"tz": "UTC"}'}]
    assert message["finish_reason"] == "stop"


def test_fault_events_sit_at_their_event_else_at_the_end() -> None:
    events = build(HEALTHY, REQUEST, event_times=TIMES, started_at=1000.0, ended_at=1000.1).span.events
    assert [(e.name, e.at) for e in events] == [(telemetry.FAULT_EVENT, 1000.1), (telemetry.FAULT_EVENT, 1000.05)]
    assert events[1].attributes["ssemedic.fault.event_index"] == 2
    assert events[0].attributes["ssemedic.fault.count"] == 2


def test_in_stream_error_is_an_event_at_its_fault_and_the_status() -> None:
    report = {**HEALTHY, "errors": [{"message": "overloaded", "type": "overloaded_error", "code": 529}],
              "faults": [{"kind": "error-in-stream", "severity": "error", "message": "m", "detail": "overloaded",
                          "event_index": 1, "count": 1}]}
    span = build(report, REQUEST, event_times=TIMES, ended_at=1000.1).span
    [_, error] = span.events
    assert (error.name, error.at) == (telemetry.ERROR_EVENT, 1000.02)
    assert error.attributes == {"error.type": "overloaded_error", "ssemedic.error.message": "overloaded",
                                "ssemedic.error.code": "529"}
    assert span.error == "overloaded" and span.attributes["error.type"] == "overloaded_error"


@pytest.mark.parametrize(("change", "expected"), [
    ({"status": 502}, ("502", "HTTP 502")),
    ({"aborted": "peer closed connection"}, ("aborted", "peer closed connection")),
    ({"complete": False, "faults": [{"kind": "truncated"}]}, ("truncated", "the stream ended without its terminal signal (truncated)")),
    ({"complete": False, "faults": []}, ("incomplete", "the stream ended without its terminal signal (incomplete)")),
    ({"complete": False, "recording": {"cut_at": 10}}, None),  # a cut recording cannot tell
    ({}, None),
])
def test_failure(change: dict[str, Any], expected: tuple[str, str] | None) -> None:
    assert failure({**HEALTHY, **change}) == expected


def test_metric_points() -> None:
    points = build(HEALTHY, REQUEST, event_times=TIMES).points
    by_name: dict[str, list[telemetry.Point]] = {}
    for point in points:
        by_name.setdefault(point.instrument, []).append(point)
    assert [p.value for p in by_name[telemetry.DURATION]] == [0.1]
    assert [p.value for p in by_name[telemetry.TIME_TO_FIRST_CHUNK]] == [0.0125]
    assert [p.value for p in by_name[telemetry.TIME_PER_OUTPUT_CHUNK]] == pytest.approx([0.0075, 0.03, 0.01])
    assert [(p.value, p.attributes["gen_ai.token.type"]) for p in by_name[telemetry.TOKEN_USAGE]] == [
        (27, "input"), (8, "output")]
    assert [p.attributes["ssemedic.fault.kind"] for p in by_name[telemetry.FAULTS]] == ["utf8-split", "invalid-json"]
    assert {p.value for p in by_name[telemetry.FAULTS]} == {1}  # streams, not occurrences
    assert by_name[telemetry.DURATION][0].attributes == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024", "server.address": "127.0.0.1", "server.port": 8000}


def test_failed_duration_carries_error_type() -> None:
    [duration] = [p for p in build({**HEALTHY, "status": 500}, REQUEST).points if p.instrument == telemetry.DURATION]
    assert duration.attributes["error.type"] == "500"


def test_untimed_stream_has_no_timing_points() -> None:
    timing = {**HEALTHY["timing"], **{k: None for k in HEALTHY["timing"] if k.endswith("_ms")}}
    points = build({**HEALTHY, "timing": timing}, REQUEST).points
    assert {p.instrument for p in points} == {telemetry.TOKEN_USAGE, telemetry.FAULTS}
