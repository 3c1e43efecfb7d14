"""Message assembly: ``add`` takes plain text by a fast path; it must build the
same message as the general path, ``_add``, for any parts in any order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ssemedic.message import Message
from ssemedic.parts import (
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
def test_add_builds_the_message_the_general_path_builds(parts: list[Part]) -> None:
    fast, general = Message(), Message()
    for part in parts:
        fast.add(part)
        general._add(part)
    assert fast == general
    assert fast.to_dict() == general.to_dict()


def test_text_with_a_detour_is_noted_once() -> None:
    message = Message()
    for part in [Text("a"), Text("b", "send_message"), Text("c", "send_message"), Text("d")]:
        message.add(part)
    assert message.text == "abcd"
    assert message.text_via == ["send_message"]
