"""The mitmproxy addon: picks LLM streams, streams them through a Pipeline
and stores what mitmproxy itself would lose (the raw body and its timeline)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from dataclasses import dataclass
from collections.abc import Awaitable, Callable, Sequence
from typing import IO, Any

from mitmproxy import command, connection, ctx, exceptions, flow, flowfilter, hooks, http

from ..core import recording
from ..core.pipeline import Backlog, Pipeline
from .contentview import MIN_WIDTH as VIEW_MIN_WIDTH, WIDTH as VIEW_WIDTH
from .marking import MarkingSink, mark
from .output import LOG_LEVELS, Reporter
from ..core.headers import plan as header_plan
from ..core.diagnose import DEFAULT_STALL_SECONDS, is_client_disconnect
from ..core import providers
from ..core.providers import detect_from_request
from ..files.redact import redact_flow_or_drop, redact_url
from ..files import otel
from ..core.inject import Injection, parse_injections
from ..core.repair import ALL_REPAIRS, Repair, letta_shape, parse_repairs
from ..core.framing import MEDIA_TYPES, framing_for_content_type
from . import keepalive
from .marking import mark_line
from .offload import Offload, WorkerError

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
        self.log_level = "events"
        self.max_text = 200
        self.stall_after = DEFAULT_STALL_SECONDS
        self.repairs: frozenset[Repair] = ALL_REPAIRS
        self.injections: dict[Injection, float] = {}
        self.letta_shape = "auto"
        self.repair_on = False
        self.redact_on = True
        self.keepalive = 0.0
        self.mark_on = True
        self._live: dict[str, http.HTTPFlow] = {}
        self._unsent: dict[str, _Unsent] = {}
        self._jsonl: IO[str] | None = None
        self.reporter = Reporter(console=console)
        self.otel: otel.Exporter | None = None
        self._otel_config: tuple[str, str, bool] = ("", otel.DEFAULT_SERVICE, False)
        #: The inspection worker (ssemedic_worker), or None: streams are inspected here.
        self.offload: Offload | None = None
        self._jsonl_path: str | None = None
        #: Remote streams' answers still to come from the worker, by flow id.
        self._results: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self._waiting: set[str] = set()  # flows whose hook waits for the answer (saved with -w)

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
            "Hide credentials (Authorization, API-key and cookie headers, any header holding a known "
            "key format, key=... in URLs, api_key in JSON request bodies, keys echoed in the text) in "
            "ssemedic's log, JSONL and view, and in every flow mitmproxy saves (-w, mitmweb's Save), "
            "selected or not. The traffic itself passes unchanged.",
        )
        loader.add_option(
            "ssemedic_mark", str, "true",
            "Mark the flows whose stream has an error-level fault (⚠) and add a comment naming "
            "the faults (\"ssemedic: truncated\"), so ~marked and ~comment filter them. A marker "
            "already set stays, a comment already there keeps its text (ssemedic's line is added).",
        )
        loader.add_option(
            "ssemedic_view_width", str, str(VIEW_WIDTH),
            f"Columns the LLM stream view fits its lines in (at least {VIEW_MIN_WIDTH}); "
            "about 76 fits mitmweb's detail pane in a 1400-pixel window.",
        )
        loader.add_option(
            "ssemedic_stall", str, "10",
            "Seconds of silence (no event and no keep-alive comment) that ssemedic reports as a stall.",
        )
        loader.add_option(
            "ssemedic_keepalive", str, "0",
            "During an upstream silence, send the client an SSE comment (`: keepalive`) every this many "
            "seconds, where its event stream is at an event boundary, so read timeouts on the way do not "
            "cut it; counted, never stored as upstream bytes. 0: off. SSE only (NDJSON is left alone).",
        )
        loader.add_option(
            "ssemedic_worker", str, "false",
            "Inspect streams in a worker process, so mitmproxy's event loop only records and forwards them "
            "(and hands each chunk on): what the log, the JSONL and the saved flows say is the same. "
            "Repaired, injected, sniffed and replayed streams are still inspected in the proxy.",
        )
        loader.add_option(
            "ssemedic_max_text", str, "200",
            "How many characters of text ssemedic shows per log line and summary field; 0 shows all.",
        )
        loader.add_option(
            "ssemedic_otlp", str, "",
            "Export one OpenTelemetry span per inspected stream, and GenAI metrics, to this OTLP/HTTP base URL "
            "(e.g. http://127.0.0.1:4318; needs pip install 'ssemedic[otel]'). Batched off the proxy's path: "
            "a collector that is down costs the traffic nothing. OTEL_EXPORTER_OTLP_* variables apply. Empty: off.",
        )
        loader.add_option(
            "ssemedic_otlp_service", str, otel.DEFAULT_SERVICE,
            "The service.name of the exported spans and metrics (this default yields to OTEL_SERVICE_NAME).",
        )
        loader.add_option(
            "ssemedic_otlp_content", str, "false",
            "Put the answer's text and tool-call arguments in the spans (gen_ai.output.messages). "
            "Credentials are never exported.",
        )

    def configure(self, updated: set[str]) -> None:
        # Every updated option is parsed before any is applied, so a bad value
        # leaves ssemedic as it was, and all bad values are named at once.
        problems: list[str] = []

        def parsed[T](name: str, parse: Callable[[Any], T], current: T) -> T:
            if name not in updated:
                return current
            try:
                return parse(getattr(ctx.options, name))
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                return current

        log_level = parsed("ssemedic_log", _log_level, self.log_level)
        max_text = parsed("ssemedic_max_text", _max_text, self.max_text)
        # Booleans are declared as text: mitmproxy drops a script silently when
        # it cannot parse a --set value for it, so they are parsed here instead.
        repair_on = parsed("ssemedic_repair", _flag, self.repair_on)
        redact_on = parsed("ssemedic_redact", _flag, self.redact_on)
        mark_on = parsed("ssemedic_mark", _flag, self.mark_on)
        parsed("ssemedic_view_width", _view_width, VIEW_WIDTH)  # the view reads the option itself
        repairs = parsed("ssemedic_repairs", parse_repairs, self.repairs)
        shape = parsed("ssemedic_letta_shape", _letta_shape, self.letta_shape)
        injections = parsed("ssemedic_inject", parse_injections, self.injections)
        stall_after = parsed("ssemedic_stall", _stall, self.stall_after)
        filter_ = parsed("ssemedic_filter", _filter, self.filter)
        every = parsed("ssemedic_keepalive", _keepalive, self.keepalive)
        worker_on = parsed("ssemedic_worker", _flag, self.offload is not None)
        otel_config = (parsed("ssemedic_otlp", otel.check_url, self._otel_config[0]),
                       parsed("ssemedic_otlp_service", str, self._otel_config[1]),
                       parsed("ssemedic_otlp_content", _flag, self._otel_config[2]))
        # Opened last, so that a refused setting creates no file.
        offload = self.offload
        if not problems and worker_on and offload is None:
            offload = Offload()
            try:
                offload.start()
            except WorkerError as exc:
                problems.append(f"ssemedic_worker: {exc}")
                offload = None
        jsonl = self._jsonl if problems else parsed("ssemedic_jsonl", _open_jsonl, self._jsonl)
        if problems:
            if offload is not None and offload is not self.offload:
                offload.close()
            _refuse(problems)
            return
        if "ssemedic_jsonl" in updated:
            self._jsonl_path = ctx.options.ssemedic_jsonl or None
        if not worker_on and offload is not None:
            offload.close()
            offload = None
        self.offload = offload
        if jsonl is not self._jsonl:
            self._close_jsonl()
            self._jsonl = jsonl
        self.log_level, self.max_text = log_level, max_text
        self.repair_on, self.redact_on, self.repairs = repair_on, redact_on, repairs
        self.mark_on = mark_on
        self.letta_shape, self.injections = shape, injections
        self.stall_after, self.filter, self.keepalive = stall_after, filter_, every
        if otel_config != self._otel_config:
            self._close_otel()
            self._otel_config = otel_config
            self.otel = otel.Exporter(otel_config[0], service=otel_config[1], content=otel_config[2]) \
                if otel_config[0] else None
        self._rebuild_reporter()
        if self.offload is not None:
            self.offload.configure(self._worker_settings())

    def _offloadable(self) -> bool:
        """Whether a live stream may go to the worker now: it runs (or can be
        started), and what this proxy reports to goes where the worker's output
        goes (stderr, or the log; a console given to Medic is the proxy's own)."""
        if self.offload is None:
            return False
        if self._console is not None and self._console is not sys.stderr:
            return False
        return self.offload.ready()

    def _worker_settings(self) -> dict[str, Any]:
        """What shapes the worker's reporting: as this proxy's Reporter is."""
        return {"level": self.log_level, "max_text": self.max_text, "console": self._console is not None,
                "jsonl": self._jsonl_path, "redact": self.redact_on, "otlp": self._otel_config}

    def running(self) -> None:
        if self._console_override is None:
            from mitmproxy.tools.dump import DumpMaster

            # rich on stderr under mitmdump; never write into the console UI.
            self._console = sys.stderr if isinstance(ctx.master, DumpMaster) else None
        self._register_view()
        self._rebuild_reporter()
        if self.offload is not None:
            self.offload.configure(self._worker_settings())  # the console is known now

    def done(self) -> None:
        # Before the save addon writes the flows still in flight (-w) and
        # savehar all of them: nothing more is sent now.
        for f in [*self._live.values(), *(u.flow for u in self._unsent.values())]:
            self._redact(f)
        self._unsent.clear()
        # Stopping must not wait for inspection that fell behind: what is
        # queued is given up (and said so), the rest was stored already.
        self.backlog.abandon()
        self.reporter.close()
        self._close_jsonl()
        self._close_otel()
        if self.offload is not None:
            self.offload.close()

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
        if self.keepalive:
            f.response.stream = keepalive.Keepalive(f, stream, self.keepalive, notes=stream.notes, clock=self.clock,
                                                    on_sent=stream.client_fed)

    def requestheaders(self, f: http.HTTPFlow) -> None:
        # In flight until response or error: done() redacts what is left,
        # before mitmproxy's save writes it out unfinished.
        if self.redact_on:
            self._live[f.id] = f

    def response(self, f: http.HTTPFlow) -> Awaitable[None] | None:
        waiting = None
        try:
            stream = self.streams.pop(f.id, None)
            if stream is not None:
                stream.end(self.clock())
                waiting = self._finish_if_saved(f, stream)
                self._store(f, stream)
            elif f.response is not None and f.response.raw_content is not None and self._selection(f):
                self._inspect_whole(f)
        finally:
            # Whatever failed above, every flow is redacted before the save
            # addon (later in the chain) writes it.
            self._redact(f, sending=True)
        return waiting

    def error(self, f: http.HTTPFlow) -> Awaitable[None] | None:
        waiting = None
        try:
            stream = self.streams.pop(f.id, None)
            if stream is not None:
                stream.end(self.clock(), error=_error_of(f))
                waiting = self._finish_if_saved(f, stream)
                self._store(f, stream)
        finally:
            self._unsent.pop(f.id, None)
            self._redact(f)
        return waiting

    def update(self, flows: Sequence[flow.Flow]) -> None:
        # mitmproxy calls update right after the response hooks of all
        # addons, the save addon's included, and sends the response after
        # it: the client gets the response headers as the upstream sent them.
        for f in flows:
            unsent = self._unsent.pop(f.id, None)
            if unsent is not None and isinstance(f, http.HTTPFlow) and f.response is not None:
                unsent.restore(f.response)
                self._redact_once_sent(f)

    def websocket_end(self, f: http.HTTPFlow) -> None:
        self._redact(f)  # the save addon writes a WebSocket flow only now

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
                    response_headers: dict[str, str] | None = None, at_once: bool = False) -> Pipeline:
        assert f.response is not None
        url = f.request.pretty_url
        spec: dict[str, Any] = dict(
            flow_id=f.id,
            label=f"{f.request.method} {redact_url(url) if self.redact_on else url}",
            method=f.request.method,
            path=f.request.path,
            request_headers=dict(f.request.headers.items()),
            status=f.response.status_code,
            response_headers=response_headers or dict(f.response.headers.items()),
            started_at=f.request.timestamp_start,
            stall_after=self.stall_after,
            letta_shape=self.letta_shape,
            repairs=repairs,
        )
        live = reporter is None and not at_once
        # A live stream that is no sniff may be inspected by the worker: the
        # Pipeline takes the channel unless it injects (see Pipeline: Remote, Tee).
        offload = self.offload if live and not sniff and self._offloadable() else None
        sink = reporter or (self.otel.watch(self.reporter, otel.request_of(f)) if self.otel else self.reporter)
        stream = Pipeline(
            **spec,
            sink=MarkingSink(sink, lambda stream: self._mark(f, stream)),
            clock=self.clock,
            sniff=sniff,
            defer=_call_soon() if live else None,
            backlog=self.backlog,
            injections=self.injections if reporter is None else None,  # the pipeline drops them when sniffing
            channel=offload,
        )
        if offload is not None and stream.remote:
            if self.otel is not None:
                spec["request"] = otel.request_of(f)
            result = offload.open(stream, spec)
            self._results[f.id] = result
            result.add_done_callback(lambda done: self._result_came(f, stream, done.result()))
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

    def _redact(self, f: http.HTTPFlow, *, sending: bool = False) -> None:
        """Take the credentials out of ``f``, as kept for saving, after its
        request went out. ``sending``: at the response hook, before mitmproxy
        sends the response headers (unless they were streamed) and trailers;
        update() puts them back for the client.

        Strategy: the save addon (``-w``) writes the flow during the
        response hook, after ssemedic, and mitmproxy sends the response
        after every addon's update hook. So the response is redacted here,
        restored in update, and redacted again once it went out (the flow
        is no longer live), for mitmweb's Save."""
        self._live.pop(f.id, None)
        if not self.redact_on:
            return
        response = f.response
        before = _fields(response) if sending and response is not None else None
        redact_flow_or_drop(f)
        if before is not None and response is not None and _fields(response) != before:
            self._unsent[f.id] = _Unsent(f, before, _fields(response))

    def _redact_once_sent(self, f: http.HTTPFlow, tries: int = 0) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and f.live and (f.intercepted or tries < SEND_WAIT_TRIES):
            loop.call_later(SEND_WAIT_SECONDS if tries else 0, self._redact_once_sent, f, tries + 1)
        else:
            self._redact(f)

    def _inspect_whole(self, f: http.HTTPFlow, reporter: Reporter | None = None) -> None:
        """Run a stored flow through a Pipeline, with its recorded timeline if any."""
        assert f.response is not None and f.response.raw_content is not None
        # Inspected at once when marking, unless server replay waits on it: the
        # dumper's filter and -w, later in this hook, see the mark then.
        stream = self._new_stream(f, reporter=reporter, at_once=self.mark_on and f.is_replay != "response")
        recorded = recording.read(f)
        if recorded.problem is not None:
            stream.notes.append(f"{recorded.problem}: timings unavailable")
        stream.announce()
        if recorded.cut is not None:
            # Said before the events, and the end is not diagnosed: it is not in the recording.
            stream.recording_cut = recorded.cut
            stream.notes.append(recorded.cut.diagnosed())
            stream.sink.note(stream, recorded.cut.diagnosed())
        for data, at in recorded.chunks:
            stream.receive(data, at)
        stream.end(recorded.ended_at, error=f.error.msg if f.error else None)

    def _finish_if_saved(self, f: http.HTTPFlow, stream: Pipeline) -> Awaitable[None] | None:
        """A live stream's end is diagnosed a turn after this hook, so the
        client's last byte never waits on it; but with ``-w``
        (save_stream_file) mitmproxy's save addon writes the flow in this
        very hook, after ssemedic (a script runs before it): then the end
        is diagnosed now, and the saved flow has its mark. Whatever
        save_stream_filter says: it may select on ``~marked`` itself."""
        options = getattr(ctx, "options", None)
        if self.mark_on and getattr(options, "save_stream_file", None):
            result = self._results.get(f.id)
            if result is not None:
                # Inspected by the worker: this hook waits for its answer
                # (mitmproxy awaits it before the save addon's), bounded.
                self._waiting.add(f.id)
                return self._await_result(f, stream, result)
            stream.finish_now()
        return None

    async def _await_result(self, f: http.HTTPFlow, stream: Pipeline,
                            result: asyncio.Future[dict[str, Any] | None]) -> None:
        try:
            answer = await asyncio.wait_for(asyncio.shield(result), RESULT_WAIT_SECONDS)
        except TimeoutError:
            stream.notes.append(f"the inspection worker did not answer within {RESULT_WAIT_SECONDS:g} s: "
                                "saved without its diagnosis")
            answer = None
        finally:
            self._waiting.discard(f.id)
        self._apply_result(f, stream, answer, later=False)

    def _result_came(self, f: http.HTTPFlow, stream: Pipeline, answer: dict[str, Any] | None) -> None:
        # Not while the flow's response hook waits for it: an update hook
        # now would give the flow back its unredacted headers before it is saved.
        if f.id not in self._waiting:
            self._apply_result(f, stream, answer, later=True)

    def _apply_result(self, f: http.HTTPFlow, stream: Pipeline, answer: dict[str, Any] | None, *,
                      later: bool) -> None:
        """The worker's answer for a remote stream: its provider and notes
        into the flow's metadata, and its mark. ``later``: after the flow's
        hooks, so shown through an update hook (see _mark)."""
        if self._results.pop(f.id, None) is None:
            return  # applied already (the response hook waited for it)
        if answer is not None:
            stream.session.provider = answer["provider"] or stream.session.provider
            stream.notes[:] = answer["notes"]
        if f.response is not None and stream.ended and stream.announced:
            recording.store(f, {"provider": stream.session.provider, "notes": list(stream.notes)})
        if answer is not None and self.mark_on and mark_line(f, answer["comment"]) and later:
            defer, master = _call_soon(), ctx.master
            if defer is not None:
                defer(lambda: master.addons.trigger(hooks.UpdateHook([f])))

    def _mark(self, f: http.HTTPFlow, stream: Pipeline) -> None:
        """The stream's end was diagnosed: mark ``f`` if it is broken. A mark
        set after the flow's hooks is shown through an update hook."""
        if self.mark_on and mark(f, stream.session.faults):
            defer, master = _call_soon(), ctx.master
            if defer is not None:
                defer(lambda: master.addons.trigger(hooks.UpdateHook([f])))

    def _rebuild_reporter(self) -> None:
        self.reporter.close()
        self.reporter = Reporter(
            level=self.log_level,
            max_text=self.max_text,
            console=self._console,
            jsonl=self._jsonl,
            defer=_call_soon(),
            redact=self.redact_on,
        )

    def _close_otel(self) -> None:
        if self.otel is not None:
            self.otel.close()  # bounded: see files/otel.py
            self.otel = None

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


def _error_of(f: http.HTTPFlow) -> str:
    """The flow's error, saying so when the client went away: mitmproxy says
    "Client disconnected." for HTTP/1 clients, but for an HTTP/2 client that
    closes its connection only "peer closed connection", as for a server."""
    error = f.error.msg if f.error else "connection error"
    if not is_client_disconnect(error) and not f.client_conn.state & connection.ConnectionState.CAN_READ:
        return f"client disconnected ({error})"
    return error


def _call_soon() -> Callable[[Callable[[], None]], object] | None:
    """The running event loop's call_soon, or None outside one (tests, offline use)."""
    try:
        return asyncio.get_running_loop().call_soon
    except RuntimeError:
        return None


def _refuse(problems: list[str]) -> None:
    """Refuse bad option values, each in one line that names the option, the
    value and what it may be.

    At runtime (``:set``, mitmweb's options, ``ctx.options.update``) an
    OptionsError makes mitmproxy keep the old values and show its message. At
    startup mitmproxy prints one raised from a script's configure with a
    traceback; logged as an error instead, it is one line, and mitmproxy's
    startup check exits with status 1 right after (before serving any flow).
    """
    if _startup_check_pending():
        for problem in problems:
            logger.error(problem)
        return
    raise exceptions.OptionsError("; ".join(problems))


def _startup_check_pending() -> bool:
    """Whether mitmproxy's startup check (mitmdump, mitmweb, the console UI)
    still watches the log: it stops mitmproxy on any error logged before it
    finishes, and stops watching once mitmproxy is up."""
    check = ctx.master.addons.get("errorcheck")
    handler = getattr(check, "logger", None)
    return handler is not None and handler in logging.getLogger().handlers


# The option parsers: each returns the value ssemedic uses or raises
# ValueError saying what the value may be.

def _log_level(value: str) -> str:
    if value not in LOG_LEVELS:
        raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return value


def _view_width(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < VIEW_MIN_WIDTH:
        raise ValueError(f"{value!r} is not a whole number >= {VIEW_MIN_WIDTH}")
    return number


def _max_text(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ValueError(f"{value!r} is not a whole number >= 0 (0 shows all)")
    return number


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def _flag(value: str) -> bool:
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError(f"{value!r} is not true or false (yes/no, on/off, 1/0)")


def _stall(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{value!r} is not a number of seconds > 0")
    return seconds


def _keepalive(value: str) -> float:
    text = str(value).strip().lower()
    if text in ("", "0", "off", "false", "no"):
        return 0.0
    seconds = _stall(value)
    reason = keepalive.problem()
    if reason is not None:
        raise ValueError(f"cannot send keepalives with this mitmproxy: {reason}")
    return seconds


def _letta_shape(value: str) -> str:
    letta_shape(value, "")  # raises ValueError naming the shapes
    return value


def _filter(value: str | None) -> flowfilter.TFilter | None:
    if not value:
        return None
    try:
        return flowfilter.parse(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a valid filter expression (mitmproxy's filter syntax, e.g. '~u /v1/chat/')"
        ) from None


def _open_jsonl(path: str | None) -> IO[str] | None:
    if not path:
        return None
    try:
        return open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open until replaced or done
    except OSError as exc:
        raise ValueError(f"{path!r} cannot be opened for appending: {exc.strerror or exc}") from None


#: How long a flow being saved waits for the worker's answer on its stream.
RESULT_WAIT_SECONDS = 5.0

#: How often and how long a redacted-then-restored response is waited for
#: to go out (an intercepted one, as long as it stays intercepted).
SEND_WAIT_SECONDS = 0.05
SEND_WAIT_TRIES = 1200

_Fields = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class _Unsent:
    """A response's header and trailer fields as the upstream sent them, and as redacted."""

    flow: http.HTTPFlow
    original: tuple[_Fields, _Fields | None]
    redacted: tuple[_Fields, _Fields | None]

    def restore(self, response: http.Response) -> None:
        response.headers.fields = _restored(response.headers.fields, self.original[0], self.redacted[0])
        trailers, redacted = self.original[1], self.redacted[1]
        if response.trailers is not None and trailers is not None and redacted is not None:
            response.trailers.fields = _restored(response.trailers.fields, trailers, redacted)


def _fields(response: http.Response) -> tuple[_Fields, _Fields | None]:
    return response.headers.fields, response.trailers.fields if response.trailers is not None else None


def _restored(current: _Fields, original: _Fields, redacted: _Fields) -> _Fields:
    """``current`` with ssemedic's redaction undone, keeping what other addons changed since."""
    if current == redacted:
        return original
    if len(original) != len(redacted):
        return current  # fields were dropped, and others changed since: cannot tell which is which
    masked: dict[tuple[bytes, bytes], list[bytes]] = {}
    for (name, value), (_, shown) in zip(original, redacted):
        if value != shown:
            masked.setdefault((name.lower(), shown), []).append(value)
    # Two fields may be redacted alike (two cookies of one name): put them back in order.
    return tuple((n, masked[n.lower(), v].pop(0) if masked.get((n.lower(), v)) else v) for n, v in current)



def _implied_content_type(request: http.Request) -> str:
    """The Content-Type the framing of the request's provider implies (SSE unless known otherwise)."""
    name = detect_from_request(request.method, request.path, request.headers)
    framing = providers.get(name).framing if name is not None else "sse"
    json_array = providers.get(name).json_array if name is not None else None
    if json_array is not None and json_array(request.path):
        return "application/json"  # a streamed JSON array (Gemini without alt=sse)
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
