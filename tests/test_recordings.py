"""recordings/*.flows as golden regression fixtures: each replayed through
``mitmdump -nr`` with ssemedic and reported by ``ssemedic report``, which must
name the faults the recording was made to show and assemble its text; and the
demo upstream's healthy streams for the providers the library covers."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import MEDIC, ROOT, load_script, mitmdump, run_mitmdump
from mitmproxy.io import FlowReader

from ssemedic.files import cli
from ssemedic.core.session import StreamSession
from ssemedic.core.sse import SSEParser

demo = load_script("demo_upstream")
make = load_script("make_recordings")

RECORDINGS = ROOT / "recordings"
HEALTHY_TEXT: str = demo.HEALTHY_TEXT
HEALTHY_REASONING: str = demo.HEALTHY_REASONING

#: What the default demo upstream lacks: the headers that keep intermediaries from buffering.
HEADERS = frozenset({"missing-no-transform", "missing-accel-buffering"})
#: What ``stagger`` does to every write: cut inside a character and inside a line.
SPLITS = frozenset({"utf8-split", "event-split"})


def truncated_text() -> str:
    """The text ``truncated`` sends before its cut: it keeps the first 3/5 of
    the opening events (role, reasoning, content), then half an event."""
    reasoning, text = demo.tokens(HEALTHY_REASONING), demo.tokens(HEALTHY_TEXT)
    keep = (1 + len(reasoning) + len(text)) * 3 // 5
    return "".join(text[: keep - 1 - len(reasoning)])


@dataclass(frozen=True)
class Expect:
    """What a recording was made to show: every fault kind, and the message."""

    faults: frozenset[str]
    text: str = HEALTHY_TEXT
    reasoning: str = HEALTHY_REASONING
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: (tool_call_id, content) of each tool result (MCP's content items and structuredContent), checked when not None.
    tool_results: list[tuple[str | None, str]] | None = None
    #: The framing, checked when not None.
    framing: str | None = None
    #: Whether the provider's terminal signal arrived, checked when not None.
    complete: bool | None = None


# -- what the streams of #13 hold, read from the published bodies they serve ------
#
# Each is computed from the bytes the demo upstream serves (its tests/field/
# bodies, its spec-built MCP and error streams) with plain json, never by
# ssemedic: see scripts/demo_upstream.py for each source.


def chat_text(body: bytes) -> str:
    """The content deltas of an OpenAI chat SSE body (choice 0)."""
    text = []
    for block in body.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices", []):
                    text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


def gemini_array_text() -> str:
    return "".join(part.get("text", "") for element in demo.gemini_array_elements()
                   for part in json.loads(element)["candidates"][0]["content"]["parts"] if not part.get("thought"))


def cohere_text() -> str:
    payloads = [json.loads(line) for line in demo.chunk_lines(demo.field_body(demo.COHERE_FIELD))]
    return "".join(p["delta"]["message"]["content"]["text"] for p in payloads if p["type"] == "content-delta")


def openrouter_error() -> str:
    body = demo.field_body(demo.OPENROUTER_FIELD).decode()
    return next(json.loads(line[6:])["error"]["message"] for line in body.split("\n")
                if line.startswith("data: ") and '"error"' in line)


MCP_RESULTS = [(str(demo.MCP_REQUEST_ID), demo.MCP_RESULT["content"][0]["text"]),
               (str(demo.MCP_REQUEST_ID), f"[resource link {demo.MCP_RESULT['content'][1]['uri']}]"),
               (str(demo.MCP_REQUEST_ID), json.dumps(demo.MCP_RESULT["structuredContent"], ensure_ascii=False))]


EXPECTED: dict[str, Expect] = {
    "healthy": Expect(HEADERS | SPLITS),
    "healthy-clean": Expect(frozenset()),
    "error-then-done": Expect(HEADERS | SPLITS | {"error-in-stream", "done-after-error"},
                              demo.ERROR_THEN_DONE_TEXT, "", errors=[demo.ERROR_OBJECT["message"]]),
    "no-done": Expect(HEADERS | SPLITS | {"missing-done"}),
    "tool-call": Expect(HEADERS | SPLITS, demo.TOOL_CALL_TEXT, "", tool_calls=list(demo.TOOL_CALLS)),
    "buffered": Expect(HEADERS | {"buffered-burst"}),
    "truncated": Expect(HEADERS | SPLITS | {"truncated"}, truncated_text()),
    "truncated-close": Expect(HEADERS | SPLITS | {"truncated"}, truncated_text()),
    "cr-lines": Expect(HEADERS | SPLITS | {"bom", "cr-line-endings"}),
    "crlf-mixed": Expect(HEADERS | SPLITS | {"mixed-line-endings"}),
    "content-length": Expect(HEADERS | SPLITS | {"content-length-on-stream"}),
    "gzip": Expect(HEADERS | SPLITS | {"compressed-stream"}),
    "invalid-json": Expect(HEADERS | SPLITS | {"invalid-json"}),
    "invalid-utf8": Expect(HEADERS | SPLITS | {"invalid-utf8"},
                           b"".join(demo.invalid_utf8_pieces()).decode("utf-8", "replace")),
    "letta-send-message": Expect(HEADERS | SPLITS | {"text-in-tool-call"},
                                 tool_calls=[("send_message", {"message": HEALTHY_TEXT})]),
    "letta": Expect(frozenset()),
    "ollama": Expect(HEADERS | SPLITS),
    "openai-responses": Expect(frozenset()),
    "anthropic": Expect(frozenset()),
    "gemini": Expect(frozenset()),
    # Bedrock sends neither Cache-Control: no-transform nor X-Accel-Buffering.
    "bedrock": Expect(HEADERS),
    "bedrock-invoke": Expect(HEADERS),
    # The streams of #13 (scripts/demo_upstream.py names each source).
    "gemini-array": Expect(HEADERS, gemini_array_text(), "", framing="jsonarray", complete=True),
    "mcp": Expect(frozenset(), "", "", tool_results=MCP_RESULTS, framing="sse", complete=True),
    "mcp-cut": Expect(frozenset({"truncated"}), "", "", tool_results=[], framing="sse", complete=False),
    "cohere": Expect(HEADERS, cohere_text(), "", complete=True),
    "azure": Expect(HEADERS, chat_text(demo.field_body(demo.AZURE_FIELD)), "", complete=True),
    "azure-filtered": Expect(HEADERS | {"content-filtered"}, chat_text(demo.field_body(demo.AZURE_FILTERED_FIELD)),
                             "", complete=True),
    "openrouter": Expect(HEADERS | {"error-in-stream"}, chat_text(demo.field_body(demo.OPENROUTER_FIELD)), "",
                         errors=[openrouter_error()]),
    "llama-cpp-error": Expect(HEADERS | {"error-in-stream", "done-after-error"}, "", "",
                              errors=[demo.LLAMA_CPP_ERROR["message"]], complete=False),
    "vllm-error": Expect(HEADERS | {"error-in-stream", "done-after-error"}, demo.VLLM_TEXT, "",
                         errors=[demo.VLLM_ERROR["message"]], complete=False),
    # Hostile payloads (scripts/demo_upstream.py HOSTILE_EVENTS): reported, and the rest of the stream kept.
    "hostile-surrogate": Expect(HEADERS | SPLITS, HEALTHY_TEXT + demo.HOSTILE_SURROGATE),
    "hostile-nan": Expect(HEADERS | SPLITS | {"invalid-json"}),
    "hostile-nesting": Expect(HEADERS | SPLITS | {"invalid-json"}),
    "hostile-number": Expect(HEADERS | SPLITS | {"invalid-json"}),
    "hostile-bytes": Expect(HEADERS | SPLITS | {"invalid-json", "invalid-utf8"}),
}
NAMES = sorted(EXPECTED)

def with_known_gaps(names: list[str]) -> list[Any]:
    return list(names)


def flows_file(name: str) -> Path:
    return RECORDINGS / f"{name}.flows"


# -- running them -----------------------------------------------------------------


def replay(name: str, workdir: Path) -> dict[str, Any]:
    """``mitmdump -nr`` the recording with ssemedic; its one JSONL summary."""
    jsonl = workdir / f"{name}.jsonl"
    done = run_mitmdump(["-n", "-r", str(flows_file(name)), "-s", str(MEDIC), "--set", f"ssemedic_jsonl={jsonl}"])
    assert done.returncode == 0, done.stdout + done.stderr
    objects = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    [summary] = [o for o in objects if o["type"] == "summary"]
    return dict(summary)


def report(name: str) -> dict[str, Any]:
    """``ssemedic report --json`` on the recording, in-process: its one stream."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["report", "--json", str(flows_file(name))]) == 0
    [stream] = json.loads(out.getvalue())
    return dict(stream)


@pytest.fixture(scope="module")
def replays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every recording through its own mitmdump -nr, a few at a time."""
    workdir = tmp_path_factory.mktemp("replays")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(NAMES, pool.map(lambda name: replay(name, workdir), NAMES), strict=True))


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    return {name: report(name) for name in NAMES}


def kinds(summary: dict[str, Any]) -> set[str]:
    return {fault["kind"] for fault in summary["faults"]}


def check_message(summary: dict[str, Any], expect: Expect) -> None:
    assert summary["text"] == expect.text
    assert summary["reasoning"] == expect.reasoning
    assert [(c["name"], json.loads(c["arguments"])) for c in summary["tool_calls"]] == expect.tool_calls
    assert [e["message"] for e in summary["errors"]] == expect.errors
    if expect.tool_results is not None:
        assert [(r["tool_call_id"], r["content"]) for r in summary["tool_results"]] == expect.tool_results
    if expect.framing is not None:
        assert summary["framing"] == expect.framing
    if expect.complete is not None:
        assert summary["complete"] is expect.complete


# -- the library ------------------------------------------------------------------


def test_the_library_is_exactly_the_expected_recordings() -> None:
    assert sorted(p.stem for p in RECORDINGS.glob("*.flows")) == NAMES
    assert sorted(r.name for r in make.RECORDINGS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_each_file_holds_one_flow_with_its_raw_body_and_timeline(name: str) -> None:
    with flows_file(name).open("rb") as f:
        [flow] = list(FlowReader(f).stream())
    assert flow.response is not None and flow.response.status_code == 200
    assert flow.response.raw_content
    assert "timeline" in flow.metadata["ssemedic"]


@pytest.mark.parametrize("name", NAMES)
def test_replay_names_the_designed_faults_and_assembles_the_message(
    name: str, replays: dict[str, dict[str, Any]]
) -> None:
    summary = replays[name]
    assert kinds(summary) == EXPECTED[name].faults
    check_message(summary, EXPECTED[name])


@pytest.mark.parametrize("name", with_known_gaps(NAMES))
def test_report_names_the_designed_faults_and_assembles_the_message(
    name: str, reports: dict[str, dict[str, Any]]
) -> None:
    stream = reports[name]
    assert kinds(stream) == EXPECTED[name].faults
    check_message(stream, EXPECTED[name])


@pytest.mark.parametrize("name", with_known_gaps(NAMES))
def test_replay_and_report_agree(
    name: str, replays: dict[str, dict[str, Any]], reports: dict[str, dict[str, Any]]
) -> None:
    live, offline = replays[name], reports[name]
    assert [f["kind"] for f in live["faults"]] == [f["kind"] for f in offline["faults"]]
    for key in ("provider", "text", "reasoning", "tool_calls", "errors", "complete", "finish_reason"):
        assert live[key] == offline[key], key


def test_readme_table_is_what_report_says_now(reports: dict[str, dict[str, Any]]) -> None:
    readme = (RECORDINGS / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index(make.BEGIN) + len(make.BEGIN) : readme.index(make.END)]
    rows = {m["file"]: m for m in re.finditer(
        r"^\| \[`(?P<file>[^`]+)\.flows`\]\S* \| (?P<provider>[^|]+) \|.*\| (?P<faults>[^|]+) \|$", table, re.MULTILINE)}
    assert sorted(rows) == NAMES
    for name, row in rows.items():
        stream = reports[name]
        assert row["provider"].strip() == stream["provider"], name
        faults = re.findall(r"`([^`]+)`", row["faults"])
        assert faults == [f["kind"] for f in stream["faults"]], name


def test_every_request_carries_credentials_as_a_client_sends_them() -> None:
    # Without them, the redaction check below would prove nothing.
    for name in NAMES:
        with flows_file(name).open("rb") as f:
            [flow] = list(FlowReader(f).stream())
        headers = {k.lower() for k in flow.request.headers}
        assert headers & {"authorization", "x-api-key", "x-goog-api-key", "api-key"}, name


def test_no_recording_holds_the_clients_key() -> None:
    leaking = [name for name in NAMES if make.API_KEY.encode() in flows_file(name).read_bytes()]
    assert leaking == []


# -- the demo upstream routes the library was recorded from ----------------------

QUESTION = [{"role": "user", "content": "Почему по частям?"}]
GEMINI = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
#: scenario -> (path, request body): each healthy stream on its real route.
ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "anthropic": ("/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True,
                                   "messages": QUESTION}),
    "openai-responses": ("/v1/responses", {"model": "o4-mini", "stream": True, "input": "Почему по частям?"}),
    "gemini": (GEMINI, {"contents": [{"role": "user", "parts": [{"text": "Почему по частям?"}]}]}),
    "healthy-clean": ("/s/healthy-clean/v1/chat/completions", {"model": "qwen3-32b", "stream": True,
                                                               "messages": QUESTION}),
    "letta": ("/s/letta/v1/agents/agent-1/messages/stream", {"messages": QUESTION}),
}
#: scenario -> (provider, model) as ssemedic should read them.
READ_AS = {"anthropic": ("anthropic", "claude-sonnet-4-5"), "openai-responses": ("openai-responses", "o4-mini"),
           "gemini": ("gemini", "gemini-2.5-flash"), "healthy-clean": ("openai-chat", "qwen3-32b"),
           "letta": ("letta", None)}


@pytest.fixture(scope="module")
def base(upstream: int) -> str:
    return f"http://127.0.0.1:{upstream}"


def fetch(base: str, path: str, body: dict[str, Any]) -> tuple[httpx.Response, list[bytes]]:
    url = f"{base}{path}{'&' if '?' in path else '?'}delay=0.001"
    with httpx.Client(timeout=10) as client, client.stream("POST", url, json=body) as response:
        return response, list(response.iter_raw())


@pytest.mark.parametrize("scenario", list(ROUTES))
def test_healthy_route_streams_the_whole_answer_with_good_headers_and_no_faults(base: str, scenario: str) -> None:
    path, body = ROUTES[scenario]
    response, chunks = fetch(base, path, body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache, no-transform"
    assert response.headers["x-accel-buffering"] == "no"
    session = StreamSession(method="POST", path=path, response_headers=dict(response.headers), started_at=0.0)
    for index, chunk in enumerate(chunks):
        session.feed(chunk, at=0.001 * (index + 1))
    session.close(at=0.001 * (len(chunks) + 1))
    summary = session.summary()
    assert (summary["provider"], summary["model"]) == READ_AS[scenario]
    assert (summary["text"], summary["reasoning"]) == (HEALTHY_TEXT, HEALTHY_REASONING)
    assert summary["complete"] is True and summary["usage"]["output_tokens"] > 0
    assert summary["faults"] == [] and summary["issues"] == []


@pytest.mark.parametrize("scenario", list(ROUTES))
def test_healthy_route_writes_one_whole_event_at_a_time(scenario: str) -> None:
    reply = demo.SCENARIOS[scenario](demo.Call("m", True, 0.0))
    assert len(reply.chunks) > 20
    for _, chunk in reply.chunks:
        parser = SSEParser()
        assert len(parser.feed(chunk)) == 1, chunk
        assert parser.pending_bytes.strip(b"\r\n") == b"", chunk


def test_gemini_frames_lines_with_crlf_and_takes_the_model_from_the_path(base: str) -> None:
    _, chunks = fetch(base, GEMINI.replace("gemini-2.5-flash", "gemini-2.5-pro"), ROUTES["gemini"][1])
    body = b"".join(chunks)
    assert body.count(b"\r\n\r\n") == body.count(b"data: ") and b"\n\n" not in body.replace(b"\r\n", b"")
    payloads = [json.loads(line[6:]) for line in body.split(b"\r\n") if line.startswith(b"data: ")]
    assert {p["modelVersion"] for p in payloads} == {"gemini-2.5-pro"}
    thoughts = [p for p in payloads if p["candidates"][0]["content"]["parts"][0].get("thought")]
    assert thoughts == payloads[: len(thoughts)] and 0 < len(thoughts) < len(payloads)
    assert payloads[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "finishReason" not in payloads[-2]["candidates"][0]


def test_anthropic_names_each_event_and_signs_its_thinking(base: str) -> None:
    _, chunks = fetch(base, *ROUTES["anthropic"])
    events = [(e.event, json.loads(e.data)) for e in SSEParser().feed(b"".join(chunks))]
    assert all(name == data["type"] for name, data in events)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop" and "ping" in names
    deltas = [data["delta"]["type"] for name, data in events if name == "content_block_delta"]
    assert deltas.index("signature_delta") < deltas.index("text_delta")


def test_responses_numbers_its_events_and_ends_with_completed(base: str) -> None:
    _, chunks = fetch(base, *ROUTES["openai-responses"])
    events = [(e.event, json.loads(e.data)) for e in SSEParser().feed(b"".join(chunks))]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(name == data["type"] for name, data in events)
    assert events[-1][1]["response"]["status"] == "completed"
    assert events[-1][1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] > 0


@pytest.mark.parametrize(("path", "body", "text"), [
    ("/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": QUESTION},
     lambda r: r["content"][1]["text"]),
    ("/v1/responses", {"model": "o4-mini", "input": "Почему?"},
     lambda r: r["output"][1]["content"][0]["text"]),
])
def test_anthropic_and_responses_answer_whole_without_stream(base: str, path: str, body: dict[str, Any],
                                                             text: Any) -> None:
    response = httpx.post(f"{base}{path}?delay=0", json=body, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert text(response.json()) == HEALTHY_TEXT


def test_healthy_default_is_unchanged_by_the_clean_variant() -> None:
    # The default keeps its flaws: the library shows both.
    assert demo.SCENARIOS["healthy"](demo.Call("m", True, 0.0)).headers == demo.SSE_HEADERS
    clean = demo.SCENARIOS["healthy-clean"](demo.Call("m", True, 0.0))
    assert b"".join(c for _, c in clean.chunks) == b"".join(demo.healthy_events("m"))


# -- the streams of #13: live through mitmdump, and report on the raw body ---------

#: The recordings of #13's framings and providers.
STREAMS_13 = ["bedrock", "bedrock-invoke", "gemini-array", "mcp", "mcp-cut", "cohere", "azure", "azure-filtered",
              "openrouter", "llama-cpp-error", "vllm-error"]
#: What a summary must agree on, whichever way the stream was read.
MEANING = ("provider", "framing", "text", "reasoning", "tool_calls", "tool_results", "errors", "complete",
           "finish_reason")


def jsonl_summaries(jsonl: Path, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if jsonl.exists():
            found = [o for o in map(json.loads, jsonl.read_text(encoding="utf-8").splitlines())
                     if o.get("type") == "summary"]
            if len(found) >= count:
                return found
        time.sleep(0.05)
    raise AssertionError(f"{len(found)} of {count} summaries in {jsonl}")


@pytest.fixture(scope="module")
def live_13(upstream: int, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, bytes, dict[str, Any]]]:
    """Each stream of #13 requested as its recording was (path, body, headers)
    through one live mitmdump with ssemedic, and directly: (bytes through,
    bytes direct, ssemedic's JSONL summary)."""
    workdir = tmp_path_factory.mktemp("live13")
    jsonl = workdir / "events.jsonl"
    out: dict[str, tuple[bytes, bytes]] = {}
    with mitmdump(upstream, workdir, "--set", f"ssemedic_jsonl={jsonl}", "--set", "ssemedic_log=summary") as mitm:
        for name in STREAMS_13:
            recording = make.BY_NAME[name]
            got = []
            for base in (mitm.base, f"http://127.0.0.1:{upstream}"):
                with httpx.Client(timeout=20) as client, client.stream(
                        "POST", recording.url(base, 0.001), json=recording.body, headers=recording.headers) as reply:
                    assert reply.status_code == 200
                    got.append(b"".join(reply.iter_raw()))
            out[name] = (got[0], got[1])
            jsonl_summaries(jsonl, len(out))  # one at a time: the summaries come in request order
        summaries = jsonl_summaries(jsonl, len(STREAMS_13))
    return {name: (*out[name], summary) for name, summary in zip(STREAMS_13, summaries, strict=True)}


@pytest.mark.parametrize("name", STREAMS_13)
def test_live_through_mitmdump_byte_for_byte_and_read(name: str, live_13: dict[str, Any]) -> None:
    through, direct, summary = live_13[name]
    assert through == direct and through
    assert kinds(summary) == EXPECTED[name].faults
    check_message(summary, EXPECTED[name])


@pytest.mark.parametrize("name", STREAMS_13)
def test_report_on_the_raw_body_whatever_its_name_reads_what_the_flow_does(
    name: str, reports: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    with flows_file(name).open("rb") as f:
        [flow] = list(FlowReader(f).stream())
    raw = tmp_path / "body.bin"  # no extension to go by: the bytes are sniffed
    raw.write_bytes(flow.response.raw_content)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["report", "--json", str(raw)]) == 0
    [offline] = json.loads(out.getvalue())
    from_flow = reports[name]
    if name == "llama-cpp-error":
        # Its body is an error: field and [DONE]: no payload names a provider, the request path did,
        # and for a generic stream [DONE] is the end.
        assert (offline["provider"], from_flow["provider"]) == ("generic", "openai-chat")
        assert (offline["complete"], from_flow["complete"]) == (True, False)
        from_flow = {**from_flow, "provider": "generic", "complete": True}
    for key in MEANING:
        assert offline[key] == from_flow[key], key
    # Without headers or a timeline, only what the body itself shows is diagnosed.
    body_faults = EXPECTED[name].faults - HEADERS
    assert kinds(offline) == body_faults
