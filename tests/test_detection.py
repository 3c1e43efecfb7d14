"""The payload decides the provider: every registered provider's stream,
taken from the demo upstream's builders, is recognised on its own path, on
another provider's path and on a path no provider claims."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from test_providers_cohere import cohere_stream
from test_providers_mcp import STREAM as MCP_STREAM

from ssemedic.core import providers
from ssemedic.core.session import StreamSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
demo = importlib.import_module("demo_upstream")

MODEL = "demo-model"

#: provider -> (its own path, its stream's bytes)
STREAMS: dict[str, tuple[str, list[bytes]]] = {
    "openai-chat": ("/v1/chat/completions", demo.healthy_events(MODEL)),
    "openai-responses": ("/v1/responses", demo.responses_events(MODEL)),
    "anthropic": ("/v1/messages", demo.anthropic_events(MODEL)),
    "gemini": (f"/v1beta/models/{MODEL}:streamGenerateContent", demo.gemini_events(MODEL)),
    "letta": ("/v1/agents/agent-1/messages/stream", demo.letta_events()),
    "ollama": ("/api/chat", [data for _pause, data in demo.ollama(demo.Call(MODEL, True, 0.0)).chunks]),
    "cohere": ("/v2/chat", cohere_stream()),
    "bedrock": (f"/model/{MODEL}/converse-stream", demo.bedrock_events()),
    "mcp": ("/mcp", [MCP_STREAM]),
}


def _bytes(chunks: list[bytes]) -> bytes:
    return b"".join(chunks)


def test_every_registered_provider_has_a_stream_here() -> None:
    assert set(STREAMS) == set(providers.names()) - {providers.GENERIC}


def _run(path: str, body: bytes) -> StreamSession:
    session = StreamSession(method="POST", path=path)
    session.feed(body, 1.0)
    session.close(2.0)
    return session


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("where", ["own", "other", "unclaimed"])
def test_payload_decides(name: str, where: str) -> None:
    own, chunks = STREAMS[name]
    path = {"own": own, "unclaimed": "/proxy/stream",
            "other": "/v1/messages" if name == "openai-chat" else "/v1/chat/completions"}[where]
    session = _run(path, _bytes(chunks))
    assert session.provider == name
    guess = providers.detect_from_request("POST", path)
    assert session.provider_guess == guess
    if guess == name:
        assert session.provider_source == "request"
        assert "provider_guess" not in session.summary()
    else:
        assert session.provider_source == "payload"
        assert session.summary()["provider_source"] == "payload"
        if guess is not None:
            assert session.summary()["provider_guess"] == guess
    assert session.message.text or session.message.tool_results, "the stream's text (or tool results) is assembled"


def test_an_explicit_provider_is_never_second_guessed() -> None:
    session = StreamSession(provider="openai-chat", path="/v1/agents/a/messages/stream")
    session.feed(_bytes(STREAMS["letta"][1]), 1.0)
    assert (session.provider, session.provider_source) == ("openai-chat", "option")


def test_the_first_payload_settles_it() -> None:
    # Letta events first, then an OpenAI chunk: the later chunk does not flip it back.
    body = _bytes(STREAMS["letta"][1]).replace(b"data: [DONE]", b"") + _bytes(STREAMS["openai-chat"][1])
    session = _run("/v1/chat/completions", body)
    assert (session.provider, session.provider_settled_at) == ("letta", 0)


@pytest.mark.parametrize("path", ["/api/v1/agents/agent-1/proxy/chat/completions", "/v1/chat/completions"])
def test_letta_behind_a_router_is_letta(path: str) -> None:
    session = StreamSession(method="POST", path=path, content_type="text/event-stream")
    session.feed(_bytes(demo.letta_events()), 1.0)
    session.close(2.0)
    summary = session.summary()
    kinds = [f["kind"] for f in summary["faults"]]
    assert "text-in-tool-call" in kinds and "truncated" not in kinds
    assert summary["text"] == demo.HEALTHY_TEXT
    assert summary["model"] != demo.LETTA_MESSAGE["id"]
    assert (summary["provider_source"], summary["provider_guess"]) == ("payload", "openai-chat")
