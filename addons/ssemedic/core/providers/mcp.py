"""MCP Streamable HTTP (spec 2025-03-26 and 2025-06-18): SSE carrying JSON-RPC 2.0 messages.

A client POSTs one JSON-RPC request with ``Accept: application/json,
text/event-stream``; the server may answer with an event stream that carries
notifications (``notifications/progress``, ``notifications/message``...),
perhaps requests of its own, and then the JSON-RPC response: a ``result`` or
an ``error``, with the request's ``id``. That response is the terminal
signal. The session does not see the request body, so the first response of
the stream ends it, whatever its id. A ``tools/call`` result is shown as tool
results (``content`` items: text, image, audio, resource, resource_link;
``structuredContent``; ``isError``), any other result as one tool result
holding its JSON; progress and log notifications (and the server's own
requests) carry no model output: each gives an empty ``Meta``, so that a
stream of them that ends without the response is diagnosed as cut, not empty.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..events import ServerSentEvent
from ..parts import Done, Error, Meta, Part, ToolResult
from .base import Interpreter, Provider, as_int, as_str, encode_event


def _item(item: Any) -> str:
    """One ``content`` item as text: text itself, anything else described."""
    if not isinstance(item, dict):
        raise TypeError(f"content item is {type(item).__name__}, not an object")
    kind = item.get("type")
    if kind == "text":
        return str(item.get("text", ""))
    if kind in ("image", "audio"):
        data = item.get("data")
        size = len(data) if isinstance(data, str) else 0
        return f"[{kind} {item.get('mimeType') or '?'}, {size:,} base64 chars]"
    if kind == "resource":
        resource = item.get("resource")
        if isinstance(resource, dict):
            text = resource.get("text")
            return text if isinstance(text, str) else f"[resource {resource.get('uri') or '?'}]"
    if kind == "resource_link":
        return f"[resource link {item.get('uri') or '?'}]"
    return json.dumps(item, ensure_ascii=False)[:500]


def _response(message: dict[str, Any]) -> list[Part]:
    id_ = message.get("id")
    key = None if id_ is None else str(id_)
    error = message.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise TypeError(f"error is {type(error).__name__}, not an object")
        code = as_int(error.get("code"))
        return [Error(as_str(error.get("message")) or "JSON-RPC error", "jsonrpc-error",
                      None if code is None else str(code)), Done("response")]
    result = message.get("result")
    parts: list[Part] = []
    if isinstance(result, dict):
        failed = result.get("isError") is True
        content = result.get("content")
        if content is not None:
            if not isinstance(content, list):
                raise TypeError(f"result.content is {type(content).__name__}, not a list")
            parts += [ToolResult(_item(item), key, None, failed) for item in content]
        if "structuredContent" in result:
            structured = json.dumps(result["structuredContent"], ensure_ascii=False)
            parts.append(ToolResult(structured, key, "structuredContent", failed))
        if content is None and "structuredContent" not in result:  # tools/list, initialize...: the result itself
            parts.append(ToolResult(json.dumps(result, ensure_ascii=False)[:2000], key, "result"))
    parts.append(Done("response"))
    return parts


def _message(interp: McpInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    # A batch (allowed by 2025-03-26, dropped by 2025-06-18) is read message by message.
    messages = payload if isinstance(payload, list) else [payload]
    parts: list[Part] = []
    for message in messages:
        if not isinstance(message, dict):
            raise TypeError(f"JSON-RPC message is {type(message).__name__}, not an object")
        if "method" not in message and ("result" in message or "error" in message):
            parts += _response(message)
        elif "method" in message:
            # A notification or the server's own request: no model output, but
            # the stream is alive with content (a stream of them that ends is cut, not empty).
            parts.append(Meta())
    return parts


class McpInterpreter(Interpreter):
    handlers = {"message": _message}

    def key(self, event: ServerSentEvent, payload: Any) -> str:
        return "message" if isinstance(payload, (dict, list)) else "other"


def _match_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    if method != "POST":
        return False
    if "mcp-session-id" in headers or "mcp-protocol-version" in headers:
        return True
    accept = headers.get("accept", "").lower()
    return "application/json" in accept and "text/event-stream" in accept and path.rstrip("/").endswith("/mcp")


def _match_payload(event: ServerSentEvent, payload: Any) -> bool:
    first = payload[0] if isinstance(payload, list) and payload else payload
    return isinstance(first, dict) and first.get("jsonrpc") == "2.0"


def _make_error_event(framing: str, message: str) -> bytes:
    """A JSON-RPC error response (``-32603`` internal error); its id is not known here."""
    return encode_event({"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": message}}, framing,
                        event="message")


PROVIDER = Provider(
    name="mcp",
    operation=lambda path: "execute_tool",
    interpreter=McpInterpreter,
    match_request=_match_request,
    match_payload=_match_payload,
    order=80,
    terminal="the JSON-RPC response (a result or an error)",
    missing_terminal="not the JSON-RPC response to the request",
    error_event=_make_error_event,
)
