"""`ssemedic report`: input sniffing, JSON shape, rich output and clear errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import sse_event
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.io import FlowWriter
from mitmproxy.test import tflow

from ssemedic.core import recording
from ssemedic.files.cli import main

CHUNK = {"object": "chat.completion.chunk", "model": "gpt-4o",
         "choices": [{"index": 0, "delta": {"content": "Привет, мир! 🌍"}}]}
STOP = {"object": "chat.completion.chunk", "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
BODY = sse_event(CHUNK) + sse_event(STOP) + b"data: [DONE]\n\n"
REPORT_KEYS = {"provider", "events", "text", "reasoning", "tool_calls", "usage", "finish_reason",
               "errors", "timing", "faults"}


def run_json(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["report", "--json", *map(str, paths)])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else []), err


def stream_flow(body: bytes = BODY, *, timeline_packed: bytes | None = None, encoding: str | None = None) -> Any:
    flow = tflow.tflow(resp=True)
    flow.request.method = "POST"
    flow.request.path = "/v1/chat/completions"
    flow.request.content = b'{"model": "gpt-4o", "stream": true, "messages": []}'
    flow.response.headers["content-type"] = "text/event-stream"
    if encoding:
        flow.response.headers["content-encoding"] = encoding
        flow.response.content = body  # mitmproxy encodes it
    else:
        flow.response.content = body
    if timeline_packed is not None:
        flow.metadata["ssemedic"] = {"timeline": timeline_packed}
    return flow


def write_flows(path: Path, flows: list[Any]) -> Path:
    with path.open("wb") as f:
        writer = FlowWriter(f)
        for flow in flows:
            writer.add(flow)
    return path


def test_raw_sse_capture_report_has_the_documented_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "body.sse"
    capture.write_bytes(BODY)
    code, reports, _ = run_json(capsys, capture)
    assert code == 0 and len(reports) == 1
    report = reports[0]
    assert REPORT_KEYS <= report.keys()
    assert report["provider"] == "openai-chat"
    assert report["text"] == "Привет, мир! 🌍"
    assert report["finish_reason"] == "stop"
    assert report["events"] == 3
    assert report["faults"] == []
    assert report["timing"]["ttfb_ms"] is None  # a raw capture has no timeline


def test_ndjson_capture_is_told_apart_by_sniffing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "no-extension"
    lines = [{"model": "llama3", "created_at": "2026-11-20T10:00:00Z", "response": r, "done": False}
             for r in ("Ку", "-ку")]
    capture.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    code, reports, _ = run_json(capsys, capture)
    assert code == 0
    assert reports[0]["framing"] == "ndjson"
    assert reports[0]["events"] == 2


def test_flow_file_reports_every_streamed_response(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tflow.tflow(resp=True)  # text/html, not a stream
    path = write_flows(tmp_path / "x.flows", [stream_flow(), plain, stream_flow()])
    code, reports, _ = run_json(capsys, path)
    assert code == 0
    assert [r["text"] for r in reports] == ["Привет, мир! 🌍"] * 2
    assert all("#1" in reports[0]["source"] or "#3" in r["source"] for r in reports)


def test_flow_timeline_gives_real_timings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = stream_flow()
    t0 = flow.request.timestamp_start
    cut = len(sse_event(CHUNK))
    flow.metadata["ssemedic"] = {"timeline": recording.pack([0, cut], [t0 + 0.2, t0 + 0.7])}
    code, reports, _ = run_json(capsys, write_flows(tmp_path / "t.flows", [flow]))
    timing = reports[0]["timing"]
    assert timing["chunks"] == 2
    assert timing["ttfb_ms"] == pytest.approx(200.0)
    assert timing["ttft_ms"] == pytest.approx(200.0)
    assert timing["gap_max_ms"] == pytest.approx(500.0)


def test_flow_without_timeline_says_timings_are_unavailable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, reports, _ = run_json(capsys, write_flows(tmp_path / "n.flows", [stream_flow()]))
    assert reports[0]["timing"]["ttfb_ms"] is None
    assert any("timeline" in note for note in reports[0]["notes"])


def test_broken_timeline_is_ignored_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = stream_flow(timeline_packed=b"\x09junk")
    code, reports, _ = run_json(capsys, write_flows(tmp_path / "b.flows", [flow]))
    assert code == 0 and reports[0]["text"] == "Привет, мир! 🌍"
    assert any("timeline ignored" in note for note in reports[0]["notes"])


def test_gzip_encoded_stream_body_is_decoded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = stream_flow(encoding="gzip")
    assert gzip.decompress(flow.response.raw_content) == BODY
    code, reports, _ = run_json(capsys, write_flows(tmp_path / "g.flows", [flow]))
    assert reports[0]["text"] == "Привет, мир! 🌍"
    assert any("gzip" in note for note in reports[0]["notes"])


def test_har_export_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    har = SaveHar().make_har([stream_flow()])
    path = tmp_path / "browser.har"
    path.write_text(json.dumps(har), encoding="utf-8")
    code, reports, _ = run_json(capsys, path)
    assert code == 0 and reports[0]["text"] == "Привет, мир! 🌍"
    assert reports[0]["timing"]["ttfb_ms"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not an SSE or NDJSON capture"),
        (b"<html><body>hello</body></html>", "not an SSE or NDJSON capture"),
        (b"123:this is not a tnetstring", "not a readable mitmproxy flow"),
        (b'{"log": {"entries": [{"nope": 1}]}}', "not a readable mitmproxy flow or HAR"),
    ],
)
def test_unreadable_input_gets_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    code = main(["report", str(path)])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and message in err and str(path) in err
    assert "Traceback" not in err


def test_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["report", str(tmp_path / "nope.sse")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_good_files_are_still_reported_next_to_a_bad_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.sse"
    good.write_bytes(BODY)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00\x01\x02")
    code, reports, err = run_json(capsys, good, bad)
    assert code == 2 and len(reports) == 1 and "bad.bin" in err


def test_rich_output_shows_text_and_provider(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "body.sse"
    capture.write_bytes(BODY)
    assert main(["report", str(capture)]) == 0
    out = capsys.readouterr().out
    assert "Привет, мир! 🌍" in out and "openai-chat" in out


def test_provider_can_be_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "body.sse"
    capture.write_bytes(BODY)
    code = main(["report", "--json", "--provider", "generic", str(capture)])
    assert code == 0 and json.loads(capsys.readouterr().out)[0]["provider"] == "generic"


@pytest.mark.parametrize("command", [["ssemedic"], [sys.executable, "-m", "ssemedic"]])
def test_console_command_and_module_both_work(tmp_path: Path, command: list[str]) -> None:
    capture = tmp_path / "body.sse"
    capture.write_bytes(BODY)
    if command == ["ssemedic"]:
        command = [str(Path(sys.executable).with_name("ssemedic"))]
    done = subprocess.run([*command, "report", "--json", str(capture)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["text"] == "Привет, мир! 🌍"


def test_faults_command_lists_the_whole_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    from ssemedic.core.faults import CATALOGUE, FaultKind

    assert main(["faults", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in entries] == [str(k) for k in FaultKind]
    assert all(e["message"] and e["hint"] and e["severity"] in ("error", "warning", "info") for e in entries)
    assert len(entries) == len(CATALOGUE)
    assert main(["faults"]) == 0
    assert "buffered-burst" in capsys.readouterr().out
