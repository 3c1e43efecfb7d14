"""OpenAI-compatible ``/chat/completions`` streams (``chat.completion.chunk`` payloads).

Also what most gateways speak: vLLM, llama.cpp, SGLang, LiteLLM, OpenRouter,
Azure OpenAI, DeepSeek (``reasoning_content``), others (``reasoning``) and
Mistral (``content`` as a list of ``text`` and ``thinking`` chunks). Only
choice 0 is assembled.

Strategy for tool calls: the pieces of a call share its ``index``, and only
the first carries its ``id`` and name. Some servers and gateways send every
call of a parallel batch under one index (each with its own id); assembled by
index, their arguments would be glued into one invalid call. So a piece that
opens a call (an id and a name) under an index whose open call has another id
starts a new call, and it is noted (``tool-call-index-collision``); pieces
without an id go to the call last opened under their index.

Errors in a 200 stream come in three shapes: ``{"error": {...}}`` (OpenAI,
llama.cpp, SGLang, newer vLLM; OpenRouter adds ``choices`` with
``finish_reason: "error"``), and vLLM's older top-level ``{"object": "error",
"message": ...}``. Azure's content filter annotates chunks
(``prompt_filter_results``, ``content_filter_results``) and ends a blocked
answer with ``finish_reason: "content_filter"``: each category it filters is
noted (``content-filtered``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..events import ServerSentEvent
from ..message import Message
from ..parts import Done, Error, Meta, Notice, Part, Reasoning, Refusal, Stop, Text, ToolCall, Usage
from .base import Interpreter, Provider, as_int, as_str, dig, error_message


#: Where reasoning text may be, in order of preference (DeepSeek's, then others').
REASONING_FIELDS = ("reasoning_content", "reasoning")
#: Tool call ids (to route pieces by id) and indexes remembered per stream;
#: beyond them, pieces are keyed by their index alone (memory stays bounded).
MAX_TRACKED_IDS = 1000


def _usage(raw: dict[str, Any]) -> Usage:
    return Usage(
        raw=raw,
        input_tokens=as_int(raw.get("prompt_tokens")),
        output_tokens=as_int(raw.get("completion_tokens")),
        total_tokens=as_int(raw.get("total_tokens")),
    )


def _error(err: Any) -> Error:
    if isinstance(err, dict):
        code = err.get("code")
        return Error(error_message(err), as_str(err.get("type")), None if code is None else str(code))
    return Error(error_message(err))


def _filtered(results: Any) -> list[str]:
    """``category (severity)`` for each category a ``content_filter_results``
    object marks as filtered."""
    if not isinstance(results, dict):
        return []
    out = []
    for category, verdict in results.items():
        if isinstance(verdict, dict) and verdict.get("filtered") is True:
            severity = as_str(verdict.get("severity"))
            out.append(f"{category} ({severity})" if severity else str(category))
    return out


def _prompt_filtered(payload: dict[str, Any]) -> Notice | None:
    # "prompt_annotations" is the older name, still in Azure's docs.
    found = []
    for entry in payload.get("prompt_filter_results") or payload.get("prompt_annotations") or ():
        if isinstance(entry, dict):
            found += _filtered(entry.get("content_filter_results"))
    return Notice("content-filtered", "prompt: " + ", ".join(found)) if found else None


def _chunk(interp: ChatInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    if payload.get("error") is not None:
        parts: list[Part] = [_error(payload["error"])]
        # OpenRouter ends its mid-stream error chunk with finish_reason "error".
        choice = dig(payload, "choices", 0)
        if isinstance(choice, dict) and choice.get("finish_reason"):
            parts.append(Stop(str(choice["finish_reason"])))
        return parts
    if payload.get("object") == "error":  # vLLM's ErrorResponse, before it nested it in "error"
        return [_error(payload)]
    parts = []
    if not interp.meta_seen and (payload.get("model") or payload.get("id")):
        interp.meta_seen = True
        parts.append(Meta(as_str(payload.get("model")), as_str(payload.get("id"))))
    if "prompt_filter_results" in payload or "prompt_annotations" in payload:
        notice = _prompt_filtered(payload)
        if notice is not None:
            parts.append(notice)
    for choice in payload.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue
        parts += _delta(interp, choice.get("delta") or {})
        finish = choice.get("finish_reason")
        filtered = _filtered(choice.get("content_filter_results"))
        if filtered or finish == "content_filter":
            detail = ", ".join(filtered) if filtered else "no category given"
            ending = " (finish_reason content_filter)" if finish == "content_filter" else ""
            parts.append(Notice("content-filtered", f"answer: {detail}{ending}"))
        if finish:
            parts.append(Stop(str(finish)))
    usage = payload.get("usage")
    if isinstance(usage, dict):
        parts.append(_usage(usage))
    return parts


def _tool_call(interp: ChatInterpreter, call: Any) -> list[Part]:
    """The parts of one ``tool_calls`` entry: the piece, keyed to its call (see the module's Strategy)."""
    function = call.get("function") or {}
    index = str(call.get("index", 0))
    call_id = as_str(call.get("id")) or None
    name = as_str(function.get("name")) or None
    parts: list[Part] = []
    open_call = interp.open_calls.get(index)  # (key, id) of the call last opened under this index
    if call_id is not None and call_id in interp.key_of_id:
        key = interp.key_of_id[call_id]
    elif open_call is None:
        key = index
    elif call_id is not None and name is not None and open_call[1] is not None and call_id != open_call[1]:
        key = f"{index}:{call_id}"
        parts.append(Notice("tool-call-index-collision",
                            f"calls {open_call[1]} and {call_id} ({name}) both came with index {index}"))
    else:
        key = open_call[0]
    if call_id is not None and len(interp.key_of_id) < MAX_TRACKED_IDS:
        interp.key_of_id.setdefault(call_id, key)
    if call_id is None and open_call is not None and open_call[0] == key:
        call_id_now = open_call[1]  # a piece without id keeps its call's
    else:
        call_id_now = call_id
    if index in interp.open_calls or len(interp.open_calls) < MAX_TRACKED_IDS:
        interp.open_calls[index] = (key, call_id_now)
    parts.append(ToolCall(key=key, id=call_id, name=name, arguments=as_str(function.get("arguments")) or ""))
    return parts


def _content_chunks(chunks: list[Any]) -> list[Part]:
    """Mistral's typed content: ``text`` chunks, and ``thinking`` chunks
    (Magistral's reasoning) that hold text chunks themselves."""
    parts: list[Part] = []
    for chunk in chunks:
        if not isinstance(chunk, dict):
            continue
        if chunk.get("type") == "thinking":
            for inner in chunk.get("thinking") or ():
                text = as_str(inner.get("text")) if isinstance(inner, dict) else None
                if text:
                    parts.append(Reasoning(text))
        elif chunk.get("type") == "text":
            text = as_str(chunk.get("text"))
            if text:
                parts.append(Text(text))
    return parts


def _delta(interp: ChatInterpreter, delta: Any) -> list[Part]:
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
    elif isinstance(content, list):
        parts += _content_chunks(content)
    refusal = delta.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(Refusal(refusal))
    for call in delta.get("tool_calls") or ():
        parts += _tool_call(interp, call)
    return parts


class ChatInterpreter(Interpreter):
    handlers = {"chunk": _chunk}

    def __init__(self) -> None:
        self.meta_seen = False
        #: The key and id of the call last opened under each tool-call index.
        self.open_calls: dict[str, tuple[str, str | None]] = {}
        #: Each tool call id seen, and the key of its call (at most MAX_TRACKED_IDS).
        self.key_of_id: dict[str, str] = {}

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
    return (
        payload.get("object") == "chat.completion.chunk"
        or (isinstance(first_choice, dict) and "delta" in first_choice)
        # Azure's first chunk: no object, no choices, only the prompt's filter results.
        or ("prompt_filter_results" in payload and isinstance(payload.get("choices"), list))
    )


PROVIDER = Provider(
    name="openai-chat",
    semconv_name="openai",
    interpreter=ChatInterpreter,
    match_request=_match_request,
    match_payload=_match_payload,
    order=10,
    missing_terminal="no chunk carried a finish_reason",
    terminal="a chunk with a finish_reason",
    end_marker="[DONE]",
)
