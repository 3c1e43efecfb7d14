"""OpenAI Responses API streams (``POST /v1/responses``): typed semantic events.

Each SSE block names its type twice, in the ``event`` field and in the data's
``"type"``; the data wins, so gateways that drop the ``event`` field still work.
The stream ends with ``response.completed``, ``response.incomplete`` or
``response.failed``; there is no ``[DONE]``, though some gateways add one.

Strategy for tool calls: a ``function_call`` output item opens the call (its
id and name) and ``function_call_arguments.delta`` events append to it, both
keyed by the item's ``output_index``. The ``.done`` events repeat the whole
arguments (and ``output_item.done`` the whole item), so they count only for
a call whose arguments did not arrive before. A ``custom_tool_call`` (a
custom tool's free-form input) goes the same way, with its ``input`` and
``custom_tool_call_input.delta``/``.done`` events.

``response.failed`` carries its error; ``response.incomplete`` its reason
(``incomplete_details.reason``) as the stop reason, and a reason of
``content_filter`` is noted as ``content-filtered``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..events import ServerSentEvent
from ..message import Message
from ..parts import Done, Error, Meta, Notice, Part, Reasoning, Refusal, Stop, Text, ToolCall, Usage
from .base import Handler, Interpreter, Provider, as_int, as_str, encode_event, error_message

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _need(obj: Any, key: str, kind: type[Any]) -> Any:
    """``obj[key]``, which must be a ``kind``; a TypeError makes it Malformed."""
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{key!r} is {type(value).__name__}, not {kind.__name__}")
    return value


def _key(payload: Any) -> str:
    return str(_need(payload, "output_index", int))


def _meta(interp: ResponsesInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    response = _need(payload, "response", dict)
    return [Meta(as_str(response.get("model")), as_str(response.get("id")))]


def _delta(make: Callable[[str], Part]) -> Handler:
    """A handler for the ``*.delta`` events that carry a text ``delta``."""

    def handler(interp: ResponsesInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
        delta = _need(payload, "delta", str)
        return [make(delta)] if delta else []

    return handler


#: Output item types that are tool calls, and the field holding their input.
CALL_INPUT = {"function_call": "arguments", "custom_tool_call": "input"}


def _call_item(payload: Any) -> dict[str, Any] | None:
    item = _need(payload, "item", dict)
    return item if item.get("type") in CALL_INPUT else None


def _item_added(interp: ResponsesInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    item = _call_item(payload)
    if item is None:
        return []
    call_id = as_str(item.get("call_id")) or as_str(item.get("id"))
    free_form = item["type"] == "custom_tool_call"
    return [ToolCall(key=_key(payload), id=call_id, name=as_str(item.get("name")), free_form=free_form)]


def _item_done(interp: ResponsesInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    # Only for a call whose arguments did not stream: the item is then all we get.
    item = _call_item(payload)
    key = _key(payload)
    if item is None or key in interp.streamed_arguments:
        return []
    interp.streamed_arguments.add(key)
    call_id = as_str(item.get("call_id")) or as_str(item.get("id"))
    arguments = _need(item, CALL_INPUT[item["type"]], str)
    free_form = item["type"] == "custom_tool_call"
    return [ToolCall(key=key, id=call_id, name=as_str(item.get("name")), arguments=arguments, free_form=free_form)]


def _arguments_delta(interp: ResponsesInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    key = _key(payload)
    delta = _need(payload, "delta", str)
    interp.streamed_arguments.add(key)
    return [ToolCall(key=key, arguments=delta)] if delta else []


def _arguments_done(field: str) -> Handler:
    """A handler for the ``*.done`` events that repeat a call's whole input in ``field``."""

    def handler(interp: ResponsesInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
        key = _key(payload)
        if key in interp.streamed_arguments:
            return []  # the deltas already carried these arguments
        interp.streamed_arguments.add(key)
        return [ToolCall(key=key, arguments=_need(payload, field, str))]

    return handler


def _usage(raw: dict[str, Any]) -> Usage:
    return Usage(
        raw=raw,
        input_tokens=as_int(raw.get("input_tokens")),
        output_tokens=as_int(raw.get("output_tokens")),
        total_tokens=as_int(raw.get("total_tokens")),
    )


def _error_from(err: Any) -> Error:
    if not isinstance(err, dict):
        return Error(error_message(err))
    code = err.get("code")
    return Error(error_message(err), as_str(err.get("type")), None if code is None else str(code))


def _stop_reason(kind: str, response: dict[str, Any]) -> str:
    if kind == "response.incomplete":
        details = response.get("incomplete_details")
        reason = as_str(details.get("reason")) if isinstance(details, dict) else None
        return reason or "incomplete"
    return kind.removeprefix("response.")


def _terminal(interp: ResponsesInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    kind = interp.key(event, payload)
    response = _need(payload, "response", dict)
    parts: list[Part] = [Meta(as_str(response.get("model")), as_str(response.get("id")))]
    if kind == "response.failed":
        err = response.get("error")
        parts.append(_error_from(err) if err is not None else Error("response failed"))
    reason = _stop_reason(kind, response)
    if reason == "content_filter":
        parts.append(Notice("content-filtered", "answer: response.incomplete, reason content_filter"))
    parts.append(Stop(reason))
    usage = response.get("usage")
    if isinstance(usage, dict):
        parts.append(_usage(usage))
    parts.append(Done(kind))
    return parts


def _error_event(interp: ResponsesInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    # The SDK documents code/message/param at the top level; some servers nest
    # them in an "error" object, as the other OpenAI APIs do.
    nested = payload.get("error")
    if isinstance(nested, dict):
        return [_error_from(nested)]
    code = payload.get("code")
    return [Error(error_message(payload), None, None if code is None else str(code))]


HANDLERS: dict[str, Handler] = {
    "response.created": _meta,
    "response.queued": _meta,
    "response.in_progress": _meta,
    "response.output_text.delta": _delta(Text),
    "response.refusal.delta": _delta(Refusal),
    "response.reasoning_text.delta": _delta(Reasoning),
    "response.reasoning_summary_text.delta": _delta(Reasoning),
    "response.output_item.added": _item_added,
    "response.output_item.done": _item_done,
    "response.function_call_arguments.delta": _arguments_delta,
    "response.function_call_arguments.done": _arguments_done("arguments"),
    "response.custom_tool_call_input.delta": _arguments_delta,
    "response.custom_tool_call_input.done": _arguments_done("input"),
    "response.completed": _terminal,
    "response.incomplete": _terminal,
    "response.failed": _terminal,
    "error": _error_event,
}


class ResponsesInterpreter(Interpreter):
    handlers = HANDLERS

    def __init__(self) -> None:
        #: Tool call keys whose arguments have arrived, so ``.done`` does not repeat them.
        self.streamed_arguments: set[str] = set()

    def interpret(self, event: ServerSentEvent) -> list[Part]:
        if event.data.strip() == "[DONE]":
            return [Done("[DONE]")]  # not the API's, but gateways append it
        return super().interpret(event)

    def key(self, event: ServerSentEvent, payload: Any) -> str:
        kind = payload.get("type") if isinstance(payload, dict) else None
        return kind if isinstance(kind, str) else event.event

    def is_complete(self, message: Message) -> bool:
        return any(marker in TERMINAL_EVENTS for marker in message.markers)


def _match_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return path.rstrip("/").endswith("/responses")


def _match_payload(event: ServerSentEvent, payload: Any) -> bool:
    return isinstance(payload, dict) and str(payload.get("type", "")).startswith("response.")


def _make_error_event(framing: str, message: str) -> bytes:
    """A top-level ``error`` event, as the Responses API sends one mid-stream."""
    payload = {"type": "error", "code": "upstream_truncated", "message": message, "param": None}
    return encode_event(payload, framing, "error")


PROVIDER = Provider(
    name="openai-responses",
    semconv_name="openai",
    interpreter=ResponsesInterpreter,
    match_request=_match_request,
    match_payload=_match_payload,
    order=20,
    missing_terminal="no response.completed, response.incomplete or response.failed came",
    terminal="response.completed, response.incomplete or response.failed",
    error_event=_make_error_event,
)
