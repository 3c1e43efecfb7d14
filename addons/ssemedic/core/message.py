"""Assembles a stream's parts into the message a client would end up with.

Strategy: what is *kept* is capped, what is *counted* is exact. Each kind of
content (text, reasoning, refusal, tool-call arguments, tool-result contents)
keeps at most ``KEPT_CHARS`` characters, the prefix of what arrived; its
``*_chars`` counter always holds the full length. So a runaway stream (one of
1 GB was seen) costs a bounded amount of memory, and whatever shows the
message can say exactly how much it does not show (``cut()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .events import loads
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

#: Characters kept per kind of content and stream: text, reasoning, refusal,
#: tool-call arguments (all calls together) and tool-result contents (all
#: results together) each keep their first 1 Mi characters. Per kind, so a
#: long reasoning trace never hides the answer. 1 Mi characters is about
#: 250,000 tokens, more than any model's output limit (at most 128k tokens
#: in 2025), so a real answer is kept whole; only a runaway or synthetic
#: stream is cut. At most 5 Mi characters per stream (5-20 MiB as str).
KEPT_CHARS = 1 << 20
#: Tool calls and tool results kept per stream; the parts of later ones are
#: only counted. Bounds the number of entries as KEPT_CHARS bounds their size.
KEPT_ITEMS = 1000


@dataclass(slots=True)
class AssembledToolCall:
    key: str
    id: str | None = None
    name: str | None = None
    #: The arguments as kept: a prefix of what arrived (see ``chars``).
    arguments: str = ""
    #: The full length of the arguments, in characters, kept or not.
    chars: int = 0
    #: The input is free text (a custom tool's), so it is not checked as JSON.
    free_form: bool = False

    @property
    def cut(self) -> int:
        """How many characters of the arguments were not kept (0: all were)."""
        return self.chars - len(self.arguments)

    @property
    def arguments_error(self) -> str | None:
        """Why the assembled arguments are not valid JSON, or None if they are
        or cannot be told: arguments that were cut (``cut``) are not checked,
        since a prefix of valid JSON is not valid JSON itself; nor is free-form input."""
        if self.cut or self.free_form:
            return None
        try:
            loads(self.arguments or "{}")
        except ValueError as exc:
            return str(exc)
        return None

    @property
    def validity(self) -> str:
        """What is known of the arguments' JSON, in words."""
        if self.cut:
            return f"JSON not checked: {self.cut:,} of {self.chars:,} chars not kept"
        if self.free_form:
            return "free-form input"
        error = self.arguments_error
        return "valid JSON" if error is None else f"invalid JSON: {error}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments, "arguments_chars": self.chars}


@dataclass(slots=True)
class Message:
    """The running result of a stream. Feed it parts with ``add``.

    The ``*_parts``, ``tool_calls`` and ``tool_results`` hold what is kept
    (see KEPT_CHARS); the ``*_chars`` counters are the exact full lengths.
    """

    text_parts: list[str] = field(default_factory=list)
    reasoning_parts: list[str] = field(default_factory=list)
    refusal_parts: list[str] = field(default_factory=list)
    tool_calls: dict[str, AssembledToolCall] = field(default_factory=dict)
    #: Kept tool results, their content possibly cut (full lengths in tool_result_lengths).
    tool_results: list[ToolResult] = field(default_factory=list)
    tool_result_lengths: list[int] = field(default_factory=list)
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
    #: Characters kept per kind (KEPT_CHARS; a field so tests can choose a small one).
    keep: int = KEPT_CHARS
    #: Exact lengths, in characters, of everything that arrived, kept or not.
    text_chars: int = 0
    reasoning_chars: int = 0
    refusal_chars: int = 0
    tool_argument_chars: int = 0
    tool_result_chars: int = 0
    #: Parts of tool calls, and tool results, beyond the first KEPT_ITEMS: counted, not kept.
    tool_call_parts_dropped: int = 0
    tool_results_dropped: int = 0
    _arguments_kept: int = 0
    _results_kept: int = 0

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
                text = part.text
                self.text_chars = total = self.text_chars + len(text)
                if total <= self.keep:
                    self.text_parts.append(text)
                else:
                    self._keep_prefix(self.text_parts, text, total)
                if part.via is not None and part.via not in self.text_via:
                    self.text_via.append(part.via)
            case Reasoning():
                self.reasoning_chars = total = self.reasoning_chars + len(part.text)
                if total <= self.keep:
                    self.reasoning_parts.append(part.text)
                else:
                    self._keep_prefix(self.reasoning_parts, part.text, total)
            case Refusal():
                self.refusal_chars = total = self.refusal_chars + len(part.text)
                if total <= self.keep:
                    self.refusal_parts.append(part.text)
                else:
                    self._keep_prefix(self.refusal_parts, part.text, total)
            case ToolCall():
                self._add_tool_call(part)
            case ToolResult():
                self._add_tool_result(part)
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

    def _keep_prefix(self, parts: list[str], piece: str, total: int) -> None:
        """``piece`` brought its kind's length to ``total``, past ``keep``: keep what still fits."""
        room = self.keep - (total - len(piece))
        if room > 0:
            parts.append(piece[:room])

    def _add_tool_call(self, part: ToolCall) -> None:
        arguments = part.arguments
        self.tool_argument_chars += len(arguments)
        call = self.tool_calls.get(part.key)
        if call is None:
            if len(self.tool_calls) >= KEPT_ITEMS:
                self.tool_call_parts_dropped += 1
                return
            call = self.tool_calls[part.key] = AssembledToolCall(part.key)
        if part.id and not call.id:
            call.id = part.id
        if part.name and not call.name:
            call.name = part.name
        if part.free_form:
            call.free_form = True
        if arguments:
            call.chars += len(arguments)
            # One budget for all calls: once it is spent, every call keeps
            # the prefix it had, so each call's arguments stay its own prefix.
            room = self.keep - self._arguments_kept
            if room > 0:
                kept = arguments[:room]
                call.arguments += kept
                self._arguments_kept += len(kept)

    def _add_tool_result(self, part: ToolResult) -> None:
        length = len(part.content)
        self.tool_result_chars += length
        if len(self.tool_results) >= KEPT_ITEMS:
            self.tool_results_dropped += 1
            return
        room = max(self.keep - self._results_kept, 0)
        if length > room:
            part = replace(part, content=part.content[:room])
        self._results_kept += len(part.content)
        self.tool_results.append(part)
        self.tool_result_lengths.append(length)

    def chars(self) -> dict[str, int]:
        """The exact length of each kind of content, in characters, kept or not."""
        return {
            "text": self.text_chars,
            "reasoning": self.reasoning_chars,
            "refusal": self.refusal_chars,
            "tool_arguments": self.tool_argument_chars,
            "tool_results": self.tool_result_chars,
        }

    def cut(self) -> dict[str, int]:
        """What was not kept: characters per kind of content (see ``chars``),
        and how many tool-call parts and tool results were dropped whole
        (beyond KEPT_ITEMS). Only what is not zero; empty when all was kept."""
        kept = {
            "text": min(self.text_chars, self.keep),
            "reasoning": min(self.reasoning_chars, self.keep),
            "refusal": min(self.refusal_chars, self.keep),
            "tool_arguments": self._arguments_kept,
            "tool_results": self._results_kept,
        }
        out = {kind: total - kept[kind] for kind, total in self.chars().items() if total > kept[kind]}
        if self.tool_call_parts_dropped:
            out["tool_call_parts_dropped"] = self.tool_call_parts_dropped
        if self.tool_results_dropped:
            out["tool_results_dropped"] = self.tool_results_dropped
        return out

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
                {"tool_call_id": r.tool_call_id, "name": r.name, "content": r.content, "is_error": r.is_error,
                 "content_chars": length}
                for r, length in zip(self.tool_results, self.tool_result_lengths)
            ],
            "usage": self.usage,
            "finish_reason": self.finish_reason,
            "errors": [{"message": e.message, "type": e.type, "code": e.code} for e in self.errors],
            "model": self.model,
            "response_id": self.response_id,
            "chars": self.chars(),
            "cut": self.cut(),
        }
