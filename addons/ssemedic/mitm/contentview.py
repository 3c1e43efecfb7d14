"""The "LLM stream" contentview: a streamed LLM response body shown as its
events, when each arrived, what each means, and the message they assemble.

The view registers nothing at import; the addon calls
``mitmproxy.contentviews.add(llm_stream_view)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from mitmproxy import ctx, http
from mitmproxy.contentviews import Contentview, Metadata, SyntaxHighlight

from ..core import providers
from ..core.describe import describe, printable_lines, trim
from ..core.framing import framing_for_content_type, sniff_framing
from ..core.session import EventRecord, StreamSession
from ..files.redact import redact_text
from ..files.sources import Capture, stream_from_flow

logger = logging.getLogger(__name__)

#: Above every view mitmproxy ships (JSON says 1, raw 0.1), so a stream is
#: shown as a stream even when its Content-Type ends in "json".
PRIORITY = 2.0
#: How much of a body is looked at to tell whether it is SSE.
SNIFF_BYTES = 4096
#: How many characters of one event's text or arguments its line shows.
EVENT_TEXT_LIMIT = 120
#: How many events get a line of their own; the rest are only counted.
MAX_EVENT_LINES = 5000
#: How many parse issues and malformed events are listed in full.
MAX_ISSUE_LINES = 100
_LABEL_WIDTH = 12


# -- choosing the view ------------------------------------------------------------


def is_llm_stream(data: bytes, metadata: Metadata) -> bool:
    """Whether ``data`` is a stream this view should be chosen for: declared as
    SSE or NDJSON, or sniffed as SSE in a response to a known LLM endpoint."""
    if not data:
        return False
    if framing_for_content_type(metadata.content_type) is not None:
        return True
    flow = metadata.flow
    if not isinstance(flow, http.HTTPFlow):
        return False
    request = flow.request
    provider = providers.detect_from_request(request.method, request.path, dict(request.headers))
    return provider is not None and sniff_framing(data[:SNIFF_BYTES]) == "sse"


# -- running the session ----------------------------------------------------------


def stream_for(data: bytes, metadata: Metadata) -> Capture:
    """The Capture to render: the flow's own (with its chunk timeline) when
    ``data`` is that flow's response body, else ``data`` with whatever the
    flow tells about its request."""
    flow = metadata.flow
    if not isinstance(flow, http.HTTPFlow):
        return Capture(label="", body=data, chunks=[(data, None)], content_type=metadata.content_type)
    response = flow.response
    if response is not None and metadata.http_message is response:
        stream = stream_from_flow(flow, "")
        if stream is not None and stream.body == data:
            return stream
    request = flow.request
    return Capture(
        label="",
        body=data,
        chunks=[(data, None)],
        method=request.method,
        path=request.path,
        request_headers=dict(request.headers),
        content_type=metadata.content_type,
    )


def run(stream: Capture) -> tuple[StreamSession, list[EventRecord]]:
    """Run a session over ``stream``, keeping the first MAX_EVENT_LINES records."""
    return stream.run(keep=MAX_EVENT_LINES)


# -- formatting ---------------------------------------------------------------------


def _quote(text: str, limit: int = EVENT_TEXT_LIMIT) -> str:
    return repr(trim(text, limit))


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:,.1f} ms"


def _ending(session: StreamSession) -> str:
    if session.recording_cut and not session.complete:
        return "end not recorded (recording cut)"
    if session.rules.terminal is None and not session.message.markers:
        # The generic interpreter calls every stream complete; here that would mislead.
        return "unknown format: no terminal signal to check"
    return "complete" if session.complete else "no terminal signal"


def header(session: StreamSession) -> str:
    """The first line: provider, framing, size, timings and whether it ended."""
    timing = session.timing()
    words = [
        f"LLM stream · {session.provider} ({session.framing or 'unknown framing'})",
        f"{session.event_count} events",
        f"{session.bytes:,} bytes",
    ]
    if all(v is None for v in (timing.ttfb, timing.ttft, timing.duration, timing.gap_max)):
        words.append("timing unknown (no chunk timeline)")
    else:
        words.append(
            f"{timing.chunks} chunks · TTFB {_ms(timing.ttfb)} · TTFT {_ms(timing.ttft)} · "
            f"duration {_ms(timing.duration)} · max gap {_ms(timing.gap_max)}"
        )
    words.append(_ending(session))
    return " · ".join(words)


def event_lines(records: Iterable[EventRecord], origin: float | None) -> list[str]:
    """One line per event: index, time since ``origin`` (when known), type, meaning."""
    rows = []
    for record in records:
        when = "" if origin is None or record.time is None else f"+{record.time - origin:.3f}s"
        if record.parts:
            meaning = describe(record.parts, EVENT_TEXT_LIMIT)
        else:
            meaning = f"(no meaning) data {_quote(record.event.data)}"
        rows.append((f"#{record.index}", when, trim(record.event.event, 32), meaning))
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    return [
        "  ".join(x for x in (index.ljust(widths[0]), when.rjust(widths[1]), kind.ljust(widths[2]), meaning) if x)
        for index, when, kind, meaning in rows
    ]


def _field(label: str, value: str) -> str:
    indent = "\n" + " " * (_LABEL_WIDTH + 2)
    return f"  {label:<{_LABEL_WIDTH}}{value.replace(chr(10), indent)}"


def _cut(total: int, keep: int) -> str:
    """A note after content whose first ``keep`` of ``total`` characters were kept."""
    return f"\n… cut: only the first {keep:,} of {total:,} chars were kept" if total > keep else ""


def message_lines(session: StreamSession, notes: Iterable[str] = ()) -> list[str]:
    """The assembled message, then every parse issue and note."""
    message = session.message
    lines = ["message"]
    if message.model or message.response_id:
        lines.append(_field("model", " · ".join(x for x in (message.model, message.response_id) if x)))
    if message.reasoning:
        lines.append(_field("reasoning", message.reasoning + _cut(message.reasoning_chars, message.keep)))
    via = f" (via {', '.join(message.text_via)})" if message.text_via else ""
    text = message.text + _cut(message.text_chars, message.keep)
    lines.append(_field("text" + via, text) if message.text else _field("text", "(none)"))
    if message.refusal:
        lines.append(_field("refusal", message.refusal + _cut(message.refusal_chars, message.keep)))
    for call in message.tool_calls.values():
        ident = f" (id {call.id})" if call.id else ""
        lines.append(_field("tool call", f"{call.name or '?'}{ident} [{call.validity}]\n{call.arguments}"))
    for what, count in message.cut().items():
        if what.endswith("_dropped"):
            lines.append(_field("cut", f"{count:,} {what.removesuffix('_dropped').replace('_', ' ')} not kept"))
    for result, length in zip(message.tool_results, message.tool_result_lengths):
        who = result.name or result.tool_call_id or "?"
        cut = _cut(length, len(result.content))
        lines.append(_field("tool error" if result.is_error else "tool result", f"{who} → {result.content}{cut}"))
    if message.usage:
        lines.append(_field("usage", json.dumps(message.usage, ensure_ascii=False)))
    ending = " · ".join(message.markers) if message.markers else ""
    finish = (message.finish_reason or "—", ending, _ending(session))
    lines.append(_field("finish", " · ".join(x for x in finish if x)))
    for err in message.errors:
        kind = "/".join(k for k in (err.type, err.code) if k)
        lines.append(_field("error", f"[{kind}] {err.message}" if kind else err.message))
    for fault in session.faults:
        where = f" (event #{fault.event_index})" if fault.event_index is not None else ""
        detail = f": {fault.detail}" if fault.detail else ""
        lines.append(_field("fault", f"{fault.kind} [{fault.severity}]{where}{detail} — {fault.message}"))
        lines.append(_field("", f"fix: {fault.hint}"))
    for issue in session.issues[:MAX_ISSUE_LINES]:
        lines.append(_field("issue", f"{issue.kind} @{issue.offset}: {issue.detail}"))
    listed = min(len(session.issues), MAX_ISSUE_LINES)
    unlisted = sum(session.issue_log.counts.values()) - listed
    if unlisted > 0:
        lines.append(_field("issue", f"… and {unlisted} more"))
    for index, bad in session.malformed_events[:MAX_ISSUE_LINES]:
        lines.append(_field("malformed", f"event #{index} {bad.kind}: {bad.detail}"))
    if len(session.malformed_events) > MAX_ISSUE_LINES:
        lines.append(_field("malformed", f"… and {len(session.malformed_events) - MAX_ISSUE_LINES} more"))
    for note in notes:
        lines.append(_field("note", note))
    return lines


def render(stream: Capture) -> str:
    """The whole view text for one stream."""
    session, records = run(stream)
    origin = stream.started_at
    if origin is None and stream.chunks:
        origin = stream.chunks[0][1]
    lines = [header(session), ""]
    notes = stream.notes
    if stream.cut is not None:
        # Said at the top, once: everything below is only what came before the cut.
        lines += [stream.cut.diagnosed(), ""]
        notes = [note for note in notes if note != stream.cut.diagnosed()]
    lines += event_lines(records, origin) or ["(no events)"]
    if session.event_count > len(records):
        lines.append(f"… {session.event_count - len(records)} more events not listed")
    lines.append("")
    lines += message_lines(session, notes)
    return "\n".join(lines)


# -- the view -------------------------------------------------------------------------


class LLMStreamContentview(Contentview):
    """Shows SSE and NDJSON LLM responses event by event, then assembled."""

    @property
    def name(self) -> str:
        return "LLM stream"

    @property
    def syntax_highlight(self) -> SyntaxHighlight:
        return "none"

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        try:
            text = printable_lines(render(stream_for(data, metadata)))  # upstream text is data, not escapes
            return redact_text(text) if _redacting() else text
        except Exception as exc:
            # mitmproxy would show a traceback instead of the body; say why in one line.
            logger.debug("LLM stream view failed", exc_info=True)
            return f"ssemedic could not render this stream: {type(exc).__name__}: {exc}"

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        try:
            return PRIORITY if is_llm_stream(data, metadata) else 0
        except Exception:
            logger.debug("LLM stream view could not judge a body", exc_info=True)
            return 0


def _redacting() -> bool:
    """Whether ssemedic_redact is on; on when it cannot be told (no addon
    loaded, an unreadable value), so the view fails closed."""
    try:
        value = ctx.options.ssemedic_redact
    except Exception:
        return True
    return str(value).strip().lower() not in ("false", "no", "off", "0", "")


llm_stream_view = LLMStreamContentview()
