"""Letta agent streams: message_type payloads, modern assistant_message and the
legacy send_message tool call, usage_statistics with steps_messages, [DONE]."""

from __future__ import annotations

import json
from typing import Any

from helpers import chunkings, run_session, sse_event, summary_without_timing

from ssemedic.core import providers
from ssemedic.core.parts import Part, Reasoning, Text
from ssemedic.core.session import StreamSession

AGENT = "agent-7f3c2a1e-9b4d-4c6e-8a2f-1d5e6b7c8d9e"
PATH = f"/v1/agents/{AGENT}/messages/stream"
REPLY = "Привет! Как дела? 😊🚀"
DONE = b"data: [DONE]\n\n"


def msg(message_type: str, message_id: str, **fields: Any) -> bytes:
    """A streamed Letta message with the envelope fields the server sends."""
    payload = {
        "id": message_id,
        "date": "2025-06-01T10:00:00+00:00",
        "name": None,
        "message_type": message_type,
        "otid": f"{message_id}-otid",
        "sender_id": None,
        "step_id": "step-1b2c3d",
        "run_id": "run-9f8e7d",
        **fields,
    }
    return sse_event(payload)


def stop_reason(reason: str = "end_turn") -> bytes:
    return sse_event({"message_type": "stop_reason", "stop_reason": reason})


def usage(steps_messages: list[Any] | None = None) -> bytes:
    return sse_event(
        {
            "message_type": "usage_statistics",
            "completion_tokens": 48,
            "prompt_tokens": 2345,
            "total_tokens": 2393,
            "step_count": 1,
            "steps_messages": steps_messages,
            "run_ids": ["run-9f8e7d"],
        }
    )


def send_message_fragments(text: str, cuts: tuple[int, ...]) -> list[str]:
    arguments = json.dumps({"message": text}, ensure_ascii=False)
    bounds = [0, *cuts, len(arguments)]
    return [arguments[a:b] for a, b in zip(bounds, bounds[1:])]


MODERN = [
    msg("reasoning_message", "message-r1", source="reasoner_model", reasoning="Пользователь здоровается.", signature=None),
    msg("assistant_message", "message-a1", content="Привет! Как"),
    sse_event({"message_type": "ping"}),
    msg("assistant_message", "message-a1", content=" дела? 😊"),
    msg("assistant_message", "message-a1", content="🚀"),
    stop_reason(),
    usage(),
    DONE,
]

LEGACY_FRAGMENTS = send_message_fragments(REPLY, (5, 14, 30))
LEGACY = [
    msg("reasoning_message", "message-r1", reasoning="Поздороваюсь в ответ."),
    msg("tool_call_message", "message-t1", tool_call={"name": "send_message", "arguments": "", "tool_call_id": "call_s1"}),
    *(msg("tool_call_message", "message-t1", tool_call={"arguments": part}) for part in LEGACY_FRAGMENTS),
    msg("tool_return_message", "message-t2", tool_return="None", status="success", tool_call_id="call_s1"),
    stop_reason(),
    usage(),
    DONE,
]


def parts_of(data: bytes, **kwargs: Any) -> list[Part]:
    session = StreamSession(**kwargs)
    records = session.feed(data, at=0.001) + session.close(at=0.002)
    return [part for record in records for part in record.parts]


def test_russian_emoji_answer_same_in_every_chunking() -> None:
    data = b"".join(MODERN)
    expected = summary_without_timing(run_session([data], path=PATH))
    for name, chunks in chunkings(data):
        session = run_session(chunks, path=PATH)
        assert session.message.text == REPLY, name
        assert session.message.finish_reason == "end_turn", name
        assert session.message.usage is not None and session.message.usage["output_tokens"] == 48, name
        assert summary_without_timing(session) == expected, name
    assert expected["complete"] is True
    assert expected["issues"] == [] and expected["errors"] == []


def test_usage_statistics_normalised_and_raw_kept() -> None:
    usage_ = run_session([b"".join(MODERN)], path=PATH).message.usage
    assert usage_ is not None
    assert (usage_["input_tokens"], usage_["output_tokens"], usage_["total_tokens"]) == (2345, 48, 2393)
    assert usage_["step_count"] == 1
    assert usage_["prompt_tokens"] == 2345
    assert "steps_messages" not in usage_


def test_reasoning_message_becomes_reasoning() -> None:
    message = run_session([b"".join(MODERN)], path=PATH).message
    assert message.reasoning == "Пользователь здоровается."
    assert message.text_via == []


def test_hidden_reasoning_message() -> None:
    data = msg("hidden_reasoning_message", "message-h1", state="redacted", hidden_reasoning=None) + DONE
    assert [p for p in parts_of(data, path=PATH) if isinstance(p, Reasoning)] == [Reasoning("", hidden=True)]


def test_assistant_content_as_list_of_text_parts() -> None:
    content = [{"type": "text", "text": "Привет! "}, {"type": "text", "text": "😊"}]
    data = msg("assistant_message", "message-a1", content=content) + stop_reason() + DONE
    assert run_session([data], path=PATH).message.text == "Привет! 😊"


def test_legacy_send_message_fragments_become_the_reply_once() -> None:
    data = b"".join(LEGACY)
    session = run_session([data], path=PATH)
    message = session.message
    assert message.text == REPLY
    assert message.text_via == ["send_message"]
    assert message.reasoning == "Поздороваюсь в ответ."
    [call] = message.tool_calls.values()
    assert (call.id, call.name) == ("call_s1", "send_message")
    assert json.loads(call.arguments) == {"message": REPLY}
    [result] = message.tool_results
    assert (result.tool_call_id, result.name, result.content, result.is_error) == (
        "call_s1",
        "send_message",
        "None",
        False,
    )
    texts = [p for p in parts_of(data, path=PATH) if isinstance(p, Text)]
    assert texts == [Text(REPLY, via="send_message")]
    assert session.complete


def test_legacy_send_message_same_in_every_chunking() -> None:
    data = b"".join(LEGACY)
    expected = summary_without_timing(run_session([data], path=PATH))
    for name, chunks in chunkings(data):
        assert summary_without_timing(run_session(chunks, path=PATH)) == expected, name
    assert expected["text"] == REPLY


def test_legacy_fragments_repeating_tool_call_id() -> None:
    events = [
        msg("tool_call_message", "message-t1", tool_call={"name": "send_message", "arguments": part, "tool_call_id": "c1"})
        if i == 0
        else msg("tool_call_message", "message-t1", tool_call={"arguments": part, "tool_call_id": "c1"})
        for i, part in enumerate(send_message_fragments("Да 👍", (3, 12)))
    ]
    message = run_session([b"".join(events) + DONE], path=PATH).message
    assert message.text == "Да 👍"
    assert list(message.tool_calls) == ["c1"]


def test_legacy_send_message_cut_before_arguments_close_gives_no_text() -> None:
    data = b"".join(LEGACY[:4])  # reasoning, the call's head and two fragments
    session = run_session([data], path=PATH)
    assert session.message.text == ""
    assert session.message.tool_calls["call_s1"].arguments_error is not None
    assert not session.complete


def test_two_tool_calls_in_one_message() -> None:
    weather = {"name": "get_weather", "arguments": json.dumps({"city": "Москва"}, ensure_ascii=False), "tool_call_id": "call_w"}
    clock = {"name": "get_time", "arguments": json.dumps({"timezone": "Europe/Moscow"}), "tool_call_id": "call_t"}
    returns = [
        {"type": "tool", "tool_return": "+18 °C, ясно", "status": "success", "tool_call_id": "call_w"},
        {"type": "tool", "tool_return": "Unknown timezone", "status": "error", "tool_call_id": "call_t"},
    ]
    data = (
        msg("tool_call_message", "message-t1", tool_call=weather, tool_calls=[weather, clock])
        + msg("tool_return_message", "message-t2", tool_return="+18 °C, ясно", status="success", tool_call_id="call_w", tool_returns=returns)
        + msg("assistant_message", "message-a1", content="В Москве +18 °C.")
        + stop_reason()
        + DONE
    )
    message = run_session([data], path=PATH).message
    calls = list(message.tool_calls.values())
    assert [(c.id, c.name) for c in calls] == [("call_w", "get_weather"), ("call_t", "get_time")]
    assert json.loads(calls[0].arguments) == {"city": "Москва"}
    assert json.loads(calls[1].arguments) == {"timezone": "Europe/Moscow"}
    assert [(r.tool_call_id, r.name, r.is_error) for r in message.tool_results] == [
        ("call_w", "get_weather", False),
        ("call_t", "get_time", True),
    ]
    assert message.text == "В Москве +18 °C."


def test_two_tool_calls_streamed_in_fragments() -> None:
    data = (
        msg("tool_call_message", "message-t1", tool_call={"name": "get_weather", "arguments": "", "tool_call_id": "call_w"})
        + msg("tool_call_message", "message-t1", tool_call={"arguments": '{"city": "Мос'})
        + msg("tool_call_message", "message-t1", tool_call={"arguments": 'ква"}'})
        + msg("tool_call_message", "message-t3", tool_call={"name": "get_time", "arguments": '{"timezone"', "tool_call_id": "call_t"})
        + msg("tool_call_message", "message-t3", tool_call={"arguments": ': "UTC"}'})
        + stop_reason("tool_rule")
        + DONE
    )
    calls = run_session([data], path=PATH).message.tool_calls
    assert list(calls) == ["call_w", "call_t"]
    assert json.loads(calls["call_w"].arguments) == {"city": "Москва"}
    assert json.loads(calls["call_t"].arguments) == {"timezone": "UTC"}


def test_steps_messages_reply_recovered_when_not_streamed() -> None:
    arguments = json.dumps({"message": REPLY}, ensure_ascii=False)
    steps = [
        [
            {
                "id": "message-t1",
                "role": "assistant",
                "content": [{"type": "text", "text": "Внутренний монолог."}],
                "tool_calls": [{"id": "call_s1", "type": "function", "function": {"name": "send_message", "arguments": arguments}}],
            },
            {"id": "message-t2", "role": "tool", "content": [{"type": "text", "text": "None"}], "tool_call_id": "call_s1"},
        ]
    ]
    data = msg("reasoning_message", "message-r1", reasoning="Внутренний монолог.") + stop_reason() + usage(steps) + DONE
    session = run_session([data], path=PATH)
    assert session.message.text == REPLY
    assert session.message.text_via == ["steps_messages"]
    assert session.message.usage is not None and session.message.usage["step_count"] == 1


def test_steps_messages_modern_assistant_recovered() -> None:
    steps: list[list[dict[str, Any]]] = [
        [{"id": "message-a9", "role": "assistant", "content": [{"type": "text", "text": "Готово ✅"}], "tool_calls": None}],
        [{"id": "message-a10", "message_type": "assistant_message", "content": " И ещё."}],
    ]
    data = stop_reason() + usage(steps) + DONE
    message = run_session([data], path=PATH).message
    assert message.text == "Готово ✅ И ещё."


def test_steps_messages_do_not_repeat_streamed_replies() -> None:
    arguments = json.dumps({"message": REPLY}, ensure_ascii=False)
    steps = [
        [
            {
                "id": "message-t1",
                "role": "assistant",
                "content": [],
                "tool_calls": [{"id": "call_s1", "type": "function", "function": {"name": "send_message", "arguments": arguments}}],
            }
        ]
    ]
    legacy = b"".join(LEGACY[:-2]) + usage(steps) + DONE
    assert run_session([legacy], path=PATH).message.text == REPLY
    modern_steps = [[{"id": "message-a1", "message_type": "assistant_message", "content": REPLY}]]
    modern = b"".join(MODERN[:-2]) + usage(modern_steps) + DONE
    assert run_session([modern], path=PATH).message.text == REPLY


def test_steps_messages_of_wrong_type_keeps_usage() -> None:
    bad = sse_event({"message_type": "usage_statistics", "prompt_tokens": 5, "completion_tokens": 2, "steps_messages": "x"})
    session = run_session([bad + DONE], path=PATH)
    assert session.message.usage is not None and session.message.usage["output_tokens"] == 2
    assert [m.kind for _, m in session.malformed_events] == ["unexpected-shape"]


def test_odd_steps_messages_entries_are_skipped() -> None:
    steps: list[Any] = [
        [{"id": "message-x", "role": "assistant", "content": 42}],
        "not a list",
        [{"id": "message-a9", "message_type": "assistant_message", "content": "Ок"}],
    ]
    session = run_session([stop_reason() + usage(steps) + DONE], path=PATH)
    assert session.message.text == "Ок"
    assert session.message.usage is not None and session.message.usage["input_tokens"] == 2345
    assert session.malformed_events == []


def test_error_message_mid_stream() -> None:
    error = sse_event(
        {
            "message_type": "error_message",
            "run_id": "run-9f8e7d",
            "error_type": "llm_error",
            "message": "An error occurred with the LLM request.",
            "detail": "Rate limit exceeded",
            "seq_id": 4,
        }
    )
    data = b"".join(MODERN[:2]) + error + stop_reason("llm_api_error") + DONE
    summary = summary_without_timing(run_session([data], path=PATH))
    assert summary["text"] == "Привет! Как"
    assert summary["errors"] == [
        {"message": "An error occurred with the LLM request.: Rate limit exceeded", "type": "llm_error", "code": None}
    ]
    assert summary["finish_reason"] == "llm_api_error"
    assert summary["complete"] is True


def test_error_message_then_cut_is_incomplete() -> None:
    error = sse_event({"message_type": "error_message", "run_id": "r", "error_type": "internal_error", "message": "Boom"})
    summary = summary_without_timing(run_session([b"".join(MODERN[:2]) + error], path=PATH))
    assert summary["errors"] == [{"message": "Boom", "type": "internal_error", "code": None}]
    assert summary["complete"] is False


def test_error_object_payload() -> None:
    error = sse_event({"error": {"type": "internal_error", "message": "Агент не найден", "detail": None}}, "error")
    summary = summary_without_timing(run_session([MODERN[1] + error], path=PATH))
    assert summary["errors"] == [{"message": "Агент не найден", "type": "internal_error", "code": None}]
    assert summary["complete"] is False


def test_error_event_whose_data_is_the_error() -> None:
    error = sse_event({"detail": "Internal server error"}, "error")
    summary = summary_without_timing(run_session([MODERN[1] + error], path=PATH))
    assert summary["errors"] == [{"message": "Internal server error", "type": None, "code": None}]


def test_detected_by_path_only() -> None:
    assert providers.detect_from_request("POST", PATH) == "letta"
    assert providers.detect_from_request("POST", f"/v1/agents/{AGENT}/messages") == "letta"
    assert providers.detect_from_request("GET", f"/v1/agents/{AGENT}/messages/message-1") is None
    assert run_session([b"".join(MODERN)], path=PATH).provider == "letta"


def test_detected_from_first_payload_without_path() -> None:
    session = run_session([b"".join(LEGACY)])
    assert session.provider == "letta"
    assert session.message.text == REPLY
    assert session.complete


def test_invalid_json_is_malformed_and_stream_goes_on() -> None:
    broken = b'data: {"message_type": "assistant_message", "content": "\xd0\x9f\n\n'
    data = b"".join(MODERN[:2]) + broken + b"".join(MODERN[2:])
    session = run_session([data], path=PATH)
    assert session.message.text == REPLY
    assert [m.kind for _, m in session.malformed_events] == ["invalid-json"]
    assert session.complete


def test_wrong_shape_is_malformed_and_stream_goes_on() -> None:
    bad_call = msg("tool_call_message", "message-t1", tool_call="oops")
    bad_content = msg("assistant_message", "message-a2", content=42)
    data = b"".join(MODERN[:2]) + bad_call + bad_content + b"data: [1, 2]\n\n" + b"".join(MODERN[2:])
    session = run_session([data], path=PATH)
    assert session.message.text == REPLY
    assert [m.kind for _, m in session.malformed_events] == ["unexpected-shape"] * 3
    assert session.complete


def test_complete_on_stop_reason_without_done() -> None:
    assert run_session([b"".join(MODERN[:-1])], path=PATH).complete


def test_incomplete_before_stop_reason_and_done() -> None:
    session = run_session([b"".join(MODERN[:5])], path=PATH)
    assert session.message.text == REPLY
    assert not session.complete
