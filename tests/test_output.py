"""The Reporter under an event loop: summary panels come after their
stream's last line, one per loop turn, and none is lost on close."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import pytest
from helpers import sse_event

from rich.console import Console

from ssemedic import output, report
from ssemedic.live import LiveStream
from ssemedic.output import Reporter

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


def finish(reporter: Reporter, flow_id: str, error: str | None = None, body: bytes = BODY) -> LiveStream:
    stream = LiveStream(
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


def finish_row(stream: LiveStream) -> str:
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
