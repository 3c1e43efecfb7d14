"""OpenTelemetry export through a real mitmdump: every stream's span and the
metrics, as a local OTLP/HTTP receiver decodes them with opentelemetry-proto,
hold what ``ssemedic report --json`` says about the same saved flows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import ROOT, load_script, mitmdump
from otlp import Received, attributes, receiver

from ssemedic.core import telemetry
from ssemedic.core.recording import read as read_recording
from ssemedic.files.sources import read_flows

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status  # noqa: E402

upstream_mod = load_script("demo_upstream")

FAST = "?delay=0.002"


def chat(model: str) -> dict[str, Any]:
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": "Почему по частям?"}]}


#: name -> (path, request body, the provider's gen_ai.provider.name, failed?)
SCENARIOS: dict[str, tuple[str, dict[str, Any], str, bool]] = {
    "healthy": (f"/s/healthy/v1/chat/completions{FAST}", chat("gpt-4o"), "openai", False),
    "truncated": (f"/s/truncated/v1/chat/completions{FAST}", chat("gpt-4o-truncated"), "openai", True),
    "error-then-done": (f"/s/error-then-done/v1/chat/completions{FAST}", chat("gpt-4o-error"), "openai", True),
    "tool-call": (f"/s/tool-call/v1/chat/completions{FAST}", chat("gpt-4o-tools"), "openai", False),
    "anthropic": (f"/v1/messages{FAST}", {**chat("claude-sonnet-4-5"), "max_tokens": 64}, "anthropic", False),
    "ollama": (f"/api/chat{FAST}", {"model": "qwen3:8b", "messages": [{"role": "user", "content": "Привет!"}]},
               "ollama", False),
}


@dataclass
class Stream:
    name: str
    span: Any
    report: dict[str, Any]
    flow: Any
    body: bytes  # what the client got

    @property
    def attrs(self) -> dict[str, Any]:
        return attributes(self.span.attributes)


@dataclass
class Run:
    streams: dict[str, Stream]
    received: Received
    resource: dict[str, Any]
    upstream: int
    log: str


def report_json(*paths: Path) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "ssemedic", "report", "--json", *map(str, paths)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.fixture(scope="module")
def run(upstream: int, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Every scenario once through one mitmdump exporting to a local receiver,
    saved with -w; the receiver has all once mitmdump stopped (shutdown flushes)."""
    workdir = tmp_path_factory.mktemp("otel")
    flows = workdir / "flows"
    bodies: dict[str, bytes] = {}
    with receiver() as (url, received):
        with mitmdump(upstream, workdir, "-w", str(flows), "--set", f"ssemedic_otlp={url}",
                      "--set", "ssemedic_log=summary") as mitm:
            with httpx.Client(timeout=30) as client:
                for name, (path, payload, _, _) in SCENARIOS.items():
                    headers = {"authorization": "Bearer sk-proj-otelTESTsecret0123456789abcdef"}
                    with client.stream("POST", mitm.base + path, json=payload, headers=headers) as response:
                        assert response.status_code == 200, name
                        bodies[name] = b"".join(response.iter_raw())
        log = mitm.output()
        spans = received.spans()
    saved = read_flows(flows)
    reports = report_json(flows)
    assert len(saved) == len(reports) == len(SCENARIOS)
    by_flow = {attributes(span.attributes)["ssemedic.flow_id"]: span for _, span in spans}
    streams = {}
    for name, flow, report in zip(SCENARIOS, saved, reports, strict=True):
        assert flow.request.path == SCENARIOS[name][0]
        streams[name] = Stream(name, by_flow[flow.id], report, flow, bodies[name])
    return Run(streams, received, spans[0][0], upstream, log)


def test_one_client_span_per_stream_named_operation_and_model(run: Run) -> None:
    assert len(run.received.spans()) == len(SCENARIOS)
    for name, stream in run.streams.items():
        model = SCENARIOS[name][1]["model"]
        assert stream.span.name == f"chat {model}", name
        assert stream.span.kind == Span.SPAN_KIND_CLIENT
        assert stream.attrs["gen_ai.request.model"] == model


def test_resource_names_the_service(run: Run) -> None:
    assert run.resource["service.name"] == "ssemedic"
    assert run.resource["service.version"] == "0.1.0"


def test_genai_attributes_hold_what_the_report_says(run: Run) -> None:
    for name, stream in run.streams.items():
        report, attrs = stream.report, stream.attrs
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == SCENARIOS[name][2]
        assert attrs["gen_ai.response.model"] == report["model"], name
        assert attrs.get("gen_ai.response.id") == report["response_id"], name
        reason = report["finish_reason"]
        assert attrs.get("gen_ai.response.finish_reasons") == ([reason] if reason else None), name
        for key in ("input_tokens", "output_tokens"):
            assert attrs.get(f"gen_ai.usage.{key}") == (report["usage"] or {}).get(key), name
        assert attrs["gen_ai.response.time_to_first_chunk"] == pytest.approx(report["timing"]["ttfb_ms"] / 1000,
                                                                            abs=1e-9)
        assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", run.upstream)
        assert attrs["http.response.status_code"] == report["status"] == 200


def test_genai_attributes_are_the_streams_own(run: Run) -> None:
    # The values the report gives are the stream's, not defaults: pinned against the upstream's script.
    healthy, anthropic = run.streams["healthy"].attrs, run.streams["anthropic"].attrs
    assert healthy["gen_ai.response.id"] == "chatcmpl-demo7Qm"
    assert anthropic["gen_ai.response.id"] == upstream_mod.ANTHROPIC_ID
    assert anthropic["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert run.streams["tool-call"].attrs["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert run.streams["ollama"].attrs["gen_ai.response.model"] == "qwen3:8b"


def test_ssemedic_attributes_hold_what_the_report_says(run: Run) -> None:
    for name, stream in run.streams.items():
        report, attrs = stream.report, stream.attrs
        timing = report["timing"]
        assert attrs["ssemedic.provider"] == report["provider"]
        assert attrs["ssemedic.framing"] == report["framing"]
        assert attrs["ssemedic.faults"] == [f["kind"] for f in report["faults"]], name
        assert attrs["ssemedic.complete"] is report["complete"], name
        assert attrs["ssemedic.events"] == report["events"]
        for key in ("bytes", "chunks", "keepalives"):
            assert attrs[f"ssemedic.{key}"] == timing[key], (name, key)
        for key in ("ttft", "duration", "gap_p50", "gap_p99", "gap_max"):
            assert attrs[f"ssemedic.{key}"] == pytest.approx(timing[f"{key}_ms"] / 1000, abs=1e-9), (name, key)
        assert attrs["ssemedic.bytes"] == len(stream.body)
        assert attrs["ssemedic.flow_id"] == stream.flow.id
    calls = run.streams["tool-call"]
    assert calls.attrs["ssemedic.tool_calls"] == [c["name"] for c in calls.report["tool_calls"]] == [
        name for name, _ in upstream_mod.TOOL_CALLS]


def test_span_runs_from_the_request_to_the_streams_end(run: Run) -> None:
    for name, stream in run.streams.items():
        recorded = read_recording(stream.flow)
        assert stream.span.start_time_unix_nano == int(stream.flow.request.timestamp_start * 1e9), name
        assert stream.span.end_time_unix_nano == int(recorded.ended_at * 1e9), name
        assert stream.span.end_time_unix_nano - stream.span.start_time_unix_nano == pytest.approx(
            stream.report["timing"]["duration_ms"] * 1e6, abs=1e3)


def test_one_event_per_fault_with_its_kind_severity_message_and_index(run: Run) -> None:
    for name, stream in run.streams.items():
        events = [e for e in stream.span.events if e.name == telemetry.FAULT_EVENT]
        assert len(events) == len(stream.report["faults"]), name
        for event, fault in zip(events, stream.report["faults"], strict=True):
            got = attributes(event.attributes)
            assert got["ssemedic.fault.kind"] == fault["kind"]
            assert got["ssemedic.fault.severity"] == fault["severity"]
            assert got["ssemedic.fault.message"] == fault["message"]
            assert got.get("ssemedic.fault.detail", "") == fault["detail"]
            assert got.get("ssemedic.fault.event_index") == fault.get("event_index")
            assert got.get("ssemedic.fault.offset") == fault.get("offset")
            assert got["ssemedic.fault.count"] == fault["count"]
            assert stream.span.start_time_unix_nano <= event.time_unix_nano <= stream.span.end_time_unix_nano
    kinds = {name: [attributes(e.attributes)["ssemedic.fault.kind"] for e in s.span.events
                    if e.name == telemetry.FAULT_EVENT] for name, s in run.streams.items()}
    assert "truncated" in kinds["truncated"]
    assert {"error-in-stream", "done-after-error"} <= set(kinds["error-then-done"])


def test_error_in_stream_is_an_event_and_an_error_status(run: Run) -> None:
    stream = run.streams["error-then-done"]
    [error] = [e for e in stream.span.events if e.name == telemetry.ERROR_EVENT]
    got = attributes(error.attributes)
    assert got["ssemedic.error.message"] == stream.report["errors"][0]["message"] == upstream_mod.ERROR_OBJECT["message"]
    assert got["error.type"] == stream.report["errors"][0]["type"]
    [fault] = [e for e in stream.span.events if attributes(e.attributes).get("ssemedic.fault.kind") == "error-in-stream"]
    assert error.time_unix_nano == fault.time_unix_nano  # at the event that carried it
    assert stream.span.status.code == Status.STATUS_CODE_ERROR
    assert stream.span.status.message == upstream_mod.ERROR_OBJECT["message"]
    assert stream.attrs["error.type"] == stream.report["errors"][0]["type"]


def test_status_is_error_only_when_the_stream_failed(run: Run) -> None:
    for name, stream in run.streams.items():
        failed = SCENARIOS[name][3]
        assert (stream.span.status.code == Status.STATUS_CODE_ERROR) is failed, name
        assert ("error.type" in stream.attrs) is failed, name
    truncated = run.streams["truncated"]
    assert truncated.attrs["error.type"] == "truncated"
    assert truncated.report["complete"] is False


def test_no_message_content_and_no_credentials_by_default(run: Run) -> None:
    raw = b"".join(r.SerializeToString() for r in run.received.traces + run.received.metrics)
    assert b"otelTESTsecret" not in raw
    for stream in run.streams.values():
        assert "gen_ai.output.messages" not in stream.attrs
        for text in (stream.report["text"], stream.report["reasoning"]):
            if text:
                assert text[:40].encode() not in raw
        for call in stream.report["tool_calls"]:
            assert call["arguments"].encode() not in raw


def metric_groups(report: dict[str, Any], request_model: str, provider: str, upstream: int) -> dict[str, Any]:
    return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": request_model,
            "gen_ai.response.model": report["model"], "server.address": "127.0.0.1", "server.port": upstream}


def test_the_four_histograms_hold_each_stream(run: Run) -> None:
    points = run.received.metric_points()
    for name, stream in run.streams.items():
        _, payload, provider, failed = SCENARIOS[name]
        common = metric_groups(stream.report, payload["model"], provider, run.upstream)
        timing = stream.report["timing"]

        def point(metric: str, **extra: Any) -> Any:
            [found] = [p for a, p in points[metric] if a == {**common, **extra}]
            return found

        error = {"error.type": stream.attrs["error.type"]} if failed else {}
        duration = point(telemetry.DURATION, **error)
        assert (duration.count, duration.sum) == (1, pytest.approx(timing["duration_ms"] / 1000, abs=1e-6)), name
        first = point(telemetry.TIME_TO_FIRST_CHUNK)
        assert (first.count, first.sum) == (1, pytest.approx(timing["ttfb_ms"] / 1000, abs=1e-6))
        per_chunk = point(telemetry.TIME_PER_OUTPUT_CHUNK)
        assert per_chunk.count == stream.report["events"] - 1, name
        assert per_chunk.max == pytest.approx(timing["gap_max_ms"] / 1000, abs=1e-6)
        for token_type in ("input", "output"):
            count = (stream.report["usage"] or {}).get(f"{token_type}_tokens")
            if count is None:
                continue
            tokens = point(telemetry.TOKEN_USAGE, **{"gen_ai.token.type": token_type})
            assert (tokens.count, tokens.sum) == (1, count)
    with_usage = [name for name, s in run.streams.items() if s.report["usage"]]
    assert {"healthy", "tool-call", "anthropic", "ollama"} <= set(with_usage)
    buckets = [p for _, p in points[telemetry.DURATION]][0].explicit_bounds
    assert list(buckets)[:3] == [0.01, 0.02, 0.04]  # the semantic conventions' advice


def test_fault_counter_counts_streams_by_kind(run: Run) -> None:
    expected: Counter[tuple[str, str]] = Counter()
    for name, stream in run.streams.items():
        for fault in stream.report["faults"]:
            expected[fault["kind"], SCENARIOS[name][2]] += 1
    got: Counter[tuple[str, str]] = Counter()
    metric = run.received.metric(telemetry.FAULTS)
    assert metric.sum.is_monotonic
    for point in metric.sum.data_points:
        attrs = attributes(point.attributes)
        got[attrs["ssemedic.fault.kind"], attrs["gen_ai.provider.name"]] += point.as_int
    assert got == expected
    assert got["truncated", "openai"] == 1 and got["error-in-stream", "openai"] == 1


def test_export_is_quiet_when_the_collector_answers(run: Run) -> None:
    assert "OpenTelemetry" not in run.log


@pytest.fixture(scope="module")
def repaired(upstream: int, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Two streams through a mitmdump that repairs, exports content and names its service."""
    workdir = tmp_path_factory.mktemp("otel-repair")
    flows = workdir / "flows"
    names = ("truncated", "tool-call")
    bodies = {}
    with receiver() as (url, received):
        with mitmdump(upstream, workdir, "-w", str(flows), "--set", f"ssemedic_otlp={url}",
                      "--set", "ssemedic_repair=true", "--set", "ssemedic_otlp_content=true",
                      "--set", "ssemedic_otlp_service=proxy-eu-1", "--set", "ssemedic_log=off") as mitm:
            with httpx.Client(timeout=30) as client:
                for name in names:
                    path, payload, _, _ = SCENARIOS[name]
                    bodies[name] = client.post(mitm.base + path, json=payload).content
        log = mitm.output()
        spans = received.spans()
    saved = read_flows(flows)
    reports = report_json(flows)
    by_flow = {attributes(span.attributes)["ssemedic.flow_id"]: span for _, span in spans}
    streams = {name: Stream(name, by_flow[flow.id], report, flow, bodies[name])
               for name, flow, report in zip(names, saved, reports, strict=True)}
    return Run(streams, received, spans[0][0], upstream, log)


def test_service_name_is_the_options(repaired: Run) -> None:
    assert repaired.resource["service.name"] == "proxy-eu-1"


def test_repairs_applied_are_attributes(repaired: Run) -> None:
    stream = repaired.streams["truncated"]
    applied = read_recording(stream.flow).repairs
    assert applied  # the truncated stream was repaired (at least its end)
    assert stream.attrs["ssemedic.repairs"] == [f"{kind}×{count}" for kind, count in sorted(applied.items())]
    for other in repaired.streams.values():
        assert other.attrs["ssemedic.repairs"] == [f"{k}×{n}" for k, n in sorted(read_recording(other.flow).repairs.items())]


def test_content_option_exports_the_answer_as_output_messages(repaired: Run) -> None:
    for stream in repaired.streams.values():
        [message] = json.loads(stream.attrs["gen_ai.output.messages"])
        assert message["role"] == "assistant"
        texts = [p["content"] for p in message["parts"] if p["type"] == "text"]
        assert texts == ([stream.report["text"]] if stream.report["text"] else [])
        calls = [(p["name"], p["arguments"]) for p in message["parts"] if p["type"] == "tool_call"]
        assert calls == [(c["name"], c["arguments"]) for c in stream.report["tool_calls"]]
    tool = repaired.streams["tool-call"]
    assert [json.loads(c["arguments"]) for c in tool.report["tool_calls"]] == [a for _, a in upstream_mod.TOOL_CALLS]
