"""Pure formatting of an event's meaning, shared by the live log, the JSONL and
the contentview: parts in, short human text or plain JSON-able data out."""

from __future__ import annotations

from typing import Any

from .parts import (
    Done,
    Error,
    Malformed,
    Meta,
    Notice,
    Part,
    Reasoning,
    Refusal,
    Stop,
    Text,
    ToolCall,
    ToolResult,
    Usage,
)


def clip(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters (0: no limit)."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if limit > 0 and len(text) > limit:
        return text[: max(limit - 1, 1)] + "…"
    return text


def trim(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out (0: all)."""
    if limit <= 0 or len(text) <= limit:
        return text
    return f"{text[:limit]}… (+{len(text) - limit} chars)"


def describe_part(part: Part, limit: int = 120) -> str:
    """One short phrase for one part, e.g. ``text "Привет"``."""
    # This runs for every event logged, so the patterns only name the class:
    # positional captures cost a __match_args__ lookup per field.
    match part:
        case Text():
            if part.via:
                return f'text (via {part.via}) "{clip(part.text, limit)}"'
            return f'text "{clip(part.text, limit)}"'
        case Reasoning():
            if part.signature is not None and not part.text:
                return "reasoning signature"
            return "reasoning (hidden)" if part.hidden and not part.text else f'reasoning "{clip(part.text, limit)}"'
        case Refusal():
            return f'refusal "{clip(part.text, limit)}"'
        case ToolCall():
            head = f"tool call {part.name}" if part.name else f"tool call #{part.key}"
            return f"{head} {clip(part.arguments, limit)}".rstrip() if part.arguments else head
        case ToolResult():
            label = "tool error" if part.is_error else "tool result"
            who = part.name or part.tool_call_id
            # Only the label is spaced here: the content keeps its own spaces.
            return f"{label} {who} → {clip(part.content, limit)}" if who else f"{label} → {clip(part.content, limit)}"
        case Usage():
            return f"usage in={part.input_tokens} out={part.output_tokens} total={part.total_tokens}"
        case Stop():
            return f"stop {part.reason}"
        case Done():
            return f"end {part.marker}"
        case Error():
            kind = f"[{part.type}] " if part.type else ""
            return f"ERROR {kind}{clip(part.message, limit)}"
        case Meta():
            return f"model {part.model}" if part.model else f"id {part.response_id}"
        case Malformed():
            return f"MALFORMED {part.kind}: {clip(part.detail, limit)}"
        case Notice():
            return f"{part.kind}: {clip(part.detail, limit)}"
    return type(part).__name__  # pragma: no cover - every Part is matched above


def describe(parts: tuple[Part, ...] | list[Part], limit: int = 120) -> str:
    """All of an event's parts; consecutive text or reasoning pieces are joined."""
    if len(parts) == 1:
        return describe_part(parts[0], limit)  # most events: no join to build
    if not parts:
        return "—"
    return " · ".join([describe_part(part, limit) for part in parts])


def part_to_dict(part: Part) -> dict[str, Any]:
    """A part as plain JSON-able data with a ``kind`` key."""
    match part:
        case Text(text, via):
            return {"kind": "text", "text": text, "via": via}
        case Reasoning(text, hidden, signature):
            return {"kind": "reasoning", "text": text, "hidden": hidden, "signature": signature}
        case Refusal(text):
            return {"kind": "refusal", "text": text}
        case ToolCall(key, id_, name, arguments, free_form):
            return {"kind": "tool_call", "key": key, "id": id_, "name": name, "arguments": arguments,
                    "free_form": free_form}
        case ToolResult(content, tool_call_id, name, is_error):
            return {"kind": "tool_result", "content": content, "tool_call_id": tool_call_id,
                    "name": name, "is_error": is_error}
        case Usage(raw, input_tokens, output_tokens, total_tokens):
            return {"kind": "usage", "raw": raw, "input_tokens": input_tokens,
                    "output_tokens": output_tokens, "total_tokens": total_tokens}
        case Stop(reason):
            return {"kind": "stop", "reason": reason}
        case Done(marker):
            return {"kind": "done", "marker": marker}
        case Error(message, type_, code):
            return {"kind": "error", "message": message, "type": type_, "code": code}
        case Meta(model, response_id):
            return {"kind": "meta", "model": model, "response_id": response_id}
        case Malformed(kind, detail):
            return {"kind": "malformed", "problem": kind, "detail": detail}
        case Notice(kind, detail):
            return {"kind": "notice", "fault": kind, "detail": detail}
    raise TypeError(f"not a part: {part!r}")  # pragma: no cover


def printable(text: str) -> str:
    """``text`` safe to print on a terminal and to encode as UTF-8: control
    characters (an upstream's escape sequences), lone surrogates and other
    unprintable characters escaped as ``repr`` escapes them."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def printable_lines(text: str) -> str:
    """``printable``, line by line: the line feeds stay."""
    return "\n".join(map(printable, text.split("\n")))


def printable_data(value: Any) -> Any:
    """``value`` with every string in it made ``printable_lines``."""
    if isinstance(value, str):
        return printable_lines(value)
    if isinstance(value, dict):
        return {k: printable_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_data(v) for v in value]
    return value
