"""Message assembly: whatever parts arrive, in any order, the message holds
what each kind of part contributes, up to the kept-text cap; past it, the
prefix is kept, the counts stay exact, and everything that shows the message
says what was cut."""

from __future__ import annotations

import io
from typing import Any

import pytest
from helpers import CHUNKING_FAULTS, run_session, sse_event, summary_without_timing
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.contentviews import Metadata
from rich.console import Console

from ssemedic.core import message as message_module
from ssemedic.core.faults import FaultKind
from ssemedic.core.message import KEPT_CHARS, Message
from ssemedic.core.session import StreamSession
from ssemedic.files.report import panel
from ssemedic.mitm.contentview import llm_stream_view
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


# -- the kept-text cap ------------------------------------------------------------------

KINDS = st.sampled_from(["text", "reasoning", "refusal"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.builds(Text, WORDS), st.builds(Reasoning, WORDS), st.builds(Refusal, WORDS),
                          st.builds(ToolCall, st.sampled_from(["0", "1"]), MAYBE, MAYBE, WORDS),
                          st.builds(ToolResult, WORDS)), max_size=12),
       st.integers(0, 12))
def test_kept_content_is_the_prefix_and_the_counts_are_exact(parts: list[Part], keep: int) -> None:
    message = Message(keep=keep)
    for part in parts:
        message.add(part)
    for kind, cls in (("text", Text), ("reasoning", Reasoning), ("refusal", Refusal)):
        full = "".join(p.text for p in parts if isinstance(p, cls))
        assert getattr(message, kind) == full[:keep], kind
        assert message.chars()[kind] == len(full)
        assert message.cut().get(kind, 0) == max(len(full) - keep, 0)
    calls = [p for p in parts if isinstance(p, ToolCall)]
    for key, call in message.tool_calls.items():
        full = "".join(c.arguments for c in calls if c.key == key)
        assert full.startswith(call.arguments) and call.chars == len(full)
        assert call.cut == len(full) - len(call.arguments)
    kept_arguments = sum(len(c.arguments) for c in message.tool_calls.values())
    assert kept_arguments == min(sum(len(c.arguments) for c in calls), keep)
    assert message.chars()["tool_arguments"] == sum(len(c.arguments) for c in calls)
    results = [p for p in parts if isinstance(p, ToolResult)]
    assert message.tool_result_lengths == [len(r.content) for r in results]
    assert all(r.content.startswith(kept.content) for r, kept in zip(results, message.tool_results))
    assert sum(len(r.content) for r in message.tool_results) == min(sum(len(r.content) for r in results), keep)
    assert message.to_dict()["cut"] == message.cut()


def test_cut_arguments_are_not_called_invalid() -> None:
    message = Message(keep=10)
    message.add(ToolCall("0", "c1", "f", '{"city": "Москва"}'))
    [call] = message.tool_calls.values()
    assert call.arguments == '{"city": "' and call.chars == 18 and call.cut == 8
    assert call.arguments_error is None
    assert call.validity == "JSON not checked: 8 of 18 chars not kept"
    whole = Message()
    whole.add(ToolCall("0", "c1", "f", '{"city": '))
    assert whole.tool_calls["0"].validity.startswith("invalid JSON: ")  # whole and broken: still said


def test_items_beyond_the_cap_are_counted_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(message_module, "KEPT_ITEMS", 2)
    message = Message()
    for key in "abcd":
        message.add(ToolCall(key, None, key, "{}"))
        message.add(ToolResult("ok", key))
    assert list(message.tool_calls) == ["a", "b"] and len(message.tool_results) == 2
    assert message.cut() == {"tool_arguments": 4, "tool_results": 4,
                             "tool_call_parts_dropped": 2, "tool_results_dropped": 2}
    assert message.chars()["tool_arguments"] == 8 and message.chars()["tool_results"] == 8


# A stream with more text, reasoning and tool-call arguments than the cap,
# through the whole session: the summary, the panel, the view and the diagnosis.

BIG = KEPT_CHARS + 123_457
PIECE = 65_536


def chat(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse_event({"object": "chat.completion.chunk", "model": "gpt-4o",
                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def pieces(total: int, alphabet: str) -> list[str]:
    """``total`` characters in pieces of PIECE, cycling through ``alphabet`` (multi-byte ones too)."""
    text = (alphabet * (total // len(alphabet) + 1))[:total]
    return [text[i : i + PIECE] for i in range(0, total, PIECE)]


TEXT = pieces(BIG, "Привет, мир! 🌍 ")
REASONING = pieces(KEPT_CHARS + 5, "думаю ")
ARGUMENTS = '{"data": "' + "x" * BIG + '"}'  # valid JSON, longer than the cap
BIG_BODY = b"".join(
    [chat({"role": "assistant", "content": ""})]
    + [chat({"reasoning_content": piece}) for piece in REASONING]
    + [chat({"content": piece}) for piece in TEXT]
    + [chat({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                             "function": {"name": "save", "arguments": ARGUMENTS[i : i + PIECE]}}]})
       for i in range(0, len(ARGUMENTS), PIECE)]
    + [chat({}, "tool_calls"), b"data: [DONE]\n\n"]
)


def big_chunkings() -> list[tuple[str, list[bytes]]]:
    """Whole, and cut at a few points (byte by byte would take minutes at this size)."""
    cuts = [1, 7, len(BIG_BODY) // 3, len(BIG_BODY) // 2 + 1, len(BIG_BODY) - 3]
    return [("whole", [BIG_BODY])] + [(f"split@{i}", [BIG_BODY[:i], BIG_BODY[i:]]) for i in cuts]


def test_a_stream_over_the_cap_keeps_the_prefix_with_exact_counts() -> None:
    text = "".join(TEXT)
    expected = None
    for name, chunks in big_chunkings():
        session = run_session(chunks, path="/v1/chat/completions")
        summary = summary_without_timing(session)
        assert summary["text"] == text[:KEPT_CHARS], name
        assert summary["reasoning"] == "".join(REASONING)[:KEPT_CHARS]
        assert summary["chars"] == {"text": BIG, "reasoning": KEPT_CHARS + 5, "refusal": 0,
                                    "tool_arguments": len(ARGUMENTS), "tool_results": 0}
        assert summary["cut"] == {"text": BIG - KEPT_CHARS, "reasoning": 5,
                                  "tool_arguments": len(ARGUMENTS) - KEPT_CHARS}
        [call] = summary["tool_calls"]
        assert call["arguments"] == ARGUMENTS[:KEPT_CHARS] and call["arguments_chars"] == len(ARGUMENTS)
        assert len(session.message.text_parts) <= KEPT_CHARS // PIECE + 1  # nothing past the cap is held
        expected = expected or summary
        assert summary == expected, name


def test_diagnosis_invents_no_fault_from_the_cut() -> None:
    big = run_session([BIG_BODY], path="/v1/chat/completions")
    small_body = b"".join([chat({"role": "assistant", "content": ""}), chat({"reasoning_content": "hm"}),
                           chat({"content": "hi"}),
                           chat({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                                 "function": {"name": "save", "arguments": '{"data": "x"}'}}]}),
                           chat({}, "tool_calls"), b"data: [DONE]\n\n"])
    small = run_session([small_body], path="/v1/chat/completions")
    def kinds(session: StreamSession) -> list[str]:
        return [f.kind for f in session.faults if f.kind not in CHUNKING_FAULTS]  # one chunk: a burst

    assert big.complete and kinds(big) == kinds(small)
    assert all(f.kind != FaultKind.INVALID_TOOL_ARGUMENTS for f in big.faults)


def test_cut_arguments_that_were_broken_before_the_cut_are_not_judged() -> None:
    # Invalid within the kept prefix, yet unknown as a whole: not reported either way.
    session = run_session([chat({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                                 "function": {"name": "f", "arguments": "{oops" + "x" * BIG}}]}),
                           chat({}, "tool_calls"), b"data: [DONE]\n\n"], path="/v1/chat/completions")
    assert [f.kind for f in session.faults if f.kind == FaultKind.INVALID_TOOL_ARGUMENTS] == []
    assert "JSON not checked" in session.message.tool_calls["0"].validity


def test_the_panel_says_what_was_cut() -> None:
    session = run_session([BIG_BODY], path="/v1/chat/completions")
    out = Console(file=io.StringIO(), width=200, highlight=False)
    out.print(panel({"source": "big", "status": 200, **session.summary(), "notes": []}, max_text=20))
    shown = out.file.getvalue()  # type: ignore[attr-defined]
    assert f"(+{BIG - 20:,} chars; cut: only the first {KEPT_CHARS:,} of {BIG:,} chars were kept)" in shown
    assert f"of {KEPT_CHARS + 5:,} chars were kept" in shown  # the reasoning
    assert f"of {len(ARGUMENTS):,} chars were kept" in shown  # the tool call


def test_the_view_says_what_was_cut_and_does_not_judge_cut_arguments() -> None:
    view = llm_stream_view.prettify(BIG_BODY, Metadata(content_type="text/event-stream"))
    assert f"cut: only the first {KEPT_CHARS:,} of {BIG:,} chars were kept" in view
    assert (f"    - name: save\n      id: c1\n      json: 'JSON not checked: {len(ARGUMENTS) - KEPT_CHARS:,} "
            f"of {len(ARGUMENTS):,} chars not kept'") in view
    assert "invalid JSON" not in view
