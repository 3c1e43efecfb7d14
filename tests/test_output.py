"""The Reporter under an event loop: summary panels come after their
stream's last line, one per loop turn, and none is lost on close."""

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
from ssemedic.core.pipeline import Pipeline
from ssemedic.mitm.output import Reporter

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
