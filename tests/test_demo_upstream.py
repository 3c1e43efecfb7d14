"""scripts/demo_upstream.py: every scenario read by real clients (httpx, the
openai SDK), chunk boundaries as a client sees them, and a server that
survives bad requests and clients that hang up."""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sse_reference import reference_events

from ssemedic.core.session import StreamSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
demo = importlib.import_module("demo_upstream")

CHAT = "/v1/chat/completions"
LETTA = "/v1/agents/agent-7f3c2a1e/messages/stream"
MESSAGES = [{"role": "user", "content": "Почему ответ приходит по частям?"}]
FAST = {"delay": "0.002"}


class Capture:
    """A streamed response as the client saw it: headers and raw chunks."""

    def __init__(self, response: httpx.Response, chunks: list[bytes], times: list[float]) -> None:
        self.response = response
        self.chunks = chunks
        self.times = times
        self.body = b"".join(chunks)

    def boundaries(self) -> list[int]:
        """Body offsets where one received chunk ends and the next begins."""
        ends, total = [], 0
        for chunk in self.chunks[:-1]:
            total += len(chunk)
            ends.append(total)
        return ends

    def data(self) -> list[str]:
        return [data for _, data, _, _ in reference_events(self.body)]

    def payloads(self) -> list[Any]:
        return [json.loads(data) for data in self.data() if data != "[DONE]"]


@pytest.fixture(scope="module")
def base(upstream: int) -> str:
    return f"http://127.0.0.1:{upstream}"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def fetch(client: httpx.Client, url: str, payload: Any, params: dict[str, str] | None = None) -> Capture:
    chunks, times = [], []
    with client.stream("POST", url, json=payload, params=params) as response:
        for chunk in response.iter_raw():
            chunks.append(chunk)
            times.append(time.monotonic())
    return Capture(response, chunks, times)


def chat(model: str = "healthy", stream: bool = True) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": MESSAGES}


def deltas(payloads: list[Any], field: str) -> str:
    return "".join(p["choices"][0]["delta"].get(field) or "" for p in payloads if p.get("choices"))


def session_summary(capture: Capture, path: str = CHAT) -> dict[str, Any]:
    """What ssemedic itself makes of the captured stream, fed as received."""
    session = StreamSession(method="POST", path=path, content_type=capture.response.headers["content-type"],
                            started_at=0.0)
    for at, chunk in enumerate(capture.chunks, 1):
        session.feed(chunk, at=at / 1000)
    session.close(at=1.0)
    return session.summary()


@pytest.fixture(scope="module")
def healthy(base: str) -> Capture:
    """The healthy stream at its default pace, fetched once for several tests."""
    with httpx.Client(timeout=10) as client:
        return fetch(client, base + CHAT, chat())


# -- healthy ----------------------------------------------------------------


def test_healthy_text_is_long_enough_and_paced_for_one_to_three_seconds() -> None:
    assert len(demo.tokens(demo.HEALTHY_TEXT)) >= 40
    assert "".join(demo.tokens(demo.HEALTHY_TEXT)) == demo.HEALTHY_TEXT
    reply = demo.healthy(demo.Call("healthy", True))
    assert 1.0 <= sum(delay for delay, _ in reply.chunks) <= 3.0
    assert all(0.03 <= delay <= 0.06 for delay, _ in reply.chunks)


def test_healthy_headers(healthy: Capture) -> None:
    headers = healthy.response.headers
    assert healthy.response.status_code == 200
    assert healthy.response.http_version == "HTTP/1.1"
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert headers["transfer-encoding"] == "chunked"
    assert "x-accel-buffering" not in headers


def test_healthy_chunks_split_characters(healthy: Capture) -> None:
    body = healthy.body
    assert len(healthy.chunks) >= 20
    inside_char = [end for end in healthy.boundaries() if body[end] & 0xC0 == 0x80]
    assert len(inside_char) >= 3


def test_healthy_chunks_split_data_lines(healthy: Capture) -> None:
    body = healthy.body

    def inside_data_line(end: int) -> bool:
        line_start = body.rfind(b"\n", 0, end) + 1
        return line_start < end and body.startswith(b"data:", line_start)

    assert sum(map(inside_data_line, healthy.boundaries())) >= 3


def test_healthy_chunks_arrive_paced(healthy: Capture) -> None:
    assert healthy.times[-1] - healthy.times[0] >= 0.9 * demo.DEFAULT_DELAY * (len(healthy.chunks) - 1)


def test_healthy_events(healthy: Capture) -> None:
    data = healthy.data()
    payloads = healthy.payloads()
    assert data[-1] == "[DONE]"
    assert deltas(payloads, "reasoning_content") == demo.HEALTHY_REASONING
    assert deltas(payloads, "content") == demo.HEALTHY_TEXT
    first_content = next(i for i, p in enumerate(payloads) if p["choices"] and p["choices"][0]["delta"].get("content"))
    last_reasoning = max(i for i, p in enumerate(payloads)
                         if p["choices"] and p["choices"][0]["delta"].get("reasoning_content"))
    assert last_reasoning < first_content
    assert payloads[-2]["choices"][0]["finish_reason"] == "stop"
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["total_tokens"] > 0


def test_ssemedic_reads_healthy_cleanly(healthy: Capture) -> None:
    summary = session_summary(healthy)
    assert summary["provider"] == "openai-chat"
    assert summary["text"] == demo.HEALTHY_TEXT
    assert summary["reasoning"] == demo.HEALTHY_REASONING
    assert summary["complete"] and summary["issues"] == [] and summary["errors"] == []


def test_openai_sdk_assembles_healthy_text(base: str) -> None:
    client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
    text, reasoning = [], []
    question = MESSAGES[0]["content"]
    with client.chat.completions.create(model="healthy", messages=[{"role": "user", "content": question}],
                                        stream=True, extra_query=FAST) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
    assert "".join(text) == demo.HEALTHY_TEXT
    assert "".join(reasoning) == demo.HEALTHY_REASONING


def test_openai_sdk_lists_the_scenario_as_model(base: str) -> None:
    client = openai.OpenAI(base_url=base + "/s/no-done/v1", api_key="x", max_retries=0)
    assert [model.id for model in client.models.list()] == ["no-done"]
    client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
    assert [model.id for model in client.models.list()] == ["healthy"]


def test_openai_sdk_on_a_letta_router_base(base: str) -> None:
    """An OpenAI client whose base URL is a router's Letta agent lists the
    agent's scenario and streams it from the same base."""
    client = openai.OpenAI(base_url=base + "/api/v1/agents/agent-1/proxy", api_key="x", max_retries=0)
    assert [model.id for model in client.models.list()] == ["letta-send-message"]
    client = openai.OpenAI(base_url=base + "/s/healthy/api/v1/agents/agent-1/proxy", api_key="x", max_retries=0)
    assert [model.id for model in client.models.list()] == ["healthy"]
    with client.chat.completions.create(model="healthy", messages=MESSAGES, stream=True,
                                        extra_query=FAST) as stream:
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == demo.HEALTHY_TEXT


def test_models_only_next_to_a_chat_route(base: str, client: httpx.Client) -> None:
    for path in ("/api/models", "/v1/agents/agent-1/models", "/v1beta/models"):
        assert client.get(base + path).status_code == 404, path


def test_non_stream_returns_chat_completion(base: str, client: httpx.Client) -> None:
    response = client.post(base + CHAT, json=chat(stream=False), params=FAST)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == demo.HEALTHY_TEXT
    assert body["choices"][0]["message"]["reasoning_content"] == demo.HEALTHY_REASONING
    assert body["choices"][0]["finish_reason"] == "stop"


# -- faulty scenarios -------------------------------------------------------


def test_error_then_done(base: str, client: httpx.Client) -> None:
    capture = fetch(client, base + CHAT, chat("error-then-done"), FAST)
    assert capture.response.status_code == 200
    assert capture.response.headers["content-type"].startswith("text/event-stream")
    data = capture.data()
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2]) == {"error": demo.ERROR_OBJECT}
    assert deltas(capture.payloads()[:-1], "content") == demo.ERROR_THEN_DONE_TEXT
    assert session_summary(capture)["errors"][0]["message"] == demo.ERROR_OBJECT["message"]


def test_no_done_ends_after_finish_reason(base: str, client: httpx.Client) -> None:
    capture = fetch(client, base + CHAT, chat("no-done"), FAST)
    assert capture.body.endswith(b"\n\n")
    assert "[DONE]" not in capture.data()
    payloads = capture.payloads()
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    assert deltas(payloads, "content") == demo.HEALTHY_TEXT
    summary = session_summary(capture)
    assert summary["finish_reason"] == "stop" and summary["text"] == demo.HEALTHY_TEXT


def test_buffered_arrives_in_one_chunk(base: str, client: httpx.Client) -> None:
    started = time.monotonic()
    capture = fetch(client, base + CHAT, chat("buffered"), {"delay": "0.005"})
    assert len(capture.chunks) == 1
    assert capture.times[0] - started >= 0.9 * 0.005 * len(capture.data())
    assert capture.data()[-1] == "[DONE]"
    assert deltas(capture.payloads(), "content") == demo.HEALTHY_TEXT


@pytest.mark.parametrize(("scenario", "http_version"), [("truncated", "HTTP/1.1"), ("truncated-close", "HTTP/1.0")])
def test_truncated_ends_mid_event(base: str, client: httpx.Client, scenario: str, http_version: str) -> None:
    capture = fetch(client, base + CHAT, chat(scenario), FAST)
    assert capture.response.http_version == http_version
    last_line = capture.body.rsplit(b"\n", 1)[-1]
    assert last_line.startswith(b"data: {")
    with pytest.raises(UnicodeDecodeError):
        last_line.decode()
    text = deltas(capture.payloads(), "content")
    assert text and demo.HEALTHY_TEXT.startswith(text) and text != demo.HEALTHY_TEXT
    assert "[DONE]" not in capture.data()


def test_close_framing_is_http10_without_length(base: str, client: httpx.Client) -> None:
    capture = fetch(client, base + CHAT, chat(), {**FAST, "framing": "close"})
    headers = capture.response.headers
    assert capture.response.http_version == "HTTP/1.0"
    assert headers["connection"] == "close"
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert deltas(capture.payloads(), "content") == demo.HEALTHY_TEXT


def test_path_prefix_chooses_the_scenario(base: str, client: httpx.Client) -> None:
    capture = fetch(client, base + "/s/no-done" + CHAT, chat("gpt-4o"), FAST)
    assert "[DONE]" not in capture.data()
    assert capture.payloads()[0]["model"] == "gpt-4o"


def test_letta_send_message(base: str, client: httpx.Client) -> None:
    capture = fetch(client, base + LETTA, {"messages": MESSAGES, "stream_tokens": True}, FAST)
    assert capture.response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert capture.data()[-1] == "[DONE]"
    payloads = capture.payloads()
    arguments = "".join(p["tool_call"]["arguments"] for p in payloads if p["message_type"] == "tool_call_message")
    assert json.loads(arguments) == {"message": demo.HEALTHY_TEXT}
    summary = session_summary(capture, LETTA)
    assert summary["provider"] == "letta"
    assert summary["text"] == demo.HEALTHY_TEXT
    assert summary["reasoning"] == demo.HEALTHY_REASONING


def test_ollama_ndjson(base: str, client: httpx.Client) -> None:
    capture = fetch(client, base + "/api/chat", {"model": "qwen3:8b", "messages": MESSAGES}, FAST)
    assert capture.response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in capture.body.decode().splitlines()]
    assert "".join(line["message"].get("thinking", "") for line in lines) == demo.HEALTHY_REASONING
    assert "".join(line["message"]["content"] for line in lines) == demo.HEALTHY_TEXT
    assert [line["done"] for line in lines].index(True) == len(lines) - 1
    summary = session_summary(capture, "/api/chat")
    assert summary["provider"] == "ollama" and summary["text"] == demo.HEALTHY_TEXT


def test_ollama_without_stream_returns_one_object(base: str, client: httpx.Client) -> None:
    response = client.post(base + "/api/chat", json={"model": "qwen3:8b", "stream": False}, params=FAST)
    assert response.headers["content-type"] == "application/json"
    assert response.json()["message"]["content"] == demo.HEALTHY_TEXT


# -- robustness -------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b""])
def test_bad_json_gives_400(base: str, client: httpx.Client, body: bytes) -> None:
    response = client.post(base + CHAT, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_json"
    assert client.post(base + CHAT, json=chat(stream=False), params=FAST).status_code == 200


@pytest.mark.parametrize(("path", "params", "status"), [
    ("/v2/nothing", {}, 404),
    ("/s/no-such-scenario" + CHAT, {}, 404),
    (CHAT, {"delay": "soon"}, 400),
    (CHAT, {"delay": "-1"}, 400),
    (CHAT, {"framing": "gzip"}, 400),
])
def test_bad_requests_get_json_errors(base: str, client: httpx.Client, path: str, params: dict[str, str],
                                      status: int) -> None:
    response = client.post(base + path, json=chat(), params=params)
    assert response.status_code == status
    assert response.json()["error"]["message"]


def test_client_hanging_up_does_not_break_the_server(
    base: str, client: httpx.Client, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="demo_upstream")
    with httpx.Client(timeout=10) as early, early.stream("POST", base + CHAT, json=chat()) as response:
        next(response.iter_raw())
    deadline = time.monotonic() + 3
    while "went away" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "client went away during healthy" in caplog.text
    capture = fetch(client, base + CHAT, chat(), FAST)
    assert deltas(capture.payloads(), "content") == demo.HEALTHY_TEXT
    assert "Traceback" not in capfd.readouterr().err


def test_one_log_line_per_request(base: str, client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="demo_upstream")
    client.post(base + "/s/no-done" + CHAT, json=chat(stream=False), params=FAST)
    assert [r.getMessage() for r in caplog.records] == [
        "POST /s/no-done/v1/chat/completions?delay=0.002 -> no-done (whole, length, delay 0.002s)"
    ]


def test_serve_refuses_non_loopback_hosts() -> None:
    with pytest.raises(ValueError, match="loopback"):
        demo.serve("0.0.0.0")


def test_main_lists_the_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(demo.SCENARIOS)


def test_main_stops_after_max_seconds() -> None:
    started = time.monotonic()
    assert demo.main(["--port", "0", "--max-seconds", "0.2"]) == 0
    assert time.monotonic() - started < 3
