"""Every Pipeline mode, over recorded streams, in every chunking: what the
client receives, what the session records and which faults are found do not
depend on how the upstream's bytes were cut, and inspecting alone forwards
the bytes exactly as they came.

The modes: inspect-only (answered at once, and deferred to a later turn of
the event loop as the addon runs it), each repair alone and all together,
each injection, and a gzip body with and without the decompress repair. The
streams: recordings/*.flows (made by scripts/make_recordings.py from the demo
upstream) and recordings/samples/. The chunkings: whole, byte by byte, and
cut in two at every split point (helpers.chunkings; for the larger streams,
400 evenly spaced points plus every point inside a multi-byte character).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from helpers import CHUNKING_FAULTS, chunkings

from ssemedic.core.faults import Fault
from ssemedic.core.inject import Injection
from ssemedic.core.pipeline import Pipeline
from ssemedic.core.repair import ALL_REPAIRS, Repair
from ssemedic.core.session import EventRecord
from ssemedic.files.sources import Capture, load

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"


@dataclass(frozen=True)
class Mode:
    """How a Pipeline is set up, as the addon's options would set it up."""

    name: str
    repairs: frozenset[Repair] = frozenset()
    injections: tuple[tuple[Injection, float], ...] = ()
    deferred: bool = False  # inspection in a later turn of the event loop
    gzip: bool = False  # the upstream sends the body gzip-compressed

    @property
    def forwards_as_is(self) -> bool:
        """Whether the client gets the upstream's bytes untouched: no body
        repair, no injection (a gzip body is only edited when decompressed)."""
        if self.gzip:
            return Repair.DECOMPRESS not in self.repairs
        if self.injections:
            return False
        return not self.repairs - {Repair.HEADERS, Repair.DECOMPRESS}


MODES = (
    [Mode("inspect-only"), Mode("inspect-only, deferred", deferred=True)]
    + [Mode(f"repair {r}", frozenset({r})) for r in Repair]
    + [Mode("repair all", ALL_REPAIRS)]
    # The clock stands still, so a stall holds the rest back until the upstream ends.
    + [Mode(f"inject {i}", injections=((i, 5.0 if i is Injection.STALL else 0.0),)) for i in Injection]
    + [
        Mode("gzip, inspect-only", gzip=True),
        Mode("gzip, repair all but decompress", ALL_REPAIRS - {Repair.DECOMPRESS}, gzip=True),
        Mode("gzip, repair decompress", frozenset({Repair.DECOMPRESS}), gzip=True),
        Mode("gzip, repair all", ALL_REPAIRS, gzip=True),
        # A body that stays compressed cannot be injected into: it passes as it came.
        Mode("gzip, inject cut", injections=((Injection.CUT, 0.0),), gzip=True),
    ]
)


@cache
def capture(name: str) -> Capture:
    path = RECORDINGS / name
    [found] = load(path)
    return found


class Collect:
    """A Sink that keeps what the session reports."""

    def __init__(self) -> None:
        self.records: list[EventRecord] = []
        self.faults: list[Fault] = []
        self.errors: list[BaseException] = []

    def started(self, stream: Pipeline) -> None: ...
    def first_chunk(self, stream: Pipeline, data: bytes) -> None: ...
    def event(self, stream: Pipeline, record: EventRecord) -> None:
        self.records.append(record)
    def progress(self, stream: Pipeline) -> None: ...
    def finished(self, stream: Pipeline, error: str | None) -> None: ...
    def internal_error(self, stream: Pipeline, exc: BaseException) -> None:
        self.errors.append(exc)
    def fault(self, stream: Pipeline, fault: Fault) -> None:
        self.faults.append(fault)


@dataclass
class Outcome:
    pieces: list[bytes]  # what the stream callable returned, flattened
    sent: bytes
    records: list[EventRecord]
    faults: list[Fault]
    notes: list[str]


def headers_of(stream: Capture, mode: Mode) -> dict[str, str]:
    headers = dict(stream.response_headers or {"content-type": stream.content_type or "text/event-stream"})
    headers = {k: v for k, v in headers.items() if k.lower() not in ("content-encoding", "content-length")}
    if mode.gzip:
        headers["content-encoding"] = "gzip"
    return headers


def run(stream: Capture, mode: Mode, chunks: list[bytes]) -> Outcome:
    """Drive a Pipeline as mitmproxy does: the stream callable once per chunk,
    then with b"" (deferred inspection runs before the next chunk arrives)."""
    sink = Collect()
    queued: list[Callable[[], None]] = []
    pipeline = Pipeline(
        flow_id="f00d", label=stream.label, method=stream.method, path=stream.path,
        request_headers=stream.request_headers, status=200, response_headers=headers_of(stream, mode),
        started_at=0.0, sink=sink, clock=lambda: 1.0, repairs=mode.repairs,
        injections=dict(mode.injections) or None, defer=queued.append if mode.deferred else None,
    )
    pipeline.announce()
    pieces: list[bytes] = []
    for chunk in chunks:
        pieces += pipeline(chunk)
        while queued:
            queued.pop(0)()
    pieces += pipeline(b"")
    assert b"" not in pieces, "an empty piece would end the body early"
    assert not sink.errors, sink.errors
    return Outcome(pieces, b"".join(pieces), sink.records, sink.faults, list(pipeline.notes))


def body_of(stream: Capture, mode: Mode) -> bytes:
    return gzip.compress(stream.body, mtime=0) if mode.gzip else stream.body


def change_kinds(notes: list[str]) -> set[str]:
    """The changes the notes name, with their counts, except "partial event
    held back until whole": it counts chunks that ended inside an event, so
    only a chunking can cause it."""
    kinds = set()
    for note in notes:
        if note.startswith("repaired: "):
            kinds |= {change for change in note.removeprefix("repaired: ").split(", ")
                      if not change.startswith("partial event held back until whole ×")}
        else:
            kinds.add(note)
    return kinds


def content_faults(outcome: Outcome) -> list[Fault]:
    return [f for f in outcome.faults if f.kind not in CHUNKING_FAULTS]


@cache
def reference(name: str, mode: Mode) -> Outcome:
    """The stream sent whole, in one chunk."""
    stream = capture(name)
    return run(stream, mode, [body_of(stream, mode)])


SMALL = "samples/openai-chat-error-then-done.sse"  # 1,242 bytes: cut at every split point
STREAMS = [SMALL, "tool-call.flows", "truncated.flows", "invalid-utf8.flows", "cr-lines.flows",
           "letta-send-message.flows", "anthropic.flows", "ollama.flows"]


def ways(name: str, body: bytes) -> list[tuple[str, list[bytes]]]:
    """Whole, byte by byte, and cut in two: the small sample at every split
    point, the larger recordings at 16 evenly spaced points and 8 inside
    multi-byte characters (every point would take minutes)."""
    if name == SMALL:
        return list(chunkings(body, max_splits=None))
    inside = [i for i in range(1, len(body)) if body[i] & 0xC0 == 0x80]
    points = sorted({*range(1, len(body), len(body) // 16 + 1), *inside[:: max(len(inside) // 8, 1)][:8]})
    return [("whole", [body]), ("bytewise", [body[i : i + 1] for i in range(len(body))])] + [
        (f"split@{i}", [body[:i], body[i:]]) for i in points]


@pytest.mark.parametrize("mode", MODES, ids=[m.name for m in MODES])
@pytest.mark.parametrize("name", STREAMS)
def test_the_outcome_does_not_depend_on_the_chunking(name: str, mode: Mode) -> None:
    stream = capture(name)
    body = body_of(stream, mode)
    whole = reference(name, mode)
    assert whole.records, "the stream was inspected"
    for way, chunks in ways(name, body):
        got = run(stream, mode, chunks)
        assert got.sent == whole.sent, way
        assert got.records == whole.records, way
        assert content_faults(got) == content_faults(whole), way
        assert change_kinds(got.notes) == change_kinds(whole.notes), way
        if mode.forwards_as_is:
            assert got.sent == body, way  # inspecting alone forwards every byte as it came


@pytest.mark.parametrize("name", STREAMS)
def test_inspecting_alone_forwards_each_chunk_as_it_came(name: str) -> None:
    stream = capture(name)
    for mode in (m for m in MODES if m.forwards_as_is):
        body = body_of(stream, mode)
        for way, chunks in ways(name, body)[:3]:
            assert run(stream, mode, chunks).pieces == chunks, (mode.name, way)


@pytest.mark.parametrize("mode", [m for m in MODES if m.repairs or m.injections or m.gzip],
                         ids=[m.name for m in MODES if m.repairs or m.injections or m.gzip])
@pytest.mark.parametrize("name", STREAMS)
def test_what_the_session_sees_does_not_depend_on_the_mode(name: str, mode: Mode) -> None:
    """Repairs and injections change what the client gets, never what is
    inspected; a gzip body is inspected decoded, at the same offsets."""
    assert reference(name, mode).records == reference(name, MODES[0]).records


@pytest.mark.parametrize("name", STREAMS)
def test_decompressing_forwards_the_plain_body_and_repairs_it_as_if_it_came_plain(name: str) -> None:
    by_name = {m.name: m for m in MODES}
    assert reference(name, by_name["gzip, repair decompress"]).sent == capture(name).body
    assert reference(name, by_name["gzip, repair all"]).sent == reference(name, by_name["repair all"]).sent
