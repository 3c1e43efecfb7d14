"""The "LLM stream" contentview, through mitmproxy's own view selection and a real mitmweb."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import argon2
import httpx
import pytest
from helpers import ndjson_line, sse_event
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import contentviews
from mitmproxy.contentviews import Metadata
from mitmproxy.io import FlowWriter
from mitmproxy.test import taddons, tflow

import ssemedic.mitm.contentview as cv
from ssemedic.core import recording
from ssemedic.mitm.contentview import llm_stream_view

ROOT = Path(__file__).resolve().parent.parent
VIEW_KEY = "llm stream"  # the registry's key: the view's name, lower-cased


def chat_chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return sse_event({"id": "chatcmpl-7", "object": "chat.completion.chunk", "model": "gpt-4o",
                      "choices": choices, **extra})


CHAT_CHUNKS = [
    chat_chunk({"role": "assistant", "content": ""}),
    chat_chunk({"content": "Привет"}),
    chat_chunk({"content": "! Как дела? 😊🚀"}),
    chat_chunk({"tool_calls": [{"index": 0, "id": "call_Qx1", "type": "function",
                                "function": {"name": "get_weather", "arguments": ""}}]}),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Мос'}}]}),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ква"}'}}]}),
    chat_chunk({}, "tool_calls"),
    chat_chunk(None, usage={"prompt_tokens": 14, "completion_tokens": 11, "total_tokens": 25}),
    b"data: [DONE]\n\n",
]
CHAT_BODY = b"".join(CHAT_CHUNKS)
CHAT_TEXT = "Привет! Как дела? 😊🚀"

OLLAMA_BODY = b"".join(
    ndjson_line({"model": "llama3.2", "created_at": "2025-05-01T10:00:00Z",
                 "message": {"role": "assistant", "content": piece}, "done": False})
    for piece in ("Здравствуй", ", мир", "! 🌍")
) + ndjson_line({"model": "llama3.2", "created_at": "2025-05-01T10:00:01Z",
                 "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                 "prompt_eval_count": 26, "eval_count": 4})


def llm_flow(body: bytes = CHAT_BODY, *, path: str = "/v1/chat/completions",
             content_type: str | None = "text/event-stream") -> Any:
    flow = tflow.tflow(resp=True)
    assert flow.response is not None
    flow.request.method = "POST"
    flow.request.path = path
    flow.request.headers["content-type"] = "application/json"
    flow.request.content = b'{"model": "gpt-4o", "stream": true, "messages": []}'
    if content_type is None:
        flow.response.headers.pop("content-type", None)
    else:
        flow.response.headers["content-type"] = content_type
    flow.response.content = body
    return flow


@pytest.fixture
def registered() -> Iterator[None]:
    contentviews.add(llm_stream_view)
    try:
        with taddons.context():  # make_metadata reads ctx.options
            yield
    finally:
        # mitmproxy 12 has no public way to unregister (contentviews.remove is a
        # deprecated no-op), so undo our add() directly to keep other tests clean.
        contentviews.registry._by_name.pop(VIEW_KEY, None)


def auto_view(flow: Any, message: Any = None) -> contentviews.ContentviewResult:
    return contentviews.prettify_message(message if message is not None else flow.response, flow)


def test_importing_the_module_registers_nothing() -> None:
    # In a fresh interpreter: other tests (or the addon) may have called add() here.
    check = (
        "import ssemedic.mitm.contentview\n"
        "from mitmproxy import contentviews\n"
        f"assert {VIEW_KEY!r} not in contentviews.registry\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)


def test_openai_sse_flow_is_picked_automatically_and_shows_events_and_message(registered: None) -> None:
    result = auto_view(llm_flow())
    assert result.view_name == "LLM stream"
    assert result.syntax_highlight == "yaml"
    lines = result.text.splitlines()
    # tflow's response has a Content-Length: a stream with one is degraded.
    assert lines[:5] == ["verdict: degraded · 1 warning, 2 infos", "provider: openai-chat (sse)",
                         "model: gpt-4o · chatcmpl-7", "complete: true", "faults:"]
    assert lines[5].startswith("  - warning content-length-on-stream: ")
    assert "size: 9 events · 1,576 bytes · 1 chunk" in lines
    events = lines[lines.index("events:") + 2:]
    # One chunk: every event after the first came in the same burst.
    assert events[1] == '  1:  ≡  message  text "Привет"'
    assert any('text "! Как дела? 😊🚀"' in line for line in events)
    assert any("tool call get_weather" in line for line in events)
    assert any('tool call #0 {"city": "Мос' in line for line in events)
    assert any("stop tool_calls" in line for line in events)
    assert any("usage in=14 out=11 total=25" in line for line in events)
    assert events[8] == "  8:  ≡  message  end [DONE]"
    message = lines[lines.index("message:"):lines.index("events:")]
    assert f"  text: {CHAT_TEXT}" in message
    assert message[2:7] == ["  tool calls:", "    - name: get_weather", "      id: call_Qx1",
                            "      json: valid JSON", """      arguments: '{"city": "Москва"}'"""]
    assert "  stop: tool_calls · [DONE] · complete" in message


def test_ollama_ndjson_flow_is_picked_and_assembled(registered: None) -> None:
    result = auto_view(llm_flow(OLLAMA_BODY, path="/api/chat", content_type="application/x-ndjson"))
    assert result.view_name == "LLM stream"
    assert result.text.startswith("verdict: degraded · 1 warning")
    assert "\nprovider: ollama (ndjson)\n" in result.text
    assert "size: 4 events" in result.text
    assert 'text "Здравствуй"' in result.text
    assert "  text: Здравствуй, мир! 🌍" in result.text
    assert "stop stop" in result.text


@pytest.mark.parametrize("content_type", ["application/ndjson", "application/jsonl"])
def test_other_ndjson_content_types_are_picked(registered: None, content_type: str) -> None:
    flow = llm_flow(OLLAMA_BODY, path="/anything", content_type=content_type)
    assert auto_view(flow).view_name == "LLM stream"


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", None])
def test_mislabelled_sse_on_an_llm_path_is_still_picked(registered: None, content_type: str | None) -> None:
    result = auto_view(llm_flow(content_type=content_type))
    assert result.view_name == "LLM stream"
    assert f"  text: {CHAT_TEXT}" in result.text


def test_sse_sniffed_after_blank_lines_and_a_comment(registered: None) -> None:
    result = auto_view(llm_flow(b"\n\n: keep-alive\n\n" + CHAT_BODY, content_type="text/plain"))
    assert result.view_name == "LLM stream"


def test_sse_looking_text_on_an_unknown_path_is_not_picked(registered: None) -> None:
    flow = llm_flow(path="/notes.txt", content_type="text/plain")
    assert auto_view(flow).view_name != "LLM stream"


@pytest.mark.parametrize(
    ("path", "content_type", "body", "expected"),
    [
        ("/index.html", "text/html", b"<!doctype html><html><body>data: hi</body></html>", "XML/HTML"),
        ("/v1/chat/completions", "application/json",
         b'{"id": "chatcmpl-1", "choices": [{"message": {"content": "hi"}}]}', "JSON"),
    ],
)
def test_plain_html_and_json_responses_are_not_picked(
    registered: None, path: str, content_type: str, body: bytes, expected: str
) -> None:
    result = auto_view(llm_flow(body, path=path, content_type=content_type))
    assert result.view_name == expected


def test_the_json_request_of_an_llm_call_is_not_picked(registered: None) -> None:
    flow = llm_flow()
    assert auto_view(flow, flow.request).view_name == "JSON"


def test_empty_body_has_priority_zero() -> None:
    assert llm_stream_view.render_priority(b"", Metadata(content_type="text/event-stream")) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\xff\xfe garbage \x80\x81\n\n\xc3",
        b"data: \xff\xfe\xfd\n\ndata: {\"choices\": [{\"delta\": {\"content\": \"\xd0\"}}]}\n\n",
        b"data: " + b"x" * (5 * 1024 * 1024) + b"\n\n",  # beyond the 4 MiB event cap
        b"data: " + b"[" * 100_000 + b"\n\n",  # absurd JSON nesting
        b"\r\r\r\n\n:\n" * 1000,
    ],
    ids=["binary", "invalid-utf8", "huge-line", "deep-json", "only-newlines"],
)
def test_garbage_bytes_render_without_raising(registered: None, body: bytes) -> None:
    result = auto_view(llm_flow(body))
    assert result.view_name == "LLM stream"
    assert result.text.startswith("verdict: ")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048), st.sampled_from(["text/event-stream", "application/x-ndjson", None]))
def test_prettify_never_raises_for_any_bytes_without_a_flow(data: bytes, content_type: str | None) -> None:
    text = llm_stream_view.prettify(data, Metadata(content_type=content_type))
    assert text.startswith("verdict: ")


def test_an_internal_failure_becomes_a_short_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(stream: Any, width: int | None = None) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(cv, "render", broken)
    text = llm_stream_view.prettify(CHAT_BODY, Metadata(content_type="text/event-stream"))
    assert text == "ssemedic could not render this stream: RuntimeError: boom"


def test_stored_timeline_gives_time_offsets(registered: None) -> None:
    flow = llm_flow()
    start = flow.request.timestamp_start
    # Three chunks: the role chunk, then the two text chunks, then the rest.
    offsets = [0, len(CHAT_CHUNKS[0]), len(b"".join(CHAT_CHUNKS[:3]))]
    flow.metadata["ssemedic"] = {"timeline": recording.pack(offsets, [start + 0.125, start + 0.25, start + 0.5])}
    result = auto_view(flow)
    lines = result.text.splitlines()
    assert "size: 9 events · 1,576 bytes · 3 chunks" in lines
    assert lines[lines.index("size: 9 events · 1,576 bytes · 3 chunks") + 1:][:3] == [
        "ttfb: 125.0 ms", "ttft: 250.0 ms", "duration: 500.0 ms"]
    events = lines[lines.index("events:") + 3:]
    assert events[0] == "  0:  +0.125s              message  model gpt-4o"
    assert events[1] == '  1:  +0.250s  125.0ms     message  text "Привет"'
    assert events[4] == """  4: '+0.500s    0.0ms  ≡  message  tool call #0 {"city": "Мос'"""
    assert events[8] == "  8:  +0.500s    0.0ms  ≡  message  end [DONE]"


def test_without_a_timeline_times_are_left_out(registered: None) -> None:
    result = auto_view(llm_flow())
    assert "timing: unknown (no chunk timeline)" in result.text.splitlines()
    assert "+0." not in result.text


def test_invalid_tool_arguments_and_stream_errors_are_shown() -> None:
    body = (
        chat_chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a": '}}]})
        + b"data: {not json\n\n"
        + sse_event({"error": {"message": "Ошибка сервера", "type": "server_error"}})
    )
    text = llm_stream_view.prettify(body, Metadata(content_type="text/event-stream"))
    assert "      json: 'invalid JSON:" in text
    assert "MALFORMED invalid-json" in text
    assert "  errors:\n    - '[server_error] Ошибка сервера'" in text
    assert "complete: false  # no terminal signal" in text.splitlines()


def test_an_unknown_format_is_not_called_complete() -> None:
    text = llm_stream_view.prettify(b"event: ping\ndata: {}\n\n", Metadata(content_type="text/event-stream"))
    assert text.splitlines()[:5] == ["verdict: unjudged", "provider: generic (sse)",
                                     "complete: false  # unknown format: no terminal signal to check",
                                     "faults: none", "size: 1 event · 22 bytes · 1 chunk"]
    assert text.splitlines()[-1] == "  0:  ping  (no meaning) data '{}'"  # no marks: no marks column


def test_events_beyond_the_line_cap_are_counted_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv, "MAX_EVENT_LINES", 3)
    text = llm_stream_view.prettify(CHAT_BODY, Metadata(content_type="text/event-stream"))
    events = text.splitlines()[text.splitlines().index("events:") + 2:]
    assert [line.split()[0] for line in events] == ["0:", "1:", "2:", "#"]
    assert events[-1] == "  # … 6 more events not listed"
    assert CHAT_TEXT in text  # the message is still assembled from every event


def test_long_event_text_is_trimmed_but_the_message_is_whole() -> None:
    long = "я" * 1000
    body = chat_chunk({"content": long}) + b"data: [DONE]\n\n"
    text = llm_stream_view.prettify(body, Metadata(content_type="text/event-stream"))
    event_line = next(line for line in text.splitlines() if line.startswith("  0:"))
    meaning = f'model gpt-4o · text "{long}"'
    assert event_line.endswith(f"… ({len(meaning):,} chars)") and len(event_line) <= cv.WIDTH
    assert "".join(line.strip() for line in text.split("  text: |-\n")[1].split("\n")[:12]).startswith(long)


# -- a real mitmweb ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def mitmweb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    """A mitmweb on 127.0.0.1 that loaded one LLM flow and registered the view."""
    tmp_path = tmp_path_factory.mktemp("mitmweb")
    flow = llm_flow()
    start = flow.request.timestamp_start
    flow.metadata["ssemedic"] = {"timeline": recording.pack([0, len(CHAT_CHUNKS[0])], [start + 0.125, start + 0.25])}
    flows = tmp_path / "flows.mitm"
    with flows.open("wb") as f:
        FlowWriter(f).add(flow)
    script = tmp_path / "register_view.py"
    script.write_text(
        "import ssemedic.mitm.contentview as cv\n"
        "from mitmproxy import contentviews\n"
        "contentviews.add(cv.llm_stream_view)\n"
    )
    token = secrets.token_hex(16)
    # An argon2 hash rather than the plaintext token, which mitmweb warns about.
    password_hash = argon2.PasswordHasher().hash(token)
    web_port = free_port()
    log = (tmp_path / "mitmweb.log").open("wb")
    # The package from this checkout, whether or not it is installed in the venv.
    pythonpath = [str(ROOT / "addons"), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, pythonpath)))
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mitmweb")),
            "--no-web-open-browser",
            "--web-host", "127.0.0.1", "--web-port", str(web_port),
            "--listen-host", "127.0.0.1", "--listen-port", str(free_port()),
            "--set", f"web_password={password_hash}",
            "--set", f"confdir={tmp_path / 'conf'}",
            "-r", str(flows),
            "-s", str(script),
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{web_port}",
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,  # never route 127.0.0.1 through a proxy from the environment
        timeout=10,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mitmweb exited with {proc.returncode}:\n{(tmp_path / 'mitmweb.log').read_text()}")
            try:
                if client.get("/flows").json():
                    break
            except (httpx.TransportError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mitmweb did not serve the flow within 30 s:\n{(tmp_path / 'mitmweb.log').read_text()}")
            time.sleep(0.2)
        yield client, tmp_path
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def test_mitmweb_serves_the_view_for_a_loaded_flow(mitmweb: tuple[httpx.Client, Path]) -> None:
    client, _ = mitmweb
    (flow,) = client.get("/flows").json()
    assert flow["request"]["path"] == "/v1/chat/completions"
    base = f"/flows/{flow['id']}/response/content"
    # The web UI asks for encodeURIComponent(view name) + ".json".
    named = client.get(f"{base}/llm%20stream.json")
    assert named.status_code == 200
    reply = named.json()
    assert reply["view_name"] == "LLM stream"
    assert reply["syntax_highlight"] == "yaml"
    assert reply["text"].startswith("verdict: degraded · 1 warning")
    assert f"  text: {CHAT_TEXT}" in reply["text"].splitlines()
    assert any(line.startswith("  1:  +0.250s") for line in reply["text"].splitlines())
    auto = client.get(f"{base}/auto.json").json()
    assert auto["view_name"] == "LLM stream"
    assert VIEW_KEY in client.get("/state").json()["contentViews"]


def test_mitmweb_refuses_requests_without_the_token(mitmweb: tuple[httpx.Client, Path]) -> None:
    client, _ = mitmweb
    # A fresh request: the fixture's client already holds mitmweb's auth cookie.
    url = client.base_url.join("/flows")
    assert httpx.get(url, trust_env=False).status_code == 403
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, trust_env=False).status_code == 403
