"""End to end: real clients through a real mitmdump running ssemedic, in
reverse mode in front of the demo upstream (all on 127.0.0.1)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from e2e import ROOT, Mitmdump, load_script, mitmdump, run_mitmdump
from httpx_sse import connect_sse
from mitmproxy.io import FlowReader

from ssemedic.core import recording

upstream_mod = load_script("demo_upstream")
HEALTHY_TEXT: str = upstream_mod.HEALTHY_TEXT
HEALTHY_REASONING: str = upstream_mod.HEALTHY_REASONING
CHAT = {"model": "healthy", "stream": True, "messages": [{"role": "user", "content": "Почему по частям?"}]}


@pytest.fixture(scope="module")
def proxy(upstream: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mitmdump, Path]]:
    workdir = tmp_path_factory.mktemp("proxy")
    jsonl = workdir / "events.jsonl"
    with mitmdump(upstream, workdir, "--set", f"ssemedic_jsonl={jsonl}") as proc:
        yield proc, jsonl


def raw_body(url: str, payload: dict[str, Any]) -> tuple[bytes, list[bytes]]:
    with httpx.Client(timeout=30) as client, client.stream("POST", url, json=payload) as response:
        assert response.status_code == 200
        chunks = list(response.iter_raw())
    return b"".join(chunks), chunks


def test_openai_sdk_gets_the_exact_answer_through_the_proxy(proxy: tuple[Mitmdump, Path]) -> None:
    mitm, _ = proxy
    client = openai.OpenAI(base_url=f"{mitm.base}/v1", api_key="sk-test", max_retries=0, timeout=30)
    text, reasoning = [], []
    for chunk in client.chat.completions.create(stream=True, model="healthy", messages=CHAT["messages"]):
        if chunk.choices:
            delta = chunk.choices[0].delta
            text.append(delta.content or "")
            reasoning.append(getattr(delta, "reasoning_content", None) or "")
    assert "".join(text) == HEALTHY_TEXT
    assert "".join(reasoning) == HEALTHY_REASONING


def test_events_reach_the_client_as_they_are_sent_not_at_the_end(proxy: tuple[Mitmdump, Path]) -> None:
    mitm, _ = proxy
    arrivals: list[float] = []
    with httpx.Client(timeout=30) as client:
        start = time.monotonic()
        with connect_sse(client, "POST", f"{mitm.base}/v1/chat/completions", json=CHAT) as source:
            for _ in source.iter_sse():
                arrivals.append(time.monotonic() - start)
    total = arrivals[-1]
    assert total > 1.0  # the demo stream takes about two seconds
    assert arrivals[0] < total / 4, "the first event waited for the rest: something buffers"
    halfway = sum(1 for t in arrivals if t < total / 2)
    assert 0.2 * len(arrivals) < halfway < 0.8 * len(arrivals)


def test_client_bytes_equal_upstream_bytes(upstream: int, proxy: tuple[Mitmdump, Path]) -> None:
    mitm, _ = proxy
    payload = {**CHAT, "model": "healthy"}
    direct, _ = raw_body(f"http://127.0.0.1:{upstream}/v1/chat/completions?delay=0.005", payload)
    proxied, chunks = raw_body(f"{mitm.base}/v1/chat/completions?delay=0.005", payload)
    assert proxied == direct
    assert len(chunks) > 10  # still streamed in pieces


def test_log_and_jsonl_name_text_reasoning_and_tool_fields(proxy: tuple[Mitmdump, Path]) -> None:
    mitm, jsonl = proxy
    body, _ = raw_body(f"{mitm.base}/s/tool-call/v1/chat/completions?delay=0.005", CHAT)
    raw_body(f"{mitm.base}/v1/chat/completions?delay=0.005", CHAT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and mitm.output().count("completed:") < 2:
        time.sleep(0.1)
    log = mitm.output()
    assert "stream started: POST" in log and "provider openai-chat" in log
    assert 'reasoning "' in log and 'text "Привет! "' in log
    assert "tool call get_weather" in log
    objects = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    kinds = {part["kind"] for o in objects if o["type"] == "event" for part in o["parts"]}
    assert {"text", "reasoning", "tool_call", "usage", "stop", "done"} <= kinds
    summaries = [o for o in objects if o["type"] == "summary"]
    assert any(s["text"] == HEALTHY_TEXT and s["reasoning"] == HEALTHY_REASONING for s in summaries)
    tool = next(s for s in summaries if s["tool_calls"])
    assert tool["tool_calls"][0]["name"] == "get_weather"
    assert json.loads(tool["tool_calls"][0]["arguments"]) == {"city": "Москва", "units": "celsius"}


def test_saved_flow_holds_raw_body_and_timeline_and_nr_reproduces_the_summary(
    upstream: int, tmp_path: Path
) -> None:
    flows, live_jsonl, replay_jsonl = tmp_path / "s.flows", tmp_path / "live.jsonl", tmp_path / "replay.jsonl"
    with mitmdump(upstream, tmp_path, "-w", str(flows), "--set", f"ssemedic_jsonl={live_jsonl}") as mitm:
        body, _ = raw_body(f"{mitm.base}/v1/chat/completions?delay=0.01", CHAT)
    with flows.open("rb") as f:
        [flow] = list(FlowReader(f).stream())
    assert flow.response.raw_content == body
    tl = recording.unpack(flow.metadata["ssemedic"]["timeline"])
    assert len(tl.offsets) > 10 and [c for c, _ in tl.chunks(body)][0]

    done = run_mitmdump(["-n", "-r", str(flows), "-s", str(ROOT / "addons" / "medic.py"),
                         "--set", f"ssemedic_jsonl={replay_jsonl}"])
    assert done.returncode == 0, done.stdout + done.stderr

    def summary(path: Path) -> dict[str, Any]:
        objects = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return next(o for o in objects if o["type"] == "summary")

    live, replayed = summary(live_jsonl), summary(replay_jsonl)
    assert replayed == live
    assert live["text"] == HEALTHY_TEXT and live["timing"]["ttfb_ms"] is not None
    assert HEALTHY_TEXT[:20] in done.stdout + done.stderr  # the replay printed its summary


def test_internal_error_leaves_the_stream_flowing_unchanged_and_is_logged_once(
    upstream: int, tmp_path: Path
) -> None:
    breaker = ROOT / "tests" / "mitm_break_ssemedic.py"
    with mitmdump(upstream, tmp_path, "-s", str(breaker), name="broken") as mitm:
        direct, _ = raw_body(f"http://127.0.0.1:{upstream}/v1/chat/completions?delay=0.005", CHAT)
        proxied, _ = raw_body(f"{mitm.base}/v1/chat/completions?delay=0.005", CHAT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "completed:" not in mitm.output():
            time.sleep(0.1)
        log = mitm.output()
    assert proxied == direct
    assert log.count("ssemedic internal error; the flow passes through unchanged") == 1
    assert "injected inspection failure" in log


def test_nr_on_a_browser_har_reports_the_stream_without_inventing_timings(tmp_path: Path) -> None:
    from mitmproxy.addons.savehar import SaveHar
    from mitmproxy.test import tflow

    flow = tflow.tflow(resp=True)
    flow.request.method, flow.request.path = "POST", "/v1/chat/completions"
    flow.request.content = json.dumps(CHAT).encode()
    flow.response.headers["content-type"] = "text/event-stream"
    events = [{"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Привет 👋"}}]},
              {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    flow.response.content = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"
    har, jsonl = tmp_path / "browser.har", tmp_path / "har.jsonl"
    har.write_text(json.dumps(SaveHar().make_har([flow])), encoding="utf-8")
    done = run_mitmdump(["-n", "-r", str(har), "-s", str(ROOT / "addons" / "medic.py"),
                         "--set", f"ssemedic_jsonl={jsonl}"])
    assert done.returncode == 0, done.stdout + done.stderr
    summary = next(json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()
                   if json.loads(line)["type"] == "summary")
    assert summary["text"] == "Привет 👋"
    assert summary["timing"]["ttfb_ms"] is None and summary["timing"]["gap_max_ms"] is None
    assert any("no chunk timeline" in note for note in summary["notes"])
