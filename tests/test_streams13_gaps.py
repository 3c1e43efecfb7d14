"""What #13's framings needed from the live pipeline beyond reading them: a
short first element or frame goes on at once (sniffing does not wait for a
newline that a binary frame or a compact JSON array never sends), and fault
injection, which writes SSE or NDJSON, leaves a streamed JSON array alone and
says so, live through mitmdump too.

The array element is shaped as Gemini's GenerateContentResponse (the field
payloads of tests/field/gemini/); it is built here because the case is a short
body, shorter than any published one."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import MEDIC, ROOT, load_script, mitmdump, run_mitmdump

from ssemedic.core.events import ServerSentEvent
from ssemedic.core.faults import Fault
from ssemedic.core.inject import Injection
from ssemedic.core.pipeline import SNIFF_BYTES, Pipeline
from ssemedic.core.session import EventRecord

demo = load_script("demo_upstream")
make = load_script("make_recordings")

GEMINI = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
JSON = {"content-type": "application/json; charset=UTF-8"}
ELEMENT = json.dumps({"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"},
                                      "finishReason": "STOP", "index": 0}]},
                     separators=(",", ":")).encode()


class Sink:
    def __init__(self) -> None:
        self.events: list[ServerSentEvent] = []
        self.errors: list[BaseException] = []

    def started(self, stream: Pipeline) -> None: ...
    def first_chunk(self, stream: Pipeline, data: bytes) -> None: ...
    def event(self, stream: Pipeline, record: EventRecord) -> None:
        self.events.append(record.event)
    def progress(self, stream: Pipeline) -> None: ...
    def finished(self, stream: Pipeline, error: str | None) -> None: ...
    def internal_error(self, stream: Pipeline, exc: BaseException) -> None:
        self.errors.append(exc)
    def fault(self, stream: Pipeline, fault: Fault) -> None: ...


def pipeline(sink: Sink, path: str, headers: dict[str, str], **options: Any) -> Pipeline:
    # sniff=True: how the addon starts a response whose Content-Type names no stream.
    return Pipeline(flow_id="f1", label="t", method="POST", path=path, request_headers={}, status=200,
                    response_headers=headers, started_at=0.0, sink=sink, clock=lambda: 1.0, sniff=True, **options)


@pytest.mark.parametrize("first", [b"[" + ELEMENT, b"[", b"  [" + ELEMENT[:20]], ids=["element", "bracket", "part"])
def test_a_short_array_start_without_a_newline_goes_on_at_once(first: bytes) -> None:
    assert len(first) < SNIFF_BYTES and b"\n" not in first.strip()
    sink = Sink()
    stream = pipeline(sink, GEMINI, JSON)
    assert stream(first) == [first]
    assert stream.session.framing == "jsonarray"
    rest = ELEMENT[20:] if first.endswith(ELEMENT[:20]) else b"" if first.endswith(ELEMENT) else ELEMENT
    if rest:
        assert stream(rest) == [rest]
    # Read when it arrived, not when 256 bytes or a newline came (or the end).
    assert [e.data for e in sink.events] == [ELEMENT.decode()]
    assert stream(b"]") == [b"]"]
    stream(b"")
    assert stream.session.complete and not sink.errors


def test_a_short_event_stream_frame_goes_on_at_once() -> None:
    frame = demo.bedrock_event("messageStop", {"stopReason": "end_turn"})
    assert len(frame) < SNIFF_BYTES
    sink = Sink()
    stream = pipeline(sink, "/model/m/converse-stream", {"content-type": "application/octet-stream"})
    assert stream(frame) == [frame]
    assert [e.event for e in sink.events] == ["messageStop"]  # before the end, not at it


def test_an_sse_line_is_still_awaited() -> None:
    # The old rule holds for text: a first line decides, so a part of one waits.
    sink = Sink()
    stream = pipeline(sink, "/v1/chat/completions", {"content-type": "text/plain"})
    stream(b"data: {")
    assert stream.session.bytes == 0  # still sniffing
    stream(b'"a": 1}\n\n')
    assert [e.data for e in sink.events] == ['{"a": 1}']


@pytest.mark.parametrize("injection", [Injection.ERROR_DONE, Injection.CUT, Injection.CR])
def test_injection_leaves_a_json_array_alone_and_says_so(injection: Injection) -> None:
    elements = demo.gemini_array_elements()
    body = [b"[" + elements[0], *(b",\r\n" + e for e in elements[1:]), b"]"]
    sink = Sink()
    stream = pipeline(sink, GEMINI, JSON, injections={injection: 0.0})
    sent = [piece for chunk in [*body, b""] for piece in stream(chunk)]
    assert sent == body
    assert any("not injected into" in note for note in stream.notes)
    assert stream.session.complete and not sink.errors


def test_a_sniffed_stream_that_is_no_array_is_still_never_injected_into() -> None:
    sink = Sink()
    stream = pipeline(sink, "/v1/chat/completions", {"content-type": "text/plain"},
                      injections={Injection.ERROR_DONE: 0.0})
    body = b'data: {"choices": []}\n\n'
    assert [p for c in (body, b"") for p in stream(c)] == [body]
    assert not any("inject" in note for note in stream.notes)


def test_live_injection_on_a_gemini_array_passes_it_unchanged_and_says_so(upstream: int, tmp_path: Path) -> None:
    jsonl = tmp_path / "events.jsonl"
    recording = make.BY_NAME["gemini-array"]
    with mitmdump(upstream, tmp_path, "--set", f"ssemedic_jsonl={jsonl}", "--set", "ssemedic_inject=error-done"
                  ) as mitm:
        through = httpx.post(recording.url(mitm.base, 0.001), json=recording.body, timeout=10).content
        direct = httpx.post(recording.url(f"http://127.0.0.1:{upstream}", 0.001), json=recording.body,
                            timeout=10).content
        deadline = time.monotonic() + 20
        summaries: list[dict[str, Any]] = []
        while not summaries and time.monotonic() < deadline:
            if jsonl.exists():
                summaries = [o for o in map(json.loads, jsonl.read_text(encoding="utf-8").splitlines())
                             if o.get("type") == "summary"]
            time.sleep(0.05)
    assert through == direct and through.startswith(b"[{")
    [summary] = summaries
    assert summary["framing"] == "jsonarray" and summary["complete"] is True
    assert any("not injected into" in note for note in summary["notes"]), summary["notes"]


def test_the_live_log_names_what_each_invoke_model_chunk_wraps() -> None:
    # recordings/bedrock-invoke.flows: Anthropic's Messages events, base64 in chunk frames.
    done = run_mitmdump(["-n", "-r", str(ROOT / "recordings" / "bedrock-invoke.flows"), "-s", str(MEDIC),
                         "--set", "ssemedic_max_text=0"])
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    names = re.findall(r"\] #\d+ \S+ (chunk[^:]*):", log)
    assert names[0] == "chunk message_start" and names[-1] == "chunk message_stop", names
    assert "chunk content_block_delta" in names and "chunk" not in names
