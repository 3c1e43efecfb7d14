"""Pipeline in inspect-only mode: chunks are forwarded at once and inspected in
bounded slices, later; what waits is bounded per flow and per proxy, and a
stream that outruns inspection is counted exactly and said to be unparsed."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from helpers import CHUNKING_FAULTS, chunkings, sse_event

from ssemedic.core.faults import Fault
from ssemedic.core.pipeline import SLICE_BYTES, Backlog, Pipeline
from ssemedic.core.session import EventRecord

TEXT = "Привет, мир 👋 and more"
BODY = b"".join(
    sse_event({"object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {"content": word}}]})
    for word in TEXT.split(" ")
) + sse_event({"object": "chat.completion.chunk", "model": "m",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + b"data: [DONE]\n\n"


class Loop:
    """The event loop's call_soon, run by hand one turn at a time."""

    def __init__(self) -> None:
        self.ready: deque[Callable[[], None]] = deque()

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.ready.append(fn)

    def turn(self) -> int:
        """Run the callbacks scheduled before this turn; return how many."""
        batch = [self.ready.popleft() for _ in range(len(self.ready))]
        for fn in batch:
            fn()
        return len(batch)

    def run(self, max_turns: int = 100_000) -> int:
        """Turn until idle; return the number of turns."""
        turns = 0
        while self.ready:
            assert turns < max_turns, "the queue never emptied"
            self.turn()
            turns += 1
        return turns


class Sink:
    """Keeps what a Pipeline reports."""

    def __init__(self) -> None:
        self.records: list[EventRecord] = []
        self.notes: list[str] = []
        self.finished_with: list[str | None] = []
        self.errors: list[BaseException] = []

    def started(self, stream: Pipeline) -> None: ...
    def first_chunk(self, stream: Pipeline, data: bytes) -> None: ...
    def event(self, stream: Pipeline, record: EventRecord) -> None:
        self.records.append(record)
    def progress(self, stream: Pipeline) -> None: ...
    def finished(self, stream: Pipeline, error: str | None) -> None:
        self.finished_with.append(error)
    def internal_error(self, stream: Pipeline, exc: BaseException) -> None:
        self.errors.append(exc)
    def fault(self, stream: Pipeline, fault: Fault) -> None: ...
    def note(self, stream: Pipeline, text: str) -> None:
        self.notes.append(text)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def pipeline(loop: Loop | None, sink: Sink, backlog: Backlog | None = None) -> Pipeline:
    stream = Pipeline(
        flow_id="f00d", label="POST /v1/chat/completions", method="POST", path="/v1/chat/completions",
        request_headers={}, status=200, response_headers={"content-type": "text/event-stream"},
        started_at=100.0, sink=sink, clock=Clock(), defer=loop.call_soon if loop else None, backlog=backlog,
    )
    stream.announce()
    return stream


def forward(stream: Pipeline, chunks: list[bytes], loop: Loop | None = None, *, turn_each: bool = False) -> bytes:
    """Everything the stream callable hands mitmproxy; with ``turn_each`` the
    loop turns once after each chunk, as when inspection keeps up."""
    sent = []
    for chunk in chunks:
        sent += stream(chunk)
        if turn_each and loop is not None:
            loop.turn()
    sent += stream(b"")
    return b"".join(sent)


def content(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a report that does not depend on chunking or timing."""
    out = dict(report)
    out.pop("timing")
    out["faults"] = [f for f in out["faults"] if f["kind"] not in CHUNKING_FAULTS]
    return out


def reference() -> dict[str, Any]:
    stream = pipeline(None, Sink())
    forward(stream, [BODY])
    return stream.report()


# -- within budget: inspection is complete, only later -------------------------------


@pytest.mark.parametrize(("name", "chunks"), list(chunkings(BODY)), ids=lambda v: v if isinstance(v, str) else "")
def test_inspect_only_gives_the_same_report_as_inline_inspection(name: str, chunks: list[bytes]) -> None:
    loop, sink = Loop(), Sink()
    stream = pipeline(loop, sink)
    assert forward(stream, chunks, loop, turn_each=name == "bytewise") == BODY
    assert not sink.finished_with or name == "bytewise"
    loop.run()
    report = stream.report()
    assert content(report) == content(reference())
    assert report["text"] == TEXT.replace(" ", "")
    assert (report["timing"]["bytes"], report["timing"]["chunks"]) == (len(BODY), len(chunks))
    assert sink.finished_with == [None] and not sink.notes and not sink.errors
    assert stream.backlog.queued == 0 and not stream.backlog.pending


def test_each_chunk_is_forwarded_before_it_is_inspected() -> None:
    loop, sink = Loop(), Sink()
    stream = pipeline(loop, sink)
    assert stream(BODY) == [BODY]
    assert sink.records == []
    loop.run()
    assert len(sink.records) == BODY.count(b"\n\n")


def test_a_backlog_is_inspected_in_slices_one_per_loop_turn() -> None:
    loop, sink = Loop(), Sink()
    stream = pipeline(loop, sink)
    event = sse_event({"choices": [{"index": 0, "delta": {"content": "x" * 900}}]})
    chunks = [event] * 400  # about 370 KB, queued before the loop turns
    for chunk in chunks:
        stream(chunk)
    assert stream.behind_at is None
    loop.turn()
    inspected = len(sink.records) * len(event)
    assert SLICE_BYTES <= inspected < SLICE_BYTES + len(event)
    turns = loop.run()
    assert turns >= len(chunks) * len(event) // (SLICE_BYTES + len(event))
    assert len(sink.records) == len(chunks)


def test_the_end_is_inspected_after_the_queue_not_in_the_stream_callable() -> None:
    loop, sink = Loop(), Sink()
    stream = pipeline(loop, sink)
    event = sse_event({"choices": [{"index": 0, "delta": {"content": "x" * 900}}]})
    for _ in range(200):
        stream(event)
    assert stream(b"") == []
    assert stream.ended and not stream.finished and sink.finished_with == []
    loop.run()
    assert stream.finished and sink.finished_with == [None]


def test_the_end_is_inspected_in_a_later_turn_even_when_nothing_waits() -> None:
    # Closing the session and drawing the summary (1 MiB of kept text to
    # redact, say) must not delay the end of the body, which mitmproxy sends
    # only after the stream callable returned from b"".
    loop, sink = Loop(), Sink()
    stream = pipeline(loop, sink)
    stream(BODY)
    loop.run()
    assert len(sink.records) == BODY.count(b"\n\n") and not stream.backlog.pending
    assert stream(b"") == []
    assert stream.ended and not stream.finished and sink.finished_with == []
    assert loop.turn() == 1
    assert stream.finished and sink.finished_with == [None]


def test_a_sniffed_body_is_decided_by_its_end_so_the_addon_knows_what_to_store() -> None:
    # Served as text/plain, ended before the loop turned: the addon stores the
    # recording in the response hook only for a stream that was announced.
    loop, sink = Loop(), Sink()
    stream = Pipeline(
        flow_id="f00d", label="POST /v1/chat/completions", method="POST", path="/v1/chat/completions",
        request_headers={}, status=200, response_headers={"content-type": "text/plain"},
        started_at=100.0, sink=sink, clock=Clock(), defer=loop.call_soon, sniff=True,
    )
    body = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}'
    assert forward(stream, [body], loop) == body
    assert stream.announced and stream.finished and sink.finished_with == [None]
    assert stream.session.bytes == len(body)  # inspected; an unfinished last event is not dispatched


# -- past the budget: forwarded and counted, not parsed, and said so -----------------------


@pytest.mark.parametrize(("name", "chunks"), list(chunkings(BODY)), ids=lambda v: v if isinstance(v, str) else "")
def test_past_the_flow_budget_bytes_pass_counted_but_unparsed(name: str, chunks: list[bytes]) -> None:
    loop, sink = Loop(), Sink()
    budget = 100
    stream = pipeline(loop, sink, Backlog(per_flow=budget))
    assert forward(stream, chunks) == BODY  # all queued before the loop turns
    loop.run()
    report = stream.report()
    # Parsing stopped at the first chunk that did not fit: a prefix of the
    # stream was parsed, the rest only counted.
    fits, queued = 0, 0
    for chunk in chunks:
        if queued + len(chunk) > budget:
            break
        queued += len(chunk)
        fits += 1
    assert stream.behind_at == queued
    assert stream.unparsed == len(BODY) - queued
    assert (report["timing"]["bytes"], report["timing"]["chunks"]) == (len(BODY), len(chunks))
    assert len(sink.notes) == 1 and "inspection fell behind" in sink.notes[0]
    assert f"from byte {queued:,} on" in sink.notes[0]
    behind = [n for n in report["notes"] if n.startswith("inspection fell behind")]
    assert behind == [f"inspection fell behind: the last {len(BODY) - queued:,} of {len(BODY):,} bytes "
                      f"({(len(BODY) - queued) / len(BODY):.0%}) were forwarded and recorded but not parsed; "
                      f"events, text and faults cover the first {queued:,} bytes only"]
    # The unparsed end says nothing: no fault claims the stream was cut.
    assert not [f for f in report["faults"] if f["kind"] == "truncated"]
    assert sink.finished_with == [None]
    assert bytes(stream.raw) == BODY  # recorded whole (within the recording cap)
    assert stream.backlog.queued == 0 and not stream.backlog.pending


def test_a_stream_that_keeps_up_never_falls_behind_whatever_its_length() -> None:
    loop, sink = Loop(), Sink()
    stream = pipeline(loop, sink, Backlog(per_flow=len(BODY)))
    chunks = [BODY[:-len(b"data: [DONE]\n\n")]] * 50
    forward(stream, chunks, loop, turn_each=True)
    loop.run()
    assert stream.behind_at is None and not sink.notes
    assert stream.report()["timing"]["bytes"] == sum(map(len, chunks))


def test_the_proxy_budget_is_shared_by_every_stream() -> None:
    loop, backlog = Loop(), Backlog(per_flow=10_000, per_proxy=len(BODY) + 10)
    first_sink, second_sink = Sink(), Sink()
    first, second = pipeline(loop, first_sink, backlog), pipeline(loop, second_sink, backlog)
    first(BODY)
    assert backlog.queued == len(BODY)
    second(BODY)
    assert second.behind_at == 0 and first.behind_at is None
    assert "the proxy's backlog" in second_sink.notes[0] and not first_sink.notes
    loop.run()
    assert backlog.queued == 0
    second(BODY)  # once behind, a stream stays behind: parsing cannot resume mid-stream
    assert second.unparsed == 2 * len(BODY)


def test_memory_waiting_for_inspection_stays_within_the_budget() -> None:
    loop, sink = Loop(), Sink()
    backlog = Backlog(per_flow=64 * 1024)
    stream = pipeline(loop, sink, backlog)
    chunk = sse_event({"choices": [{"index": 0, "delta": {"content": "y" * 4000}}]})
    most = 0
    for i in range(2000):  # 8 MB, 40 chunks (160 KB) per loop turn: more than one slice takes
        stream(chunk)
        most = max(most, backlog.queued)
        if i % 40 == 39:
            loop.turn()
    stream(b"")
    loop.run()
    assert most <= backlog.per_flow
    assert stream.report()["timing"]["bytes"] == 2000 * len(chunk)
    assert stream.unparsed + stream.behind_at == 2000 * len(chunk)  # type: ignore[operator]


def test_stopping_gives_up_the_queue_at_once_and_finishes_the_stream() -> None:
    loop, sink = Loop(), Sink()
    stream = pipeline(loop, sink)
    event = sse_event({"choices": [{"index": 0, "delta": {"content": "x" * 900}}]})
    for _ in range(200):
        stream(event)
    stream(b"")
    loop.turn()
    stream.backlog.abandon()
    assert sink.finished_with == [None] and stream.backlog.queued == 0 and not stream.backlog.pending
    assert stream.unparsed + stream.behind_at == 200 * len(event)  # type: ignore[operator]
    assert any(n.startswith("mitmproxy stopped before inspection caught up") for n in stream.notes)
    loop.run()  # the slice still scheduled finds nothing to do
    assert sink.finished_with == [None]
