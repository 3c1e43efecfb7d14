"""Ollama's native streams (``/api/chat`` and ``/api/generate``): NDJSON, one
JSON object per line, the last one with ``done: true`` and the counters.

``/api/chat`` lines carry ``message.content``, ``message.thinking`` and
``message.tool_calls`` (whole calls, arguments as an object); ``/api/generate``
lines carry ``response`` and ``thinking``. A failure is a line ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..events import ServerSentEvent
from ..message import Message
from ..parts import Done, Error, Malformed, Meta, Part, Reasoning, Stop, Text, ToolCall, Usage
from .base import Interpreter, Provider, as_int, as_str, encode_event, error_message

#: Counters of the final line, kept as the raw usage when present.
_USAGE_FIELDS = (
    "prompt_eval_count",
    "eval_count",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)


def _text_parts(source: dict[str, Any], text_field: str) -> list[Part]:
    parts: list[Part] = []
    thinking = source.get("thinking")
    if isinstance(thinking, str) and thinking:
        parts.append(Reasoning(thinking))
    text = source.get(text_field)
    if isinstance(text, str) and text:
        parts.append(Text(text))
    return parts


def _tool_calls(interp: OllamaInterpreter, calls: list[Any]) -> list[Part]:
    parts: list[Part] = []
    for call in calls:
        function = call["function"]
        arguments = function.get("arguments")
        # Ollama sends each call whole, with arguments as an object.
        if arguments is None:
            encoded = ""
        elif isinstance(arguments, str):
            encoded = arguments
        else:
            encoded = json.dumps(arguments, ensure_ascii=False)
        parts.append(ToolCall(str(interp.tool_calls), as_str(call.get("id")), as_str(function.get("name")), encoded))
        interp.tool_calls += 1
    return parts


def _final(payload: dict[str, Any]) -> list[Part]:
    raw = {name: payload[name] for name in _USAGE_FIELDS if name in payload}
    parts: list[Part] = []
    if raw:
        parts.append(
            Usage(raw=raw, input_tokens=as_int(raw.get("prompt_eval_count")), output_tokens=as_int(raw.get("eval_count")))
        )
    parts.append(Stop(as_str(payload.get("done_reason")) or "stop"))
    parts.append(Done("done"))
    return parts


def _line(interp: OllamaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    parts: list[Part] = []
    if not interp.meta_seen and isinstance(payload.get("model"), str):
        interp.meta_seen = True
        parts.append(Meta(payload["model"]))
    message = payload.get("message")
    if message is not None:  # /api/chat
        parts += _text_parts(message, "content")
        calls = message.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise TypeError(f"tool_calls is {type(calls).__name__}, not a list")
            parts += _tool_calls(interp, calls)
    else:  # /api/generate
        parts += _text_parts(payload, "response")
    if payload.get("done") is True:
        parts += _final(payload)
    return parts


def _error(interp: OllamaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return [Error(error_message(payload["error"]))]


def _unexpected(interp: OllamaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return [Malformed("unexpected-shape", f"line is a JSON {type(payload).__name__}, not an object")]


class OllamaInterpreter(Interpreter):
    handlers = {"line": _line, "error": _error, "unexpected": _unexpected}

    def __init__(self) -> None:
        self.meta_seen = False
        #: Tool calls so far: each call is whole, so a running count is its key.
        self.tool_calls = 0

    def key(self, event: ServerSentEvent, payload: Any) -> str:
        # NDJSON has no event types: every object is a line, or an error.
        if not isinstance(payload, dict):
            return "unexpected"
        return "error" if payload.get("error") is not None else "line"

    def is_complete(self, message: Message) -> bool:
        return "done" in message.markers


def _match_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return path.rstrip("/").endswith(("/api/chat", "/api/generate"))


def _match_payload(event: ServerSentEvent, payload: Any) -> bool:
    # Ollama's own server sends ``created_at`` and ``done`` on every line, but
    # clients accept lines without them (the ollama-python tests stream
    # ``{"model", "message"}`` and ``{"model", "response"}`` only): a model
    # name with a chat message, a generate response or a done flag is enough.
    # Other providers' payloads carry no top-level ``model`` next to these.
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
        return False
    if "choices" in payload or "type" in payload:
        return False  # an OpenAI chunk, or an event of a typed stream
    message = payload.get("message")
    return (
        (isinstance(message, dict) and "role" in message)
        or isinstance(payload.get("response"), str)
        or isinstance(payload.get("done"), bool)
    )


def _make_error_event(framing: str, message: str) -> bytes:
    """``{"error": "..."}``, the line Ollama's server sends when generation fails."""
    return encode_event({"error": message}, framing)


PROVIDER = Provider(
    name="ollama",
    interpreter=OllamaInterpreter,
    match_request=_match_request,
    match_payload=_match_payload,
    framing="ndjson",
    order=30,
    terminal='a line with "done": true',
    error_event=_make_error_event,
)
