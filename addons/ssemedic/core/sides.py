"""What the client got versus what the upstream sent: a rewritten stream made
again from its recording, and the two sides compared event by event.

A recording keeps the upstream's raw bytes and their timeline, and, when
repair, injection or decompression rewrote the stream, which stages did it
(``recording.ClientSide``). Those stages are deterministic given the bytes
and their arrival times, so running them again over the recording gives the
client's bytes and pieces; the count the live stream kept checks the result.

Strategy (the comparison): both sides are parsed into events, then walked
together. Equal raw bytes pair up; two that differ, followed by two equal
ones, are one event rewritten; otherwise a short look-ahead on each side
decides whether the upstream's event was dropped (the client's next event
comes a little later upstream) or the client's was added (the upstream's
next event comes a little later on the client's side), and if neither, the
two are paired as one event rewritten. Paired events whose bytes are equal
but whose chunk cuts inside them differ were rechunked. Repairs and
injections change a stream locally, so a window of a few events finds every
pairing they leave; a wholesale change (every line ending) shows as every
event rewritten, which is what it is. Sans-IO: chunks and times in.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .faults import Fault
from .handoff import EventRecord
from .inject import Injection
from .pipeline import Pipeline
from .recording import ClientSide
from .repair import Repair
from .session import StreamSession

#: Chunk as recorded: bytes and arrival time (None: unknown).
Chunk = tuple[bytes, float | None]
#: How far ahead the walk looks for an event's counterpart.
WINDOW = 8
#: Changes listed one by one; the rest are counted.
MAX_CHANGES = 1000
#: Characters of an event's bytes shown per change.
PREVIEW = 160
#: The kinds of change, in the order they are reported.
KINDS = ("dropped", "added", "rewritten", "rechunked")


@dataclass(frozen=True, slots=True)
class Change:
    """One event that differs between the sides. ``upstream``/``client`` are
    the event's index on that side (None: it is not there)."""

    kind: str
    upstream: int | None
    client: int | None
    upstream_bytes: int
    client_bytes: int
    #: How many chunks the event's bytes arrived in, on each side (0: absent).
    upstream_chunks: int
    client_chunks: int
    upstream_preview: str
    client_preview: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "upstream_event": self.upstream, "client_event": self.client,
                "upstream_bytes": self.upstream_bytes, "client_bytes": self.client_bytes,
                "upstream_chunks": self.upstream_chunks, "client_chunks": self.client_chunks,
                "upstream": self.upstream_preview, "client": self.client_preview}


@dataclass(frozen=True, slots=True)
class SideTotals:
    bytes: int
    chunks: int
    events: int

    def to_dict(self) -> dict[str, int]:
        return {"bytes": self.bytes, "chunks": self.chunks, "events": self.events}


@dataclass(frozen=True, slots=True)
class Sides:
    """The two sides of one stream. ``changed`` False: the client got the
    upstream's bytes unchanged (``how`` says what, if anything, else was)."""

    changed: bool
    how: str
    upstream: SideTotals | None = None
    client: SideTotals | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    #: The first MAX_CHANGES changes, in stream order.
    changes: tuple[Change, ...] = ()
    #: When the stages run again disagree with what the live stream counted, or cannot be run.
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"changed": self.changed, "how": self.how}
        if self.upstream is not None and self.client is not None:
            out["upstream"] = self.upstream.to_dict()
            out["client"] = self.client.to_dict()
            out["counts"] = {kind: self.counts.get(kind, 0) for kind in KINDS}
            out["changes"] = [c.to_dict() for c in self.changes]
            out["changes_listed"] = len(self.changes)
        if self.note is not None:
            out["note"] = self.note
        return out

    def summary(self) -> str:
        """One line for the report."""
        if not self.changed or self.upstream is None or self.client is None:
            return self.how
        u, c = self.upstream, self.client
        counts = ", ".join(f"{self.counts.get(kind, 0):,} {kind}" for kind in KINDS)
        return (f"{self.how} · upstream {u.bytes:,} bytes in {u.chunks:,} chunks, {u.events:,} events → "
                f"client {c.bytes:,} bytes in {c.chunks:,} chunks, {c.events:,} events · {counts}")


def unchanged(header_repairs: Sequence[str] = ()) -> Sides:
    """Neither repair nor injection rewrote the body."""
    how = "the client got the upstream's bytes unchanged"
    if header_repairs:
        how += " (response headers repaired: " + "; ".join(header_repairs) + ")"
    return Sides(False, how)


def describe(client: ClientSide) -> str:
    """What rewrote the stream, in a few words."""
    parts = []
    if client.repairs:
        parts.append("repaired (" + ", ".join(client.repairs) + ")")
    if client.injections:
        parts.append("injected (" + ", ".join(f"{n}={s:g}" if n == "stall" else n for n, s in client.injections) + ")")
    return "client got the stream " + " and ".join(parts or ["rewritten"])


class _Sink:
    """Keeps the upstream's events; says nothing (see pipeline.Sink)."""

    def __init__(self) -> None:
        self.records: list[EventRecord] = []

    def event(self, stream: Pipeline, record: EventRecord) -> None:
        self.records.append(record)

    def started(self, stream: Pipeline) -> None: ...
    def first_chunk(self, stream: Pipeline, data: bytes) -> None: ...
    def progress(self, stream: Pipeline) -> None: ...
    def finished(self, stream: Pipeline, error: str | None) -> None: ...
    def internal_error(self, stream: Pipeline, exc: BaseException) -> None: ...
    def fault(self, stream: Pipeline, fault: Fault) -> None: ...
    def note(self, stream: Pipeline, text: str) -> None: ...


@dataclass(slots=True)
class Replayed:
    """A rewritten stream made again: the client's pieces, with the time of
    the upstream chunk that released each, and the upstream's side as parsed."""

    client: list[Chunk]
    upstream_records: list[EventRecord]
    #: Where each upstream chunk starts in the decoded stream.
    upstream_offsets: list[int]
    upstream_bytes: int
    provider: str


def replay(chunks: Sequence[Chunk], client: ClientSide, *, method: str, path: str,
           request_headers: Mapping[str, str], response_headers: Mapping[str, str],
           status: int | None = None, started_at: float | None = None, ended_at: float | None = None,
           error: str | None = None, provider: str | None = None) -> Replayed:
    """Run the raw upstream ``chunks`` through the stages ``client`` names,
    as the live stream did; ValueError for a stage this version does not know."""
    try:
        repairs = frozenset(Repair(name) for name in client.repairs)
        injections = {Injection(name): seconds for name, seconds in client.injections}
    except ValueError as exc:
        raise ValueError(f"the recording names a stage this ssemedic does not know: {exc}") from None
    now: list[float] = [0.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731 - the recorded times, one chunk at a time
    sink = _Sink()
    pipeline = Pipeline(
        flow_id="", label="", method=method, path=path, request_headers=request_headers, status=status,
        response_headers=response_headers, started_at=started_at, sink=sink, provider=provider, clock=clock,
        repairs=repairs, injections=injections or None, letta_shape=client.letta_shape,
    )
    pipeline.announce()
    out: list[Chunk] = []
    for data, at in chunks:
        now[0] = at if at is not None else now[0]
        out += [(piece, at) for piece in pipeline(data) if piece]
    end = ended_at if ended_at is not None else now[0]
    if error is None:
        now[0] = end
        out += [(piece, ended_at) for piece in pipeline(b"") if piece]
    else:
        pipeline.end(end, error)  # a broken connection: what the end would send never went out
    session = pipeline.session
    return Replayed(out, sink.records, list(session.chunk_offsets), session.bytes, session.provider)


def compare(replayed: Replayed, client: ClientSide, *, content_type: str | None) -> Sides:
    """Both sides of a replayed stream, event by event."""
    session = StreamSession(provider=replayed.provider, content_type=content_type)
    theirs: list[EventRecord] = []
    for data, at in replayed.client:
        theirs += session.feed(data, None)
    theirs += session.close(None)
    client_bytes = sum(len(data) for data, _ in replayed.client)
    note = None
    if client.bytes_sent is not None and client.bytes_sent != client_bytes:
        note = (f"made again from the recording, the client's side has {client_bytes:,} bytes, but the live "
                f"stream sent {client.bytes_sent:,}: the comparison is of the bytes made again")
    up = [(r.event.offset, r.event.raw) for r in replayed.upstream_records]
    down = [(r.event.offset, r.event.raw) for r in theirs]
    counts, changes = _walk(up, replayed.upstream_offsets, down, list(session.chunk_offsets))
    return Sides(
        True, describe(client),
        SideTotals(replayed.upstream_bytes, len(replayed.upstream_offsets), len(up)),
        SideTotals(client_bytes, len(replayed.client), len(down)),
        counts, tuple(changes), note)


def _walk(up: list[tuple[int, bytes]], up_cuts: list[int], down: list[tuple[int, bytes]],
          down_cuts: list[int]) -> tuple[Counter[str], list[Change]]:
    """See the module docstring's Strategy."""
    counts: Counter[str] = Counter()
    changes: list[Change] = []

    def inner(cuts: list[int], offset: int, size: int) -> list[int]:
        # Chunk starts strictly inside the event, relative to its start.
        return [c - offset for c in cuts[bisect_right(cuts, offset) : bisect_left(cuts, offset + size)]]

    def add(kind: str, i: int | None, j: int | None) -> None:
        counts[kind] += 1
        if len(changes) >= MAX_CHANGES:
            return
        u = up[i] if i is not None else None
        d = down[j] if j is not None else None
        changes.append(Change(
            kind, i, j,
            len(u[1]) if u else 0, len(d[1]) if d else 0,
            len(inner(up_cuts, u[0], len(u[1]))) + 1 if u else 0,
            len(inner(down_cuts, d[0], len(d[1]))) + 1 if d else 0,
            _preview(u[1]) if u else "", _preview(d[1]) if d else ""))

    i = j = 0
    while i < len(up) and j < len(down):
        if up[i][1] == down[j][1]:
            (uo, raw), (do, _) = up[i], down[j]
            if inner(up_cuts, uo, len(raw)) != inner(down_cuts, do, len(raw)):
                add("rechunked", i, j)
            i, j = i + 1, j + 1
            continue
        if i + 1 < len(up) and j + 1 < len(down) and up[i + 1][1] == down[j + 1][1]:
            add("rewritten", i, j)  # one event replaced by one, the stream goes on in step
            i, j = i + 1, j + 1
            continue
        later_up = next((k for k in range(i + 1, min(i + 1 + WINDOW, len(up))) if up[k][1] == down[j][1]), None)
        later_down = next((k for k in range(j + 1, min(j + 1 + WINDOW, len(down))) if down[k][1] == up[i][1]), None)
        if later_up is not None and (later_down is None or later_up - i <= later_down - j):
            for k in range(i, later_up):
                add("dropped", k, None)
            i = later_up
        elif later_down is not None:
            for k in range(j, later_down):
                add("added", None, k)
            j = later_down
        else:
            add("rewritten", i, j)
            i, j = i + 1, j + 1
    for k in range(i, len(up)):
        add("dropped", k, None)
    for k in range(j, len(down)):
        add("added", None, k)
    return counts, changes


def _preview(raw: bytes) -> str:
    text = raw[: PREVIEW * 4].decode("utf-8", "replace")
    return text if len(text) <= PREVIEW else text[:PREVIEW] + "…"
