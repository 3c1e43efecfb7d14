"""Inline repair: what the client receives when ``ssemedic_repair`` is on.

Strategy: the repairer holds the (decoded) stream bytes that have not been
forwarded yet. After each chunk, everything up to the parser's boundary is
whole blocks; the events among them are known with their exact offsets and
raw bytes. That region is forwarded with the chosen events replaced,
dropped or followed by new ones, and the bytes between events (comments,
blank lines, skipped oversized events) passed as they are. So the client
only ever receives whole events, and nothing is lost that was not dropped on
purpose. Sans-IO: bytes and session records in, bytes out.

The ``letta`` repair delivers a Letta reply in the shape the client reads
(``letta_shape``). ``letta``: after the event that completes a reply hidden
in ``send_message`` (or found only in ``steps_messages``), an
``assistant_message`` event with its text is added. ``openai``: for clients
of an OpenAI-style router (Open WebUI, the OpenAI SDKs read only
``choices[0].delta``), every Letta event becomes an OpenAI chat chunk that
*keeps all its Letta fields* and adds ``object: chat.completion.chunk`` and
``choices: [{index, delta, finish_reason}]``: the reply as
``delta.content``, reasoning as ``delta.reasoning_content``, ``delta: {}``
for events without text (so ``choices[0]`` always exists). A custom client
reading ``message_type`` or ``assistant_message.content`` still finds them:
nothing the upstream sent is removed. A ``finish_reason`` chunk comes before
``[DONE]``. ``auto`` (the option's default) means ``openai`` when the request
path ends in ``/chat/completions``, ``letta`` otherwise.
"""

from __future__ import annotations

import json
from collections import Counter
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .events import BOM
from .parts import Done, Error, Malformed, Reasoning, Stop, Text

if TYPE_CHECKING:
    from .session import EventRecord, StreamSession


class Repair(StrEnum):
    REFRAME = "reframe"  # forward only whole events
    NORMALISE = "normalise"  # LF line endings, no BOM
    HEADERS = "headers"  # streaming-friendly response headers
    DECOMPRESS = "decompress"  # forward a compressed stream uncompressed
    SANITIZE = "sanitize"  # drop events with invalid JSON, replace invalid UTF-8
    DONE = "done"  # [DONE] only after success; a proper error instead of a silent cut
    LETTA = "letta"  # send_message text also as an assistant_message event


ALL_REPAIRS = frozenset(Repair)
#: Repairs that change the body (they all need whole events).
BODY_REPAIRS = frozenset(ALL_REPAIRS - {Repair.HEADERS, Repair.DECOMPRESS})
#: The unforwarded buffer may grow to this before it is flushed as it is.
MAX_HELD = 8 * 1024 * 1024

LETTA_SHAPES = ("auto", "openai", "letta")


def letta_shape(option: str, path: str) -> str:
    """``openai`` or ``letta``: the shape the ``letta`` repair writes for a request on ``path``."""
    if option not in LETTA_SHAPES:
        raise ValueError(f"{option!r} is not one of {', '.join(LETTA_SHAPES)}")
    if option != "auto":
        return option
    return "openai" if path.split("?", 1)[0].rstrip("/").endswith("/chat/completions") else "letta"


TRUNCATION_MESSAGE = "the upstream closed the stream before it was complete (repaired by ssemedic)"


def parse_repairs(value: str) -> frozenset[Repair]:
    """``all`` or a comma-separated list of repair names; raises ValueError naming the bad one."""
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    if not names or "all" in names:
        return ALL_REPAIRS
    chosen = set()
    for name in names:
        if name == "normalize":
            name = "normalise"
        try:
            chosen.add(Repair(name))
        except ValueError:
            known = ", ".join(r.value for r in Repair)
            raise ValueError(f"unknown repair {name!r}; known: all, {known}") from None
    return frozenset(chosen)


def error_event(provider: str, framing: str, message: str) -> bytes:
    """An error event in the provider's own shape (what its clients expect)."""
    payload: dict[str, Any]
    event = None
    if provider == "anthropic":
        event, payload = "error", {"type": "error", "error": {"type": "api_error", "message": message}}
    elif provider == "openai-responses":
        event, payload = "error", {"type": "error", "code": "upstream_truncated", "message": message, "param": None}
    elif provider == "letta":
        payload = {"message_type": "error_message", "error_type": "upstream_truncated", "message": message}
    elif provider == "gemini":
        payload = {"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}}
    elif provider == "ollama":
        payload = {"error": message}
    else:
        payload = {"error": {"message": message, "type": "upstream_error", "code": "upstream_truncated"}}
    data = json.dumps(payload, ensure_ascii=False)
    if framing == "ndjson":
        return (data + "\n").encode()
    return ((f"event: {event}\n" if event else "") + f"data: {data}\n\n").encode()


class Repairer:
    """Rewrites one stream's body; see the module docstring."""

    def __init__(self, repairs: frozenset[Repair], letta_shape: str = "letta") -> None:
        if letta_shape not in ("openai", "letta"):
            raise ValueError(f"letta_shape must be 'openai' or 'letta', not {letta_shape!r}")
        self.repairs = repairs
        self.letta_shape = letta_shape
        self._finish_sent = False
        self.body = bool(repairs & BODY_REPAIRS)
        #: What was changed, by kind of change, for the log and flow metadata.
        self.changes: Counter[str] = Counter()
        self._held = bytearray()
        self._held_at = 0  # stream offset of _held[0]
        self._error_seen = False
        self._done_seen = False
        self._gave_up = False

    # -- feeding --------------------------------------------------------------

    def feed(self, session: StreamSession, data: bytes, records: list[EventRecord]) -> bytes:
        """Bytes to send after ``data`` (already fed to ``session``) produced ``records``."""
        if not self.body:
            return data
        if self._gave_up:
            return self._flush_all()
        parser = session.parser
        boundary = parser.boundary if parser is not None else self._held_at
        out = self._region(session, boundary, records)
        if self._held and Repair.REFRAME in self.repairs:
            self.changes["partial event held back until whole"] += 1
        if len(self._held) > MAX_HELD:
            # An event this large is not inspected anyway: pass it on as it is.
            self.changes["oversized event forwarded unrepaired"] += 1
            out += self._flush_all()
        return out

    def hold(self, data: bytes) -> None:
        """Take a chunk before it is inspected: from now on release() hands it on."""
        if self.body:
            self._held += data

    def end(self, session: StreamSession, records: list[EventRecord], *, clean: bool) -> bytes:
        """Bytes to send when the stream ends; ``clean`` is False for a broken connection."""
        if not self.body:
            return b""
        parser = session.parser
        out = self._region(session, parser.boundary if parser is not None else self._held_at, records)
        rest = bytes(self._held)
        self._held.clear()
        if rest.strip(b"\r\n"):
            if Repair.REFRAME in self.repairs or Repair.DONE in self.repairs:
                self.changes["unfinished last event dropped"] += 1
            else:
                out += rest
        elif rest:
            out += self._normalise(rest, first=False) if Repair.NORMALISE in self.repairs else rest
        if Repair.DONE in self.repairs and clean:
            out += self._ending(session)
        return out

    # -- internals --------------------------------------------------------------

    def _region(self, session: StreamSession, boundary: int, records: list[EventRecord]) -> bytes:
        """Forward the whole blocks before ``boundary``, applying the repairs."""
        size = boundary - self._held_at
        if size <= 0:
            return b""
        region = bytes(self._held[:size])
        start = self._held_at
        pieces: list[bytes] = []
        cursor = 0
        for record in records:
            event = record.event
            offset = event.offset - start
            if offset < cursor or offset + len(event.raw) > len(region):
                continue  # not in this region (cannot happen; be safe)
            pieces.append(region[cursor:offset])
            pieces.append(self._event(session, record))
            cursor = offset + len(event.raw)
        pieces.append(region[cursor:])
        out = b"".join(pieces)
        if Repair.NORMALISE in self.repairs:
            out = self._normalise(out, first=start == 0)
        if Repair.SANITIZE in self.repairs:
            try:
                out.decode("utf-8")
            except UnicodeDecodeError:
                out = out.decode("utf-8", "replace").encode("utf-8")
                self.changes["invalid UTF-8 replaced"] += 1
        del self._held[:size]  # only now: a failure above leaves it for release()
        self._held_at = boundary
        return out

    def _event(self, session: StreamSession, record: EventRecord) -> bytes:
        raw = record.event.raw
        parts = record.parts
        if any(isinstance(p, Error) for p in parts):
            self._error_seen = True
        if Repair.SANITIZE in self.repairs and any(
            isinstance(p, Malformed) and p.kind == "invalid-json" for p in parts
        ):
            self.changes["event with invalid JSON dropped"] += 1
            return b""
        if any(isinstance(p, Done) and p.marker == "[DONE]" for p in parts):
            if Repair.DONE in self.repairs and self._error_seen:
                self.changes["[DONE] after an error suppressed"] += 1
                return b""
            self._done_seen = True
        if Repair.LETTA in self.repairs and session.provider == "letta" and self.letta_shape == "openai":
            return self._openai_chunk(record)
        if Repair.LETTA in self.repairs and session.provider == "letta":
            texts = [p.text for p in parts if isinstance(p, Text) and p.via is not None]
            if texts:
                self.changes["assistant_message added for send_message text"] += 1
                payload = {"message_type": "assistant_message", "content": "".join(texts),
                           "id": f"ssemedic-{record.index}"}
                return raw + f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()
        return raw

    def _openai_chunk(self, record: EventRecord) -> bytes:
        """One Letta event as an OpenAI chat chunk that keeps its Letta fields."""
        parts = record.parts
        if any(isinstance(p, Done) and p.marker == "[DONE]" for p in parts):
            return self._finish_chunk() + record.event.raw
        try:
            payload = json.loads(record.event.data)
        except (ValueError, RecursionError):
            return record.event.raw
        if not isinstance(payload, dict) or "choices" in payload:
            return record.event.raw
        delta: dict[str, str] = {}
        text = "".join(p.text for p in parts if isinstance(p, Text))
        reasoning = "".join(p.text for p in parts if isinstance(p, Reasoning))
        if reasoning:
            delta["reasoning_content"] = reasoning
        if text:
            delta["content"] = text
        finish = "stop" if any(isinstance(p, Stop) for p in parts) and not self._finish_sent else None
        if finish:
            self._finish_sent = True
        self.changes["Letta event given the OpenAI chat chunk shape"] += 1
        chunk = {**payload, "object": "chat.completion.chunk", "created": payload.get("created", 0),
                 "model": payload.get("model", "letta"),
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        chunk.setdefault("id", f"ssemedic-{record.index}")
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()

    def _finish_chunk(self) -> bytes:
        if self._finish_sent:
            return b""
        self._finish_sent = True
        chunk = {"id": "ssemedic-finish", "object": "chat.completion.chunk", "created": 0, "model": "letta",
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def _ending(self, session: StreamSession) -> bytes:
        """What a cleanly closed stream still lacks: [DONE], or an error instead of a silent cut."""
        from .providers import GENERIC

        if session.provider == GENERIC or self._done_seen:
            return b""
        if not session.complete and not session.message.errors:
            self.changes["silent cut turned into an error event"] += 1
            return error_event(session.provider, session.framing or "sse", TRUNCATION_MESSAGE)
        if session.provider == "openai-chat" and not self._done_seen and not self._error_seen:
            self.changes["missing [DONE] appended"] += 1
            return b"data: [DONE]\n\n"
        return b""

    def _normalise(self, out: bytes, *, first: bool) -> bytes:
        if first and out.startswith(BOM):
            out = out[len(BOM) :]
            self.changes["BOM stripped"] += 1
        if out.find(b"\r") >= 0:  # not `b"\r" in out`: see sse._CR
            out = out.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            self.changes["line endings normalised to LF"] += 1
        return out

    def release(self) -> bytes:
        """Give up repairing: everything held back, as it is; later feeds pass through."""
        return self._flush_all()

    def _flush_all(self) -> bytes:
        self._gave_up = True
        out = bytes(self._held)
        self._held_at += len(out)
        self._held.clear()
        return out
