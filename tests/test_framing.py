"""core/framing.py: the framing a Content-Type declares, and the framing
sniffed from the first bytes of a body."""

from __future__ import annotations

import pytest

from ssemedic.core.framing import BOM, NDJSON_TYPES, framing_for_content_type, sniff_framing

# -- framing_for_content_type --------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/event-stream",
        "text/event-stream; charset=utf-8",
        "text/event-stream;charset=UTF-8",
        'text/event-stream; charset="utf-8"',
        "Text/Event-Stream",
        "TEXT/EVENT-STREAM; CHARSET=UTF-8",
        "  text/event-stream  ",
        "text/event-stream ; charset=utf-8",
    ],
)
def test_event_stream_with_parameters_case_and_spaces_is_sse(content_type: str) -> None:
    assert framing_for_content_type(content_type) == "sse"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-ndjson",  # Ollama
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/x-ndjson; charset=utf-8",
        "Application/X-NDJSON",
        "application/jsonl;charset=utf-8",
    ],
)
def test_ndjson_media_types_are_ndjson(content_type: str) -> None:
    assert framing_for_content_type(content_type) == "ndjson"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "   ",
        "application/json",  # a whole JSON body, not one value per line
        "application/json; charset=utf-8",
        "text/plain",
        "text/plain; charset=utf-8",
        "application/octet-stream",
        "text/html",
        "multipart/x-mixed-replace; boundary=frame",
        "text/event-streams",  # another type, not a parameter
        "event-stream",
        "application/x-ndjson-seq",
        "charset=utf-8; text/event-stream",  # the media type comes first
    ],
)
def test_other_or_missing_content_types_declare_no_framing(content_type: str | None) -> None:
    assert framing_for_content_type(content_type) is None


def test_every_declared_ndjson_type_is_recognised() -> None:
    assert {framing_for_content_type(t) for t in NDJSON_TYPES} == {"ndjson"}
    assert {framing_for_content_type(t.upper() + "; charset=utf-8") for t in NDJSON_TYPES} == {"ndjson"}


# -- sniff_framing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b'data: {"choices": []}\n\n',
        b"data:no-space\n\n",
        b"data\n\n",  # a field with no colon: data is ""
        b"data",  # the whole head is the field name, no line end yet
        b"event: message_start\ndata: {}\n\n",
        b"id: 1\n",
        b"id\r\n",
        b"retry: 3000\n\n",
        b"retry\r",
        b": ping\n\n",  # a comment
        b":\n\n",
        b": OPENROUTER PROCESSING\n\n",
    ],
)
def test_a_field_or_comment_line_sniffs_as_sse(head: bytes) -> None:
    assert sniff_framing(head) == "sse"


@pytest.mark.parametrize(
    "prefix",
    [BOM, b"\n", b"\r\n", b"\r", b"\n\n\r\n\r", BOM + b"\r\n\r\n"],
    ids=["bom", "lf", "crlf", "cr", "several-blank-lines", "bom-then-blank-lines"],
)
def test_bom_and_leading_blank_lines_are_skipped(prefix: bytes) -> None:
    assert sniff_framing(prefix + b"data: x\n\n") == "sse"
    assert sniff_framing(prefix + b": keepalive\n\n") == "sse"
    assert sniff_framing(prefix + b'{"model": "llama3"}\n') is None


def test_bom_is_skipped_only_once_and_only_at_the_start() -> None:
    # WHATWG: one leading BOM is dropped; a second one is part of the first line.
    assert sniff_framing(BOM + BOM + b"data: x\n\n") is None
    assert sniff_framing(b"\n" + BOM + b"data: x\n\n") is None


@pytest.mark.parametrize(
    "head",
    [
        b"",
        BOM,
        b"\n\n",
        b'{"model":"llama3","message":{"role":"assistant","content":"Hi"},"done":false}\n',
        b'[{"candidates": []}]',  # Gemini's non-SSE streamGenerateContent
        b"<!DOCTYPE html><html>",
        b"HTTP/1.1 200 OK\r\n",
        b"DATA: x\n\n",  # field names are case-sensitive
        b"Data: x\n\n",
        b"dataset: x\n\n",  # a longer name that starts with a field name
        b"data x\n\n",  # no colon, so the field name is "data x"
        b"identity: x\n\n",
        b"retry-after: 5\n\n",
        b"events: x\n\n",
        b"\x00\x01\x02",
    ],
)
def test_anything_else_is_not_sniffed_as_sse(head: bytes) -> None:
    assert sniff_framing(head) is None


def test_ndjson_is_never_sniffed_it_needs_a_content_type_or_a_provider() -> None:
    line = b'{"model":"llama3","created_at":"2024-01-01T00:00:00Z","response":"Hi","done":false}\n'
    assert sniff_framing(line * 3) is None
