"""Amazon Bedrock's streams, in the AWS event stream's binary frames (eventstream.py).

``POST /model/{modelId}/converse-stream`` (ConverseStream) sends one frame
per event, named by its ``:event-type`` header, its payload the event's JSON
(plus a padding field ``p``): ``messageStart`` (role), ``contentBlockStart``
(``start.toolUse`` with ``toolUseId`` and ``name``), ``contentBlockDelta``
(``delta.text``, ``delta.reasoningContent`` text / signature /
redactedContent, ``delta.toolUse.input`` fragments), ``contentBlockStop``,
``messageStop`` (``stopReason``) and then ``metadata`` (``usage``,
``metrics.latencyMs``). ``messageStop`` is the terminal signal.

``POST /model/{modelId}/invoke-with-response-stream`` sends ``chunk`` events
whose payload ``{"bytes": "<base64>"}`` is one event of the model's own
format: Anthropic Messages events for Claude, OpenAI chat chunks, Converse
events wrapped in their name for Nova, or a model's plain JSON (Llama,
Titan, Mistral, Cohere). Each is decoded and read by that format's
interpreter, found by the registry's payload matchers on the first chunk;
its terminal signal is the stream's.

Errors arrive as frames with ``:message-type exception`` and an
``:exception-type`` header (``throttlingException``,
``modelStreamErrorException``, ``validationException``,
``internalServerException``, ``serviceUnavailableException``...), the
payload ``{"message": ...}``; or ``:message-type error`` with
``:error-code`` / ``:error-message`` headers.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from ..eventstream import encode_frame
from ..events import ServerSentEvent
from ..message import Message
from ..parts import Done, Error, Malformed, Part, Reasoning, Stop, Text, ToolCall, Usage
from .base import Interpreter, Provider, as_int, as_str, dig, encode_event, error_message, loads

#: The streaming routes: ConverseStream and InvokeModelWithResponseStream.
_PATH = re.compile(r"/model/[^/]+/(?:converse-stream|invoke-with-response-stream)/?\Z")

#: Event types of a Converse stream (``:event-type``).
_CONVERSE_TYPES = frozenset(
    {"messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"}
)


def _headers(event: ServerSentEvent) -> Mapping[str, Any]:
    headers = getattr(event, "headers", None)
    return headers if isinstance(headers, Mapping) else {}


def _message_start(interp: BedrockInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return []  # the role is always "assistant"


def _content_block_start(interp: BedrockInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    tool = dig(payload, "start", "toolUse")
    if not isinstance(tool, dict):
        return []
    return [ToolCall(str(payload.get("contentBlockIndex", 0)), as_str(tool.get("toolUseId")), as_str(tool.get("name")))]


def _content_block_delta(interp: BedrockInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    delta = payload["delta"]
    if "text" in delta:
        text = delta["text"]
        if not isinstance(text, str):
            raise TypeError(f"delta.text is {type(text).__name__}, not str")
        return [Text(text)] if text else []
    reasoning = delta.get("reasoningContent")
    if isinstance(reasoning, dict):
        if "redactedContent" in reasoning:
            return [Reasoning("", hidden=True)]
        signature = as_str(reasoning.get("signature"))
        if signature:
            return [Reasoning("", signature=signature)]
        text = reasoning.get("text")
        if not isinstance(text, str):
            raise TypeError(f"reasoningContent.text is {type(text).__name__}, not str")
        return [Reasoning(text)] if text else []
    tool = delta.get("toolUse")
    if isinstance(tool, dict):
        fragment = tool["input"]
        if not isinstance(fragment, str):
            raise TypeError(f"toolUse.input is {type(fragment).__name__}, not str")
        return [ToolCall(str(payload.get("contentBlockIndex", 0)), arguments=fragment)] if fragment else []
    return []  # citation and later delta types carry no text of their own


def _content_block_stop(interp: BedrockInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return []


def _message_stop(interp: BedrockInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    reason = payload.get("stopReason")
    parts: list[Part] = [Stop(str(reason))] if reason else []
    return parts + [Done("messageStop")]


def _metadata(interp: BedrockInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    usage = payload.get("usage")
    parts: list[Part] = []
    if isinstance(usage, dict):
        raw = dict(usage)
        latency = dig(payload, "metrics", "latencyMs")
        if latency is not None:
            raw["latencyMs"] = latency
        parts.append(Usage(raw, as_int(usage.get("inputTokens")), as_int(usage.get("outputTokens")),
                           as_int(usage.get("totalTokens"))))
    return parts


def _chunk(interp: BedrockInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    """InvokeModelWithResponseStream: a model's own event, base64 in ``bytes``."""
    encoded = payload["bytes"]
    if not isinstance(encoded, str):
        raise TypeError(f"chunk bytes is {type(encoded).__name__}, not str")
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        return [Malformed("unexpected-shape", f"chunk bytes are not base64 of UTF-8 text: {exc}")]
    inner = ServerSentEvent("message", text, None, None, event.raw, event.offset)
    if interp.inner is None:
        interp.inner = _inner_interpreter(interp, inner)
        if interp.inner is None:
            return [Malformed("invalid-json", f"chunk bytes are not JSON: {text[:60]!r}")]
    if interp.inner is interp:
        return interp.interpret_wrapped(inner)
    parts = interp.inner.interpret(inner)
    metrics = None
    if "amazon-bedrock-invocationMetrics" in text:  # on the model's last event only: not parsed twice for the rest
        try:
            metrics = dig(loads(text), "amazon-bedrock-invocationMetrics")
        except (ValueError, RecursionError):
            pass  # the inner interpreter has reported it
    if isinstance(metrics, dict):
        # Bedrock's own count, on the model's last event.
        parts.append(Usage({"amazon-bedrock-invocationMetrics": metrics}, as_int(metrics.get("inputTokenCount")),
                           as_int(metrics.get("outputTokenCount"))))
    return parts


def _exception(event: ServerSentEvent) -> list[Part]:
    try:
        payload = loads(event.data) if event.data.strip() else {}
    except (ValueError, RecursionError):
        payload = event.data
    message = error_message(payload) if payload else event.event
    return [Error(message, event.event)]


def _typed_exception(interp: BedrockInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    """An error named by its payload's ``__type`` (an AWS JSON error outside an exception frame)."""
    return [Error(error_message(payload), payload["__type"])]


def _unexpected(interp: BedrockInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return [Malformed("unexpected-shape", f"payload is a JSON {type(payload).__name__}, not an object")]


class BedrockInterpreter(Interpreter):
    handlers = {
        "messageStart": _message_start,
        "contentBlockStart": _content_block_start,
        "contentBlockDelta": _content_block_delta,
        "contentBlockStop": _content_block_stop,
        "messageStop": _message_stop,
        "metadata": _metadata,
        "chunk": _chunk,
        "exception": _typed_exception,
        "unexpected": _unexpected,
    }

    def __init__(self) -> None:
        #: InvokeModel streams: the interpreter of the model's own events
        #: (this one for Converse events wrapped in their name), set by the first chunk.
        self.inner: Interpreter | None = None

    def interpret(self, event: ServerSentEvent) -> list[Part]:
        headers = _headers(event)
        kind = headers.get(":message-type")
        if kind == "exception" or (kind is None and event.event.endswith("Exception")):
            return _exception(event)
        if kind == "error":
            message = str(headers.get(":error-message") or event.data or "error")
            code = headers.get(":error-code")
            return [Error(message, None, str(code) if code is not None else None)]
        return super().interpret(event)

    def interpret_wrapped(self, event: ServerSentEvent) -> list[Part]:
        """A Converse event wrapped in its name, ``{"contentBlockDelta": {...}}`` (Nova's InvokeModel stream)."""
        try:
            payload = loads(event.data)
        except (ValueError, RecursionError):
            return [Malformed("invalid-json", f"chunk is not JSON: {event.data[:60]!r}")]
        if not isinstance(payload, dict) or len(payload) != 1:
            return []
        ((name, inner),) = payload.items()
        return super().interpret(ServerSentEvent(name, json.dumps(inner), None, None, event.raw, event.offset))

    def key(self, event: ServerSentEvent, payload: Any) -> str:
        if not isinstance(payload, dict):
            return "unexpected"
        return "exception" if isinstance(payload.get("__type"), str) else event.event

    def is_complete(self, message: Message) -> bool:
        if self.inner is not None and self.inner is not self:
            return self.inner.is_complete(message)
        return "messageStop" in message.markers


class ModelTextInterpreter(Interpreter):
    """The plain JSON events of models that have no stream format of their
    own elsewhere: Meta Llama (``generation``, ``stop_reason``), Amazon Titan
    (``outputText``, ``completionReason``), Mistral (``outputs[0].text`` and
    ``stop_reason``), Cohere (``text``, ``finish_reason``)."""

    def interpret(self, event: ServerSentEvent) -> list[Part]:
        try:
            payload = loads(event.data)
        except (ValueError, RecursionError):
            return [Malformed("invalid-json", f"chunk is not JSON: {event.data[:60]!r}")]
        if not isinstance(payload, dict):
            return []
        source = dig(payload, "outputs", 0) if isinstance(payload.get("outputs"), list) else payload
        if not isinstance(source, dict):
            return []
        parts: list[Part] = []
        for field in ("generation", "outputText", "text"):
            text = source.get(field)
            if isinstance(text, str) and text:
                parts.append(Text(text))
                break
        for field in ("stop_reason", "completionReason", "finish_reason"):
            reason = source.get(field)
            if isinstance(reason, str) and reason:
                parts += [Stop(reason), Done(field)]
                break
        return parts


def _inner_interpreter(interp: BedrockInterpreter, event: ServerSentEvent) -> Interpreter | None:
    """The interpreter for an InvokeModel stream's model events, from the
    first one: ``interp`` itself for wrapped Converse events."""
    from . import detect_from_event, get  # here: the registry imports this module

    try:
        payload = loads(event.data)
    except (ValueError, RecursionError):
        return None  # not JSON: this chunk is reported, the next one decides
    if isinstance(payload, dict) and len(payload) == 1 and next(iter(payload)) in _CONVERSE_TYPES:
        return interp
    name = detect_from_event(event)
    if name is not None and name != PROVIDER.name:
        return get(name).interpreter()
    return ModelTextInterpreter()


def wrapped_event_name(interp: Interpreter, event: ServerSentEvent) -> str | None:
    """What an InvokeModel ``chunk`` event carries, named as the wrapped
    model's own interpreter names it (Anthropic's ``content_block_delta``,
    a wrapped Converse event's name), or None when nothing more is known.
    For the live log: it decodes the chunk again, so it is not for every event."""
    if event.event != "chunk" or not isinstance(interp, BedrockInterpreter) or interp.inner is None:
        return None
    try:
        encoded = loads(event.data).get("bytes")
        text = base64.b64decode(encoded, validate=True).decode("utf-8") if isinstance(encoded, str) else ""
        payload = loads(text)
    except (ValueError, RecursionError, AttributeError, binascii.Error):
        return None
    if interp.inner is interp:  # a Converse event wrapped in its name
        return next(iter(payload)) if isinstance(payload, dict) and len(payload) == 1 else None
    name = interp.inner.key(ServerSentEvent("message", text, None, None, event.raw, event.offset), payload)
    return None if name == "message" else name


def _match_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return _PATH.search(path) is not None


def _match_payload(event: ServerSentEvent, payload: Any) -> bool:
    kind = _headers(event).get(":message-type")
    if kind in ("exception", "error"):
        return True  # only AWS event streams carry these headers
    if not isinstance(payload, dict):
        return False
    if event.event == "chunk":
        return isinstance(payload.get("bytes"), str)
    if event.event == "contentBlockDelta":
        return isinstance(payload.get("delta"), dict)
    return event.event in _CONVERSE_TYPES and ("p" in payload or bool(_headers(event)))


def _make_error_event(framing: str, message: str) -> bytes:
    """An ``internalServerException``, as Bedrock sends one mid-stream: an
    exception frame; in a text framing, an event of that name whose payload
    names it too (``__type``, as AWS's JSON errors do), for lines without names."""
    if framing == "eventstream":
        headers = {":message-type": "exception", ":exception-type": "internalServerException",
                   ":content-type": "application/json"}
        return encode_frame(headers, json.dumps({"message": message}).encode())
    return encode_event({"message": message, "__type": "internalServerException"}, framing,
                        "internalServerException")


PROVIDER = Provider(
    name="bedrock",
    semconv_name="aws.bedrock",
    interpreter=BedrockInterpreter,
    match_request=_match_request,
    match_payload=_match_payload,
    framing="eventstream",
    order=25,
    terminal="messageStop (ConverseStream) or the model's own end event (InvokeModelWithResponseStream)",
    missing_terminal="no messageStop",
    error_event=_make_error_event,
)
