"""One stream's life: bytes and their arrival times in, events with meaning out,
plus the timeline and timings. Sans-IO: the caller passes every timestamp."""

from __future__ import annotations

import ast
import math
from array import array
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from . import providers
from .diagnose import DEFAULT_STALL_SECONDS, Diagnoser
from .events import DEFAULT_MAX_EVENT_SIZE, IssueLog, ParseIssue, ServerSentEvent, loads
from .faults import Fault
from .eventstream import EventStreamParser
from .framing import JSONARRAY, framing_for_content_type, sniff_framing, sniff_needs_more
from .handoff import EventRecord as EventRecord  # re-exported: where callers have always found it
from .handoff import Outcome
from .jsonarray import JSONArrayParser
from .message import Message
from .ndjson import NDJSONParser
from .parts import TOKEN_PARTS, Error, Malformed
from .providers.base import Interpreter, Provider
from .sse import SSEParser

#: How many events may pass before we stop trying to recognise the provider.
#: Detection rule: the request (path, headers) gives a first guess; the first
#: event whose JSON payload some provider's ``match_payload`` accepts settles
#: it. The guess stands when its own matcher accepts that payload, else the
#: accepting provider wins (source ``payload``). Events before that carry no
#: recognised payload, so nothing is lost by switching interpreters then; an
#: explicit ``provider`` option is never second-guessed.
DETECT_WITHIN_EVENTS = 20

Parser = SSEParser | NDJSONParser | EventStreamParser | JSONArrayParser
#: The parser of each framing.
_PARSERS: dict[str, type[Parser]] = {"sse": SSEParser, "ndjson": NDJSONParser, "eventstream": EventStreamParser,
                                     JSONARRAY: JSONArrayParser}


@dataclass(frozen=True, slots=True)
class Timing:
    """Stream timings in seconds; None where the timeline cannot tell."""

    ttfb: float | None
    ttft: float | None
    duration: float | None
    gap_p50: float | None
    gap_p99: float | None
    gap_max: float | None
    bytes: int
    chunks: int
    events: int
    #: SSE comment lines (keep-alives), counted apart from events.
    keepalives: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key in ("bytes", "chunks", "events", "keepalives"):
                out[key] = value
            else:
                out[f"{key}_ms"] = None if value is None else round(value * 1000, 3)
        return out


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def _field_error(said: str) -> Error:
    """The error an SSE ``error:`` field (llama.cpp's) carries; ``said`` is the
    parse issue's excerpt of its value, a Python string literal."""
    try:
        value: Any = loads(ast.literal_eval(said))
    except (ValueError, SyntaxError):
        value = None
    if isinstance(value, dict) and isinstance(value.get("error"), dict):
        value = value["error"]
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        kind, code = value.get("type"), value.get("code")
        return Error(value["message"], kind if isinstance(kind, str) else "error-field",
                     None if code is None or isinstance(code, (dict, list)) else str(code))
    return Error(said, "error-field")


class StreamSession:
    """Parses and interprets one streamed response body.

    ``framing`` is "sse", "ndjson", "eventstream" or "jsonarray"; when None it follows ``content_type``,
    then a named ``provider``, then the first non-blank byte (a provider
    guessed from the path gives a provisional value only). ``provider`` names a
    registered provider; when None it is detected from the request, then from
    the first payloads. ``started_at`` is when the request was sent; times are
    seconds on any clock, as long as it is the same for every call.
    ``response_headers``, when known, are diagnosed too (compression,
    Content-Length, caching headers, a Content-Type that does not match).
    """

    def __init__(
        self,
        *,
        framing: str | None = None,
        provider: str | None = None,
        method: str = "GET",
        path: str = "",
        request_headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        started_at: float | None = None,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        response_headers: Mapping[str, str] | None = None,
        stall_after: float = DEFAULT_STALL_SECONDS,
    ) -> None:
        if framing not in (None, *_PARSERS):
            raise ValueError(f"framing must be 'sse', 'ndjson', 'eventstream' or 'jsonarray', not {framing!r}")
        if content_type is None and response_headers is not None:
            content_type = next((v for k, v in response_headers.items() if k.lower() == "content-type"), None)
        guess = None if provider else providers.detect_from_request(method, path, request_headers)
        named = provider or guess
        #: What the request path and headers suggested (None when nothing claims it).
        self.provider_guess: str | None = guess
        #: Where ``provider`` came from: "option", "request", "payload", or None (generic).
        self.provider_source: str | None = "option" if provider else ("request" if guess else None)
        self._detected = provider is not None  # settled: no more payload checks
        #: Index of the event whose payload settled the provider, if one did.
        self.provider_settled_at: int | None = None
        self.provider: str = named or providers.GENERIC
        #: The provider's record: the rules diagnosis and repair apply to this stream.
        self.rules: Provider = providers.get(self.provider)
        self.interpreter: Interpreter = self.rules.interpreter()
        self.framing = framing or framing_for_content_type(content_type)
        known_framing = self.framing is not None or provider is not None
        if self.framing is None and named is not None:
            self.framing = self.rules.framing
            if self.rules.json_array is not None and self.rules.json_array(path):
                self.framing = JSONARRAY  # one JSON array streamed element by element (Gemini without alt=sse)
        self.parser: Parser | None = None
        self._max_event_size = max_event_size
        self._sniff = b""
        # A path's guess only sets a provisional framing: the first byte
        # decides (an NDJSON stream on a chat-completions path is NDJSON).
        if self.framing is not None and known_framing:
            self._make_parser(self.framing)

        self.message = Message()
        self.started_at = started_at
        self.closed_at: float | None = None
        self.closed = False
        #: Whether the input ended at a recording cut (see close()).
        self.recording_cut = False
        self.event_count = 0
        self.malformed_events: list[tuple[int, Malformed]] = []
        # The timeline: one entry per chunk, packed to stay small on long streams.
        self.chunk_times = array("d")
        self.chunk_offsets = array("q")
        self.event_times = array("d")
        self.first_token_at: float | None = None
        self._timed = True
        self.bytes = 0
        self.diagnoser = Diagnoser(stall_after=stall_after)
        self._response_headers = response_headers
        self._declared_framing = framing_for_content_type(content_type)
        self._content_type = content_type
        self._faults_taken = 0
        self._issues_given = 0  # how many of the parser's issues the diagnoser has had

    # -- feeding -----------------------------------------------------------

    def feed(self, data: bytes, at: float | None = None) -> list[EventRecord]:
        """Add one received chunk with its arrival time; return the events it completes."""
        if self.closed:
            raise RuntimeError("StreamSession.feed() called after close()")
        if not data:
            return []
        self._note_time(at)
        if self._timed and at is not None:
            self.chunk_times.append(at)
        self.chunk_offsets.append(self.bytes)
        self.bytes += len(data)
        parser = self.parser
        if parser is None:
            self._sniff += data
            if not self._sniff.strip() or sniff_needs_more(self._sniff):
                return []
            head = self._sniff.lstrip().removeprefix(b"\xef\xbb\xbf")[:1]
            sniffed = sniff_framing(self._sniff, json_array=self.rules.json_array is not None)
            if sniffed in ("eventstream", JSONARRAY):
                parser = self._make_parser(sniffed)
            else:
                parser = self._make_parser("ndjson" if head in (b"{", b"[") else "sse")
            data, self._sniff = self._sniff, b""
        if self._response_headers is not None:
            assert self.framing is not None
            declared = self._declared_framing
            if self.framing == JSONARRAY and framing_for_content_type(self._content_type, json_array=True) == JSONARRAY:
                declared = JSONARRAY  # application/json: what a streamed array is served as
            self.diagnoser.headers(self._response_headers, declared, self.framing)
            self._response_headers = None
        comments = getattr(parser, "comments", 0)
        records = self._records(parser.feed(data), at)
        if getattr(parser, "comments", 0) != comments:
            self.diagnoser.keepalive(at if self._timed else None)
        # A binary chunk may end anywhere: only text can split a character.
        self.diagnoser.chunk(data if self.framing != "eventstream" else b"", self.bytes, parser.inside_block)
        if len(parser.issues) != self._issues_given:  # rare: most chunks find none
            self._give_issues()
        return records

    def close(self, at: float | None = None, *, clean: bool = True, client_gone: bool = False,
              recording_cut: bool = False) -> list[EventRecord]:
        """The stream ended; ``clean`` is False when the connection broke,
        ``client_gone`` when the client hung up. ``recording_cut`` says the input ends
        where a recording was cut, not where the stream ended: the unfinished
        last event is dropped unparsed, and nothing is diagnosed about an
        end that is not there. Return the events that completes."""
        if self.closed:
            return []
        self.closed = True
        self.recording_cut = recording_cut
        self._note_time(at)
        self.closed_at = at
        parser = self.parser or self._make_parser("eventstream" if sniff_needs_more(self._sniff) else "sse")
        records = []
        if self._sniff and not recording_cut:
            records = self._records(parser.feed(self._sniff), at)
        self._sniff = b""
        if not recording_cut:
            records += self._records(parser.close(), at)
        self._give_issues()
        timed = self._timed and at is not None
        last_data = self.chunk_times[-1] if timed and self.chunk_times else self.started_at if timed else None
        self.diagnoser.end(self.outcome(), clean=clean, client_gone=client_gone, recording_cut=recording_cut,
                           ended_at=at if timed else None, last_data_at=last_data)
        return records

    def _give_issues(self) -> None:
        issues = self.issues
        had_error_field = self.diagnoser.first_error_field is not None
        self.diagnoser.issues(issues[self._issues_given :])
        self._issues_given = len(issues)
        if not had_error_field and self.diagnoser.first_error_field is not None:
            # llama.cpp's "error:" field is no event, but it is the stream's error.
            self.message.errors.append(_field_error(self.diagnoser.first_error_field[1]))

    def _note_time(self, at: float | None) -> None:
        if at is None and self._timed:
            # One unknown time makes every timing unknown: never mix.
            self._timed = False
            del self.chunk_times[:]
            del self.event_times[:]
            self.first_token_at = None

    def _make_parser(self, framing: str) -> Parser:
        self.framing = framing
        self.parser = _PARSERS[framing](max_event_size=self._max_event_size)
        return self.parser

    def _records(self, events: list[ServerSentEvent], at: float | None) -> list[EventRecord]:
        records = []
        for event in events:
            if not self._detected and self.event_count < DETECT_WITHIN_EVENTS:
                self._detect(event)
            parts = tuple(self.interpreter.interpret(event))
            for part in parts:
                self.message.add(part)
                if isinstance(part, Malformed):
                    self.malformed_events.append((self.event_count, part))
            if self._timed and at is not None:
                self.event_times.append(at)
                if self.first_token_at is None and any(isinstance(p, TOKEN_PARTS) for p in parts):
                    self.first_token_at = at
            record = EventRecord(self.event_count, at if self._timed else None, event, parts)
            records.append(record)
            self.diagnoser.event(record)
            self.event_count += 1
        return records

    def _detect(self, event: ServerSentEvent) -> None:
        """Let this event's payload confirm or replace the provider (see DETECT_WITHIN_EVENTS)."""
        name = providers.detect_from_event(event, prefer=self.provider_guess)
        if name is None:
            return
        self._detected = True
        self.provider_settled_at = self.event_count
        if name == self.provider:
            return
        self.provider = name
        self.provider_source = "payload"
        self.rules = providers.get(name)
        self.interpreter = self.rules.interpreter()

    @property
    def provider_overridden(self) -> bool:
        """Whether the payload named a provider other than the request's guess."""
        return self.provider_source == "payload" and self.provider_guess is not None

    # -- results -----------------------------------------------------------

    @property
    def faults(self) -> list[Fault]:
        """Faults found so far, each kind once (see diagnose.py)."""
        return self.diagnoser.faults

    def new_faults(self) -> list[Fault]:
        """Faults found since the last call."""
        faults = self.diagnoser.faults
        if len(faults) == self._faults_taken:
            return []  # the usual answer, found without slicing
        new, self._faults_taken = faults[self._faults_taken :], len(faults)
        return new

    @property
    def issues(self) -> list[ParseIssue]:
        return self.parser.issues if self.parser is not None else []

    @property
    def issue_log(self) -> IssueLog:
        return self.parser.log if self.parser is not None else IssueLog()

    @property
    def complete(self) -> bool:
        """Whether the provider's terminal signal arrived."""
        return self.interpreter.is_complete(self.message)

    @property
    def first_error_field(self) -> tuple[int, str] | None:
        """The first error sent as an SSE ``error:`` field (llama.cpp's server
        does), which no client reads: its stream offset and what it said."""
        return self.diagnoser.first_error_field

    @property
    def boundary(self) -> int:
        """The stream offset up to which the bytes are whole blocks, already
        cut into events (0 while the framing is still unknown)."""
        return self.parser.boundary if self.parser is not None else 0

    def outcome(self) -> Outcome:
        """What the stream amounts to so far, as diagnosis and repair need it at its end."""
        return Outcome(
            provider=self.rules,
            framing=self.framing or "sse",
            complete=self.complete,
            message=self.message,
            bytes=self.bytes,
            events=self.event_count,
            boundary=self.boundary,
            line_endings=getattr(self.parser, "line_endings", None),
            array_closed=getattr(self.parser, "closed_array", None),
        )

    def timing(self) -> Timing:
        times = self.chunk_times if self._timed else array("d")
        start = self.started_at if self._timed else None
        first = times[0] if times else None
        end = self.closed_at if self._timed and self.closed_at is not None else (times[-1] if times else None)
        origin = start if start is not None else first
        gaps = sorted(b - a for a, b in zip(self.event_times, self.event_times[1:]))
        return Timing(
            ttfb=None if start is None or first is None else first - start,
            ttft=None if start is None or self.first_token_at is None else self.first_token_at - start,
            duration=None if origin is None or end is None else end - origin,
            gap_p50=percentile(gaps, 0.5) if gaps else None,
            gap_p99=percentile(gaps, 0.99) if gaps else None,
            gap_max=gaps[-1] if gaps else None,
            bytes=self.bytes,
            chunks=len(self.chunk_offsets),
            events=self.event_count,
            keepalives=getattr(self.parser, "comments", 0),
        )

    def summary(self) -> dict[str, Any]:
        """The stream's result as plain data (the shape of ``report --json``)."""
        message = self.message.to_dict()
        return {
            "provider": self.provider,
            "provider_source": self.provider_source,
            **({"provider_guess": self.provider_guess} if self.provider_overridden else {}),
            "framing": self.framing,
            "events": self.event_count,
            "text": message["text"],
            "reasoning": message["reasoning"],
            "refusal": message["refusal"],
            "tool_calls": message["tool_calls"],
            "tool_results": message["tool_results"],
            "usage": message["usage"],
            "finish_reason": message["finish_reason"],
            "errors": message["errors"],
            "model": message["model"],
            "response_id": message["response_id"],
            "chars": message["chars"],
            "cut": message["cut"],
            "complete": self.complete,
            "timing": self.timing().to_dict(),
            "issues": [
                {"kind": str(i.kind), "offset": i.offset, "detail": i.detail} for i in self.issues
            ]
            + [
                {"kind": m.kind, "event_index": index, "detail": m.detail}
                for index, m in self.malformed_events[:100]
            ],
            "faults": [
                {**fault.to_dict(), "count": self.diagnoser.counts[fault.kind]} for fault in self.faults
            ],
        }
