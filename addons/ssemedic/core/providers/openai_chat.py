"""OpenAI-compatible ``/chat/completions`` streams (``chat.completion.chunk`` payloads).

Also what most gateways speak: vLLM, llama.cpp, LiteLLM, OpenRouter, DeepSeek
(``reasoning_content``) and others (``reasoning``). Only choice 0 is assembled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..events import ServerSentEvent
from ..message import Message
from ..parts import Done, Error, Meta, Part, Reasoning, Refusal, Stop, Text, ToolCall, Usage
from .base import Interpreter, Provider, as_int, as_str, dig, error_message


#: Where reasoning text may be, in order of preference (DeepSeek's, then others').
REASONING_FIELDS = ("reasoning_content", "reasoning")


def _usage(raw: dict[str, Any]) -> Usage:
    return Usage(
        raw=raw,
        input_tokens=as_int(raw.get("prompt_tokens")),
        output_tokens=as_int(raw.get("completion_tokens")),
        total_tokens=as_int(raw.get("total_tokens")),
    )


def _error(payload: dict[str, Any]) -> Error:
    err = payload["error"]
    if isinstance(err, dict):
        code = err.get("code")
        return Error(error_message(err), as_str(err.get("type")), None if code is None else str(code))
    return Error(error_message(err))


def _chunk(interp: ChatInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    if payload.get("error") is not None:
        return [_error(payload)]
    parts: list[Part] = []
    if not interp.meta_seen and (payload.get("model") or payload.get("id")):
        interp.meta_seen = True
        parts.append(Meta(as_str(payload.get("model")), as_str(payload.get("id"))))
    for choice in payload.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue
        parts += _delta(choice.get("delta") or {})
        if choice.get("finish_reason"):
            parts.append(Stop(str(choice["finish_reason"])))
    usage = payload.get("usage")
    if isinstance(usage, dict):
        parts.append(_usage(usage))
    return parts


def _delta(delta: Any) -> list[Part]:
    """The parts of one choice's ``delta``."""
    parts: list[Part] = []
    # Some servers mirror each delta into both fields: take the first only.
    for field in REASONING_FIELDS:
        reasoning = delta.get(field)
        if isinstance(reasoning, str) and reasoning:
            parts.append(Reasoning(reasoning))
            break
    content = delta.get("content")
    if isinstance(content, str) and content:
        parts.append(Text(content))
    refusal = delta.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(Refusal(refusal))
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        parts.append(
            ToolCall(
                key=str(call.get("index", 0)),
                id=as_str(call.get("id")),
                name=as_str(function.get("name")),
                arguments=as_str(function.get("arguments")) or "",
            )
        )
    return parts


class ChatInterpreter(Interpreter):
    handlers = {"chunk": _chunk}

    def __init__(self) -> None:
        self.meta_seen = False

    def interpret(self, event: ServerSentEvent) -> list[Part]:
        if event.data.strip() == "[DONE]":
            return [Done("[DONE]")]
        return super().interpret(event)

    def key(self, event: ServerSentEvent, payload: Any) -> str:
        # Every payload is a chunk (or an error object); the event type is unused.
        return "chunk" if isinstance(payload, dict) else "other"

    def is_complete(self, message: Message) -> bool:
        return message.finish_reason is not None


def _match_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return path.rstrip("/").endswith("/chat/completions")


def _match_payload(event: ServerSentEvent, payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    first_choice = dig(payload, "choices", 0)
    return payload.get("object") == "chat.completion.chunk" or (
        isinstance(first_choice, dict) and "delta" in first_choice
    )


PROVIDER = Provider(
    name="openai-chat",
    interpreter=ChatInterpreter,
    match_request=_match_request,
    match_payload=_match_payload,
    order=10,
    missing_terminal="no chunk carried a finish_reason",
    terminal="a chunk with a finish_reason",
    end_marker="[DONE]",
)
