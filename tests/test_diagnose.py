"""Diagnosis through a whole StreamSession: every fault kind from a real byte
stream, located and explained, and no faults from healthy streams of any
provider, in any chunking."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from helpers import CHUNKING_FAULTS, chunkings, ndjson_line, run_session, sse_event

from ssemedic.files import cli
from ssemedic.core.diagnose import BURST_MIN_EVENTS, DEFAULT_STALL_SECONDS, splits_a_character
from ssemedic.core.faults import CATALOGUE, Fault, FaultKind
from ssemedic.core.session import StreamSession

REPLY = "Привет! Как дела? 😊🚀"
REPLY_DELTAS = ["Привет", "! Как", " дела", "? 😊", "🚀"]
REASONING = "Пользователь здоровается. Отвечу кратко 🤔"
#: Enough content events that arriving all at once can only mean buffering.
LONG_DELTAS = ["Ответ ", "приходит ", "по ", "частям, ", "потому ", "что ", "сервер ", "стримит 🧩"]

SSE_TYPE = "text/event-stream; charset=utf-8"
NDJSON_TYPE = "application/x-ndjson"


def good_headers(content_type: str) -> dict[str, str]:
    """What a well-configured streaming upstream sends."""
    return {
        "Content-Type": content_type,
        "Cache-Control": "no-cache, no-transform",
        "X-Accel-Buffering": "no",
        "Transfer-Encoding": "chunked",
    }


# -- realistic streams, one builder per provider (payloads via json.dumps) -----

CHAT_PATH = "/v1/chat/completions"
CHAT_DONE = b"data: [DONE]\n\n"
CHAT_USAGE = {"prompt_tokens": 14, "completion_tokens": 11, "total_tokens": 25}


def chat(delta: dict[str, Any] | None, finish: str | None = None, *, usage: dict[str, Any] | None = None) -> bytes:
    """One ``chat.completion.chunk``; ``delta=None`` gives the empty-choices usage chunk."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return sse_event({
        "id": "chatcmpl-BRj1vQ3nXk2ZpLxT7cYw9mHdE4sGa",
        "object": "chat.completion.chunk",
        "created": 1745848313,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_f5bdcc3276",
        "choices": choices,
        "usage": usage,
    })


def chat_events(deltas: Sequence[str] = REPLY_DELTAS) -> list[bytes]:
    return [
        chat({"role": "assistant", "content": "", "refusal": None}),
        *(chat({"content": d}) for d in deltas),
        chat({}, "stop"),
        chat(None, usage=CHAT_USAGE),
        CHAT_DONE,
    ]


def tool_call_delta(index: int, arguments: str, *, call_id: str | None = None, name: str | None = None) -> bytes:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return chat({"tool_calls": [call]})


RESPONSES_PATH = "/v1/responses"
RESP_ID = "resp_68108f1a8f348191a2c6d9bb4e06b4d90b3c9f3ee1d7c4a5"
MSG_ID = "msg_68108f1b2c4c8191b5f0e1b4f6a3d7c20b3c9f3ee1d7c4a5"


def response_object(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": RESP_ID, "object": "response", "created_at": 1745915674, "status": status, "error": None,
            "incomplete_details": None, "model": "gpt-4.1-2025-04-14", "output": [], "usage": None, **fields}


def responses_events() -> list[bytes]:
    at = {"item_id": MSG_ID, "output_index": 0, "content_index": 0}
    item = {"id": MSG_ID, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": REPLY, "annotations": []}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": response_object("in_progress")}),
        ("response.in_progress", {"response": response_object("in_progress")}),
        ("response.output_item.added", {"output_index": 0, "item": item}),
        ("response.content_part.added", {**at, "part": {**part, "text": ""}}),
        *(("response.output_text.delta", {**at, "delta": d, "logprobs": []}) for d in REPLY_DELTAS),
        ("response.output_text.done", {**at, "text": REPLY, "logprobs": []}),
        ("response.content_part.done", {**at, "part": part}),
        ("response.output_item.done", {"output_index": 0, "item": {**item, "status": "completed", "content": [part]}}),
        ("response.completed", {"response": response_object("completed", usage={
            "input_tokens": 14, "output_tokens": 11, "total_tokens": 25})}),
    ]
    return [sse_event({"type": kind, "sequence_number": n, **fields}, kind) for n, (kind, fields) in enumerate(events)]


ANTHROPIC_PATH = "/v1/messages"


def anthropic(payload: dict[str, Any]) -> bytes:
    """One event as Anthropic sends it: ``event:`` repeats the data's type."""
    return sse_event(payload, payload["type"])


def anthropic_start() -> list[bytes]:
    message: dict[str, Any] = {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "content": [],
               "model": "claude-sonnet-4-5-20250929", "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 25, "output_tokens": 1}}
    return [
        anthropic({"type": "message_start", "message": message}),
        anthropic({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        anthropic({"type": "ping"}),
    ]


def anthropic_text(text: str) -> bytes:
    return anthropic({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})


def anthropic_end() -> list[bytes]:
    return [
        anthropic({"type": "content_block_stop", "index": 0}),
        anthropic({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": {"output_tokens": 15}}),
        anthropic({"type": "message_stop"}),
    ]


def anthropic_events() -> list[bytes]:
    return [*anthropic_start(), *(anthropic_text(d) for d in REPLY_DELTAS), *anthropic_end()]


LETTA_PATH = "/v1/agents/agent-7f3c2a1e-9b4d-4c6e-8a2f-1d5e6b7c8d9e/messages/stream"
LETTA_DONE = b"data: [DONE]\n\n"


def letta(message_type: str, message_id: str, **fields: Any) -> bytes:
    return sse_event({"id": message_id, "date": "2025-06-01T10:00:00+00:00", "name": None,
                      "message_type": message_type, "otid": f"{message_id}-otid", "sender_id": None,
                      "step_id": "step-1b2c3d", "run_id": "run-9f8e7d", **fields})


def letta_usage(steps_messages: list[Any] | None = None) -> bytes:
    return sse_event({"message_type": "usage_statistics", "completion_tokens": 48, "prompt_tokens": 2345,
                      "total_tokens": 2393, "step_count": 1, "steps_messages": steps_messages,
                      "run_ids": ["run-9f8e7d"]})


def letta_end(steps_messages: list[Any] | None = None) -> list[bytes]:
    return [sse_event({"message_type": "stop_reason", "stop_reason": "end_turn"}), letta_usage(steps_messages),
            LETTA_DONE]


def letta_events() -> list[bytes]:
    """The modern assistant_message form."""
    return [
        letta("reasoning_message", "message-r1", source="reasoner_model", reasoning=REASONING, signature=None),
        *(letta("assistant_message", "message-a1", content=d) for d in REPLY_DELTAS),
        *letta_end(),
    ]


def letta_send_message_events() -> list[bytes]:
    """The legacy form: the reply is the ``message`` argument of a send_message tool call."""
    arguments = json.dumps({"message": REPLY}, ensure_ascii=False)
    call = {"name": "send_message", "arguments": "", "tool_call_id": "call_s1"}
    return [
        letta("reasoning_message", "message-r1", reasoning=REASONING),
        letta("tool_call_message", "message-t1", tool_call=call),
        *(letta("tool_call_message", "message-t1", tool_call={"arguments": arguments[i : i + 9]})
          for i in range(0, len(arguments), 9)),
        letta("tool_return_message", "message-t2", tool_return="None", status="success", tool_call_id="call_s1"),
        *letta_end(),
    ]


OLLAMA_PATH = "/api/chat"
OLLAMA_STAMP = "2025-06-01T10:00:00.123456Z"


def ollama(done: bool = False, **message: Any) -> bytes:
    return ndjson_line({"model": "qwen3:8b", "created_at": OLLAMA_STAMP,
                        "message": {"role": "assistant", **message}, "done": done})


def ollama_done() -> bytes:
    return ndjson_line({"model": "qwen3:8b", "created_at": OLLAMA_STAMP,
                        "message": {"role": "assistant", "content": ""}, "done_reason": "stop", "done": True,
                        "total_duration": 4883583458, "load_duration": 1334875, "prompt_eval_count": 26,
                        "prompt_eval_duration": 342546000, "eval_count": 282, "eval_duration": 4535599000})


def ollama_events() -> list[bytes]:
    return [ollama(content="", thinking=REASONING), *(ollama(content=d) for d in REPLY_DELTAS), ollama_done()]


GEMINI_PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


def gemini(text: str, finish: str | None = None) -> bytes:
    """One GenerateContentResponse as Gemini frames it: lines ended by CRLF."""
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": 9, "candidatesTokenCount": 11, "totalTokenCount": 20}
    return sse_event({"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash",
                      "responseId": "mKdzaPKiI5CmnvgPmeCf-Ak"}, eol="\r\n")


def gemini_events() -> list[bytes]:
    return [*(gemini(d) for d in REPLY_DELTAS[:-1]), gemini(REPLY_DELTAS[-1], "STOP")]


class Provider(NamedTuple):
    path: str
    content_type: str
    events: Callable[[], list[bytes]]
    #: How many trailing events carry the terminal signal (cut them: no end).
    terminal: int


PROVIDERS: dict[str, Provider] = {
    "openai-chat": Provider(CHAT_PATH, SSE_TYPE, chat_events, 3),
    "openai-responses": Provider(RESPONSES_PATH, SSE_TYPE, responses_events, 1),
    "anthropic": Provider(ANTHROPIC_PATH, SSE_TYPE, anthropic_events, 2),
    "letta": Provider(LETTA_PATH, SSE_TYPE, letta_events, 3),
    "ollama": Provider(OLLAMA_PATH, NDJSON_TYPE, ollama_events, 1),
    "gemini": Provider(GEMINI_PATH, SSE_TYPE, gemini_events, 1),
}


# -- running sessions ------------------------------------------------------------


def session_for(
    path: str,
    *,
    content_type: str | None = SSE_TYPE,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> StreamSession:
    """A session for a POST to ``path``; ``headers`` default to good ones for ``content_type``."""
    if headers is None and content_type is not None:
        headers = good_headers(content_type)
    return StreamSession(method="POST", path=path, content_type=content_type, response_headers=headers,
                         started_at=0.0, **kwargs)


def live(
    path: str,
    chunks: Sequence[bytes],
    *,
    times: Sequence[float] | None = None,
    clean: bool = True,
    client_gone: bool = False,
    **kwargs: Any,
) -> StreamSession:
    """Feed ``chunks`` as separate arrivals (50 ms apart unless ``times``) and close."""
    session = session_for(path, **kwargs)
    times = times if times is not None else [0.25 + 0.05 * i for i in range(len(chunks))]
    for chunk, at in zip(chunks, times, strict=True):
        session.feed(chunk, at)
    session.close(times[-1] + 0.01 if times else 0.3, clean=clean, client_gone=client_gone)
    return session


def bedrock_frame_altered_as_text() -> bytes:
    """A Converse stream through a hop that treats the body as text and turns
    CR bytes into LF: one frame's bytes change, lengths stay, its CRC fails."""
    from aws_frames import event_frame

    texts = ("ok" + " " * n for n in range(500))
    delta = next(f for t in texts if b"\r" in (f := event_frame("contentBlockDelta", {"delta": {"text": t}}))[12:]
                 and b"\r" not in f[:12])
    return (event_frame("messageStart", {"role": "assistant"}) + delta.replace(b"\r", b"\n")
            + event_frame("contentBlockDelta", {"delta": {"text": "fine"}})
            + event_frame("messageStop", {"stopReason": "end_turn"}))


def hung_up(chunks: Sequence[bytes], times: Sequence[float], *, at: float, **kwargs: Any) -> StreamSession:
    """A chat stream whose client hung up at ``at``, after ``chunks`` arrived at ``times``."""
    session = session_for(CHAT_PATH, **kwargs)
    for chunk, time in zip(chunks, times, strict=True):
        session.feed(chunk, time)
    session.close(at, clean=False, client_gone=True)
    return session


def untimed(path: str, data: bytes, **kwargs: Any) -> StreamSession:
    """Feed ``data`` whole with no arrival time (like a raw capture) and close."""
    session = session_for(path, **kwargs)
    session.feed(data)
    session.close()
    return session


def cut_at(events: Sequence[bytes], cut: int) -> list[bytes]:
    """One chunk per event, except that the event holding stream offset ``cut`` is cut there."""
    chunks: list[bytes] = []
    start = 0
    for event in events:
        if start < cut < start + len(event):
            chunks += [event[: cut - start], event[cut - start :]]
        else:
            chunks.append(event)
        start += len(event)
    return chunks


def kinds(session: StreamSession) -> list[str]:
    return [str(f.kind) for f in session.faults]


def the(session: StreamSession, kind: FaultKind) -> Fault:
    found = [f for f in session.faults if f.kind == kind]
    assert len(found) == 1, kinds(session)
    return found[0]


# -- streams that show one fault each ----------------------------------------------


def latin1_reencoded_chat() -> tuple[bytes, int]:
    """A router re-encoded one delta as Latin-1: the é is a lone 0xE9 byte."""
    data = b"".join(chat_events(["Привет! ", "Café ☕"]))
    bad = data.replace("é".encode(), b"\xe9")
    return bad, bad.index(b"\xe9")


def chat_with_cut_payload() -> bytes:
    """A router cut one event's JSON short, then the stream went on."""
    events = chat_events()
    payload = events[2].decode().removeprefix("data: ").rstrip("\n")
    events[2] = f"data: {payload[: len(payload) // 2]}\n\n".encode()
    return b"".join(events)


def chat_without_done() -> bytes:
    return b"".join(chat_events()[:-2])  # finish_reason came; usage and [DONE] did not


UPSTREAM_ERROR = {"message": "upstream connection reset by peer", "type": "server_error", "code": "upstream_error"}


def chat_error_then_done() -> list[bytes]:
    return [*chat_events()[:3], sse_event({"error": UPSTREAM_ERROR}), CHAT_DONE]


def anthropic_overloaded() -> list[bytes]:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    return [*anthropic_start(), anthropic_text("Привет"), anthropic(error)]


def chat_cut_mid_event() -> bytes:
    data = b"".join(chat_events())
    return data[: data.index("дела".encode()) + 1]  # just after the lead byte of "д"


def chat_tool_call_lost_fragment() -> bytes:
    arguments = json.dumps({"city": "Москва", "units": "celsius"}, ensure_ascii=False)
    fragments = [arguments[i : i + 8] for i in range(0, len(arguments), 8)]
    del fragments[2]  # a dropped event
    return b"".join([
        chat({"role": "assistant", "content": None, "refusal": None}),
        tool_call_delta(0, "", call_id="call_Vf3kQ8mZ2pLx9sT1", name="get_weather"),
        *(tool_call_delta(0, f) for f in fragments),
        chat({}, "tool_calls"),
        chat(None, usage=CHAT_USAGE),
        CHAT_DONE,
    ])


def chat_empty() -> bytes:
    return b"".join([chat({"role": "assistant", "content": ""}), chat({"content": ""}), chat({}, "stop"),
                     chat(None, usage=CHAT_USAGE), CHAT_DONE])


def steps_messages_only() -> bytes:
    """A legacy agent whose reply was not streamed at all: only usage_statistics has it."""
    arguments = json.dumps({"message": REPLY}, ensure_ascii=False)
    steps = [[
        {"id": "message-t1", "role": "assistant", "content": [{"type": "text", "text": "Внутренний монолог."}],
         "tool_calls": [{"id": "call_s1", "type": "function",
                         "function": {"name": "send_message", "arguments": arguments}}]},
        {"id": "message-t2", "role": "tool", "content": [{"type": "text", "text": "None"}], "tool_call_id": "call_s1"},
    ]]
    return b"".join([letta("reasoning_message", "message-r1", reasoning="Внутренний монолог."), *letta_end(steps)])


def gemini_rewritten_to_lf() -> bytes:
    """A hop rewrote the second half of a CRLF stream to LF."""
    events = gemini_events()
    return b"".join([*events[:2], *(e.replace(b"\r\n", b"\n") for e in events[2:])])


def whole_answer_in_one_event() -> tuple[bytes, int]:
    events = chat_events()
    events[2] = chat({"content": "Очень длинный ответ. " * 40})
    return b"".join(events), len(b"".join(events[:2]))


def same_index_tool_calls() -> bytes:
    """Two whole calls under index 0 with their own ids, as Ollama's /v1 and some gateways send them."""
    return b"".join([
        chat({"role": "assistant", "content": ""}),
        tool_call_delta(0, '{"city": "Paris"}', call_id="call_wteop8bt", name="get_weather"),
        tool_call_delta(0, '{"city": "Рим"}', call_id="call_rk2xye1l", name="get_weather"),
        chat({}, "tool_calls"),
        CHAT_DONE,
    ])


def content_filtered_chat() -> bytes:
    """An answer Azure's filter cut: its last chunk's filter results and finish_reason."""
    verdict = {"content_filter_results": {"violence": {"filtered": True, "severity": "medium"}}}
    return b"".join([
        chat({"role": "assistant", "content": "Первая часть"}),
        sse_event({"id": "", "object": "", "created": 0, "model": "",
                   "choices": [{"index": 0, "finish_reason": "content_filter", **verdict}]}),
        CHAT_DONE,
    ])


#: For every kind, a stream that shows it; the tests below check the details.
PRODUCERS: dict[FaultKind, Callable[[], StreamSession]] = {
    FaultKind.BUFFERED_BURST: lambda: live(CHAT_PATH, [b"".join(chat_events(LONG_DELTAS))], times=[2.1]),
    FaultKind.UTF8_SPLIT: lambda: live(CHAT_PATH, cut_at(chat_events(), b"".join(chat_events()).index("П".encode()) + 1)),
    FaultKind.EVENT_SPLIT: lambda: live(CHAT_PATH, cut_at(chat_events(), 60)),
    FaultKind.INVALID_UTF8: lambda: untimed(CHAT_PATH, latin1_reencoded_chat()[0]),
    FaultKind.INVALID_JSON: lambda: untimed(CHAT_PATH, chat_with_cut_payload()),
    FaultKind.MISSING_DONE: lambda: untimed(CHAT_PATH, chat_without_done()),
    FaultKind.DONE_AFTER_ERROR: lambda: untimed(CHAT_PATH, b"".join(chat_error_then_done())),
    FaultKind.ERROR_IN_STREAM: lambda: untimed(ANTHROPIC_PATH, b"".join(anthropic_overloaded())),
    FaultKind.TRUNCATED: lambda: untimed(CHAT_PATH, chat_cut_mid_event()),
    FaultKind.STALL: lambda: live(CHAT_PATH, chat_events(), times=[0.2, 0.3, 0.4, 12.9, 13.0, 13.1, 13.2, 13.3, 13.4]),
    FaultKind.COMPRESSED_STREAM: lambda: untimed(
        CHAT_PATH, b"".join(chat_events()), headers={**good_headers(SSE_TYPE), "Content-Encoding": "gzip"}),
    FaultKind.CONTENT_LENGTH_ON_STREAM: lambda: untimed(
        CHAT_PATH, b"".join(chat_events()), headers={"Content-Type": SSE_TYPE, "Content-Length": "1874",
                                                     "Cache-Control": "no-cache, no-transform",
                                                     "X-Accel-Buffering": "no"}),
    FaultKind.MISSING_NO_TRANSFORM: lambda: untimed(
        CHAT_PATH, b"".join(chat_events()), headers={**good_headers(SSE_TYPE), "Cache-Control": "no-cache"}),
    FaultKind.MISSING_ACCEL_BUFFERING: lambda: untimed(
        CHAT_PATH, b"".join(chat_events()),
        headers={"Content-Type": SSE_TYPE, "Cache-Control": "no-cache, no-transform"}),
    FaultKind.WRONG_CONTENT_TYPE: lambda: untimed(CHAT_PATH, b"".join(chat_events()), content_type="application/json"),
    FaultKind.TEXT_IN_TOOL_CALL: lambda: untimed(LETTA_PATH, b"".join(letta_send_message_events())),
    FaultKind.CR_LINE_ENDINGS: lambda: untimed(CHAT_PATH, b"".join(e.replace(b"\n", b"\r") for e in chat_events())),
    FaultKind.MIXED_LINE_ENDINGS: lambda: untimed(GEMINI_PATH, gemini_rewritten_to_lf()),
    FaultKind.BOM: lambda: untimed(CHAT_PATH, b"\xef\xbb\xbf" + b"".join(chat_events())),
    FaultKind.OVERSIZED_EVENT: lambda: untimed(CHAT_PATH, whole_answer_in_one_event()[0], max_event_size=512),
    FaultKind.INVALID_TOOL_ARGUMENTS: lambda: untimed(CHAT_PATH, chat_tool_call_lost_fragment()),
    FaultKind.EMPTY_RESPONSE: lambda: untimed(CHAT_PATH, chat_empty()),
    FaultKind.TOOL_CALL_INDEX_COLLISION: lambda: untimed(CHAT_PATH, same_index_tool_calls()),
    FaultKind.CONTENT_FILTERED: lambda: untimed(CHAT_PATH, content_filtered_chat()),
    FaultKind.CORRUPT_FRAME: lambda: untimed("/model/m/converse-stream", bedrock_frame_altered_as_text(),
                                             content_type="application/vnd.amazon.eventstream"),
    FaultKind.CLIENT_TIMEOUT: lambda: hung_up(chat_events()[:3], [0.2, 0.3, 0.4], at=2.5),
}

#: A concrete component or setting each kind's hint must name.
HINT_NAMES: dict[FaultKind, str] = {
    FaultKind.BUFFERED_BURST: "proxy_buffering off;",
    FaultKind.UTF8_SPLIT: "codecs.getincrementaldecoder",
    FaultKind.EVENT_SPLIT: "httpx-sse",
    FaultKind.INVALID_UTF8: "router",
    FaultKind.INVALID_JSON: "Open WebUI",
    FaultKind.MISSING_DONE: "data: [DONE]",
    FaultKind.DONE_AFTER_ERROR: "[DONE]",
    FaultKind.ERROR_IN_STREAM: "model server",
    FaultKind.TRUNCATED: "proxy_read_timeout",
    FaultKind.STALL: ": ping",
    FaultKind.COMPRESSED_STREAM: "GZipMiddleware",
    FaultKind.CONTENT_LENGTH_ON_STREAM: "Content-Length",
    FaultKind.MISSING_NO_TRANSFORM: "Cache-Control: no-cache, no-transform",
    FaultKind.MISSING_ACCEL_BUFFERING: "X-Accel-Buffering: no",
    FaultKind.WRONG_CONTENT_TYPE: "application/x-ndjson",
    FaultKind.TEXT_IN_TOOL_CALL: "use_assistant_message: true",
    FaultKind.CR_LINE_ENDINGS: "\\n",
    FaultKind.MIXED_LINE_ENDINGS: "\\n",
    FaultKind.BOM: "BOM",
    FaultKind.OVERSIZED_EVENT: "buffering",
    FaultKind.INVALID_TOOL_ARGUMENTS: "truncation",
    FaultKind.EMPTY_RESPONSE: "max tokens",
    FaultKind.TOOL_CALL_INDEX_COLLISION: "parallel_tool_calls: false",
    FaultKind.CONTENT_FILTERED: "content_filter",
    FaultKind.CORRUPT_FRAME: "application/vnd.amazon.eventstream",
    FaultKind.CLIENT_TIMEOUT: "AIOHTTP_CLIENT_TIMEOUT",
}


def test_every_kind_has_a_catalogue_entry_a_producing_stream_and_a_named_fix() -> None:
    assert set(CATALOGUE) == set(FaultKind) == set(PRODUCERS) == set(HINT_NAMES)


@pytest.mark.parametrize("kind", list(FaultKind), ids=str)
def test_each_kind_comes_from_a_real_stream_with_the_catalogue_hint(kind: FaultKind) -> None:
    session = PRODUCERS[kind]()
    fault = the(session, kind)
    entry = CATALOGUE[kind]
    assert (fault.message, fault.hint, fault.severity) == (entry.message, entry.hint, entry.severity)
    assert fault.hint.strip() and HINT_NAMES[kind] in fault.hint
    [reported] = [f for f in session.summary()["faults"] if f["kind"] == kind]
    assert reported["hint"] == entry.hint and reported["count"] >= 1


# -- framing and encoding ---------------------------------------------------------------


def test_invalid_utf8_located_at_the_bad_byte() -> None:
    data, at = latin1_reencoded_chat()
    session = untimed(CHAT_PATH, data)
    assert kinds(session) == ["invalid-utf8"]
    fault = the(session, FaultKind.INVALID_UTF8)
    assert fault.offset == at and fault.event_index is None
    assert "\\xe9" in fault.detail
    assert session.message.text == "Привет! Caf\ufffd ☕"


def test_invalid_json_located_at_its_event_and_stream_goes_on() -> None:
    session = untimed(CHAT_PATH, chat_with_cut_payload())
    assert kinds(session) == ["invalid-json"]
    fault = the(session, FaultKind.INVALID_JSON)
    assert fault.event_index == 2 and fault.offset is None and fault.detail
    assert session.message.text == REPLY.replace("! Как", "") and session.complete


def test_bom_located_at_offset_zero() -> None:
    session = untimed(CHAT_PATH, b"\xef\xbb\xbf" + b"".join(chat_events()))
    assert kinds(session) == ["bom"]
    assert the(session, FaultKind.BOM).offset == 0
    assert session.message.text == REPLY


def test_bare_cr_line_endings_reported_and_still_parsed() -> None:
    session = untimed(CHAT_PATH, b"".join(e.replace(b"\n", b"\r") for e in chat_events()))
    assert "cr-line-endings" in kinds(session)
    assert set(kinds(session)) - CHUNKING_FAULTS == {"cr-line-endings"}
    assert the(session, FaultKind.CR_LINE_ENDINGS).detail == "18 lines end with a bare CR"
    assert session.message.text == REPLY and session.complete


def test_bare_cr_stream_fed_whole_has_no_event_split() -> None:
    session = untimed(CHAT_PATH, b"".join(e.replace(b"\n", b"\r") for e in chat_events()))
    assert kinds(session) == ["cr-line-endings"]


def test_mixed_line_endings_counted_by_style() -> None:
    session = untimed(GEMINI_PATH, gemini_rewritten_to_lf())
    assert kinds(session) == ["mixed-line-endings"]
    assert the(session, FaultKind.MIXED_LINE_ENDINGS).detail == "6 LF, 4 CRLF"
    assert session.message.text == REPLY


def test_oversized_event_located_at_its_start_and_skipped() -> None:
    data, at = whole_answer_in_one_event()
    session = untimed(CHAT_PATH, data, max_event_size=512)
    assert kinds(session) == ["oversized-event"]
    fault = the(session, FaultKind.OVERSIZED_EVENT)
    assert fault.offset == at and "512" in fault.detail
    assert "Очень" not in session.message.text and session.complete


def test_oversized_ndjson_line_reported() -> None:
    lines = ollama_events()
    lines[2] = ollama(content="Очень длинный ответ. " * 40)
    session = untimed(OLLAMA_PATH, b"".join(lines), content_type=NDJSON_TYPE, max_event_size=512)
    assert kinds(session) == ["oversized-event"]
    assert the(session, FaultKind.OVERSIZED_EVENT).offset == len(b"".join(lines[:2]))


# -- chunking and timing ---------------------------------------------------------------


def test_chunk_cut_inside_a_character_is_utf8_split_at_the_cut() -> None:
    cut = b"".join(chat_events()).index("П".encode()) + 1
    session = live(CHAT_PATH, cut_at(chat_events(), cut))
    assert sorted(kinds(session)) == ["event-split", "utf8-split"]
    assert the(session, FaultKind.UTF8_SPLIT).offset == cut
    assert the(session, FaultKind.EVENT_SPLIT).offset == cut
    assert session.message.text == REPLY


def test_chunk_cut_inside_a_data_line_is_event_split_only() -> None:
    cut = len(chat_events()[0]) + len(b'data: {"id": "chatcm')
    session = live(CHAT_PATH, cut_at(chat_events(), cut))
    assert kinds(session) == ["event-split"]
    assert the(session, FaultKind.EVENT_SPLIT).offset == cut


def test_chunk_cut_inside_an_ndjson_line_is_event_split() -> None:
    cut = len(ollama_events()[0]) + 10
    session = live(OLLAMA_PATH, cut_at(ollama_events(), cut), content_type=NDJSON_TYPE)
    assert kinds(session) == ["event-split"]
    assert the(session, FaultKind.EVENT_SPLIT).offset == cut


@pytest.mark.parametrize("head", [b"", b"a", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80\x80\x80", b"\xff"])
def test_a_chunk_ending_in_ascii_never_splits_a_character(head: bytes) -> None:
    # splits_a_character answers an ASCII last byte without its loop.
    for last in range(0x80):
        assert not splits_a_character(head + bytes([last]))


def test_chunks_cut_between_events_are_no_split() -> None:
    session = live(CHAT_PATH, chat_events())
    assert kinds(session) == []


def test_many_events_in_one_timed_chunk_is_a_buffered_burst() -> None:
    session = live(CHAT_PATH, [b"".join(chat_events(LONG_DELTAS))], times=[2.1])
    assert kinds(session) == ["buffered-burst"]
    assert the(session, FaultKind.BUFFERED_BURST).detail.endswith("events with tokens arrived in 1 burst")


def test_many_events_in_two_timed_chunks_is_a_buffered_burst() -> None:
    events = chat_events(LONG_DELTAS)
    session = live(CHAT_PATH, [b"".join(events[:5]), b"".join(events[5:])], times=[1.0, 2.0])
    assert the(session, FaultKind.BUFFERED_BURST).detail.endswith("events with tokens arrived in 2 bursts")


def test_events_one_per_chunk_at_distinct_times_are_not_a_burst() -> None:
    session = live(CHAT_PATH, chat_events())
    assert session.event_count >= BURST_MIN_EVENTS
    assert "buffered-burst" not in kinds(session)


def test_few_events_in_one_chunk_are_not_a_burst() -> None:
    events = [chat({"role": "assistant", "content": "Да."}, "stop"), chat(None, usage=CHAT_USAGE), CHAT_DONE]
    assert kinds(live(CHAT_PATH, [b"".join(events)])) == []


def test_untimed_whole_stream_is_not_a_burst() -> None:
    assert kinds(untimed(CHAT_PATH, b"".join(chat_events()))) == []


def test_short_reply_in_its_usual_two_reads_is_not_a_buffered_burst() -> None:
    first = b"".join([*anthropic_start(), anthropic_text("Да.")])
    last = b"".join(anthropic_end())
    session = live(ANTHROPIC_PATH, [first, last], times=[0.35, 0.36])
    assert kinds(session) == []


def test_silence_longer_than_stall_after_is_a_stall_at_the_next_event() -> None:
    times = [0.2, 0.3, 0.4, 12.9, 13.0, 13.1, 13.2, 13.3, 13.4]
    session = live(CHAT_PATH, chat_events(), times=times)
    assert kinds(session) == ["stall"]
    fault = the(session, FaultKind.STALL)
    assert fault.event_index == 3
    assert fault.detail == f"12.5 s without events before event #3 (threshold {DEFAULT_STALL_SECONDS:g} s)"


def test_stall_after_sets_the_threshold() -> None:
    times = [0.2, 0.3, 0.4, 2.9, 3.0, 3.1, 3.2, 3.3, 3.4]
    assert kinds(live(CHAT_PATH, chat_events(), times=times)) == []
    session = live(CHAT_PATH, chat_events(), times=times, stall_after=2.0)
    assert kinds(session) == ["stall"] and the(session, FaultKind.STALL).event_index == 3


# -- response headers ------------------------------------------------------------------


def test_content_encoding_is_a_compressed_stream() -> None:
    headers = {**good_headers(SSE_TYPE), "Content-Encoding": "gzip"}
    session = untimed(CHAT_PATH, b"".join(chat_events()), headers=headers)
    assert kinds(session) == ["compressed-stream"]
    assert the(session, FaultKind.COMPRESSED_STREAM).detail == "Content-Encoding: gzip"


def test_identity_content_encoding_is_not_compressed() -> None:
    headers = {**good_headers(SSE_TYPE), "Content-Encoding": "identity"}
    assert kinds(untimed(CHAT_PATH, b"".join(chat_events()), headers=headers)) == []


def test_content_length_on_a_stream_reported_with_its_value() -> None:
    data = b"".join(chat_events())
    headers = {"Content-Type": SSE_TYPE, "Content-Length": str(len(data)),
               "Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
    session = untimed(CHAT_PATH, data, headers=headers)
    assert kinds(session) == ["content-length-on-stream"]
    assert the(session, FaultKind.CONTENT_LENGTH_ON_STREAM).detail == f"Content-Length: {len(data)}"


def test_cache_control_without_no_transform() -> None:
    headers = {**good_headers(SSE_TYPE), "Cache-Control": "no-cache"}
    session = untimed(CHAT_PATH, b"".join(chat_events()), headers=headers)
    assert kinds(session) == ["missing-no-transform"]
    assert the(session, FaultKind.MISSING_NO_TRANSFORM).detail == "Cache-Control: no-cache"


@pytest.mark.parametrize("value", [None, "yes"])
def test_x_accel_buffering_absent_or_not_no(value: str | None) -> None:
    headers = {"Content-Type": SSE_TYPE, "Cache-Control": "no-cache, no-transform"}
    if value is not None:
        headers["X-Accel-Buffering"] = value
    session = untimed(CHAT_PATH, b"".join(chat_events()), headers=headers)
    assert kinds(session) == ["missing-accel-buffering"]
    assert the(session, FaultKind.MISSING_ACCEL_BUFFERING).detail == f"X-Accel-Buffering: {value or '(none)'}"


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in good_headers(SSE_TYPE).items()}
    assert kinds(untimed(CHAT_PATH, b"".join(chat_events()), headers=headers)) == []


def test_sse_served_as_application_json_is_wrong_content_type() -> None:
    headers = {**good_headers("application/json")}
    session = untimed(CHAT_PATH, b"".join(chat_events()), content_type="application/json", headers=headers)
    assert kinds(session) == ["wrong-content-type"]
    detail = the(session, FaultKind.WRONG_CONTENT_TYPE).detail
    assert "application/json" in detail and "expected text/event-stream" in detail
    assert session.message.text == REPLY


def test_ndjson_served_as_text_plain_is_wrong_content_type() -> None:
    headers = {**good_headers("text/plain; charset=utf-8")}
    session = untimed(OLLAMA_PATH, b"".join(ollama_events()), content_type="text/plain; charset=utf-8",
                      headers=headers)
    assert session.framing == "ndjson"
    assert kinds(session) == ["wrong-content-type"]
    detail = the(session, FaultKind.WRONG_CONTENT_TYPE).detail
    assert "text/plain" in detail and "expected application/x-ndjson" in detail


def test_content_type_given_only_in_response_headers_is_not_wrong() -> None:
    session = StreamSession(method="POST", path=CHAT_PATH, response_headers=good_headers(SSE_TYPE))
    session.feed(b"".join(chat_events()))
    session.close()
    assert kinds(session) == []


# -- provider meaning ----------------------------------------------------------------


def test_missing_done_after_finish_reason_is_not_truncation() -> None:
    data = chat_without_done()
    session = untimed(CHAT_PATH, data)
    assert kinds(session) == ["missing-done"]
    assert the(session, FaultKind.MISSING_DONE).offset == len(data)


def test_error_then_done_is_error_in_stream_and_done_after_error_at_their_events() -> None:
    session = untimed(CHAT_PATH, b"".join(chat_error_then_done()))
    assert kinds(session) == ["error-in-stream", "done-after-error"]
    error = the(session, FaultKind.ERROR_IN_STREAM)
    assert error.event_index == 3 and error.detail == UPSTREAM_ERROR["message"]
    assert the(session, FaultKind.DONE_AFTER_ERROR).event_index == 4


def test_anthropic_error_event_is_error_in_stream_not_truncation() -> None:
    session = untimed(ANTHROPIC_PATH, b"".join(anthropic_overloaded()))
    assert kinds(session) == ["error-in-stream"]
    fault = the(session, FaultKind.ERROR_IN_STREAM)
    assert fault.event_index == 4 and fault.detail == "Overloaded"


def test_letta_error_then_done_is_done_after_error() -> None:
    error = letta("error_message", "message-e1", error_type="llm_error", message="Rate limited by the LLM provider")
    session = untimed(LETTA_PATH, b"".join([letta_events()[0], error, LETTA_DONE]))
    assert kinds(session) == ["error-in-stream", "done-after-error"]
    assert the(session, FaultKind.DONE_AFTER_ERROR).event_index == 2


def test_letta_send_message_reply_is_text_in_tool_call() -> None:
    session = untimed(LETTA_PATH, b"".join(letta_send_message_events()))
    assert kinds(session) == ["text-in-tool-call"]
    assert the(session, FaultKind.TEXT_IN_TOOL_CALL).detail == "reply text arrived via send_message"
    assert session.message.text == REPLY


def test_letta_reply_only_in_steps_messages_is_text_in_tool_call() -> None:
    session = untimed(LETTA_PATH, steps_messages_only())
    assert kinds(session) == ["text-in-tool-call"]
    assert the(session, FaultKind.TEXT_IN_TOOL_CALL).detail == "reply text arrived via steps_messages"
    assert session.message.text == REPLY


def test_letta_assistant_message_is_not_text_in_tool_call() -> None:
    assert kinds(untimed(LETTA_PATH, b"".join(letta_events()))) == []


def test_tool_call_arguments_with_a_lost_fragment_are_invalid() -> None:
    session = untimed(CHAT_PATH, chat_tool_call_lost_fragment())
    assert kinds(session) == ["invalid-tool-arguments"]
    assert the(session, FaultKind.INVALID_TOOL_ARGUMENTS).detail.startswith("get_weather: ")


def test_whole_tool_call_arguments_are_valid() -> None:
    arguments = json.dumps({"city": "Москва", "units": "celsius"}, ensure_ascii=False)
    data = b"".join([
        chat({"role": "assistant", "content": None}),
        tool_call_delta(0, "", call_id="call_Vf3kQ8mZ2pLx9sT1", name="get_weather"),
        *(tool_call_delta(0, arguments[i : i + 8]) for i in range(0, len(arguments), 8)),
        chat({}, "tool_calls"),
        CHAT_DONE,
    ])
    assert kinds(untimed(CHAT_PATH, data)) == []


def test_finish_without_any_content_is_an_empty_response() -> None:
    session = untimed(CHAT_PATH, chat_empty())
    assert kinds(session) == ["empty-response"]


def test_ollama_done_without_any_content_is_an_empty_response() -> None:
    session = untimed(OLLAMA_PATH, ollama(content="") + ollama_done(), content_type=NDJSON_TYPE)
    assert kinds(session) == ["empty-response"]


def test_refusal_is_not_an_empty_response() -> None:
    data = b"".join([chat({"role": "assistant", "content": None, "refusal": ""}),
                     chat({"refusal": "I can't help with that."}), chat({}, "stop"), CHAT_DONE])
    assert kinds(untimed(CHAT_PATH, data)) == []


# -- truncation -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_clean_end_before_the_terminal_signal_is_truncated(name: str) -> None:
    provider = PROVIDERS[name]
    data = b"".join(provider.events()[: -provider.terminal])
    session = untimed(provider.path, data, content_type=provider.content_type)
    fault = the(session, FaultKind.TRUNCATED)
    assert fault.detail == f"the {name} stream ended without its terminal signal"
    assert fault.offset == len(data)
    assert kinds(session) == ["truncated"]  # missing-done would only repeat it


def test_clean_end_in_the_middle_of_an_event_is_truncated() -> None:
    data = chat_cut_mid_event()
    session = untimed(CHAT_PATH, data)
    fault = the(session, FaultKind.TRUNCATED)
    assert fault.detail == "the stream ended in the middle of an event" and fault.offset == len(data)


def test_ndjson_cut_inside_a_line_is_truncated() -> None:
    data = b"".join(ollama_events())
    data = data[: data.index("дела".encode()) + 2]
    session = untimed(OLLAMA_PATH, data, content_type=NDJSON_TYPE)
    assert the(session, FaultKind.TRUNCATED).offset == len(data)


def test_broken_connection_is_truncated() -> None:
    data = b"".join(chat_events()[:4])
    session = live(CHAT_PATH, [data], times=[0.3], clean=False)
    fault = the(session, FaultKind.TRUNCATED)
    assert fault.detail == "the connection broke before the stream ended" and fault.offset == len(data)
    assert "missing-done" not in kinds(session)


def test_broken_connection_after_the_terminal_signal_is_not_truncated() -> None:
    session = live(CHAT_PATH, chat_events(), clean=False)
    assert session.complete and session.message.markers == ["[DONE]"]
    assert kinds(session) == []


@pytest.mark.parametrize("clean", [True, False])
def test_client_hanging_up_is_not_truncation(clean: bool) -> None:
    session = live(CHAT_PATH, [chat_cut_mid_event()], times=[0.3], clean=clean, client_gone=True)
    assert not session.complete
    assert "truncated" not in kinds(session) and "missing-done" not in kinds(session)


def test_client_hanging_up_mid_tool_call_is_not_invalid_tool_arguments() -> None:
    arguments = json.dumps({"city": "Москва", "units": "celsius"}, ensure_ascii=False)
    events = [
        chat({"role": "assistant", "content": None}),
        tool_call_delta(0, "", call_id="call_Vf3kQ8mZ2pLx9sT1", name="get_weather"),
        tool_call_delta(0, arguments[:8]),
        tool_call_delta(0, arguments[8:16]),
    ]  # the client hung up here, between two whole events
    session = live(CHAT_PATH, events, clean=False, client_gone=True)
    assert kinds(session) == []



# -- empty streams and end markers without the answer's end ---------------------------------


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_empty_200_stream_is_an_empty_response_not_truncated(name: str) -> None:
    provider = PROVIDERS[name]
    session = untimed(provider.path, b"", content_type=provider.content_type)
    fault = the(session, FaultKind.EMPTY_RESPONSE)
    assert fault.detail == "the body was empty: not one event"
    assert kinds(session) == ["empty-response"]


def test_stream_of_only_comments_is_an_empty_response() -> None:
    data = b": ping\n\n" * 3
    session = live(CHAT_PATH, [data[:8], data[8:]])
    assert kinds(session) == ["empty-response"]
    assert the(session, FaultKind.EMPTY_RESPONSE).detail == f"{len(data)} bytes of comments or blank lines (keep-alives), not one event"


def test_anthropic_stream_of_only_pings_is_an_empty_response() -> None:
    ping = anthropic({"type": "ping"})
    session = untimed(ANTHROPIC_PATH, ping * 2)
    assert kinds(session) == ["empty-response"]
    assert the(session, FaultKind.EMPTY_RESPONSE).detail == "2 events, none with a payload (keep-alive pings)"


def test_empty_body_on_a_broken_connection_is_still_truncated() -> None:
    session = session_for(CHAT_PATH)
    session.close(0.5, clean=False)
    assert kinds(session) == ["truncated"]


def test_done_without_any_finish_reason_says_what_came_and_what_did_not() -> None:
    events = chat_events()
    del events[-3]  # the chunk with finish_reason: a router dropped it, then wrote [DONE]
    session = untimed(CHAT_PATH, b"".join(events))
    fault = the(session, FaultKind.TRUNCATED)
    assert fault.detail == "data: [DONE] arrived, but no chunk carried a finish_reason"
    assert session.message.text == REPLY and kinds(session) == ["truncated"]


# -- no false positives --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_healthy_stream_fed_whole_has_no_faults(name: str) -> None:
    provider = PROVIDERS[name]
    session = untimed(provider.path, b"".join(provider.events()), content_type=provider.content_type)
    assert session.provider == name and session.complete
    assert session.message.text == REPLY
    assert session.faults == []


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_healthy_stream_fed_event_by_event_has_no_faults(name: str) -> None:
    provider = PROVIDERS[name]
    session = live(provider.path, provider.events(), content_type=provider.content_type)
    assert session.complete and session.message.text == REPLY
    assert session.faults == []


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_healthy_stream_in_every_chunking_has_only_chunking_faults(name: str) -> None:
    provider = PROVIDERS[name]
    data = b"".join(provider.events())
    for how, chunks in chunkings(data):
        session = run_session(chunks, method="POST", path=provider.path, content_type=provider.content_type,
                              response_headers=good_headers(provider.content_type))
        assert set(kinds(session)) <= CHUNKING_FAULTS, how
        assert session.message.text == REPLY, how


# -- report --json ---------------------------------------------------------------------------


def report_json(capsys: pytest.CaptureFixture[str], path: Path) -> list[dict[str, Any]]:
    assert cli.main(["report", "--json", str(path)]) == 0
    reports: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return reports


def test_report_json_faults_carry_kind_message_hint_and_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = chat_with_cut_payload().removesuffix(chat(None, usage=CHAT_USAGE) + CHAT_DONE)
    capture = tmp_path / "cut.sse"
    capture.write_bytes(data)
    [report] = report_json(capsys, capture)
    faults = {f["kind"]: f for f in report["faults"]}
    assert list(faults) == ["invalid-json", "missing-done"]
    for kind, fault in faults.items():
        entry = CATALOGUE[FaultKind(kind)]
        assert (fault["message"], fault["hint"], fault["severity"]) == (entry.message, entry.hint, entry.severity)
        assert fault["count"] == 1
    assert faults["invalid-json"]["event_index"] == 2 and "offset" not in faults["invalid-json"]
    assert faults["missing-done"]["offset"] == len(data) and "event_index" not in faults["missing-done"]


def saved_flow(tmp_path: Path, body: bytes, headers: dict[str, str], error: str | None = None) -> Path:
    from mitmproxy import flow, http
    from mitmproxy.io import FlowWriter
    from mitmproxy.test import tflow, tutils

    f = tflow.tflow(req=tutils.treq(method=b"POST", path=CHAT_PATH.encode()))
    f.response = http.Response.make(200, body, headers)
    f.response.headers.pop("content-length", None)  # as streamed: chunked
    if error is not None:
        f.error = flow.Error(error)
    path = tmp_path / "saved.flows"
    with path.open("wb") as out:
        FlowWriter(out).add(f)  # type: ignore[no-untyped-call]
    return path


def test_report_json_on_a_saved_flow_diagnoses_its_headers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {"Content-Type": SSE_TYPE, "Cache-Control": "no-cache"}
    [report] = report_json(capsys, saved_flow(tmp_path, b"".join(chat_events()), headers))
    faults = report["faults"]
    assert [f["kind"] for f in faults] == ["missing-no-transform", "missing-accel-buffering"]
    for fault in faults:
        assert fault["hint"] == CATALOGUE[FaultKind(fault["kind"])].hint and fault["message"]
        assert "event_index" not in fault and "offset" not in fault


def test_report_on_a_flow_whose_client_hung_up_is_not_truncated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = saved_flow(tmp_path, chat_cut_mid_event(), good_headers(SSE_TYPE), error="Client disconnected.")
    [report] = report_json(capsys, path)
    assert report["complete"] is False
    assert "truncated" not in [f["kind"] for f in report["faults"]]


# -- the diagnoser takes values, not a session ------------------------------------------


def _outcome(provider: str, *, complete: bool, size: int = 100, events: int = 3, **rules: Any) -> Any:
    from dataclasses import replace

    from ssemedic.core import providers
    from ssemedic.core.handoff import Outcome
    from ssemedic.core.message import Message
    from ssemedic.core.parts import Text

    message = Message()
    message.add(Text("hi"))
    return Outcome(replace(providers.get(provider), **rules), "sse", complete, message, size, events, size, None)


def test_the_diagnoser_works_from_values_alone() -> None:
    from ssemedic.core.diagnose import Diagnoser
    from ssemedic.core.events import IssueKind, ParseIssue

    diagnoser = Diagnoser()
    diagnoser.chunk('data: {"x": "П'.encode()[:-1], 14, True)
    diagnoser.issues([ParseIssue(IssueKind.INCOMPLETE_EVENT, 14, "cut"), ParseIssue(IssueKind.BOM, 0, "bom")])
    diagnoser.end(_outcome("openai-chat", complete=False), clean=True)
    assert [(f.kind, f.offset) for f in diagnoser.faults] == [
        (FaultKind.UTF8_SPLIT, 14), (FaultKind.EVENT_SPLIT, 14), (FaultKind.BOM, 0), (FaultKind.TRUNCATED, 100)]


def _diagnose_end(provider: str, *, complete: bool, **rules: Any) -> list[FaultKind]:
    """The faults of a stream of one event with text that ended cleanly."""
    from ssemedic.core.diagnose import Diagnoser
    from ssemedic.core.events import ServerSentEvent
    from ssemedic.core.handoff import EventRecord
    from ssemedic.core.parts import Text

    diagnoser = Diagnoser()
    diagnoser.event(EventRecord(0, None, ServerSentEvent(), (Text("hi"),)))
    diagnoser.end(_outcome(provider, complete=complete, **rules), clean=True)
    return [f.kind for f in diagnoser.faults]


def test_missing_done_follows_the_providers_end_marker_not_its_name() -> None:
    assert _diagnose_end("openai-chat", complete=True) == [FaultKind.MISSING_DONE]
    assert _diagnose_end("anthropic", complete=True) == []
    assert _diagnose_end("anthropic", complete=True, end_marker="[DONE]") == [FaultKind.MISSING_DONE]
    assert _diagnose_end("openai-chat", complete=True, end_marker=None) == []


def test_a_provider_without_a_terminal_signal_is_never_called_cut() -> None:
    assert _diagnose_end("openai-chat", complete=False) == [FaultKind.TRUNCATED]
    assert _diagnose_end("generic", complete=False) == []
    assert _diagnose_end("openai-chat", complete=False, terminal=None) == []
