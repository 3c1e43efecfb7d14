"""Where live streams are reported: a terminal (mitmdump's stderr), stdlib
logging (mitmweb and the mitmproxy console, whose UI must not be written to),
and an optional JSONL file with one object per event and per stream summary.

Per-event lines are plain f-strings written straight to the stream: rich is
only used for the end-of-stream panel, so the per-chunk work on mitmproxy's
event loop stays small. The panel is drawn on the event loop too, one per
turn of it (see ``_draw_panel``).

Per-event lines are rate limited (``EventLineLimit``): past the rate they are
dropped and counted, and the log says how many. Only event lines are: the
lifecycle lines, faults and summaries always go out, and the JSONL gets every
event (it is a file the user asked for, not a terminal to read).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from rich.console import Console

from ..core.describe import clip, describe, part_to_dict, printable, printable_data, printable_lines
from ..core.events import dumps
from ..core.faults import Fault
from ..files.redact import may_hold_secret, redact_data, redact_text
from ..core.pipeline import Pipeline, header_summary
from ..core.providers.bedrock import wrapped_event_name
from ..files.report import SEVERITY_STYLES, panel
from ..core.session import EventRecord

logger = logging.getLogger("ssemedic")

LOG_LEVELS = ("events", "summary", "off")

_COLORS = {"dim": "2", "cyan": "36", "green": "32", "yellow": "33", "red": "31", "bold": "1", "magenta": "35",
           "bold red": "1;31"}
#: What the note line for a stream's quiet faults says about them (faults.QUIET).
QUIET_NOTE = "normal on real servers; harmless to robust clients"

#: Per-event log lines per second, per flow and for the whole proxy, and the
#: burst each may write at once. A line costs about 10 µs to describe, format
#: and write (measured: a 20,000-event stream took 28 µs per event with every
#: line, 19 µs with the summary only and 20 µs limited) and no one reads 100
#: lines a second; the burst lets a whole ordinary answer (a few hundred
#: events) through unthinned. Past the rate, lines are dropped and counted;
#: the proxy-wide cap keeps 50 streams at once from flooding the terminal.
FLOW_LINES_PER_SECOND = 100.0
FLOW_LINES_BURST = 500.0
PROXY_LINES_PER_SECOND = 500.0
PROXY_LINES_BURST = 1000.0
#: A flow's "… N event lines not shown" note comes at most this often while
#: lines are being dropped (and once more at the end), not before every line let through.
DROP_NOTE_SECONDS = 1.0


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float | None = None

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def refill(self, now: float) -> None:
        if self.at is not None and now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now if self.at is None or now > self.at else self.at


@dataclass(slots=True)
class _FlowLines:
    """One flow's share of the event-line limit and what it dropped."""

    bucket: TokenBucket
    dropped: int = 0  # in all
    unreported: int = 0  # since the last note
    noted_at: float | None = None


class EventLineLimit:
    """Decides which per-event lines go out: a token bucket per flow and one
    for the proxy; a line needs a token from both. ``clock`` is any monotonic
    clock in seconds."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        flow_rate: float = FLOW_LINES_PER_SECOND,
        flow_burst: float = FLOW_LINES_BURST,
        proxy_rate: float = PROXY_LINES_PER_SECOND,
        proxy_burst: float = PROXY_LINES_BURST,
    ) -> None:
        self.clock = clock
        self.flow_rate, self.flow_burst = flow_rate, flow_burst
        self.proxy = TokenBucket(proxy_rate, proxy_burst)
        # Keyed by the Pipeline itself, so a flow that never finishes leaves nothing behind.
        self._flows: weakref.WeakKeyDictionary[Pipeline, _FlowLines] = weakref.WeakKeyDictionary()

    def allow(self, stream: Pipeline) -> tuple[bool, int]:
        """Whether ``stream`` may write an event line now, and how many of
        its lines were dropped since the last note, if that note is due now."""
        flow = self._flows.get(stream)
        if flow is None:
            flow = self._flows[stream] = _FlowLines(TokenBucket(self.flow_rate, self.flow_burst))
        now = self.clock()
        flow.bucket.refill(now)
        self.proxy.refill(now)
        if flow.bucket.tokens < 1 or self.proxy.tokens < 1:
            flow.dropped += 1
            flow.unreported += 1
            if flow.noted_at is None:
                flow.noted_at = now  # the first drop starts the wait for the first note
            return False, 0
        flow.bucket.tokens -= 1
        self.proxy.tokens -= 1
        if flow.unreported and flow.noted_at is not None and now - flow.noted_at >= DROP_NOTE_SECONDS:
            unreported, flow.unreported, flow.noted_at = flow.unreported, 0, now
            return True, unreported
        return True, 0

    def finish(self, stream: Pipeline) -> tuple[int, int]:
        """Forget ``stream``; return its dropped lines in all and those not yet noted."""
        flow = self._flows.pop(stream, None)
        return (0, 0) if flow is None else (flow.dropped, flow.unreported)


class Reporter:
    """Implements live.Sink: formats what happens and writes it out.

    ``console`` is a text stream for terminal output (mitmdump), or None to
    go through logging. ``jsonl`` is an open text file, or None.
    """

    def __init__(
        self,
        *,
        level: str = "events",
        max_text: int = 200,
        console: IO[str] | None = None,
        jsonl: IO[str] | None = None,
        color: bool | None = None,
        defer: Callable[[Callable[[], None]], object] | None = None,
        redact: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if level not in LOG_LEVELS:
            raise ValueError(f"level must be one of {', '.join(LOG_LEVELS)}")
        self.level = level
        self.max_text = max_text
        self.console = console
        self.jsonl = jsonl
        # With ``defer`` (the event loop's call_soon), lines are flushed and
        # panels drawn in a later turn of the loop, after the bytes went out.
        self.defer = defer
        # Every line, JSONL object and summary is redacted: a key can come in
        # a URL, a header, an error or the model's own text. Most lines hold
        # nothing that looks like one and skip the patterns (redact_text).
        self.redact = redact
        #: Which per-event lines go out (``clock``: a monotonic clock, for the rate).
        self.limit = EventLineLimit(clock)
        # Under the event loop, lines are flushed once per loop turn rather
        # than one write system call per line.
        self._flush_scheduled = False
        self._panels: deque[dict[str, Any]] = deque()  # reports whose panel is still to draw
        self.color = console is not None and (color if color is not None else _isatty(console))
        self._rich = Console(file=console, highlight=False, soft_wrap=False,
                             force_terminal=self.color, no_color=not self.color) if console else None

    # -- live.Sink ------------------------------------------------------------

    def started(self, stream: Pipeline) -> None:
        session = stream.session
        self._line(stream, "cyan", f"stream started: {stream.label} · provider {session.provider}")
        self._line(stream, "dim", f"upstream headers: {stream.status} {header_summary(stream.response_headers)}")
        for note in stream.notes:
            self._line(stream, "yellow", note)

    def _safe(self, text: str) -> str:
        return redact_text(text) if self.redact else text

    def _safe_data(self, obj: dict[str, Any]) -> dict[str, Any]:
        # One check on the whole object as it will be written: walking it
        # string by string costs more than serialising it (measured: +180 µs
        # per event, on a busy machine). Redacted, bytes are text first.
        if not self.redact:
            return obj
        try:
            line = dumps(obj, default=_plain)
        except ValueError:  # nothing JSON can hold: walk it instead
            return dict(redact_data(obj))
        return redact_data(json.loads(line)) if may_hold_secret(line) else obj

    def first_chunk(self, stream: Pipeline, data: bytes) -> None:
        t = self._offset(stream, stream.last_chunk_at)
        preview = clip(data[:120].decode("utf-8", "replace"), 80)
        self._line(stream, "dim", f"first chunk{t}: {len(data)} bytes {preview!r}")

    def event(self, stream: Pipeline, record: EventRecord) -> None:
        session = stream.session
        if record.index == session.provider_settled_at and session.provider_overridden:
            self._line(stream, "cyan",
                       f"provider {session.provider}, from the payload; the path suggested {session.provider_guess}")
        if self.level == "events":
            allowed, dropped = self.limit.allow(stream)
            if dropped:
                self._line(stream, "dim", f"… {_lines(dropped)} not shown (rate limit)")
            if allowed:
                t = self._offset(stream, record.time)
                meaning = describe(record.parts, self.max_text)
                style = "red" if "ERROR" in meaning or "MALFORMED" in meaning else ""
                name = record.event.event
                if name == "chunk":  # Bedrock's InvokeModel: say what it wraps (None for any other stream)
                    name = f"chunk {wrapped_event_name(session.interpreter, record.event) or ''}".rstrip()
                self._line(stream, style, f"#{record.index}{t} {clip(name, 60)}: {meaning}")
        if self.jsonl is not None:
            self._write_json(self._safe_data({
                "type": "event",
                "flow": stream.flow_id,
                "index": record.index,
                "t": self._seconds(stream, record.time),
                "event": record.event.event,
                "id": record.event.id,
                "data": record.event.data,
                "parts": [part_to_dict(p) for p in record.parts],
            }))

    def progress(self, stream: Pipeline) -> None:
        timing = stream.session.timing()
        self._line(stream, "dim", f"… {timing.chunks} chunks · {timing.bytes:,} bytes · {timing.events} events")

    def finished(self, stream: Pipeline, error: str | None) -> None:
        report = stream.report()
        if self.redact:
            report = redact_data(report)
        dropped, unreported = self.limit.finish(stream)
        if dropped:
            where = "the JSONL has them all" if self.jsonl is not None else "ssemedic_jsonl would keep them all"
            if unreported:
                self._line(stream, "dim", f"… {_lines(unreported)} not shown (rate limit)")
            report["notes"].append(f"{_lines(dropped)} not shown (rate limit); {where}")
        timing = report["timing"]
        quiet = [str(f.kind) for f in stream.session.faults if f.quiet]
        if quiet:
            self._line(stream, "dim", f"note: {', '.join(quiet)} ({QUIET_NOTE})")
        if stream.recording_cut is not None:
            # -nr of a cut recording: the stream's end was never seen.
            self._line(stream, "yellow", f"recording ends: {timing['events']} events, {timing['bytes']:,} bytes; "
                                         + stream.recording_cut.message())
        elif error is None:
            self._line(stream, "green", f"completed: {timing['events']} events, {timing['bytes']:,} bytes")
        else:
            self._line(stream, "red", f"aborted: {error}")
        if self.level != "off":
            if self._rich is None:
                logger.info(printable_lines(self._summary_text(stream, report)))
            elif self.defer is None:
                self._print_panel(report)
            else:
                self._panels.append(report)  # after the "completed" line, in a later turn
                if len(self._panels) == 1:
                    self.defer(self._draw_panel)
        if self.jsonl is not None:
            self._write_json({"type": "summary", "flow": stream.flow_id, **report})

    def fault(self, stream: Pipeline, fault: Fault) -> None:
        # A quiet fault (faults.QUIET) gets no block of its own: finished()
        # names the stream's quiet faults in one note line.
        if not fault.quiet:
            where = f" (event #{fault.event_index})" if fault.event_index is not None else ""
            detail = f": {clip(fault.detail, self.max_text)}" if fault.detail else ""
            style = SEVERITY_STYLES[str(fault.severity)]
            self._line(stream, style, f"FAULT {fault.kind}{where}{detail} — {fault.message}")
            if self.level == "events":
                self._line(stream, "dim", f"  fix: {fault.hint}")
        if self.jsonl is not None:
            self._write_json(self._safe_data({"type": "fault", "flow": stream.flow_id, **fault.to_dict()}))

    def note(self, stream: Pipeline, text: str) -> None:
        self._line(stream, "yellow", text)

    def internal_error(self, stream: Pipeline, exc: BaseException) -> None:
        if self.redact:  # the message and traceback may quote the data
            trace = "".join(traceback.format_exception(exc))
            logger.error("[%s] ssemedic internal error; the flow passes through unchanged: %s\n%s",
                         stream.flow_id[:8], redact_text(repr(exc)), redact_text(trace).rstrip())
            return
        logger.error(
            "[%s] ssemedic internal error; the flow passes through unchanged: %r",
            stream.flow_id[:8], exc, exc_info=exc,
        )

    # -- formatting -----------------------------------------------------------

    def _line(self, stream: Pipeline, style: str, text: str) -> None:
        if self.level == "off":
            return
        text = self._safe(text)
        head = f"[{stream.flow_id[:6]}]"
        text = printable(text)
        if self.console is None:
            logger.info("%s %s", head, text)
            return
        if self.color:
            head = _paint("dim", head)
            text = _paint(style, text) if style else text
        console = self.console
        console.write(f"{head} {text}\n")
        if self.defer is None:
            console.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.defer(self._flush)

    def _draw_panel(self) -> None:
        """Draw the oldest queued summary panel; under the event loop, the
        next one waits for the next turn of it.

        A panel costs well under a millisecond of CPU, so drawn one per
        turn, streams ending together delay other connections by at most one
        panel. A thread of its own was measured and is worse: it holds the
        GIL while it lays a panel out, so the loop waits for it anyway, and
        with 50 panels queued it kept the loop waiting 35-60 ms at a stretch
        in five runs out of eight (drawn here: 3-5 ms at worst, on a busy
        two-core machine). It also needed a queue and a join on shutdown,
        and wrote to the loop's output stream from another thread.
        """
        if self._panels:
            report = self._panels.popleft()
            if self._panels and self.defer is not None:
                self.defer(self._draw_panel)
            self._print_panel(report)

    def _print_panel(self, report: dict[str, Any]) -> None:
        try:
            if self._rich is not None:
                self._rich.print(panel(printable_data(report), max_text=max(self.max_text, 0)))
        except Exception:  # a broken terminal must not stop the other panels
            logger.exception("ssemedic could not draw a summary panel")

    def close(self) -> None:
        """Draw the panels still queued and flush the output."""
        panels, self._panels = self._panels, deque()
        for report in panels:
            self._print_panel(report)
        if self.console is not None:
            self.console.flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.console is not None:
            self.console.flush()

    def _summary_text(self, stream: Pipeline, report: dict[str, Any]) -> str:
        t = report["timing"]
        chars = report.get("chars") or {}
        keepalives = f" ({t['keepalives']} keep-alives)" if t.get("keepalives") else ""
        lines = [
            f"[{stream.flow_id[:6]}] summary: {report['provider']} · HTTP {report['status']} · "
            f"{t['events']} events{keepalives} · {t['bytes']:,} bytes · {t['chunks']} chunks · "
            f"TTFB {_ms(t['ttfb_ms'])} · TTFT {_ms(t['ttft_ms'])} · duration {_ms(t['duration_ms'])} · "
            f"gap p50 {_ms(t['gap_p50_ms'])} p99 {_ms(t['gap_p99_ms'])} max {_ms(t['gap_max_ms'])}",
            f"  text: {clip(report['text'], self.max_text) or '(none)'}{_cut(report['text'], chars.get('text'))}",
        ]
        if report["reasoning"]:
            cut = _cut(report["reasoning"], chars.get("reasoning"))
            lines.append(f"  reasoning: {clip(report['reasoning'], self.max_text)}{cut}")
        for call in report["tool_calls"]:
            cut = _cut(call["arguments"], call.get("arguments_chars"))
            lines.append(f"  tool call: {call['name']}({clip(call['arguments'], self.max_text)}){cut}")
        lines.append(f"  finish: {report['finish_reason']} · usage: {_json_text(report['usage'])}")
        for error in report["errors"]:
            lines.append(f"  error: {error['message']}")
        for fault in report["faults"]:
            lines.append(f"  fault: {fault['kind']} ({fault['severity']}): {fault['message']} — fix: {fault['hint']}")
        for note in report["notes"]:
            lines.append(f"  note: {note}")
        return "\n".join(lines)

    def _write_json(self, obj: dict[str, Any]) -> None:
        assert self.jsonl is not None
        self.jsonl.write(json_line(obj))
        self.jsonl.flush()

    @staticmethod
    def _seconds(stream: Pipeline, at: float | None) -> float | None:
        start = stream.session.started_at
        return None if at is None or start is None else round(at - start, 6)

    def _offset(self, stream: Pipeline, at: float | None) -> str:
        seconds = self._seconds(stream, at)
        return "" if seconds is None else f" +{seconds:.3f}s"


def _lines(count: int) -> str:
    return f"{count:,} event line{'s' * (count != 1)}"


def _cut(kept: str, total: int | None) -> str:
    """A note that only a prefix of the content was kept, or nothing."""
    if total is None or total <= len(kept):
        return ""
    return f" [cut: only the first {len(kept):,} of {total:,} chars were kept]"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def _paint(style: str, text: str) -> str:
    return f"\x1b[{_COLORS[style]}m{text}\x1b[0m"


def _isatty(stream: IO[str]) -> bool:
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:
        return False


def json_line(obj: dict[str, Any]) -> str:
    """One JSONL line for a record, whatever values it holds: strict JSON
    that encodes as UTF-8 (see events.dumps: lone surrogates escaped,
    non-finite numbers null). A record that cannot be written at all (nested
    too deeply to encode) becomes a line that says so, never an exception."""
    try:
        return dumps(obj, default=_plain) + "\n"
    except ValueError as exc:
        return dumps({"type": str(obj.get("type")), "flow": str(obj.get("flow")),
                      "error": f"ssemedic could not write this record as JSON: {exc}"[:500]}) + "\n"


def _json_text(value: Any) -> str:
    try:
        return dumps(value)
    except ValueError as exc:
        return f"({exc})"


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
