"""The contract every provider module fulfils, and the JSON plumbing they share.

A provider module defines one module-level ``PROVIDER = Provider(...)``:
its name, its framing, how to recognise it from a request or a payload, an
interpreter class, and the rules the rest of ssemedic applies to its streams
(its terminal signal, an end marker its clients wait for, the shape of an
error event, a rewrite of its own). No module outside this package decides
anything by a provider's name: it reads these fields. The interpreter keeps whatever per-stream state the format
needs (tool calls by index, open content blocks...) and turns each event into
parts through a table from event type to handler.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ..events import ServerSentEvent
from ..events import dumps
from ..events import loads as loads  # re-exported: the payload decoder every provider uses
from ..message import Message
from ..parts import Malformed, Part

#: A handler gets the interpreter (for its state), the event and its decoded JSON.
Handler = Callable[[Any, ServerSentEvent, Any], list[Part]]

class Interpreter:
    """Turns one stream's events into parts. Subclasses fill ``handlers``.

    The default ``interpret`` decodes the event's data as JSON and dispatches
    on ``key(event, payload)``; an unknown key yields no parts.
    """

    handlers: ClassVar[Mapping[str, Handler]] = {}

    def interpret(self, event: ServerSentEvent) -> list[Part]:
        try:
            payload = loads(event.data)  # strict JSON: no NaN, and every limit is a JSONDecodeError
        except json.JSONDecodeError as exc:
            return [Malformed("invalid-json", f"{exc.msg} at position {exc.pos}: {_excerpt(event.data)}")]
        handler = self.handlers.get(self.key(event, payload))
        if handler is None:
            return []
        try:
            return handler(self, event, payload)
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            # A payload of the right type but the wrong shape: data, not a crash.
            return [Malformed("unexpected-shape", f"{type(exc).__name__}: {exc}: {_excerpt(event.data)}")]

    def key(self, event: ServerSentEvent, payload: Any) -> str:
        """Which handler an event goes to; by default the SSE event type."""
        return event.event

    def is_complete(self, message: Message) -> bool:
        """Whether the provider's terminal signal has arrived."""
        return bool(message.markers)


class Rewriter(Protocol):
    """A provider's own rewrite of its events (the ``letta`` repair), one per stream."""

    def rewrite(self, index: int, event: ServerSentEvent, parts: tuple[Part, ...], changes: Counter[str]) -> bytes:
        """The bytes to send for event number ``index`` (its ``raw`` when nothing
        changes), counting each kind of change made in ``changes``."""
        ...


def encode_event(payload: Any, framing: str, event: str | None = None) -> bytes:
    """One whole event carrying ``payload`` as JSON: an NDJSON line, an SSE
    block (with an ``event:`` line when ``event`` is given), or a JSON array's element."""
    data = dumps(payload)
    if framing == "jsonarray":  # a bare element: the repairer puts it into the array
        return data.encode()
    if framing == "ndjson":
        return (data + "\n").encode()
    return ((f"event: {event}\n" if event else "") + f"data: {data}\n\n").encode()


_TEXT_COMPLETION = re.compile(r"(?<!chat)/completions/?$|/api/generate/?$")


def chat_operation(path: str) -> str:
    """gen_ai.operation.name: a plain prompt completion (OpenAI's /completions,
    Ollama's /api/generate) is text_completion, anything else chat."""
    return "text_completion" if _TEXT_COMPLETION.search(path) else "chat"


def openai_error_event(framing: str, message: str) -> bytes:
    """OpenAI's error object, which most clients of an unknown format read too."""
    return encode_event({"error": {"message": message, "type": "upstream_error", "code": "upstream_truncated"}},
                        framing)


@dataclass(frozen=True, slots=True)
class Provider:
    """What the registry knows about one upstream format."""

    name: str
    interpreter: type[Interpreter]
    #: Does a request (method, path without query, lower-cased headers) target this provider?
    match_request: Callable[[str, str, Mapping[str, str]], bool]
    #: Does the first JSON payload of a stream look like this provider's?
    match_payload: Callable[[ServerSentEvent, Any], bool]
    framing: str = "sse"  # or "ndjson"
    #: Lower wins when several providers' payload matchers accept the same event.
    order: int = 100
    #: What is missing when an end marker came without the terminal signal
    #: (the detail of a ``truncated`` fault).
    missing_terminal: str = "not the stream's terminal signal"
    #: What ends a whole answer, in words; None when the format has none to
    #: check (then no stream of it is judged truncated or empty).
    terminal: str | None = "its terminal signal"
    #: An end marker the clients wait for after the terminal signal (OpenAI
    #: chat's ``[DONE]``): its absence is a fault, and the ``done`` repair adds it.
    end_marker: str | None = None
    #: An error event in this provider's shape, what its clients read as an
    #: error: ``error_event(framing, message)``. The ``done`` repair sends it
    #: instead of a silent cut.
    error_event: Callable[[str, str], bytes] = openai_error_event
    #: The provider's own rewrite, enabled by the ``letta`` repair:
    #: ``rewriter(shape)`` for one stream, ``shape`` being the option's resolved value.
    rewriter: Callable[[str], Rewriter] | None = None
    #: Whether a request path (its query included) asks for the stream as one
    #: JSON array sent element by element (framing ``jsonarray``, Gemini without
    #: ``alt=sse``); None when the provider never streams so.
    json_array: Callable[[str], bool] | None = None
    #: Its gen_ai.provider.name in the OpenTelemetry GenAI conventions (None: ``name``).
    semconv_name: str | None = None
    #: The gen_ai.operation.name of a request to a path (query excluded).
    operation: Callable[[str], str] = chat_operation

    def end_marker_event(self, framing: str) -> bytes:
        """The end marker as one whole event of ``framing`` (b"" when there is none)."""
        if self.end_marker is None or framing == "jsonarray":  # an array has no end marker
            return b""
        return f"{self.end_marker}\n".encode() if framing == "ndjson" else f"data: {self.end_marker}\n\n".encode()


def _excerpt(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def dig(obj: Any, *path: str | int) -> Any:
    """``obj[p0][p1]...`` or None when any step is missing or of the wrong type."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or not -len(obj) <= step < len(obj):
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[step] if isinstance(step, int) else obj.get(step)
        if obj is None:
            return None
    return obj


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def error_message(payload: Any) -> str:
    """A readable message from the usual error shapes ({"message"}, {"error": {...}}, a string)."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        for key in ("message", "detail", "error"):
            value = payload.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, dict):
                return error_message(value)
    return json.dumps(payload, ensure_ascii=False)[:500]
