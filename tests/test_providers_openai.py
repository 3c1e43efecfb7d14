"""OpenAI streams, Chat Completions and Responses, through a whole StreamSession."""

from __future__ import annotations

import json
from typing import Any

from helpers import chunkings, run_everywhere, run_session, sse_event, summary_without_timing

from ssemedic.core.parts import Error
from ssemedic.core.session import StreamSession

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"

RUSSIAN = "Привет! Как дела? 😊🚀"
RUSSIAN_DELTAS = ["Привет", "! Как", " дела", "? 😊", "🚀"]


def expected_usage(raw: dict[str, Any], inp: int, out: int, total: int) -> dict[str, Any]:
    return {**raw, "input_tokens": inp, "output_tokens": out, "total_tokens": total}


# -- OpenAI Chat Completions --------------------------------------------------

CHAT_ID = "chatcmpl-BRj1vQ3nXk2ZpLxT7cYw9mHdE4sGa"
CHAT_MODEL = "gpt-4o-2024-08-06"


def chat_chunk(
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    *,
    usage: dict[str, Any] | None = None,
    model: str = CHAT_MODEL,
    chunk_id: str = CHAT_ID,
) -> bytes:
    """One ``chat.completion.chunk``; ``delta=None`` gives the empty-choices usage chunk."""
    choices = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    ]
    return sse_event(
        {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": 1745848313,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_f5bdcc3276",
            "choices": choices,
            "usage": usage,
        }
    )


CHAT_DONE = b"data: [DONE]\n\n"
CHAT_USAGE = {
    "prompt_tokens": 14,
    "completion_tokens": 11,
    "total_tokens": 25,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}


def chat_russian_stream() -> bytes:
    return b"".join(
        [
            chat_chunk({"role": "assistant", "content": "", "refusal": None}),
            *(chat_chunk({"content": d}) for d in RUSSIAN_DELTAS),
            chat_chunk({}, "stop"),
            chat_chunk(None, usage=CHAT_USAGE),
            CHAT_DONE,
        ]
    )


def test_chat_russian_emoji_same_in_every_chunking() -> None:
    data = chat_russian_stream()
    whole = run_session([data], path=CHAT_PATH)
    for name, chunks in chunkings(data):
        session = run_session(chunks, path=CHAT_PATH)
        assert session.message.text == RUSSIAN, name
        assert session.message.finish_reason == "stop", name
        assert session.message.usage == expected_usage(CHAT_USAGE, 14, 11, 25), name
        assert summary_without_timing(session) == summary_without_timing(whole), name
    summary = summary_without_timing(whole)
    assert summary["provider"] == "openai-chat"
    assert summary["model"] == CHAT_MODEL
    assert summary["complete"] is True
    assert summary["issues"] == []
    assert whole.message.response_id == CHAT_ID
    assert whole.message.markers == ["[DONE]"]


def test_chat_usage_chunk_with_empty_choices_gives_usage() -> None:
    session = run_everywhere(
        chat_chunk({"role": "assistant", "content": "Ok"}, "stop") + chat_chunk(None, usage=CHAT_USAGE) + CHAT_DONE,
        path=CHAT_PATH,
    )
    assert session.message.text == "Ok"
    assert session.message.usage == expected_usage(CHAT_USAGE, 14, 11, 25)
    assert session.message.malformed == 0


def test_chat_reasoning_content_deepseek() -> None:
    kw: dict[str, Any] = {"model": "deepseek-reasoner", "chunk_id": "8b7c3f2e-6d1a-4c9e-9f0b-2a5d4e6c7b81"}
    data = b"".join(
        [
            chat_chunk({"role": "assistant", "content": None, "reasoning_content": ""}, **kw),
            chat_chunk({"content": None, "reasoning_content": "Пользователь здоровается. "}, **kw),
            chat_chunk({"content": None, "reasoning_content": "Отвечу дружелюбно."}, **kw),
            chat_chunk({"content": "Привет! 👋", "reasoning_content": None}, **kw),
            chat_chunk({"content": ""}, "stop", **kw),
            CHAT_DONE,
        ]
    )
    session = run_everywhere(data, path=CHAT_PATH)
    assert session.message.reasoning == "Пользователь здоровается. Отвечу дружелюбно."
    assert session.message.text == "Привет! 👋"
    assert session.message.model == "deepseek-reasoner"


def test_chat_reasoning_field_openrouter() -> None:
    kw: dict[str, Any] = {"model": "deepseek/deepseek-r1", "chunk_id": "gen-1745848313-Xq1fJ0mPzW8rT6bLkN3d"}
    data = b"".join(
        [
            chat_chunk({"role": "assistant", "content": "", "reasoning": "Считаю: "}, **kw),
            chat_chunk({"role": "assistant", "content": "", "reasoning": "2 + 2 = 4."}, **kw),
            chat_chunk({"role": "assistant", "content": "4"}, "stop", **kw),
            CHAT_DONE,
        ]
    )
    session = run_everywhere(data, path=CHAT_PATH)
    assert session.message.reasoning == "Считаю: 2 + 2 = 4."
    assert session.message.text == "4"


def test_chat_reasoning_mirrored_in_both_fields_counts_once() -> None:
    # Some servers (StepFun, some MLX and vLLM builds) copy each reasoning
    # delta into both "reasoning_content" and "reasoning".
    kw: dict[str, Any] = {"model": "step-3", "chunk_id": "0c1e2d3f4a5b6c7d8e9f0a1b2c3d4e5f"}
    data = b"".join(
        [
            chat_chunk({"role": "assistant", "content": "", "reasoning": "The", "reasoning_content": "The"}, **kw),
            chat_chunk({"content": "", "reasoning": " user", "reasoning_content": " user"}, **kw),
            chat_chunk({"content": "Hi"}, "stop", **kw),
            CHAT_DONE,
        ]
    )
    session = run_everywhere(data, path=CHAT_PATH)
    assert session.message.reasoning == "The user"


def test_chat_parallel_tool_calls_interleaved_by_index() -> None:
    def call(index: int, *, call_id: str | None = None, name: str | None = None, args: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"index": index, "function": {"arguments": args}}
        if call_id is not None:
            out.update(id=call_id, type="function")
            out["function"]["name"] = name
        return out

    data = b"".join(
        [
            chat_chunk({"role": "assistant", "content": None, "refusal": None}),
            chat_chunk({"tool_calls": [call(0, call_id="call_Vf3kQ8mZ2pLx9sT1", name="get_weather")]}),
            chat_chunk({"tool_calls": [call(1, call_id="call_Hb7nR4wJ6yKc0dE5", name="get_time")]}),
            chat_chunk({"tool_calls": [call(0, args='{"city": "Мос')]}),
            chat_chunk({"tool_calls": [call(1, args='{"timezone": ')]}),
            chat_chunk({"tool_calls": [call(0, args='ква", "unit": "celsius"}')]}),
            chat_chunk({"tool_calls": [call(1, args='"Europe/Paris"}')]}),
            chat_chunk({}, "tool_calls"),
            CHAT_DONE,
        ]
    )
    session = run_everywhere(data, path=CHAT_PATH)
    calls = session.message.tool_calls
    assert list(calls) == ["0", "1"]
    assert (calls["0"].id, calls["0"].name) == ("call_Vf3kQ8mZ2pLx9sT1", "get_weather")
    assert (calls["1"].id, calls["1"].name) == ("call_Hb7nR4wJ6yKc0dE5", "get_time")
    assert json.loads(calls["0"].arguments) == {"city": "Москва", "unit": "celsius"}
    assert json.loads(calls["1"].arguments) == {"timezone": "Europe/Paris"}
    assert session.message.finish_reason == "tool_calls"
    assert session.complete


def test_chat_error_mid_stream_is_recorded_and_incomplete() -> None:
    error: dict[str, Any] = {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    data = chat_chunk({"role": "assistant", "content": "Начнём"}) + sse_event({"error": error}) + CHAT_DONE
    session = run_everywhere(data, path=CHAT_PATH)
    assert session.message.text == "Начнём"
    assert session.message.errors == [Error(error["message"], "server_error", None)]
    assert session.message.markers == ["[DONE]"]
    assert not session.complete  # the error cut the answer: no finish_reason came


def test_chat_refusal() -> None:
    data = b"".join(
        [
            chat_chunk({"role": "assistant", "content": None, "refusal": ""}),
            chat_chunk({"refusal": "I'm sorry, "}),
            chat_chunk({"refusal": "I can't help with that."}),
            chat_chunk({}, "stop"),
            CHAT_DONE,
        ]
    )
    session = run_everywhere(data, path=CHAT_PATH)
    assert session.message.refusal == "I'm sorry, I can't help with that."
    assert session.message.text == ""
    assert session.complete


def test_chat_detected_from_path_alone() -> None:
    session = StreamSession(path=CHAT_PATH)
    assert session.provider == "openai-chat"
    assert session.framing == "sse"


def test_chat_detected_from_first_payload_without_path() -> None:
    session = run_everywhere(chat_russian_stream())
    assert session.provider == "openai-chat"
    assert session.message.text == RUSSIAN


def test_chat_invalid_json_is_malformed_and_stream_goes_on() -> None:
    broken = b'data: {"id": "chatcmpl-x", "choices": [\n\n'
    data = chat_chunk({"content": "A"}) + broken + chat_chunk({"content": "B"}, "stop")
    session = run_everywhere(data, path=CHAT_PATH)
    assert session.message.text == "AB"
    assert [(i, m.kind) for i, m in session.malformed_events] == [(1, "invalid-json")]
    assert session.complete


def test_chat_wrong_shape_is_malformed_unexpected_shape() -> None:
    bad = sse_event({"id": CHAT_ID, "object": "chat.completion.chunk", "choices": "x"})
    data = bad + chat_chunk({"content": "B"}, "stop")
    session = run_everywhere(data, path=CHAT_PATH)
    assert [m.kind for _, m in session.malformed_events] == ["unexpected-shape"]
    assert session.message.text == "B"


def test_chat_cut_before_finish_reason_is_incomplete() -> None:
    session = run_everywhere(chat_russian_stream().split(chat_chunk({}, "stop"))[0], path=CHAT_PATH)
    assert session.message.text == RUSSIAN
    assert not session.complete


# -- OpenAI Responses ------------------------------------------------------------

RESP_ID = "resp_68108f1a8f348191a2c6d9bb4e06b4d90b3c9f3ee1d7c4a5"
RESP_MODEL = "gpt-4.1-2025-04-14"
MSG_ID = "msg_68108f1b2c4c8191b5f0e1b4f6a3d7c20b3c9f3ee1d7c4a5"
RESP_USAGE = {
    "input_tokens": 14,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 11,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 25,
}


def response_object(status: str, *, model: str = RESP_MODEL, **fields: Any) -> dict[str, Any]:
    return {
        "id": RESP_ID,
        "object": "response",
        "created_at": 1745915674,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
        **fields,
    }


def responses_stream(*events: tuple[str, dict[str, Any]]) -> bytes:
    """SSE blocks with ``event:`` and a data ``type`` that agree, numbered in order."""
    return b"".join(
        sse_event({"type": kind, "sequence_number": n, **fields}, kind) for n, (kind, fields) in enumerate(events)
    )


def created(model: str = RESP_MODEL) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("response.created", {"response": response_object("in_progress", model=model)}),
        ("response.in_progress", {"response": response_object("in_progress", model=model)}),
    ]


def message_item(output_index: int, deltas: list[str], kind: str = "output_text") -> list[tuple[str, dict[str, Any]]]:
    """A message output item streamed as ``output_text`` (or ``refusal``) deltas."""
    at = {"item_id": MSG_ID, "output_index": output_index, "content_index": 0}
    item = {"id": MSG_ID, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    full = "".join(deltas)
    if kind == "output_text":
        part = {"type": "output_text", "text": full, "annotations": []}
        delta_events = [("response.output_text.delta", {**at, "delta": d, "logprobs": []}) for d in deltas]
        done = ("response.output_text.done", {**at, "text": full, "logprobs": []})
    else:
        part = {"type": "refusal", "refusal": full}
        delta_events = [("response.refusal.delta", {**at, "delta": d}) for d in deltas]
        done = ("response.refusal.done", {**at, "refusal": full})
    empty = {**part, "text": ""} if kind == "output_text" else {**part, "refusal": ""}
    return [
        ("response.output_item.added", {"output_index": output_index, "item": item}),
        ("response.content_part.added", {**at, "part": empty}),
        *delta_events,
        done,
        ("response.content_part.done", {**at, "part": part}),
        (
            "response.output_item.done",
            {"output_index": output_index, "item": {**item, "status": "completed", "content": [part]}},
        ),
    ]


def completed(usage: dict[str, Any] = RESP_USAGE) -> tuple[str, dict[str, Any]]:
    return ("response.completed", {"response": response_object("completed", usage=usage)})


def test_responses_russian_emoji_same_in_every_chunking() -> None:
    data = responses_stream(*created(), *message_item(0, RUSSIAN_DELTAS), completed())
    whole = run_session([data], path=RESPONSES_PATH)
    for name, chunks in chunkings(data):
        session = run_session(chunks, path=RESPONSES_PATH)
        assert session.message.text == RUSSIAN, name
        assert session.message.finish_reason == "completed", name
        assert session.message.usage == expected_usage(RESP_USAGE, 14, 11, 25), name
        assert summary_without_timing(session) == summary_without_timing(whole), name
    summary = summary_without_timing(whole)
    assert summary["provider"] == "openai-responses"
    assert summary["model"] == RESP_MODEL
    assert summary["complete"] is True
    assert summary["issues"] == []
    assert whole.message.response_id == RESP_ID
    assert whole.message.markers == ["response.completed"]


def test_responses_reasoning_summary_and_reasoning_text() -> None:
    rs = {"item_id": "rs_68108f1b0f8c8191a1c2d3e4f5a6b7c8", "output_index": 0}
    reasoning_item = {"id": rs["item_id"], "type": "reasoning", "summary": []}
    summary_part = {"type": "summary_text", "text": ""}
    data = responses_stream(
        *created("o4-mini-2025-04-16"),
        ("response.output_item.added", {"output_index": 0, "item": reasoning_item}),
        ("response.reasoning_summary_part.added", {**rs, "summary_index": 0, "part": summary_part}),
        ("response.reasoning_summary_text.delta", {**rs, "summary_index": 0, "delta": "**Считаю** "}),
        ("response.reasoning_summary_text.delta", {**rs, "summary_index": 0, "delta": "сумму. "}),
        ("response.reasoning_summary_text.done", {**rs, "summary_index": 0, "text": "**Считаю** сумму. "}),
        ("response.reasoning_text.delta", {**rs, "content_index": 0, "delta": "2 + 2 "}),
        ("response.reasoning_text.delta", {**rs, "content_index": 0, "delta": "= 4"}),
        ("response.reasoning_text.done", {**rs, "content_index": 0, "text": "2 + 2 = 4"}),
        *message_item(1, ["Ответ: ", "4"]),
        completed(),
    )
    session = run_everywhere(data, path=RESPONSES_PATH)
    assert session.message.reasoning == "**Считаю** сумму. 2 + 2 = 4"
    assert session.message.text == "Ответ: 4"
    assert session.message.model == RESP_MODEL  # the terminal response names the model too


def function_call_item(
    output_index: int, call_id: str, item_id: str, name: str, deltas: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    item = {
        "id": item_id,
        "type": "function_call",
        "status": "in_progress",
        "arguments": "",
        "call_id": call_id,
        "name": name,
    }
    full = "".join(deltas)
    at = {"item_id": item_id, "output_index": output_index}
    return [
        ("response.output_item.added", {"output_index": output_index, "item": item}),
        *(("response.function_call_arguments.delta", {**at, "delta": d}) for d in deltas),
        ("response.function_call_arguments.done", {**at, "arguments": full}),
        (
            "response.output_item.done",
            {"output_index": output_index, "item": {**item, "status": "completed", "arguments": full}},
        ),
    ]


def test_responses_two_function_calls_arguments_not_doubled() -> None:
    data = responses_stream(
        *created(),
        *function_call_item(
            0,
            "call_Vf3kQ8mZ2pLx9sT1",
            "fc_68108f1c1d5c8191",
            "get_weather",
            ['{"city":', ' "Москва", ', '"unit": "celsius"}'],
        ),
        *function_call_item(
            1, "call_Hb7nR4wJ6yKc0dE5", "fc_68108f1c9e2c8191", "get_time", ['{"timezone": "Europe/Paris"}']
        ),
        completed(),
    )
    session = run_everywhere(data, path=RESPONSES_PATH)
    calls = session.message.tool_calls
    assert list(calls) == ["0", "1"]
    assert (calls["0"].id, calls["0"].name) == ("call_Vf3kQ8mZ2pLx9sT1", "get_weather")
    assert (calls["1"].id, calls["1"].name) == ("call_Hb7nR4wJ6yKc0dE5", "get_time")
    assert json.loads(calls["0"].arguments) == {"city": "Москва", "unit": "celsius"}
    assert json.loads(calls["1"].arguments) == {"timezone": "Europe/Paris"}
    assert session.complete


def test_responses_function_call_without_deltas_takes_done_arguments_once() -> None:
    item = function_call_item(0, "call_Vf3kQ8mZ2pLx9sT1", "fc_68108f1c1d5c8191", "get_weather", ['{"city": "Рим"}'])
    events = [e for e in item if e[0] != "response.function_call_arguments.delta"]
    session = run_everywhere(responses_stream(*created(), *events, completed()), path=RESPONSES_PATH)
    assert session.message.tool_calls["0"].arguments == '{"city": "Рим"}'


def test_responses_call_id_falls_back_to_item_id() -> None:
    item = {"id": "fc_68108f1c1d5c8191", "type": "function_call", "arguments": "", "name": "ping"}
    data = responses_stream(
        ("response.output_item.added", {"output_index": 0, "item": item}),
        ("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": 0, "delta": "{}"}),
        completed(),
    )
    call = run_everywhere(data, path=RESPONSES_PATH).message.tool_calls["0"]
    assert (call.id, call.name, call.arguments) == ("fc_68108f1c1d5c8191", "ping", "{}")


def test_responses_error_event_mid_stream() -> None:
    error: dict[str, Any] = {"code": "server_error", "message": "An error occurred while processing your request.", "param": None}
    data = responses_stream(*created(), *message_item(0, ["Начнём"])[:3], ("error", error))
    session = run_everywhere(data, path=RESPONSES_PATH)
    assert session.message.text == "Начнём"
    assert session.message.errors == [Error(error["message"], None, "server_error")]
    assert not session.complete


def test_responses_error_event_with_nested_error_object() -> None:
    nested = {"type": "invalid_request_error", "code": "context_length_exceeded", "message": "Слишком длинный ввод."}
    session = run_everywhere(responses_stream(*created(), ("error", {"error": nested})), path=RESPONSES_PATH)
    assert session.message.errors == [Error(nested["message"], "invalid_request_error", "context_length_exceeded")]


def test_responses_error_then_failed_is_complete_with_errors() -> None:
    error: dict[str, Any] = {"code": "server_error", "message": "An error occurred while processing your request.", "param": None}
    failure: dict[str, Any] = {"code": "server_error", "message": "The model failed to generate a response."}
    data = responses_stream(
        *created(),
        *message_item(0, ["Начнём"])[:3],
        ("error", error),
        ("response.failed", {"response": response_object("failed", error=failure)}),
    )
    session = run_everywhere(data, path=RESPONSES_PATH)
    assert session.message.errors == [
        Error(error["message"], None, "server_error"),
        Error(failure["message"], None, "server_error"),
    ]
    assert session.message.finish_reason == "failed"
    assert session.message.markers == ["response.failed"]
    assert session.complete


def test_responses_incomplete_takes_reason_from_details() -> None:
    data = responses_stream(
        *created(),
        *message_item(0, ["Длинный ответ"]),
        (
            "response.incomplete",
            {
                "response": response_object(
                    "incomplete", incomplete_details={"reason": "max_output_tokens"}, usage=RESP_USAGE
                )
            },
        ),
    )
    session = run_everywhere(data, path=RESPONSES_PATH)
    assert session.message.finish_reason == "max_output_tokens"
    assert session.message.usage == expected_usage(RESP_USAGE, 14, 11, 25)
    assert session.complete


def test_responses_refusal() -> None:
    refusal = message_item(0, ["I'm sorry, ", "I can't help with that."], "refusal")
    data = responses_stream(*created(), *refusal, completed())
    session = run_everywhere(data, path=RESPONSES_PATH)
    assert session.message.refusal == "I'm sorry, I can't help with that."
    assert session.message.text == ""
    assert session.complete


def test_responses_gateway_done_marker_is_not_malformed() -> None:
    data = responses_stream(*created(), *message_item(0, ["Ok"]), completed()) + b"data: [DONE]\n\n"
    session = run_everywhere(data, path=RESPONSES_PATH)
    assert session.message.malformed == 0
    assert session.message.markers == ["response.completed", "[DONE]"]


def test_responses_type_in_data_wins_over_missing_event_field() -> None:
    events = [*created(), *message_item(0, RUSSIAN_DELTAS), completed()]
    data = b"".join(sse_event({"type": kind, "sequence_number": n, **f}) for n, (kind, f) in enumerate(events))
    session = run_everywhere(data, path=RESPONSES_PATH)
    assert session.message.text == RUSSIAN
    assert session.complete


def test_responses_detected_from_path_alone() -> None:
    session = StreamSession(method="POST", path=RESPONSES_PATH)
    assert session.provider == "openai-responses"
    assert session.framing == "sse"


def test_responses_detected_from_first_payload_without_path() -> None:
    session = run_everywhere(responses_stream(*created(), *message_item(0, RUSSIAN_DELTAS), completed()))
    assert session.provider == "openai-responses"
    assert session.message.text == RUSSIAN
    assert session.complete


def test_responses_invalid_json_is_malformed_and_stream_goes_on() -> None:
    data = responses_stream(*created()) + b'event: response.output_text.delta\ndata: {"type": "response.out\n\n'
    data += responses_stream(*message_item(0, ["Ok"]), completed())
    session = run_everywhere(data, path=RESPONSES_PATH)
    assert [(i, m.kind) for i, m in session.malformed_events] == [(2, "invalid-json")]
    assert session.message.text == "Ok"
    assert session.complete


def test_responses_wrong_shape_is_malformed_unexpected_shape() -> None:
    bad: list[tuple[str, dict[str, Any]]] = [
        ("response.output_text.delta", {"item_id": MSG_ID, "output_index": 0, "content_index": 0, "delta": 42}),
        ("response.output_item.added", {"output_index": "0", "item": {"type": "function_call", "name": "f"}}),
        ("response.completed", {"response": "x"}),
    ]
    session = run_everywhere(responses_stream(*created(), *bad), path=RESPONSES_PATH)
    assert [m.kind for _, m in session.malformed_events] == ["unexpected-shape"] * 3
    assert not session.complete


def test_responses_cut_before_terminal_event_is_incomplete() -> None:
    session = run_everywhere(responses_stream(*created(), *message_item(0, RUSSIAN_DELTAS)), path=RESPONSES_PATH)
    assert session.message.text == RUSSIAN
    assert session.message.finish_reason is None
    assert not session.complete


def test_huge_integer_payload_is_malformed_not_a_crash() -> None:
    from ssemedic.core.events import ServerSentEvent
    from ssemedic.core.providers.openai_chat import ChatInterpreter

    parts = ChatInterpreter().interpret(ServerSentEvent(data="1" * 5000))
    assert [type(p).__name__ for p in parts] == ["Malformed"] and parts[0].kind == "invalid-json"  # type: ignore[union-attr]


def test_absurdly_nested_payload_is_malformed_not_a_crash() -> None:
    from ssemedic.core.events import ServerSentEvent
    from ssemedic.core.providers import detect_from_event
    from ssemedic.core.providers.openai_chat import ChatInterpreter

    event = ServerSentEvent(data="[" * 100_000)
    assert detect_from_event(event) is None
    parts = ChatInterpreter().interpret(event)
    assert [type(p).__name__ for p in parts] == ["Malformed"]
