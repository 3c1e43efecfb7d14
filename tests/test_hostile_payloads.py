"""Hostile payloads are data: a lone surrogate, NaN, absurd nesting, an
integer too long for Python and huge strings are each reported as what they
are, and nothing raises out of the session, the JSONL, the log or the view.

Each case goes through the live pipeline (core/pipeline.py) with the real
Reporter (mitm/output.py) writing a UTF-8 JSONL file, as the addon sets it up.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import ndjson_line, sse_event
from mitmproxy.contentviews import Metadata
from mitmproxy.test import tflow

from ssemedic.core import events
from ssemedic.core.events import ServerSentEvent
from ssemedic.core.pipeline import Pipeline
from ssemedic.core.repair import ALL_REPAIRS, Repair
from ssemedic.core.session import StreamSession
from ssemedic.mitm import contentview
from ssemedic.mitm import output
from ssemedic.mitm.output import Reporter

CHAT = "/v1/chat/completions"


def chunk(content: Any = None, finish: str | None = None, **extra: Any) -> bytes:
    delta = {} if content is None else {"content": content}
    return sse_event({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta,
                                                                       "finish_reason": finish}], **extra})


def raw_chunk(content_json: str) -> bytes:
    """A chat chunk whose content is written as given (escapes, constants...)."""
    return (b'data: {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": '
            + content_json.encode() + b'}, "finish_reason": null}]}\n\n')


END = chunk(None, "stop") + b"data: [DONE]\n\n"


class Run:
    """One stream through Pipeline + Reporter: what came out where."""

    def __init__(self, tmp_path: Path, body: bytes, *, path: str = CHAT, repairs: frozenset[Repair] = frozenset(),
                 content_type: str = "text/event-stream") -> None:
        self.errors: list[BaseException] = []
        errors = self.errors

        class Recording(Reporter):
            def internal_error(self, stream: Pipeline, exc: BaseException) -> None:
                errors.append(exc)

        self.console = io.StringIO()
        jsonl_path = tmp_path / "out.jsonl"
        with open(jsonl_path, "w", encoding="utf-8") as jsonl:  # as the addon opens it
            reporter = Recording(console=self.console, jsonl=jsonl, color=False, max_text=0)
            self.pipeline = Pipeline(
                flow_id="f00d", label="hostile", method="POST", path=path, request_headers={}, status=200,
                response_headers={"content-type": content_type}, started_at=0.0, sink=reporter,
                clock=lambda: 1.0, repairs=repairs)
            self.pipeline.announce()
            self.sent = b"".join(self.pipeline(body) + self.pipeline(b""))
        self.jsonl_text = jsonl_path.read_text(encoding="utf-8")
        # Strict JSON, line by line: no NaN or Infinity written either.
        self.lines = [json.loads(line, parse_constant=_reject) for line in self.jsonl_text.splitlines()]
        self.log = self.console.getvalue()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["type"] == kind]

    @property
    def summary(self) -> dict[str, Any]:
        [summary] = self.of("summary")
        return summary

    def malformed(self) -> list[str]:
        return [p["detail"] for e in self.of("event") for p in e["parts"] if p["kind"] == "malformed"]


def _reject(name: str) -> Any:
    raise AssertionError(f"{name} written to the JSONL")


def test_a_lone_surrogate_reaches_the_jsonl_and_the_log(tmp_path: Path) -> None:
    run = Run(tmp_path, chunk("a") + raw_chunk('"\\ud800 b"') + END)
    assert not run.errors, run.errors
    assert "\\ud800" in run.jsonl_text  # the same value, escaped
    assert [e["parts"][0]["text"] for e in run.of("event")[:2]] == ["a", "\ud800 b"]
    assert run.summary["text"] == "a\ud800 b"
    assert run.summary["complete"] is True
    assert "\\ud800" in run.log
    run.log.encode("utf-8")  # a terminal gets nothing it cannot encode


def test_control_characters_are_escaped_in_the_log(tmp_path: Path) -> None:
    run = Run(tmp_path, chunk("\x1b[2J\x1b]0;pwned\x07 hi\x00") + END)
    assert not run.errors, run.errors
    assert "\x1b" not in run.log and "\x07" not in run.log and "\x00" not in run.log
    assert "\\x1b[2J" in run.log
    assert run.summary["text"] == "\x1b[2J\x1b]0;pwned\x07 hi\x00"  # the JSONL keeps the value


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_invalid_json(tmp_path: Path, constant: str) -> None:
    body = chunk("a") + f'data: {{"object": "chat.completion.chunk", "x": {constant}}}\n\n'.encode() + END
    run = Run(tmp_path, body)
    assert not run.errors
    [detail] = run.malformed()
    assert detail.startswith(f"{constant} is not JSON (strict clients reject it) at position 41")
    assert [f["kind"] for f in run.of("fault")].count("invalid-json") == 1
    with pytest.raises(json.JSONDecodeError):
        ServerSentEvent(data=f"[{constant}]").json()


def test_sanitize_drops_an_event_with_nan(tmp_path: Path) -> None:
    bad = b'data: {"object": "chat.completion.chunk", "x": NaN}\n\n'
    run = Run(tmp_path, chunk("a") + bad + END, repairs=frozenset({Repair.SANITIZE}))
    assert run.sent == chunk("a") + END


def test_nan_in_tool_arguments_is_invalid_tool_arguments(tmp_path: Path) -> None:
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": NaN}'}}
    body = sse_event({"object": "chat.completion.chunk",
                      "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]})
    run = Run(tmp_path, body + chunk(None, "tool_calls") + b"data: [DONE]\n\n")
    assert "invalid-tool-arguments" in [f["kind"] for f in run.of("fault")]


def test_deep_nesting_is_invalid_json(tmp_path: Path) -> None:
    run = Run(tmp_path, chunk("a") + b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n" + END)
    assert not run.errors
    [detail] = run.malformed()
    assert detail.startswith("arrays or objects nested too deeply for Python's json")


def test_deeply_nested_tool_arguments_do_not_stop_inspection(tmp_path: Path) -> None:
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "[" * 100_000}}
    body = sse_event({"object": "chat.completion.chunk",
                      "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]})
    run = Run(tmp_path, body + chunk(None, "tool_calls") + b"data: [DONE]\n\n")
    assert not run.errors, run.errors
    assert not run.pipeline.notes
    faults = {f["kind"]: f for f in run.of("fault")}
    assert "nested too deeply" in faults["invalid-tool-arguments"]["detail"]


def test_an_integer_too_long_for_python_is_invalid_json(tmp_path: Path) -> None:
    body = chunk("a") + b'data: {"object": "chat.completion.chunk", "n": ' + b"9" * 5000 + b"}\n\n" + END
    run = Run(tmp_path, body)
    assert not run.errors
    [detail] = run.malformed()
    assert detail.startswith("an integer of 5,000 digits, more than Python's json (and Python clients) decode "
                             "(4,300)")
    assert "at position 41" in detail


def test_a_number_too_large_for_a_float_is_written_as_null(tmp_path: Path) -> None:
    body = chunk("a")[:-3] + b', "usage": {"prompt_tokens": 1, "completion_tokens": 1e999}}\n\n' + END
    run = Run(tmp_path, body)
    assert not run.errors
    assert run.summary["usage"]["completion_tokens"] is None  # not Infinity, which is not JSON


def test_huge_strings_are_oversized_events_and_the_rest_passes(tmp_path: Path) -> None:
    big = "я" * (3 * 1024 * 1024)  # 6 MiB of UTF-8: over the 4 MiB event cap
    fits = "x" * (512 * 1024)
    body = chunk(fits) + chunk(big) + chunk("b") + END
    run = Run(tmp_path, body)
    assert not run.errors
    assert run.sent == body
    assert run.summary["text"].endswith("b") and len(run.summary["text"]) == len(fits) + 1
    assert "oversized-event" in [i["kind"] for i in run.summary["issues"]]
    ndjson = b"".join(ndjson_line({"message": {"content": s}, "done": False}) for s in (fits, big, "b"))
    ndjson += ndjson_line({"message": {"content": ""}, "done": True})
    run = Run(tmp_path, ndjson, path="/api/chat", content_type="application/x-ndjson")
    assert not run.errors
    assert "oversized-event" in [i["kind"] for i in run.summary["issues"]]


def test_a_lone_surrogate_in_a_letta_reply_is_rewritten_without_error(tmp_path: Path) -> None:
    args = json.dumps({"message": "hi \ud800"})
    event = sse_event({"id": "m1", "message_type": "tool_call_message",
                       "tool_call": {"name": "send_message", "tool_call_id": "c1", "arguments": args}})
    end = sse_event({"message_type": "stop_reason", "stop_reason": "end_turn"}) + b"data: [DONE]\n\n"
    run = Run(tmp_path, event + end, path="/v1/agents/agent-1/messages/stream", repairs=ALL_REPAIRS)
    assert not run.errors, run.errors
    assert b"assistant_message" in run.sent
    assert b"hi \\ud800" in run.sent
    run.sent.decode("utf-8")


def test_the_view_escapes_what_a_terminal_would_obey(tmp_path: Path) -> None:
    body = chunk("\x1b[31mred") + raw_chunk('"\\udfff"') + END
    text = contentview.llm_stream_view.prettify(body, _metadata(body))
    assert "\x1b" not in text and "\\x1b[31mred" in text
    assert "\\udfff" in text
    text.encode("utf-8")


def _metadata(body: bytes) -> Metadata:
    flow = tflow.tflow(resp=True)
    assert flow.response is not None
    flow.request.method = "POST"
    flow.request.path = CHAT
    flow.response.headers["content-type"] = "text/event-stream"
    flow.response.content = body
    return Metadata(flow=flow, http_message=flow.response, content_type="text/event-stream")


def test_writers_never_raise_for_any_value() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    for value in (deep, cycle, {"x": object()}, {"x": float("nan"), "s": "\ud800\x00"}, {"b": b"\xff"}):
        line = output.json_line({"type": "event", "flow": "f", "v": value})
        json.loads(line, parse_constant=_reject)
        line.encode("utf-8")
    assert json.loads(output.json_line({"type": "event", "v": [float("inf"), "\udc80"]})) == {
        "type": "event", "v": [None, "\udc80"]}


def test_loads_and_dumps_round_trip_hostile_values() -> None:
    text = events.dumps({"s": "\ud800", "f": [1e999, -1e999], "n": None})
    assert text.isascii()
    assert events.loads(text) == {"s": "\ud800", "f": [None, None], "n": None}


def test_the_session_survives_every_hostile_payload_in_ndjson() -> None:
    lines = [b'{"message": {"content": "\\ud800"}, "done": false}\n', b'{"x": NaN}\n',
             b"[" * 50_000 + b"\n", b'{"n": ' + b"1" * 5000 + b"}\n", b'{"done": true}\n']
    session = StreamSession(path="/api/chat", content_type="application/x-ndjson", started_at=0.0)
    for line in lines:
        session.feed(line, at=0.1)
    session.close(at=0.2)
    summary = session.summary()
    assert [f["kind"] for f in summary["faults"]].count("invalid-json") == 1
    assert [m.kind for _, m in session.malformed_events] == ["invalid-json"] * 3
