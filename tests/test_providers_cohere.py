"""Cohere v2 chat streams through a whole StreamSession, in every chunking.

A recorded text-only answer is a field stream (tests/field/cohere/); the
tool calls, thinking and errors here are built from the event shapes of
Cohere's "Chat" API reference and "Streaming" guide (docs.cohere.com:
``message-start``, ``content-delta`` with
``delta.message.content.text``, ``tool-plan-delta``, ``tool-call-start`` /
``-delta`` / ``-end`` keyed by ``index``, ``message-end`` with
``finish_reason`` and ``usage.billed_units`` / ``usage.tokens``), with the
``event:`` line the SSE stream carries before each ``data:``.
"""

from __future__ import annotations

import json
from typing import Any

from helpers import CHUNKING_FAULTS, run_everywhere, sse_event

from ssemedic.core import providers
from ssemedic.core.parts import Error
from ssemedic.core.session import StreamSession

PATH = "/v2/chat"
ID = "a8fc192e-4bb8-4e15-ae1f-a174e8b02ae8"


def event(kind: str, **fields: Any) -> bytes:
    return sse_event({"type": kind, **fields}, kind)


def message(**fields: Any) -> dict[str, Any]:
    return {"message": fields}


def start() -> bytes:
    return event("message-start", id=ID,
                 delta=message(role="assistant", content=[], tool_plan="", tool_calls=[], citations=[]))


def text_events(pieces: list[str]) -> list[bytes]:
    return [
        event("content-start", index=0, delta=message(content={"type": "text", "text": ""})),
        *(event("content-delta", index=0, delta=message(content={"text": p})) for p in pieces),
        event("content-end", index=0),
    ]


def end(reason: str = "COMPLETE", **delta: Any) -> bytes:
    usage = {"billed_units": {"input_tokens": 5, "output_tokens": 9}, "tokens": {"input_tokens": 71, "output_tokens": 9}}
    return event("message-end", delta={"finish_reason": reason, "usage": usage, **delta})


def cohere_stream(pieces: list[str] | None = None) -> list[bytes]:
    """A whole text answer, event by event."""
    return [start(), *text_events(pieces or ["Coca", "-Cola is", " a soft drink «колa»."]), end()]


def faults(session: StreamSession) -> list[str]:
    return [str(f.kind) for f in session.faults if f.kind not in CHUNKING_FAULTS]


def test_text_answer_with_usage_and_finish_reason() -> None:
    session = run_everywhere(b"".join(cohere_stream()), path=PATH)
    assert session.provider == "cohere"
    assert session.message.text == "Coca-Cola is a soft drink «колa»."
    assert session.message.finish_reason == "COMPLETE"
    assert session.message.response_id == ID
    assert session.message.usage is not None
    assert (session.message.usage["input_tokens"], session.message.usage["output_tokens"]) == (71, 9)
    assert session.complete
    assert (session.malformed_events, faults(session)) == ([], [])


def test_tool_plan_and_tool_call_fragments() -> None:
    call = {"id": "get_weather_x1y2", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    data = b"".join([
        start(),
        *(event("tool-plan-delta", delta=message(tool_plan=p)) for p in ["I will look up", " the weather."]),
        event("tool-call-start", index=0, delta=message(tool_calls=call)),
        *(event("tool-call-delta", index=0, delta=message(tool_calls={"function": {"arguments": a}}))
          for a in ['{\n    "', 'location', '": "Мадрид"}']),
        event("tool-call-end", index=0),
        end("TOOL_CALL"),
    ])
    session = run_everywhere(data, path=PATH)
    [only] = session.message.tool_calls.values()
    assert (only.id, only.name, json.loads(only.arguments)) == ("get_weather_x1y2", "get_weather",
                                                                {"location": "Мадрид"})
    assert session.message.reasoning == "I will look up the weather."
    assert session.message.finish_reason == "TOOL_CALL"
    assert faults(session) == []


def test_thinking_content_is_reasoning() -> None:
    data = b"".join([
        start(),
        event("content-delta", index=0, delta=message(content={"thinking": "Hmm, "})),
        event("content-delta", index=0, delta=message(content={"thinking": "prices."})),
        *text_events(["42"]),
        end(),
    ])
    session = run_everywhere(data, path=PATH)
    assert (session.message.reasoning, session.message.text) == ("Hmm, prices.", "42")


def test_error_finish_is_an_error_with_its_message() -> None:
    data = b"".join([start(), *text_events(["Half"]), end("ERROR", error="internal server error")])
    session = run_everywhere(data, path=PATH)
    assert session.message.errors == [Error("internal server error", None, "ERROR")]
    assert faults(session) == ["error-in-stream"]


def test_cut_before_message_end_is_truncated() -> None:
    session = run_everywhere(b"".join([start(), *text_events(["Half"])]), path=PATH)
    assert not session.complete
    assert faults(session) == ["truncated"]


def test_recognised_by_its_first_payload_on_any_path() -> None:
    session = run_everywhere(b"".join(cohere_stream()), path="/proxy/llm")
    assert (session.provider, session.provider_source, session.provider_settled_at) == ("cohere", "payload", 0)


def test_error_event_is_a_message_end_the_interpreter_reads_as_an_error() -> None:
    raw = providers.get("cohere").error_event("sse", "upstream cut")
    session = run_everywhere(start() + raw, path=PATH)
    assert [e.message for e in session.message.errors] == ["upstream cut"]
    assert session.complete
