"""The text view of a stream (core/view.py): verdict first, every line within
the width, valid YAML so mitmproxy's highlighting colours it to the end."""

from __future__ import annotations

import time
from pathlib import Path

import mitmproxy_rs.syntax_highlight
import pytest
import urwid
from helpers import sse_event
from mitmproxy import io
from mitmproxy.test import tflow
from ruamel.yaml import YAML

from ssemedic.core import sides, view
from ssemedic.core.inject import parse_injections
from ssemedic.core.recording import METADATA_KEY
from ssemedic.core.repair import parse_repairs
from ssemedic.core.session import StreamSession
from ssemedic.files.sources import Capture, stream_from_flow
from ssemedic.mitm import contentview
from test_sides import BROKEN_CHUNKS, HEADERS, PATH, again, chunk
from test_sides import run as through_pipeline

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
#: healthy: reasoning then text; truncated, error-then-done: errors; tool-call: two calls;
#: letta: Letta's own events; gzip: a compressed stream.
STREAMS = ["healthy", "truncated", "error-then-done", "tool-call", "letta", "gzip"]
WIDTHS = [40, 60, 88, 120]


def recorded(name: str) -> Capture:
    with (RECORDINGS / f"{name}.flows").open("rb") as f:
        (flow,) = list(io.FlowReader(f).stream())
    stream = stream_from_flow(flow, "")
    assert stream is not None
    return stream


def columns(line: str) -> int:
    """A line's width in terminal columns, as urwid (the console UI) counts them."""
    return int(urwid.calc_width(line, 0, len(line)))


def text_of(name: str, width: int = contentview.WIDTH) -> str:
    return contentview.render(recorded(name), width)


def top_keys(text: str) -> list[str]:
    return [line.split(":", 1)[0] for line in text.splitlines() if line[:1].isalpha()]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", STREAMS)
def test_verdict_comes_first_and_no_line_is_wider_than_the_width(name: str, width: int) -> None:
    text = text_of(name, width)
    assert text.startswith("verdict: ")
    keys = top_keys(text)
    assert keys[:2] == ["verdict", "provider"]
    assert keys.index("complete") < keys.index("faults") < keys.index("message")
    assert keys[-4:] == ["message", "client vs upstream", "arrivals", "events"]
    widest = max(text.splitlines(), key=columns)
    assert columns(widest) <= width, widest


@pytest.mark.parametrize("name", STREAMS)
def test_the_view_is_yaml_so_highlighting_reaches_its_end(name: str) -> None:
    text = text_of(name)
    data = YAML(typ="safe", pure=True).load(text)
    assert list(data)[0] == "verdict" and "events" in data
    chunks = mitmproxy_rs.syntax_highlight.highlight(text, "yaml")
    last_row = text.splitlines()[-1].split(":", 1)[0].strip()
    assert ("number", last_row) in chunks  # the last event's index is still coloured


@pytest.mark.parametrize(("name", "errors"), [
    ("truncated", ["truncated"]),
    ("error-then-done", ["error-in-stream", "done-after-error"]),
])
def test_errors_come_first_and_each_fault_is_highlighted_with_its_fix(name: str, errors: list[str]) -> None:
    text = text_of(name)
    lines = text.splitlines()
    assert lines[0].startswith(f"verdict: broken · {len(errors)} error")
    faults = [line for line in lines if line.startswith("  - ")]
    assert [line.split(":")[0] for line in faults[: len(errors)]] == [f"  - error {kind}" for kind in errors]
    assert all(" error " not in line.split(":")[0] for line in faults[len(errors):])
    chunks = mitmproxy_rs.syntax_highlight.highlight(text, "yaml")
    for kind in errors:
        at = chunks.index(("name", f"error {kind}"))
        assert chunks[at + 2][0] == "string"  # the fault's message
        fix = chunks.index(("name", "fix"), at)
        assert chunks[fix + 2][0] == "string"  # and its fix
    assert ("boolean", "false  ") in chunks or any(t == "boolean" and c.startswith("false") for t, c in chunks)


def test_a_healthy_stream_shows_reasoning_text_and_usage() -> None:
    text = text_of("healthy")
    assert text.startswith("verdict: healthy · 2 warnings, 2 infos\n")  # TCP splits: listed, not degrading
    assert "\ncomplete: true\n" in text
    message = text[text.index("\nmessage:\n"):text.index("\narrivals:\n")]
    assert "\n  text: |-\n    Привет! 👋 Ответ появляется по частям" in message
    assert "\n  reasoning: |-\n    Пользователь спрашивает" in message
    assert "  stop: stop · [DONE] · complete" in message
    assert '"completion_tokens": 61' in message


def test_tool_calls_show_their_arguments_and_whether_they_are_json() -> None:
    text = text_of("tool-call", 120)
    section = text[text.index("  tool calls:\n"):]
    assert "    - name: get_weather\n      id: call_demo0\n      json: valid JSON\n" in section
    assert section.count("      json: valid JSON") == 2
    assert "      arguments: " in section
    assert "  stop: tool_calls · [DONE] · complete" in section


def test_letta_and_compressed_streams_are_assembled() -> None:
    letta = text_of("letta")
    assert "\nprovider: letta (sse)\n" in letta
    assert "\n  text: " in letta and "\n  text: (none)" not in letta
    gzip, healthy = text_of("gzip"), text_of("healthy")
    assert "compressed-stream" in gzip and "body decoded from content-encoding gzip" in gzip
    cut = slice(healthy.index("\n  text:"), healthy.index("\n  usage:"))
    assert healthy[cut] in gzip


def session_of(chunks: list[tuple[bytes, float]], started_at: float = 100.0) -> tuple[StreamSession, list]:
    capture = Capture(label="", body=b"".join(c for c, _ in chunks), chunks=list(chunks), started_at=started_at,
                      closed_at=chunks[-1][1],
                      path="/v1/chat/completions", method="POST", content_type="text/event-stream")
    return capture.run()


def chat(content: str) -> bytes:
    return sse_event({"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]})


def test_marks_split_burst_and_stall_in_the_table_and_the_timeline() -> None:
    one, two, three = chat("a"), chat("b"), chat("c")
    chunks = [
        (one[:10], 100.1), (one[10:] + two, 100.2),  # one split; two in the same burst
        (three, 112.5),  # after 12.3 s of silence: a stall (over 10 s)
        (b"data: [DONE]\n\n", 112.6),
    ]
    session, records = session_of(chunks)
    lines = view.render(session, records, width=80, origin=100.0)
    rows = [line for line in lines[lines.index("events:"):] if line[2:3].isdigit()]
    assert rows[0].split()[:3] == ["0:", "+0.200s", "÷"]
    assert rows[1].split()[:4] == ["1:", "+0.200s", "0.0ms", "≡"]
    assert rows[2].split()[:4] == ["2:", "+12.500s", "12300.0ms", "!"]
    assert "worst gap: '12,300.0 ms before event #2'" in lines
    stall = next(line for line in lines if line.startswith("  events: '"))
    assert view.STALL * 10 in stall and stall.count("█") + stall.count("▄") >= 2
    timing = next(line for line in lines if line.startswith("  timing: '"))
    assert timing.index("B") < timing.index("T")
    assert [f.kind for f in session.faults if f.kind == "stall"]


def test_table_cells_are_shortened_and_say_their_full_length() -> None:
    session, records = session_of([(chat("x" * 5000) + b"data: [DONE]\n\n", 100.5)])
    lines = view.render(session, records, width=60, origin=100.0)
    row = next(line for line in lines if line.startswith("  0:"))
    assert row.endswith(f"… ({len('text ') + 5002:,} chars)") and columns(row) <= 60
    # The message keeps the whole text, wrapped.
    body = lines[lines.index("  text: |-") + 1:next(i for i, line in enumerate(lines) if line.startswith("  stop:"))]
    assert "".join(line.strip() for line in body).startswith("x" * 5000)


def test_wrapping_a_million_characters_is_linear() -> None:
    started = time.perf_counter()
    lines = view.wrap("я" * 1_000_000, 80)
    assert len(lines) == 12_500 and all(len(line) == 80 for line in lines)
    assert time.perf_counter() - started < 10  # quadratic would take hours


@pytest.mark.parametrize(("text", "plain"), [
    ("gpt-4o", True), ("text \"hi\"", True), ("a: b", False), ("x #1", False), ("- x", False),
    ("'q", False), ("true", False), ("", False), ("ends ", False), ("ends:", False), ("a:b", True),
])
def test_plain_scalars_only_when_yaml_reads_them_back(text: str, plain: bool) -> None:
    assert view.plain_ok(text) is plain
    assert YAML(typ="safe", pure=True).load(f"k: {view.scalar(text)}")["k"] == (text or None if plain else text)


def test_wide_characters_count_two_columns() -> None:
    assert view.cells("ab") == 2 and view.cells("Привет") == 6 and view.cells("😊🚀") == 4
    assert all(columns(line) <= 10 for line in view.wrap("😊" * 30, 10))


# -- what the client got versus what the upstream sent -----------------------------------


def flow_through(chunks: list[tuple[bytes, float]], **options: object) -> tuple[Capture, sides.Sides | None]:
    """A flow as the addon leaves it after a live Pipeline ran over ``chunks``
    (the upstream's raw body and the pipeline's metadata), and the two sides
    as core/sides.py makes them again from that pipeline (None: it kept no
    client side, nothing was rewritten)."""
    pipeline, _ = through_pipeline(chunks, **options)
    flow = tflow.tflow(resp=True)
    flow.request.method, flow.request.path = "POST", PATH
    flow.request.timestamp_start = chunks[0][1] - 0.1
    flow.response.headers.clear()
    flow.response.headers.update(HEADERS)
    flow.response.raw_content = b"".join(data for data, _ in chunks)
    flow.metadata[METADATA_KEY] = pipeline.metadata()
    stream = stream_from_flow(flow, "")
    assert stream is not None
    return stream, again(pipeline, chunks)[1] if pipeline.client is not None else None


def section(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("client vs upstream:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("arrivals:"))
    return lines[start:end]


@pytest.mark.parametrize("width", WIDTHS)
def test_a_repaired_stream_shows_both_sides_and_its_changed_events(width: int) -> None:
    stream, found = flow_through(BROKEN_CHUNKS, repairs=parse_repairs("reframe,sanitize,done"))
    assert found is not None and found.changed and found.upstream is not None and found.client is not None
    text = contentview.render(stream, width)
    assert all(columns(line) <= width for line in text.splitlines()), max(text.splitlines(), key=columns)
    assert section(text)[0] == "client vs upstream:"
    shown = YAML(typ="safe", pure=True).load(text)["client vs upstream"]
    assert shown["how"] == found.how
    for side, totals in (("upstream", found.upstream), ("client", found.client)):
        assert shown[side] == f"{totals.bytes:,} bytes · {totals.chunks:,} chunks · {totals.events:,} events"
    assert shown["changes"] == " · ".join(f"{found.counts.get(kind, 0):,} {kind}" for kind in sides.KINDS)
    # What the client missed first (the invalid JSON, the [DONE] after the error), then the rechunked one.
    listed = shown["first changed"]
    expected = sorted(found.changes, key=lambda c: c.kind == "rechunked")
    assert [next(iter(item)) for item in listed] == [c.kind for c in expected]
    assert [item[c.kind].split(" (")[0] for item, c in zip(listed, expected)] == [
        f"upstream #{c.upstream}" for c in expected]
    dropped, moved = listed[0], expected[-1]
    assert listed[-1] == {"rechunked": f"upstream #{moved.upstream} ({moved.upstream_bytes:,} B, "
                          f"{moved.upstream_chunks} chunks) → client #{moved.client} ({moved.client_bytes:,} B, 1 chunk)"}
    if width >= contentview.WIDTH:
        assert dropped["bytes"] == "data: {not json\\n\\n"  # the upstream's bytes, escaped, in full


def test_changed_events_are_bounded_and_their_total_said() -> None:
    body = b"".join(chunk(str(n)) for n in range(30)) + b"data: [DONE]\n\n"
    chunks = [(body[i : i + 200], 1.0 + i / 1000) for i in range(0, len(body), 200)]
    stream, found = flow_through(chunks, injections=parse_injections("split-events"))
    assert found is not None
    total = sum(found.counts.values())
    assert total > view.MAX_CHANGE_LINES
    lines = section(contentview.render(stream))
    assert sum(1 for line in lines if line.startswith("    - ")) == view.MAX_CHANGE_LINES
    assert all(columns(line) <= contentview.WIDTH for line in lines)
    assert any(line.startswith(f"    # {view.MAX_CHANGE_LINES} of {total:,} changed events") for line in lines)
    assert f"    # … {total - view.MAX_CHANGE_LINES:,} more not listed (ssemedic report --json lists them)" in lines
    assert "client got the stream injected (split-events)" in YAML(typ="safe", pure=True).load(
        "\n".join(lines))["client vs upstream"]["how"]


def test_an_inspected_stream_says_in_one_line_that_the_client_got_the_upstreams_bytes() -> None:
    stream, found = flow_through(BROKEN_CHUNKS)
    assert found is None
    assert stream.recorded is not None and stream.recorded.client is None
    text = contentview.render(stream)
    assert section(text) == ["client vs upstream: the client got the upstream's bytes unchanged"]
    assert YAML(typ="safe", pure=True).load(text)["client vs upstream"] == sides.unchanged().how
    # A body ssemedic did not record: what the client got is not known, so nothing is claimed.
    session, records = session_of([(chat("a") + b"data: [DONE]\n\n", 100.5)])
    assert not any(line.startswith("client vs upstream") for line in view.render(session, records))


def test_a_client_side_that_cannot_be_made_again_is_said_and_the_view_still_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream, _ = flow_through(BROKEN_CHUNKS, repairs=parse_repairs("reframe,sanitize,done"))
    assert stream.recorded is not None and stream.recorded.client is not None
    # A recording from a newer ssemedic names a stage this one does not know.
    monkeypatch.setattr(stream.recorded.client, "repairs", ("reframe", "teleport"))
    text = contentview.render(stream)
    lines = section(text)
    assert lines[0].startswith("client vs upstream: client got the stream repaired (reframe, teleport)")
    assert any("names a stage this ssemedic does not know" in line for line in lines[1:])
    assert "events" in YAML(typ="safe", pure=True).load(text)

    def broken(stream: Capture) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(contentview.report, "sides", broken)
    text = contentview.render(stream)
    assert section(text) == ["client vs upstream: 'the client''s side could not be made again: RuntimeError: boom'"]
    assert text.startswith("verdict: ") and "\nevents:\n" in text
