"""core/describe.py: one short line per part for the live log and the
contentview, and each part as plain JSON-able data for the JSONL."""

from __future__ import annotations

import json
import typing

import pytest

from ssemedic.core.describe import clip, describe, describe_part, part_to_dict, trim
from ssemedic.core.parts import (
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

# -- clip and trim ---------------------------------------------------------------------


def test_clip_keeps_short_text_and_cuts_long_text_to_the_limit() -> None:
    assert clip("Привет", 10) == "Привет"
    assert clip("Привет", 6) == "Привет"
    assert clip("Привет, мир", 6) == "Приве…"
    assert len(clip("x" * 500, 120)) == 120


def test_clip_puts_text_on_one_line() -> None:
    assert clip("line one\nline two\r\nthree\rfour", 0) == "line one\\nline two\\r\\nthree\\rfour"
    assert "\n" not in clip("a\n" * 100, 50) and "\r" not in clip("a\r" * 100, 50)


def test_clip_with_limit_zero_keeps_everything() -> None:
    assert clip("x" * 10_000, 0) == "x" * 10_000


def test_trim_says_how_much_was_left_out() -> None:
    assert trim("abcdefghij", 4) == "abcd… (+6 chars)"
    assert trim("abcd", 4) == "abcd"
    assert trim("multi\nline", 0) == "multi\nline"  # trim only shortens, it keeps lines


# -- describe_part: one phrase per kind ----------------------------------------------------

PHRASES: list[tuple[Part, str]] = [
    (Text("Привет"), 'text "Привет"'),
    (Text("Hi", via="send_message"), 'text (via send_message) "Hi"'),
    (Text("a\nb"), 'text "a\\nb"'),
    (Reasoning("Let me think"), 'reasoning "Let me think"'),
    (Reasoning("", hidden=True), "reasoning (hidden)"),
    (Reasoning("shown anyway", hidden=True), 'reasoning "shown anyway"'),
    (Reasoning("", signature="EqQBCgIYAh"), "reasoning signature"),
    (Refusal("I can't help with that"), 'refusal "I can\'t help with that"'),
    (ToolCall("0", "call_1", "get_weather", '{"city":'), 'tool call get_weather {"city":'),
    (ToolCall("0", "call_1", "get_weather"), "tool call get_weather"),
    (ToolCall("1", arguments='"Paris"}'), 'tool call #1 "Paris"}'),
    (ToolCall("toolu_01"), "tool call #toolu_01"),
    (ToolResult("sunny", "call_1", "get_weather"), "tool result get_weather → sunny"),
    (ToolResult("sunny", "call_1"), "tool result call_1 → sunny"),
    (ToolResult("sunny"), "tool result → sunny"),
    (ToolResult("timeout", "call_2", is_error=True), "tool error call_2 → timeout"),
    (Usage({"prompt_tokens": 3}, 3, 5, 8), "usage in=3 out=5 total=8"),
    (Stop("end_turn"), "stop end_turn"),
    (Done("[DONE]"), "end [DONE]"),
    (Done("message_stop"), "end message_stop"),
    (Error("Overloaded", "overloaded_error"), "ERROR [overloaded_error] Overloaded"),
    (Error("boom"), "ERROR boom"),
    (Meta("gpt-4o", "chatcmpl-1"), "model gpt-4o"),
    (Meta(None, "resp_1"), "id resp_1"),
    (Malformed("invalid-json", "Expecting value"), "MALFORMED invalid-json: Expecting value"),
    (Notice("content-filtered", "answer: x"), "content-filtered: answer: x"),
]


@pytest.mark.parametrize(("part", "phrase"), PHRASES, ids=[p for _, p in PHRASES])
def test_each_part_has_its_phrase(part: Part, phrase: str) -> None:
    assert describe_part(part) == phrase


def test_every_part_kind_has_a_phrase_of_its_own() -> None:
    kinds = set(typing.get_args(Part))
    assert {type(part) for part, _ in PHRASES} == kinds
    for kind in kinds:
        assert not describe_part(next(p for p, _ in PHRASES if type(p) is kind)).startswith(kind.__name__)


@pytest.mark.parametrize(
    "part",
    [Text("x" * 300), Reasoning("x" * 300), Refusal("x" * 300), ToolCall("0", name="f", arguments="x" * 300),
     ToolResult("x" * 300, name="f"), Error("x" * 300), Malformed("invalid-json", "x" * 300)],
    ids=lambda p: type(p).__name__,
)
def test_long_payloads_are_clipped_to_the_limit(part: Part) -> None:
    line = describe_part(part, limit=20)
    assert "x" * 19 + "…" in line and "x" * 20 not in line
    assert "x" * 300 in describe_part(part, limit=0)


def test_multi_line_payloads_stay_on_one_line() -> None:
    for part in [Text("a\nb"), ToolResult("a\r\nb"), Error("a\nb"), ToolCall("0", name="f", arguments="{\n}")]:
        assert "\n" not in describe_part(part) and "\r" not in describe_part(part)


def test_tool_result_content_is_shown_as_it_is() -> None:
    # Indented code or aligned columns in a tool result keep their spaces.
    content = "def f():\n    return  1"
    assert describe_part(ToolResult(content, name="run_python")) == (
        "tool result run_python → def f():\\n    return  1")
    assert describe_part(ToolResult("a  b")) == "tool result → a  b"


# -- describe: all of an event's parts ------------------------------------------------------


def test_describe_one_part_is_its_phrase() -> None:
    assert describe([Text("Hi")]) == 'text "Hi"' == describe((Text("Hi"),))


def test_describe_no_part_is_a_dash() -> None:
    assert describe([]) == "—" == describe(())


def test_describe_joins_parts_in_order() -> None:
    parts = (Meta("claude-sonnet-4"), Usage({}, 10, 1, None), Stop("tool_use"))
    assert describe(parts) == "model claude-sonnet-4 · usage in=10 out=1 total=None · stop tool_use"


def test_describe_passes_the_limit_to_every_part() -> None:
    line = describe([Text("a" * 50), Error("b" * 50)], limit=10)
    assert line == f'text "{"a" * 9}…" · ERROR {"b" * 9}…'


# -- part_to_dict -------------------------------------------------------------------------


@pytest.mark.parametrize(("part", "phrase"), PHRASES, ids=[p for _, p in PHRASES])
def test_every_part_becomes_json_with_a_kind(part: Part, phrase: str) -> None:
    data = part_to_dict(part)
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data
    assert data["kind"] == {Text: "text", Reasoning: "reasoning", Refusal: "refusal", ToolCall: "tool_call",
                            ToolResult: "tool_result", Usage: "usage", Stop: "stop", Done: "done",
                            Error: "error", Meta: "meta", Malformed: "malformed", Notice: "notice"}[type(part)]


@pytest.mark.parametrize(("part", "phrase"), PHRASES, ids=[p for _, p in PHRASES])
def test_part_to_dict_keeps_every_field(part: Part, phrase: str) -> None:
    data = part_to_dict(part)
    renamed = {"kind": "fault" if isinstance(part, Notice) else "problem", "id": "id", "type": "type"}
    values = {renamed.get(name, name): getattr(part, name) for name in part.__slots__}  # type: ignore[union-attr]
    assert {k: v for k, v in data.items() if k != "kind"} == values


def test_part_to_dict_keeps_full_text_unclipped() -> None:
    text = "строка\n" * 100
    assert part_to_dict(Text(text))["text"] == text
    assert part_to_dict(Malformed("unexpected-shape", "no choices"))["problem"] == "unexpected-shape"
