"""The mitmproxy addon: picks LLM streams, streams them through a Pipeline
and stores what mitmproxy itself would lose (the raw body and its timeline)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from mitmproxy import command, ctx, exceptions, flow, flowfilter, http

from ..core import recording
from ..core.pipeline import Backlog, Pipeline
from .output import LOG_LEVELS, Reporter
from ..core.headers import plan as header_plan
from ..core.diagnose import DEFAULT_STALL_SECONDS
from ..core import providers
from ..core.providers import detect_from_request
from ..files.redact import redact_flow, redact_url
from ..core.inject import Injection, parse_injections
from ..core.repair import ALL_REPAIRS, Repair, letta_shape, parse_repairs
from ..core.framing import MEDIA_TYPES, framing_for_content_type

logger = logging.getLogger("ssemedic")

METADATA_KEY = recording.METADATA_KEY


class Medic:
    """Inspect streamed LLM responses live (see the options for what it logs)."""

    def __init__(self, console: IO[str] | None = None, clock: Callable[[], float] = time.time) -> None:
        # ``console`` is for tests; by default mitmdump gets stderr and every
        # other tool (mitmweb, the console UI) gets stdlib logging.
        self._console_override = console
        self._console: IO[str] | None = console
        self.clock = clock
        self.streams: dict[str, Pipeline] = {}
        # What waits for inspection across all streams, within fixed budgets.
        self.backlog = Backlog()
        self.filter: flowfilter.TFilter | None = None
        self.stall_after = DEFAULT_STALL_SECONDS
        self.repairs: frozenset[Repair] = ALL_REPAIRS
        self.injections: dict[Injection, float] = {}
        self.letta_shape = "auto"
        self.repair_on = False
        self.redact_on = True
        self._jsonl: IO[str] | None = None
        self.reporter = Reporter(console=console)

    # -- options ------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option(
            "ssemedic_log", str, "events",
            "What ssemedic logs live: 'events' (the stream lifecycle and one line per event), "
            "'summary' (the lifecycle and one summary per stream) or 'off'.",
        )
        loader.add_option(
            "ssemedic_filter", str | None, None,
            "Inspect only flows matching this mitmproxy filter expression, e.g. '~u /v1/chat/'. "
            "By default every event-stream or NDJSON response, and every response to a request "
            "that asked for \"stream\": true, is inspected.",
        )
        loader.add_option(
            "ssemedic_jsonl", str | None, None,
            "Append one JSON object per event and one per stream summary to this file, "
            "flushed line by line.",
        )
        loader.add_option(
            "ssemedic_repair", str, "false",
            "Repair streams inline (off: ssemedic only inspects and forwards every byte unchanged). "
            "Saved flows still hold the raw upstream body.",
        )
        loader.add_option(
            "ssemedic_repairs", str, "all",
            "Which repairs ssemedic_repair applies: 'all' or a comma-separated list of "
            "reframe, normalise, headers, decompress, sanitize, done, letta.",
        )
        loader.add_option(
            "ssemedic_letta_shape", str, "auto",
            "The shape the letta repair writes: auto (OpenAI chat chunks on a /chat/completions path, "
            "an added assistant_message event otherwise), openai or letta.",
        )
        loader.add_option(
            "ssemedic_inject", str, "",
            "Break streams on their way to the client, to test clients: a comma-separated list of "
            "split-utf8, split-events, cr, drop-done, error-done, burst, stall=SECONDS, cut. "
            "Empty: no injection.",
        )
        loader.add_option(
            "ssemedic_redact", str, "true",
            "Hide credentials (Authorization, API-key headers, cookies, key=... in URLs, api_key in "
            "JSON request bodies) in ssemedic's log, JSONL and the flows it stores for saving. "
            "The traffic itself passes unchanged.",
        )
        loader.add_option(
            "ssemedic_stall", str, "10",
            "Seconds of silence between two events that ssemedic reports as a stall.",
        )
        loader.add_option(
            "ssemedic_max_text", str, "200",
            "How many characters of text ssemedic shows per log line and summary field; 0 shows all.",
        )

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "ssemedic_log" in updated and opts.ssemedic_log not in LOG_LEVELS:
            raise exceptions.OptionsError(
                f"ssemedic_log: {opts.ssemedic_log!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        if "ssemedic_max_text" in updated:
            _max_text(opts.ssemedic_max_text)
        # Booleans are declared as text: mitmproxy drops a script silently when
        # it cannot parse a --set value for it, so they are parsed here instead.
        if "ssemedic_repair" in updated:
            self.repair_on = _flag("ssemedic_repair", opts.ssemedic_repair)
        if "ssemedic_redact" in updated:
            self.redact_on = _flag("ssemedic_redact", opts.ssemedic_redact)
        if "ssemedic_repairs" in updated:
            try:
                self.repairs = parse_repairs(opts.ssemedic_repairs)
            except ValueError as exc:
                raise exceptions.OptionsError(f"ssemedic_repairs: {exc}") from None
        if "ssemedic_letta_shape" in updated:
            try:
                letta_shape(opts.ssemedic_letta_shape, "")
            except ValueError as exc:
                raise exceptions.OptionsError(f"ssemedic_letta_shape: {exc}") from None
            self.letta_shape = opts.ssemedic_letta_shape
        if "ssemedic_inject" in updated:
            try:
                self.injections = parse_injections(opts.ssemedic_inject)
            except ValueError as exc:
                raise exceptions.OptionsError(f"ssemedic_inject: {exc}") from None
        if "ssemedic_stall" in updated:
            self.stall_after = _stall(opts.ssemedic_stall)
        if "ssemedic_filter" in updated:
            self.filter = None
            if opts.ssemedic_filter:
                try:
                    self.filter = flowfilter.parse(opts.ssemedic_filter)
                except ValueError as exc:
                    raise exceptions.OptionsError(
                        f"ssemedic_filter: {opts.ssemedic_filter!r} is not a valid filter expression: {exc}"
                    ) from None
        if "ssemedic_jsonl" in updated:
            self._close_jsonl()
            if opts.ssemedic_jsonl:
                try:
                    self._jsonl = open(opts.ssemedic_jsonl, "a", encoding="utf-8")  # noqa: SIM115 - kept open
                except OSError as exc:
                    raise exceptions.OptionsError(
                        f"ssemedic_jsonl: cannot open {opts.ssemedic_jsonl!r}: {exc.strerror or exc}"
                    ) from None
        self._rebuild_reporter()

    def running(self) -> None:
        if self._console_override is None:
            from mitmproxy.tools.dump import DumpMaster

            # rich on stderr under mitmdump; never write into the console UI.
            self._console = sys.stderr if isinstance(ctx.master, DumpMaster) else None
        self._register_view()
        self._rebuild_reporter()

    def done(self) -> None:
        # Stopping must not wait for inspection that fell behind: what is
        # queued is given up (and said so), the rest was stored already.
        self.backlog.abandon()
        self.reporter.close()
        self._close_jsonl()

    # -- hooks ----------------------------------------------------------------

    def responseheaders(self, f: http.HTTPFlow) -> None:
        assert f.response is not None
        if f.response.raw_content is not None:
            return  # a replayed flow (-nr) brings its whole body: see response()
        mode = self._selection(f)
        if mode is None:
            return
        upstream_headers = dict(f.response.headers.items())
        repairs = self._repairs_for(f, mode)
        stream = self._new_stream(f, sniff=mode == "sniff", repairs=repairs, response_headers=upstream_headers)
        if mode == "stream":
            stream.announce()
        self.streams[f.id] = stream
        f.response.stream = stream

    def response(self, f: http.HTTPFlow) -> None:
        stream = self.streams.pop(f.id, None)
        if stream is not None:
            stream.end(self.clock())
            self._store(f, stream)
        elif f.response is not None and f.response.raw_content is not None and self._selection(f):
            self._inspect_whole(f)

    def error(self, f: http.HTTPFlow) -> None:
        stream = self.streams.pop(f.id, None)
        if stream is not None:
            stream.end(self.clock(), error=f.error.msg if f.error else "connection error")
            self._store(f, stream)

    @command.command("ssemedic.report")
    def report(self, flows: Sequence[flow.Flow]) -> None:
        """Log a summary of every selected flow that holds a streamed LLM response."""
        reporter = Reporter(level="summary", max_text=self.reporter.max_text, console=self._console,
                            redact=self.redact_on)
        count = 0
        for f in flows:
            if isinstance(f, http.HTTPFlow) and f.response is not None and f.response.raw_content is not None:
                if self._selection(f, use_filter=False):
                    self._inspect_whole(f, reporter)
                    count += 1
        logger.info("ssemedic.report: %d of %d flows hold an LLM stream", count, len(flows))

    # -- internals ---------------------------------------------------------------

    def _selection(self, f: http.HTTPFlow, *, use_filter: bool = True) -> str | None:
        """"stream" for an LLM stream, "sniff" when only the first bytes can tell, else None."""
        if use_filter and self.filter is not None and not self.filter(f):
            return None
        assert f.response is not None
        if framing_for_content_type(f.response.headers.get("content-type")):
            return "stream"
        if _asked_for_stream(f.request) or detect_from_request(f.request.method, f.request.path, f.request.headers):
            return "sniff"
        return None

    def _repairs_for(self, f: http.HTTPFlow, mode: str) -> frozenset[Repair]:
        """The repairs for this response, with its headers repaired now: they
        go out before the first chunk (see core/headers.py)."""
        assert f.response is not None
        headers = f.response.headers
        if self.injections and mode == "stream":
            headers.pop("content-length", None)  # injection changes the body
        decided = header_plan(
            headers,
            repairs=self.repairs if self.repair_on else frozenset(),
            sniffing=mode == "sniff",
            status=f.response.status_code,
            implied_content_type=_implied_content_type(f.request) if self.repair_on else "",
        )
        if decided.changed:
            logger.info("[%s] ssemedic repaired headers: %s", f.id[:6], "; ".join(decided.changed))
            recording.add_header_repairs(f, decided.changed)
        return decided.repairs

    def _new_stream(self, f: http.HTTPFlow, *, sniff: bool = False, reporter: Reporter | None = None,
                    repairs: frozenset[Repair] = frozenset(),
                    response_headers: dict[str, str] | None = None) -> Pipeline:
        assert f.response is not None
        url = f.request.pretty_url
        stream = Pipeline(
            flow_id=f.id,
            label=f"{f.request.method} {redact_url(url) if self.redact_on else url}",
            method=f.request.method,
            path=f.request.path,
            request_headers=dict(f.request.headers.items()),
            status=f.response.status_code,
            response_headers=response_headers or dict(f.response.headers.items()),
            started_at=f.request.timestamp_start,
            sink=reporter or self.reporter,
            clock=self.clock,
            sniff=sniff,
            stall_after=self.stall_after,
            repairs=repairs,
            letta_shape=self.letta_shape,
            defer=_call_soon() if reporter is None else None,
            backlog=self.backlog,
            injections=self.injections if reporter is None and not sniff else None,
        )
        return stream

    def _store(self, f: http.HTTPFlow, stream: Pipeline) -> None:
        # Streamed bodies are not stored by mitmproxy: keep the raw upstream
        # bytes so `-w` and mitmweb's save have them, plus the timeline.
        if f.response is not None:
            f.response.raw_content = stream.raw  # no copy: see Recorder
            encoding = stream.response_headers.get("content-encoding")
            if stream.decompressing and encoding:
                f.response.headers["content-encoding"] = encoding  # the saved body is still compressed
        if stream.announced:
            recording.store(f, stream.metadata())
        if self.redact_on:
            # After the request went out and the body was streamed: only what
            # is kept and saved loses its credentials, never the traffic.
            redact_flow(f, in_flight=True)

    def _inspect_whole(self, f: http.HTTPFlow, reporter: Reporter | None = None) -> None:
        """Run a stored flow through a Pipeline, with its recorded timeline if any."""
        assert f.response is not None and f.response.raw_content is not None
        stream = self._new_stream(f, reporter=reporter)
        recorded = recording.read(f)
        if recorded.problem is not None:
            stream.notes.append(f"{recorded.problem}: timings unavailable")
        stream.announce()
        for data, at in recorded.chunks:
            stream.receive(data, at)
        stream.end(recorded.ended_at, error=f.error.msg if f.error else None)

    def _rebuild_reporter(self) -> None:
        opts = ctx.options
        self.reporter.close()
        self.reporter = Reporter(
            level=opts.ssemedic_log,
            max_text=_max_text(opts.ssemedic_max_text),
            console=self._console,
            jsonl=self._jsonl,
            defer=_call_soon(),
            redact=self.redact_on,
        )

    def _close_jsonl(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def _register_view(self) -> None:
        # mitmproxy 12 has no working way to unregister a view; adding it
        # again (e.g. on script reload) replaces it.
        from mitmproxy import contentviews

        from .contentview import llm_stream_view

        contentviews.add(llm_stream_view)


def _call_soon() -> Callable[[Callable[[], None]], object] | None:
    """The running event loop's call_soon, or None outside one (tests, offline use)."""
    try:
        return asyncio.get_running_loop().call_soon
    except RuntimeError:
        return None


def _max_text(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise exceptions.OptionsError(f"ssemedic_max_text: {value!r} is not a whole number >= 0")
    return number


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def _flag(option: str, value: str) -> bool:
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise exceptions.OptionsError(f"{option}: {value!r} is not true or false (yes/no, on/off, 1/0)")


def _stall(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise exceptions.OptionsError(f"ssemedic_stall: {value!r} is not a number of seconds > 0")
    return seconds


def _implied_content_type(request: http.Request) -> str:
    """The Content-Type the framing of the request's provider implies (SSE unless known otherwise)."""
    name = detect_from_request(request.method, request.path, request.headers)
    framing = providers.get(name).framing if name is not None else "sse"
    return MEDIA_TYPES.get(framing, "text/event-stream")


def _asked_for_stream(request: http.Request) -> bool:
    content = request.raw_content
    if not content or b'"stream"' not in content:
        return False
    try:
        body = json.loads(request.get_content(strict=False) or b"")
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("stream") is True
