"""A Letta agent behind an OpenAI-style router, end to end: real clients (the
openai SDK, httpx-sse, the naive per-chunk strict-UTF-8 client of
test_repair_e2e) through real mitmdumps in front of the demo upstream's
``letta-send-message`` scenario, served on a router's chat-completions paths.

Without repair the client shows an empty answer and ssemedic names the cause
(``text-in-tool-call``, not ``truncated``); with repair it shows the reply.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from e2e import Mitmdump, load_script, mitmdump
from test_repair_e2e import MESSAGES, naive, sse_events

demo = load_script("demo_upstream")

SCENARIO = "letta-send-message"
ROUTER_PATHS = ["/api/v1/agents/agent-1/proxy/chat/completions", "/v1/chat/completions"]
PAYLOAD = {"model": "letta-agent", "stream": True, "messages": MESSAGES}


@dataclass
class Proxies:
    plain: Mitmdump
    repair: Mitmdump
    jsonl: str


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxies]:
    workdir = tmp_path_factory.mktemp("letta-router")
    server, thread = demo.serve("127.0.0.1", 0)
    port = server.server_address[1]
    jsonl = workdir / "plain.jsonl"
    try:
        with (
            mitmdump(port, workdir, "--set", f"ssemedic_jsonl={jsonl}", name="plain") as plain,
            mitmdump(port, workdir, "--set", "ssemedic_repair=true", name="repair") as repair,
        ):
            yield Proxies(plain, repair, str(jsonl))
    finally:
        server.shutdown()
        thread.join(timeout=10)


def target(proxy: Mitmdump, path: str) -> str:
    return f"{proxy.base}/s/{SCENARIO}{path}?delay=0.002"


def sdk_text(proxy: Mitmdump, path: str, strict: bool = False) -> str:
    """``strict``: index ``choices[0]`` of every chunk, as most SDK users do."""
    base = f"{proxy.base}/s/{SCENARIO}{path.removesuffix('/chat/completions')}"
    client = openai.OpenAI(base_url=base, api_key="sk-test", max_retries=0, timeout=30)
    stream = client.chat.completions.create(model="letta-agent", messages=MESSAGES, stream=True,
                                            extra_query={"delay": "0.002"})
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if strict or chunk.choices)


def httpx_sse_text(proxy: Mitmdump, path: str) -> str:
    """What Open WebUI shows: ``choices[0].delta.content`` read with dict ``.get``."""
    out = []
    for event in sse_events(target(proxy, path), PAYLOAD):
        if event.data == "[DONE]":
            break
        choice = (json.loads(event.data).get("choices") or [{}])[0]
        out.append(choice.get("delta", {}).get("content") or "")
    return "".join(out)


def naive_text(proxy: Mitmdump, path: str) -> str:
    """What the naive client shows; "" when it breaks (a split character)."""
    try:
        got = naive(target(proxy, path), PAYLOAD)
    except ValueError:
        return ""
    assert got.done
    return got.text


CLIENTS = {"openai": sdk_text, "httpx-sse": httpx_sse_text, "naive": naive_text}


@pytest.mark.parametrize("path", ROUTER_PATHS)
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_without_repair_the_answer_is_empty(proxies: Proxies, client: str, path: str) -> None:
    assert CLIENTS[client](proxies.plain, path) == ""


@pytest.mark.parametrize("path", ROUTER_PATHS)
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_with_repair_the_client_shows_the_reply(proxies: Proxies, client: str, path: str) -> None:
    assert CLIENTS[client](proxies.repair, path) == demo.HEALTHY_TEXT


@pytest.mark.parametrize("path", ROUTER_PATHS)
def test_with_repair_every_chunk_has_a_first_choice(proxies: Proxies, path: str) -> None:
    assert sdk_text(proxies.repair, path, strict=True) == demo.HEALTHY_TEXT


def summaries(proxies: Proxies) -> list[dict[str, Any]]:
    with open(proxies.jsonl, encoding="utf-8") as lines:
        return [x for x in map(json.loads, filter(str.strip, lines)) if x.get("type") == "summary"]


def test_ssemedic_names_the_cause(proxies: Proxies) -> None:
    before = len(summaries(proxies))
    for path in ROUTER_PATHS:
        sdk_text(proxies.plain, path)
    for _ in range(100):  # the summary line is written when the flow ends
        found = summaries(proxies)[before:]
        if len(found) >= len(ROUTER_PATHS):
            break
        time.sleep(0.1)
    assert len(found) == len(ROUTER_PATHS)
    for summary in found:
        kinds = [f["kind"] for f in summary["faults"]]
        assert "text-in-tool-call" in kinds and "truncated" not in kinds
        assert (summary["provider"], summary["provider_source"]) == ("letta", "payload")
        assert summary["provider_guess"] == "openai-chat"
        assert summary["text"] == demo.HEALTHY_TEXT
    log = proxies.plain.output()
    assert "provider letta, from the payload; the path suggested openai-chat" in log


def test_on_letta_paths_the_repair_adds_assistant_message(proxies: Proxies) -> None:
    events = sse_events(f"{proxies.repair.base}/v1/agents/agent-1/messages/stream?delay=0.002",
                        {"model": SCENARIO, "messages": MESSAGES})
    payloads = [json.loads(e.data) for e in events if e.data != "[DONE]"]
    assert "".join(p["content"] for p in payloads if p["message_type"] == "assistant_message") == demo.HEALTHY_TEXT
    assert not any("choices" in p for p in payloads)


def test_letta_shape_option() -> None:
    from ssemedic.core.repair import letta_shape

    assert letta_shape("auto", "/api/v1/agents/a/proxy/chat/completions?x=1") == "openai"
    assert letta_shape("auto", "/v1/agents/a/messages/stream") == "letta"
    assert letta_shape("letta", "/v1/chat/completions") == "letta"
    with pytest.raises(ValueError, match="auto, openai, letta"):
        letta_shape("chat", "/")
