"""One streamed response as the addon sees it: the stream callable, the raw
recording and its timeline, fed to a StreamSession, with every happening
handed to an output sink.

The stream callable runs on mitmproxy's event loop, so per chunk it only
appends bytes, parses and hands records to the sink. If anything in here
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
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from .decoding import DecodeError, StreamDecoder, problem, supported
from .diagnose import DEFAULT_STALL_SECONDS, is_client_disconnect
from .faults import Fault
from .inject import Injection, Injector
from .repair import BODY_REPAIRS, Repair, Repairer
from .repair import letta_shape as repair_letta_shape
from .recording import Cut, Recorder
from .framing import framing_for_content_type, sniff_framing
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
    ) -> None:
        self.flow_id = flow_id
        self.label = label
        self.status = status
        self.response_headers = {k.lower(): v for k, v in response_headers.items()}
        self.sink = sink
        self.clock = clock
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
        encoding = self.response_headers.get("content-encoding")
        self.notes: list[str] = []
        self._decoder: StreamDecoder | None = None
        self.inspecting = True
        if encoding and encoding.strip().lower() != "identity":
            if supported(encoding):
                self._decoder = StreamDecoder(encoding)
            else:
                self.inspecting = False
                self.notes.append(f"{problem(encoding)}: stream passed through uninspected")
        self.recorder = Recorder()
        self.ended = False
        self.ended_at: float | None = None
        self.error: str | None = None
        #: Whether the sink was told about this stream (see announce()).
        self.announced = False
        # With ``sniff``, the stream is only announced once its first line
        # shows an event stream under another Content-Type; otherwise the
        # flow stays silent and is merely recorded.
        self._sniffing = sniff
        self._sniffed = b""
        self._since_progress = 0
        self._last_progress: float | None = None
        # Repair mode: the client gets what the repairer (or the decoder)
        # makes of the stream, collected in _out during each call.
        self.decompressing = Repair.DECOMPRESS in repairs and self._decoder is not None
        if self._decoder is not None and not self.decompressing:
            repairs = repairs & {Repair.HEADERS}  # the body stays compressed: it cannot be edited
        shape = repair_letta_shape(letta_shape, path)
        self.repairer = Repairer(repairs, shape) if repairs & BODY_REPAIRS else None
        self.injector: Injector | None = None
        if injections:
            framing = framing_for_content_type(self.response_headers.get("content-type")) or "sse"
            self.injector = Injector(injections, framing)
        self.rewriting = self.repairer is not None or self.decompressing or self.injector is not None
        self._out: list[bytes] = []
        self._unforwarded: bytes | None = None  # decoded bytes not yet handed on
        # Inspect-only mode forwards each chunk first and inspects it in
        # later turns of the event loop (``defer`` is its call_soon), so
        # inspection never delays the bytes (see the module docstring).
        self._defer = defer if not self.rewriting else None
        self.backlog = backlog if backlog is not None else Backlog()
        self._queue: deque[tuple[bytes, float | None]] = deque()
        self._queued_bytes = 0
        self._scheduled = False
        self._end_pending = False  # end() came while chunks still waited
        self.finished = False  # the end was inspected and the sink told
        #: Exact counts of what passed, parsed or not.
        self.wire_bytes = 0
        self.wire_chunks = 0
        #: Where parsing stopped because inspection fell behind (None: it did not).
        self.behind_at: int | None = None
        self.unparsed = 0  # bytes from behind_at on, forwarded but not parsed
        self._tail: list[bytes] | None = None  # injected pieces cut at the end
        #: Set when the bytes fed are a recording that stops short of the stream (-nr).
        self.recording_cut: Cut | None = None

    def announce(self) -> None:
        """Tell the sink the stream started (once)."""
        if not self.announced:
            self.announced = True
            self.sink.started(self)

    # -- the stream callable ------------------------------------------------

    def __call__(self, data: bytes) -> list[bytes]:
        """mitmproxy's stream callable. Without repairs it forwards every
        byte as it came; with them, what the repairer makes of the stream.
        Never returns b"" mid-stream (that would end a chunked body)."""
        at = self.clock()
        if data:
            if self._defer is not None:
                self._count(data)
                self._record(data, at)
                self._enqueue(data, at)
                return [data]
            self.receive(data, at)
            return self._take([data], at)
        self.end(at)
        return self._take([], at, final=True)

    def _count(self, data: bytes) -> None:
        self.wire_bytes += len(data)
        self.wire_chunks += 1

    def _enqueue(self, data: bytes, at: float | None) -> None:
        if self.behind_at is not None:
            self.unparsed += len(data)
            return
        if not self.inspecting:
            return  # passed through uninspected: nothing to queue
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
        self.backlog.pending.add(self)
        if not self._scheduled and self._defer is not None:
            self._scheduled = True
            self._defer(self.inspect_slice)

    def _fall_behind(self, size: int) -> None:
        """This chunk would exceed a budget: parse nothing from here on."""
        self.behind_at = self.wire_bytes - size
        self.unparsed += size
        which = "its" if self._queued_bytes + size > self.backlog.per_flow else "the proxy's"
        if self.announced:  # a flow still being sniffed may be no stream at all
            self._guard(self.sink.note, self,
                        f"inspection fell behind the stream ({which} backlog of queued bytes is full): "
                        f"from byte {self.behind_at:,} on it is forwarded and recorded but not parsed")

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
            self._inspect_or_pass(data, at)
        if queue:
            self._schedule()
            return
        backlog.pending.discard(self)
        if self._end_pending:
            self._end_pending = False
            self._finish()

    def abandon(self) -> None:
        """Give up the inspection still queued (the proxy stops): the rest
        counts as unparsed, and an ended stream is finished at once."""
        dropped = self._queued_bytes
        self.backlog.queued -= dropped
        self._queue.clear()
        self._queued_bytes = 0
        self.backlog.pending.discard(self)
        if dropped:
            # The queue always comes before the unparsed tail.
            self.behind_at = self.wire_bytes - self.unparsed - dropped
            self.unparsed += dropped
            self.notes.append(f"mitmproxy stopped before inspection caught up: {dropped:,} queued bytes not parsed")
        if self._end_pending:
            self._end_pending = False
            self._finish()

    def _take(self, unchanged: list[bytes], at: float | None, *, final: bool = False) -> list[bytes]:
        if not self.rewriting:
            return unchanged
        out = b"".join(self._out)
        self._out.clear()
        if final and self._tail is not None:
            pieces, self._tail = self._tail, None
            return pieces
        if self.injector is not None:
            return self._inject(out, at, final=False)
        return [out] if out else []

    def _inject(self, out: bytes, at: float | None, *, final: bool) -> list[bytes]:
        assert self.injector is not None
        try:
            pieces = self.injector.feed(out, at)
            if final:
                pieces += self.injector.end(at)
        except Exception as exc:  # injection is a test tool: never lose bytes over it
            self.injector = None
            self.notes.append(f"injection stopped by an internal error: {exc!r}")
            return [out] if out else []
        return [piece for piece in pieces if piece]

    def receive(self, data: bytes, at: float | None) -> None:
        """Record and inspect one chunk (live, or replayed with its stored time)."""
        self._count(data)
        self._record(data, at)
        self._inspect_or_pass(data, at)

    def _record(self, data: bytes, at: float | None) -> None:
        note = self.recorder.add(data, at)
        if note is not None:
            self.notes.append(note)

    def _inspect_or_pass(self, data: bytes, at: float | None) -> None:
        if self.inspecting:
            self._guard(self._inspect, data, at)
        elif self.rewriting:
            self._out.append(self._plain(data))

    def end(self, at: float | None, error: str | None = None) -> None:
        """The body ended: cleanly (``error`` None) or aborted."""
        if self.ended:
            return
        self.ended = True
        self.ended_at = at
        self.error = error
        if self.behind_at is not None:
            self.notes.append(self.behind_note())
        if self._queue:
            # Finished by the last slice: never one long inspection in one turn.
            self._end_pending = True
            self._schedule()
            return
        self._finish()

    def behind_note(self) -> str:
        """What the summary says when inspection fell behind."""
        assert self.behind_at is not None
        return (f"inspection fell behind: the last {self.unparsed:,} of {self.wire_bytes:,} bytes "
                f"({self.unparsed / max(self.wire_bytes, 1):.0%}) were forwarded and recorded but not parsed; "
                f"events, text and faults cover the first {self.behind_at:,} bytes only")

    def _finish(self) -> None:
        at, error = self.ended_at, self.error
        self.finished = True
        # Once inspection fell behind, the session never saw the end of the
        # stream: closing it would diagnose a cut stream that was whole.
        if self.inspecting and self.behind_at is None:
            if self._sniffing:
                self._guard(self._decide, at)
            if self.inspecting:
                self._guard(self._close, at)
        elif self.rewriting and self._sniffed:
            self._out.append(self._sniffed)
            self._sniffed = b""
        if self.repairer is not None and self.repairer.changes:
            self.notes.append("repaired: " + ", ".join(f"{k} ×{n}" for k, n in self.repairer.changes.items()))
        if self.injector is not None:
            # The last pieces are cut now, so the summary can say what was injected.
            out = b"".join(self._out)
            self._out.clear()
            self._tail = self._inject(out, at, final=True)
            if self.injector is not None and self.injector.done:
                self.notes.append("injected: " + "; ".join(dict.fromkeys(self.injector.done)))
        if self.announced:
            self._guard(self.sink.finished, self, error)

    # -- internals ------------------------------------------------------------

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            if self.inspecting:
                self.inspecting = False
                self._fall_back()
                self.notes.append(f"ssemedic internal error, stream passed through uninspected: {exc!r}")
                try:
                    self.sink.internal_error(self, exc)
                except Exception:
                    pass  # never let reporting the error break the stream

    def _fall_back(self) -> None:
        """Inspection stopped mid-stream: in repair mode, hand on everything
        held back, unrepaired, so no byte is lost."""
        if not self.rewriting:
            return
        if self.repairer is not None:
            self._out.append(self.repairer.release())
        if self._unforwarded is not None:
            self._out.append(self._unforwarded)
            self._unforwarded = None
        if self._sniffed:
            self._out.append(self._sniffed)
            self._sniffed = b""

    def _plain(self, data: bytes) -> bytes:
        """A chunk passed on unrepaired (decoded if the client was promised that)."""
        if self.decompressing and self._decoder is not None:
            try:
                return self._decoder.feed(data)
            except DecodeError:
                return data  # nothing better is possible once headers are sent
        return data

    def _inspect(self, data: bytes, at: float | None) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.feed(data)
            except DecodeError as exc:
                self.inspecting = False
                self.notes.append(f"{exc}: stream passed through uninspected")
                self._fall_back()
                if self.rewriting:
                    self._out.append(data)
                return
        if not data:
            return
        if self._sniffing:
            self._sniffed += data
            if b"\n" not in self._sniffed and len(self._sniffed) < 256:
                return
            self._decide(at)
            return
        self._feed(data, at)

    def _decide(self, at: float | None) -> None:
        """Sniffing ends: announce an event stream, or go quiet for anything else."""
        data, self._sniffed, self._sniffing = self._sniffed, b"", False
        if sniff_framing(data) != "sse":
            self.inspecting = False
            if self.rewriting:
                self._out.append(data)
            return
        content_type = self.response_headers.get("content-type", "no content-type")
        self.notes.append(f"served as {content_type!r}, but the body is an event stream")
        self.announce()
        self._feed(data, at)

    def _feed(self, data: bytes, at: float | None) -> None:
        if self.session.bytes == 0:
            self.sink.first_chunk(self, data)
        self._unforwarded = data if self.rewriting and self.repairer is None else None
        if self.repairer is not None:
            self.repairer.hold(data)
        records = self.session.feed(data, at)
        self._emit(records)
        if self.rewriting:
            repaired = (self.repairer.feed(data, records, self.session.boundary, self.session.rules)
                        if self.repairer is not None else data)
            self._unforwarded = None
            self._out.append(repaired)
        self._since_progress += 1
        if at is not None and self._last_progress is None:
            self._last_progress = at
        if self._since_progress >= PROGRESS_CHUNKS or (
            at is not None and self._last_progress is not None and at - self._last_progress >= PROGRESS_SECONDS
        ):
            self._since_progress = 0
            self._last_progress = at
            self.sink.progress(self)

    def _close(self, at: float | None) -> None:
        client_gone = is_client_disconnect(self.error)
        records = self.session.close(at, clean=self.error is None, client_gone=client_gone,
                                     recording_cut=self.recording_cut is not None)
        self._emit(records)
        if self.repairer is not None:
            self._out.append(self.repairer.end(records, self.session.outcome(), clean=self.error is None))

    def _emit(self, records: Iterable[EventRecord]) -> None:
        for record in records:
            self.sink.event(self, record)
        for fault in self.session.new_faults():
            self.sink.fault(self, fault)

    # -- results ---------------------------------------------------------------

    @property
    def raw(self) -> bytes:
        """The raw upstream bytes kept for saving (see recording.py)."""
        return self.recorder.raw

    @property
    def last_chunk_at(self) -> float | None:
        times = self.recorder.times
        return times[-1] if times and times[-1] == times[-1] else None  # NaN: unknown

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
        return self.recorder.metadata(
            provider=self.session.provider,
            ended_at=self.ended_at,
            notes=self.notes,
            repairs=dict(self.repairer.changes) if self.repairer is not None else None,
        )


def header_summary(headers: Mapping[str, str]) -> str:
    """The response headers that matter for streaming, for the lifecycle log."""
    return ", ".join(f"{name}={headers.get(name, '-')}" for name in SHOWN_HEADERS)
