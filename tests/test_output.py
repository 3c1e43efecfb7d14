"""The Reporter under an event loop: summary panels come after their
stream's last line, one per loop turn, and none is lost on close; per-event
lines past the rate limit are dropped and counted, nothing else is; and the
log and JSONL say what the kept-text cap cut."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from helpers import sse_event

from rich.console import Console

from ssemedic.mitm import output

from ssemedic.files import report
from ssemedic.core.message import KEPT_CHARS
from ssemedic.core.pipeline import Pipeline
from ssemedic.mitm.output import EventLineLimit, Reporter, TokenBucket
from test_message import ARGUMENTS, BIG, BIG_BODY

BODY = sse_event({"object": "chat.completion.chunk", "model": "gpt-4o",
                  "choices": [{"index": 0, "delta": {"content": "Привет"}, "finish_reason": "stop"}]}) + b"data: [DONE]\n\n"


class Loop:
    """Stands in for the event loop: ``call_soon`` queues, ``turn`` runs what was queued before it."""

    def __init__(self) -> None:
        self.ready: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.ready.append(callback)

    def turn(self) -> None:
        ready, self.ready = self.ready, []
        for callback in ready:
            callback()


def finish(reporter: Reporter, flow_id: str, error: str | None = None, body: bytes = BODY) -> Pipeline:
    stream = Pipeline(
        flow_id=flow_id, label=f"POST /v1/chat/completions {flow_id}", method="POST", path="/v1/chat/completions",
        request_headers={}, status=200, response_headers={"content-type": "text/event-stream"},
        started_at=0.0, sink=reporter, clock=lambda: 1.0,
    )
    stream.announce()
    if body:
        stream(body)
    stream.end(1.0, error=error)
    return stream


def reporter(loop: Loop, **options: Any) -> tuple[Reporter, io.StringIO]:
    console = io.StringIO()
    return Reporter(level="summary", console=console, color=False, defer=loop.call_soon, **options), console


def panels(text: str) -> int:
    return text.count("╭─ POST")


def test_panel_is_drawn_in_a_later_turn_after_the_completed_line() -> None:
    loop = Loop()
    out, console = reporter(loop)
    finish(out, "aaaaaa")
    assert "completed: 2 events" in console.getvalue() and panels(console.getvalue()) == 0
    loop.turn()
    log = console.getvalue()
    assert panels(log) == 1 and log.index("completed: 2 events") < log.index("╭─ POST")
    assert "Привет" in log


def test_aborted_stream_gets_its_panel_after_the_aborted_line() -> None:
    loop = Loop()
    out, console = reporter(loop)
    finish(out, "aaaaaa", error="client disconnected")
    loop.turn()
    log = console.getvalue()
    assert log.index("aborted: client disconnected") < log.index("╭─ POST")


def test_streams_ending_together_get_one_panel_per_turn() -> None:
    loop = Loop()
    out, console = reporter(loop)
    for flow_id in ("aaaaaa", "bbbbbb", "cccccc"):
        finish(out, flow_id)
    drawn = []
    while loop.ready:
        loop.turn()
        drawn.append(panels(console.getvalue()))
    assert drawn == [1, 2, 3]
    log = console.getvalue()
    assert log.index("completions aaaaaa") < log.index("completions bbbbbb") < log.index("completions cccccc")


def test_close_draws_the_panels_still_queued() -> None:
    loop = Loop()
    out, console = reporter(loop)
    finish(out, "aaaaaa")
    finish(out, "bbbbbb")
    out.close()
    assert panels(console.getvalue()) == 2
    loop.turn()  # the callback scheduled before close finds nothing left to draw
    assert panels(console.getvalue()) == 2 and not loop.ready


def test_without_a_loop_the_panel_is_drawn_at_once() -> None:
    console = io.StringIO()
    finish(Reporter(level="summary", console=console, color=False), "aaaaaa")
    assert panels(console.getvalue()) == 1


def test_a_panel_that_cannot_be_drawn_is_logged_and_the_next_one_still_is(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    real = output.panel
    calls = []

    def flaky(report: dict[str, Any], *, max_text: int) -> Any:
        calls.append(report["source"])
        if len(calls) == 1:
            raise OSError("terminal gone")
        return real(report, max_text=max_text)

    monkeypatch.setattr(output, "panel", flaky)
    loop = Loop()
    out, console = reporter(loop)
    finish(out, "aaaaaa")
    finish(out, "bbbbbb")
    with caplog.at_level(logging.ERROR, logger="ssemedic"):
        loop.turn()
        loop.turn()
    assert "could not draw a summary panel" in caplog.text
    assert panels(console.getvalue()) == 1 and "completions bbbbbb" in console.getvalue()


def finish_row(stream: Pipeline) -> str:
    console = Console(file=io.StringIO(), width=200, no_color=True)
    console.print(report.panel(stream.report()))
    rows = [" ".join(line.strip("│ ").split()) for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]
    [row] = [row for row in rows if row.startswith("finish ")]
    return row


def test_summary_of_an_empty_stream_says_empty_not_no_terminal_signal() -> None:
    stream = finish(Reporter(level="off"), "aaaaaa", body=b"")
    assert finish_row(stream) == "finish — · empty: the body was empty: not one event"


def test_summary_of_done_without_finish_reason_says_what_arrived() -> None:
    body = BODY.replace(b'"finish_reason": "stop"', b'"finish_reason": null')
    stream = finish(Reporter(level="off"), "aaaaaa", body=body)
    assert finish_row(stream) == "finish — · incomplete: data: [DONE] arrived, but no chunk carried a finish_reason"


def test_summary_of_a_complete_stream_says_complete() -> None:
    assert finish_row(finish(Reporter(level="off"), "aaaaaa")) == "finish stop · complete"


# -- quiet faults: noted once per stream, not shouted -------------------------------------


def live_log(chunks: list[bytes], *, color: bool = False, jsonl: io.StringIO | None = None) -> str:
    console = io.StringIO()
    out = Reporter(level="events", console=console, color=color, jsonl=jsonl)
    stream = Pipeline(
        flow_id="aaaaaa", label="POST /v1/chat/completions", method="POST", path="/v1/chat/completions",
        request_headers={}, status=200, response_headers={"content-type": "text/event-stream"},
        started_at=0.0, sink=out, clock=lambda: 1.0,
    )
    stream.announce()
    for chunk in chunks:
        stream(chunk)
    stream.end(1.0)
    return console.getvalue()


def split_in_a_character(body: bytes) -> list[bytes]:
    cut = body.index("Привет".encode()) + 1  # inside the П, inside the data: line
    return [body[:cut], body[cut:]]


QUIET_KINDS = "missing-no-transform, missing-accel-buffering, utf8-split, event-split"  # in order found


def test_faults_normal_on_real_servers_get_one_note_line_at_the_end_not_fault_blocks() -> None:
    jsonl = io.StringIO()
    log = live_log(split_in_a_character(BODY), jsonl=jsonl)
    assert "FAULT" not in log and "fix:" not in log
    notes = [line for line in log.splitlines() if "note:" in line]
    assert notes == [f"[aaaaaa] note: {QUIET_KINDS} (normal on real servers; harmless to robust clients)"]
    assert log.index("#1 ") < log.index("note:") < log.index("completed:")
    # still recorded, with their severity
    faults = [json.loads(line) for line in jsonl.getvalue().splitlines() if '"type": "fault"' in line]
    assert [(f["kind"], f["severity"]) for f in faults] == [
        ("missing-no-transform", "info"), ("missing-accel-buffering", "info"),
        ("utf8-split", "warning"), ("event-split", "warning")]
    summary = json.loads(jsonl.getvalue().splitlines()[-1])
    assert [f["kind"] for f in summary["faults"]] == [f["kind"] for f in faults]


def test_faults_that_hurt_clients_stay_loud_next_to_the_note() -> None:
    error = sse_event({"error": {"message": "upstream reset", "type": "server_error"}})
    log = live_log(split_in_a_character(BODY.removesuffix(b"data: [DONE]\n\n") + error))
    assert "FAULT error-in-stream (event #1): upstream reset" in log
    assert "FAULT missing-done" not in log  # an error ended it: no [DONE] is right
    assert log.count("  fix: ") == 1
    assert log.count("note: ") == 1


def test_faults_are_coloured_by_severity() -> None:
    error = sse_event({"error": {"message": "upstream reset", "type": "server_error"}})
    log = live_log([BODY.removesuffix(b"data: [DONE]\n\n"), error, b"data: [DONE]\n\n"], color=True)
    assert "\x1b[1;31mFAULT error-in-stream" in log and "\x1b[1;31mFAULT done-after-error" in log
    warned = live_log([BODY.removesuffix(b"data: [DONE]\n\n")], color=True)
    assert "\x1b[33mFAULT missing-done" in warned
    assert "\x1b[2mnote: missing-no-transform, missing-accel-buffering (" in warned


# -- the event-line rate limit ------------------------------------------------------------


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chat_events(count: int) -> list[bytes]:
    """``count`` events of an OpenAI chat stream, the last two its finish and [DONE]."""
    body = [sse_event({"object": "chat.completion.chunk", "model": "gpt-4o",
                       "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]})
            for i in range(count - 2)]
    return body + [sse_event({"object": "chat.completion.chunk", "model": "gpt-4o",
                              "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}), b"data: [DONE]\n\n"]


def limited(clock: FakeClock, *, jsonl: io.StringIO | None = None, console: io.StringIO | None = None,
            **limits: float) -> tuple[Reporter, io.StringIO]:
    console = console if console is not None else io.StringIO()
    out = Reporter(level="events", console=console, color=False, jsonl=jsonl, clock=clock)
    if limits:
        out.limit = EventLineLimit(clock, **limits)
    return out, console


def open_stream(out: Reporter, flow_id: str = "aaaaaa") -> Pipeline:
    stream = Pipeline(
        flow_id=flow_id, label=f"POST /v1/chat/completions {flow_id}", method="POST", path="/v1/chat/completions",
        request_headers={}, status=200, response_headers={"content-type": "text/event-stream"},
        started_at=0.0, sink=out, clock=lambda: 1.0,
    )
    stream.announce()
    return stream


def event_lines(log: str, flow_id: str = "aaaaaa") -> list[int]:
    return [int(line.split()[1][1:]) for line in log.splitlines() if line.startswith(f"[{flow_id}] #")]


def test_a_fast_stream_shows_the_burst_then_says_how_many_lines_it_dropped() -> None:
    clock, jsonl = FakeClock(), io.StringIO()
    out, console = limited(clock, jsonl=jsonl)
    events = int(output.FLOW_LINES_BURST) + 300
    stream = open_stream(out)
    stream(b"".join(chat_events(events)))  # all at one instant
    stream.end(1.0)
    log = console.getvalue()
    assert event_lines(log) == list(range(int(output.FLOW_LINES_BURST)))
    assert "[aaaaaa] … 300 event lines not shown (rate limit)" in log
    assert log.index("not shown") < log.index("completed: ")
    assert "300 event lines not shown (rate limit); the JSONL has them all" in log  # the panel's note
    records = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    assert [r["index"] for r in records if r["type"] == "event"] == list(range(events))  # every event
    assert records[-1]["notes"] == ["300 event lines not shown (rate limit); the JSONL has them all"]


def test_the_rate_refills_and_the_drop_note_comes_when_lines_go_out_again() -> None:
    clock = FakeClock()
    out, console = limited(clock, flow_rate=1, flow_burst=2, proxy_rate=100, proxy_burst=100)
    stream = open_stream(out)
    events = chat_events(8)
    for chunk in events[:5]:  # t=0: the burst of two, then three dropped
        stream(chunk)
    clock.now = 1.5  # a token and a half later: one line, after the note for the three
    stream(events[5])
    clock.now = 1.6  # half a token: dropped
    stream(events[6])
    clock.now = 1.7  # still less than one: dropped, and no note before a line goes out
    stream(events[7])
    stream.end(1.7)
    lines = console.getvalue().splitlines()
    shown = [line.split(" ", 1)[1] for line in lines
             if line.startswith("[aaaaaa]") and (" #" in line or "not shown" in line)]
    assert [line.split(" +")[0].split(":")[0] for line in shown] == [
        "#0", "#1", "… 3 event lines not shown (rate limit)", "#5", "… 2 event lines not shown (rate limit)"]
    assert "5 event lines not shown (rate limit); ssemedic_jsonl would keep" in console.getvalue()  # the panel


def test_the_drop_note_comes_at_most_once_a_second() -> None:
    clock = FakeClock()
    out, console = limited(clock, flow_rate=10, flow_burst=1, proxy_rate=1000, proxy_burst=1000)
    stream = open_stream(out)
    for i, chunk in enumerate(chat_events(300)):  # 100 events a second, ten times the rate
        clock.now = i / 100
        stream(chunk)
    stream.end(3.0)
    log = console.getvalue()
    notes = [line for line in log.splitlines() if line.endswith("not shown (rate limit)")]
    assert 2 <= len(notes) <= 4  # three seconds of dropping, not one note per line let through
    assert 25 <= len(event_lines(log)) <= 35
    dropped = sum(int(line.split()[2].replace(",", "")) for line in notes)
    assert dropped == 300 - len(event_lines(log))  # every dropped line is accounted for


def test_the_proxy_wide_cap_holds_across_flows() -> None:
    clock = FakeClock()
    out, console = limited(clock, flow_rate=100, flow_burst=100, proxy_rate=1, proxy_burst=3)
    a, b = open_stream(out, "aaaaaa"), open_stream(out, "bbbbbb")
    events = chat_events(4)
    a(events[0])
    a(events[1])
    b(events[0])
    b(events[1])  # the proxy's third token is gone: dropped, though bbbbbb has its own to spare
    a.end(1.0)
    b.end(1.0)
    log = console.getvalue()
    assert event_lines(log, "aaaaaa") == [0, 1] and event_lines(log, "bbbbbb") == [0]
    assert "[bbbbbb] … 1 event line not shown (rate limit)" in log
    assert "not shown" not in "".join(line for line in log.splitlines() if line.startswith("[aaaaaa]"))


def test_lifecycle_lines_faults_and_summaries_are_never_dropped() -> None:
    clock = FakeClock()
    out, console = limited(clock, flow_rate=0, flow_burst=0, proxy_rate=0, proxy_burst=0)
    error = sse_event({"error": {"message": "upstream reset", "type": "server_error"}})
    stream = open_stream(out)
    stream(b"".join(chat_events(4)[:2]) + error)
    stream.end(1.0)
    log = console.getvalue()
    assert event_lines(log) == []
    for kept in ("stream started: ", "upstream headers: ", "first chunk", "FAULT error-in-stream", "  fix: ",
                 "completed: 3 events", "3 event lines not shown", "╭─ POST"):
        assert kept in log, kept


def test_the_logging_path_is_limited_too(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    out = Reporter(level="events", console=None, clock=clock)
    out.limit = EventLineLimit(clock, flow_rate=1, flow_burst=2, proxy_rate=10, proxy_burst=10)
    with caplog.at_level(logging.INFO, logger="ssemedic"):
        stream = open_stream(out)
        stream(b"".join(chat_events(6)))
        stream.end(1.0)
    assert sum(" #" in m for m in caplog.messages) == 2
    assert any(m.endswith("… 4 event lines not shown (rate limit)") for m in caplog.messages)
    assert any("note: 4 event lines not shown (rate limit)" in m for m in caplog.messages)  # the summary


def test_a_finished_flow_leaves_no_limit_state_behind() -> None:
    clock = FakeClock()
    out, _ = limited(clock)
    for flow_id in ("aaaaaa", "bbbbbb"):
        stream = open_stream(out, flow_id)
        stream(b"".join(chat_events(3)))
        stream.end(1.0)
    assert len(out.limit._flows) == 0


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    bucket.refill(10.0)
    assert bucket.tokens == 3
    bucket.tokens = 0
    bucket.refill(10.5)
    assert bucket.tokens == 1
    bucket.refill(10.4)  # a clock that steps back gives nothing and takes nothing
    assert bucket.tokens == 1
    bucket.refill(20.0)
    assert bucket.tokens == 3


# -- the kept-text cap, as the log and the JSONL show it ----------------------------------------


def test_the_log_summary_and_the_jsonl_say_what_was_cut(caplog: pytest.LogCaptureFixture) -> None:
    jsonl = io.StringIO()
    out = Reporter(level="summary", console=None, jsonl=jsonl)
    with caplog.at_level(logging.INFO, logger="ssemedic"):
        stream = open_stream(out)
        stream(BIG_BODY)
        stream.end(1.0)
    [summary_line] = [m for m in caplog.messages if "summary:" in m]
    assert f"[cut: only the first {KEPT_CHARS:,} of {BIG:,} chars were kept]" in summary_line
    assert f"of {len(ARGUMENTS):,} chars were kept]" in summary_line  # the tool call
    summary = json.loads(jsonl.getvalue().splitlines()[-1])
    assert summary["cut"]["text"] == BIG - KEPT_CHARS and summary["chars"]["text"] == BIG
    assert len(summary["text"]) == KEPT_CHARS
