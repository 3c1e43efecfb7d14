"""Google Gemini ``:streamGenerateContent?alt=sse`` streams (GenerateContentResponse payloads).

Every ``data:`` is a whole GenerateContentResponse: the new parts of candidate
0, and on the way ``finishReason``, cumulative ``usageMetadata``, the model
version and the response id. There is no end marker; the finish reason (or a
blocked prompt) is the terminal signal. Function calls arrive whole (``args`` is an object), one per
part, so each part is a call of its own keyed by a running counter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..framing import ServerSentEvent
from ..message import Message
from ..parts import Error, Meta, Part, Reasoning, Stop, Text, ToolCall, Usage
from .base import Interpreter, Provider, as_int, as_str, dig, error_message


def _typed(value: Any, kind: type[Any], what: str) -> Any:
    """``value`` if it is a ``kind``; a TypeError makes the payload Malformed."""
    if not isinstance(value, kind):
        raise TypeError(f"{what} is {type(value).__name__}, not {kind.__name__}")
    return value


def _usage(raw: dict[str, Any]) -> Usage:
    # Thinking tokens (thoughtsTokenCount) stay in ``raw``: output counts the answer only.
    return Usage(
        raw=raw,
        input_tokens=as_int(raw.get("promptTokenCount")),
        output_tokens=as_int(raw.get("candidatesTokenCount")),
        total_tokens=as_int(raw.get("totalTokenCount")),
    )


def _error(err: Any) -> Error:
    if not isinstance(err, dict):
        return Error(error_message(err))
    code = err.get("code")
    return Error(error_message(err), as_str(err.get("status")), None if code is None else str(code))


def _blocked(feedback: Any) -> list[Part]:
    reason = as_str(dig(feedback, "blockReason"))
    if reason is None:
        return []
    detail = as_str(dig(feedback, "blockReasonMessage"))
    return [Error(f"prompt blocked: {detail or reason}", "blocked", reason)]


def _content_parts(interp: GeminiInterpreter, candidate: dict[str, Any]) -> list[Part]:
    content = candidate.get("content")
    if content is None:
        return []
    pieces = _typed(_typed(content, dict, "content").get("parts") or [], list, "content.parts")
    parts: list[Part] = []
    for piece in pieces:
        _typed(piece, dict, "part")
        text = piece.get("text")
        if isinstance(text, str) and text:
            parts.append(Reasoning(text) if piece.get("thought") is True else Text(text))
        call = piece.get("functionCall")
        if call is not None:
            _typed(call, dict, "functionCall")
            args = _typed(call.get("args") or {}, dict, "functionCall.args")
            parts.append(
                ToolCall(
                    key=str(interp.calls),
                    id=as_str(call.get("id")),
                    name=as_str(call.get("name")),
                    arguments=json.dumps(args, ensure_ascii=False),
                )
            )
            interp.calls += 1
    return parts


def _chunk(interp: GeminiInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    if payload.get("error") is not None:
        return [_error(payload["error"])]
    parts: list[Part] = []
    meta = (as_str(payload.get("modelVersion")), as_str(payload.get("responseId")))
    if meta != interp.meta and any(meta):
        interp.meta = meta
        parts.append(Meta(*meta))
    parts += _blocked(payload.get("promptFeedback"))
    candidates = _typed(payload.get("candidates") or [], list, "candidates")
    if candidates:
        candidate = _typed(candidates[0], dict, "candidates[0]")
        parts += _content_parts(interp, candidate)
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            parts.append(Stop(reason))
    usage = payload.get("usageMetadata")
    if usage is not None:
        parts.append(_usage(_typed(usage, dict, "usageMetadata")))
    return parts


class GeminiInterpreter(Interpreter):
    handlers = {"chunk": _chunk}

    def __init__(self) -> None:
        #: Function calls so far: the next call's key.
        self.calls = 0
        #: The last (model version, response id) reported, to report changes only.
        self.meta: tuple[str | None, str | None] = (None, None)

    def key(self, event: ServerSentEvent, payload: Any) -> str:
        # Every payload is a GenerateContentResponse (or an error object).
        return "chunk" if isinstance(payload, dict) else "other"

    def is_complete(self, message: Message) -> bool:
        # A blocked prompt gets no candidates, so no finish reason: the block ends it.
        return message.finish_reason is not None or any(e.type == "blocked" for e in message.errors)


def _match_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return ":streamGenerateContent" in path or ":generateContent" in path


def _match_payload(event: ServerSentEvent, payload: Any) -> bool:
    return isinstance(payload, dict) and (
        isinstance(payload.get("candidates"), list) or "usageMetadata" in payload or "promptFeedback" in payload
    )


PROVIDER = Provider(
    name="gemini",
    interpreter=GeminiInterpreter,
    match_request=_match_request,
    match_payload=_match_payload,
    order=30,
)
