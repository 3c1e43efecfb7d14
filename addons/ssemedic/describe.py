"""Pure formatting of an event's meaning, shared by the live log, the JSONL and
the contentview: parts in, short human text or plain JSON-able data out."""

from __future__ import annotations

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
    match part:
        case Text(text, via):
            detour = f" (via {via})" if via else ""
            return f'text{detour} "{clip(text, limit)}"'
        case Reasoning(text, hidden, signature):
            if signature is not None and not text:
                return "reasoning signature"
            return "reasoning (hidden)" if hidden and not text else f'reasoning "{clip(text, limit)}"'
        case Refusal(text):
            return f'refusal "{clip(text, limit)}"'
        case ToolCall(key, _, name, arguments):
            head = f"tool call {name}" if name else f"tool call #{key}"
            return f"{head} {clip(arguments, limit)}".rstrip() if arguments else head
        case ToolResult(content, tool_call_id, name, is_error):
            label = "tool error" if is_error else "tool result"
            return f"{label} {name or tool_call_id or ''} → {clip(content, limit)}".replace("  ", " ")
        case Usage(_, input_tokens, output_tokens, total_tokens):
            return f"usage in={input_tokens} out={output_tokens} total={total_tokens}"
        case Stop(reason):
            return f"stop {reason}"
        case Done(marker):
            return f"end {marker}"
        case Error(message, type_, _):
            kind = f"[{type_}] " if type_ else ""
            return f"ERROR {kind}{clip(message, limit)}"
        case Meta(model, response_id):
            return f"model {model}" if model else f"id {response_id}"
        case Malformed(kind, detail):
            return f"MALFORMED {kind}: {clip(detail, limit)}"
    return type(part).__name__  # pragma: no cover - every Part is matched above


def describe(parts: tuple[Part, ...] | list[Part], limit: int = 120) -> str:
    """All of an event's parts; consecutive text or reasoning pieces are joined."""
    if not parts:
        return "—"
    return " · ".join(describe_part(part, limit) for part in parts)


def part_to_dict(part: Part) -> dict[str, Any]:
    """A part as plain JSON-able data with a ``kind`` key."""
    match part:
        case Text(text, via):
            return {"kind": "text", "text": text, "via": via}
        case Reasoning(text, hidden, signature):
            return {"kind": "reasoning", "text": text, "hidden": hidden, "signature": signature}
        case Refusal(text):
            return {"kind": "refusal", "text": text}
        case ToolCall(key, id_, name, arguments):
            return {"kind": "tool_call", "key": key, "id": id_, "name": name, "arguments": arguments}
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
    raise TypeError(f"not a part: {part!r}")  # pragma: no cover
