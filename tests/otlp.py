"""A local OTLP/HTTP receiver for tests: it decodes what it is sent with
opentelemetry-proto and keeps it, bound to 127.0.0.1, bounded, stopped by
its fixture. Also a collector that accepts connections and never answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

#: A request body larger than this is refused (the receiver stays bounded).
MAX_BODY = 16 * 1024 * 1024


def value(v: AnyValue) -> Any:
    """An OTLP AnyValue as a Python value."""
    which = v.WhichOneof("value")
    if which == "array_value":
        return [value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return attributes(v.kvlist_value.values)
    return getattr(v, which) if which else None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


@dataclass
class Received:
    traces: list[ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """Every span received, with its resource's attributes."""
        with self.lock:
            return [(attributes(rs.resource.attributes), span)
                    for request in self.traces for rs in request.resource_spans
                    for ss in rs.scope_spans for span in ss.spans]

    def metric_points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Each metric's data points (attributes, point), from the last export that held the metric."""
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        with self.lock:
            for request in self.metrics:
                for rm in request.resource_metrics:
                    for sm in rm.scope_metrics:
                        for metric in sm.metrics:
                            data = metric.histogram if metric.HasField("histogram") else metric.sum
                            out[metric.name] = [(attributes(p.attributes), p) for p in data.data_points]
        return out

    def metric(self, name: str) -> Any:
        with self.lock:
            found = [m for r in self.metrics for rm in r.resource_metrics for sm in rm.scope_metrics
                     for m in sm.metrics if m.name == name]
        return found[-1] if found else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if not 0 <= length <= MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length)
        received = self.server.received
        if self.path == "/v1/traces":
            request: Any = ExportTraceServiceRequest.FromString(body)
            reply = ExportTraceServiceResponse().SerializeToString()
            with received.lock:
                received.traces.append(request)
        elif self.path == "/v1/metrics":
            request = ExportMetricsServiceRequest.FromString(body)
            reply = ExportMetricsServiceResponse().SerializeToString()
            with received.lock:
                received.metrics.append(request)
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    received: Received


@contextmanager
def receiver(port: int = 0) -> Iterator[tuple[str, Received]]:
    """An OTLP/HTTP receiver on 127.0.0.1 (on ``port``, 0: any free one): yields its base URL and what it received."""
    server = _Server(("127.0.0.1", port), _Handler)
    server.received = Received()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the OTLP receiver did not stop"


@contextmanager
def hanging_collector() -> Iterator[str]:
    """A collector that accepts connections, reads nothing and never answers; yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if len(held) < 64:
                held.append(conn)
            else:
                conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
        for conn in held:
            conn.close()
        assert not thread.is_alive(), "the hanging collector did not stop"


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
