"""Streams to an OpenTelemetry collector: the thin adapter between
core/telemetry.py's values and the OpenTelemetry SDK with its OTLP/HTTP
protobuf exporters (the optional ``ssemedic[otel]`` extra). The addon uses it
live, ``ssemedic report --otlp`` for recordings.

Strategy: nothing here may cost the traffic time. On mitmproxy's event loop
a finished stream's report is only queued (at most MAX_QUEUED_STREAMS) for
this exporter's worker thread, which maps it to a span and metric points
(one histogram record per event: a long stream takes that thread a while)
and hands them to the SDK: the span to its BatchSpanProcessor's bounded
queue (when full, the oldest span is dropped). The SDK's own threads send
batches (spans) and periodic collections (metrics) over HTTP, so a
collector that is down, slow or never answers holds up those threads only.
Each export's result goes through a watching exporter that logs the first
failure and the recovery, once each, instead of the SDK's line per batch.
Shutdown flushes what is queued in threads of its own, waited for at most
SHUTDOWN_SECONDS: the process exits on time even with a hanging collector.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import functools
import os
import queue
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import __version__
from ..core import telemetry
from ..core.pipeline import PassOn
from .redact import redact_data

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram

    from ..core.pipeline import Pipeline, Sink
    from .sources import Capture

logger = logging.getLogger("ssemedic")

#: How long shutdown waits for the last spans and metrics to go out.
SHUTDOWN_SECONDS = 3.0
#: Finished streams that may wait for the export worker; past this, live streams are not exported.
MAX_QUEUED_STREAMS = 1024
#: The service.name when neither the option nor OTEL_SERVICE_NAME names one.
DEFAULT_SERVICE = "ssemedic"
#: What to install for this.
EXTRA = "pip install 'ssemedic[otel]'"
_NEEDED = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
#: The SDK loggers whose per-batch failure lines the watching exporter replaces.
_SDK_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
)


def missing() -> str | None:
    """Why export cannot run here (one line), or None when the SDK is installed."""
    for name in _NEEDED:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:
            found = False
        if not found:
            return f"the OpenTelemetry SDK and its OTLP/HTTP exporter are not installed ({EXTRA})"
    return None


def check_url(value: str, *, empty: bool = True) -> str:
    """The OTLP/HTTP base URL given ("" is off, if ``empty``), or ValueError saying what is wrong."""
    url = (value or "").strip()
    if not url and empty:
        return ""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an OTLP/HTTP base URL such as http://127.0.0.1:4318")
    problem = missing()
    if problem is not None:
        raise ValueError(f"{value!r} cannot be used: {problem}")
    return url.rstrip("/")


def request_of(flow: Any) -> telemetry.Request:
    """The request facts of a mitmproxy flow that its span needs."""
    request = flow.request
    try:
        body = request.get_content(strict=False)
    except Exception:  # an odd body never costs the span
        body = None
    return telemetry.Request(request.method, request.path, request.host, request.port,
                             telemetry.request_model(request.path, body))


def _ns(seconds: float | None) -> int | None:
    return int(seconds * 1e9) if seconds is not None and math.isfinite(seconds) else None


class Health:
    """Export failures are logged once, and once more when export recovers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._failing: set[str] = set()
        #: Whether any export failed (``report --otlp`` exits non-zero then).
        self.ever_failed = False
        #: The gist of what the SDK said about the last failure (its own lines are not logged).
        self.reason = ""
        self._said: str | None = None

    def said(self, message: str) -> None:
        """A line the SDK logged while exporting (the first of an export is the telling one)."""
        with self._lock:
            if self._said is None:
                self._said = message

    def why(self) -> str:
        """The gist of the last failure, or of what the SDK says about the export under way."""
        with self._lock:
            return self.reason or (_gist(self._said) if self._said is not None else "")

    def result(self, signal: str, ok: bool) -> None:
        with self._lock:
            said, self._said = self._said, None
            if not ok and said is not None:
                self.reason = _gist(said)
            if ok == (signal not in self._failing):
                return
            if ok:
                self._failing.discard(signal)
            else:
                self._failing.add(signal)
                self.ever_failed = True
            reason = self.reason if not ok else ""
        if ok:
            logger.info("ssemedic: OpenTelemetry export of %s to %s works again", signal, self.url)
        else:
            logger.warning("ssemedic: OpenTelemetry export of %s to %s fails%s; the traffic is not affected, "
                           "and this is said again when it recovers", signal, self.url,
                           f" ({reason})" if reason else "")


class _Quiet(logging.Filter):
    """Keeps the SDK's own failure lines out of the log: Health says it once."""

    def __init__(self, health: Health) -> None:
        super().__init__()
        self.health = health

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self.health.said(record.getMessage())
        except Exception:
            pass
        return False


#: What says most about a failed export in the SDK's lines: an OS error or an HTTP status.
_GIST = re.compile(r"\[Errno -?\d+\] [^'\")]+|code: \d+, reason: [^,]+")


def _gist(message: str) -> str:
    found = _GIST.search(message)
    if found:
        return found.group()
    if "timeout" in message or "timed out" in message:
        return "no answer within the export timeout"
    return " ".join(message.split())[:160]


class Exporter:
    """Spans and metrics of finished streams, sent to one OTLP/HTTP endpoint."""

    def __init__(self, url: str, *, service: str | None = None, content: bool = False) -> None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.url = url
        self.content = content
        self.health = Health(url)
        self._quiet = _Quiet(self.health)
        for name in _SDK_LOGGERS:
            logging.getLogger(name).addFilter(self._quiet)
        # The option's default yields to OTEL_SERVICE_NAME; any OTEL_RESOURCE_ATTRIBUTES apply too.
        if service is None or (service == DEFAULT_SERVICE and os.environ.get("OTEL_SERVICE_NAME")):
            service = os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE
        resource = Resource.create({"service.name": service, "service.version": __version__})
        # An explicit endpoint: OTEL_EXPORTER_OTLP_* headers, timeout and compression still apply.
        spans = _watched_spans(OTLPSpanExporter(endpoint=f"{url}/v1/traces"), self.health)
        self._tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._tracer_provider.add_span_processor(BatchSpanProcessor(spans))
        self._tracer = self._tracer_provider.get_tracer("ssemedic", __version__)
        metrics = _watched_metrics(OTLPMetricExporter(endpoint=f"{url}/v1/metrics"), self.health)
        self._meter_provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(metrics)],
                                             shutdown_on_exit=False)
        meter = self._meter_provider.get_meter("ssemedic", __version__)
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        for spec in telemetry.INSTRUMENTS:
            if spec.kind == "counter":
                self._counters[spec.name] = meter.create_counter(spec.name, spec.unit, spec.description)
            else:
                self._histograms[spec.name] = meter.create_histogram(
                    spec.name, spec.unit, spec.description, explicit_bucket_boundaries_advisory=spec.buckets)
        self.closed = False
        #: Finished streams waiting for the worker, at most MAX_QUEUED_STREAMS (None: stop).
        self._queue: queue.Queue[functools.partial[None] | None] = queue.Queue(MAX_QUEUED_STREAMS)
        self.dropped = 0
        self._worker = threading.Thread(target=self._work, name="ssemedic-otel", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job()
            except Exception as exc:
                if not self._failed_once:
                    self._failed_once = True
                    logger.warning("ssemedic: a stream could not be exported to OpenTelemetry (%r); "
                                   "the traffic is not affected", exc)

    _failed_once = False

    def export(self, data: telemetry.Telemetry) -> None:
        """Hand one stream's span and metric points to the SDK (never blocks on the network)."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        span = data.span
        start = _ns(span.start)
        end = _ns(span.end)
        if start is None and end is not None:
            start = end
        otel_span = self._tracer.start_span(span.name, kind=SpanKind.CLIENT, attributes=span.attributes,
                                            start_time=start)
        for event in span.events:
            otel_span.add_event(event.name, event.attributes, timestamp=_ns(event.at) or end)
        if span.error is not None:
            otel_span.set_status(Status(StatusCode.ERROR, span.error))
        otel_span.end(end_time=end)
        for point in data.points:
            if point.instrument in self._counters:
                self._counters[point.instrument].add(point.value, point.attributes)
            else:
                self._histograms[point.instrument].record(point.value, point.attributes)

    def stream(self, report: Mapping[str, Any], request: telemetry.Request, *, event_times: Sequence[float] = (),
               started_at: float | None = None, ended_at: float | None = None,
               repairs: Mapping[str, int] | None = None, flow_id: str | None = None, wait: bool = False) -> None:
        """Export one stream's report (credentials are taken out first, whatever the options).

        The work is done by this exporter's worker thread: the caller only
        queues it. With ``wait`` (offline) a full queue is waited for; live,
        the stream is dropped instead (and that said once)."""
        if self.closed:
            return
        job = functools.partial(self._stream, report, request, event_times, started_at, ended_at, repairs, flow_id)
        try:
            self._queue.put(job, block=wait)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                logger.warning("ssemedic: OpenTelemetry export falls behind (%d streams queued): streams are "
                               "dropped from it until it catches up", MAX_QUEUED_STREAMS)

    def _stream(self, report: Mapping[str, Any], request: telemetry.Request, event_times: Sequence[float],
                started_at: float | None, ended_at: float | None, repairs: Mapping[str, int] | None,
                flow_id: str | None) -> None:
        self.export(telemetry.build(redact_data(dict(report)), request, event_times=event_times,
                                    started_at=started_at, ended_at=ended_at, repairs=repairs, flow_id=flow_id,
                                    content=self.content))

    def watch(self, sink: Sink, request: telemetry.Request) -> Watch:
        """A sink for one live stream: ``sink`` as before, and the stream exported when it is finished."""
        return Watch(sink, self, request)

    def close(self, timeout: float = SHUTDOWN_SECONDS, *, log: bool = True) -> bool:
        """Flush what is queued and stop, within ``timeout`` seconds; False if that was not enough
        (and said in the log, with ``log``)."""
        if self.closed:
            return True
        self.closed = True
        deadline = time.monotonic() + timeout
        try:  # the worker ends once it has handed what is queued to the SDK
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._worker.join(max(deadline - time.monotonic(), 0.0))
        threads = [
            threading.Thread(target=self._tracer_provider.shutdown, name="ssemedic-otel-spans", daemon=True),
            threading.Thread(target=self._meter_provider.shutdown, kwargs={"timeout_millis": timeout * 1000},
                             name="ssemedic-otel-metrics", daemon=True),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        flushed = not any(thread.is_alive() for thread in threads)
        if not flushed and log:
            logger.warning("ssemedic: OpenTelemetry export to %s did not finish within %g s at shutdown; "
                           "what was still queued is lost", self.url, timeout)
        for name in _SDK_LOGGERS:
            logging.getLogger(name).removeFilter(self._quiet)
        return flushed


def _watched_spans(inner: Any, health: Health) -> Any:
    """A span exporter that tells Health how each export went (a SpanExporter subclass made here,
    as the SDK is imported only when export is on)."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class WatchedSpans(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            try:
                result = inner.export(spans)
            except Exception:
                result = SpanExportResult.FAILURE
            health.result("spans", result == SpanExportResult.SUCCESS)
            return result  # type: ignore[no-any-return]

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return WatchedSpans()


def _watched_metrics(inner: Any, health: Health) -> Any:
    """A metric exporter that tells Health how each export went (the SDK
    checks its type, so it is a MetricExporter subclass made here)."""
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    class WatchedMetrics(MetricExporter):
        def __init__(self) -> None:
            super().__init__(preferred_temporality=inner._preferred_temporality,
                             preferred_aggregation=inner._preferred_aggregation)

        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
            try:
                result = inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            except Exception:
                result = MetricExportResult.FAILURE
            health.result("metrics", result == MetricExportResult.SUCCESS)
            return result  # type: ignore[no-any-return]

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return bool(inner.force_flush(timeout_millis=timeout_millis))

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            inner.shutdown(timeout_millis=timeout_millis, **kwargs)

    return WatchedMetrics()


class Watch(PassOn):
    """One live stream's sink: everything goes to the inner sink, and the
    finished stream is exported too. An error in exporting is logged once
    and never reaches the stream."""

    _failed = False

    def __init__(self, inner: Sink, exporter: Exporter, request: telemetry.Request) -> None:
        super().__init__(inner)
        self.exporter = exporter
        self.request = request

    def finished(self, stream: Pipeline, error: str | None) -> None:
        try:
            self.inner.finished(stream, error)
        finally:
            try:
                session = stream.session
                repairs = dict(stream.repairer.changes) if stream.repairer is not None else None
                self.exporter.stream(stream.report(), self.request, event_times=session.event_times,
                                     started_at=session.started_at, ended_at=stream.ended_at, repairs=repairs,
                                     flow_id=stream.flow_id)
            except Exception as exc:
                if not Watch._failed:
                    Watch._failed = True
                    logger.warning("ssemedic: a stream could not be exported to OpenTelemetry (%r); "
                                   "the traffic is not affected", exc)


def export_captures(url: str, captures: Sequence[Capture], *, provider: str | None = None,
                    service: str | None = None, timeout: float = SHUTDOWN_SECONDS) -> str | None:
    """Export recorded streams with their recorded timings; a one-line problem, or None when all went out."""
    from .report import build

    exporter = Exporter(url, service=service)
    try:
        for capture in captures:
            session = capture.session(provider=provider)
            report = build(capture, provider=provider, session=session)
            request = capture.request or telemetry.Request(capture.method, capture.path)
            exporter.stream(report, request, event_times=session.event_times, started_at=capture.started_at,
                            ended_at=capture.closed_at if capture.started_at is not None else None, wait=True)
    finally:
        flushed = exporter.close(timeout, log=False)
    if exporter.health.ever_failed or not flushed:
        why = exporter.health.why() or f"not done within {timeout:g} s"
        return f"OpenTelemetry export to {url} failed: {why}"
    return None
