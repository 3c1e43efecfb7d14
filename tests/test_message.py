"""Message assembly: whatever parts arrive, in any order, the message holds
what each kind of part contributes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ssemedic.core.message import Message
from ssemedic.core.parts import (
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

WORDS = st.text(max_size=6)
MAYBE = st.none() | WORDS
PARTS: st.SearchStrategy[Part] = st.one_of(
    st.builds(Text, WORDS),  # the fast path's shape
    st.builds(Text, WORDS, MAYBE),
    st.builds(Reasoning, WORDS),
    st.builds(Refusal, WORDS),
    st.builds(ToolCall, st.sampled_from(["0", "1"]), MAYBE, MAYBE, WORDS),
    st.builds(ToolResult, WORDS),
    st.builds(Usage, st.just({"n": 1}), st.none() | st.integers(0, 9), st.none() | st.integers(0, 9)),
    st.builds(Stop, WORDS),
    st.builds(Done, WORDS),
    st.builds(Error, WORDS),
    st.builds(Meta, MAYBE, MAYBE),
    st.builds(Malformed, WORDS, WORDS),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PARTS, max_size=12))
def test_message_holds_what_each_part_brings(parts: list[Part]) -> None:
    message = Message()
    for part in parts:
        message.add(part)
    assert message.text == "".join(p.text for p in parts if isinstance(p, Text))
    assert message.text_via == list(dict.fromkeys(p.via for p in parts if isinstance(p, Text) and p.via is not None))
    assert message.reasoning_parts == [p.text for p in parts if isinstance(p, Reasoning)]
    assert message.refusal_parts == [p.text for p in parts if isinstance(p, Refusal)]
    calls = [p for p in parts if isinstance(p, ToolCall)]
    assert list(message.tool_calls) == list(dict.fromkeys(c.key for c in calls))
    for key, call in message.tool_calls.items():
        mine = [c for c in calls if c.key == key]
        assert call.arguments == "".join(c.arguments for c in mine)
        assert call.id == next((c.id for c in mine if c.id), None)
        assert call.name == next((c.name for c in mine if c.name), None)
    assert message.tool_results == [p for p in parts if isinstance(p, ToolResult)]
    stops = [p.reason for p in parts if isinstance(p, Stop)]
    assert message.finish_reason == (stops[-1] if stops else None)
    assert message.markers == [p.marker for p in parts if isinstance(p, Done)]
    assert message.errors == [p for p in parts if isinstance(p, Error)]
    assert message.malformed == sum(isinstance(p, Malformed) for p in parts)
    models = [p.model for p in parts if isinstance(p, Meta) and p.model]
    assert message.model == (models[-1] if models else None)


def test_text_with_a_detour_is_noted_once() -> None:
    message = Message()
    for part in [Text("a"), Text("b", "send_message"), Text("c", "send_message"), Text("d")]:
        message.add(part)
    assert message.text == "abcd"
    assert message.text_via == ["send_message"]
