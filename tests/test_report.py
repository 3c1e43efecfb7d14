"""The summary panel: every row kind, the border colour rules, and values
that wrap or hold several lines staying under the value column."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console
from rich.style import Style

from ssemedic.files.report import panel, render


def report(**changes: Any) -> dict[str, Any]:
    """A clean, complete report object; ``changes`` replace its keys."""
    base: dict[str, Any] = {
        "source": "POST https://api.example.com/v1/chat/completions", "status": 200,
        "provider": "openai-chat", "framing": "sse", "model": "gpt-4o", "events": 5,
        "timing": {"chunks": 3, "bytes": 1234, "ttfb_ms": 10.0, "ttft_ms": 20.0, "duration_ms": 300.0,
                   "gap_p50_ms": 1.0, "gap_p99_ms": 2.0, "gap_max_ms": 3.0},
        "finish_reason": "stop", "complete": True, "usage": {}, "reasoning": "", "text": "Привет, мир! 🌍",
        "refusal": "", "tool_calls": [], "tool_results": [], "errors": [], "faults": [], "issues": [], "notes": [],
    }
    return base | changes


def fault(severity: str, kind: str = "stall") -> dict[str, Any]:
    return {"kind": kind, "severity": severity, "count": 1, "message": f"a {severity}", "detail": ""}


EVERY_ROW = report(
    complete=False, finish_reason=None,
    usage={"prompt_tokens": 3, "completion_tokens": 5},
    reasoning="Думаю…",
    refusal="I can't help with that",
    tool_calls=[{"name": "get_weather", "arguments": '{"city": "Paris"}'}],
    tool_results=[{"is_error": False, "name": "get_weather", "tool_call_id": "c1", "content": "sunny"},
                  {"is_error": True, "name": None, "tool_call_id": "c2", "content": "timeout"}],
    errors=[{"type": "overloaded_error", "message": "Overloaded"}],
    faults=[{"kind": "utf8-split", "severity": "warning", "count": 3, "message": "split", "detail": "at 7"}],
    issues=[{"kind": "invalid-json", "event_index": 2, "detail": "Expecting value"}],
    notes=["no chunk timeline in this flow: timings unavailable"],
)


def draw(renderable: Any, width: int = 100, **console: Any) -> str:
    out = Console(file=io.StringIO(), width=width, highlight=False, **console)
    out.print(renderable)
    return out.file.getvalue()  # type: ignore[attr-defined]


def rows(text: str) -> list[tuple[str, str]]:
    """The panel's (label, value) lines, without the box; the label is empty
    on a value's further lines."""
    inner = [line[2:-1] for line in text.splitlines()[1:-1]]
    after_label = inner[0][len("stream"):]  # the first row is always "stream"
    column = len("stream") + len(after_label) - len(after_label.lstrip(" "))
    return [(line[:column].strip(), line[column:].rstrip()) for line in inner]


def lines_of(text: str, label: str) -> list[str]:
    """Every line of one row's value."""
    body = rows(text)
    start = [name for name, _ in body].index(label)
    values = [body[start][1]]
    for name, value in body[start + 1:]:
        if name:
            break
        values.append(value)
    return values


def test_panel_shows_every_row_kind_in_order() -> None:
    out = draw(panel(EVERY_ROW), width=120)
    assert [label for label, _ in rows(out) if label] == [
        "stream", "size", "timing", "finish", "usage", "reasoning", "text", "refusal",
        "tool call", "tool result", "tool error", "error", "fault", "issue", "note",
    ]
    values = {label: value for label, value in rows(out) if label}
    assert values["stream"] == "openai-chat (sse) · HTTP 200 · model gpt-4o"
    assert values["size"] == "5 events · 1,234 bytes · 3 chunks"
    assert values["timing"].startswith("TTFB 10.0 ms · TTFT 20.0 ms · duration 300.0 ms")
    assert values["finish"] == "— · no terminal signal"
    assert values["usage"] == '{"prompt_tokens": 3, "completion_tokens": 5}'
    assert values["reasoning"] == "Думаю…"
    assert values["text"] == "Привет, мир! 🌍"
    assert values["refusal"] == "I can't help with that"
    assert values["tool call"] == 'get_weather({"city": "Paris"})'
    assert values["tool result"] == "get_weather → sunny"
    assert values["tool error"] == "c2 → timeout"
    assert values["error"] == "[overloaded_error] Overloaded"
    assert values["fault"] == "utf8-split ×3: split (at 7)"
    assert values["issue"] == "invalid-json event #2: Expecting value"
    assert values["note"] == "no chunk timeline in this flow: timings unavailable"
    assert out.splitlines()[0].startswith("╭─ POST https://api.example.com/v1/chat/completions ─")


def test_rows_keep_their_styles() -> None:
    console = Console(width=100, highlight=False, force_terminal=True)
    styles = {segment.text.strip(): segment.style for line in console.render_lines(panel(EVERY_ROW))
              for segment in line if segment.text.strip()}
    assert styles["tool result"] == Style.parse("bold cyan")
    assert styles["— · no terminal signal"] == Style.parse("yellow")
    assert styles["Думаю…"] == Style.parse("dim italic")
    assert styles["I can't help with that"] == Style.parse("magenta")
    assert styles["[overloaded_error] Overloaded"] == Style.parse("bold red")
    assert styles["utf8-split ×3: split (at 7)"] == Style.parse("yellow")
    assert styles["no chunk timeline in this flow: timings unavailable"] == Style.parse("dim")
    assert styles["Привет, мир! 🌍"] is None


def test_missing_text_says_so_dimmed() -> None:
    assert dict(rows(draw(panel(report(text="")))))["text"] == "(no text)"


@pytest.mark.parametrize(("changes", "colour"), [
    ({}, "green"),
    ({"faults": [fault("info")]}, "green"),
    ({"complete": False}, "yellow"),
    ({"issues": [{"kind": "invalid-json", "offset": 12, "detail": "x"}]}, "yellow"),
    ({"faults": [fault("info"), fault("warning")]}, "yellow"),
    ({"faults": [fault("warning"), fault("error")]}, "red"),
    ({"errors": [{"type": None, "message": "boom"}]}, "red"),
    ({"errors": [{"type": None, "message": "boom"}], "complete": False}, "red"),
])
def test_border_colour_follows_the_rules(changes: dict[str, Any], colour: str) -> None:
    assert panel(report(**changes)).border_style == colour


def test_long_and_multi_line_values_continue_under_the_value_column() -> None:
    words = [f"word{i}" for i in range(40)]
    out = draw(panel(report(text="first line\nsecond line\n" + " ".join(words), notes=["x" * 150])), width=60)
    assert {cell_len(line) for line in out.splitlines()} == {60}  # the box stays closed
    text = lines_of(out, "text")
    assert text[:2] == ["first line", "second line"]
    assert len(text) > 3 and all(line == line.lstrip() for line in text)
    assert " ".join(text[2:]).split() == words
    notes = lines_of(out, "note")
    assert len(notes) > 1 and "".join(notes) == "x" * 150


def test_tabs_and_control_codes_are_handled_like_rich_text() -> None:
    out = draw(panel(report(text="a\tb\rc\x07d")), width=60)
    assert lines_of(out, "text") == ["a       bcd"]
    assert {cell_len(line) for line in out.splitlines()} == {60}


def test_wide_characters_wrap_without_breaking_the_box() -> None:
    out = draw(panel(report(text="漢字" * 40)), width=41)
    assert {cell_len(line) for line in out.splitlines()} == {41}
    text = lines_of(out, "text")
    assert len(text) > 1 and "".join(text) == "漢字" * 40


def test_render_without_reports_says_so() -> None:
    assert draw_render([]) == "no streamed responses found\n"


def draw_render(reports: list[dict[str, Any]]) -> str:
    console = Console(file=io.StringIO(), width=80)
    render(reports, console)
    return console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [20, 37, 60, 100])
def test_wrapping_matches_rich_text_wrap(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Long lines are cut with rich's own line divider when it is there; the
    # fallback (a future rich without it) wraps with Text.wrap: same output.
    text = "Привет, мир! 👋 " * 9 + "a" * 70 + " the end, after a very long word: " + "x" * 45
    fast = draw(panel(report(text=text, reasoning="why " * 40)), width=width)
    monkeypatch.setattr("ssemedic.files.report.divide_line", None)
    assert draw(panel(report(text=text, reasoning="why " * 40)), width=width) == fast
