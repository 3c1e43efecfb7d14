"""AWS event-stream frames built from the spec (the Smithy "Amazon Event
Stream Specification"), independently of ssemedic's own encoder, and the
Bedrock streams the tests send in them."""

from __future__ import annotations

import base64
import json
import struct
import uuid
import zlib
from typing import Any

#: A header as the spec lays it out: name, value type (0-9), value.
Header = tuple[str, int, Any]


def header_bytes(name: str, kind: int, value: Any) -> bytes:
    out = bytes([len(name.encode())]) + name.encode() + bytes([kind])
    if kind in (0, 1):
        return out
    if kind in (2, 3, 4, 5, 8):
        fmt = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}[kind]
        return out + struct.pack(fmt, value)
    if kind in (6, 7):
        raw = value.encode() if isinstance(value, str) else value
        return out + struct.pack(">H", len(raw)) + raw
    if kind == 9:
        return out + (value.bytes if isinstance(value, uuid.UUID) else value)
    raise ValueError(kind)


def frame(headers: list[Header], payload: bytes = b"") -> bytes:
    """One frame: prelude (lengths, CRC of its first 8 bytes), headers, payload, message CRC."""
    encoded = b"".join(header_bytes(*h) for h in headers)
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event_frame(event_type: str, payload: Any) -> bytes:
    """An event frame as Bedrock sends one: JSON payload with its padding field ``p``."""
    body = dict(payload)
    body.setdefault("p", "abcdefghijklmnopqrstuvwxyzABCDEF"[: 1 + len(event_type) % 20])
    return frame(
        [(":event-type", 7, event_type), (":content-type", 7, "application/json"), (":message-type", 7, "event")],
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    return frame(
        [(":exception-type", 7, exception_type), (":content-type", 7, "application/json"),
         (":message-type", 7, "exception")],
        json.dumps({"message": message}).encode(),
    )


def chunk_frame(inner: dict[str, Any]) -> bytes:
    """InvokeModelWithResponseStream: the model's own event, base64 in ``bytes``."""
    encoded = base64.b64encode(json.dumps(inner, ensure_ascii=False).encode()).decode()
    return event_frame("chunk", {"bytes": encoded})


def converse_text(text_pieces: list[str], *, reasoning: tuple[str, ...] = (), stop: str | None = "end_turn",
                  metadata: bool = True) -> bytes:
    """A ConverseStream body: optional reasoning block, a text block, messageStop, metadata."""
    out = [event_frame("messageStart", {"role": "assistant"})]
    index = 0
    if reasoning:
        out += [event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": r}}})
                for r in reasoning]
        out.append(event_frame("contentBlockDelta",
                               {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig=="}}}))
        out.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    out += [event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": t}}) for t in text_pieces]
    out.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
    if stop is not None:
        out.append(event_frame("messageStop", {"stopReason": stop}))
        if metadata:
            out.append(event_frame("metadata", {"usage": {"inputTokens": 12, "outputTokens": 34, "totalTokens": 46},
                                                "metrics": {"latencyMs": 789}}))
    return b"".join(out)
