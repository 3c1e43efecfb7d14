"""What OpenAI-compatible servers and gateways add to the two OpenAI formats:
parallel tool calls numbered wrongly, Azure's content filter, OpenRouter's
keep-alives and error chunk, the error shapes of llama.cpp, vLLM and SGLang,
and the Responses API's ends. Each stream runs whole, byte by byte and cut in
two at every point (``run_everywhere``); the published bodies live in
tests/field/ (test_field_streams.py). Bytes built here follow the shape the
named source documents or reports; where a source gives the exact bytes, the
test says so.
"""

from __future__ import annotations

import json
from typing import Any

from helpers import CHUNKING_FAULTS, run_everywhere, run_session, sse_event

from ssemedic.core.faults import FaultKind
from ssemedic.core.parts import Error
from ssemedic.core.session import StreamSession

CHAT_PATH = "/v1/chat/completions"
AZURE_PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
RESPONSES_PATH = "/v1/responses"
DONE = b"data: [DONE]\n\n"


def faults(session: StreamSession) -> dict[str, str]:
    """Each fault's kind and detail, the chunking ones left out."""
    return {str(f.kind): f.detail for f in session.faults if f.kind not in CHUNKING_FAULTS}


def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
    """One ``chat.completion.chunk`` of choice 0 (no choice when ``delta`` is None)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return sse_event({"id": "chatcmpl-18", "object": "chat.completion.chunk", "created": 1744446075,
                      "model": "qwen2.5-coder:7b-instruct-q8_0", "choices": choices, **extra})


def call(index: int | None, call_id: str | None = None, name: str | None = None, args: str = "") -> bytes:
    entry: dict[str, Any] = {"function": {"arguments": args}}
    if index is not None:
        entry["index"] = index
    if call_id is not None:
        entry.update(id=call_id, type="function")
        entry["function"]["name"] = name
    return chunk({"tool_calls": [entry]})


# -- parallel tool calls under one index ------------------------------------------


def test_whole_calls_under_one_index_are_assembled_apart_and_diagnosed() -> None:
    # Ollama's /v1 shape (two whole calls, as g0t4/ask-openai.nvim's notes
    # lua/ask-openai/backends/ollama/notes/sses.md record them), with both under
    # index 0, as ollama/ollama#15457 reports it does for parallel batches.
    data = b"".join([
        call(0, "call_wteop8bt", "run_command", '{"command":"ls"}'),
        call(0, "call_rk2xye1l", "run_command", '{"command":"ls -l"}'),
        chunk({"content": ""}, "tool_calls"),
        DONE,
    ])
    session = run_everywhere(data, path=CHAT_PATH)
    calls = list(session.message.tool_calls.values())
    assert [(c.id, json.loads(c.arguments)) for c in calls] == [
        ("call_wteop8bt", {"command": "ls"}),
        ("call_rk2xye1l", {"command": "ls -l"}),
    ]
    found = faults(session)
    assert list(found) == ["tool-call-index-collision"]
    assert "call_wteop8bt" in found["tool-call-index-collision"]
    assert "call_rk2xye1l" in found["tool-call-index-collision"]
    [fault] = [f for f in session.faults if f.kind == FaultKind.TOOL_CALL_INDEX_COLLISION]
    assert fault.event_index == 1


def test_fragments_under_one_index_go_to_the_call_last_opened() -> None:
    # What a Responses-to-chat translator sent (mcowger/plexus#691: index 0 for
    # every call): each call opens with its id and name, its fragments follow.
    data = b"".join([
        chunk({"role": "assistant", "content": None}),
        call(0, "call_A", "add_task"),
        call(0, args='{"title":"Organize '),
        call(0, args='the photo folder"}'),
        call(0, "call_B", "add_task"),
        call(0, args='{"title":"Прогулка'),
        call(0, args=' 20 минут"}'),
        chunk({}, "tool_calls"),
        DONE,
    ])
    session = run_everywhere(data, path=CHAT_PATH)
    assert [(c.id, c.name, json.loads(c.arguments)) for c in session.message.tool_calls.values()] == [
        ("call_A", "add_task", {"title": "Organize the photo folder"}),
        ("call_B", "add_task", {"title": "Прогулка 20 минут"}),
    ]
    assert "invalid-tool-arguments" not in faults(session)
    assert "tool-call-index-collision" in faults(session)


def test_calls_without_any_index_are_told_apart_by_id() -> None:
    # Some OpenAI-compatible endpoints omit "index" (ollama/ollama#7881).
    data = b"".join([
        call(None, "call_1", "get_weather", '{"city": "Oslo"}'),
        call(None, "call_2", "get_time", '{"tz": "Europe/Oslo"}'),
        chunk({}, "tool_calls"),
        DONE,
    ])
    session = run_everywhere(data, path=CHAT_PATH)
    assert [c.name for c in session.message.tool_calls.values()] == ["get_weather", "get_time"]
    assert "invalid-tool-arguments" not in faults(session)


def test_an_id_repeated_on_every_fragment_is_one_call_and_no_fault() -> None:
    data = b"".join([
        call(0, "call_X", "search", '{"q": '),
        call(0, "call_X", "search", '"моря"}'),
        chunk({}, "tool_calls"),
        DONE,
    ])
    session = run_everywhere(data, path=CHAT_PATH)
    [only] = session.message.tool_calls.values()
    assert json.loads(only.arguments) == {"q": "моря"}
    assert faults(session) == {}


def test_well_numbered_parallel_calls_are_no_fault() -> None:
    data = b"".join([
        call(0, "call_A", "a"), call(1, "call_B", "b"),
        call(0, args="{}"), call(1, args="{}"),
        chunk({}, "tool_calls"), DONE,
    ])
    assert faults(run_everywhere(data, path=CHAT_PATH)) == {}


# -- Azure OpenAI content filter --------------------------------------------------

SAFE = {c: {"filtered": False, "severity": "safe"} for c in ("hate", "self_harm", "sexual", "violence")}


def azure_prompt_chunk(results: dict[str, Any]) -> bytes:
    """Azure's first chunk: no id, no model, no choices, the prompt's filter results."""
    return sse_event({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                      "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": results}]})


def test_azure_first_chunk_settles_the_provider_without_a_path() -> None:
    session = run_everywhere(azure_prompt_chunk(SAFE) + chunk({"content": "Hallo"}, "stop") + DONE)
    assert (session.provider, session.provider_settled_at) == ("openai-chat", 0)


def test_azure_annotation_chunks_are_not_malformed_and_no_fault() -> None:
    annotation = sse_event({"id": "", "object": "", "created": 0, "model": "", "choices": [
        {"index": 0, "finish_reason": None, "content_filter_results": SAFE,
         "content_filter_offsets": {"check_offset": 44, "start_offset": 44, "end_offset": 198}}]})
    data = azure_prompt_chunk(SAFE) + chunk({"content": "Цвет"}) + annotation + chunk({}, "stop") + DONE
    session = run_everywhere(data, path=AZURE_PATH)
    assert session.message.text == "Цвет"
    assert (session.malformed_events, session.issues, faults(session)) == ([], [], {})


def test_azure_filtered_answer_names_category_and_severity() -> None:
    verdict = {**SAFE, "violence": {"filtered": True, "severity": "medium"}}
    data = b"".join([
        azure_prompt_chunk(SAFE),
        chunk({"content": "Часть ответа"}, content_filter_results=SAFE),
        sse_event({"id": "", "object": "", "created": 0, "model": "", "choices": [
            {"index": 0, "finish_reason": "content_filter", "content_filter_results": verdict}]}),
        DONE,
    ])
    session = run_everywhere(data, path=AZURE_PATH)
    assert session.message.finish_reason == "content_filter"
    assert faults(session) == {"content-filtered": "answer: violence (medium) (finish_reason content_filter)"}


def test_azure_filtered_prompt_is_named() -> None:
    data = azure_prompt_chunk({**SAFE, "hate": {"filtered": True, "severity": "high"}}) + DONE
    assert faults(run_everywhere(data, path=AZURE_PATH))["content-filtered"] == "prompt: hate (high)"


def test_content_filter_finish_without_results_is_still_named() -> None:
    data = chunk({"content": "Sorry"}) + chunk({"content": ""}, "content_filter") + DONE
    found = faults(run_everywhere(data, path=CHAT_PATH))
    assert found == {"content-filtered": "answer: no category given (finish_reason content_filter)"}


# -- OpenRouter: keep-alives and the error chunk ---------------------------------

PROCESSING = b": OPENROUTER PROCESSING\n\n"


def test_openrouter_comments_are_counted_as_keepalives_not_events() -> None:
    data = PROCESSING * 3 + chunk({"content": "Hi"}) + PROCESSING + chunk({}, "stop") + DONE
    session = run_everywhere(data, path=CHAT_PATH)
    assert (session.timing().keepalives, session.event_count) == (4, 3)
    assert faults(session) == {}


def test_keepalives_end_the_silence_a_stall_is_measured_by() -> None:
    # A model queued for 25 s behind OpenRouter's comments every 5 s: alive, no stall.
    first = chunk({"role": "assistant", "content": ""})
    pieces = [first, *([PROCESSING] * 5), chunk({"content": "Hi"}), chunk({}, "stop") + DONE]
    times = [0.1, 5, 10, 15, 20, 25, 29, 29.1]
    session = StreamSession(path=CHAT_PATH, started_at=0.0)
    for piece, at in zip(pieces, times, strict=True):
        session.feed(piece, at=at)
    session.close(at=29.2)
    assert session.timing().keepalives == 5
    assert FaultKind.STALL not in {f.kind for f in session.faults}


def test_silence_without_keepalives_is_still_a_stall() -> None:
    pieces = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}), chunk({}, "stop") + DONE]
    session = StreamSession(path=CHAT_PATH, started_at=0.0)
    for piece, at in zip(pieces, [0.1, 29.0, 29.1], strict=True):
        session.feed(piece, at=at)
    session.close(at=29.2)
    assert FaultKind.STALL in {f.kind for f in session.faults}


def test_openrouter_error_chunk_is_an_error_with_its_finish_reason() -> None:
    # The chunk is the one OpenRouter's streaming docs show ("Errors After Tokens Have Been Sent").
    error = ('{"id":"cmpl-abc123","object":"chat.completion.chunk","created":1234567890,"model":"gpt-3.5-turbo",'
             '"provider":"openai","error":{"code":"server_error","message":"Provider disconnected unexpectedly"},'
             '"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}')
    session = run_everywhere(chunk({"content": "Half"}) + sse_event(error), path=CHAT_PATH)
    assert session.message.errors == [Error("Provider disconnected unexpectedly", None, "server_error")]
    assert session.message.finish_reason == "error"
    assert list(faults(session)) == ["error-in-stream"]


# -- llama.cpp, vLLM, SGLang -----------------------------------------------------


def test_llama_cpp_error_field_is_an_error_the_client_never_sees() -> None:
    # llama.cpp's server writes a stream's error with server_sent_event(sink,
    # "error", ...) (tools/server/server.cpp), an "error:" line, then
    # "data: [DONE]". Built from that code; the error object is llama.cpp's
    # shape (code, message, type) for a prompt over the context size.
    error = ('error: {"code":400,"message":"the request exceeds the available context size, try increasing it",'
             '"type":"exceed_context_size_error"}\n\n')
    session = run_everywhere(error.encode() + DONE, path=CHAT_PATH)
    found = faults(session)
    assert list(found) == ["error-in-stream", "done-after-error"]  # not truncated: the error ended it
    assert "the request exceeds the available context size" in found["error-in-stream"]
    assert "SSE clients ignore" in found["error-in-stream"]


def test_llama_cpp_timings_are_a_known_field() -> None:
    timings = {"prompt_n": 12, "prompt_ms": 30.1, "predicted_n": 2, "predicted_ms": 41.7,
               "predicted_per_second": 47.9}
    data = chunk({"content": "Hi"}) + chunk({}, "stop", timings=timings) + DONE
    session = run_everywhere(data, path=CHAT_PATH)
    assert (session.message.text, session.malformed_events, faults(session)) == ("Hi", [], {})


def test_vllm_top_level_error_object_is_an_error() -> None:
    # vLLM's create_streaming_error_response once dumped its ErrorResponse as
    # it is (vllm/entrypoints/openai/serving_engine.py): "object": "error" at the top.
    error = {"object": "error", "message": "This model's maximum context length is 4096 tokens.",
             "type": "BadRequestError", "param": None, "code": 400}
    session = run_everywhere(chunk({"content": "Да"}) + sse_event(error) + DONE, path=CHAT_PATH)
    assert session.message.errors == [Error(error["message"], "BadRequestError", "400")]
    assert "truncated" not in faults(session)


def test_nested_error_object_of_sglang_and_newer_vllm_is_an_error() -> None:
    error = {"error": {"object": "error", "message": "Internal server error", "type": "InternalServerError",
                       "param": None, "code": 500}}
    session = run_everywhere(chunk({"content": "Да"}) + sse_event(error) + DONE, path=CHAT_PATH)
    assert session.message.errors == [Error("Internal server error", "InternalServerError", "500")]


# -- OpenAI Responses: how a stream ends ------------------------------------------


def responses(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(sse_event({"type": kind, "sequence_number": n, **fields}, kind)
                    for n, (kind, fields) in enumerate(events))


def response(status: str, **fields: Any) -> dict[str, Any]:
    return {"response": {"id": "resp_1", "object": "response", "status": status, "model": "gpt-5", "output": [],
                         "usage": None, **fields}}


TEXT = ("response.output_text.delta", {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Да"})


def test_responses_without_a_terminal_event_is_truncated() -> None:
    session = run_everywhere(responses(("response.created", response("in_progress")), TEXT), path=RESPONSES_PATH)
    assert not session.complete
    assert faults(session) == {"truncated": "the openai-responses stream ended without its terminal signal"}


def test_responses_cut_but_ended_with_a_gateway_done_names_what_is_missing() -> None:
    data = responses(("response.created", response("in_progress")), TEXT) + DONE
    session = run_everywhere(data, path=RESPONSES_PATH)
    assert faults(session) == {"truncated": "data: [DONE] arrived, but no response.completed, "
                                            "response.incomplete or response.failed came"}


def test_responses_failed_is_an_error_with_its_message() -> None:
    failed = response("failed", error={"code": "server_error", "message": "The model crashed."})
    session = run_everywhere(responses(TEXT, ("response.failed", failed)), path=RESPONSES_PATH)
    assert session.message.errors == [Error("The model crashed.", None, "server_error")]
    assert list(faults(session)) == ["error-in-stream"]


def test_responses_incomplete_for_the_content_filter_is_content_filtered() -> None:
    incomplete = response("incomplete", incomplete_details={"reason": "content_filter"})
    session = run_everywhere(responses(TEXT, ("response.incomplete", incomplete)), path=RESPONSES_PATH)
    assert session.message.finish_reason == "content_filter"
    assert list(faults(session)) == ["content-filtered"]


def test_responses_custom_tool_call_input_is_free_form() -> None:
    item = {"type": "custom_tool_call", "id": "ct_1", "call_id": "call_1", "name": "write_sql", "input": ""}
    data = responses(
        ("response.output_item.added", {"output_index": 0, "item": item}),
        ("response.custom_tool_call_input.delta", {"item_id": "ct_1", "output_index": 0, "delta": "SELECT «ё» "}),
        ("response.custom_tool_call_input.delta", {"item_id": "ct_1", "output_index": 0, "delta": "FROM t"}),
        ("response.custom_tool_call_input.done", {"item_id": "ct_1", "output_index": 0,
                                                  "input": "SELECT «ё» FROM t"}),
        ("response.completed", response("completed")),
    )
    session = run_everywhere(data, path=RESPONSES_PATH)
    [only] = session.message.tool_calls.values()
    assert (only.id, only.name, only.arguments, only.validity) == ("call_1", "write_sql", "SELECT «ё» FROM t",
                                                                   "free-form input")
    assert faults(session) == {}


# -- reasoning: DeepSeek and Mistral ------------------------------------------------


def test_deepseek_reasoning_content_then_content() -> None:
    # DeepSeek's reasoner (api-docs.deepseek.com, "Reasoning Model"): reasoning_content, then content.
    data = b"".join([
        chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
        chunk({"content": None, "reasoning_content": "9.11 или 9.8? "}),
        chunk({"content": None, "reasoning_content": "9.8 больше."}),
        chunk({"content": "9.8", "reasoning_content": None}),
        chunk({"content": ""}, "stop"),
        DONE,
    ])
    session = run_everywhere(data, path=CHAT_PATH)
    assert (session.message.reasoning, session.message.text) == ("9.11 или 9.8? 9.8 больше.", "9.8")


def test_mistral_content_chunks_thinking_and_text() -> None:
    # Mistral's DeltaMessage.content may be a list of ContentChunk: ThinkChunk
    # {"type": "thinking", "thinking": [TextChunk]} and TextChunk {"type": "text"}
    # (mistralai/client-ts docs/models/components/thinkchunk.md, deltamessage.md).
    think = [{"type": "thinking", "thinking": [{"type": "text", "text": "Сначала "}]}]
    more = [{"type": "thinking", "thinking": [{"type": "text", "text": "подумаю."}]}]
    data = b"".join([
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": think}),
        chunk({"content": more}),
        chunk({"content": [{"type": "text", "text": "Ответ: 42"}]}),
        chunk({"content": "."}, "stop"),
        DONE,
    ])
    session = run_everywhere(data, path=CHAT_PATH)
    assert (session.message.reasoning, session.message.text) == ("Сначала подумаю.", "Ответ: 42.")
    assert faults(session) == {}


def test_what_the_interpreter_remembers_of_tool_calls_is_bounded() -> None:
    from ssemedic.core.providers.openai_chat import MAX_TRACKED_IDS

    data = b"".join(call(i, f"call_{i}", "f", "{}") for i in range(MAX_TRACKED_IDS + 50)) + DONE
    session = run_session([data], path=CHAT_PATH)
    interpreter: Any = session.interpreter
    assert len(interpreter.open_calls) == len(interpreter.key_of_id) == MAX_TRACKED_IDS
