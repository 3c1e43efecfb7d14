"""Streams from the field: bodies published in SDK and framework test suites
and in provider docs (tests/field/, sources in tests/field/SOURCES.md), run
through a whole StreamSession in several chunkings.

What each stream contains is worked out here from the fixture itself, with
plain JSON parsing and the provider's documented shape, never from
ssemedic's output; where the assembly is not plain concatenation (Vertex
streamed function-call arguments) the expectation is the one the fixture's
own test suite publishes (vercel/ai's snapshots, kept in
tests/field/gemini/vercel-expected-tool-calls.json).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from helpers import CHUNKING_FAULTS, run_session, summary_without_timing

from ssemedic.core.session import StreamSession

FIELD = Path(__file__).parent / "field"


@dataclass(frozen=True)
class Expected:
    """What a stream really contains."""

    text: str
    finish_reason: str | None
    tool_calls: list[tuple[str | None, Any]] = field(default_factory=list)  # (name, decoded arguments)
    reasoning: str | None = None  # checked when not None
    refusal: str | None = None
    errors: list[str] = field(default_factory=list)
    complete: bool = True
    tokens: tuple[int | None, int | None] | None = None  # (input, output), checked when not None
    #: The faults (beyond the chunking ones), each with words its detail must hold; checked when not None.
    faults: dict[str, list[str]] | None = None
    keepalives: int | None = None  # SSE comment lines, checked when not None


# -- reading the fixtures ---------------------------------------------------------


def sse_payloads(body: bytes) -> list[tuple[str | None, Any]]:
    """(event type, decoded data) of each event of an SSE body whose data lines
    hold one JSON document each; ``[DONE]`` is skipped."""
    out: list[tuple[str | None, Any]] = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data and data != ["[DONE]"]:
            out.append((event, json.loads("\n".join(data))))
    return out


def chunk_lines(raw: bytes) -> list[Any]:
    """The JSON documents of a vercel/ai ``*.chunks.txt`` file (one a line)."""
    return [json.loads(line) for line in raw.decode().split("\n") if line.strip()]


def sdk_lines(raw: bytes) -> bytes:
    """The body anthropic-sdk-python's streaming tests serve for a fixture:
    each line plus ``\n`` (tests/lib/streaming/helpers.py, get_response)."""
    return b"".join(line + b"\n" for line in raw.splitlines())


def ends_whole(body: bytes) -> bool:
    """Whether an SSE body's last event is dispatched: the WHATWG parser
    drops an event that the stream ends in before its blank line (9.2.6)."""
    return body.replace(b"\r\n", b"\n").endswith(b"\n\n")


def as_sse(raw: bytes) -> bytes:
    """The body vercel/ai's tests serve for a ``*.chunks.txt`` file: each
    non-blank line as ``data: <line>\\n\\n`` (prepareChunksFixtureResponse)."""
    return b"".join(b"data: " + line + b"\n\n" for line in raw.split(b"\n") if line.strip())


# -- what each provider's stream says, by its documented shape --------------------


def openai_chat(body: bytes) -> Expected:
    text, refusal, finish, errors = [], [], None, []
    calls: dict[int, list[Any]] = {}
    for _, payload in sse_payloads(body):
        if "error" in payload:
            errors.append(payload["error"]["message"])
        for choice in payload.get("choices", []):
            if choice["index"] != 0:
                continue
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            refusal.append(delta.get("refusal") or "")
            for call in delta.get("tool_calls") or []:
                entry = calls.setdefault(call["index"], [None, ""])
                entry[0] = entry[0] or call.get("function", {}).get("name")
                entry[1] += call.get("function", {}).get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return Expected(
        "".join(text),
        finish,
        [(name, json.loads(args)) for name, args in calls.values()],
        refusal="".join(refusal),
        errors=errors,
    )


def azure(body: bytes) -> Expected:
    """An OpenAI chat stream with Azure's filter annotations: the categories
    the filter marked ``filtered`` (prompt and answer) must be named in one
    ``content-filtered`` fault, and nothing else may be called wrong."""
    named = []
    for _, payload in sse_payloads(body):
        for entry in payload.get("prompt_filter_results") or payload.get("prompt_annotations") or []:
            named += [c for c, v in entry["content_filter_results"].items() if v.get("filtered")]
        for choice in payload["choices"]:
            named += [c for c, v in choice.get("content_filter_results", {}).items() if v.get("filtered")]
    plain = openai_chat(body)
    filtered = named or plain.finish_reason == "content_filter"
    return replace(plain, faults={"content-filtered": named} if filtered else {})


def openrouter(body: bytes) -> Expected:
    """An OpenRouter stream: its ``:`` comment lines are keep-alives, its error chunk an error."""
    comments = sum(line.startswith(b":") for line in body.split(b"\n"))
    plain = openai_chat(body)
    return replace(plain, faults={"error-in-stream": plain.errors}, keepalives=comments)


def anthropic(raw: bytes) -> Expected:
    body = sdk_lines(raw)
    text, stop = [], None
    calls: dict[int, list[Any]] = {}
    for _, payload in sse_payloads(body):
        kind = payload["type"]
        if kind == "content_block_start" and payload["content_block"]["type"] == "tool_use":
            calls[payload["index"]] = [payload["content_block"]["name"], ""]
        elif kind == "content_block_delta":
            delta = payload["delta"]
            if delta["type"] == "text_delta":
                text.append(delta["text"])
            elif delta["type"] == "input_json_delta":
                calls[payload["index"]][1] += delta["partial_json"]
        elif kind == "message_delta":
            stop = payload["delta"].get("stop_reason") or stop
    # message_stop is the end; when it is the undispatched last event, the stream did not end.
    ends = ends_whole(body) or b"message_stop" not in body.rsplit(b"\n\n", 1)[-1]
    return Expected("".join(text), stop, [(name, json.loads(args or "{}")) for name, args in calls.values()], complete=ends)


def gemini(raw: bytes, name: str) -> Expected:
    text, thoughts, finish = [], [], None
    whole_calls: list[tuple[str | None, Any]] = []
    for payload in chunk_lines(raw):
        for candidate in payload.get("candidates", [])[:1]:
            for part in candidate.get("content", {}).get("parts", []):
                if "text" in part:
                    (thoughts if part.get("thought") else text).append(part["text"])
                call = part.get("functionCall")
                if call is not None and "willContinue" not in call and "partialArgs" not in call and call:
                    whole_calls.append((call.get("name"), call.get("args") or {}))
            finish = candidate.get("finishReason") or finish
    published = json.loads((FIELD / "gemini" / "vercel-expected-tool-calls.json").read_text())
    calls = [(n, json.loads(args)) for n, args in published[name]] if name in published else whole_calls
    return Expected("".join(text), finish, calls, reasoning="".join(thoughts))


def ollama(body: bytes) -> Expected:
    text, finish, errors, calls = [], None, [], []
    tokens = None
    for line in body.decode().splitlines():
        payload = json.loads(line)
        if "error" in payload:
            errors.append(payload["error"])
            continue
        message = payload.get("message") or {}
        text.append(message.get("content") or payload.get("response") or "")
        calls += [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or []]
        if payload.get("done") is True:
            finish = payload.get("done_reason") or "stop"
            if "eval_count" in payload:
                tokens = (payload.get("prompt_eval_count"), payload["eval_count"])
    return Expected("".join(text), finish, calls, errors=errors, complete=finish is not None, tokens=tokens)


def openai_responses(raw: bytes) -> Expected:
    text, reasoning, calls, status = [], [], [], None
    for payload in chunk_lines(raw):
        if payload["type"] == "response.output_text.delta":
            text.append(payload["delta"])
        elif payload["type"] == "response.reasoning_summary_text.delta":
            reasoning.append(payload["delta"])
        elif payload["type"] in ("response.completed", "response.incomplete", "response.failed"):
            status = payload["response"]["status"]
            for item in payload["response"]["output"]:
                if item["type"] == "function_call":
                    calls.append((item["name"], json.loads(item["arguments"])))
                elif item["type"] == "custom_tool_call":
                    calls.append((item["name"], item["input"]))
    return Expected("".join(text), status, calls, reasoning="".join(reasoning))


def cohere_sse(raw: bytes) -> bytes:
    """Cohere's SSE framing for payloads printed one a line: each as an
    ``event: <its type>`` line and a ``data:`` line (Cohere's streaming docs)."""
    return b"".join(b"event: %s\ndata: %s\n\n" % (json.loads(line)["type"].encode(), line)
                    for line in raw.split(b"\n") if line.strip())


def cohere(raw: bytes) -> Expected:
    text, finish, tokens = [], None, None
    for payload in chunk_lines(raw):
        if payload["type"] == "content-delta":
            text.append(payload["delta"]["message"]["content"].get("text", ""))
        elif payload["type"] == "message-end":
            finish = payload["delta"]["finish_reason"]
            counts = payload["delta"]["usage"]["tokens"]
            tokens = (counts["input_tokens"], counts["output_tokens"])
    return Expected("".join(text), finish, tokens=tokens, complete=finish is not None)


# -- the manifest -------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    file: str
    path: str
    provider: str
    body: Callable[[bytes], bytes]
    expected: Callable[[bytes], Expected]
    xfail: str | None = None


def _same(raw: bytes) -> bytes:
    return raw


CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
AZURE_CHAT = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
VERTEX = "/v1/projects/demo/locations/global/publishers/google/models/gemini-3.1-pro-preview:streamGenerateContent?alt=sse"
GEMINI_API = "/v1beta/models/gemini-3-pro-preview:streamGenerateContent?alt=sse"


def _gemini(name: str, path: str) -> Stream:
    return Stream(f"gemini/{name}.chunks.txt", path, "gemini", as_sse, lambda raw: gemini(raw, name))


STREAMS = [
    *(
        Stream(f"openai_chat/{h}.sse", CHAT, "openai-chat", _same, openai_chat)
        for h in ("e2aad469b71d", "4cc50a6135d2", "173417d55340", "c6aa7e397b71", "f82268f2fefd")
    ),
    *(
        Stream(f"anthropic/{n}.sse", MESSAGES, "anthropic", sdk_lines, anthropic)
        for n in ("basic_response", "tool_use_response", "refusal_response")
    ),
    *(
        Stream(f"azure_openai/{n}.sse", AZURE_CHAT, "openai-chat", _same, azure)
        for n in ("quarkus-langchain4j-streaming", "docs-async-filter-passes", "docs-async-filter-blocked")
    ),
    Stream("openrouter/docs-mid-stream-error.sse", CHAT, "openai-chat", _same, openrouter),
    Stream("cohere/llm-provider-reference-streaming.chunks.txt", "/v2/chat", "cohere", cohere_sse, cohere),
    _gemini("google-text", GEMINI_API),
    _gemini("google-reasoning", GEMINI_API),
    _gemini("google-stream-tool-call-arguments", VERTEX),
    _gemini("google-vertex-stream-tool-call-arguments-nested.1", VERTEX),
    _gemini("google-stream-no-args-tool-call", VERTEX),
    _gemini("google-stream-tool-call-array-arguments-missing-terminal-function-call", VERTEX),
    Stream("ollama/docs-streaming.ndjson", "/api/generate", "ollama", _same, ollama),
    Stream("ollama/docs-errors-mid-stream.ndjson", "/api/generate", "ollama", _same, ollama),
    Stream("ollama/docs-api-chat-stream-tools.ndjson", "/api/chat", "ollama", _same, ollama),
    Stream("ollama/ollama-python-chat-stream.ndjson", "/api/chat", "ollama", _same, ollama),
    Stream("ollama/ollama-python-generate-stream.ndjson", "/api/generate", "ollama", _same, ollama),
    *(
        Stream(f"openai_responses/{n}.chunks.txt", "/v1/responses", "openai-responses", as_sse, openai_responses)
        for n in ("github-copilot-id-rotation.1", "openai-client-tool-search.2")
    ),
    Stream("openai_responses/openai-custom-tool.1.chunks.txt", "/v1/responses", "openai-responses", as_sse,
           openai_responses),
]


def few_chunkings(data: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """Whole, byte by byte, cut in two at a few points (one inside a multi-byte
    character when there is one), and in fixed-size pieces."""
    yield "whole", [data]
    yield "bytewise", [data[i : i + 1] for i in range(len(data))]
    points = {len(data) // 3, len(data) // 2, len(data) - 1}
    points |= {next((i for i in range(len(data)) if data[i] & 0xC0 == 0x80), 1)}
    for i in sorted(p for p in points if 0 < p < len(data)):
        yield f"split@{i}", [data[:i], data[i:]]
    for size in (7, 61, 1024):
        yield f"pieces-of-{size}", [data[i : i + size] for i in range(0, len(data), size)]


def _param(stream: Stream) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=stream.xfail)] if stream.xfail else []
    return pytest.param(stream, id=stream.file, marks=marks)


def _error_faults(session: StreamSession) -> list[str]:
    return [f"{f.kind}: {f.detail}" for f in session.faults if f.severity == "error" and f.kind not in CHUNKING_FAULTS]


@pytest.mark.parametrize("stream", [_param(s) for s in STREAMS])
def test_field_stream(stream: Stream) -> None:
    raw = (FIELD / stream.file).read_bytes()
    body = stream.body(raw)
    expected = stream.expected(raw)
    first: dict[str, Any] | None = None
    for name, chunks in few_chunkings(body):
        session = run_session(chunks, method="POST", path=stream.path)
        message = session.message
        assert session.provider == stream.provider, name
        assert message.text == expected.text, name
        if isinstance(expected.tool_calls[0][1] if expected.tool_calls else None, str):
            calls: list[tuple[str | None, Any]] = [(c.name, c.arguments) for c in message.tool_calls.values()]
        else:
            calls = [(c.name, json.loads(c.arguments) if c.arguments else {}) for c in message.tool_calls.values()]
        assert calls == expected.tool_calls, name
        assert message.finish_reason == expected.finish_reason, name
        if expected.reasoning is not None:
            assert message.reasoning == expected.reasoning, name
        if expected.refusal is not None:
            assert message.refusal == expected.refusal, name
        assert [e.message for e in message.errors] == expected.errors, name
        if expected.tokens is not None:
            assert message.usage is not None, name
            assert (message.usage["input_tokens"], message.usage["output_tokens"]) == expected.tokens, name
        assert session.complete is expected.complete, name
        assert session.malformed_events == [], name
        if expected.complete and not expected.errors:
            assert _error_faults(session) == [], name
        if expected.faults is not None:
            found = {f.kind: f.detail for f in session.faults if f.kind not in CHUNKING_FAULTS}
            assert sorted(found) == sorted(expected.faults), name
            for kind, words in expected.faults.items():
                assert all(w in found[kind] for w in words), (name, found[kind])
        if expected.keepalives is not None:
            assert session.timing().keepalives == expected.keepalives, name
        summary = summary_without_timing(session)
        if first is None:
            first = summary
        else:
            assert summary == first, name


def test_every_field_file_is_in_the_manifest_and_the_sources() -> None:
    files = {str(p.relative_to(FIELD)) for p in FIELD.rglob("*") if p.is_file()} - {"SOURCES.md"}
    files -= {"gemini/vercel-expected-tool-calls.json"}
    assert files == {s.file for s in STREAMS}
    sources = (FIELD / "SOURCES.md").read_text()
    assert [f for f in sorted(files) if f not in sources] == []


@pytest.mark.parametrize("stream", [pytest.param(s, id=s.file) for s in STREAMS if s.provider == "ollama"])
def test_ollama_field_stream_recognised_by_its_payload_alone(stream: Stream) -> None:
    # Ollama is reached by many paths (proxies, /ollama/api/..., gateways):
    # its lines must be recognised without one.
    raw = (FIELD / stream.file).read_bytes()
    session = run_session([stream.body(raw)])
    assert (session.provider, session.framing) == ("ollama", "ndjson")
    assert session.message.text == stream.expected(raw).text
