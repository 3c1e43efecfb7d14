"""Cohere v2 chat streams (``POST /v2/chat`` with ``stream: true``): typed SSE events.

Each event names its type twice, in the ``event`` field and in the data's
``"type"`` (the data wins). Per Cohere's "Streaming" docs: ``message-start``
(the id), then per content item ``content-start``, ``content-delta``
(``delta.message.content.text``, or ``.thinking`` for reasoning models) and
``content-end``; a ``tool-plan-delta`` carries the plan the model writes
before it calls tools; each tool call is ``tool-call-start`` (its id and
name), ``tool-call-delta`` (argument fragments) and ``tool-call-end``, all
keyed by ``index``; citations come as ``citation-start``/``citation-end``.
``message-end`` ends the answer with ``finish_reason`` (``COMPLETE``,
``MAX_TOKENS``, ``TOOL_CALL``, ``ERROR``...), the usage and, on ``ERROR``,
an ``error`` message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..events import ServerSentEvent
from ..message import Message
from ..parts import Done, Error, Meta, Part, Reasoning, Stop, Text, ToolCall, Usage
from .base import Handler, Interpreter, Provider, as_int, as_str, dig, encode_event

END = "message-end"


def _message(payload: Any) -> dict[str, Any]:
    """``delta.message``, which must be an object; anything else is Malformed."""
    message = payload["delta"]["message"]
    if not isinstance(message, dict):
        raise TypeError(f"delta.message is {type(message).__name__}, not dict")
    return message


def _start(interp: CohereInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return [Meta(None, as_str(payload.get("id")))]


def _content(interp: CohereInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    content = _message(payload).get("content")
    if not isinstance(content, dict):
        return []  # message-start's empty list, or nothing
    parts: list[Part] = []
    thinking = as_str(content.get("thinking"))
    if thinking:
        parts.append(Reasoning(thinking))
    text = as_str(content.get("text"))
    if text:
        parts.append(Text(text))
    return parts


def _tool_plan(interp: CohereInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    plan = as_str(_message(payload).get("tool_plan"))
    return [Reasoning(plan)] if plan else []


def _tool_call(interp: CohereInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    call = _message(payload).get("tool_calls")
    if not isinstance(call, dict):
        return []
    function = call.get("function")
    if not isinstance(function, dict):
        function = {}
    key = str(as_int(payload.get("index")) or 0)
    arguments = as_str(function.get("arguments")) or ""
    call_id, name = as_str(call.get("id")), as_str(function.get("name"))
    if call_id is None and name is None and not arguments:
        return []
    return [ToolCall(key=key, id=call_id, name=name, arguments=arguments)]


def _usage(raw: dict[str, Any]) -> Usage:
    # "tokens" counts what the model saw and wrote; "billed_units" what is billed.
    counts = raw.get("tokens") if isinstance(raw.get("tokens"), dict) else raw.get("billed_units")
    counts = counts if isinstance(counts, dict) else {}
    return Usage(raw=raw, input_tokens=as_int(counts.get("input_tokens")),
                 output_tokens=as_int(counts.get("output_tokens")))


def _end(interp: CohereInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    delta = payload.get("delta") if isinstance(payload.get("delta"), dict) else {}
    parts: list[Part] = []
    error = delta.get("error")
    if error:
        parts.append(Error(as_str(error) or str(error), None, as_str(delta.get("finish_reason"))))
    reason = as_str(delta.get("finish_reason"))
    if reason:
        parts.append(Stop(reason))
    if isinstance(delta.get("usage"), dict):
        parts.append(_usage(delta["usage"]))
    parts.append(Done(END))
    return parts


def _nothing(interp: CohereInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return []


HANDLERS: dict[str, Handler] = {
    "message-start": _start,
    "content-start": _content,
    "content-delta": _content,
    "content-end": _nothing,
    "tool-plan-delta": _tool_plan,
    "tool-call-start": _tool_call,
    "tool-call-delta": _tool_call,
    "tool-call-end": _nothing,
    "citation-start": _nothing,
    "citation-end": _nothing,
    END: _end,
}


class CohereInterpreter(Interpreter):
    handlers = HANDLERS

    def key(self, event: ServerSentEvent, payload: Any) -> str:
        kind = payload.get("type") if isinstance(payload, dict) else None
        return kind if isinstance(kind, str) else event.event

    def is_complete(self, message: Message) -> bool:
        return END in message.markers


def _match_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return path.rstrip("/").endswith("/v2/chat")


def _match_payload(event: ServerSentEvent, payload: Any) -> bool:
    # Only the opening event: its type and its delta.message are Cohere's own.
    return (isinstance(payload, dict) and payload.get("type") == "message-start"
            and isinstance(dig(payload, "delta", "message"), dict))


def _make_error_event(framing: str, message: str) -> bytes:
    """A ``message-end`` with ``finish_reason: ERROR``, how Cohere ends a failed answer."""
    payload = {"type": END, "delta": {"finish_reason": "ERROR", "error": message}}
    return encode_event(payload, framing, END)


PROVIDER = Provider(
    name="cohere",
    semconv_name="cohere",
    interpreter=CohereInterpreter,
    match_request=_match_request,
    match_payload=_match_payload,
    order=40,
    missing_terminal="no message-end event came",
    terminal="a message-end event",
    error_event=_make_error_event,
)
