"""Anthropic Messages streams (``POST /v1/messages``): typed SSE events, one
content block per index, tool input streamed as ``partial_json`` fragments.

Event order, per the Messages streaming docs: ``message_start``, then for each
block ``content_block_start`` / ``content_block_delta``... /
``content_block_stop``, then ``message_delta`` (stop reason, cumulative usage)
and ``message_stop``. ``ping`` may come anywhere and ``error`` may replace the
rest of the stream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..events import ServerSentEvent
from ..message import Message
from ..parts import Done, Error, Malformed, Meta, Part, Reasoning, Stop, Text, ToolCall, ToolResult, Usage
from .base import Interpreter, Provider, as_int, as_str, encode_event, error_message

#: Blocks whose input arrives as ``input_json_delta`` fragments.
_TOOL_USE_BLOCKS = frozenset({"tool_use", "server_tool_use"})

#: Event types that open (or keep alive) an Anthropic stream; used for detection.
_OPENING_TYPES = frozenset({"message_start", "content_block_start", "content_block_delta", "ping"})


def _usage(raw: dict[str, Any]) -> Usage:
    # Cache fields (cache_creation_input_tokens, cache_read_input_tokens...)
    # stay in ``raw``: Anthropic's input_tokens excludes them.
    return Usage(
        raw=raw,
        input_tokens=as_int(raw.get("input_tokens")),
        output_tokens=as_int(raw.get("output_tokens")),
    )


def _message_start(interp: AnthropicInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    message = payload["message"]
    parts: list[Part] = [Meta(as_str(message.get("model")), as_str(message.get("id")))]
    usage = message.get("usage")
    if isinstance(usage, dict):
        parts.append(_usage(usage))
    return parts


def _content_block_start(interp: AnthropicInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    index = payload["index"]
    block = payload["content_block"]
    kind = block["type"]
    interp.block_types[index] = kind
    if kind in _TOOL_USE_BLOCKS:
        tool_input = block.get("input")
        # Streamed tool_use blocks start with input {} and fill it through
        # deltas; a non-empty input here is already the whole input.
        arguments = json.dumps(tool_input, ensure_ascii=False) if isinstance(tool_input, dict) and tool_input else ""
        return [ToolCall(str(index), as_str(block.get("id")), as_str(block.get("name")), arguments)]
    if kind == "text":
        text = as_str(block.get("text"))
        return [Text(text)] if text else []
    if kind == "thinking":
        thinking = as_str(block.get("thinking")) or ""
        signature = as_str(block.get("signature")) or None
        return [Reasoning(thinking, signature=signature)] if thinking or signature else []
    if kind == "redacted_thinking":
        return [Reasoning("", hidden=True)]
    if isinstance(kind, str) and kind.endswith("_tool_result"):
        return [_server_tool_result(block)]
    return []


def _server_tool_result(block: dict[str, Any]) -> ToolResult:
    """A server tool's result block (web search, code execution...), which
    arrives whole in ``content_block_start``."""
    content = block.get("content")
    # Failures come as a content object whose type ends in "_error".
    failed = isinstance(content, dict) and str(content.get("type", "")).endswith("_error")
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return ToolResult(text, as_str(block.get("tool_use_id")), as_str(block.get("type")), failed)


def _string(value: Any, name: str) -> str:
    """``value``, which must be a str; a TypeError makes the payload Malformed."""
    if not isinstance(value, str):
        raise TypeError(f"{name} is {type(value).__name__}, not str")
    return value


def _content_block_delta(interp: AnthropicInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    delta = payload["delta"]
    kind = delta.get("type")
    if kind == "text_delta":
        text = _string(delta["text"], "text")
        return [Text(text)] if text else []
    if kind == "thinking_delta":
        thinking = _string(delta["thinking"], "thinking")
        return [Reasoning(thinking)] if thinking else []
    if kind == "signature_delta":
        return [Reasoning("", signature=_string(delta["signature"], "signature"))]
    if kind == "input_json_delta":
        fragment = delta["partial_json"]
        if not isinstance(fragment, str):
            raise TypeError(f"partial_json is {type(fragment).__name__}, not str")
        return [ToolCall(str(payload["index"]), arguments=fragment)] if fragment else []
    # citations_delta and delta types added later carry no text of their own.
    return []


def _content_block_stop(interp: AnthropicInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    # A tool_use block that got no input_json_delta has input {}: its
    # arguments stay "", which Message reads as {}.
    return []


def _message_delta(interp: AnthropicInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    parts: list[Part] = []
    reason = payload["delta"].get("stop_reason")
    if reason:
        parts.append(Stop(str(reason)))
    usage = payload.get("usage")
    if isinstance(usage, dict):
        parts.append(_usage(usage))
    return parts


def _message_stop(interp: AnthropicInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return [Done("message_stop")]


def _ping(interp: AnthropicInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return []


def _error(interp: AnthropicInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    err = payload.get("error", payload)
    if isinstance(err, dict):
        return [Error(error_message(err), as_str(err.get("type")))]
    return [Error(error_message(err))]


def _unexpected(interp: AnthropicInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return [Malformed("unexpected-shape", f"payload is a JSON {type(payload).__name__}, not an object")]


class AnthropicInterpreter(Interpreter):
    handlers = {
        "message_start": _message_start,
        "content_block_start": _content_block_start,
        "content_block_delta": _content_block_delta,
        "content_block_stop": _content_block_stop,
        "message_delta": _message_delta,
        "message_stop": _message_stop,
        "ping": _ping,
        "error": _error,
        "unexpected": _unexpected,
    }

    def __init__(self) -> None:
        #: Content block type by index, from ``content_block_start``.
        self.block_types: dict[int, str] = {}

    def key(self, event: ServerSentEvent, payload: Any) -> str:
        if not isinstance(payload, dict):
            return "unexpected"
        # The data's "type" repeats the event name; it survives proxies that drop "event:".
        kind = payload.get("type")
        return kind if isinstance(kind, str) else event.event

    def is_complete(self, message: Message) -> bool:
        return "message_stop" in message.markers


def _match_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    path = path.rstrip("/")
    return path.endswith("/v1/messages") or (path.endswith("/messages") and "anthropic-version" in headers)


def _match_payload(event: ServerSentEvent, payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    kind = payload.get("type")
    if not isinstance(kind, str) or kind not in _OPENING_TYPES or event.event not in ("message", kind):
        return False
    if kind == "message_start":
        return isinstance(payload.get("message"), dict)
    if kind == "content_block_start":
        return isinstance(payload.get("index"), int) and isinstance(payload.get("content_block"), dict)
    if kind == "content_block_delta":
        return isinstance(payload.get("index"), int) and isinstance(payload.get("delta"), dict)
    return set(payload) == {"type"}  # ping


def _make_error_event(framing: str, message: str) -> bytes:
    """An ``error`` event, as the Messages API sends one mid-stream."""
    return encode_event({"type": "error", "error": {"type": "api_error", "message": message}}, framing, "error")


PROVIDER = Provider(
    name="anthropic",
    semconv_name="anthropic",
    interpreter=AnthropicInterpreter,
    match_request=_match_request,
    match_payload=_match_payload,
    order=20,
    terminal="message_stop",
    error_event=_make_error_event,
)
