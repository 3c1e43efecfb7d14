"""Assembles a stream's parts into the message a client would end up with."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .parts import (
    Done,
    Error,
    Malformed,
    Meta,
    Part,
    Reasoning,
    Refusal,
    Stop,
    Text,
    ToolCall,
    ToolResult,
    Usage,
)


@dataclass(slots=True)
class AssembledToolCall:
    key: str
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    @property
    def arguments_error(self) -> str | None:
        """Why the assembled arguments are not valid JSON, or None if they are."""
        try:
            json.loads(self.arguments or "{}")
        except ValueError as exc:
            return str(exc)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(slots=True)
class Message:
    """The running result of a stream. Feed it parts with ``add``."""

    text_parts: list[str] = field(default_factory=list)
    reasoning_parts: list[str] = field(default_factory=list)
    refusal_parts: list[str] = field(default_factory=list)
    tool_calls: dict[str, AssembledToolCall] = field(default_factory=dict)
    tool_results: list[ToolResult] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    markers: list[str] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)
    malformed: int = 0
    model: str | None = None
    response_id: str | None = None
    #: Detours assistant text took (e.g. "send_message"), in order of first use.
    text_via: list[str] = field(default_factory=list)
    #: Whether the provider gave a total itself; if not, it is derived anew on every merge.
    total_given: bool = False

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)

    @property
    def refusal(self) -> str:
        return "".join(self.refusal_parts)

    def add(self, part: Part) -> None:
        # This runs for every part of every event, so the patterns only name
        # the class: positional captures look up __match_args__ and build a
        # tuple, about 0.4 µs more per part (measured). Text, the usual part,
        # comes first.
        match part:
            case Text():
                self.text_parts.append(part.text)
                if part.via is not None and part.via not in self.text_via:
                    self.text_via.append(part.via)
            case Reasoning():
                self.reasoning_parts.append(part.text)
            case Refusal():
                self.refusal_parts.append(part.text)
            case ToolCall():
                call = self.tool_calls.get(part.key)
                if call is None:
                    call = self.tool_calls[part.key] = AssembledToolCall(part.key)
                if part.id and not call.id:
                    call.id = part.id
                if part.name and not call.name:
                    call.name = part.name
                call.arguments += part.arguments
            case ToolResult():
                self.tool_results.append(part)
            case Usage():
                self._merge_usage(part)
            case Stop():
                self.finish_reason = part.reason
            case Done():
                self.markers.append(part.marker)
            case Error():
                self.errors.append(part)
            case Meta():
                self.model = part.model or self.model
                self.response_id = part.response_id or self.response_id
            case Malformed():
                self.malformed += 1

    def _merge_usage(self, usage: Usage) -> None:
        merged = dict(self.usage or {})
        merged.update(usage.raw)
        for key in ("input_tokens", "output_tokens", "total_tokens"):
            value = getattr(usage, key)
            if value is not None:
                merged[key] = value
        self.total_given = self.total_given or usage.total_tokens is not None
        counts = merged.get("input_tokens"), merged.get("output_tokens")
        if not self.total_given and all(isinstance(n, int) for n in counts):
            # Counts can be cumulative (Anthropic's message_delta), so re-derive.
            merged["total_tokens"] = sum(n for n in counts if isinstance(n, int))
        self.usage = merged

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "reasoning": self.reasoning,
            "refusal": self.refusal,
            "tool_calls": [call.to_dict() for call in self.tool_calls.values()],
            "tool_results": [
                {"tool_call_id": r.tool_call_id, "name": r.name, "content": r.content, "is_error": r.is_error}
                for r in self.tool_results
            ],
            "usage": self.usage,
            "finish_reason": self.finish_reason,
            "errors": [{"message": e.message, "type": e.type, "code": e.code} for e in self.errors],
            "model": self.model,
        }
