"""files/sources.py: telling a file's kind from its first bytes, and reading
the streams in raw captures, HAR files and mitmproxy flow files, with a
one-line SourceError for anything else."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import ndjson_line, sse_event
from mitmproxy import flow as mflow
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.io import FlowWriter
from mitmproxy.test import tflow

from ssemedic.core import recording
from ssemedic.core.events import BOM
from ssemedic.core.parts import Text
from ssemedic.files.sources import Capture, SourceError, file_kind, load, read_flows, read_head, stream_from_flow

CHAT = "/v1/chat/completions"
CHUNK = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o",
         "choices": [{"index": 0, "delta": {"content": "Привет, мир! 🌍"}}]}
STOP = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
SSE_BODY = sse_event(CHUNK) + sse_event(STOP) + b"data: [DONE]\n\n"
NDJSON_BODY = (
    ndjson_line({"model": "llama3", "created_at": "2024-01-01T00:00:00Z",
                 "message": {"role": "assistant", "content": "Hallo 🌍"}, "done": False})
    + ndjson_line({"model": "llama3", "created_at": "2024-01-01T00:00:01Z",
                   "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"})
)
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"


def stream_flow(body: bytes = SSE_BODY, content_type: str | None = "text/event-stream",
                request: bytes = b'{"model": "gpt-4o", "stream": true, "messages": []}') -> Any:
    flow = tflow.tflow(resp=True)
    flow.request.method = "POST"
    flow.request.path = CHAT
    flow.request.content = request
    if content_type is None:
        flow.response.headers.pop("content-type", None)
    else:
        flow.response.headers["content-type"] = content_type
    flow.response.content = body
    return flow


def write_flows(path: Path, flows: list[Any]) -> Path:
    with path.open("wb") as f:
        writer = FlowWriter(f)
        for flow in flows:
            writer.add(flow)
    return path


def write_har(path: Path, flows: list[Any]) -> Path:
    path.write_text(json.dumps(SaveHar().make_har(flows)), encoding="utf-8")
    return path


def text_of(capture: Capture) -> str:
    return capture.session().message.text


def one_line_error(path: Path) -> str:
    with pytest.raises(SourceError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


# -- file_kind ------------------------------------------------------------------------------


def test_a_flow_file_is_flows(tmp_path: Path) -> None:
    path = write_flows(tmp_path / "x.flows", [stream_flow(), tflow.tflow(resp=True)])
    assert file_kind(path.read_bytes()[:4096]) == "flows"


def test_a_har_file_is_json(tmp_path: Path) -> None:
    path = write_har(tmp_path / "x.har", [stream_flow()])
    assert file_kind(path.read_bytes()) == "json"
    assert file_kind(BOM + path.read_bytes()) == "json"  # Fiddler writes a BOM


@pytest.mark.parametrize("head", [SSE_BODY, BOM + SSE_BODY, b"\n\n" + SSE_BODY, b": ping\n\n" + SSE_BODY,
                                  b"event: message_start\ndata: {}\n\n"])
def test_an_sse_capture_is_sse(head: bytes) -> None:
    assert file_kind(head) == "sse"


@pytest.mark.parametrize("head", [NDJSON_BODY, BOM + NDJSON_BODY, b"\n" + NDJSON_BODY])
def test_an_ndjson_capture_is_json(head: bytes) -> None:
    assert file_kind(head) == "json"


@pytest.mark.parametrize(
    "head",
    [PNG_HEAD, b"<!DOCTYPE html><html><body>hi</body></html>", b"hello world\n",
     b"data: x\n\x00\x00", "data: x\n".encode("utf-16"), bytes(range(0x80, 0x100)), b"[1, 2, 3]\n"],
    ids=["png", "html", "text", "nul-after-sse", "utf-16", "high-bytes", "json-array"],
)
def test_garbage_is_no_kind(head: bytes) -> None:
    assert file_kind(head) is None


def test_a_digit_colon_start_is_taken_for_a_flow_file() -> None:
    # tnetstrings start with their length: no SSE or JSON capture starts that way.
    assert file_kind(b"123:not really") == "flows"
    assert file_kind(b"123 not a length") is None


# -- read_head ------------------------------------------------------------------------------


def test_read_head_is_the_first_bytes(tmp_path: Path) -> None:
    path = tmp_path / "big.sse"
    path.write_bytes(SSE_BODY * 5000)
    head = read_head(path)
    assert 0 < len(head) < len(SSE_BODY) * 5000 and (SSE_BODY * 5000).startswith(head)


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.mkdir(), "cannot read"),
    (lambda p: None, "cannot read"),
], ids=["empty", "directory", "missing"])
def test_read_head_refuses_in_one_line(tmp_path: Path, make: Any, reason: str) -> None:
    path = tmp_path / "input"
    make(path)
    with pytest.raises(SourceError, match=reason) as caught:
        read_head(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


# -- load: raw captures ------------------------------------------------------------------------


def test_raw_sse_capture_is_one_untimed_stream(tmp_path: Path) -> None:
    path = tmp_path / "body.sse"
    path.write_bytes(SSE_BODY)
    [capture] = load(path)
    assert (capture.label, capture.body, capture.chunks) == (str(path), SSE_BODY, [(SSE_BODY, None)])
    assert capture.content_type == "text/event-stream" and capture.response_headers is None
    assert capture.status is None and capture.started_at is None and not capture.aborted
    assert any("raw body capture" in note for note in capture.notes)
    session = capture.session()
    assert session.provider == "openai-chat" and session.message.text == "Привет, мир! 🌍" and session.complete


def test_raw_ndjson_capture_is_read_as_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "ollama.jsonl"
    path.write_bytes(NDJSON_BODY)
    [capture] = load(path)
    assert capture.content_type == "application/x-ndjson" and capture.body == NDJSON_BODY
    session = capture.session()
    assert session.framing == "ndjson" and session.provider == "ollama"
    assert session.message.text == "Hallo 🌍" and session.complete


def test_raw_capture_with_a_bom_keeps_it_for_the_parser(tmp_path: Path) -> None:
    path = tmp_path / "bom.sse"
    path.write_bytes(BOM + SSE_BODY)
    [capture] = load(path)
    assert capture.body == BOM + SSE_BODY
    session = capture.session()
    assert session.message.text == "Привет, мир! 🌍" and "bom" in {str(f.kind) for f in session.faults}


@pytest.mark.parametrize("prefix", [BOM, b"\n"], ids=["bom", "blank-line"])
def test_raw_ndjson_capture_after_a_bom_or_a_blank_line_is_still_ndjson(tmp_path: Path, prefix: bytes) -> None:
    path = tmp_path / "ollama.jsonl"
    path.write_bytes(prefix + NDJSON_BODY)
    [capture] = load(path)
    session = capture.session()
    assert (session.framing, session.provider, session.message.text) == ("ndjson", "ollama", "Hallo 🌍")


def test_run_keeps_the_first_records_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "body.sse"
    path.write_bytes(SSE_BODY)
    [capture] = load(path)
    session, everything = capture.run()
    assert [r.index for r in everything] == [0, 1, 2] and session.closed
    assert [r.index for r in capture.run(keep=2)[1]] == [0, 1]
    assert capture.run(keep=0)[1] == []
    assert any(isinstance(p, Text) for p in everything[0].parts)


# -- load: HAR and flow files -------------------------------------------------------------------


def test_har_yields_only_its_streamed_entries(tmp_path: Path) -> None:
    page = tflow.tflow(resp=True)  # text/html
    path = write_har(tmp_path / "browser.har", [page, stream_flow()])
    [capture] = load(path)
    assert capture.label.startswith(f"{path} #2 POST ") and capture.label.endswith(CHAT)
    assert (capture.method, capture.path, capture.status) == ("POST", CHAT, 200)
    assert capture.content_type == "text/event-stream"
    assert capture.response_headers is not None and text_of(capture) == "Привет, мир! 🌍"
    assert capture.started_at is None and all(at is None for _, at in capture.chunks)  # no timeline in a HAR


def test_har_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "fiddler.har"
    path.write_bytes(BOM + json.dumps(SaveHar().make_har([stream_flow()])).encode())
    [capture] = load(path)
    assert text_of(capture) == "Привет, мир! 🌍"


def test_flow_file_yields_every_streamed_response(tmp_path: Path) -> None:
    no_response = tflow.tflow()
    page = tflow.tflow(resp=True)
    ollama = stream_flow(NDJSON_BODY, "application/x-ndjson", b'{"model": "llama3"}')
    ollama.request.path = "/api/chat"
    path = write_flows(tmp_path / "x.flows", [no_response, stream_flow(), page, ollama])
    captures = load(path)
    assert [c.label.split(" ")[1] for c in captures] == ["#2", "#4"]
    assert [text_of(c) for c in captures] == ["Привет, мир! 🌍", "Hallo 🌍"]
    assert [c.session().framing for c in captures] == ["sse", "ndjson"]
    assert len(read_flows(path)) == 4


def test_flow_file_without_streams_is_no_streams_not_an_error(tmp_path: Path) -> None:
    path = write_flows(tmp_path / "pages.flows", [tflow.tflow(resp=True), tflow.tflow(resp=True)])
    assert load(path) == []


def test_recorded_timeline_gives_the_original_chunks_and_times(tmp_path: Path) -> None:
    flow = stream_flow()
    t0 = flow.request.timestamp_start
    recorder = recording.Recorder()
    cuts = [0, 7, len(sse_event(CHUNK)) + 3, len(SSE_BODY)]
    times = [t0 + 0.25, t0 + 0.5, t0 + 1.0]
    for (start, end), at in zip(zip(cuts, cuts[1:]), times):
        recorder.add(SSE_BODY[start:end], at)
    recording.store(flow, recorder.metadata(provider="openai-chat", ended_at=t0 + 1.5, notes=[]))
    [capture] = load(write_flows(tmp_path / "timed.flows", [flow]))
    assert capture.chunks == [(SSE_BODY[s:e], at) for (s, e), at in zip(zip(cuts, cuts[1:]), times)]
    assert capture.started_at == t0 and capture.closed_at == t0 + 1.5
    timing = capture.session().timing()
    assert timing.ttfb == pytest.approx(0.25) and timing.duration == pytest.approx(1.5)
    assert not any("timings unavailable" in note for note in capture.notes)


@pytest.mark.parametrize(("message", "client_gone"), [
    ("Client disconnected.", True),
    ("Server disconnected.", False),
    ("peer closed connection without sending complete message body", False),
])
def test_a_saved_aborted_flow_is_aborted_and_says_who_left(tmp_path: Path, message: str, client_gone: bool) -> None:
    flow = stream_flow(sse_event(CHUNK))
    flow.error = mflow.Error(message)
    [capture] = load(write_flows(tmp_path / "aborted.flows", [flow]))
    assert capture.aborted and capture.client_gone == client_gone
    session = capture.session()
    assert session.message.text == "Привет, мир! 🌍" and not session.complete
    assert ("truncated" in {str(f.kind) for f in session.faults}) != client_gone  # a client leaving is not a cut


# -- stream_from_flow: which responses hold a stream ------------------------------------------------


def test_a_stream_is_found_by_content_type_by_request_or_by_sniffing() -> None:
    assert stream_from_flow(stream_flow(), "x") is not None
    assert stream_from_flow(stream_flow(content_type="text/plain"), "x") is not None  # "stream": true
    sniffed = stream_flow(content_type=None, request=b"")
    assert stream_from_flow(sniffed, "x") is not None  # the body reads as SSE
    capture = stream_from_flow(sniffed, "x")
    assert capture is not None and capture.content_type is None and text_of(capture) == "Привет, мир! 🌍"


@pytest.mark.parametrize("request_body", [b"", b'{"stream": false}', b'{"stream": "yes"}', b'["stream"]',
                                          b'{"stream": tru'])
def test_a_json_answer_to_a_request_that_did_not_ask_for_a_stream_is_none(request_body: bytes) -> None:
    flow = stream_flow(b'{"choices": [{"message": {"content": "Hi"}}]}', "application/json", request_body)
    assert stream_from_flow(flow, "x") is None


def test_a_declared_stream_whose_body_was_not_stored_says_so() -> None:
    flow = stream_flow()
    flow.response.content = None
    capture = stream_from_flow(flow, "x")
    assert capture is not None and capture.body == b"" and capture.chunks == []
    assert any("body was not stored" in note for note in capture.notes)


# -- load: bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty file"),
    (PNG_HEAD, "not an SSE or NDJSON capture, nor an AWS event stream, a streamed JSON array, a mitmproxy flow or a HAR file"),
    (b"\x00" * 64, "not an SSE or NDJSON capture"),
    (b"<!DOCTYPE html><html></html>", "not an SSE or NDJSON capture"),
    (b"123:not a tnetstring", "not a readable mitmproxy flow or HAR file"),
    (b'{"log": {"entries": [{"request": 1}]}}', "not a readable mitmproxy flow or HAR file"),
], ids=["empty", "png", "nul-bytes", "html", "bad-tnetstring", "bad-har"])
def test_bad_files_are_one_line_source_errors(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    assert reason in one_line_error(path)


def test_random_binary_garbage_is_a_one_line_source_error(tmp_path: Path) -> None:
    path = tmp_path / "random.bin"
    for seed in range(20):
        path.write_bytes(b"\xff" + os.urandom(512 + seed))  # \xff: never a digit, "{" or a field name
        one_line_error(path)


def test_a_directory_is_a_one_line_source_error(tmp_path: Path) -> None:
    assert "cannot read" in one_line_error(tmp_path)


def test_a_missing_file_is_a_one_line_source_error(tmp_path: Path) -> None:
    assert "cannot read" in one_line_error(tmp_path / "nope.flows")


def test_read_flows_refuses_a_raw_capture(tmp_path: Path) -> None:
    path = tmp_path / "body.sse"
    path.write_bytes(SSE_BODY)
    with pytest.raises(SourceError, match="not a mitmproxy flow or HAR file"):
        read_flows(path)


def test_a_har_with_leading_whitespace_is_read(tmp_path: Path) -> None:
    path = tmp_path / "pretty.har"
    path.write_text("\n" + json.dumps(SaveHar().make_har([stream_flow()]), indent=2), encoding="utf-8")
    [capture] = load(path)
    assert text_of(capture) == "Привет, мир! 🌍"
