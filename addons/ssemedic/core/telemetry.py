"""A stream's report as OpenTelemetry data: the span, its events and the metric
points, named by the GenAI semantic conventions. Pure values: the SDK adapter
(files/otel.py) hands them to the OpenTelemetry SDK.

Strategy: everything here is derived from what the stream's summary (the
``report --json`` object) already says, plus the few request facts the
summary does not hold (host, port, the model asked for) and the events'
arrival times (for the per-chunk metric and to place fault events). Times
are seconds on the wall clock, as the session keeps them; message content
is left out unless asked for, and the caller redacts credentials before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import providers

#: An attribute value as OpenTelemetry takes it.
Value = str | bool | int | float | Sequence[str]
Attributes = dict[str, Value]

#: Where the path names the model (Gemini, Bedrock).
_MODEL_IN_PATH = re.compile(r"/models/(?P<gemini>[^/:]+):|/model/(?P<bedrock>[^/]+)/")

#: The span event per fault and per in-stream error.
FAULT_EVENT = "ssemedic.fault"
ERROR_EVENT = "ssemedic.stream_error"

#: The metric instruments: name → (kind, unit, description, explicit bucket boundaries).
DURATION = "gen_ai.client.operation.duration"
TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
TIME_PER_OUTPUT_CHUNK = "gen_ai.client.operation.time_per_output_chunk"
TOKEN_USAGE = "gen_ai.client.token.usage"
FAULTS = "ssemedic.faults"

# The bucket boundaries the semantic conventions advise for each histogram.
_SECONDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_FIRST_CHUNK = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_PER_CHUNK = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)


@dataclass(frozen=True, slots=True)
class Instrument:
    name: str
    kind: str  # "histogram" or "counter"
    unit: str
    description: str
    buckets: tuple[float, ...] = ()


INSTRUMENTS = (
    Instrument(DURATION, "histogram", "s", "GenAI operation duration: from the request to the stream's end",
               _SECONDS),
    Instrument(TIME_TO_FIRST_CHUNK, "histogram", "s",
               "Time from the request to the first chunk of the response stream", _FIRST_CHUNK),
    Instrument(TIME_PER_OUTPUT_CHUNK, "histogram", "s",
               "Time per output chunk after the first: from the previous event to this one", _PER_CHUNK),
    Instrument(TOKEN_USAGE, "histogram", "{token}", "Input and output tokens the provider reported", _TOKENS),
    Instrument(FAULTS, "counter", "{stream}", "Streams with a fault, by fault kind (once per stream and kind)"),
)


@dataclass(frozen=True, slots=True)
class Request:
    """What the span needs about the request that the summary does not hold."""

    method: str = "POST"
    path: str = ""
    host: str | None = None
    port: int | None = None
    #: The model asked for (gen_ai.request.model), when the request says.
    model: str | None = None


def request_model(path: str, body: bytes | None) -> str | None:
    """The model a request asks for: named in its path (Gemini, Bedrock) or its JSON body's ``model``."""
    named = _MODEL_IN_PATH.search(path.split("?", 1)[0])
    if named is not None:
        return named["gemini"] or named["bedrock"]
    if not body or b'"model"' not in body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # hostile input is not our error: no model, then
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) and model else None


def operation(provider: str, path: str) -> str:
    """gen_ai.operation.name for a stream of ``provider`` at ``path`` (the provider's rule)."""
    return _rules(provider).operation(path.split("?", 1)[0])


def provider_name(provider: str) -> str:
    """gen_ai.provider.name: the conventions' name of ``provider``, else ssemedic's."""
    return _rules(provider).semconv_name or provider


def _rules(provider: str) -> providers.Provider:
    return providers.get(provider if provider in providers.names() else providers.GENERIC)


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    at: float | None
    attributes: Attributes


@dataclass(frozen=True, slots=True)
class StreamSpan:
    """One stream as a CLIENT span; ``error`` is the status description when it failed."""

    name: str
    start: float | None
    end: float | None
    attributes: Attributes
    events: tuple[SpanEvent, ...]
    error: str | None


@dataclass(frozen=True, slots=True)
class Point:
    """One measurement for the instrument named ``instrument``."""

    instrument: str
    value: float
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Telemetry:
    span: StreamSpan
    points: tuple[Point, ...]


def _seconds(ms: Any) -> float | None:
    return ms / 1000 if isinstance(ms, (int, float)) and not isinstance(ms, bool) else None


def _tokens(usage: Any, key: str) -> int | None:
    value = usage.get(key) if isinstance(usage, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def failure(report: Mapping[str, Any]) -> tuple[str, str] | None:
    """(error.type, what happened) when the stream failed, else None.

    Failed means the client did not get a whole answer: an HTTP error, an
    error sent in the stream, a connection that broke, or a stream that
    ended without its terminal signal (not where a recording was cut)."""
    status = report.get("status")
    if isinstance(status, int) and status >= 400:
        return str(status), f"HTTP {status}"
    errors = report.get("errors") or []
    if errors:
        first = errors[0]
        return str(first.get("type") or "stream_error"), str(first.get("message") or "error in the stream")
    if report.get("aborted"):
        return "aborted", str(report["aborted"])
    if report.get("complete") is False and report.get("recording") is None:
        kinds = {f["kind"] for f in report.get("faults", ())}
        kind = "truncated" if "truncated" in kinds else "empty" if "empty-response" in kinds else "incomplete"
        return kind, f"the stream ended without its terminal signal ({kind})"
    return None


def build(
    report: Mapping[str, Any],
    request: Request,
    *,
    event_times: Sequence[float] = (),
    started_at: float | None = None,
    ended_at: float | None = None,
    repairs: Mapping[str, int] | None = None,
    flow_id: str | None = None,
    content: bool = False,
) -> Telemetry:
    """The span and metric points of one stream's ``report`` (the shape of ``report --json``)."""
    provider = str(report.get("provider") or "generic")
    op = operation(provider, request.path)
    timing = report.get("timing") or {}
    usage = report.get("usage")
    common: Attributes = {"gen_ai.operation.name": op, "gen_ai.provider.name": provider_name(provider)}
    if request.model:
        common["gen_ai.request.model"] = request.model
    if report.get("model"):
        common["gen_ai.response.model"] = str(report["model"])
    if request.host:
        common["server.address"] = request.host
        if request.port is not None:
            common["server.port"] = request.port

    attributes: Attributes = dict(common)
    if report.get("response_id"):
        attributes["gen_ai.response.id"] = str(report["response_id"])
    if report.get("finish_reason"):
        attributes["gen_ai.response.finish_reasons"] = [str(report["finish_reason"])]
    for key in ("input_tokens", "output_tokens"):
        tokens = _tokens(usage, key)
        if tokens is not None:
            attributes[f"gen_ai.usage.{key}"] = tokens
    first_chunk = _seconds(timing.get("ttfb_ms"))
    if first_chunk is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = first_chunk
    if isinstance(report.get("status"), int):
        attributes["http.response.status_code"] = report["status"]
    attributes["http.request.method"] = request.method
    attributes.update(_own(report, timing, repairs, flow_id))
    if content:
        attributes["gen_ai.output.messages"] = json.dumps([_output_message(report)], ensure_ascii=False)

    failed = failure(report)
    if failed is not None:
        attributes["error.type"] = failed[0]
    end = ended_at
    events = _events(report, event_times, end)
    name = f"{op} {request.model}" if request.model else op
    span = StreamSpan(name, started_at, end, attributes, events, failed[1] if failed else None)
    return Telemetry(span, tuple(_points(report, common, failed, timing, usage, event_times)))


def _own(report: Mapping[str, Any], timing: Mapping[str, Any], repairs: Mapping[str, int] | None,
         flow_id: str | None) -> Attributes:
    """ssemedic's own attributes (ssemedic.*)."""
    out: Attributes = {
        "ssemedic.provider": str(report.get("provider")),
        "ssemedic.faults": [str(f["kind"]) for f in report.get("faults", ())],
        "ssemedic.events": int(report.get("events") or 0),
    }
    if report.get("framing"):
        out["ssemedic.framing"] = str(report["framing"])
    if isinstance(report.get("complete"), bool):
        out["ssemedic.complete"] = report["complete"]
    for key in ("bytes", "chunks", "keepalives"):
        if isinstance(timing.get(key), int):
            out[f"ssemedic.{key}"] = timing[key]
    for key in ("ttft", "duration", "gap_p50", "gap_p99", "gap_max"):
        seconds = _seconds(timing.get(f"{key}_ms"))
        if seconds is not None:
            out[f"ssemedic.{key}"] = seconds
    tool_calls = [str(c.get("name") or "") for c in report.get("tool_calls", ())]
    if tool_calls:
        out["ssemedic.tool_calls"] = tool_calls  # names only: the arguments are content
    if repairs:
        out["ssemedic.repairs"] = [f"{kind}×{count}" for kind, count in sorted(repairs.items())]
    if report.get("aborted"):
        out["ssemedic.aborted"] = str(report["aborted"])
    if report.get("recording") is not None:
        out["ssemedic.recording_cut"] = True
    if report.get("source"):
        out["ssemedic.source"] = str(report["source"])  # the request line, or the file and flow number
    if flow_id:
        out["ssemedic.flow_id"] = flow_id
    return out


def _events(report: Mapping[str, Any], event_times: Sequence[float], end: float | None) -> tuple[SpanEvent, ...]:
    """One event per fault (at the event it was found at, else at the end) and per in-stream error."""

    def when(index: Any) -> float | None:
        return event_times[index] if isinstance(index, int) and 0 <= index < len(event_times) else end

    out = []
    error_at = end
    for fault in report.get("faults", ()):
        attributes: Attributes = {
            "ssemedic.fault.kind": str(fault["kind"]),
            "ssemedic.fault.severity": str(fault["severity"]),
            "ssemedic.fault.message": str(fault["message"]),
        }
        if fault.get("detail"):
            attributes["ssemedic.fault.detail"] = str(fault["detail"])
        for key in ("event_index", "offset", "count"):
            if isinstance(fault.get(key), int):
                attributes[f"ssemedic.fault.{key}"] = fault[key]
        if fault["kind"] == "error-in-stream":
            error_at = when(fault.get("event_index"))
        out.append(SpanEvent(FAULT_EVENT, when(fault.get("event_index")), attributes))
    for error in report.get("errors", ()):
        attributes = {"error.type": str(error.get("type") or "stream_error"),
                      "ssemedic.error.message": str(error.get("message") or "")}
        if error.get("code") is not None:
            attributes["ssemedic.error.code"] = str(error["code"])
        out.append(SpanEvent(ERROR_EVENT, error_at, attributes))
    return tuple(out)


def _points(report: Mapping[str, Any], common: Attributes, failed: tuple[str, str] | None,
            timing: Mapping[str, Any], usage: Any, event_times: Sequence[float]) -> list[Point]:
    points = []
    duration = _seconds(timing.get("duration_ms"))
    if duration is not None:
        points.append(Point(DURATION, duration, {**common, "error.type": failed[0]} if failed else dict(common)))
    first_chunk = _seconds(timing.get("ttfb_ms"))
    if first_chunk is not None:
        points.append(Point(TIME_TO_FIRST_CHUNK, first_chunk, dict(common)))
    points += [Point(TIME_PER_OUTPUT_CHUNK, b - a, common) for a, b in zip(event_times, event_times[1:])]
    for key, token_type in (("input_tokens", "input"), ("output_tokens", "output")):
        tokens = _tokens(usage, key)
        if tokens is not None:
            points.append(Point(TOKEN_USAGE, tokens, {**common, "gen_ai.token.type": token_type}))
    for fault in report.get("faults", ()):
        points.append(Point(FAULTS, 1, {
            "ssemedic.fault.kind": str(fault["kind"]), "ssemedic.fault.severity": str(fault["severity"]),
            **{k: v for k, v in common.items() if k in ("gen_ai.provider.name", "server.address")}}))
    return points


def _output_message(report: Mapping[str, Any]) -> dict[str, Any]:
    """The answer in the semantic conventions' output message shape (only with content on)."""
    parts: list[dict[str, Any]] = []
    if report.get("reasoning"):
        parts.append({"type": "reasoning", "content": report["reasoning"]})
    if report.get("text"):
        parts.append({"type": "text", "content": report["text"]})
    for call in report.get("tool_calls", ()):
        parts.append({"type": "tool_call", "id": call.get("id"), "name": call.get("name"),
                      "arguments": call.get("arguments")})
    return {"role": "assistant", "parts": parts, "finish_reason": report.get("finish_reason") or ""}
