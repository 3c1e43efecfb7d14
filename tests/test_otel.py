"""The OpenTelemetry adapter (files/otel.py): ``report --otlp`` on the shipped
recordings, the options' checks, credentials, the OTEL_* variables and a
bounded shutdown, against a local OTLP/HTTP receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from e2e import MEDIC, ROOT, free_port
from otlp import attributes, hanging_collector, receiver

from ssemedic.core import telemetry
from ssemedic.core.recording import read as read_recording
from ssemedic.files import cli, otel
from ssemedic.files.sources import read_flows

pytest.importorskip("opentelemetry.sdk")

RECORDINGS = sorted((ROOT / "recordings").glob("*.flows"))
MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))


def report_json(capsys: pytest.CaptureFixture[str], *paths: Path) -> list[dict[str, Any]]:
    assert cli.main(["report", "--json", *map(str, paths)]) == 0
    return list(json.loads(capsys.readouterr().out))


def test_report_otlp_exports_every_shipped_recording_with_its_recorded_timings(
        capsys: pytest.CaptureFixture[str]) -> None:
    reports = report_json(capsys, *RECORDINGS)
    with receiver() as (url, received):
        assert cli.main(["report", "--json", "--otlp", url, *map(str, RECORDINGS)]) == 0
        assert json.loads(capsys.readouterr().out) == reports  # the report itself is unchanged
        spans = {attributes(s.attributes)["ssemedic.source"]: s for _, s in received.spans()}
    assert len(spans) == len(reports) == len(RECORDINGS)
    flows = {f"{path} #1": read_flows(path)[0] for path in RECORDINGS}
    for report in reports:
        span, flow = spans[report["source"]], flows[report["source"].split(" POST ")[0]]
        attrs = attributes(span.attributes)
        recorded = read_recording(flow)
        # The recording's own times, not the time of the export.
        assert span.start_time_unix_nano == int(flow.request.timestamp_start * 1e9), report["source"]
        assert span.end_time_unix_nano == int(recorded.ended_at * 1e9), report["source"]
        assert attrs["gen_ai.response.time_to_first_chunk"] == pytest.approx(report["timing"]["ttfb_ms"] / 1000,
                                                                            abs=1e-9)
        assert attrs["ssemedic.faults"] == [f["kind"] for f in report["faults"]]
        assert attrs.get("gen_ai.response.id") == report["response_id"]
        assert attrs.get("gen_ai.response.model") == report["model"]
        assert attrs["server.address"] == flow.request.host and attrs["server.port"] == flow.request.port
        model = telemetry.request_model(flow.request.path, flow.request.get_content(strict=False))
        assert attrs.get("gen_ai.request.model") == model
        assert span.name == f"{attrs['gen_ai.operation.name']} {model}" if model else attrs["gen_ai.operation.name"]
        faults = [e for e in span.events if e.name == telemetry.FAULT_EVENT]
        assert len(faults) == len(report["faults"])
        for event in span.events:
            assert span.start_time_unix_nano <= event.time_unix_nano <= span.end_time_unix_nano
    names = {attributes(s.attributes)["ssemedic.provider"]: s.name for s in spans.values()}
    assert names["gemini"].startswith("generate_content ") and names["anthropic"].startswith("chat ")
    assert attributes(spans[next(r["source"] for r in reports if "truncated.flows" in r["source"])]
                      .attributes)["error.type"] == "truncated"


def test_report_otlp_to_a_dead_collector_says_so_in_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    assert cli.main(["report", "--json", "--otlp", url, str(ROOT / "recordings" / "healthy.flows")]) == 2
    assert time.monotonic() - began < otel.SHUTDOWN_SECONDS + 5
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 1  # the report still comes out
    assert captured.err.strip() == f"ssemedic: error: OpenTelemetry export to {url} failed: [Errno 111] Connection refused"


def test_report_otlp_refuses_a_url_that_is_not_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "--otlp", "collector:4318", str(RECORDINGS[0])])
    assert exit_.value.code == 2
    assert "'collector:4318' is not an OTLP/HTTP base URL such as http://127.0.0.1:4318" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["collector:4318", "ftp://x", "http://", "http://host:port"])
def test_check_url_refuses_what_is_no_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="is not an OTLP/HTTP base URL"):
        otel.check_url(url)


def test_check_url_takes_a_base_url_and_empty_for_off() -> None:
    assert otel.check_url("http://127.0.0.1:4318/") == "http://127.0.0.1:4318"
    assert otel.check_url("") == ""


def test_without_the_sdk_the_option_is_refused_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from mitmproxy import exceptions
    from mitmproxy.test import taddons

    from ssemedic.mitm.addon import Medic

    monkeypatch.setattr(otel, "_NEEDED", ("opentelemetry.sdk", "ssemedic_no_such_module.exporter"))
    medic = Medic()
    with taddons.context(medic) as tctx:
        with pytest.raises(exceptions.OptionsError) as refused:
            tctx.configure(medic, ssemedic_otlp="http://127.0.0.1:4318")
        assert medic.otel is None
    assert str(refused.value) == ("ssemedic_otlp: 'http://127.0.0.1:4318' cannot be used: the OpenTelemetry SDK and "
                                  "its OTLP/HTTP exporter are not installed (pip install 'ssemedic[otel]')")


_HIDE_SDK = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(name + " is hidden in this test")
sys.meta_path.insert(0, Hide())
"""


def test_mitmdump_without_the_extra_stops_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(_HIDE_SDK, encoding="utf-8")
    env = {**os.environ, "TERM": "dumb", "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path),
                                                                                      os.environ.get("PYTHONPATH")]))}
    args = [MITMDUMP, "--listen-host", "127.0.0.1", "-p", str(free_port()), "-s", str(MEDIC),
            "--set", "ssemedic_otlp=http://127.0.0.1:4318"]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    [line] = [line for line in output.splitlines() if "ssemedic_otlp" in line]
    assert line.endswith("ssemedic_otlp: 'http://127.0.0.1:4318' cannot be used: the OpenTelemetry SDK and its "
                         "OTLP/HTTP exporter are not installed (pip install 'ssemedic[otel]')"), line


def test_addon_starts_replaces_and_stops_its_exporter() -> None:
    from mitmproxy.test import taddons

    from ssemedic.mitm.addon import Medic

    medic = Medic()
    with receiver() as (url, _):
        with taddons.context(medic) as tctx:
            assert medic.otel is None  # off by default
            tctx.configure(medic, ssemedic_otlp=url)
            first = medic.otel
            assert first is not None and first.url == url and not first.content
            tctx.configure(medic, ssemedic_otlp_content="yes")
            assert medic.otel is not first and first.closed and medic.otel is not None and medic.otel.content
            tctx.configure(medic, ssemedic_otlp="")
            assert medic.otel is None


KEY = "sk-proj-otelTESTkey0123456789abcdefABCDEF"
REPORT: dict[str, Any] = {
    "source": f"POST http://127.0.0.1:8000/v1/chat/completions?key={KEY}", "status": 401, "provider": "openai-chat",
    "framing": "sse", "events": 1, "text": "", "reasoning": "", "refusal": "", "tool_calls": [], "tool_results": [],
    "usage": None, "finish_reason": None, "model": None, "response_id": None, "complete": False,
    "errors": [{"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error", "code": None}],
    "timing": {"ttfb_ms": 5.0, "ttft_ms": None, "duration_ms": 6.0, "gap_p50_ms": None, "gap_p99_ms": None,
               "gap_max_ms": None, "bytes": 120, "chunks": 1, "events": 1, "keepalives": 0},
    "faults": [{"kind": "error-in-stream", "severity": "error", "message": "the provider sent an error",
                "hint": "", "detail": f"Incorrect API key provided: {KEY}", "event_index": 0, "count": 1}],
}


def test_credentials_never_leave_even_with_content_on() -> None:
    with receiver() as (url, received):
        exporter = otel.Exporter(url, content=True)
        exporter.stream(REPORT, telemetry.Request(path="/v1/chat/completions", host="127.0.0.1", port=8000),
                        started_at=1000.0, ended_at=1000.006)
        assert exporter.close()
        raw = b"".join(r.SerializeToString() for r in received.traces + received.metrics)
        [(_, span)] = received.spans()
    assert b"otelTESTkey" not in raw
    assert "Incorrect API key provided: sk-" in attributes(span.attributes)["ssemedic.source"] + str(
        [attributes(e.attributes) for e in span.events])  # what the message says stays readable
    assert span.status.message.startswith("HTTP 401")


def test_otel_environment_variables_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-proxy")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
    with receiver() as (url, received):
        for service in (otel.DEFAULT_SERVICE, "named-by-option"):
            exporter = otel.Exporter(url, service=service)
            exporter.stream(REPORT, telemetry.Request(), started_at=1000.0, ended_at=1000.006)
            assert exporter.close()
        resources = [resource for resource, _ in received.spans()]
    assert [r["service.name"] for r in resources] == ["edge-proxy", "named-by-option"]
    assert all(r["deployment.environment.name"] == "staging" for r in resources)


def test_close_gives_up_on_a_hanging_collector_within_its_bound() -> None:
    with hanging_collector() as url:
        exporter = otel.Exporter(url)
        exporter.stream(REPORT, telemetry.Request(), started_at=1000.0, ended_at=1000.006)
        began = time.monotonic()
        assert exporter.close(timeout=1.0) is False
        took = time.monotonic() - began
    assert took < 1.5  # the exporter's own timeout (10 s) would hold it far longer


def test_export_after_close_is_dropped_quietly() -> None:
    with receiver() as (url, received):
        exporter = otel.Exporter(url)
        assert exporter.close()
        exporter.stream(REPORT, telemetry.Request(), started_at=1000.0, ended_at=1000.006)
        assert received.spans() == []


def test_live_streams_are_queued_for_the_worker_never_waited_for(monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    import threading

    monkeypatch.setattr(otel, "MAX_QUEUED_STREAMS", 3)
    release = threading.Event()
    with receiver() as (url, _):
        exporter = otel.Exporter(url)
        monkeypatch.setattr(exporter, "export", lambda data: release.wait(10))  # a worker that is busy
        began = time.monotonic()
        for _ in range(10):
            exporter.stream(REPORT, telemetry.Request(), started_at=1000.0, ended_at=1000.006)
        assert time.monotonic() - began < 0.5  # nothing waited for the busy worker
        assert 6 <= exporter.dropped <= 7  # one in the worker's hands, three queued
        release.set()
        assert exporter.close()
    assert [r.getMessage() for r in caplog.records if "falls behind" in r.getMessage()] == [
        "ssemedic: OpenTelemetry export falls behind (3 streams queued): streams are dropped from it until "
        "it catches up"]
