"""The fault catalogue: every upstream problem ssemedic names, what it means
and how to fix it, naming the component and the setting."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    BUFFERED_BURST = "buffered-burst"
    UTF8_SPLIT = "utf8-split"
    EVENT_SPLIT = "event-split"
    INVALID_UTF8 = "invalid-utf8"
    INVALID_JSON = "invalid-json"
    MISSING_DONE = "missing-done"
    DONE_AFTER_ERROR = "done-after-error"
    ERROR_IN_STREAM = "error-in-stream"
    TRUNCATED = "truncated"
    STALL = "stall"
    COMPRESSED_STREAM = "compressed-stream"
    CONTENT_LENGTH_ON_STREAM = "content-length-on-stream"
    MISSING_NO_TRANSFORM = "missing-no-transform"
    MISSING_ACCEL_BUFFERING = "missing-accel-buffering"
    WRONG_CONTENT_TYPE = "wrong-content-type"
    TEXT_IN_TOOL_CALL = "text-in-tool-call"
    CR_LINE_ENDINGS = "cr-line-endings"
    MIXED_LINE_ENDINGS = "mixed-line-endings"
    BOM = "bom"
    OVERSIZED_EVENT = "oversized-event"
    INVALID_TOOL_ARGUMENTS = "invalid-tool-arguments"
    EMPTY_RESPONSE = "empty-response"
    TOOL_CALL_INDEX_COLLISION = "tool-call-index-collision"
    CONTENT_FILTERED = "content-filtered"
    CORRUPT_FRAME = "corrupt-frame"
    CLIENT_TIMEOUT = "client-timeout"


class Severity(StrEnum):
    ERROR = "error"  # the client gets wrong or missing content
    WARNING = "warning"  # fragile clients break, or the stream degrades
    INFO = "info"  # harmless to robust clients; worth knowing


@dataclass(frozen=True, slots=True)
class Entry:
    severity: Severity
    message: str
    hint: str


CATALOGUE: dict[FaultKind, Entry] = {
    FaultKind.BUFFERED_BURST: Entry(
        Severity.ERROR,
        "the stream arrived in one or a few bursts instead of event by event: something buffers it",
        "Find the buffering hop: nginx needs `proxy_buffering off;` (or the upstream sends "
        "`X-Accel-Buffering: no`); compression middleware (Starlette/FastAPI GZipMiddleware, "
        "nginx `gzip on`) must skip text/event-stream; a CDN must not cache or buffer the route; "
        "the app must yield and flush each event (an async generator in StreamingResponse).",
    ),
    FaultKind.UTF8_SPLIT: Entry(
        Severity.WARNING,
        "a multi-byte UTF-8 character was split across network chunks",
        "Normal on TCP, fatal for per-chunk decoders: clients and routers must buffer bytes to "
        "whole lines before decoding, or use codecs.getincrementaldecoder('utf-8'), never "
        "chunk.decode('utf-8') on each chunk.",
    ),
    FaultKind.EVENT_SPLIT: Entry(
        Severity.WARNING,
        "an event or a data: line was split across network chunks",
        "Normal on TCP: parse SSE by buffering until the blank line that ends each event; never "
        "assume a chunk starts with 'data: ' or holds whole events (use httpx-sse, the openai "
        "SDK, or an incremental parser).",
    ),
    FaultKind.INVALID_UTF8: Entry(
        Severity.ERROR,
        "the stream contains bytes that are not valid UTF-8",
        "The upstream or a router mangles text: make every hop encode text as UTF-8 and never "
        "re-encode partial chunks; event streams are UTF-8 by definition.",
    ),
    FaultKind.INVALID_JSON: Entry(
        Severity.ERROR,
        "an event's data is not the JSON this provider sends",
        "A router or proxy rewrites or cuts payloads: check for per-chunk string handling "
        "(splitting on 'data: ' within a chunk) and truncation; clients like Open WebUI skip such "
        "events silently.",
    ),
    FaultKind.MISSING_DONE: Entry(
        Severity.WARNING,
        "the OpenAI-style stream ended without data: [DONE]",
        "Make the server (or router) send `data: [DONE]` after the last chunk; some clients wait "
        "for it or treat its absence as an error. In the meantime `--set ssemedic_repair=true` "
        "(repair `done`) appends it.",
    ),
    FaultKind.DONE_AFTER_ERROR: Entry(
        Severity.ERROR,
        "data: [DONE] followed an error, so clients see a normal end of a failed stream",
        "Fix the router: after sending an error event, close the stream without `[DONE]` (or use "
        "the provider's error shape). `ssemedic_repair` (repair `done`) suppresses it meanwhile.",
    ),
    FaultKind.ERROR_IN_STREAM: Entry(
        Severity.ERROR,
        "the upstream reported an error inside a 200 stream",
        "Read the error's message: the model server failed mid-generation (overload, timeout, "
        "context length, a dropped upstream connection). Retry or fix the server; clients must "
        "show such errors rather than a truncated answer.",
    ),
    FaultKind.TRUNCATED: Entry(
        Severity.ERROR,
        "the stream ended before the signal that ends the provider's answer (a finish reason or "
        "stop event), or in the middle of an event",
        "Something cut the stream: a proxy or load balancer timeout (nginx `proxy_read_timeout`, "
        "idle timeouts), a crashed worker, a client disconnect upstream, or a router that drops the "
        "provider's last chunk but still writes its own end marker. Raise the timeouts for streaming "
        "routes and check the server's and router's logs. `ssemedic_repair` (repair `done`) ends "
        "a stream that closed cleanly without any end marker with an error event that clients show "
        "(a [DONE] that came without any finish_reason is passed on as it is).",
    ),
    FaultKind.STALL: Entry(
        Severity.WARNING,
        "a long silence between events",
        "The model or a hop stalled: check the server's load and queueing; idle timeouts on "
        "proxies may cut such streams, so send SSE comment keepalives (`: ping`) during long "
        "pauses.",
    ),
    FaultKind.COMPRESSED_STREAM: Entry(
        Severity.WARNING,
        "the event stream is compressed (Content-Encoding), which makes proxies buffer it",
        "Disable compression for text/event-stream: nginx `gzip off` for the location, "
        "GZipMiddleware exclusions, or send `Cache-Control: no-transform`. `ssemedic_repair` "
        "(repair `decompress`) forwards gzip, deflate, br and zstd streams uncompressed.",
    ),
    FaultKind.CONTENT_LENGTH_ON_STREAM: Entry(
        Severity.WARNING,
        "the stream has a Content-Length, so it is not really streamed or can be cut",
        "Send streams without Content-Length (chunked or close-delimited); a fixed length "
        "usually means a hop buffered the whole body first.",
    ),
    FaultKind.MISSING_NO_TRANSFORM: Entry(
        Severity.INFO,
        "Cache-Control lacks no-transform, so intermediaries may compress or buffer the stream",
        "Send `Cache-Control: no-cache, no-transform` on event streams (`ssemedic_repair`, repair "
        "`headers`, sets it).",
    ),
    FaultKind.MISSING_ACCEL_BUFFERING: Entry(
        Severity.INFO,
        "no `X-Accel-Buffering: no` header, so nginx in front may buffer the stream",
        "Send `X-Accel-Buffering: no` from the app, or set `proxy_buffering off;` in nginx for "
        "the streaming route (`ssemedic_repair`, repair `headers`, sets the header).",
    ),
    FaultKind.WRONG_CONTENT_TYPE: Entry(
        Severity.WARNING,
        "an event stream or NDJSON body is served under another Content-Type",
        "Serve SSE as `text/event-stream` and NDJSON as `application/x-ndjson`; clients and "
        "proxies decide how to handle the body by this header (httpx-sse refuses anything else). "
        "`ssemedic_repair` (repair `headers`) relabels a stream served as text/plain, "
        "application/octet-stream or with no Content-Type.",
    ),
    FaultKind.TEXT_IN_TOOL_CALL: Entry(
        Severity.WARNING,
        "the reply text came through a send_message tool call or tool result, not assistant_message",
        "Frontends that read only assistant_message show nothing: upgrade the Letta agent to "
        "the assistant_message form (send `use_assistant_message: true` in the request); "
        "`ssemedic_repair` (repair `letta`) adds assistant_message events meanwhile.",
    ),
    FaultKind.CR_LINE_ENDINGS: Entry(
        Severity.WARNING,
        "lines end with a bare CR",
        "Valid SSE but rare: many hand-written parsers split only on \\n. Make the server use "
        "\\n.",
    ),
    FaultKind.MIXED_LINE_ENDINGS: Entry(
        Severity.WARNING,
        "the stream mixes line-ending styles",
        "A hop rewrites line endings or concatenates streams: use one style (\\n) end to end "
        "throughout.",
    ),
    FaultKind.BOM: Entry(
        Severity.INFO,
        "the stream starts with a UTF-8 byte order mark",
        "Allowed by the spec but breaks parsers that expect 'data:' at byte 0: don't emit a BOM.",
    ),
    FaultKind.OVERSIZED_EVENT: Entry(
        Severity.WARNING,
        "an event is larger than the inspection limit and was skipped by the parser",
        "Check why a single event is so large (a whole answer in one event means buffering); "
        "the bytes were still forwarded unchanged.",
    ),
    FaultKind.INVALID_TOOL_ARGUMENTS: Entry(
        Severity.ERROR,
        "the assembled tool-call arguments are not valid JSON",
        "Argument fragments were lost, reordered or cut (check for truncation and dropped "
        "events), or the model emitted broken JSON: tool calls will fail to parse.",
    ),
    FaultKind.EMPTY_RESPONSE: Entry(
        Severity.WARNING,
        "the stream carried no text, reasoning or tool call",
        "If it ended normally, the model returned nothing: check the request (max tokens, stop "
        "sequences, content filters) and whether the answer hides in another field. If no event "
        "came at all (an empty body, or only keep-alives), the server or a router answered 200 "
        "without streaming: check its logs for an error it swallowed.",
    ),
    FaultKind.TOOL_CALL_INDEX_COLLISION: Entry(
        Severity.ERROR,
        "several tool calls arrived under one tool-call index with different ids: clients that assemble "
        "calls by index glue their arguments into one invalid call",
        "The server or gateway numbers parallel tool calls wrongly: every call of a response needs its "
        "own `index` (0, 1, 2...) on all of its chunks (seen from OpenAI-compatible endpoints of local "
        "servers and from gateways that translate other APIs into chat chunks). Upgrade or fix it; "
        "meanwhile send `parallel_tool_calls: false`. ssemedic shows the calls assembled by their ids.",
    ),
    FaultKind.CONTENT_FILTERED: Entry(
        Severity.WARNING,
        "the provider's content filter flagged or cut the prompt or the answer",
        "Not a transport fault: the provider's safety system (Azure OpenAI content filtering, a gateway's "
        "moderation) judged the content; the detail names the category and severity. Rephrase the "
        "request or have the filter configuration of the deployment changed (Azure AI Foundry: content "
        "filters); clients should show `finish_reason: content_filter` rather than a silently short answer.",
    ),
    FaultKind.CORRUPT_FRAME: Entry(
        Severity.ERROR,
        "a binary AWS event-stream frame failed its CRC check or is malformed: its event was lost "
        "(after a bad prelude CRC, the rest of the stream)",
        "Something between Bedrock and here altered the bytes: a proxy or middleware that treats the "
        "body as text (charset conversion, newline or UTF-8 'fixing'), or that cuts and joins it. "
        "application/vnd.amazon.eventstream is binary: every hop must pass it through untouched.",
    ),
    FaultKind.CLIENT_TIMEOUT: Entry(
        Severity.ERROR,
        "the client (or a hop between it and ssemedic) closed the stream during a silence, with no "
        "upstream error: a read timeout shorter than the model's pauses",
        "Raise the timeout of whatever reads the stream, for streaming routes: nginx in front "
        "`proxy_read_timeout` (60 s by default: the longest wait between two reads); the SDK's or HTTP "
        "client's read timeout (openai `OpenAI(timeout=...)`, 600 s by default; httpx "
        "`httpx.Timeout(..., read=...)`); Open WebUI's `AIOHTTP_CLIENT_TIMEOUT` (seconds, a limit on the "
        "whole request to the model server: only raising it helps). Against idle-read timeouts, keep the "
        "stream alive: the server sends SSE comments (`: ping`) during pauses, or "
        "`--set ssemedic_keepalive=SECONDS` sends `: keepalive` comments meanwhile.",
    ),
}

#: Kinds that are normal on real servers and harmless to robust clients: chunks
#: cut inside a character or an event (TCP does that), and every INFO kind.
#: They are recorded like any other fault, with their severity (JSONL, report,
#: summary panel), but the live log does not shout about them: instead of a
#: ``FAULT`` line and a ``fix:`` line each, a stream gets one dim note line
#: naming them all, at its end. Errors and warnings that hurt clients stay loud.
QUIET: frozenset[FaultKind] = frozenset(
    {FaultKind.UTF8_SPLIT, FaultKind.EVENT_SPLIT}
    | {kind for kind, entry in CATALOGUE.items() if entry.severity == Severity.INFO}
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One diagnosed problem. ``event_index`` and ``offset`` locate its first
    occurrence where that applies; ``detail`` is specific to this stream."""

    kind: FaultKind
    detail: str = ""
    event_index: int | None = None
    offset: int | None = None

    @property
    def severity(self) -> Severity:
        return CATALOGUE[self.kind].severity

    @property
    def quiet(self) -> bool:
        """Whether the live log only notes it (see QUIET)."""
        return self.kind in QUIET

    @property
    def message(self) -> str:
        return CATALOGUE[self.kind].message

    @property
    def hint(self) -> str:
        return CATALOGUE[self.kind].hint

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": str(self.kind),
            "severity": str(self.severity),
            "message": self.message,
            "hint": self.hint,
            "detail": self.detail,
        }
        if self.event_index is not None:
            out["event_index"] = self.event_index
        if self.offset is not None:
            out["offset"] = self.offset
        return out
