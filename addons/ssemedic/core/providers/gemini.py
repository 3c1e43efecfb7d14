"""Google Gemini ``:streamGenerateContent`` streams (GenerateContentResponse payloads),
as SSE (``?alt=sse``) or, without it, as one JSON array sent element by element.

Every ``data:`` (or array element) is a whole GenerateContentResponse: the new parts of candidate
0, and on the way ``finishReason``, cumulative ``usageMetadata``, the model
version and the response id. There is no end marker; the finish reason (or a
blocked prompt) is the terminal signal. Function calls usually arrive whole
(``args`` is an object), one per part, so each part is a call of its own keyed
by a running counter. Vertex with ``streamFunctionCallArguments`` streams one
call over many parts instead (see ``_Streamed``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from ..events import ServerSentEvent
from ..message import Message
from ..parts import Error, Meta, Part, Reasoning, Stop, Text, ToolCall, Usage
from .base import Interpreter, Provider, as_int, as_str, dig, encode_event, error_message


def _typed(value: Any, kind: type[Any], what: str) -> Any:
    """``value`` if it is a ``kind``; a TypeError makes the payload Malformed."""
    if not isinstance(value, kind):
        raise TypeError(f"{what} is {type(value).__name__}, not {kind.__name__}")
    return value


def _usage(raw: dict[str, Any]) -> Usage:
    # Thinking tokens (thoughtsTokenCount) stay in ``raw``: output counts the answer only.
    return Usage(
        raw=raw,
        input_tokens=as_int(raw.get("promptTokenCount")),
        output_tokens=as_int(raw.get("candidatesTokenCount")),
        total_tokens=as_int(raw.get("totalTokenCount")),
    )


def _error(err: Any) -> Error:
    if not isinstance(err, dict):
        return Error(error_message(err))
    code = err.get("code")
    return Error(error_message(err), as_str(err.get("status")), None if code is None else str(code))


def _blocked(feedback: Any) -> list[Part]:
    reason = as_str(dig(feedback, "blockReason"))
    if reason is None:
        return []
    detail = as_str(dig(feedback, "blockReasonMessage"))
    return [Error(f"prompt blocked: {detail or reason}", "blocked", reason)]


class _Streamed:
    """One function call whose arguments Vertex streams in pieces.

    Assembly rule (Vertex ``FunctionCallingConfig.streamFunctionCallArguments``;
    the fields are ``FunctionCall.partialArgs``/``willContinue`` and
    ``PartialArg`` in google/cloud/aiplatform/v1/tool.proto and
    googleapis/python-genai google/genai/types.py; the sequence is the one in
    vercel/ai's recorded Vertex streams, packages/google/src/__fixtures__/
    google-*stream-tool-call-arguments*.chunks.txt):

    - a ``functionCall`` with ``willContinue: true`` opens a call; the first
      piece carries the name (and the id, if any);
    - the following ``functionCall`` parts, in this chunk or later ones, belong
      to the same call as long as they bring no other name or id; each
      ``partialArgs`` entry sets the value at its ``jsonPath`` (RFC 9535, here
      ``$``, ``.name``, ``['name']`` and ``[index]`` steps), creating objects
      and arrays on the way;
    - a ``stringValue`` is appended when the previous entry for the same path
      had ``willContinue: true`` (the string goes on), else it replaces;
      ``numberValue``, ``boolValue`` and ``nullValue`` replace;
    - the first part without ``willContinue: true`` (usually an empty
      ``functionCall: {}``) closes the call, after its own ``partialArgs``;
      a finish reason, or another call's name, closes it too.

    The call's name is reported at once and its arguments, the assembled
    object, when it closes, so a call cut off mid-way has a name and no
    arguments (and the stream, no finish reason).
    """

    __slots__ = ("key", "id", "name", "args", "continuing")

    def __init__(self, key: str, call: dict[str, Any]) -> None:
        self.key = key
        self.id = as_str(call.get("id"))
        self.name = as_str(call.get("name"))
        self.args: dict[str, Any] = {}
        #: The path whose string value goes on in the next entry, if any.
        self.continuing: str | None = None

    def owns(self, call: dict[str, Any]) -> bool:
        """Whether a ``functionCall`` part is a piece of this call, not a new call."""
        name, id_ = as_str(call.get("name")), as_str(call.get("id"))
        return (name is None or self.name is None or name == self.name) and (
            id_ is None or self.id is None or id_ == self.id
        )

    def add(self, call: dict[str, Any]) -> None:
        args = call.get("args")
        if args is not None:
            self.args.update(_typed(args, dict, "functionCall.args"))
        for entry in _typed(call.get("partialArgs") or [], list, "functionCall.partialArgs"):
            self._apply(_typed(entry, dict, "partialArgs[]"))

    def _apply(self, entry: dict[str, Any]) -> None:
        path = _typed(entry.get("jsonPath"), str, "partialArgs[].jsonPath")
        value: Any
        if "stringValue" in entry:
            value = _typed(entry["stringValue"], str, "partialArgs[].stringValue")
            if self.continuing == path:
                value = _get(self.args, _steps(path)) + value
        elif "numberValue" in entry:
            value = entry["numberValue"]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"partialArgs[].numberValue is {type(value).__name__}, not a number")
        elif "boolValue" in entry:
            value = _typed(entry["boolValue"], bool, "partialArgs[].boolValue")
        elif "nullValue" in entry:
            value = None
        else:  # a piece with a path and no value: nothing to set
            self.continuing = path if entry.get("willContinue") is True and self.continuing == path else None
            return
        _set(self.args, _steps(path), value)
        self.continuing = path if entry.get("willContinue") is True else None

    def closing(self) -> ToolCall:
        return ToolCall(self.key, arguments=json.dumps(self.args, ensure_ascii=False))


def _steps(path: str) -> list[str | int]:
    """The steps of a JSON path like ``$.a.b[0]['c d']``; ValueError for anything else."""
    if not path.startswith("$"):
        raise ValueError(f"jsonPath {path!r} does not start with $")
    steps: list[str | int] = []
    i = 1
    while i < len(path):
        if path[i] == ".":
            j = i + 1
            while j < len(path) and path[j] not in ".[":
                j += 1
            if j == i + 1:
                raise ValueError(f"empty name in jsonPath {path!r}")
            steps.append(path[i + 1 : j])
            i = j
        elif path.startswith(("['", '["'), i):
            end = path.find(path[i + 1] + "]", i + 2)
            if end < 0:
                raise ValueError(f"unclosed name in jsonPath {path!r}")
            steps.append(path[i + 2 : end])
            i = end + 2
        elif path[i] == "[":
            end = path.find("]", i)
            if end < 0 or not path[i + 1 : end].isdigit():
                raise ValueError(f"bad index in jsonPath {path!r}")
            steps.append(int(path[i + 1 : end]))
            i = end + 1
        else:
            raise ValueError(f"unexpected {path[i]!r} in jsonPath {path!r}")
    if not steps:
        raise ValueError(f"jsonPath {path!r} names no argument")
    return steps


#: Bound on array indexes in a jsonPath, so one bad piece cannot allocate a huge list.
_MAX_INDEX = 10_000


def _set(root: dict[str, Any], steps: list[str | int], value: Any) -> None:
    node: Any = root
    for step, following in zip(steps, [*steps[1:], None]):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(step, int):
            if not isinstance(node, list):
                raise TypeError(f"index [{step}] into a {type(node).__name__}")
            if step > _MAX_INDEX:
                raise ValueError(f"index [{step}] is over {_MAX_INDEX}")
            node.extend([None] * (step + 1 - len(node)))
            if following is None:
                node[step] = value
            elif node[step] is None:
                node[step] = empty
            node = node[step]
        else:
            if not isinstance(node, dict):
                raise TypeError(f"key {step!r} into a {type(node).__name__}")
            if following is None:
                node[step] = value
            elif node.get(step) is None:
                node[step] = empty
            node = node[step]


def _get(root: dict[str, Any], steps: list[str | int]) -> Any:
    node: Any = root
    for step in steps:
        node = node[step]
    if not isinstance(node, str):
        raise TypeError(f"a string goes on after a {type(node).__name__}")
    return node


def _content_parts(interp: GeminiInterpreter, candidate: dict[str, Any]) -> list[Part]:
    content = candidate.get("content")
    if content is None:
        return []
    pieces = _typed(_typed(content, dict, "content").get("parts") or [], list, "content.parts")
    parts: list[Part] = []
    for piece in pieces:
        _typed(piece, dict, "part")
        text = piece.get("text")
        if isinstance(text, str) and text:
            parts.append(Reasoning(text) if piece.get("thought") is True else Text(text))
        call = piece.get("functionCall")
        if call is not None:
            parts += _function_call(interp, _typed(call, dict, "functionCall"))
    return parts


def _function_call(interp: GeminiInterpreter, call: dict[str, Any]) -> list[Part]:
    parts: list[Part] = []
    streamed = interp.streamed
    if streamed is not None and not streamed.owns(call):
        parts.append(streamed.closing())  # the previous call never got its closing piece
        streamed = interp.streamed = None
    goes_on = call.get("willContinue") is True
    if streamed is None and not goes_on and "partialArgs" not in call:
        args = _typed(call.get("args") or {}, dict, "functionCall.args")
        key = interp.next_key()
        return [*parts, ToolCall(key, as_str(call.get("id")), as_str(call.get("name")), json.dumps(args, ensure_ascii=False))]
    if streamed is None:
        streamed = interp.streamed = _Streamed(interp.next_key(), call)
        parts.append(ToolCall(streamed.key, streamed.id, streamed.name))
    streamed.add(call)
    if not goes_on:
        parts.append(streamed.closing())
        interp.streamed = None
    return parts


def _chunk(interp: GeminiInterpreter, event: ServerSentEvent, payload: Any) -> list[Part]:
    if payload.get("error") is not None:
        return [_error(payload["error"])]
    parts: list[Part] = []
    meta = (as_str(payload.get("modelVersion")), as_str(payload.get("responseId")))
    if meta != interp.meta and any(meta):
        interp.meta = meta
        parts.append(Meta(*meta))
    parts += _blocked(payload.get("promptFeedback"))
    candidates = _typed(payload.get("candidates") or [], list, "candidates")
    if candidates:
        candidate = _typed(candidates[0], dict, "candidates[0]")
        parts += _content_parts(interp, candidate)
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            if interp.streamed is not None:  # a streamed call without its closing piece
                parts.append(interp.streamed.closing())
                interp.streamed = None
            parts.append(Stop(reason))
    usage = payload.get("usageMetadata")
    if usage is not None:
        parts.append(_usage(_typed(usage, dict, "usageMetadata")))
    return parts


class GeminiInterpreter(Interpreter):
    handlers = {"chunk": _chunk}

    def __init__(self) -> None:
        #: Function calls so far: the next call's key.
        self.calls = 0
        #: The last (model version, response id) reported, to report changes only.
        self.meta: tuple[str | None, str | None] = (None, None)
        #: The function call whose arguments are being streamed, if any.
        self.streamed: _Streamed | None = None

    def next_key(self) -> str:
        key = str(self.calls)
        self.calls += 1
        return key

    def key(self, event: ServerSentEvent, payload: Any) -> str:
        # Every payload is a GenerateContentResponse (or an error object).
        return "chunk" if isinstance(payload, dict) else "other"

    def is_complete(self, message: Message) -> bool:
        # A blocked prompt gets no candidates, so no finish reason: the block ends it.
        return message.finish_reason is not None or any(e.type == "blocked" for e in message.errors)


def _match_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return ":streamGenerateContent" in path or ":generateContent" in path


def _json_array(path: str) -> bool:
    # Without alt=sse, streamGenerateContent sends one JSON array, element by element.
    bare, _, query = path.partition("?")
    return bare.endswith(":streamGenerateContent") and "sse" not in parse_qs(query).get("alt", [])


def _match_payload(event: ServerSentEvent, payload: Any) -> bool:
    return isinstance(payload, dict) and (
        isinstance(payload.get("candidates"), list) or "usageMetadata" in payload or "promptFeedback" in payload
    )


def _make_error_event(framing: str, message: str) -> bytes:
    """A Google API error object (``{"error": {code, message, status}}``)."""
    return encode_event({"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}}, framing)


PROVIDER = Provider(
    name="gemini",
    semconv_name="gcp.gemini",
    operation=lambda path: "generate_content",
    interpreter=GeminiInterpreter,
    match_request=_match_request,
    match_payload=_match_payload,
    order=30,
    terminal="a candidate's finishReason, or a blocked prompt",
    error_event=_make_error_event,
    json_array=_json_array,
)
