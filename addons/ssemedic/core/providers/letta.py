"""Letta agent streams (``POST /v1/agents/{agent_id}/messages[/stream]``): SSE
``data:`` objects told apart by ``message_type``, ended by ``data: [DONE]``.

Strategy: the reply reaches the client in one of two forms. Modern agents
send ``assistant_message`` text. Legacy (MemGPT-style) agents answer through a
``send_message`` tool call whose ``message`` argument is the reply, its
arguments possibly streamed in fragments. Both become ``Text``; the detour is
recorded as ``via="send_message"``, once per call, when its arguments first
parse. ``usage_statistics`` may repeat the run's messages in
``steps_messages``; a reply found there that was not streamed is recovered
as ``Text(via="steps_messages")``.

The ``letta`` repair (``LettaRewriter``) delivers a Letta reply in the shape
the client reads (``letta_shape``). ``letta``: after the event that completes a
reply hidden in ``send_message`` (or found only in ``steps_messages``), an
``assistant_message`` event with its text is added. ``openai``: for clients
of an OpenAI-style router (Open WebUI, the OpenAI SDKs read only
``choices[0].delta``), every Letta event becomes an OpenAI chat chunk that
*keeps all its Letta fields* and adds ``object: chat.completion.chunk`` and
``choices: [{index, delta, finish_reason}]``: the reply as
``delta.content``, reasoning as ``delta.reasoning_content``, ``delta: {}``
for events without text (so ``choices[0]`` always exists). A custom client
reading ``message_type`` or ``assistant_message.content`` still finds them:
nothing the upstream sent is removed. A ``finish_reason`` chunk comes before
``[DONE]``. ``auto`` (the option's default) means ``openai`` when the request
path ends in ``/chat/completions``, ``letta`` otherwise.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from ..events import ServerSentEvent, dumps, loads
from ..message import Message
from ..parts import Done, Error, Malformed, Part, Reasoning, Stop, Text, ToolCall, ToolResult, Usage
from .base import Interpreter, Provider, as_int, as_str, encode_event, error_message

#: The legacy tool whose ``message`` argument is the assistant's reply.
SEND_MESSAGE = "send_message"

_AGENT_MESSAGES_PATH = re.compile(r"/agents/[^/]+/messages(?:/stream)?/?$")

#: usage_statistics fields that are not usage (``steps_messages`` can be the whole run).
_NOT_USAGE = frozenset({"message_type", "steps_messages"})


def _content_text(content: Any) -> str:
    """Text of a content field: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise TypeError(f"content is {type(content).__name__}, not a string or a list of parts")


def _loose_text(content: Any) -> str:
    """Like ``_content_text``, but "" for anything else: ``steps_messages`` is a
    best-effort extra, and one odd entry must not cost the usage beside it."""
    try:
        return _content_text(content)
    except TypeError:
        return ""


def _send_message_text(arguments: Any) -> str | None:
    """The reply in a complete ``send_message`` arguments string, or None."""
    if not isinstance(arguments, str):
        return None
    try:
        decoded = loads(arguments)
    except ValueError:
        return None
    return as_str(decoded.get("message")) if isinstance(decoded, dict) else None


def _reasoning(interp: LettaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    text = payload.get("reasoning")
    if not isinstance(text, str):
        raise TypeError(f"reasoning is {type(text).__name__}, not str")
    signature = as_str(payload.get("signature")) or None
    return [Reasoning(text, signature=signature)] if text or signature else []


def _hidden_reasoning(interp: LettaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return [Reasoning(as_str(payload.get("hidden_reasoning")) or "", hidden=True)]


def _assistant(interp: LettaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    text = _content_text(payload.get("content"))
    message_id = as_str(payload.get("id"))
    if message_id:
        interp.replied.add(message_id)
    return interp.text(text) if text else []


def _tool_call(interp: LettaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    # ``tool_calls`` (a list, or one delta) supersedes the deprecated ``tool_call``.
    calls = payload.get("tool_calls")
    if isinstance(calls, dict):
        calls = [calls]
    if not calls:
        single = payload.get("tool_call")
        calls = [] if single is None else [single]
    if not isinstance(calls, list):
        raise TypeError(f"tool_calls is {type(calls).__name__}, not a list")
    message_id = as_str(payload.get("id"))
    parts: list[Part] = []
    for call in calls:
        parts += interp.tool_call_piece(call, message_id)
    return parts


def _tool_return(interp: LettaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    # ``tool_returns`` (multi-tool) supersedes the deprecated single fields.
    returns = payload.get("tool_returns")
    if not returns:
        returns = [payload]
    if not isinstance(returns, list):
        raise TypeError(f"tool_returns is {type(returns).__name__}, not a list")
    parts: list[Part] = []
    for item in returns:
        call_id = as_str(item.get("tool_call_id"))
        raw = item.get("tool_return")
        content = raw if isinstance(raw, str) else _content_text(raw)
        name = interp.names.get(call_id or "") or as_str(payload.get("name"))
        # A send_message return ("None") carries no text: the call already gave it.
        parts.append(ToolResult(content, call_id, name, item.get("status") == "error"))
    return parts


def _usage(interp: LettaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    raw = {k: v for k, v in payload.items() if k not in _NOT_USAGE}
    parts: list[Part] = [
        Usage(
            raw=raw,
            input_tokens=as_int(payload.get("prompt_tokens")),
            output_tokens=as_int(payload.get("completion_tokens")),
            total_tokens=as_int(payload.get("total_tokens")),
        )
    ]
    steps = payload.get("steps_messages")
    if steps is None:
        return parts
    if not isinstance(steps, list):
        # Keep the usage; report only the part we cannot read.
        return parts + [Malformed("unexpected-shape", f"steps_messages is {type(steps).__name__}, not a list")]
    for step in steps:
        for message in step if isinstance(step, list) else ():
            if isinstance(message, dict):
                for reply_id, text in _replies(message):
                    parts += interp.recovered(reply_id, text)
    return parts


def _replies(message: dict[str, Any]) -> Iterator[tuple[str | None, str]]:
    """(id, text) of the assistant replies in one ``steps_messages`` entry: a
    Letta message, or an internal message with OpenAI-style ``tool_calls``."""
    kind = message.get("message_type")
    if kind == "assistant_message":
        yield as_str(message.get("id")), _loose_text(message.get("content"))
    elif kind == "tool_call_message":
        calls = message.get("tool_calls") or [message.get("tool_call")]
        for call in calls if isinstance(calls, list) else [calls]:
            if isinstance(call, dict) and call.get("name") == SEND_MESSAGE:
                text = _send_message_text(call.get("arguments"))
                if text is not None:
                    yield as_str(call.get("tool_call_id")), text
    elif message.get("role") == "assistant":
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            # Legacy agents: content is inner monologue, the reply is send_message.
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and function.get("name") == SEND_MESSAGE:
                    text = _send_message_text(function.get("arguments"))
                    if text is not None:
                        yield as_str(call.get("id")), text
        else:
            content = message.get("content")
            yield as_str(message.get("id")), _loose_text(content if content is not None else message.get("text"))


def _stop_reason(interp: LettaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    reason = payload["stop_reason"]
    if not isinstance(reason, str):
        raise TypeError(f"stop_reason is {type(reason).__name__}, not str")
    return [Stop(reason)]


def _ping(interp: LettaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return []


def _error_message(interp: LettaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    message = as_str(payload.get("message"))
    detail = as_str(payload.get("detail"))
    error_type = as_str(payload.get("error_type"))
    text = f"{message}: {detail}" if message and detail and detail != message else message or detail or error_type
    return [Error(text or "unknown error", error_type)]


def _error_object(interp: LettaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    # {"error": {...}}, or an ``event: error`` whose data is the error itself.
    err = payload.get("error", payload)
    if isinstance(err, dict):
        code = err.get("code")
        error_type = as_str(err.get("type")) or as_str(err.get("error_type"))
        return [Error(error_message(err), error_type, None if code is None else str(code))]
    return [Error(error_message(err))]


def _unexpected(interp: LettaInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    return [Malformed("unexpected-shape", f"payload is a JSON {type(payload).__name__}, not an object")]


class LettaInterpreter(Interpreter):
    handlers = {
        "reasoning_message": _reasoning,
        "hidden_reasoning_message": _hidden_reasoning,
        "assistant_message": _assistant,
        "tool_call_message": _tool_call,
        # A tool call held for human approval is still the model's tool call.
        "approval_request_message": _tool_call,
        "tool_return_message": _tool_return,
        "usage_statistics": _usage,
        "stop_reason": _stop_reason,
        "ping": _ping,
        "error_message": _error_message,
        "error": _error_object,
        "unexpected": _unexpected,
    }

    def __init__(self) -> None:
        #: Tool call key by message id, for fragments that omit ``tool_call_id``.
        self.keys_by_message: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.arguments: dict[str, str] = {}
        #: Message ids and tool call ids whose reply text was already emitted.
        self.replied: set[str] = set()
        self.streamed: list[str] = []

    def interpret(self, event: ServerSentEvent) -> list[Part]:
        if event.data.strip() == "[DONE]":
            return [Done("[DONE]")]
        return super().interpret(event)

    def key(self, event: ServerSentEvent, payload: Any) -> str:
        if not isinstance(payload, dict):
            return "unexpected"
        kind = payload.get("message_type")
        if isinstance(kind, str):
            return kind
        return "error" if payload.get("error") is not None else event.event

    def is_complete(self, message: Message) -> bool:
        return "[DONE]" in message.markers or message.finish_reason is not None

    # -- state used by the handlers ----------------------------------------

    def text(self, text: str, via: str | None = None) -> list[Part]:
        self.streamed.append(text)
        return [Text(text, via)]

    def tool_call_piece(self, call: Any, message_id: str | None) -> list[Part]:
        """One tool call (or fragment of one); the reply too once a
        ``send_message`` call's arguments are complete."""
        call_id = as_str(call.get("tool_call_id"))
        if call_id:
            key = call_id
            if message_id:
                self.keys_by_message[message_id] = key
        else:
            key = self.keys_by_message.get(message_id or "") or message_id or "0"
        name = as_str(call.get("name"))
        fragment = call.get("arguments") or ""
        if not isinstance(fragment, str):
            raise TypeError(f"arguments is {type(fragment).__name__}, not str")
        if name and key not in self.names:
            self.names[key] = name
        self.arguments[key] = self.arguments.get(key, "") + fragment
        parts: list[Part] = [ToolCall(key, call_id, name, fragment)]
        if self.names.get(key) == SEND_MESSAGE and key not in self.replied:
            reply = _send_message_text(self.arguments[key])
            if reply is not None:
                self.replied.add(key)
                parts += self.text(reply, SEND_MESSAGE)
        return parts

    def recovered(self, reply_id: str | None, text: str) -> list[Part]:
        """A reply found in ``steps_messages``, unless it was already streamed."""
        if not text or (reply_id and reply_id in self.replied) or text in "".join(self.streamed):
            return []
        if reply_id:
            self.replied.add(reply_id)
        return self.text(text, "steps_messages")


def _match_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return _AGENT_MESSAGES_PATH.search(path) is not None


def _match_payload(event: ServerSentEvent, payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("message_type"), str)


def _make_error_event(framing: str, message: str) -> bytes:
    """An ``error_message``, as a Letta server sends one mid-stream."""
    return encode_event({"message_type": "error_message", "error_type": "upstream_truncated", "message": message},
                        framing)


# -- the letta repair ------------------------------------------------------------------

#: The shapes the ``letta`` repair can write, and ``auto``.
LETTA_SHAPES = ("auto", "openai", "letta")


def letta_shape(option: str, path: str) -> str:
    """``openai`` or ``letta``: the shape the ``letta`` repair writes for a request on ``path``."""
    if option not in LETTA_SHAPES:
        raise ValueError(f"{option!r} is not one of {', '.join(LETTA_SHAPES)}")
    if option != "auto":
        return option
    return "openai" if path.split("?", 1)[0].rstrip("/").endswith("/chat/completions") else "letta"


def check_shape(shape: str) -> str:
    """``shape`` if the ``letta`` repair can write it (``auto`` resolved); else ValueError."""
    if shape not in LETTA_SHAPES[1:]:
        raise ValueError(f"letta_shape must be 'openai' or 'letta', not {shape!r}")
    return shape


class LettaRewriter:
    """One stream's Letta events in the shape its client reads (see the module docstring)."""

    def __init__(self, shape: str) -> None:
        self.shape = check_shape(shape)
        self._finish_sent = False

    def rewrite(self, index: int, event: ServerSentEvent, parts: tuple[Part, ...], changes: Counter[str]) -> bytes:
        if self.shape == "openai":
            return self._openai_chunk(index, event, parts, changes)
        texts = [p.text for p in parts if isinstance(p, Text) and p.via is not None]
        if not texts:
            return event.raw
        changes["assistant_message added for send_message text"] += 1
        payload = {"message_type": "assistant_message", "content": "".join(texts), "id": f"ssemedic-{index}"}
        return event.raw + f"data: {dumps(payload)}\n\n".encode()

    def _openai_chunk(self, index: int, event: ServerSentEvent, parts: tuple[Part, ...],
                      changes: Counter[str]) -> bytes:
        """One Letta event as an OpenAI chat chunk that keeps its Letta fields."""
        if any(isinstance(p, Done) and p.marker == "[DONE]" for p in parts):
            return self._finish_chunk() + event.raw
        try:
            payload = loads(event.data)
        except ValueError:
            return event.raw
        if not isinstance(payload, dict) or "choices" in payload:
            return event.raw
        delta: dict[str, str] = {}
        text = "".join(p.text for p in parts if isinstance(p, Text))
        reasoning = "".join(p.text for p in parts if isinstance(p, Reasoning))
        if reasoning:
            delta["reasoning_content"] = reasoning
        if text:
            delta["content"] = text
        finish = "stop" if any(isinstance(p, Stop) for p in parts) and not self._finish_sent else None
        if finish:
            self._finish_sent = True
        changes["Letta event given the OpenAI chat chunk shape"] += 1
        chunk = {**payload, "object": "chat.completion.chunk", "created": payload.get("created", 0),
                 "model": payload.get("model", "letta"),
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        chunk.setdefault("id", f"ssemedic-{index}")
        try:
            data = dumps(chunk)
        except ValueError:  # nested too deeply to encode again: passed on as it came
            return event.raw
        return f"data: {data}\n\n".encode()

    def _finish_chunk(self) -> bytes:
        if self._finish_sent:
            return b""
        self._finish_sent = True
        chunk = {"id": "ssemedic-finish", "object": "chat.completion.chunk", "created": 0, "model": "letta",
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        return f"data: {json.dumps(chunk)}\n\n".encode()


PROVIDER = Provider(
    name="letta",
    operation=lambda path: "invoke_agent",
    interpreter=LettaInterpreter,
    match_request=_match_request,
    match_payload=_match_payload,
    order=15,
    terminal="data: [DONE] or a stop_reason",
    error_event=_make_error_event,
    rewriter=LettaRewriter,
)
