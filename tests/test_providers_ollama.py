"""Ollama NDJSON streams: /api/chat and /api/generate lines, thinking, whole
tool calls, the final done line with its counters, and error lines."""

from __future__ import annotations

import json
from typing import Any

from helpers import chunkings, ndjson_line, run_session, summary_without_timing

from ssemedic.core import providers
from ssemedic.core.events import ServerSentEvent

CHAT = "/api/chat"
GENERATE = "/api/generate"
MODEL = "qwen3:8b"
STAMP = "2025-06-01T10:00:00.123456Z"

FINAL_COUNTERS = {
    "total_duration": 4883583458,
    "load_duration": 1334875,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 342546000,
    "eval_count": 282,
    "eval_duration": 4535599000,
}


def chat_line(done: bool = False, **message: Any) -> bytes:
    return ndjson_line({"model": MODEL, "created_at": STAMP, "message": {"role": "assistant", **message}, "done": done})


def chat_done(done_reason: str | None = "stop", **counters: Any) -> bytes:
    line: dict[str, Any] = {"model": MODEL, "created_at": STAMP, "message": {"role": "assistant", "content": ""}}
    if done_reason is not None:
        line["done_reason"] = done_reason
    line["done"] = True
    line.update(counters or FINAL_COUNTERS)
    return ndjson_line(line)


def generate_line(response: str, **extra: Any) -> bytes:
    return ndjson_line({"model": MODEL, "created_at": STAMP, "response": response, "done": False, **extra})


PLAIN = [
    chat_line(content="Привет! Как"),
    chat_line(content=" дела? 😊"),
    chat_line(content="🚀"),
    chat_done(),
]

GENERATE_STREAM = [
    generate_line("", thinking="Короткий"),
    generate_line("", thinking=" ответ."),
    generate_line("Привет! Как дела? "),
    generate_line("😊🚀"),
    ndjson_line(
        {
            "model": MODEL,
            "created_at": STAMP,
            "response": "",
            "done": True,
            "done_reason": "stop",
            "context": [1, 2, 3],
            **FINAL_COUNTERS,
        }
    ),
]

THINKING = [
    chat_line(content="", thinking="Пользователь"),
    chat_line(content="", thinking=" здоровается 🤔"),
    chat_line(content="Привет!"),
    chat_done(),
]

TOOL_CALLS = [
    chat_line(
        content="",
        tool_calls=[
            {"function": {"name": "get_weather", "arguments": {"city": "Москва", "unit": "celsius"}}},
            {"function": {"name": "get_time", "arguments": {"timezone": "Europe/Moscow"}}},
        ],
    ),
    chat_done(),
]


def test_russian_emoji_answer_same_in_every_chunking() -> None:
    data = b"".join(PLAIN)
    expected = summary_without_timing(run_session([data], path=CHAT))
    for name, chunks in chunkings(data):
        session = run_session(chunks, path=CHAT)
        assert session.message.text == "Привет! Как дела? 😊🚀", name
        assert session.message.finish_reason == "stop", name
        assert session.message.usage is not None and session.message.usage["output_tokens"] == 282, name
        assert summary_without_timing(session) == expected, name
    assert expected["framing"] == "ndjson"
    assert expected["complete"] is True
    assert expected["model"] == MODEL
    assert expected["issues"] == [] and expected["errors"] == []


def test_usage_from_final_line_counters() -> None:
    usage = run_session([b"".join(PLAIN)], path=CHAT).message.usage
    assert usage == {**FINAL_COUNTERS, "input_tokens": 26, "output_tokens": 282, "total_tokens": 26 + 282}


def test_done_reason_missing_means_stop() -> None:
    data = chat_line(content="Да") + chat_done(done_reason=None, eval_count=1)
    message = run_session([data], path=CHAT).message
    assert message.finish_reason == "stop"
    assert message.usage == {"eval_count": 1, "output_tokens": 1}


def test_done_reason_length_is_kept() -> None:
    data = chat_line(content="Да") + chat_done(done_reason="length")
    assert run_session([data], path=CHAT).message.finish_reason == "length"


def test_generate_stream_with_thinking_same_in_every_chunking() -> None:
    data = b"".join(GENERATE_STREAM)
    expected = summary_without_timing(run_session([data], path=GENERATE))
    for name, chunks in chunkings(data):
        assert summary_without_timing(run_session(chunks, path=GENERATE)) == expected, name
    assert expected["text"] == "Привет! Как дела? 😊🚀"
    assert expected["reasoning"] == "Короткий ответ."
    assert expected["finish_reason"] == "stop"
    assert expected["complete"] is True


def test_chat_thinking_becomes_reasoning() -> None:
    message = run_session([b"".join(THINKING)], path=CHAT).message
    assert message.reasoning == "Пользователь здоровается 🤔"
    assert message.text == "Привет!"


def test_two_tool_calls_in_one_message() -> None:
    data = b"".join(TOOL_CALLS)
    message = run_session([data], path=CHAT).message
    calls = list(message.tool_calls.values())
    assert [(c.key, c.name) for c in calls] == [("0", "get_weather"), ("1", "get_time")]
    assert json.loads(calls[0].arguments) == {"city": "Москва", "unit": "celsius"}
    assert json.loads(calls[1].arguments) == {"timezone": "Europe/Moscow"}
    assert "Москва" in calls[0].arguments  # not \u-escaped
    assert message.text == ""


def test_tool_calls_in_later_lines_get_new_keys() -> None:
    call = {"function": {"name": "lookup", "arguments": {"q": "a"}}}
    data = chat_line(content="", tool_calls=[call]) + chat_line(content="", tool_calls=[call]) + chat_done()
    assert list(run_session([data], path=CHAT).message.tool_calls) == ["0", "1"]


def test_tool_calls_same_in_every_chunking() -> None:
    data = b"".join(TOOL_CALLS)
    expected = summary_without_timing(run_session([data], path=CHAT))
    for name, chunks in chunkings(data):
        assert summary_without_timing(run_session(chunks, path=CHAT)) == expected, name


def test_error_line_mid_stream() -> None:
    error = ndjson_line({"error": "an error was encountered while running the model: unexpected EOF"})
    data = b"".join(PLAIN[:2]) + error
    summary = summary_without_timing(run_session([data], path=CHAT))
    assert summary["text"] == "Привет! Как дела? 😊"
    assert summary["errors"] == [
        {"message": "an error was encountered while running the model: unexpected EOF", "type": None, "code": None}
    ]
    assert summary["complete"] is False


def test_detected_by_path_only() -> None:
    assert providers.detect_from_request("POST", "/api/chat") == "ollama"
    assert providers.detect_from_request("POST", "/ollama/api/generate/") == "ollama"
    session = run_session([b"".join(PLAIN)], path=CHAT)
    assert (session.provider, session.framing) == ("ollama", "ndjson")


def test_detected_from_first_payload_without_path() -> None:
    session = run_session([b"".join(PLAIN)])
    assert (session.provider, session.framing) == ("ollama", "ndjson")
    assert session.message.text == "Привет! Как дела? 😊🚀"
    assert session.complete


def test_ndjson_content_type_with_path() -> None:
    session = run_session([b"".join(PLAIN)], path=CHAT, content_type="application/x-ndjson")
    assert session.framing == "ndjson" and session.complete


def test_invalid_json_is_malformed_and_stream_goes_on() -> None:
    data = b"".join(PLAIN[:1]) + b'{"model": "qwen3:8b", "created_at": \n' + b"".join(PLAIN[1:])
    session = run_session([data], path=CHAT)
    assert session.message.text == "Привет! Как дела? 😊🚀"
    assert [m.kind for _, m in session.malformed_events] == ["invalid-json"]
    assert session.complete


def test_wrong_shape_is_malformed_and_stream_goes_on() -> None:
    bad_message = ndjson_line({"model": MODEL, "created_at": STAMP, "message": "oops", "done": False})
    bad_calls = chat_line(content="", tool_calls={"function": {"name": "x"}})
    data = b"".join(PLAIN[:1]) + bad_message + bad_calls + b"[1, 2]\n" + b"".join(PLAIN[1:])
    session = run_session([data], path=CHAT)
    assert session.message.text == "Привет! Как дела? 😊🚀"
    assert [m.kind for _, m in session.malformed_events] == ["unexpected-shape"] * 3
    assert session.complete


def test_incomplete_without_done_line() -> None:
    session = run_session([b"".join(PLAIN[:-1])], path=CHAT)
    assert session.message.text == "Привет! Как дела? 😊🚀"
    assert session.message.finish_reason is None
    assert not session.complete


def test_incomplete_when_cut_inside_the_done_line() -> None:
    data = b"".join(PLAIN)
    session = run_session([data[:-30]], path=CHAT)
    assert not session.complete
    assert session.message.malformed == 1  # the cut line is dispatched at close and is not JSON


# Lines as the ollama-python test suite streams them (tests/test_client.py,
# test_client_chat_stream and test_client_generate_stream): json.dumps of
# {"model", "message"} or {"model", "response"}, with no created_at and no done.
BARE_CHAT = b"".join(
    ndjson_line({"model": "dummy", "message": {"role": "assistant", "content": piece}}) for piece in ["I ", "don't ", "know."]
)
BARE_GENERATE = b"".join(ndjson_line({"model": "dummy", "response": piece}) for piece in ["Because ", "it ", "is."])


def test_chat_lines_without_done_are_ollama_text() -> None:
    for name, chunks in chunkings(BARE_CHAT):
        session = run_session(chunks)
        assert (session.provider, session.framing) == ("ollama", "ndjson"), name
        assert session.message.text == "I don't know.", name
        assert session.message.model == "dummy", name
        assert not session.complete, name  # no done line: the stream did not end properly


def test_generate_lines_without_done_are_ollama_text() -> None:
    session = run_session([BARE_GENERATE])
    assert session.provider == "ollama"
    assert session.message.text == "Because it is."


def test_bare_lines_then_done_with_reason_end_the_stream() -> None:
    done = ndjson_line({"model": "dummy", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"})
    session = run_session([BARE_CHAT + done])
    assert session.provider == "ollama"
    assert session.message.text == "I don't know."
    assert session.message.finish_reason == "stop"
    assert session.complete


def test_other_providers_payloads_are_not_taken_for_ollama() -> None:
    match = providers.get("ollama").match_payload
    event = ServerSentEvent(data="")
    assert not match(event, {"model": "gpt-4o", "object": "chat.completion.chunk", "choices": [], "done": False})
    assert not match(event, {"type": "message_start", "message": {"role": "assistant", "model": "claude"}})
    assert not match(event, {"type": "response.created", "response": {"model": "gpt-4o"}})
    assert not match(event, {"message": {"role": "assistant", "content": "x"}})  # no model
    assert match(event, {"model": "dummy", "message": {"role": "assistant", "content": "x"}})
