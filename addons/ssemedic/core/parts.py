"""The typed meaning of an event: what provider interpreters turn payloads into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Text:
    """Assistant text. ``via`` names a detour the text took, e.g. Letta's
    ``send_message`` tool call, when it did not arrive as plain assistant text."""

    text: str
    via: str | None = None


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Reasoning or thinking text; ``hidden`` for redacted/hidden reasoning,
    ``signature`` for Anthropic's thinking signature deltas."""

    text: str
    hidden: bool = False
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A piece of a tool call. Pieces with the same ``key`` build one call:
    ``id`` and ``name`` are set once, ``arguments`` fragments are appended."""

    key: str
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    #: The call's input is free text (a Responses ``custom_tool_call``), not JSON.
    free_form: bool = False


@dataclass(frozen=True, slots=True)
class ToolResult:
    content: str
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage. ``raw`` keeps the provider's own fields; the normalised
    counts are None where the payload does not give them. Later values win."""

    raw: dict[str, Any] = field(default_factory=dict)
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    """The provider's stop or finish reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class Done:
    """A stream-level end marker: ``[DONE]``, ``message_stop``,
    ``response.completed``, ``done: true``..."""

    marker: str


@dataclass(frozen=True, slots=True)
class Error:
    """An error reported inside the stream."""

    message: str
    type: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Meta:
    """Stream facts worth showing: the model and the response id."""

    model: str | None = None
    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class Malformed:
    """A payload the provider sends as JSON (or in a known shape) that is not."""

    kind: str  # "invalid-json" or "unexpected-shape"
    detail: str


@dataclass(frozen=True, slots=True)
class Notice:
    """A problem an interpreter saw in an event it could read: ``kind`` is a
    fault kind's value (``content-filtered``, ``tool-call-index-collision``),
    ``detail`` what this event did. Diagnosis turns it into that fault."""

    kind: str
    detail: str


Part = Text | Reasoning | Refusal | ToolCall | ToolResult | Usage | Stop | Done | Error | Meta | Malformed | Notice

#: Parts that count as the first "token" for time-to-first-token.
TOKEN_PARTS = (Text, Reasoning, Refusal, ToolCall)
