"""Diagnosis: a stream's record in, faults out, as the stream goes by.

Strategy: the session calls one method per step it takes (headers, each
chunk, each event, new parse issues, the end), passing that step's values
(never itself), and the diagnoser looks only at what the step adds, so the
work per chunk stays small. Each fault kind is reported once, at
its first occurrence (with its event index or offset); ``counts`` keeps how
often it happened.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from .events import IssueKind, ParseIssue
from .faults import Fault, FaultKind
from .framing import MEDIA_TYPES
from .handoff import EventRecord, Outcome
from .parts import TOKEN_PARTS, Done, Error, Malformed, Notice

#: Default silence between events that counts as a stall, in seconds.
DEFAULT_STALL_SECONDS = 10.0
#: A stream of at least this many events that arrived in at most
#: BURST_MAX_ARRIVALS separate chunks was buffered somewhere.
BURST_MIN_EVENTS = 6
BURST_MAX_ARRIVALS = 2
#: A client that hangs up on an unfinished stream after at least this long
#: without a byte timed out (shorter: a user who stopped a flowing answer).
CLIENT_TIMEOUT_SECONDS = 1.0

_ISSUE_FAULTS = {
    IssueKind.INVALID_UTF8: FaultKind.INVALID_UTF8,
    IssueKind.BOM: FaultKind.BOM,
    IssueKind.OVERSIZED_EVENT: FaultKind.OVERSIZED_EVENT,
    IssueKind.BAD_PRELUDE_CRC: FaultKind.CORRUPT_FRAME,
    IssueKind.BAD_MESSAGE_CRC: FaultKind.CORRUPT_FRAME,
    IssueKind.INVALID_FRAME: FaultKind.CORRUPT_FRAME,
}


#: How the SSE parser reports an ``error:`` field (see sse.py).
_ERROR_FIELD = "unknown field 'error' ignored"


def is_client_disconnect(error: str | None) -> bool:
    """Whether mitmproxy's flow error says the client went away (not the upstream):
    "Client disconnected." (HTTP/1), "stream reset by client (CANCEL)" (HTTP/2)."""
    if error is None:
        return False
    error = error.lower()
    return "client disconnected" in error or "reset by client" in error


def splits_a_character(data: bytes) -> bool:
    """Whether ``data`` ends inside a UTF-8 multi-byte sequence."""
    if not data or data[-1] < 0x80:
        return False  # an ASCII last byte ends no character: the usual case, without the loop
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead
        if byte >= 0xF0:
            need = 4
        elif byte >= 0xE0:
            need = 3
        elif byte >= 0xC0:
            need = 2
        else:
            return False  # ASCII
        return back < need
    return False


class Diagnoser:
    """Collects the faults of one stream; see the module docstring."""

    def __init__(self, *, stall_after: float = DEFAULT_STALL_SECONDS) -> None:
        self.stall_after = stall_after
        self.faults: list[Fault] = []
        self.counts: Counter[FaultKind] = Counter()
        self._error_seen = False
        #: The first error sent as an SSE ``error:`` field (llama.cpp): its
        #: offset and what it said (as far as the parser kept it), if any.
        self.first_error_field: tuple[int, str] | None = None
        #: When the stream last showed life: an event, or a keep-alive comment.
        self._last_alive: float | None = None
        self._token_times: list[float] = []
        self._incomplete = False  # the parser reported an unfinished last event
        self._unparsed = False  # the parser could not read on to the end (a corrupt frame)
        self._payload_seen = False  # whether any event carried a part (not only pings)
        self._first_done: tuple[int, int] | None = None  # the first [DONE]'s stream offset and event index
        self._client_fed: float | None = None  # when ssemedic itself last wrote to the client (keepalives)

    def add(self, kind: FaultKind, detail: str = "", *, event_index: int | None = None,
            offset: int | None = None) -> None:
        self.counts[kind] += 1
        if self.counts[kind] == 1:
            self.faults.append(Fault(kind, detail, event_index, offset))

    # -- steps ------------------------------------------------------------------

    def headers(self, headers: Mapping[str, str], declared: str | None, actual: str) -> None:
        """The response headers, once the body's real framing is known."""
        h = {k.lower(): v for k, v in headers.items()}
        encoding = h.get("content-encoding", "").strip().lower()
        if encoding and encoding != "identity":
            self.add(FaultKind.COMPRESSED_STREAM, f"Content-Encoding: {h['content-encoding']}")
        if "content-length" in h:
            self.add(FaultKind.CONTENT_LENGTH_ON_STREAM, f"Content-Length: {h['content-length']}")
        if "no-transform" not in h.get("cache-control", "").lower():
            self.add(FaultKind.MISSING_NO_TRANSFORM, f"Cache-Control: {h.get('cache-control', '(none)')}")
        if h.get("x-accel-buffering", "").strip().lower() != "no":
            self.add(FaultKind.MISSING_ACCEL_BUFFERING, f"X-Accel-Buffering: {h.get('x-accel-buffering', '(none)')}")
        if declared != actual:
            expected = MEDIA_TYPES.get(actual, "text/event-stream")
            self.add(FaultKind.WRONG_CONTENT_TYPE,
                     f"a {actual} body served as {h.get('content-type', '(no Content-Type)')}; expected {expected}")

    def chunk(self, data: bytes, end: int, inside_block: bool) -> None:
        """After the session parsed one chunk ``data`` ending at stream offset
        ``end``; ``inside_block`` is the parser's word on whether it ended
        inside an event (it keeps this as it goes: never search its buffer
        here, or a large event in small chunks costs quadratic time)."""
        if splits_a_character(data):
            self.add(FaultKind.UTF8_SPLIT, "a chunk ended inside a character", offset=end)
        if inside_block:
            self.add(FaultKind.EVENT_SPLIT, "a chunk ended inside an event", offset=end)

    def issues(self, new: Iterable[ParseIssue]) -> None:
        """Parse issues the session's parser found since the last call."""
        for issue in new:
            if issue.kind == IssueKind.INCOMPLETE_EVENT:
                self._incomplete = True
            elif issue.kind == IssueKind.UNPARSED:
                self._incomplete = self._unparsed = True
            kind = _ISSUE_FAULTS.get(issue.kind)
            if kind is not None:
                self.add(kind, issue.detail, offset=issue.offset)
            elif issue.kind == IssueKind.UNKNOWN_FIELD and issue.detail.startswith(_ERROR_FIELD):
                # llama.cpp's server writes a stream's error as an "error:" field,
                # which every SSE client ignores: an error the client never sees.
                self._error_seen = True
                said = issue.detail.removeprefix(_ERROR_FIELD).removeprefix(": ")
                if self.first_error_field is None:
                    self.first_error_field = (issue.offset, said)
                self.add(FaultKind.ERROR_IN_STREAM, f"in an `error:` field, which SSE clients ignore: {said}",
                         offset=issue.offset)
                # Issues come after the events of the same chunk: a [DONE] after
                # this field may have been seen already.
                if self._first_done is not None and self._first_done[0] > issue.offset:
                    self.add(FaultKind.DONE_AFTER_ERROR, "", event_index=self._first_done[1])

    def event(self, record: EventRecord) -> None:
        tokens = False
        if record.parts:
            self._payload_seen = True
        for part in record.parts:
            if isinstance(part, TOKEN_PARTS):
                tokens = True
            elif isinstance(part, Error):
                self._error_seen = True
                self.add(FaultKind.ERROR_IN_STREAM, part.message, event_index=record.index)
            elif isinstance(part, Done) and part.marker == "[DONE]":
                if self._error_seen:
                    self.add(FaultKind.DONE_AFTER_ERROR, "", event_index=record.index)
                if self._first_done is None:
                    self._first_done = (record.event.offset, record.index)
            elif isinstance(part, Malformed) and part.kind == "invalid-json":
                self.add(FaultKind.INVALID_JSON, part.detail, event_index=record.index)
            elif isinstance(part, Notice):
                self.add(FaultKind(part.kind), part.detail, event_index=record.index)
        time = record.time
        if time is not None:
            if tokens:
                self._token_times.append(time)
            last, self._last_alive = self._last_alive, time
            if last is not None and time - last > self.stall_after:
                self.add(FaultKind.STALL, f"{time - last:.1f} s without events before event "
                         f"#{record.index} (threshold {self.stall_after:g} s)", event_index=record.index)

    def keepalive(self, time: float | None) -> None:
        """Keep-alive comments arrived at ``time``: no event, but the stream is
        alive, so the silence a stall is measured by ends here."""
        if time is not None:
            self._last_alive = time

    def client_fed(self, time: float) -> None:
        """ssemedic wrote to the client itself at ``time`` (a keepalive comment,
        no upstream byte): the client's silence ended then, the upstream's did not."""
        self._client_fed = time

    def end(self, outcome: Outcome, *, clean: bool, client_gone: bool = False,
            recording_cut: bool = False, ended_at: float | None = None,
            last_data_at: float | None = None) -> None:
        """The stream ended (its last issues already given); ``clean`` is False
        when the connection broke. When the client hung up (``client_gone``),
        an unfinished stream is the client's doing, not the upstream's: no
        truncation faults then, but a client-timeout when it hung up at
        ``ended_at`` after a silence since the last upstream bytes
        (``last_data_at``, or the request's start) or keepalive. When the input ends at a recording cut
        (``recording_cut``), the stream's end was never seen: nothing is said about it
        (truncation, emptiness, end marker, unfinished tool arguments)."""
        if outcome.line_endings:
            self._line_endings(outcome.line_endings)
        message = outcome.message
        complete = outcome.complete
        incomplete = self._incomplete
        # A format without a terminal signal cannot be judged cut or empty.
        known = outcome.provider.terminal is not None
        if not clean and known and complete and not incomplete:
            clean = True  # the connection broke only after the stream had ended
        if client_gone and not recording_cut and not (known and complete):
            self._client_timeout(outcome, ended_at, last_data_at)
        # From here on, a cut recording is judged like a client that hung up:
        # what came before is the upstream's, what would have come is unknown.
        client_gone = client_gone or recording_cut
        empty = None if client_gone or not clean or incomplete else self._emptiness(outcome, known)
        if client_gone:
            pass
        elif not clean:
            self.add(FaultKind.TRUNCATED, "the connection broke before the stream ended", offset=outcome.bytes)
        elif incomplete:
            where = "could not be parsed to its end" if self._unparsed else "ended in the middle of an event"
            self.add(FaultKind.TRUNCATED, f"the stream {where}", offset=outcome.bytes)
        elif empty is not None:
            self.add(FaultKind.EMPTY_RESPONSE, empty, offset=outcome.bytes)
        elif known and not complete and not message.errors and not self._error_seen:
            self.add(FaultKind.TRUNCATED, _unfinished(outcome), offset=outcome.bytes)
        marker = outcome.provider.end_marker
        if (marker is not None and clean and not client_gone and complete
                and marker not in message.markers and not message.errors):
            self.add(FaultKind.MISSING_DONE, "", offset=outcome.bytes)
        for call in message.tool_calls.values():
            problem = call.arguments_error if not client_gone or complete else None
            if problem is not None:
                self.add(FaultKind.INVALID_TOOL_ARGUMENTS, f"{call.name or call.key}: {problem}")
        if message.text_via:
            self.add(FaultKind.TEXT_IN_TOOL_CALL, "reply text arrived via " + ", ".join(message.text_via))
        if (known and clean and complete and not message.errors and not message.text
                and not message.reasoning and not message.tool_calls and not message.refusal
                and not message.tool_results):
            ending = f"finish_reason {message.finish_reason}" if message.finish_reason else "its terminal signal"
            self.add(FaultKind.EMPTY_RESPONSE, f"the stream ended normally ({ending}) with nothing in it")
        # Only events that carry tokens count: a short answer's envelope
        # (start, stop, usage events) legitimately shares a read or two.
        arrivals = len(set(self._token_times))
        if len(self._token_times) >= BURST_MIN_EVENTS and 0 < arrivals <= BURST_MAX_ARRIVALS:
            self.add(FaultKind.BUFFERED_BURST, f"{len(self._token_times)} events with tokens arrived in "
                     f"{arrivals} burst{'s' * (arrivals > 1)}")

    # -- helpers ------------------------------------------------------------------

    def _client_timeout(self, outcome: Outcome, ended_at: float | None, last_data_at: float | None) -> None:
        """The client hung up on an unfinished stream: a timeout if it had
        waited long, and not for an error the upstream had sent."""
        if ended_at is None or self._error_seen or outcome.message.errors:
            return
        times = [t for t in (last_data_at, self._client_fed) if t is not None]
        if not times:
            return
        silence = ended_at - max(times)
        if silence < CLIENT_TIMEOUT_SECONDS:
            return
        since = "the last keepalive" if self._client_fed is not None and self._client_fed >= max(times) else (
            "the last upstream bytes" if outcome.bytes else "the request, before any upstream byte")
        self.add(FaultKind.CLIENT_TIMEOUT, f"the client hung up {silence:.1f} s after {since}",
                 offset=outcome.bytes)

    def _emptiness(self, outcome: Outcome, known: bool) -> str | None:
        """Why a cleanly ended stream is empty (no event with a payload), or None.
        Such a stream is no cut answer but no answer at all: nothing was sent."""
        events, size = outcome.events, outcome.bytes
        if events and (self._payload_seen or not known):
            return None
        if not size:
            return "the body was empty: not one event"
        if not events:
            return f"{size:,} bytes of comments or blank lines (keep-alives), not one event"
        return f"{events} event{'s' * (events > 1)}, none with a payload (keep-alive pings)"

    def _line_endings(self, endings: Mapping[str, int]) -> None:
        used = [kind for kind, n in endings.items() if n]
        if endings["cr"]:
            self.add(FaultKind.CR_LINE_ENDINGS, f"{endings['cr']} lines end with a bare CR")
        if len(used) > 1:
            self.add(FaultKind.MIXED_LINE_ENDINGS, ", ".join(f"{n} {kind.upper()}" for kind, n in endings.items() if n))


def _unfinished(outcome: Outcome) -> str:
    """What a known provider's stream that ended cleanly but incomplete did and
    did not send: an end marker may have come without the signal that ends
    the answer (OpenAI's ``[DONE]`` without any ``finish_reason``); the
    provider names what is missing."""
    markers = outcome.message.markers
    if markers:
        marker = f"data: {markers[-1]}" if outcome.framing == "sse" else markers[-1]
        return f"{marker} arrived, but {outcome.provider.missing_terminal}"
    return f"the {outcome.provider.name} stream ended without its terminal signal"
