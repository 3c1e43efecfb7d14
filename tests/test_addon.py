"""The addon through mitmproxy's test helpers: selection, byte transparency,
recording, options, replay of saved flows and fallback on internal errors."""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import sse_event
from mitmproxy import exceptions, hooks
from mitmproxy.test import taddons, tflow

from ssemedic.core import recording
from ssemedic.mitm.addon import Medic

CHUNKS = [
    {"object": "chat.completion.chunk", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"reasoning_content": "Думаю…"}}]},
    {"object": "chat.completion.chunk", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "Привет, "}}]},
    {"object": "chat.completion.chunk", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "мир! 🌍"}}]},
    {"object": "chat.completion.chunk", "model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
]
BODY = b"".join(sse_event(c) for c in CHUNKS) + b"data: [DONE]\n\n"


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 0.05
        return self.now


def llm_flow(content_type: str = "text/event-stream", *, path: str = "/v1/chat/completions",
             request: bytes = b'{"model": "gpt-4o", "stream": true}') -> Any:
    f = tflow.tflow(resp=True)
    f.request.method = "POST"
    f.request.path = path
    f.request.content = request
    f.response.headers["content-type"] = content_type
    f.response.content = None  # a live response: headers only so far
    del f.response.headers["content-length"]
    return f


@pytest.fixture
def medic() -> Iterator[tuple[Medic, io.StringIO, Any]]:
    console = io.StringIO()
    addon = Medic(console=console, clock=Clock(1_700_000_000.0))
    with taddons.context(addon) as tctx:
        yield addon, console, tctx


def stream_through(addon: Medic, f: Any, chunks: list[bytes]) -> list[bytes]:
    """Play a live response through the hooks the way mitmproxy does."""
    addon.responseheaders(f)
    sent: list[bytes] = []
    if callable(f.response.stream):
        for chunk in chunks:
            sent += f.response.stream(chunk)
        sent += f.response.stream(b"")
    addon.response(f)
    return sent


def cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_event_stream_is_streamed_byte_for_byte_with_the_same_chunking(medic: Any) -> None:
    addon, _, _ = medic
    f = llm_flow()
    chunks = cut(BODY, 7)  # cuts inside Cyrillic, emoji and data: lines
    assert stream_through(addon, f, chunks) == chunks


def test_saved_flow_keeps_raw_body_and_timeline(medic: Any) -> None:
    addon, _, _ = medic
    f = llm_flow()
    chunks = cut(BODY, 50)
    stream_through(addon, f, chunks)
    assert f.response.raw_content == BODY
    meta = f.metadata["ssemedic"]
    tl = recording.unpack(meta["timeline"])
    assert [c for c, _ in tl.chunks(BODY)] == chunks
    assert all(b > a for a, b in zip(tl.times, tl.times[1:]))
    assert meta["provider"] == "openai-chat"


def test_log_names_lifecycle_events_and_summary(medic: Any) -> None:
    addon, console, _ = medic
    stream_through(addon, llm_flow(), cut(BODY, 20))
    log = console.getvalue()
    assert "stream started: POST" in log and "provider openai-chat" in log
    assert "upstream headers: 200 content-type=text/event-stream" in log
    assert "first chunk" in log
    assert 'reasoning "Думаю…"' in log
    assert 'text "Привет, "' in log and 'text "мир! 🌍"' in log
    assert "stop stop" in log and "end [DONE]" in log
    assert "completed: 5 events" in log
    assert "Привет, мир! 🌍" in log  # the summary panel's assembled text


def test_summary_level_logs_no_event_lines(medic: Any) -> None:
    addon, console, tctx = medic
    tctx.configure(addon, ssemedic_log="summary")
    stream_through(addon, llm_flow(), [BODY])
    log = console.getvalue()
    assert "#1" not in log and "completed" in log and "Привет, мир! 🌍" in log


def test_off_level_logs_nothing(medic: Any) -> None:
    addon, console, tctx = medic
    tctx.configure(addon, ssemedic_log="off")
    stream_through(addon, llm_flow(), [BODY])
    assert console.getvalue() == ""


def test_jsonl_has_one_object_per_event_and_a_summary(medic: Any, tmp_path: Path) -> None:
    addon, _, tctx = medic
    path = tmp_path / "events.jsonl"
    tctx.configure(addon, ssemedic_jsonl=str(path))
    stream_through(addon, llm_flow(), cut(BODY, 13))
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    events = [x for x in lines if x["type"] == "event"]
    assert [x["index"] for x in events] == [0, 1, 2, 3, 4]
    assert events[0]["parts"][-1] == {"kind": "reasoning", "text": "Думаю…", "hidden": False, "signature": None}
    assert events[1]["parts"][-1]["text"] == "Привет, "
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["text"] == "Привет, мир! 🌍"
    assert summary["finish_reason"] == "stop" and summary["provider"] == "openai-chat"


def test_non_llm_response_is_left_alone(medic: Any) -> None:
    addon, console, _ = medic
    f = tflow.tflow(resp=True)
    f.response.content = None
    addon.responseheaders(f)
    assert not callable(f.response.stream)
    assert console.getvalue() == ""


def test_filter_option_limits_the_flows(medic: Any) -> None:
    addon, _, tctx = medic
    tctx.configure(addon, ssemedic_filter="~u /v1/messages")
    f = llm_flow()
    addon.responseheaders(f)
    assert not callable(f.response.stream)


def test_mislabelled_event_stream_on_an_llm_path_is_found(medic: Any) -> None:
    addon, console, _ = medic
    f = llm_flow("text/plain")
    sent = stream_through(addon, f, cut(BODY, 3))
    assert b"".join(sent) == BODY
    log = console.getvalue()
    assert "served as 'text/plain', but the body is an event stream" in log
    assert "Привет, мир! 🌍" in log


def test_plain_json_answer_on_an_llm_path_stays_silent_and_keeps_its_body(medic: Any) -> None:
    addon, console, _ = medic
    answer = json.dumps({"choices": [{"message": {"content": "ok"}}]}).encode()
    f = llm_flow("application/json", request=b'{"model": "x"}')
    assert stream_through(addon, f, [answer[:5], answer[5:]]) == [answer[:5], answer[5:]]
    assert f.response.raw_content == answer
    assert console.getvalue() == ""
    assert "ssemedic" not in f.metadata


def test_gzip_stream_is_inspected_but_forwarded_compressed(medic: Any) -> None:
    addon, console, _ = medic
    f = llm_flow()
    f.response.headers["content-encoding"] = "gzip"
    compressed = gzip.compress(BODY)
    chunks = cut(compressed, 16)
    assert stream_through(addon, f, chunks) == chunks
    assert f.response.raw_content == compressed
    assert "Привет, мир! 🌍" in console.getvalue()


def test_upstream_abort_keeps_the_partial_body_and_says_aborted(medic: Any) -> None:
    addon, console, _ = medic
    f = llm_flow()
    addon.responseheaders(f)
    partial = BODY[:150]
    f.response.stream(partial)
    f.error = tflow.terr("Server disconnected.")
    addon.error(f)
    assert f.response.raw_content == partial
    assert "aborted: Server disconnected." in console.getvalue()
    assert "timeline" in f.metadata["ssemedic"]


def test_internal_error_passes_the_stream_through_and_is_logged_once(
    medic: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    addon, _, _ = medic
    f = llm_flow()
    addon.responseheaders(f)
    live = addon.streams[f.id]

    def broken(data: bytes, at: float | None = None) -> list[Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(live.session, "feed", broken)
    chunks = cut(BODY, 9)
    with caplog.at_level(logging.ERROR, logger="ssemedic"):
        sent = [piece for chunk in chunks for piece in f.response.stream(chunk)] + f.response.stream(b"")
        addon.response(f)
    assert sent == chunks
    assert f.response.raw_content == BODY
    errors = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(errors) == 1 and "boom" in errors[0].getMessage()


def test_replayed_flow_gives_the_same_log_as_live(medic: Any) -> None:
    addon, console, _ = medic
    live = llm_flow()
    stream_through(addon, live, cut(BODY, 40))
    live_log = console.getvalue()
    console.seek(0)
    console.truncate()
    replayed = live.copy()  # a flow as -nr loads it: the whole body is present
    replayed.id = live.id
    addon.responseheaders(replayed)
    assert not callable(replayed.response.stream)
    addon.response(replayed)
    assert console.getvalue() == live_log


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("ssemedic_log", "loud", "ssemedic_log: 'loud' is not one of events, summary, off"),
        ("ssemedic_max_text", "many", "ssemedic_max_text: 'many' is not a whole number"),
        ("ssemedic_max_text", "-3", "ssemedic_max_text: '-3' is not a whole number"),
        ("ssemedic_filter", "~u (", "ssemedic_filter: '~u (' is not a valid filter expression"),
        ("ssemedic_jsonl", "/nonexistent-dir/x.jsonl", "ssemedic_jsonl: '/nonexistent-dir/x.jsonl' cannot be opened for appending"),
        ("ssemedic_stall", "soon", "ssemedic_stall: 'soon' is not a number of seconds > 0"),
        ("ssemedic_repair", "maybe", "ssemedic_repair: 'maybe' is not true or false"),
        ("ssemedic_redact", "sometimes", "ssemedic_redact: 'sometimes' is not true or false"),
        ("ssemedic_stall", "0", "ssemedic_stall: '0' is not a number of seconds > 0"),
        ("ssemedic_view_width", "wide", "ssemedic_view_width: 'wide' is not a whole number >= 40"),
        ("ssemedic_view_width", "20", "ssemedic_view_width: '20' is not a whole number >= 40"),
    ],
)
def test_bad_option_values_name_the_option_and_the_problem(medic: Any, option: str, value: str, message: str) -> None:
    addon, _, tctx = medic
    with pytest.raises(exceptions.OptionsError, match=message.replace("(", r"\(")):
        tctx.configure(addon, **{option: value})


def test_report_command_summarises_selected_flows(medic: Any) -> None:
    addon, console, tctx = medic
    f = llm_flow()
    stream_through(addon, f, [BODY])
    console.seek(0)
    console.truncate()
    tctx.master.commands.collect_commands(addon)
    assert "ssemedic.report" in tctx.master.commands.commands
    tctx.master.commands.call("ssemedic.report", [f, tflow.tflow(resp=True)])
    out = console.getvalue()
    assert "Привет, мир! 🌍" in out and "#1" not in out


def test_stall_option_sets_the_threshold(medic: Any) -> None:
    addon, console, tctx = medic
    tctx.configure(addon, ssemedic_stall="0.01")
    stream_through(addon, llm_flow(), cut(BODY, 60))  # the fake clock ticks 50 ms per chunk
    assert "FAULT stall" in console.getvalue()


def test_progress_is_reported_every_hundred_chunks(medic: Any) -> None:
    addon, console, _ = medic
    many = [sse_event(CHUNKS[1]) for _ in range(250)]
    stream_through(addon, llm_flow(), many + [b"data: [DONE]\n\n"])
    progress = [line for line in console.getvalue().splitlines() if "… " in line and "chunks" in line]
    assert len(progress) == 2 and "100 chunks" in progress[0] and "200 chunks" in progress[1]


def test_progress_is_reported_after_five_quiet_seconds(medic: Any) -> None:
    addon, console, _ = medic
    addon.clock = Clock(1_700_000_000.0)
    f = llm_flow()
    addon.responseheaders(f)
    live = addon.streams[f.id]
    live.clock = lambda: 1_700_000_000.0
    f.response.stream(sse_event(CHUNKS[1]))
    live.clock = lambda: 1_700_000_006.0
    f.response.stream(sse_event(CHUNKS[2]))
    assert "… 2 chunks" in console.getvalue()


def test_outside_mitmdump_the_log_goes_through_logging_not_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    addon = Medic()  # no console injected: as under mitmweb or the console UI
    with taddons.context(addon) as tctx, caplog.at_level(logging.INFO, logger="ssemedic"):
        tctx.master.addons.trigger(hooks.RunningHook())
        assert addon.reporter.console is None
        stream_through(addon, llm_flow(), [BODY])
    messages = [r.getMessage() for r in caplog.records if r.name == "ssemedic"]
    assert any("stream started" in m for m in messages)
    assert any("Привет, мир! 🌍" in m for m in messages)


def test_injection_drops_content_length_because_it_changes_the_body(medic: Any) -> None:
    addon, _, tctx = medic
    tctx.configure(addon, ssemedic_inject="drop-done")
    f = llm_flow()
    f.response.headers["content-length"] = str(len(BODY))
    sent = stream_through(addon, f, [BODY])
    assert "content-length" not in f.response.headers
    assert b"".join(sent) == BODY.replace(b"data: [DONE]\n\n", b"")


@pytest.mark.parametrize("declared", ["text/plain; charset=utf-8", "application/octet-stream", None])
def test_headers_repair_labels_an_untyped_stream_as_an_event_stream(medic: Any, declared: str | None) -> None:
    addon, console, tctx = medic
    tctx.configure(addon, ssemedic_repair="true", ssemedic_repairs="headers")
    f = llm_flow("text/plain" if declared is None else declared)
    if declared is None:
        del f.response.headers["content-type"]
    chunks = cut(BODY, 7)
    assert stream_through(addon, f, chunks) == chunks  # headers only: the body is untouched
    assert f.response.headers["content-type"] == "text/event-stream"
    repairs = f.metadata["ssemedic"]["header_repairs"]
    assert repairs[0] == f"Content-Type: text/event-stream (was {declared or 'missing'})"
    assert "X-Accel-Buffering: no" in repairs
    assert "wrong-content-type" in console.getvalue()  # the diagnosis still sees what the upstream sent


def test_headers_repair_labels_an_untyped_ollama_stream_as_ndjson(medic: Any) -> None:
    addon, _, tctx = medic
    tctx.configure(addon, ssemedic_repair="true", ssemedic_repairs="headers")
    body = b'{"model":"llama3","message":{"role":"assistant","content":"hi"},"done":false}\n' \
           b'{"model":"llama3","message":{"role":"assistant","content":""},"done":true}\n'
    f = llm_flow("text/plain", path="/api/chat", request=b'{"model": "llama3"}')
    assert b"".join(stream_through(addon, f, [body])) == body
    assert f.response.headers["content-type"] == "application/x-ndjson"


@pytest.mark.parametrize("content_type, status", [("application/json", 200), ("text/plain", 502)])
def test_headers_repair_leaves_typed_or_failed_answers_their_content_type(
    medic: Any, content_type: str, status: int,
) -> None:
    addon, _, tctx = medic
    tctx.configure(addon, ssemedic_repair="true", ssemedic_repairs="headers")
    f = llm_flow(content_type)
    f.response.status_code = status
    addon.responseheaders(f)
    assert f.response.headers["content-type"] == content_type


def test_without_the_headers_repair_an_untyped_stream_keeps_its_content_type(medic: Any) -> None:
    addon, _, tctx = medic
    tctx.configure(addon, ssemedic_repair="true", ssemedic_repairs="reframe")
    f = llm_flow("text/plain")
    addon.responseheaders(f)
    assert f.response.headers["content-type"] == "text/plain"


def test_view_width_option_sets_the_width_of_the_llm_stream_view(medic: Any) -> None:
    from ssemedic.mitm import contentview
    from mitmproxy.contentviews import Metadata

    addon, _, tctx = medic
    f = llm_flow()
    stream_through(addon, f, [BODY])
    assert f.response is not None
    metadata = Metadata(flow=f, http_message=f.response, content_type="text/event-stream")

    def widest(text: str) -> int:
        return max(len(line) for line in text.splitlines())

    default = contentview.llm_stream_view.prettify(f.response.content or b"", metadata)
    tctx.configure(addon, ssemedic_view_width="50")
    narrow = contentview.llm_stream_view.prettify(f.response.content or b"", metadata)
    assert widest(narrow) <= 50 < widest(default)
