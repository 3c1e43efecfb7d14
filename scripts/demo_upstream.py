#!/usr/bin/env python3
"""A small, deliberately misbehaving LLM upstream for the demo and the tests.

It speaks OpenAI-compatible ``POST /v1/chat/completions`` (plus ``GET
/v1/models``, both also under a router's Letta base ``/api/v1/agents/<id>/proxy``),
Letta's ``POST /v1/agents/<id>/messages/stream``, Ollama's ``POST /api/chat``, the OpenAI Responses API's ``POST /v1/responses``,
Anthropic's ``POST /v1/messages``, Gemini's ``POST
/v1beta/models/<model>:streamGenerateContent?alt=sse`` (and without ``alt=sse``,
one streamed JSON array), Amazon Bedrock's
``POST /model/<model>/converse-stream`` and ``/invoke-with-response-stream``
(AWS event-stream frames), Cohere's ``POST /v2/chat``, Azure OpenAI's ``POST
/openai/deployments/<name>/chat/completions``, OpenRouter's ``POST
/api/v1/chat/completions`` and MCP Streamable HTTP's ``POST /mcp``, and answers each
request with a *scenario*: a healthy stream, or one of the faults ssemedic
exists to find. Every payload is built
with ``json.dumps`` following the provider's documented format (as in
scripts/make_samples.py), never written as JSON by hand.

The body goes out as explicit writes with a pause before each, flushed one by
one, so a client sees the chunking: by default as HTTP/1.1 chunked frames,
per scenario (or ``?framing=close``) as a close-delimited HTTP/1.0 body.
Only the stdlib is used, and the stdlib parses every request; this module
only *writes* chunk frames. It binds loopback addresses only.

Choosing a scenario: a path prefix ``/s/<scenario>/...`` wins, then a request
``model`` (for Gemini, the model in the path) that names a scenario, then the
endpoint's default (``healthy``, ``letta-send-message``, ``ollama``,
``openai-responses``, ``anthropic``, ``gemini`` (``gemini-array`` without ``alt=sse``), ``bedrock``,
``bedrock-invoke``, ``cohere``, ``azure``, ``openrouter`` or ``mcp``). ``?delay=SECONDS`` sets the pause
between writes (default 0.03 s, which makes ``healthy`` last about 2 s); ``?silence=SECONDS``
the one long pause of ``silence``.

Usage: .venv/bin/python scripts/demo_upstream.py [--port 8777] [--list] [--max-seconds N]
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import logging
import math
import random
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("demo_upstream")

#: The answer of every healthy stream (OpenAI, Letta and Ollama alike).
HEALTHY_TEXT = (
    "Привет! 👋 Ответ появляется по частям, потому что сервер отправляет его потоком: "
    "каждое событие несёт маленький кусочек текста 🧩. Клиент склеивает кусочки по мере "
    "прихода, поэтому слова печатаются прямо у вас на глазах ✨. Если поток оборвётся или "
    "прокси начнёт копить данные, ssemedic покажет, где именно 🩺."
)
#: The reasoning streamed before the answer.
HEALTHY_REASONING = (
    "Пользователь спрашивает, почему ответ появляется по частям. "
    "Объясню коротко и дружелюбно, с парой эмодзи."
)
#: What ``error-then-done`` says before its in-band error.
ERROR_THEN_DONE_TEXT = "Конечно! 🛠️ Вот пять шагов, чтобы починить поток. Шаг первый: "
#: The in-band error of ``error-then-done`` (the router bug in make_samples.py).
ERROR_OBJECT = {"message": "upstream connection reset by peer", "type": "server_error", "code": "upstream_error"}

DEFAULT_PORT = 8777
DEFAULT_DELAY = 0.03
#: A ``?delay=`` above this is refused: the server holds a thread per stream.
MAX_DELAY = 5.0
#: A ``?silence=`` above this is refused, for the same reason.
MAX_SILENCE = 120.0
MAX_REQUEST_BODY = 1 << 20
CREATED = 1763700000
SSE_HEADERS = {
    # Deliberately without no-transform and X-Accel-Buffering: a realistic,
    # misconfigured upstream that lets proxies buffer or compress the stream.
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
}
#: What a well-configured upstream sends with an event stream: nothing in
#: between may compress, transform or buffer it.
CLEAN_SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
JSON_HEADERS = {"Content-Type": "application/json"}
NDJSON_HEADERS = {"Content-Type": "application/x-ndjson"}
DONE = b"data: [DONE]\n\n"
LAST_CHUNK = b"0\r\n\r\n"

Framing = Literal["chunked", "close", "length"]
Write = tuple[float, bytes]


@dataclass(frozen=True, slots=True)
class Call:
    """What a scenario is asked: the request's model, whether to stream, and
    the pause between writes in seconds."""

    model: str
    stream: bool
    delay: float = DEFAULT_DELAY
    #: The one long pause of ``silence`` (``?silence=SECONDS``).
    silence: float = 4.0


class Reply(NamedTuple):
    """A scenario's answer: status, headers, the body as (pause, bytes) writes,
    and how the body is delimited ("chunked", "close" or "length")."""

    status: int
    headers: dict[str, str]
    chunks: list[Write]
    framing: Framing = "chunked"


Scenario = Callable[[Call], Reply]


# -- payloads ---------------------------------------------------------------


def tokens(text: str) -> list[str]:
    """Word-sized pieces, each with its trailing spaces, that join back to ``text``."""
    return re.findall(r"\S+\s*", text)


def sse(payload: Any) -> bytes:
    """One SSE event whose data is ``payload`` as JSON."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def ndjson(payload: Any) -> bytes:
    return (json.dumps(payload, ensure_ascii=False) + "\n").encode()


def chat_chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-demo7Qm",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def chat_usage(text: str, reasoning: str) -> dict[str, int]:
    completion = len(tokens(text)) + len(tokens(reasoning))
    return {"prompt_tokens": 27, "completion_tokens": completion, "total_tokens": 27 + completion}


def chat_opening(model: str, text: str, reasoning: str = "") -> list[bytes]:
    """A chat stream up to its finish: role, reasoning deltas, content deltas."""
    out = [sse(chat_chunk(model, {"role": "assistant", "content": ""}))]
    out += [sse(chat_chunk(model, {"reasoning_content": piece})) for piece in tokens(reasoning)]
    out += [sse(chat_chunk(model, {"content": piece})) for piece in tokens(text)]
    return out


def chat_finish(model: str) -> bytes:
    return sse(chat_chunk(model, {}, "stop"))


def chat_usage_event(model: str, text: str, reasoning: str) -> bytes:
    return sse({**chat_chunk(model, {}), "choices": [], "usage": chat_usage(text, reasoning)})


def healthy_events(model: str) -> list[bytes]:
    """The healthy chat stream, event by event."""
    return [
        *chat_opening(model, HEALTHY_TEXT, HEALTHY_REASONING),
        chat_finish(model),
        chat_usage_event(model, HEALTHY_TEXT, HEALTHY_REASONING),
        DONE,
    ]


def completion(model: str, text: str, reasoning: str) -> dict[str, Any]:
    """The non-streamed chat.completion with the same answer."""
    return {
        "id": "chatcmpl-demo7Qm",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "reasoning_content": reasoning},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": chat_usage(text, reasoning),
    }


def json_reply(status: int, payload: Any, delay: float = 0.0, headers: dict[str, str] | None = None) -> Reply:
    """A JSON body with a Content-Length, written once after ``delay``."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    return Reply(status, {**JSON_HEADERS, **(headers or {})}, [(delay, body)], "length")


def error_reply(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Reply:
    """An OpenAI-style error object."""
    return json_reply(status, {"error": {"message": message, "type": "invalid_request_error", "code": code}},
                      headers=headers)


# -- chunking ---------------------------------------------------------------


def _inside_first_char(event: bytes) -> int:
    """An offset just after the lead byte of the first multi-byte character."""
    for index, byte in enumerate(event):
        if byte >= 0xC0:
            return index + 1
    return len(event) // 2


def stagger(events: Sequence[bytes], delay: float) -> list[Write]:
    """Cut a body into one write per event, each ending at an awkward place.

    Strategy: the write boundary follows the events in a cycle of three:
    inside the event's first multi-byte character, in the middle of its line,
    and at its end. So every kind of boundary a client must survive recurs
    every third event, and the body still goes out in order, whole.
    """
    body = b"".join(events)
    cuts: list[int] = []
    start = 0
    for index, event in enumerate(events):
        offset = (_inside_first_char(event), len(event) // 2, len(event))[index % 3]
        cuts.append(start + offset)
        start += len(event)
    cuts[-1] = len(body)
    writes: list[Write] = []
    previous = 0
    for cut in cuts:
        if cut > previous:
            writes.append((delay, body[previous:cut]))
            previous = cut
    return writes


def aligned(events: Sequence[bytes], delay: float) -> list[Write]:
    """One write per whole event, as a well-behaved server flushes them."""
    return [(delay, event) for event in events]


def chunk_frame(data: bytes) -> bytes:
    """One HTTP/1.1 chunk: size in hex, CRLF, data, CRLF. ``data`` must not be
    empty, since an empty chunk is the end of the body."""
    if not data:
        raise ValueError("an empty chunk would end the body")
    return b"%x\r\n%b\r\n" % (len(data), data)


# -- scenarios --------------------------------------------------------------


def healthy(call: Call) -> Reply:
    """the default: Russian answer with emoji after reasoning, usage, [DONE]; writes split characters and lines"""
    if not call.stream:
        return json_reply(200, completion(call.model, HEALTHY_TEXT, HEALTHY_REASONING), call.delay)
    return Reply(200, dict(SSE_HEADERS), stagger(healthy_events(call.model), call.delay))


def healthy_clean(call: Call) -> Reply:
    """the healthy stream as a well-configured server sends it: no-transform and X-Accel-Buffering headers, one write per event"""
    if not call.stream:
        return healthy(call)
    return Reply(200, dict(CLEAN_SSE_HEADERS), aligned(healthy_events(call.model), call.delay))


def error_then_done(call: Call) -> Reply:
    """some text, then data: {"error": ...} in the 200 stream, then [DONE] anyway, in the same write"""
    if not call.stream:
        return json_reply(502, {"error": ERROR_OBJECT}, call.delay)
    # One write for both, as routers that catch the error write them: a
    # client that gives up at the error has the [DONE] in flight already.
    events = [*chat_opening(call.model, ERROR_THEN_DONE_TEXT), sse({"error": ERROR_OBJECT}) + DONE]
    return Reply(200, dict(SSE_HEADERS), stagger(events, call.delay))


def no_done(call: Call) -> Reply:
    """ends cleanly right after the finish_reason chunk: no usage, no [DONE]"""
    if not call.stream:
        return healthy(call)
    events = [*chat_opening(call.model, HEALTHY_TEXT, HEALTHY_REASONING), chat_finish(call.model)]
    return Reply(200, dict(SSE_HEADERS), stagger(events, call.delay))


def buffered(call: Call) -> Reply:
    """the healthy stream in one single write after the whole generation time, as a buffering proxy delivers it"""
    if not call.stream:
        return healthy(call)
    events = healthy_events(call.model)
    return Reply(200, dict(SSE_HEADERS), [(call.delay * len(events), b"".join(events))])


#: The two parallel calls of ``tool-call``: (name, arguments).
TOOL_CALLS = (
    ("get_weather", {"city": "Москва", "units": "celsius"}),
    ("get_time", {"timezone": "Europe/Moscow"}),
)
TOOL_CALL_TEXT = "Сейчас узнаю погоду и время в Москве ⏳"


def tool_call(call: Call) -> Reply:
    """a short text, then two parallel tool calls whose arguments arrive in fragments, finish_reason tool_calls"""
    if not call.stream:
        return healthy(call)
    events = chat_opening(call.model, TOOL_CALL_TEXT)
    for index, (name, arguments) in enumerate(TOOL_CALLS):
        head = {"index": index, "id": f"call_demo{index}", "type": "function",
                "function": {"name": name, "arguments": ""}}
        events.append(sse(chat_chunk(call.model, {"tool_calls": [head]})))
    # Interleave the argument fragments of both calls, as parallel calls stream.
    texts = [json.dumps(arguments, ensure_ascii=False) for _, arguments in TOOL_CALLS]
    for start in range(0, max(map(len, texts)), 9):
        for index, text in enumerate(texts):
            if start < len(text):
                fragment = {"index": index, "function": {"arguments": text[start : start + 9]}}
                events.append(sse(chat_chunk(call.model, {"tool_calls": [fragment]})))
    events += [sse(chat_chunk(call.model, {}, "tool_calls")), chat_usage_event(call.model, TOOL_CALL_TEXT, ""), DONE]
    return Reply(200, dict(SSE_HEADERS), stagger(events, call.delay))


def _truncated_events(model: str) -> list[bytes]:
    opening = chat_opening(model, HEALTHY_TEXT, HEALTHY_REASONING)
    keep = len(opening) * 3 // 5
    partial = opening[keep]
    return [*opening[:keep], partial[: _inside_first_char(partial)]]


def truncated(call: Call) -> Reply:
    """stops inside an event (mid-character, no newline), then ends the chunked body with its 0-chunk"""
    if not call.stream:
        body = json.dumps(completion(call.model, HEALTHY_TEXT, HEALTHY_REASONING), ensure_ascii=False).encode()
        return Reply(200, dict(JSON_HEADERS), [(call.delay, body[: len(body) // 2])], "close")
    return Reply(200, dict(SSE_HEADERS), stagger(_truncated_events(call.model), call.delay))


def truncated_close(call: Call) -> Reply:
    """like truncated, but close-delimited HTTP/1.0: the connection just closes mid-event"""
    return truncated(call)._replace(framing="close")


LETTA_MESSAGE = {"id": "message-2b7c", "date": "2026-11-20T10:00:00+00:00"}


def letta_events() -> list[bytes]:
    """Letta's legacy form: the reply is the ``message`` argument of a
    send_message tool call, its arguments streamed in fragments."""
    call = {"name": "send_message", "tool_call_id": "call_Hx1"}
    arguments = json.dumps({"message": HEALTHY_TEXT}, ensure_ascii=False)
    out = [sse({**LETTA_MESSAGE, "message_type": "reasoning_message", "reasoning": piece})
           for piece in tokens(HEALTHY_REASONING)]
    out += [sse({**LETTA_MESSAGE, "message_type": "tool_call_message",
                 "tool_call": {**call, "arguments": arguments[start : start + 17]}})
            for start in range(0, len(arguments), 17)]
    out.append(sse({**LETTA_MESSAGE, "id": "message-2b7d", "message_type": "tool_return_message",
                    "tool_return": "None", "status": "success", "tool_call_id": "call_Hx1",
                    "name": "send_message"}))
    return out + letta_ending()


def letta_ending() -> list[bytes]:
    """How every Letta stream here ends: stop reason, usage, then [DONE]."""
    usage = {"message_type": "usage_statistics", **chat_usage(HEALTHY_TEXT, HEALTHY_REASONING), "step_count": 1}
    return [sse({"message_type": "stop_reason", "stop_reason": "end_turn"}), sse(usage), DONE]


def letta_send_message(call: Call) -> Reply:
    """Letta agent stream whose reply hides in a send_message tool call (always streams)"""
    return Reply(200, dict(SSE_HEADERS), stagger(letta_events(), call.delay))


def ollama_line(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "created_at": "2026-11-20T10:00:00.000Z", **fields}


OLLAMA_STATS = {"total_duration": 1812000000, "load_duration": 21000000, "prompt_eval_count": 27,
                "prompt_eval_duration": 90000000, "eval_duration": 1640000000}


def ollama(call: Call) -> Reply:
    """Ollama /api/chat NDJSON: thinking, then content, then a done line with counters"""
    count = len(tokens(HEALTHY_TEXT)) + len(tokens(HEALTHY_REASONING))
    final = {"done": True, "done_reason": "stop", **OLLAMA_STATS, "eval_count": count}
    if not call.stream:
        message = {"role": "assistant", "content": HEALTHY_TEXT, "thinking": HEALTHY_REASONING}
        return json_reply(200, ollama_line(call.model, message=message, **final), call.delay)
    lines = [ndjson(ollama_line(call.model, message={"role": "assistant", "content": "", "thinking": piece},
                                done=False)) for piece in tokens(HEALTHY_REASONING)]
    lines += [ndjson(ollama_line(call.model, message={"role": "assistant", "content": piece}, done=False))
              for piece in tokens(HEALTHY_TEXT)]
    lines.append(ndjson(ollama_line(call.model, message={"role": "assistant", "content": ""}, **final)))
    return Reply(200, dict(NDJSON_HEADERS), stagger(lines, call.delay))


def letta_modern_events() -> list[bytes]:
    """Letta's current form: the reply streams as ``assistant_message`` events."""
    out = [sse({**LETTA_MESSAGE, "message_type": "reasoning_message", "reasoning": piece})
           for piece in tokens(HEALTHY_REASONING)]
    out += [sse({**LETTA_MESSAGE, "id": "message-2b7d", "message_type": "assistant_message", "content": piece})
            for piece in tokens(HEALTHY_TEXT)]
    return out + letta_ending()


def letta(call: Call) -> Reply:
    """Letta agent stream in the assistant_message form, good headers, one write per event (always streams)"""
    return Reply(200, dict(CLEAN_SSE_HEADERS), aligned(letta_modern_events(), call.delay))


# -- the other providers' healthy streams ---------------------------------------
#
# Each follows its provider's documented stream format (the shapes the tests in
# tests/test_providers_*.py use), with good headers and one write per event.


def typed_sse(payload: dict[str, Any]) -> bytes:
    """One SSE event whose ``event:`` field repeats the data's ``type``, as
    Anthropic and the Responses API send them."""
    return f"event: {payload['type']}\n".encode() + sse(payload)


ANTHROPIC_ID = "msg_01DemoQm7xYpL3kT9vWzR2aB"
#: The signature that closes the thinking block (opaque to clients).
ANTHROPIC_SIGNATURE = "EqQBCgIYAhIMdemo7QmSignatureGhgxBdjrkzLoky3dl1pkiMOYds"


def anthropic_usage(output_tokens: int) -> dict[str, int]:
    return {"input_tokens": 27, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": output_tokens}


def anthropic_message(model: str, content: list[dict[str, Any]], stop_reason: str | None,
                      output_tokens: int) -> dict[str, Any]:
    return {"id": ANTHROPIC_ID, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": None, "usage": anthropic_usage(output_tokens)}


def anthropic_events(model: str) -> list[bytes]:
    """The healthy Messages stream: a thinking block with its signature, then the text block."""
    def delta(index: int, body: dict[str, Any]) -> bytes:
        return typed_sse({"type": "content_block_delta", "index": index, "delta": body})

    output_tokens = len(tokens(HEALTHY_TEXT)) + len(tokens(HEALTHY_REASONING))
    out = [typed_sse({"type": "message_start", "message": anthropic_message(model, [], None, 1)}),
           typed_sse({"type": "content_block_start", "index": 0,
                      "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
           typed_sse({"type": "ping"})]
    out += [delta(0, {"type": "thinking_delta", "thinking": piece}) for piece in tokens(HEALTHY_REASONING)]
    out += [delta(0, {"type": "signature_delta", "signature": ANTHROPIC_SIGNATURE}),
            typed_sse({"type": "content_block_stop", "index": 0}),
            typed_sse({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})]
    out += [delta(1, {"type": "text_delta", "text": piece}) for piece in tokens(HEALTHY_TEXT)]
    out += [typed_sse({"type": "content_block_stop", "index": 1}),
            typed_sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": output_tokens}}),
            typed_sse({"type": "message_stop"})]
    return out


def anthropic(call: Call) -> Reply:
    """Anthropic Messages: thinking block with signature, text block, usage, message_stop; good headers, one write per event"""
    if not call.stream:
        content = [{"type": "thinking", "thinking": HEALTHY_REASONING, "signature": ANTHROPIC_SIGNATURE},
                   {"type": "text", "text": HEALTHY_TEXT}]
        output_tokens = len(tokens(HEALTHY_TEXT)) + len(tokens(HEALTHY_REASONING))
        return json_reply(200, anthropic_message(call.model, content, "end_turn", output_tokens), call.delay)
    return Reply(200, dict(CLEAN_SSE_HEADERS), aligned(anthropic_events(call.model), call.delay))


RESPONSE_ID = "resp_demo7Qm68108f1a8f348191a2c6d9bb4e06b4d9"
REASONING_ITEM_ID = "rs_demo7Qm68108f1b0f8c8191a1c2d3e4f5a6b7c8"
MESSAGE_ITEM_ID = "msg_demo7Qm68108f1b2c4c8191b5f0e1b4f6a3d7c2"


def responses_usage() -> dict[str, Any]:
    reasoning = len(tokens(HEALTHY_REASONING))
    output = len(tokens(HEALTHY_TEXT)) + reasoning
    return {"input_tokens": 27, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": 27 + output}


def responses_object(model: str, status: str, output: list[dict[str, Any]],
                     usage: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": RESPONSE_ID, "object": "response", "created_at": CREATED, "status": status, "error": None,
            "incomplete_details": None, "model": model, "output": output, "parallel_tool_calls": True,
            "reasoning": {"effort": "medium", "summary": "auto"}, "tool_choice": "auto", "tools": [],
            "usage": usage}


def responses_items() -> tuple[dict[str, Any], dict[str, Any]]:
    """The finished reasoning and message output items."""
    summary = {"type": "summary_text", "text": HEALTHY_REASONING}
    reasoning = {"id": REASONING_ITEM_ID, "type": "reasoning", "summary": [summary]}
    text = {"type": "output_text", "text": HEALTHY_TEXT, "annotations": []}
    message = {"id": MESSAGE_ITEM_ID, "type": "message", "status": "completed", "role": "assistant",
               "content": [text]}
    return reasoning, message


def responses_events(model: str) -> list[bytes]:
    """The healthy Responses stream: a reasoning summary, then the message's output text."""
    reasoning_done, message_done = responses_items()
    rs = {"item_id": REASONING_ITEM_ID, "output_index": 0, "summary_index": 0}
    at = {"item_id": MESSAGE_ITEM_ID, "output_index": 1, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": responses_object(model, "in_progress", [], None)},
        {"type": "response.in_progress", "response": responses_object(model, "in_progress", [], None)},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": REASONING_ITEM_ID, "type": "reasoning", "summary": []}},
        {"type": "response.reasoning_summary_part.added", **rs, "part": {"type": "summary_text", "text": ""}},
        *({"type": "response.reasoning_summary_text.delta", **rs, "delta": piece}
          for piece in tokens(HEALTHY_REASONING)),
        {"type": "response.reasoning_summary_text.done", **rs, "text": HEALTHY_REASONING},
        {"type": "response.reasoning_summary_part.done", **rs,
         "part": {"type": "summary_text", "text": HEALTHY_REASONING}},
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning_done},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {**message_done, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **at,
         "part": {"type": "output_text", "text": "", "annotations": []}},
        *({"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}
          for piece in tokens(HEALTHY_TEXT)),
        {"type": "response.output_text.done", **at, "text": HEALTHY_TEXT, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": message_done["content"][0]},
        {"type": "response.output_item.done", "output_index": 1, "item": message_done},
        {"type": "response.completed",
         "response": responses_object(model, "completed", [reasoning_done, message_done], responses_usage())},
    ]
    return [typed_sse({"type": event["type"], "sequence_number": n, **event}) for n, event in enumerate(events)]


def openai_responses(call: Call) -> Reply:
    """OpenAI Responses: reasoning summary deltas, output_text deltas, response.completed with usage; good headers, one write per event"""
    if not call.stream:
        return json_reply(200, responses_object(call.model, "completed", list(responses_items()),
                                                responses_usage()), call.delay)
    return Reply(200, dict(CLEAN_SSE_HEADERS), aligned(responses_events(call.model), call.delay))


GEMINI_RESPONSE_ID = "demo7QmKdzaPKiI5CmnvgPmeCf"
#: The signature Gemini puts on the first part after its thoughts (opaque to clients).
GEMINI_SIGNATURE = "CiQBcsjafE2mKx7QdemoYb0Jt9"


def gemini_usage(candidates: int | None, thoughts: int) -> dict[str, Any]:
    out: dict[str, Any] = {"promptTokenCount": 27}
    if candidates is not None:
        out["candidatesTokenCount"] = candidates
    out["totalTokenCount"] = 27 + (candidates or 0) + thoughts
    out["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": 27}]
    out["thoughtsTokenCount"] = thoughts
    return out


def gemini_chunk(model: str, parts: list[dict[str, Any]], usage: dict[str, Any],
                 finish: str | None = None) -> dict[str, Any]:
    """One GenerateContentResponse: the new parts of candidate 0, cumulative usage."""
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
            "responseId": GEMINI_RESPONSE_ID}


def gemini_events(model: str) -> list[bytes]:
    """The healthy Gemini stream: thought parts, then text parts, the last with
    finishReason STOP. Gemini ends its lines with CRLF."""
    thoughts = tokens(HEALTHY_REASONING)
    texts = tokens(HEALTHY_TEXT)
    out = [gemini_chunk(model, [{"text": piece, "thought": True}], gemini_usage(None, index + 1))
           for index, piece in enumerate(thoughts)]
    for index, piece in enumerate(texts):
        part: dict[str, Any] = {"text": piece}
        if index == 0:
            part["thoughtSignature"] = GEMINI_SIGNATURE
        last = index == len(texts) - 1
        out.append(gemini_chunk(model, [part], gemini_usage(index + 1, len(thoughts)), "STOP" if last else None))
    return [with_line_ending(sse(payload), b"\r\n") for payload in out]


def gemini(call: Call) -> Reply:
    """Gemini streamGenerateContent?alt=sse: thought parts, text parts, finishReason, usageMetadata; good headers, one write per event (always streams)"""
    return Reply(200, dict(CLEAN_SSE_HEADERS), aligned(gemini_events(call.model), call.delay))


# -- scenarios for repair ------------------------------------------------------

BOM = b"\xef\xbb\xbf"


def with_line_ending(event: bytes, eol: bytes) -> bytes:
    """``event`` with its LF line endings replaced (JSON payloads hold no raw LF)."""
    return event.replace(b"\n", eol)


def cr_lines(call: Call) -> Reply:
    """the healthy stream with bare-CR line endings and a UTF-8 BOM first"""
    if not call.stream:
        return healthy(call)
    events = [with_line_ending(event, b"\r") for event in healthy_events(call.model)]
    events[0] = BOM + events[0]
    return Reply(200, dict(SSE_HEADERS), stagger(events, call.delay))


def crlf_mixed(call: Call) -> Reply:
    """the healthy stream whose events alternate CRLF and LF line endings ([DONE] ends in CRLF)"""
    if not call.stream:
        return healthy(call)
    events = healthy_events(call.model)
    events = [with_line_ending(event, b"\r\n" if (len(events) - index) % 2 else b"\n")
              for index, event in enumerate(events)]
    return Reply(200, dict(SSE_HEADERS), stagger(events, call.delay))


def content_length(call: Call) -> Reply:
    """the healthy stream, paced as usual, but delimited by a Content-Length header"""
    if not call.stream:
        return healthy(call)
    return Reply(200, dict(SSE_HEADERS), stagger(healthy_events(call.model), call.delay), "length")


def gzip_writes(writes: Sequence[Write]) -> list[Write]:
    """The same writes gzip-compressed as one stream, each flushed (Z_SYNC_FLUSH)
    so it can be decompressed as soon as it arrives."""
    compressor = zlib.compressobj(wbits=31)
    out: list[Write] = []
    for index, (delay, data) in enumerate(writes):
        compressed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if index == len(writes) - 1:
            compressed += compressor.flush()
        out.append((delay, compressed))
    return out


def gzip_stream(call: Call) -> Reply:
    """the healthy stream with Content-Encoding: gzip, compressed incrementally so it still streams"""
    if not call.stream:
        return healthy(call)
    writes = gzip_writes(stagger(healthy_events(call.model), call.delay))
    return Reply(200, {**SSE_HEADERS, "Content-Encoding": "gzip"}, writes)


# -- Amazon Bedrock: the AWS event stream's binary frames ------------------------------

BEDROCK_HEADERS = {"Content-Type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": "demo-7f3c2a1e"}


def aws_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream frame with string headers: total and headers length,
    the prelude's CRC32, headers, payload, the CRC32 of everything before it."""
    encoded = b"".join(bytes([len(k)]) + k.encode() + b"\x07" + len(v.encode()).to_bytes(2, "big") + v.encode()
                       for k, v in headers.items())
    prelude = (16 + len(encoded) + len(payload)).to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    body = prelude + zlib.crc32(prelude).to_bytes(4, "big") + encoded + payload
    return body + zlib.crc32(body).to_bytes(4, "big")


def bedrock_event(event_type: str, payload: dict[str, Any]) -> bytes:
    """A Bedrock event frame: JSON payload with the padding field ``p`` Bedrock adds."""
    body = json.dumps({**payload, "p": "abcdefghijklmnopqrstuvwxyz"[: len(event_type)]}, ensure_ascii=False)
    return aws_frame({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                     body.encode())


def bedrock_events() -> list[bytes]:
    """The healthy ConverseStream: reasoning with its signature, then the text, messageStop, metadata."""
    def delta(index: int, body: dict[str, Any]) -> bytes:
        return bedrock_event("contentBlockDelta", {"contentBlockIndex": index, "delta": body})

    out = [bedrock_event("messageStart", {"role": "assistant"})]
    out += [delta(0, {"reasoningContent": {"text": piece}}) for piece in tokens(HEALTHY_REASONING)]
    out += [delta(0, {"reasoningContent": {"signature": ANTHROPIC_SIGNATURE}}),
            bedrock_event("contentBlockStop", {"contentBlockIndex": 0})]
    out += [delta(1, {"text": piece}) for piece in tokens(HEALTHY_TEXT)]
    output_tokens = len(tokens(HEALTHY_TEXT)) + len(tokens(HEALTHY_REASONING))
    out += [bedrock_event("contentBlockStop", {"contentBlockIndex": 1}),
            bedrock_event("messageStop", {"stopReason": "end_turn"}),
            bedrock_event("metadata", {"usage": {"inputTokens": 27, "outputTokens": output_tokens,
                                                 "totalTokens": 27 + output_tokens},
                                       "metrics": {"latencyMs": 1840}})]
    return out


def bedrock(call: Call) -> Reply:
    """Amazon Bedrock ConverseStream in AWS event-stream frames: reasoning with signature, text, messageStop, usage; one write per frame"""
    return Reply(200, dict(BEDROCK_HEADERS), aligned(bedrock_events(), call.delay))


def bedrock_invoke(call: Call) -> Reply:
    """Amazon Bedrock InvokeModelWithResponseStream: Anthropic's events, base64 in chunk frames; one write per frame"""
    frames = []
    for event in anthropic_events(call.model):
        data = json.loads(event.split(b"data: ", 1)[1])  # the Messages event, as Bedrock wraps it
        frames.append(bedrock_event("chunk", {"bytes": base64.b64encode(json.dumps(data).encode()).decode()}))
    return Reply(200, dict(BEDROCK_HEADERS), aligned(frames, call.delay))


# -- the streams of #13 that no demo answer stands in for: published bodies --------
#
# Where a body was published (an SDK's or framework's test data, a provider's
# docs), the scenario serves those bytes, kept in tests/field/ with their
# sources (tests/field/SOURCES.md); where none was found, it is built from the
# specification or the server's code, and its docstring says so.

FIELD = Path(__file__).resolve().parent.parent / "tests" / "field"


def field_body(name: str) -> bytes:
    """A published body from tests/field/ (its source is in tests/field/SOURCES.md)."""
    return (FIELD / name).read_bytes()


def sse_blocks(body: bytes) -> list[bytes]:
    """An SSE body cut after each blank line: one write per event or comment."""
    return re.findall(rb"(?s).*?\n\n|.+\Z", body)


def chunk_lines(body: bytes) -> list[bytes]:
    """The JSON documents of a file printed one a line, as bytes."""
    return [line for line in body.split(b"\n") if line.strip()]


#: Gemini's streamGenerateContent without alt=sse: one JSON array, as Google serves it.
GEMINI_ARRAY_HEADERS = {"Content-Type": "application/json; charset=UTF-8", "Vary": "Origin, X-Origin, Referer",
                        "X-Content-Type-Options": "nosniff"}
#: The Gemini payloads gemini-array sends (vercel/ai, packages/google/src/__fixtures__/google-reasoning.chunks.txt).
GEMINI_ARRAY_FIELD = "gemini/google-reasoning.chunks.txt"


def gemini_array_elements() -> list[bytes]:
    return chunk_lines(field_body(GEMINI_ARRAY_FIELD))


def gemini_array(call: Call) -> Reply:
    """Gemini streamGenerateContent without alt=sse: one JSON array sent element by element ([{…}, then ,CRLF{…}, then ]); the payloads are vercel/ai's recorded google-reasoning stream (always streams)"""
    elements = gemini_array_elements()
    writes = [b"[" + elements[0], *(b",\r\n" + element for element in elements[1:]), b"]"]
    return Reply(200, dict(GEMINI_ARRAY_HEADERS), aligned(writes, call.delay))


#: The JSON-RPC id of the request the MCP scenarios answer (scripts/make_recordings.py sends it).
MCP_REQUEST_ID = 7
MCP_SESSION = "1868a90c-4f5b-4a3c-9b2e-c1a2f37d8e11"
MCP_HEADERS = {**CLEAN_SSE_HEADERS, "Content-Type": "text/event-stream", "Mcp-Session-Id": MCP_SESSION}
MCP_PROGRESS = ("Запрос к API погоды", "Разбор ответа", "Готово")
MCP_RESULT = {"content": [{"type": "text", "text": "Москва: 21 °C, ясно ☀️"},
                          {"type": "resource_link", "uri": "weather://moscow/today", "name": "today"}],
              "structuredContent": {"city": "Москва", "temperature": 21, "conditions": "ясно"},
              "isError": False}


def mcp_message(payload: dict[str, Any]) -> bytes:
    """One JSON-RPC message as the MCP python-sdk's server writes it: ``event: message`` and one ``data:`` line."""
    return b"event: message\n" + sse({"jsonrpc": "2.0", **payload})


def mcp_notifications() -> list[bytes]:
    out = [mcp_message({"method": "notifications/message",
                        "params": {"level": "info", "logger": "weather", "data": "get_weather: Москва"}})]
    out += [mcp_message({"method": "notifications/progress",
                         "params": {"progressToken": "tok-7", "progress": n + 1, "total": len(MCP_PROGRESS),
                                    "message": text}})
            for n, text in enumerate(MCP_PROGRESS)]
    return out


def mcp(call: Call) -> Reply:
    """MCP Streamable HTTP: a tools/call answered over SSE, log and progress notifications, then the result (text, resource link, structuredContent); built from the MCP spec 2025-06-18, no recorded body was found (always streams)"""
    events = [*mcp_notifications(), mcp_message({"id": MCP_REQUEST_ID, "result": MCP_RESULT})]
    return Reply(200, dict(MCP_HEADERS), aligned(events, call.delay))


def mcp_cut(call: Call) -> Reply:
    """MCP Streamable HTTP: the notifications of mcp, then the stream ends without the JSON-RPC response (built from the MCP spec; always streams)"""
    return Reply(200, dict(MCP_HEADERS), aligned(mcp_notifications(), call.delay))


#: The Cohere v2 payloads the cohere scenario sends (M-Lai-ai/LLM-Provider-reference, Cohere/streaming.md).
COHERE_FIELD = "cohere/llm-provider-reference-streaming.chunks.txt"


def cohere_events() -> list[bytes]:
    """Each published payload as Cohere's SSE sends it: ``event: <type>`` then ``data:``."""
    return [b"event: %s\ndata: %s\n\n" % (json.loads(line)["type"].encode(), line)
            for line in chunk_lines(field_body(COHERE_FIELD))]


def cohere(call: Call) -> Reply:
    """Cohere v2 chat (/v2/chat): a real command-r-plus stream (M-Lai-ai/LLM-Provider-reference, Cohere/streaming.md), content-delta events, message-end with usage (always streams)"""
    return Reply(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                 aligned(cohere_events(), call.delay))


AZURE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "apim-request-id": "demo-2b7c",
                 "x-ms-region": "Sweden Central"}
AZURE_FIELD = "azure_openai/quarkus-langchain4j-streaming.sse"
AZURE_FILTERED_FIELD = "azure_openai/docs-async-filter-blocked.sse"


def azure(call: Call) -> Reply:
    """Azure OpenAI chat: the first chunk with empty choices and prompt_filter_results, content_filter_results on every chunk, all safe; a real Azure stream (quarkiverse/quarkus-langchain4j's AzureOpenAiStreamingChatModelTest)"""
    return Reply(200, dict(AZURE_HEADERS), aligned(sse_blocks(field_body(AZURE_FIELD)), call.delay))


def azure_filtered(call: Call) -> Reply:
    """Azure OpenAI chat cut by its content filter: finish_reason content_filter, protected_material_text detected and filtered (the sample stream of Azure's content-filter-streaming docs)"""
    return Reply(200, dict(AZURE_HEADERS), aligned(sse_blocks(field_body(AZURE_FILTERED_FIELD)), call.delay))


OPENROUTER_FIELD = "openrouter/docs-mid-stream-error.sse"


def openrouter(call: Call) -> Reply:
    """OpenRouter chat: ': OPENROUTER PROCESSING' keep-alive comments, text, then its mid-stream error chunk (finish_reason "error"); the shapes and error chunk of OpenRouter's streaming docs"""
    return Reply(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                 aligned(sse_blocks(field_body(OPENROUTER_FIELD)), call.delay))


#: llama.cpp's error for a prompt over the context (tools/server/server.cpp: code, message, type).
LLAMA_CPP_ERROR = {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                   "type": "exceed_context_size_error"}


def llama_cpp_error(call: Call) -> Reply:
    """llama.cpp server: its in-stream error as an "error:" line (a field SSE clients ignore), then data: [DONE]; built from llama.cpp's tools/server/server.cpp, no recorded body was found"""
    error = f"error: {json.dumps(LLAMA_CPP_ERROR, separators=(',', ':'))}\n\n".encode()
    return Reply(200, {"Content-Type": "text/event-stream", "Server": "llama.cpp"},
                 aligned([error, DONE], call.delay))


#: vLLM's ErrorResponse as its streaming error path once dumped it (vllm/entrypoints/openai/serving_engine.py).
VLLM_ERROR = {"object": "error", "message": "This model's maximum context length is 4096 tokens.",
              "type": "BadRequestError", "param": None, "code": 400}
VLLM_TEXT = "Конечно! Вот "


def vllm_error(call: Call) -> Reply:
    """vLLM: some text, then its top-level {"object": "error"} in the 200 stream, then [DONE]; built from vLLM's serving_engine.py, no recorded body was found"""
    events = [*chat_opening(call.model, VLLM_TEXT), sse(VLLM_ERROR), DONE]
    return Reply(200, {"Content-Type": "text/event-stream; charset=utf-8"}, aligned(events, call.delay))


#: The garbage event ``invalid-json`` sends in the middle of the healthy stream.
INVALID_JSON_EVENT = b"data: {not json\n\n"


def invalid_json(call: Call) -> Reply:
    """the healthy stream with one garbage data: {not json event in the middle of the answer"""
    if not call.stream:
        return healthy(call)
    events = healthy_events(call.model)
    middle = len(events) - len(tokens(HEALTHY_TEXT)) // 2 - 3
    return Reply(200, dict(SSE_HEADERS), stagger([*events[:middle], INVALID_JSON_EVENT, *events[middle:]],
                                                 call.delay))


#: What each ``hostile-*`` scenario puts in the middle of the healthy stream:
#: JSON that Python's json or strict clients choke on, and random bytes.
HOSTILE_EVENTS = {
    "hostile-nan": b'data: {"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": NaN}}\n\n',
    "hostile-nesting": b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n",
    "hostile-number": b'data: {"object": "chat.completion.chunk", "choices": [], "n": ' + b"9" * 5000 + b"}\n\n",
    "hostile-bytes": b"data: " + bytes(b for b in random.Random(12).randbytes(256) if b not in b"\r\n") + b"\n\n",
}
#: What ``hostile-surrogate`` adds to the healthy text: a lone surrogate, as a JSON escape.
HOSTILE_SURROGATE = "\ud800"


def hostile(name: str, doc: str) -> Scenario:
    """A scenario that puts HOSTILE_EVENTS[name] in the middle of the healthy stream."""
    def scenario(call: Call) -> Reply:
        if not call.stream:
            return healthy(call)
        events = healthy_events(call.model)
        middle = len(events) - len(tokens(HEALTHY_TEXT)) // 2 - 3
        return Reply(200, dict(SSE_HEADERS), stagger([*events[:middle], HOSTILE_EVENTS[name], *events[middle:]],
                                                     call.delay))
    scenario.__doc__ = doc
    return scenario


def hostile_surrogate(call: Call) -> Reply:
    """the healthy stream whose text ends in a lone surrogate, "\\ud800" in the JSON (valid JSON, no valid UTF-8 for it)"""
    if not call.stream:
        return healthy(call)
    events = healthy_events(call.model)
    # json.dumps escapes it (ensure_ascii): a raw surrogate has no UTF-8 encoding.
    odd = f"data: {json.dumps(chat_chunk(call.model, {'content': HOSTILE_SURROGATE}))}\n\n".encode()
    finish = events.index(chat_finish(call.model))
    return Reply(200, dict(SSE_HEADERS), stagger([*events[:finish], odd, *events[finish:]], call.delay))


def invalid_utf8_pieces() -> list[bytes]:
    """The content pieces of ``invalid-utf8`` as sent: the healthy answer's
    tokens, the middle one with a stray 0xFF byte (never valid in UTF-8)."""
    pieces = [json.dumps(token, ensure_ascii=False)[1:-1].encode() for token in tokens(HEALTHY_TEXT)]
    middle = len(pieces) // 2
    pieces[middle] = pieces[middle].rstrip() + b"\xff" + pieces[middle][len(pieces[middle].rstrip()):]
    return pieces


def invalid_utf8(call: Call) -> Reply:
    """the healthy stream with a stray 0xFF byte inside the JSON string of one content event"""
    if not call.stream:
        return healthy(call)
    opening = chat_opening(call.model, "", HEALTHY_REASONING)
    content = []
    for token, piece in zip(tokens(HEALTHY_TEXT), invalid_utf8_pieces(), strict=True):
        event = sse(chat_chunk(call.model, {"content": token}))
        quoted = json.dumps(token, ensure_ascii=False)[1:-1].encode()
        content.append(event.replace(b'"content": "' + quoted + b'"', b'"content": "' + piece + b'"'))
    events = [*opening, *content, chat_finish(call.model),
              chat_usage_event(call.model, HEALTHY_TEXT, HEALTHY_REASONING), DONE]
    return Reply(200, dict(SSE_HEADERS), stagger(events, call.delay))


#: What ``long`` is built from: Russian, English and emoji, as a mixed answer reads.
LONG_VOCABULARY = (
    "поток", "событие", "ответ", "прокси", "сервер", "клиент", "символ", "строка", "буфер", "кусочек",
    "данные", "соединение", "заголовок", "модель", "токен", "задержка", "ошибка", "починка", "ёжик",
    "щука", "объявление", "сжатие", "текст", "рассуждение", "stream", "event", "chunk", "proxy",
    "buffer", "token", "latency", "gateway", "client", "server", "header", "model", "newline",
    "🙂", "🚀", "🧩", "✨", "🩺", "👋🏽", "🇷🇺", "👩‍💻",
)
LONG_SEED = 20261120
#: How many words of ``long`` go into one event.
LONG_WORDS_PER_EVENT = 3


def long_text(words: int = 1600, seed: int = LONG_SEED) -> str:
    """A deterministic answer of ``words`` words, in sentences and paragraphs."""
    rng = random.Random(seed)
    out: list[str] = []
    sentence = 0
    for index in range(words):
        word = rng.choice(LONG_VOCABULARY)
        if sentence == 0:
            word = word[:1].upper() + word[1:]
        sentence += 1
        last = index == words - 1
        if last or (sentence >= 6 and rng.random() < 0.2):
            sentence = 0
            word += "." if last else rng.choice([".", "!", "?", "…"])
            separator = "" if last else ("\n\n" if rng.random() < 0.15 else " ")
        else:
            separator = ", " if rng.random() < 0.1 else " "
        out.append(word + separator)
    return "".join(out)


#: The answer of ``long``: over 1500 words.
LONG_TEXT = long_text()


def long_answer(call: Call) -> Reply:
    """a 1600-word Russian, English and emoji answer in split writes that ends after finish_reason without [DONE]"""
    if not call.stream:
        return json_reply(200, completion(call.model, LONG_TEXT, ""), call.delay)
    words = tokens(LONG_TEXT)
    pieces = ["".join(words[start : start + LONG_WORDS_PER_EVENT])
              for start in range(0, len(words), LONG_WORDS_PER_EVENT)]
    events = [sse(chat_chunk(call.model, {"role": "assistant", "content": ""}))]
    events += [sse(chat_chunk(call.model, {"content": piece})) for piece in pieces]
    events.append(chat_finish(call.model))
    return Reply(200, dict(SSE_HEADERS), stagger(events, call.delay))


def _silent_before(call: Call, write: int) -> Reply:
    """The healthy answer, one write per event, with the long pause before write number ``write``."""
    if not call.stream:
        return healthy(call)
    writes = aligned(healthy_events(call.model), call.delay)
    writes[write] = (call.silence, writes[write][1])
    return Reply(200, dict(SSE_HEADERS), writes)


def silence(call: Call) -> Reply:
    """the healthy answer, one write per event, with one long pause (?silence=SECONDS, default 4) after its third event, as a model that thinks mid-answer"""
    return _silent_before(call, 3)


def silence_first(call: Call) -> Reply:
    """the healthy answer, one write per event, after the headers and then the long pause (?silence=SECONDS, default 4) before its first event, as a reasoning model that thinks before its first token"""
    return _silent_before(call, 0)


def silence_mid_event(call: Call) -> Reply:
    """the healthy answer, one write per event, but its fourth event in two writes with the long pause (?silence=SECONDS, default 4) between them, as a server that flushes mid-event and then thinks"""
    if not call.stream:
        return healthy(call)
    events = healthy_events(call.model)
    half = len(events[3]) // 2
    writes = aligned(events[:3], call.delay)
    writes += [(call.delay, events[3][:half]), (call.silence, events[3][half:])]
    writes += aligned(events[4:], call.delay)
    return Reply(200, dict(SSE_HEADERS), writes)


def silence_after_done(call: Call) -> Reply:
    """the healthy answer, one write per event, then the body held open ?silence=SECONDS (default 4) after [DONE]"""
    if not call.stream:
        return healthy(call)
    return Reply(200, dict(SSE_HEADERS), [*aligned(healthy_events(call.model), call.delay), (call.silence, b"")])


#: name -> scenario; add one here and it is served, listed and selectable.
SCENARIOS: dict[str, Scenario] = {
    "healthy": healthy,
    "healthy-clean": healthy_clean,
    "error-then-done": error_then_done,
    "no-done": no_done,
    "tool-call": tool_call,
    "buffered": buffered,
    "truncated": truncated,
    "truncated-close": truncated_close,
    "letta-send-message": letta_send_message,
    "ollama": ollama,
    "cr-lines": cr_lines,
    "crlf-mixed": crlf_mixed,
    "content-length": content_length,
    "gzip": gzip_stream,
    "invalid-json": invalid_json,
    "invalid-utf8": invalid_utf8,
    "long": long_answer,
    "silence": silence,
    "silence-after-done": silence_after_done,
    "silence-mid-event": silence_mid_event,
    "silence-first": silence_first,
    "letta": letta,
    "openai-responses": openai_responses,
    "anthropic": anthropic,
    "gemini": gemini,
    "bedrock": bedrock,
    "bedrock-invoke": bedrock_invoke,
    "gemini-array": gemini_array,
    "mcp": mcp,
    "mcp-cut": mcp_cut,
    "cohere": cohere,
    "azure": azure,
    "azure-filtered": azure_filtered,
    "openrouter": openrouter,
    "llama-cpp-error": llama_cpp_error,
    "vllm-error": vllm_error,
    "hostile-surrogate": hostile_surrogate,
    "hostile-nan": hostile("hostile-nan", "the healthy stream with a NaN in one event (not JSON; Python's json accepts it)"),
    "hostile-nesting": hostile("hostile-nesting", "the healthy stream with one event nested 100,000 arrays deep"),
    "hostile-number": hostile("hostile-number", "the healthy stream with a 5,000-digit integer in one event"),
    "hostile-bytes": hostile("hostile-bytes", "the healthy stream with one event of random bytes"),
}


def describe(name: str) -> str:
    """A scenario's one-line description (the first line of its docstring)."""
    return (SCENARIOS[name].__doc__ or "").strip().splitlines()[0]


# -- routing ----------------------------------------------------------------

_PREFIX = re.compile(r"/s/(?P<scenario>[^/]+)(?P<rest>/.*)")
_LETTA = re.compile(r"/v1/agents/[^/]+/messages/stream/?")
_LETTA_ROUTER = re.compile(r"/api/v1/agents/[^/]+/proxy/chat/completions")
_GEMINI = re.compile(r"/v1beta/models/(?P<model>[^/:]+):streamGenerateContent")
_AZURE = re.compile(r"/openai/deployments/[^/]+/chat/completions")
_BEDROCK = re.compile(r"/model/(?P<model>[^/]+)/(?P<api>converse-stream|invoke-with-response-stream)")


class Endpoint(NamedTuple):
    """A POST route: its default scenario, whether it streams when the
    request has no ``stream`` field (None: it always streams), and the model
    when the path names it (Gemini)."""

    scenario: str
    stream_default: bool | None
    model: str | None = None


def endpoint(path: str) -> Endpoint | None:
    """The POST endpoint at ``path`` (without any /s/ prefix), or None."""
    if path in ("/v1/chat/completions", "/chat/completions"):
        return Endpoint("healthy", False)
    if path == "/api/chat":
        return Endpoint("ollama", True)
    if _LETTA.fullmatch(path):
        return Endpoint("letta-send-message", None)
    if _LETTA_ROUTER.fullmatch(path):  # a router serving a Letta agent OpenAI-style
        return Endpoint("letta-send-message", False)
    if path == "/v1/responses":
        return Endpoint("openai-responses", False)
    if path == "/v1/messages":
        return Endpoint("anthropic", False)
    if _AZURE.fullmatch(path):
        return Endpoint("azure", None)
    if path == "/api/v1/chat/completions":  # OpenRouter's base is /api/v1
        return Endpoint("openrouter", None)
    if path == "/v2/chat":
        return Endpoint("cohere", None)
    if path == "/mcp":
        return Endpoint("mcp", None)
    if gemini := _GEMINI.fullmatch(path):
        return Endpoint("gemini", None, gemini["model"])
    if bedrock_route := _BEDROCK.fullmatch(path):
        scenario = "bedrock" if bedrock_route["api"] == "converse-stream" else "bedrock-invoke"
        return Endpoint(scenario, None, bedrock_route["model"])
    return None


# -- server -----------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """Routes a request to a scenario and writes its reply, write by write."""

    protocol_version = "HTTP/1.1"
    server_version = "ssemedic-demo-upstream/0.1"
    # Small writes must leave at once, not wait for the previous one's ACK.
    disable_nagle_algorithm = True
    timeout = 60

    server: DemoServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        prefix = _PREFIX.fullmatch(url.path)
        rest = prefix["rest"] if prefix else url.path
        # A model list sits next to each chat-completions route (an OpenAI
        # client's base URL + /models) and names that route's scenario.
        route = endpoint(rest.removesuffix("/models") + "/chat/completions") if rest.endswith("/models") else None
        scenario = prefix["scenario"] if prefix else route.scenario if route else "healthy"
        if prefix and scenario not in SCENARIOS:
            self._refuse(*self._unknown_scenario(scenario))
        elif route is not None:
            model = {"id": scenario, "object": "model", "created": CREATED, "owned_by": "ssemedic-demo"}
            self._log(f"-> models ({scenario})")
            self._send(json_reply(200, {"object": "list", "data": [model]}))
        elif rest == "/":
            self._log("-> index")
            self._send(json_reply(200, {"scenarios": {name: describe(name) for name in SCENARIOS}}))
        else:
            self._refuse(*self._not_found())

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        prefix = _PREFIX.fullmatch(url.path)
        route = endpoint(prefix["rest"] if prefix else url.path)
        if route is None:
            self._refuse(*self._not_found())
            return
        if prefix and prefix["scenario"] not in SCENARIOS:
            self._refuse(*self._unknown_scenario(prefix["scenario"]))
            return
        try:
            body = self._read_json()
            delay, framing = self._options(url.query)
        except _Refusal as refusal:
            self._refuse(refusal.reply, refusal.reason)
            return
        if route.scenario == "gemini" and "sse" not in parse_qs(url.query).get("alt", []):
            route = route._replace(scenario="gemini-array")  # without alt=sse, Gemini streams one JSON array
        model = body.get("model", route.model)
        if prefix:
            name = prefix["scenario"]
        elif isinstance(model, str) and model in SCENARIOS:
            name = model
        else:
            name = route.scenario
        stream = True if route.stream_default is None else body.get("stream", route.stream_default) is True
        pause = parse_qs(url.query).get("silence", ["4"])[-1]
        if not (pause.replace(".", "", 1).isdigit() and float(pause) <= MAX_SILENCE):
            self._refuse(error_reply(400, f"silence must be seconds between 0 and {MAX_SILENCE}", "bad_silence"),
                         "400 bad silence")
            return
        reply = SCENARIOS[name](Call(model if isinstance(model, str) and model else name, stream, delay,
                                     float(pause)))
        if framing is not None and reply.framing != "length":
            reply = reply._replace(framing=framing)
        self._log(f"-> {name} ({'stream' if stream else 'whole'}, {reply.framing}, delay {delay:g}s)")
        self._send(reply, scenario=name)

    # -- request ------------------------------------------------------------

    def _read_json(self) -> dict[str, Any]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # Decoding chunked requests is the one parse the stdlib does not
            # do, and no client of this demo needs it.
            raise _Refusal(error_reply(411, "send the request body with a Content-Length", "length_required",
                                       {"Connection": "close"}), "411 chunked request")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise _Refusal(error_reply(400, "Content-Length is not a number", "bad_length",
                                       {"Connection": "close"}), "400 bad Content-Length") from None
        if length < 0 or length > MAX_REQUEST_BODY:
            raise _Refusal(error_reply(413, f"request bodies are limited to {MAX_REQUEST_BODY} bytes",
                                       "too_large", {"Connection": "close"}), "413 too large")
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _Refusal(error_reply(400, f"request body is not JSON: {exc}", "bad_json"), "400 bad JSON") from None
        if not isinstance(body, dict):
            raise _Refusal(error_reply(400, "request body must be a JSON object", "bad_json"), "400 not an object")
        return body

    def _options(self, query: str) -> tuple[float, Framing | None]:
        params = parse_qs(query)
        delay = self.server.delay
        if "delay" in params:
            try:
                delay = float(params["delay"][-1])
            except ValueError:
                delay = math.nan
            if not 0 <= delay <= MAX_DELAY:
                raise _Refusal(error_reply(400, f"delay must be seconds between 0 and {MAX_DELAY}",
                                           "bad_delay"), "400 bad delay")
        match params.get("framing", [None])[-1]:
            case None:
                return delay, None
            case "chunked":
                return delay, "chunked"
            case "close":
                return delay, "close"
        raise _Refusal(error_reply(400, "framing must be chunked or close", "bad_framing"), "400 bad framing")

    def _not_found(self) -> tuple[Reply, str]:
        return error_reply(404, f"no route for {self.command} {self.path}", "not_found"), "404 no route"

    def _unknown_scenario(self, name: str) -> tuple[Reply, str]:
        message = f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}"
        return error_reply(404, message, "unknown_scenario"), "404 unknown scenario"

    # -- response -----------------------------------------------------------

    def _log(self, what: str) -> None:
        log.info("%s %s %s", self.command, self.path, what)

    def _refuse(self, reply: Reply, reason: str) -> None:
        self._log(f"-> {reason}")
        self._send(reply)

    def _send(self, reply: Reply, scenario: str = "-") -> None:
        framing = reply.framing
        if framing == "chunked" and self.request_version != "HTTP/1.1":
            framing = "close"
        if framing == "close":
            # An old-style body that ends when the connection does.
            self.protocol_version = "HTTP/1.0"
            self.close_connection = True
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif framing == "length":
            self.send_header("Content-Length", str(sum(len(chunk) for _, chunk in reply.chunks)))
        else:
            self.send_header("Connection", "close")
        written = 0
        try:
            self.end_headers()
            for delay, chunk in reply.chunks:
                if delay:
                    time.sleep(delay)
                if chunk:
                    self.wfile.write(chunk_frame(chunk) if framing == "chunked" else chunk)
                    self.wfile.flush()
                written += 1
            if framing == "chunked":
                self.wfile.write(LAST_CHUNK)
                self.wfile.flush()
        except (ConnectionError, TimeoutError) as exc:
            self.close_connection = True
            log.info("  client went away during %s after %d of %d writes (%s)",
                     scenario, written, len(reply.chunks), type(exc).__name__)


class _Refusal(Exception):
    """A request we answer with an error reply instead of a scenario."""

    def __init__(self, reply: Reply, reason: str) -> None:
        super().__init__(reason)
        self.reply = reply
        self.reason = reason


class DemoServer(ThreadingHTTPServer):
    """The threaded server; ``delay`` is the default pause between writes,
    and ``shutdown()`` also closes the listening socket."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], delay: float = DEFAULT_DELAY) -> None:
        super().__init__(address, Handler)
        self.delay = delay

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up is normal here; only real bugs get a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.info("connection from %s:%s dropped (%s)", *client_address[:2], type(exc).__name__)
            return
        super().handle_error(request, client_address)


def check_loopback(host: str) -> None:
    """Raise ValueError unless ``host`` is an IPv4 loopback address or localhost."""
    try:
        loopback = ipaddress.IPv4Address("127.0.0.1" if host == "localhost" else host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the demo upstream binds loopback addresses only (127.0.0.0/8), not {host!r}")


def serve(host: str = "127.0.0.1", port: int = 0, *, delay: float = DEFAULT_DELAY) -> tuple[DemoServer, threading.Thread]:
    """Start the server in a daemon thread. Port 0 picks a free port (read it
    from ``server.server_address[1]``); ``server.shutdown()`` stops it."""
    check_loopback(host)
    server = DemoServer((host, port), delay)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="demo-upstream", daemon=True)
    thread.start()
    return server, thread


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY,
                        help=f"default seconds between writes (default {DEFAULT_DELAY}; ?delay= overrides)")
    parser.add_argument("--max-seconds", type=float, default=None, metavar="N",
                        help="stop by itself after N seconds (default: run until Ctrl-C)")
    parser.add_argument("--list", action="store_true", help="print the scenarios, one a line, and exit")
    args = parser.parse_args(argv)
    if args.list:
        width = max(map(len, SCENARIOS))
        for name in SCENARIOS:
            print(f"{name:<{width}}  {describe(name)}")
        return 0
    if not 0 <= args.delay <= MAX_DELAY:
        parser.error(f"--delay must be between 0 and {MAX_DELAY}")
    try:
        check_loopback(args.host)
    except ValueError as exc:
        parser.error(str(exc))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    server = DemoServer((args.host, args.port), args.delay)
    host, port = server.server_address[:2]
    log.info("demo upstream on http://%s:%s/v1 (scenarios: %s)", host, port, ", ".join(SCENARIOS))
    if args.max_seconds is not None:
        timer = threading.Timer(args.max_seconds, server.shutdown)
        timer.daemon = True
        timer.start()
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    log.info("demo upstream stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
