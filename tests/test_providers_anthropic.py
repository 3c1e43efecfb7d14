"""Anthropic Messages streams: typed events, content blocks by index, thinking,
tool input in partial_json fragments, in-stream errors."""

from __future__ import annotations

import json
from typing import Any

from helpers import chunkings, run_session, sse_event, summary_without_timing

from ssemedic.core import providers
from ssemedic.core.parts import Part, Reasoning, ToolResult
from ssemedic.core.session import StreamSession

PATH = "/v1/messages"
MODEL = "claude-sonnet-4-5-20250929"


def ev(payload: dict[str, Any]) -> bytes:
    """One event as Anthropic sends it: ``event:`` repeats the data's type."""
    return sse_event(payload, payload["type"])


def message_start(msg_id: str = "msg_01XFDUDYJgAACzvnptvVoYEL", input_tokens: int = 25) -> bytes:
    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 12,
        "output_tokens": 1,
    }
    message: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": MODEL,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return ev({"type": "message_start", "message": message})


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return ev({"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, body: dict[str, Any]) -> bytes:
    return ev({"type": "content_block_delta", "index": index, "delta": body})


def text_delta(index: int, text: str) -> bytes:
    return delta(index, {"type": "text_delta", "text": text})


def json_delta(index: int, fragment: str) -> bytes:
    return delta(index, {"type": "input_json_delta", "partial_json": fragment})


def block_stop(index: int) -> bytes:
    return ev({"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str, output_tokens: int) -> bytes:
    return ev(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
    )


MESSAGE_STOP = ev({"type": "message_stop"})
PING = ev({"type": "ping"})

PLAIN = [
    message_start(),
    block_start(0, {"type": "text", "text": ""}),
    PING,
    text_delta(0, "Привет! Как"),
    text_delta(0, " дела? 😊"),
    text_delta(0, "🚀"),
    block_stop(0),
    message_delta("end_turn", 15),
    MESSAGE_STOP,
]

THINKING_TEXT = "Пользователь здоровается. Отвечу кратко 🤔"
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
THINKING = [
    message_start(),
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, {"type": "thinking_delta", "thinking": "Пользователь здоровается."}),
    delta(0, {"type": "thinking_delta", "thinking": " Отвечу кратко 🤔"}),
    delta(0, {"type": "signature_delta", "signature": SIGNATURE}),
    block_stop(0),
    block_start(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIw"}),
    block_stop(1),
    block_start(2, {"type": "text", "text": ""}),
    text_delta(2, "Привет!"),
    block_stop(2),
    message_delta("end_turn", 42),
    MESSAGE_STOP,
]

TOOLS = [
    message_start(),
    block_start(0, {"type": "text", "text": ""}),
    text_delta(0, "Проверю погоду и время."),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {}}),
    json_delta(1, ""),
    json_delta(1, '{"city": "Моск'),
    json_delta(1, 'ва", "unit": "celsius"}'),
    block_stop(1),
    block_start(2, {"type": "tool_use", "id": "toolu_01B7kLm3pQ2xNv8wRt5yZs4", "name": "get_time", "input": {}}),
    json_delta(2, '{"timezone"'),
    json_delta(2, ': "Europe/Paris"}'),
    block_stop(2),
    block_start(3, {"type": "tool_use", "id": "toolu_01C2mNb8vXz5qW3eRt6yUi9", "name": "get_random_fact", "input": {}}),
    block_stop(3),
    message_delta("tool_use", 89),
    MESSAGE_STOP,
]


def parts_of(data: bytes, **kwargs: Any) -> list[Part]:
    session = StreamSession(**kwargs)
    records = session.feed(data, at=0.001) + session.close(at=0.002)
    return [part for record in records for part in record.parts]


def test_russian_emoji_answer_same_in_every_chunking() -> None:
    data = b"".join(PLAIN)
    expected = summary_without_timing(run_session([data], path=PATH))
    for name, chunks in chunkings(data):
        session = run_session(chunks, path=PATH)
        assert session.message.text == "Привет! Как дела? 😊🚀", name
        assert session.message.finish_reason == "end_turn", name
        assert session.message.usage is not None and session.message.usage["output_tokens"] == 15, name
        assert summary_without_timing(session) == expected, name
    assert expected["complete"] is True
    assert expected["model"] == MODEL
    assert expected["issues"] == [] and expected["errors"] == []


def test_usage_from_message_start_and_message_delta() -> None:
    usage = run_session([b"".join(PLAIN)], path=PATH).message.usage
    assert usage is not None
    assert usage["input_tokens"] == 25
    assert usage["output_tokens"] == 15  # message_delta's cumulative count wins
    assert usage["cache_read_input_tokens"] == 12  # cache fields kept raw
    assert usage["cache_creation_input_tokens"] == 0


def test_total_tokens_follows_cumulative_output() -> None:
    usage = run_session([b"".join(PLAIN)], path=PATH).message.usage
    assert usage is not None and usage["total_tokens"] == 25 + 15


def test_meta_from_message_start() -> None:
    message = run_session([b"".join(PLAIN)], path=PATH).message
    assert message.model == MODEL
    assert message.response_id == "msg_01XFDUDYJgAACzvnptvVoYEL"


def test_thinking_blocks_with_signature_and_redaction() -> None:
    data = b"".join(THINKING)
    session = run_session([data], path=PATH)
    assert session.message.reasoning == THINKING_TEXT
    assert session.message.text == "Привет!"
    reasoning = [p for p in parts_of(data, path=PATH) if isinstance(p, Reasoning)]
    assert [p.signature for p in reasoning if p.signature] == [SIGNATURE]
    assert [p for p in reasoning if p.hidden] == [Reasoning("", hidden=True)]


def test_thinking_same_in_every_chunking() -> None:
    data = b"".join(THINKING)
    expected = summary_without_timing(run_session([data], path=PATH))
    for name, chunks in chunkings(data):
        assert summary_without_timing(run_session(chunks, path=PATH)) == expected, name


def test_parallel_tool_use_blocks_from_input_json_fragments() -> None:
    session = run_session([b"".join(TOOLS)], path=PATH)
    message = session.message
    assert message.text == "Проверю погоду и время."
    assert message.finish_reason == "tool_use"
    calls = list(message.tool_calls.values())
    assert [(c.key, c.id, c.name) for c in calls] == [
        ("1", "toolu_01A09q90qw90lq917835lq9", "get_weather"),
        ("2", "toolu_01B7kLm3pQ2xNv8wRt5yZs4", "get_time"),
        ("3", "toolu_01C2mNb8vXz5qW3eRt6yUi9", "get_random_fact"),
    ]
    assert json.loads(calls[0].arguments) == {"city": "Москва", "unit": "celsius"}
    assert json.loads(calls[1].arguments) == {"timezone": "Europe/Paris"}


def test_tool_use_without_deltas_means_empty_input() -> None:
    call = run_session([b"".join(TOOLS)], path=PATH).message.tool_calls["3"]
    assert call.arguments == ""
    assert call.arguments_error is None
    assert json.loads(call.arguments or "{}") == {}


def test_tool_calls_same_in_every_chunking() -> None:
    data = b"".join(TOOLS)
    expected = summary_without_timing(run_session([data], path=PATH))
    for name, chunks in chunkings(data):
        assert summary_without_timing(run_session(chunks, path=PATH)) == expected, name


def test_tool_use_with_complete_input_in_block_start() -> None:
    block = {"type": "tool_use", "id": "toolu_X", "name": "lookup", "input": {"запрос": "погода"}}
    data = message_start() + block_start(0, block) + block_stop(0) + message_delta("tool_use", 9) + MESSAGE_STOP
    call = run_session([data], path=PATH).message.tool_calls["0"]
    assert json.loads(call.arguments) == {"запрос": "погода"}


def test_server_tool_use_and_its_result_block() -> None:
    use = {"type": "server_tool_use", "id": "srvtoolu_014", "name": "web_search", "input": {}}
    result = {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_014",
        "content": [{"type": "web_search_result", "title": "Погода", "url": "https://example.org/"}],
    }
    data = (
        message_start()
        + block_start(0, use)
        + json_delta(0, '{"query": "погода Москва"}')
        + block_stop(0)
        + block_start(1, result)
        + block_stop(1)
        + message_delta("end_turn", 30)
        + MESSAGE_STOP
    )
    message = run_session([data], path=PATH).message
    assert json.loads(message.tool_calls["0"].arguments) == {"query": "погода Москва"}
    assert message.tool_calls["0"].name == "web_search"
    [tool_result] = message.tool_results
    assert tool_result == ToolResult(json.dumps(result["content"], ensure_ascii=False), "srvtoolu_014", "web_search_tool_result")


def test_citations_delta_adds_no_text() -> None:
    citation = {
        "type": "char_location",
        "cited_text": "Небо голубое.",
        "document_index": 0,
        "document_title": None,
        "start_char_index": 0,
        "end_char_index": 13,
    }
    data = (
        message_start()
        + block_start(0, {"type": "text", "text": "", "citations": []})
        + delta(0, {"type": "citations_delta", "citation": citation})
        + text_delta(0, "Небо голубое.")
        + block_stop(0)
        + message_delta("end_turn", 5)
        + MESSAGE_STOP
    )
    session = run_session([data], path=PATH)
    assert session.message.text == "Небо голубое."
    assert session.message.malformed == 0


def test_overloaded_error_mid_stream() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    data = b"".join(PLAIN[:4]) + ev(error)
    summary = summary_without_timing(run_session([data], path=PATH))
    assert summary["text"] == "Привет! Как"
    assert summary["errors"] == [{"message": "Overloaded", "type": "overloaded_error", "code": None}]
    assert summary["complete"] is False
    assert summary["finish_reason"] is None


def test_detected_by_path_only() -> None:
    assert providers.detect_from_request("POST", "/v1/messages") == "anthropic"
    assert providers.detect_from_request("POST", "/anthropic/v1/messages?beta=true") == "anthropic"
    assert run_session([b"".join(PLAIN)], path=PATH).provider == "anthropic"


def test_bare_messages_path_needs_anthropic_version_header() -> None:
    headers = {"Anthropic-Version": "2023-06-01"}
    assert providers.detect_from_request("POST", "/proxy/messages", headers) == "anthropic"
    assert providers.detect_from_request("POST", "/proxy/messages") is None


def test_detected_from_first_payload_without_path() -> None:
    session = run_session([b"".join(PLAIN)])
    assert session.provider == "anthropic"
    assert session.framing == "sse"
    assert session.message.text == "Привет! Как дела? 😊🚀"
    assert session.complete


def test_detected_from_payload_when_proxy_drops_event_names() -> None:
    data = b"".join(sse_event(json.loads(e.split(b"data: ", 1)[1])) for e in PLAIN)
    session = run_session([data])
    assert session.provider == "anthropic"
    assert session.message.text == "Привет! Как дела? 😊🚀"
    assert session.complete


def test_other_providers_payloads_not_taken_for_anthropic() -> None:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "x"}}]}
    assert run_session([sse_event(chunk)]).provider != "anthropic"
    assert run_session([sse_event({"type": "response.created"}, "response.created")]).provider != "anthropic"


def test_invalid_json_is_malformed_and_stream_goes_on() -> None:
    broken = b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {"te\n\n'
    data = b"".join(PLAIN[:4]) + broken + b"".join(PLAIN[4:])
    session = run_session([data], path=PATH)
    assert session.message.text == "Привет! Как дела? 😊🚀"
    assert [m.kind for _, m in session.malformed_events] == ["invalid-json"]
    assert session.complete


def test_wrong_shape_is_malformed_and_stream_goes_on() -> None:
    bad_delta = ev({"type": "content_block_delta", "index": 0, "delta": "oops"})
    not_an_object = b"event: content_block_delta\ndata: [1, 2, 3]\n\n"
    data = b"".join(PLAIN[:4]) + bad_delta + not_an_object + b"".join(PLAIN[4:])
    session = run_session([data], path=PATH)
    assert session.message.text == "Привет! Как дела? 😊🚀"
    assert [m.kind for _, m in session.malformed_events] == ["unexpected-shape", "unexpected-shape"]
    assert session.complete


def test_incomplete_without_message_stop() -> None:
    data = b"".join(PLAIN[:-1])
    session = run_session([data], path=PATH)
    assert session.message.finish_reason == "end_turn"
    assert not session.complete


def test_incomplete_when_cut_inside_an_event() -> None:
    data = b"".join(PLAIN)
    session = run_session([data[: len(data) - 10]], path=PATH)
    assert not session.complete

