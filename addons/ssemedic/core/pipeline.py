"""One streamed response as the addon sees it: the stream callable, the raw
recording and its timeline, and a chain of stages chosen once per flow.

The stages, each taking values and returning values:

    decode (Content-Encoding) → Inspection (sniff → session: frame,
    interpret, diagnose → sink) → body (repair) → inject → forward

Which of them a flow gets is decided once, in Pipeline's constructor, from
the options and headers: a flow whose client gets the upstream's bytes as
they came is *mirrored* (Mirror), one whose body is repaired, decompressed
or injected into is *rewritten* (Rewrite). Nothing switches mode later,
except that inspection may stop for good (Inspection.alive).

The stream callable runs on mitmproxy's event loop. If anything in here
raises, the flow falls back to plain pass-through: the error is reported
once and every byte is still forwarded and recorded.

Strategy (inspect-only mode): each chunk is forwarded and recorded at once
and queued for inspection, which runs in later turns of the event loop, at
most SLICE_BYTES per flow and turn, so one busy stream never holds up the
others. What waits in the queue is bounded per flow and per proxy (a
Backlog). When a chunk would exceed either budget, inspection has fallen
behind the stream for good: that flow's later bytes are still forwarded,
recorded (up to the recording cap) and counted, but not parsed, and the user
is told once in the log and in the summary. Parsing cannot resume in the
middle of a stream without guessing where an event starts, so it does not.

With a Channel (``ssemedic_worker``), an inspect-only flow is *remote*
(Remote): the chunk is forwarded and recorded here, and handed to a channel
that inspects it in another process (see ssemedic/worker/); the budgets are
then the channel's, and its Pipeline in the worker does the rest. A
repaired flow (Tee) is still repaired here, since its client gets what the
repairer makes of each chunk, but with nothing said: the raw chunk goes to
the channel too, whose Pipeline, with the same repairs, reports it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol

from .decoding import DecodeError, StreamDecoder, problem, supported
from .diagnose import DEFAULT_STALL_SECONDS, is_client_disconnect
from .faults import Fault
from .framing import JSONARRAY, framing_for_content_type, sniff_framing, sniff_needs_more
from .inject import Injection, Injector
from .recording import ClientSide, Cut, Recorder
from .repair import BODY_REPAIRS, Repair, Repairer
from .repair import letta_shape as repair_letta_shape
from .session import EventRecord, StreamSession

#: Progress is reported after this many seconds or chunks since the last report.
PROGRESS_SECONDS = 5.0
PROGRESS_CHUNKS = 100
#: Headers whose values the lifecycle log shows.
SHOWN_HEADERS = ("content-type", "content-encoding", "content-length", "transfer-encoding",
                 "cache-control", "x-accel-buffering")
#: Inspect-only mode: bytes inspected per flow in one turn of the event loop.
SLICE_BYTES = 64 * 1024
#: Bytes that may wait for inspection, per flow and per proxy (see Backlog).
MAX_QUEUED_PER_FLOW = 4 * 1024 * 1024
MAX_QUEUED_PER_PROXY = 32 * 1024 * 1024
#: Sniffing decides at the first line, or after this many bytes without one.
SNIFF_BYTES = 256


class Sink(Protocol):
    """Where a live stream reports what happens (see output.py)."""

    def started(self, stream: Pipeline) -> None: ...
    def first_chunk(self, stream: Pipeline, data: bytes) -> None: ...
    def event(self, stream: Pipeline, record: EventRecord) -> None: ...
    def progress(self, stream: Pipeline) -> None: ...
    def finished(self, stream: Pipeline, error: str | None) -> None: ...
    def internal_error(self, stream: Pipeline, exc: BaseException) -> None: ...
    def fault(self, stream: Pipeline, fault: Fault) -> None: ...
    def note(self, stream: Pipeline, text: str) -> None: ...


class PassOn:
    """A Sink that hands everything to ``inner``: the base of sinks that add
    to one call (mitm/marking.py and files/otel.py add to ``finished``)."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner

    def started(self, stream: Pipeline) -> None:
        self.inner.started(stream)

    def first_chunk(self, stream: Pipeline, data: bytes) -> None:
        self.inner.first_chunk(stream, data)

    def event(self, stream: Pipeline, record: EventRecord) -> None:
        self.inner.event(stream, record)

    def progress(self, stream: Pipeline) -> None:
        self.inner.progress(stream)

    def finished(self, stream: Pipeline, error: str | None) -> None:
        self.inner.finished(stream, error)

    def internal_error(self, stream: Pipeline, exc: BaseException) -> None:
        self.inner.internal_error(stream, exc)

    def fault(self, stream: Pipeline, fault: Fault) -> None:
        self.inner.fault(stream, fault)

    def note(self, stream: Pipeline, text: str) -> None:
        self.inner.note(stream, text)


class Quiet:
    """A Sink that says nothing: a remote stream is reported where it is inspected."""

    def started(self, stream: Pipeline) -> None:
        pass

    def first_chunk(self, stream: Pipeline, data: bytes) -> None:
        pass

    def event(self, stream: Pipeline, record: EventRecord) -> None:
        pass

    def progress(self, stream: Pipeline) -> None:
        pass

    def finished(self, stream: Pipeline, error: str | None) -> None:
        pass

    def internal_error(self, stream: Pipeline, exc: BaseException) -> None:
        pass

    def fault(self, stream: Pipeline, fault: Fault) -> None:
        pass

    def note(self, stream: Pipeline, text: str) -> None:
        pass


class Channel(Protocol):
    """Where a remote stream's chunks are inspected (mitm/offload.py)."""

    def send(self, stream: Pipeline, data: bytes, at: float | None) -> bool:
        """Hand one chunk on; False when it would exceed the channel's budget
        (the stream then falls behind, as with a Backlog)."""
        ...

    def behind(self, stream: Pipeline) -> None:
        """The stream fell behind at ``stream.behind_at``: nothing more is sent."""
        ...

    def fed(self, stream: Pipeline, at: float) -> None:
        """ssemedic wrote to the client itself at ``at`` (a keepalive)."""
        ...

    def end(self, stream: Pipeline) -> None:
        """The body ended (``stream.ended_at``, ``stream.error``)."""
        ...


# -- what one stage hands the next ----------------------------------------------


class Parsed(NamedTuple):
    """Decoded bytes the session parsed, the events they completed, and
    where the session's whole blocks now end (what the repairer may edit)."""

    data: bytes
    records: list[EventRecord]
    boundary: int


class Unparsed(NamedTuple):
    """Bytes inspection did not parse (it stopped, or they are no event
    stream): they go on as they are."""

    data: bytes


#: None: the bytes are held back for now (sniffing), nothing goes on yet.
Step = Parsed | Unparsed | None


# -- the stages ---------------------------------------------------------------------


class Inspection:
    """Decoded bytes → events, faults and progress for the sink.

    With ``sniff``, the stream is only announced once its first line shows
    an event stream under another Content-Type; anything else is handed on
    unparsed and the flow stays silent. Inspection stops for good at its
    first failure and says why once; from then on it hands everything on.
    """

    def __init__(self, stream: Pipeline, session: StreamSession, sink: Sink, *, sniff: bool) -> None:
        self.stream = stream
        self.session = session
        self.sink = sink
        self.alive = True
        self._sniffing = sniff
        self._sniffed = b""
        self._since_progress = 0
        self._last_progress: float | None = None

    def feed(self, data: bytes, at: float | None) -> Step:
        if not self.alive:
            return Unparsed(self._unsniffed() + data)
        if self._sniffing:
            self._sniffed += data
            if (b"\n" not in self._sniffed or sniff_needs_more(self._sniffed)) and len(self._sniffed) < SNIFF_BYTES:
                # A binary prelude or an opening array shows itself without a line:
                # held for a newline, a short first frame or element would wait.
                if sniff_framing(self._sniffed, json_array=self.session.rules.json_array is not None) not in (
                        "eventstream", JSONARRAY):
                    return None
            return self._decide(at)
        return self._parse(data, at)

    def flush(self, at: float | None) -> Step:
        """The body ended: decide on what sniffing still holds."""
        if self.alive and self._sniffing:
            return self._decide(at)
        held = self._unsniffed()
        return Unparsed(held) if held else None

    def close(self, at: float | None, error: str | None) -> list[EventRecord] | None:
        """The last events, or None when inspection stopped before the end."""
        if not self.alive:
            return None
        try:
            records = self.session.close(at, clean=error is None, client_gone=is_client_disconnect(error),
                                         recording_cut=self.stream.recording_cut is not None)
            self._emit(records)
        except Exception as exc:
            self.fail(exc)
            return None
        return records

    def stop(self, reason: str) -> None:
        """Stop for a reason the user should know (not an internal error)."""
        if self.alive:
            self.alive = False
            self.stream.notes.append(f"{reason}: stream passed through uninspected")

    def fail(self, exc: BaseException) -> None:
        """Stop for an internal error: reported once, the bytes pass on."""
        if not self.alive:
            return
        self.alive = False
        self.stream.notes.append(f"ssemedic internal error, stream passed through uninspected: {exc!r}")
        try:
            self.sink.internal_error(self.stream, exc)
        except Exception:
            pass  # never let reporting the error break the stream

    def _unsniffed(self) -> bytes:
        """What sniffing held when inspection stopped: it goes on unparsed."""
        data, self._sniffed = self._sniffed, b""
        return data

    def _decide(self, at: float | None) -> Step:
        data, self._sniffed, self._sniffing = self._sniffed, b"", False
        framing = sniff_framing(data, json_array=self.session.rules.json_array is not None)
        if framing is None:
            self.alive = False  # no event stream: nothing to say about it
            return Unparsed(data)
        content_type = self.stream.response_headers.get("content-type", "no content-type")
        if framing != "jsonarray":  # an array served as application/json is as its provider sends it
            self.stream.notes.append(f"served as {content_type!r}, but the body is an event stream")
        return self._parse(data, at, announce=True)

    def _parse(self, data: bytes, at: float | None, *, announce: bool = False) -> Parsed | Unparsed:
        session = self.session
        try:
            if announce:
                self.stream.announce()
            if session.bytes == 0:
                self.sink.first_chunk(self.stream, data)
            records = session.feed(data, at)
            self._emit(records)
            self._progress(at)
        except Exception as exc:
            self.fail(exc)
            return Unparsed(data)  # whoever comes next never saw these bytes
        return Parsed(data, records, session.boundary)

    def _emit(self, records: Iterable[EventRecord]) -> None:
        for record in records:
            self.sink.event(self.stream, record)
        for fault in self.session.new_faults():
            self.sink.fault(self.stream, fault)

    def _progress(self, at: float | None) -> None:
        self._since_progress += 1
        if at is not None and self._last_progress is None:
            self._last_progress = at
        if self._since_progress >= PROGRESS_CHUNKS or (
            at is not None and self._last_progress is not None and at - self._last_progress >= PROGRESS_SECONDS
        ):
            self._since_progress = 0
            self._last_progress = at
            self.sink.progress(self.stream)


class Backlog:
    """The bytes waiting for inspection across every stream of one proxy,
    and the budgets that bound them (see the module docstring)."""

    def __init__(self, *, per_flow: int = MAX_QUEUED_PER_FLOW, per_proxy: int = MAX_QUEUED_PER_PROXY) -> None:
        if per_flow <= 0 or per_proxy <= 0:
            raise ValueError("inspection budgets must be positive")
        self.per_flow = per_flow
        self.per_proxy = per_proxy
        #: Bytes queued now, all streams together.
        self.queued = 0
        #: Streams with inspection still to do (queued chunks, or an end not yet inspected).
        self.pending: set[Pipeline] = set()

    def abandon(self) -> None:
        """The proxy stops: give up the inspection still queued, at once."""
        for stream in list(self.pending):
            stream.abandon()


class Mirror:
    """Forwarding for a client that gets the upstream's bytes as they came:
    each chunk goes on at once, and is inspected later in bounded slices
    (``defer`` is the event loop's call_soon; without it, at once)."""

    def __init__(self, stream: Pipeline, backlog: Backlog,
                 defer: Callable[[Callable[[], None]], object] | None) -> None:
        self.stream = stream
        self.backlog = backlog
        self._defer = defer
        self._queue: deque[tuple[bytes, float | None]] = deque()
        self._queued_bytes = 0
        self._scheduled = False
        self._end_pending = False  # the end came while chunks still waited
        #: Where parsing stopped because inspection fell behind (None: it did not).
        self.behind_at: int | None = None
        self.unparsed = 0  # bytes from behind_at on, forwarded but not parsed

    def chunk(self, data: bytes, at: float | None) -> list[bytes]:
        if self._defer is None:
            self.stream.inspect(data, at)
        elif self.behind_at is not None:
            self.unparsed += len(data)
        elif self.stream.inspection.alive:
            self._enqueue(data, at)
        return [data]

    def end(self) -> None:
        if self._defer is not None and self.stream.announced:
            # Finished in a later turn, after the last slice: the end of the
            # body goes out first, and closing the session, its diagnosis and
            # the summary never delay the client's last byte.
            self._end_pending = True
            self._schedule()
            return
        # Not announced: still sniffing (a few bytes), or no stream at all.
        # Decided now, so the addon knows what to store with the flow.
        self._drain()
        self.stream.finish()

    def _drain(self) -> None:
        while self._queue:
            data, at = self._queue.popleft()
            self._queued_bytes -= len(data)
            self.backlog.queued -= len(data)
            self.stream.inspect(data, at)
        self.backlog.pending.discard(self.stream)

    def final(self) -> list[bytes]:
        return []

    def catch_up(self) -> None:
        """An end waiting for a later turn is inspected now, with every chunk
        still queued (the flow is saved in this turn: see Pipeline.finish_now)."""
        if self._end_pending:
            self._end_pending = False
            self._drain()
            self.stream.finish()

    def finish(self, at: float | None, error: str | None) -> list[str]:
        """The end was inspected: close the session (unless inspection fell
        behind: the session never saw the stream's end, and closing it would
        diagnose a cut stream that was whole). Returns what was changed: nothing."""
        if self.behind_at is None:
            self.stream.inspection.flush(at)
            self.stream.inspection.close(at, error)
        return []

    def _enqueue(self, data: bytes, at: float | None) -> None:
        size = len(data)
        backlog = self.backlog
        if self._queued_bytes + size > backlog.per_flow or backlog.queued + size > backlog.per_proxy:
            self._fall_behind(size)
            return
        self._queue.append((data, at))
        self._queued_bytes += size
        backlog.queued += size
        self._schedule()

    def _schedule(self) -> None:
        self.backlog.pending.add(self.stream)
        if not self._scheduled and self._defer is not None:
            self._scheduled = True
            self._defer(self.inspect_slice)

    def _fall_behind(self, size: int) -> None:
        """This chunk would exceed a budget: parse nothing from here on."""
        stream = self.stream
        self.behind_at = stream.wire_bytes - size
        self.unparsed += size
        which = "its" if self._queued_bytes + size > self.backlog.per_flow else "the proxy's"
        if stream.announced:  # a flow still being sniffed may be no stream at all
            try:
                stream.sink.note(stream, f"inspection fell behind the stream ({which} backlog of queued bytes "
                                 f"is full): from byte {self.behind_at:,} on it is forwarded and recorded but not parsed")
            except Exception as exc:
                stream.inspection.fail(exc)

    def inspect_slice(self) -> None:
        """Inspect queued chunks, about SLICE_BYTES of them; the rest waits for the next turn."""
        self._scheduled = False
        budget = SLICE_BYTES
        queue = self._queue
        backlog = self.backlog
        while queue and budget > 0:
            data, at = queue.popleft()
            size = len(data)
            self._queued_bytes -= size
            backlog.queued -= size
            budget -= size
            self.stream.inspect(data, at)
        if queue:
            self._schedule()
            return
        backlog.pending.discard(self.stream)
        if self._end_pending:
            self._end_pending = False
            self.stream.finish()

    def abandon(self) -> None:
        """Give up the inspection still queued (the proxy stops): the rest
        counts as unparsed, and an ended stream is finished at once."""
        dropped = self._queued_bytes
        self.backlog.queued -= dropped
        self._queue.clear()
        self._queued_bytes = 0
        self.backlog.pending.discard(self.stream)
        if dropped:
            # The queue always comes before the unparsed tail.
            self.behind_at = self.stream.wire_bytes - self.unparsed - dropped
            self.unparsed += dropped
            self.stream.notes.append(
                f"mitmproxy stopped before inspection caught up: {dropped:,} queued bytes not parsed")
        if self._end_pending:
            self._end_pending = False
            self.stream.finish()


class Remote:
    """Forwarding as with Mirror, inspection elsewhere: each chunk goes on at
    once and to ``channel``. What the stream amounts to comes back from the
    channel; this side only records, counts and forwards."""

    def __init__(self, stream: Pipeline, channel: Channel) -> None:
        self.stream = stream
        self.channel = channel
        self.behind_at: int | None = None
        self.unparsed = 0

    def chunk(self, data: bytes, at: float | None) -> list[bytes]:
        if self.behind_at is not None:
            self.unparsed += len(data)
        elif not self.channel.send(self.stream, data, at):
            self.behind_at = self.stream.wire_bytes - len(data)
            self.unparsed += len(data)
            self.channel.behind(self.stream)
        return [data]

    def end(self) -> None:
        self.channel.end(self.stream)

    def final(self) -> list[bytes]:
        return []

    def abandon(self) -> None:
        """Nothing waits here: what was sent is the channel's."""

    def catch_up(self) -> None:
        """Nothing waits here: the channel answers when it has inspected the end."""

    def finish(self, at: float | None, error: str | None) -> list[str]:
        return []


class Tee:
    """A rewritten stream reported elsewhere: the client gets what
    ``rewrite`` makes of each chunk, here and at once, while the raw chunk
    goes to ``channel`` too, whose Pipeline, built with the same repairs,
    makes the same of it and reports it. Nothing is said here. Should the
    channel fall behind, the client still gets every repaired chunk; only
    the report stops there."""

    def __init__(self, stream: Pipeline, rewrite: Rewrite, channel: Channel) -> None:
        self.stream = stream
        self.rewrite = rewrite
        self.channel = channel
        self.behind_at: int | None = None
        self.unparsed = 0

    def chunk(self, data: bytes, at: float | None) -> list[bytes]:
        if self.behind_at is not None:
            self.unparsed += len(data)
        elif not self.channel.send(self.stream, data, at):
            self.behind_at = self.stream.wire_bytes - len(data)
            self.unparsed += len(data)
            self.channel.behind(self.stream)
        return self.rewrite.chunk(data, at)

    def end(self) -> None:
        self.rewrite.end()  # finishes the stream here: its notes go with the end
        self.channel.end(self.stream)

    def final(self) -> list[bytes]:
        return self.rewrite.final()

    def abandon(self) -> None:
        """Nothing waits here: what was sent is the channel's."""

    def catch_up(self) -> None:
        """Nothing waits here: the end was repaired when it came."""

    def finish(self, at: float | None, error: str | None) -> list[str]:
        return self.rewrite.finish(at, error)


class Rewrite:
    """Forwarding for a client that gets what the stages make of the stream:
    inspected at once, then repaired (``repairer``), injected into
    (``injector``), decoded if the decoder runs for the client too."""

    #: Inline inspection never falls behind; a worker's copy of a Tee does
    #: when the proxy stops sending it chunks (set by worker/inspector.py).
    behind_at: int | None = None
    unparsed = 0

    def __init__(self, stream: Pipeline, repairer: Repairer | None, injector: Injector | None) -> None:
        self.stream = stream
        self.repairer = repairer
        self.injector = injector
        self._tail: list[bytes] = []  # what the end sends, cut when the end is inspected

    def chunk(self, data: bytes, at: float | None) -> list[bytes]:
        return self._inject(self._body(self.stream.inspect(data, at)), at, final=False)

    def end(self) -> None:
        self.stream.finish()

    def abandon(self) -> None:
        """Nothing waits: a rewritten stream is inspected inline."""

    def catch_up(self) -> None:
        """Nothing waits: the end was inspected when it came."""

    def finish(self, at: float | None, error: str | None) -> list[str]:
        """The end was inspected: cut what the client still gets, and return
        what was changed, for the notes. A worker's copy of a Tee that fell
        behind (``behind_at`` set) never saw the end: its session stays open,
        as with Mirror, rather than diagnose a cut in a whole stream."""
        stream = self.stream
        if self.behind_at is not None:
            return self._changes()
        out = self._body(stream.inspection.flush(at))
        records = stream.inspection.close(at, error)
        if records is None:
            out += self._release()
        elif self.repairer is not None:
            try:
                out += self.repairer.end(records, stream.session.outcome(), clean=error is None,
                                         error_field=stream.session.first_error_field)
            except Exception as exc:
                stream.inspection.fail(exc)
                out += self._release()
        self._tail = self._inject(out, at, final=True)
        return self._changes()

    def _changes(self) -> list[str]:
        changes = []
        if self.repairer is not None and self.repairer.changes:
            changes.append("repaired: " + ", ".join(f"{k} ×{n}" for k, n in self.repairer.changes.items()))
        if self.injector is not None and self.injector.done:
            changes.append("injected: " + "; ".join(dict.fromkeys(self.injector.done)))
        return changes

    def final(self) -> list[bytes]:
        tail, self._tail = self._tail, []
        return tail

    def _body(self, step: Step) -> bytes:
        if step is None:
            return b""
        if isinstance(step, Unparsed):
            return self._release() + step.data
        if self.repairer is None:
            return step.data
        self.repairer.hold(step.data)
        try:
            session = self.stream.session
            return self.repairer.feed(step.data, step.records, step.boundary, session.rules,
                                      session.first_error_field)
        except Exception as exc:  # the repairer holds everything it was fed until it forwards it
            self.stream.inspection.fail(exc)
            return self._release()

    def _release(self) -> bytes:
        return self.repairer.release() if self.repairer is not None else b""

    def _inject(self, out: bytes, at: float | None, *, final: bool) -> list[bytes]:
        injector = self.injector
        if injector is None:
            return [out] if out else []
        try:
            pieces = injector.feed(out, at)
            if final:
                pieces += injector.end(at)
        except Exception as exc:  # injection is a test tool: never lose bytes over it
            self.injector = None
            self.stream.notes.append(f"injection stopped by an internal error: {exc!r}")
            return [out] if out else []
        return [piece for piece in pieces if piece]


# -- the pipeline ---------------------------------------------------------------


class Pipeline:
    """Inspects one response body, chunk by chunk, and records it raw."""

    def __init__(
        self,
        *,
        flow_id: str,
        label: str,
        method: str,
        path: str,
        request_headers: Mapping[str, str],
        status: int | None,
        response_headers: Mapping[str, str],
        started_at: float | None,
        sink: Sink,
        provider: str | None = None,
        clock: Callable[[], float] = time.time,
        sniff: bool = False,
        stall_after: float = DEFAULT_STALL_SECONDS,
        repairs: frozenset[Repair] = frozenset(),
        defer: Callable[[Callable[[], None]], object] | None = None,
        injections: dict[Injection, float] | None = None,
        letta_shape: str = "auto",
        backlog: Backlog | None = None,
        channel: Channel | None = None,
        record: bool = True,
    ) -> None:
        self.flow_id = flow_id
        self.label = label
        self.status = status
        self.response_headers = {k.lower(): v for k, v in response_headers.items()}
        self.sink = sink
        self.clock = clock
        self.notes: list[str] = []
        #: The raw bytes and timeline kept for saving (not kept by a worker's
        #: Pipeline: the proxy's keeps them).
        self.recorder = Recorder() if record else None
        self._last_at: float | None = None
        self.session = StreamSession(
            provider=provider,
            method=method,
            path=path,
            request_headers=request_headers,
            content_type=self.response_headers.get("content-type"),
            started_at=started_at,
            response_headers=self.response_headers,
            stall_after=stall_after,
        )
        self.inspection = Inspection(self, self.session, sink, sniff=sniff)
        if self.session.framing == "eventstream" and (repairs & BODY_REPAIRS or injections):
            # Body repairs and injections rewrite event-stream text: a binary
            # body would be corrupted, so it passes as it came.
            self.notes.append("repairs and injections rewrite text events; an AWS event stream is binary: "
                              "its body passed through unchanged")
            repairs, injections = repairs - BODY_REPAIRS, None
        if injections and self.session.framing == JSONARRAY:
            # The injector works on SSE and NDJSON events: in an array it would write SSE into JSON.
            self.notes.append("injections break SSE and NDJSON streams; a streamed JSON array (Gemini without "
                              "alt=sse) is not injected into: its body passed through unchanged")
            injections = None
        elif sniff:
            injections = None  # a body that is sniffed may be no stream at all: never injected into
        #: Whether the sink was told about this stream (see announce()).
        self.announced = False
        self.ended = False
        self.ended_at: float | None = None
        self.error: str | None = None
        self.finished = False  # the end was inspected and the sink told
        #: Exact counts of what passed, parsed or not.
        self.wire_bytes = 0
        self.wire_chunks = 0
        #: Set when the bytes fed are a recording that stops short of the stream (-nr).
        self.recording_cut: Cut | None = None

        # The stages, chosen once. A body that stays compressed for the
        # client can be inspected (decoded on the side) but not edited.
        encoding = self.response_headers.get("content-encoding") or ""
        compressed = encoding.strip().lower() not in ("", "identity")
        self._decoder: StreamDecoder | None = None
        if compressed:
            if supported(encoding):
                self._decoder = StreamDecoder(encoding)
            else:
                self.inspection.stop(str(problem(encoding)))
        editable = not compressed or (self._decoder is not None and Repair.DECOMPRESS in repairs)
        #: Whether the client gets the body decoded (the decompress repair).
        self.decompressing = self._decoder is not None and editable
        repairer = None
        if editable and repairs & BODY_REPAIRS:
            repairer = Repairer(repairs, repair_letta_shape(letta_shape, path))
        injector = None
        if injections and editable:
            framing = framing_for_content_type(self.response_headers.get("content-type")) or "sse"
            injector = Injector(injections, framing)
        elif injections:
            self.notes.append("nothing injected: the body stays compressed for the client")
        self.repairer = repairer
        self.backlog = backlog if backlog is not None else Backlog()
        self.forward: Mirror | Rewrite | Remote | Tee
        #: What the client got when it differs from the upstream's bytes: how
        #: to make it again from the recording, and its size (see recording.py).
        self.client: ClientSide | None = None
        if repairer is not None or injector is not None or self.decompressing:
            rewrite = Rewrite(self, repairer, injector)
            if channel is not None and injector is None:
                # Repaired here, reported where the channel leads (injections
                # follow the clock: they stay here, and so does their report).
                self.forward = Tee(self, rewrite, channel)
                self.sink = self.inspection.sink = Quiet()
            else:
                self.forward = rewrite
            self.client = ClientSide(
                repairs=tuple(sorted(r.value for r in repairs if r in BODY_REPAIRS or (r is Repair.DECOMPRESS and self.decompressing))),
                injections=tuple((i.value, s) for i, s in (injections or {}).items()) if injector else (),
                letta_shape=letta_shape, decompressed=self.decompressing)
        elif channel is not None:
            # Inspected and reported where the channel leads: nothing is said here.
            self.forward = Remote(self, channel)
            self.sink = self.inspection.sink = Quiet()
        else:
            self.forward = Mirror(self, self.backlog, defer)

    def announce(self) -> None:
        """Tell the sink the stream started (once)."""
        if not self.announced:
            self.announced = True
            self.sink.started(self)

    # -- the stream callable ------------------------------------------------

    def __call__(self, data: bytes) -> list[bytes]:
        """mitmproxy's stream callable: the pieces the client gets for this
        chunk (for b"", at the end). Never returns b"" mid-stream (that would
        end a chunked body)."""
        at = self.clock()
        if not data:
            self.end(at)
            return self.final()
        return self.pass_on(data, at)

    def pass_on(self, data: bytes, at: float | None) -> list[bytes]:
        """Record one chunk received at ``at`` and return what the client gets of it."""
        self._take(data, at)
        try:
            return self._sent(self.forward.chunk(data, at))
        except Exception as exc:  # every stage guards itself: this is the last resort
            self.inspection.fail(exc)
            return self._sent([data])

    def final(self) -> list[bytes]:
        """After a clean end(): what the client still gets."""
        return self._sent(self.forward.final())

    def _sent(self, pieces: list[bytes]) -> list[bytes]:
        if self.client is not None:
            self.client.count(pieces)
        return pieces

    def receive(self, data: bytes, at: float | None) -> None:
        """Record and inspect one chunk at once (a stored flow, with its recorded time)."""
        self._take(data, at)
        self.inspect(data, at)

    def _take(self, data: bytes, at: float | None) -> None:
        self.wire_bytes += len(data)
        self.wire_chunks += 1
        self._last_at = at
        if self.recorder is not None:
            note = self.recorder.add(data, at)
            if note is not None:
                self.notes.append(note)

    def client_fed(self, at: float) -> None:
        """ssemedic wrote to the client itself at ``at`` (a keepalive comment)."""
        if isinstance(self.forward, (Remote, Tee)):
            self.forward.channel.fed(self, at)
        else:
            self.session.diagnoser.client_fed(at)

    def inspect(self, data: bytes, at: float | None) -> Step:
        """The decode stage, then inspection: one received chunk in, what goes on out."""
        if self._decoder is not None:
            try:
                data = self._decoder.feed(data)
            except DecodeError as exc:
                self.inspection.stop(str(exc))
                return Unparsed(data)  # nothing better is possible once the headers are out
        if not data:
            return None
        try:
            return self.inspection.feed(data, at)
        except Exception as exc:  # Inspection guards its stages; this is the last resort
            self.inspection.fail(exc)
            return Unparsed(data)

    def end(self, at: float | None, error: str | None = None) -> None:
        """The body ended: cleanly (``error`` None) or aborted."""
        if self.ended:
            return
        self.ended = True
        self.ended_at = at
        self.error = error
        if self.behind_at is not None:
            self.notes.append(self.behind_note())
        self.forward.end()

    def abandon(self) -> None:
        """The proxy stops: give up the inspection still queued."""
        self.forward.abandon()

    def finish_now(self) -> None:
        """After end(): inspect what still waits and the end in this turn, not
        a later one, so the stream is finished when this returns (the flow
        is saved now, and must carry the diagnosis)."""
        if self.ended and not self.finished:
            self.forward.catch_up()

    def finish(self) -> None:
        """Inspect the end (once every queued chunk was) and tell the sink."""
        at, error = self.ended_at, self.error
        self.finished = True
        # A worker's copy may hold these already: its proxy sent them with the end.
        self.notes += [note for note in self.forward.finish(at, error) if note not in self.notes]
        if self.announced:
            try:
                self.sink.finished(self, error)
            except Exception as exc:
                self.inspection.fail(exc)

    # -- results ---------------------------------------------------------------

    @property
    def behind_at(self) -> int | None:
        """Where parsing stopped because inspection fell behind (None: it did not)."""
        return self.forward.behind_at

    @property
    def unparsed(self) -> int:
        """Bytes from behind_at on: forwarded and recorded, not parsed."""
        return self.forward.unparsed

    def behind_note(self) -> str:
        """What the summary says when inspection fell behind."""
        assert self.behind_at is not None
        return (f"inspection fell behind: the last {self.unparsed:,} of {self.wire_bytes:,} bytes "
                f"({self.unparsed / max(self.wire_bytes, 1):.0%}) were forwarded and recorded but not parsed; "
                f"events, text and faults cover the first {self.behind_at:,} bytes only")

    @property
    def remote(self) -> bool:
        """Whether this stream is inspected elsewhere (through a Channel)."""
        return isinstance(self.forward, (Remote, Tee))

    @property
    def raw(self) -> bytes:
        """The raw upstream bytes kept for saving (see recording.py)."""
        return self.recorder.raw if self.recorder is not None else b""

    @property
    def last_chunk_at(self) -> float | None:
        at = self._last_at
        return at if at == at else None  # NaN: unknown

    def report(self) -> dict[str, Any]:
        """The stream's summary, in the shape of ``ssemedic report --json``."""
        out: dict[str, Any] = {"source": self.label, "status": self.status}
        out.update(self.session.summary())
        if self.behind_at is not None:
            # The session saw only the parsed part: what passed is counted here.
            timing = out["timing"]
            timing["bytes"] = self.wire_bytes
            timing["chunks"] = self.wire_chunks
            start = self.session.started_at
            if timing["duration_ms"] is not None and start is not None and self.ended_at is not None:
                timing["duration_ms"] = round((self.ended_at - start) * 1000, 3)
        out["notes"] = list(self.notes)
        if self.recording_cut is not None:
            out["recording"] = self.recording_cut.to_dict()
        if self.error is not None:
            out["aborted"] = self.error
        return out

    def metadata(self) -> dict[str, Any]:
        """This stream's entry for flow.metadata (see recording.py)."""
        recorder = self.recorder if self.recorder is not None else Recorder(0)
        return recorder.metadata(
            provider=self.session.provider,
            ended_at=self.ended_at,
            notes=self.notes,
            repairs=dict(self.repairer.changes) if self.repairer is not None else None,
            client=self.client,
        )


def header_summary(headers: Mapping[str, str]) -> str:
    """The response headers that matter for streaming, for the lifecycle log."""
    return ", ".join(f"{name}={headers.get(name, '-')}" for name in SHOWN_HEADERS)
