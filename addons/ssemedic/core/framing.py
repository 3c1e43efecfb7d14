"""Which framing a body uses: ``sse`` (WHATWG server-sent events),
``ndjson`` (one JSON value per line), ``eventstream`` (the AWS event
stream's binary frames, Bedrock's) or ``jsonarray`` (one JSON array sent
element by element: Gemini without ``alt=sse``).

The word *framing* means only this choice in ssemedic. It is read from the
Content-Type when the server declares one, and otherwise *sniffed*: guessed
from the first line of the body.
"""

from __future__ import annotations

import re

from .events import BOM
from .eventstream import PRELUDE_SIZE, valid_prelude

__all__ = ["BOM", "EVENTSTREAM_TYPE", "JSONARRAY", "MEDIA_TYPES", "NDJSON_TYPES", "framing_for_content_type",
           "sniff_framing", "sniff_needs_more"]

#: The media types NDJSON streams are served as.
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")
#: The media type of the AWS event stream.
EVENTSTREAM_TYPE = "application/vnd.amazon.eventstream"
#: The Content-Type each framing is served as.
MEDIA_TYPES = {"sse": "text/event-stream", "ndjson": "application/x-ndjson", "eventstream": EVENTSTREAM_TYPE,
               "jsonarray": "application/json"}

#: A JSON array streamed element by element, served as ``application/json``
#: (only a provider that streams so is read this way: see ``Provider.json_array``).
JSONARRAY = "jsonarray"

# An SSE body starts with a comment or one of the four field names, or with
# ``error:``, the field llama.cpp's server writes a stream's error in.
_SSE_FIRST_LINE = re.compile(rb"^(?::|(?:data|event|id|retry)(?::|\r|\n|$)|error:)")


def framing_for_content_type(content_type: str | None, *, json_array: bool = False) -> str | None:
    """``sse``, ``ndjson``, ``eventstream`` or None for a Content-Type header
    value; with ``json_array`` (the body is a streamed JSON array),
    ``application/json`` is ``jsonarray``."""
    if not content_type:
        return None
    mime = content_type.split(";", 1)[0].strip().lower()
    if json_array and mime == "application/json":
        return JSONARRAY
    if mime == "text/event-stream":
        return "sse"
    if mime in NDJSON_TYPES:
        return "ndjson"
    if mime == EVENTSTREAM_TYPE:
        return "eventstream"
    return None


def sniff_framing(head: bytes, *, json_array: bool = False) -> str | None:
    """``sse`` when the first bytes of a body read as an event stream (after
    a BOM and blank lines), ``eventstream`` when its first 12 bytes are an
    AWS event-stream prelude with a valid CRC, else None: an NDJSON line is
    told apart only by its Content-Type or its provider. With ``json_array``
    (the request's provider streams JSON arrays), a body that opens an array
    of objects (``[`` then ``{``, or nothing yet) is ``jsonarray``."""
    if valid_prelude(head):
        return "eventstream"
    text = head.removeprefix(BOM).lstrip(b" \t\r\n")
    if json_array and text.startswith(b"[") and text[1:].lstrip(b" \t\r\n")[:1] in (b"{", b""):
        return JSONARRAY
    return "sse" if _SSE_FIRST_LINE.match(text) else None


def sniff_needs_more(head: bytes) -> bool:
    """Whether ``head`` may be the start of an AWS event-stream prelude that
    is not whole yet: it starts with NUL (no text body does; a frame under
    16 MiB does) and is shorter than a prelude."""
    return head[:1] == b"\0" and len(head) < PRELUDE_SIZE
