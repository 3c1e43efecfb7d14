"""Which framing a body uses: ``sse`` (WHATWG server-sent events) or
``ndjson`` (one JSON value per line).

The word *framing* means only this choice in ssemedic. It is read from the
Content-Type when the server declares one, and otherwise *sniffed*: guessed
from the first line of the body.
"""

from __future__ import annotations

import re

from .events import BOM

__all__ = ["BOM", "NDJSON_TYPES", "framing_for_content_type", "sniff_framing"]

#: The media types NDJSON streams are served as.
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")

# An SSE body starts with a comment or one of the four field names.
_SSE_FIRST_LINE = re.compile(rb"^(?::|(?:data|event|id|retry)(?::|\r|\n|$))")


def framing_for_content_type(content_type: str | None) -> str | None:
    """``sse``, ``ndjson`` or None for a Content-Type header value."""
    if not content_type:
        return None
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "text/event-stream":
        return "sse"
    if mime in NDJSON_TYPES:
        return "ndjson"
    return None


def sniff_framing(head: bytes) -> str | None:
    """``sse`` when the first bytes of a body read as an event stream (after
    a BOM and blank lines), else None: an NDJSON line is told apart only by
    its Content-Type or its provider."""
    text = head.removeprefix(BOM).lstrip(b" \t\r\n")
    return "sse" if _SSE_FIRST_LINE.match(text) else None
