"""core/parts.py and core/handoff.py: the typed meaning of an event, and the
values a session hands on to diagnosis and repair (each event's record, and
what the stream amounted to)."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from helpers import chunkings, ndjson_line, sse_event

from ssemedic.core.handoff import EventRecord, Outcome
from ssemedic.core.parts import (
    TOKEN_PARTS,
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
from ssemedic.core.session import StreamSession

ALL_KINDS = (Text, Reasoning, Refusal, ToolCall, ToolResult, Usage, Stop, Done, Error, Meta, Malformed, Notice)

# -- parts -------------------------------------------------------------------------------


def test_part_is_the_union_of_every_kind() -> None:
    assert set(typing.get_args(Part)) == set(ALL_KINDS)


@pytest.mark.parametrize(
    "part",
    [Text("a"), Reasoning("a"), Refusal("a"), ToolCall("0"), ToolResult("a"), Usage(), Stop("stop"),
     Done("[DONE]"), Error("a"), Meta(), Malformed("invalid-json", "a"), Notice("content-filtered", "a")],
    ids=lambda p: type(p).__name__,
)
def test_every_part_is_a_frozen_slotted_value(part: Part) -> None:
    name = dataclasses.fields(part)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(part, name, "changed")
    assert not hasattr(part, "__dict__")
    assert part == dataclasses.replace(part) and part is not dataclasses.replace(part)


def test_defaults_say_nothing_is_known() -> None:
    assert Text("hi").via is None
    assert (Reasoning("r").hidden, Reasoning("r").signature) == (False, None)
    assert ToolCall("0") == ToolCall("0", None, None, "")
    assert ToolResult("ok") == ToolResult("ok", None, None, False)
    assert Usage() == Usage({}, None, None, None)
    assert Error("boom") == Error("boom", None, None)
    assert Meta() == Meta(None, None)


def test_usage_instances_do_not_share_their_raw_dict() -> None:
    first, second = Usage(), Usage()
    first.raw["prompt_tokens"] = 3
    assert second.raw == {}


def test_usage_equality_is_field_wise_raw_dict_included() -> None:
    # It holds the provider's raw dict; equal fields make equal parts.
    assert Usage({"input_tokens": 1}, 1) == Usage({"input_tokens": 1}, 1)
    assert Usage({"input_tokens": 1}, 1) != Usage({"input_tokens": 2}, 1)


def test_token_parts_are_the_content_kinds_only() -> None:
    # Time to first token counts text, reasoning, refusals and tool calls, not metadata.
    assert set(TOKEN_PARTS) == {Text, Reasoning, Refusal, ToolCall}
    for kind in (ToolResult, Usage, Stop, Done, Error, Meta, Malformed):
        assert not issubclass(kind, TOKEN_PARTS)


def test_first_token_time_is_the_first_content_event_not_the_first_event() -> None:
    chat = "/v1/chat/completions"
    meta_only = {"id": "c1", "model": "gpt-4o", "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    token = {"id": "c1", "model": "gpt-4o", "object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    session = StreamSession(method="POST", path=chat, content_type="text/event-stream", started_at=0.0)
    session.feed(sse_event(meta_only), at=0.5)
    session.feed(sse_event(token), at=2.0)
    session.close(at=2.5)
    assert session.first_token_at == 2.0


# -- EventRecord and Outcome ------------------------------------------------------------------

CHAT = "/v1/chat/completions"
OPENAI_BODY = (
    sse_event({"id": "c1", "model": "gpt-4o", "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": {"content": "Привет, мир! 🌍"}}]})
    + sse_event({"id": "c1", "model": "gpt-4o", "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, eol="\r\n")
    + b"data: [DONE]\n\n"
)
OLLAMA_BODY = (
    ndjson_line({"model": "llama3", "created_at": "2024-01-01T00:00:00Z",
                 "message": {"role": "assistant", "content": "Hallo 🌍"}, "done": False})
    + ndjson_line({"model": "llama3", "created_at": "2024-01-01T00:00:01Z",
                   "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"})
)


def feed(chunks: list[bytes], **kwargs: typing.Any) -> tuple[StreamSession, list[EventRecord]]:
    session = StreamSession(started_at=0.0, **kwargs)
    records: list[EventRecord] = []
    for i, chunk in enumerate(chunks, 1):
        records += session.feed(chunk, at=i / 1000)
    records += session.close(at=(len(chunks) + 1) / 1000)
    return session, records


@pytest.mark.parametrize(("how", "chunks"), list(chunkings(OPENAI_BODY, max_splits=60)))
def test_records_and_outcome_of_an_sse_stream_do_not_depend_on_chunking(how: str, chunks: list[bytes]) -> None:
    session, records = feed(chunks, method="POST", path=CHAT, content_type="text/event-stream")
    assert [r.index for r in records] == [0, 1, 2]
    assert [r.event.raw for r in records] == [OPENAI_BODY[r.event.offset:r.event.offset + len(r.event.raw)]
                                             for r in records]
    assert b"".join(r.event.raw for r in records) == OPENAI_BODY
    assert [type(p) for p in records[0].parts] == [Meta, Text] and records[2].parts == (Done("[DONE]"),)
    assert all(r.time is not None and 0 < r.time <= len(chunks) / 1000 for r in records)
    outcome = session.outcome()
    assert (outcome.framing, outcome.complete, outcome.bytes, outcome.events, outcome.boundary) == (
        "sse", True, len(OPENAI_BODY), 3, len(OPENAI_BODY))
    assert outcome.provider.name == "openai-chat" and outcome.message is session.message
    assert outcome.message.text == "Привет, мир! 🌍"
    # Six lines: the first event's two end in LF, the second's in CRLF, [DONE]'s in LF.
    assert dict(outcome.line_endings or {}) == {"lf": 4, "crlf": 2, "cr": 0}


@pytest.mark.parametrize(("how", "chunks"), list(chunkings(OLLAMA_BODY, max_splits=60)))
def test_outcome_of_an_ndjson_stream_counts_no_line_endings(how: str, chunks: list[bytes]) -> None:
    session, records = feed(chunks, method="POST", path="/api/chat", content_type="application/x-ndjson")
    outcome = session.outcome()
    assert (outcome.framing, outcome.complete, outcome.events, outcome.bytes) == ("ndjson", True, 2,
                                                                                 len(OLLAMA_BODY))
    assert outcome.line_endings is None and outcome.provider.name == "ollama"
    assert [r.event.event for r in records] == ["message", "message"]
    assert outcome.message.text == "Hallo 🌍"


def test_outcome_of_a_cut_stream_is_incomplete_and_its_boundary_is_the_last_whole_event() -> None:
    whole = sse_event({"id": "c1", "model": "gpt-4o", "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {"content": "Hi"}}]})
    cut = whole + b'data: {"id": "c1", "choi'
    session = StreamSession(method="POST", path=CHAT, content_type="text/event-stream")
    records = session.feed(cut)
    outcome = session.outcome()
    assert (outcome.complete, outcome.bytes, outcome.boundary, outcome.events) == (False, len(cut), len(whole), 1)
    assert [r.time for r in records] == [None]  # untimed feed, untimed record


def test_handoff_values_are_frozen() -> None:
    session, records = feed([OPENAI_BODY], method="POST", path=CHAT, content_type="text/event-stream")
    with pytest.raises(dataclasses.FrozenInstanceError):
        records[0].index = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        session.outcome().complete = False  # type: ignore[misc]
    assert isinstance(session.outcome(), Outcome)
