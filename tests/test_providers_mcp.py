"""MCP Streamable HTTP (spec 2025-03-26/2025-06-18): an SSE stream of JSON-RPC 2.0
messages answering one POSTed request, through a whole StreamSession.

No recorded Streamable HTTP body was found in the MCP SDKs' tests (they build
their messages in code), so these bodies are constructed from the
specification (modelcontextprotocol.io, "Transports" and "Tools",
"Progress", "Logging"): ``event: message`` blocks whose ``data`` is one
JSON-RPC message, as the python-sdk's server writes them.
"""

from __future__ import annotations

import json
from typing import Any

import helpers
from helpers import CHUNKING_FAULTS, run_session, sse_event

from ssemedic.core.parts import Done, Meta, ToolResult
from ssemedic.core.providers import detect_from_request
from ssemedic.core.session import StreamSession

PATH = "/mcp"
REQUEST_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
                   "Mcp-Session-Id": "1868a90c-4f5b-4a3c-9b2e-c1a2f37d8e11", "MCP-Protocol-Version": "2025-06-18"}


def message(payload: dict[str, Any]) -> bytes:
    return sse_event({"jsonrpc": "2.0", **payload}, "message")


def progress(done: int, total: int, text: str) -> bytes:
    return message({"method": "notifications/progress",
                    "params": {"progressToken": "tok-1", "progress": done, "total": total, "message": text}})


LOG = message({"method": "notifications/message", "params": {"level": "info", "logger": "weather", "data": "Запрос к API"}})
RESULT = message({"id": 7, "result": {
    "content": [
        {"type": "text", "text": "Москва: 21 °C, ясно ☀️"},
        {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "file:///report.md", "mimeType": "text/markdown", "text": "# Отчёт"}},
    ],
    "structuredContent": {"temperature": 21, "conditions": "ясно"},
    "isError": False,
}})
STREAM = progress(1, 3, "fetching") + LOG + progress(2, 3, "parsing") + RESULT


def run_everywhere(data: bytes, **kwargs: Any) -> StreamSession:
    kwargs.setdefault("method", "POST")
    kwargs.setdefault("path", PATH)
    kwargs.setdefault("request_headers", REQUEST_HEADERS)
    kwargs.setdefault("content_type", "text/event-stream")
    return helpers.run_everywhere(data, **kwargs)


def faults(session: StreamSession) -> list[str]:
    return [str(f.kind) for f in session.faults if f.kind not in CHUNKING_FAULTS]


def test_detected_from_the_request() -> None:
    assert detect_from_request("POST", PATH, REQUEST_HEADERS) == "mcp"
    assert detect_from_request("POST", "/mcp", {"Accept": "application/json, text/event-stream"}) == "mcp"
    assert detect_from_request("GET", "/mcp", {"Accept": "text/event-stream"}) is None


def test_detected_from_the_payload_alone() -> None:
    session = run_session([STREAM], content_type="text/event-stream")
    assert (session.provider, session.provider_source) == ("mcp", "payload")


def test_a_tool_result_after_notifications_in_every_chunking() -> None:
    session = run_everywhere(STREAM)
    results = session.message.tool_results
    assert [(r.content, r.tool_call_id, r.name, r.is_error) for r in results] == [
        ("Москва: 21 °C, ясно ☀️", "7", None, False),
        ("[image image/png, 12 base64 chars]", "7", None, False),
        ("# Отчёт", "7", None, False),
        ('{"temperature": 21, "conditions": "ясно"}', "7", "structuredContent", False),
    ]
    assert session.complete
    assert faults(session) == []
    assert session.event_count == 4


def test_notifications_carry_no_output() -> None:
    session = StreamSession(method="POST", path=PATH, request_headers=REQUEST_HEADERS, content_type="text/event-stream")
    records = session.feed(progress(1, 2, "half") + LOG, at=0.0)
    assert [r.parts for r in records] == [(Meta(),), (Meta(),)]
    assert not session.complete


def test_a_tool_that_failed_is_an_error_result() -> None:
    body = message({"id": 2, "result": {"content": [{"type": "text", "text": "city not found"}], "isError": True}})
    session = run_everywhere(body)
    assert [(r.content, r.is_error) for r in session.message.tool_results] == [("city not found", True)]
    assert session.complete


def test_a_jsonrpc_error_is_an_error_and_ends_the_stream() -> None:
    body = progress(1, 2, "x") + message({"id": 3, "error": {"code": -32602, "message": "Unknown tool: wether"}})
    session = run_everywhere(body)
    assert [(e.message, e.code) for e in session.message.errors] == [("Unknown tool: wether", "-32602")]
    assert session.complete
    assert faults(session) == ["error-in-stream"]


def test_a_stream_without_the_response_is_truncated() -> None:
    session = run_everywhere(progress(1, 3, "fetching") + LOG)
    assert not session.complete
    assert faults(session) == ["truncated"]
    assert "mcp stream ended without its terminal signal" in session.faults[0].detail


def test_a_result_without_content_is_shown_whole() -> None:
    session = run_everywhere(message({"id": 1, "result": {"tools": [{"name": "get_weather"}]}}))
    assert [(r.name, json.loads(r.content)) for r in session.message.tool_results] == [
        ("result", {"tools": [{"name": "get_weather"}]})]
    assert faults(session) == []


def test_a_server_request_is_not_the_response() -> None:
    sampling = message({"id": "srv-1", "method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}})
    session = run_everywhere(sampling)
    assert not session.complete and faults(session) == ["truncated"]


def test_the_response_is_a_done_part() -> None:
    session = StreamSession(method="POST", path=PATH, request_headers=REQUEST_HEADERS, content_type="text/event-stream")
    parts = [p for r in session.feed(RESULT, at=0.0) for p in r.parts]
    assert isinstance(parts[0], ToolResult) and parts[-1] == Done("response")
