#!/usr/bin/env python3
"""Fuzz the live pipeline's sans-IO part with hostile streams in every mode.

Usage: .venv/bin/python scripts/fuzz.py [--cases 100000] [--seed 1] [--jobs 2]
                                        [--case N] [--save DIR] [--quiet]

Each *case* is one stream cut into one chunking, generated from ``--seed``
and the case's number alone, so ``--case N`` replays case N exactly. A
stream is one of:

- ``valid``: a real stream of each provider in core/providers (the
  recordings under recordings/ and recordings/samples/, made by the demo
  upstream), shortened to a few of each kind of event, its text replaced by
  random text (any Unicode, emoji, quotes, backslashes, control characters,
  lone surrogates written as JSON escapes), and serialised with LF, CRLF or
  CR line endings, with or without a BOM, comments, ``id:`` and ``retry:``
  fields and payloads split over several ``data:`` lines;
- ``hostile``: a valid stream with hostile JSON put in: whole payloads
  (NaN, Infinity, nesting up to 200,000 deep, integers of up to 20,000
  digits, 1e999, strings of up to 6 MiB, scalars and arrays where objects
  belong) and hostile values in place of the payloads' own;
- ``mutated``: a valid stream with bytes flipped, inserted, deleted,
  duplicated or cut off, and framing bytes (CR, LF, ``data:``, invalid UTF-8)
  put in;
- ``random``: random bytes, from all 256 or from the bytes SSE and JSON are
  made of.

A chunking is the whole stream, random cuts, pieces of 1-16 bytes, cuts
inside multi-byte characters, or one byte at a time (short streams).

Every case runs through ``core.pipeline.Pipeline`` as mitmproxy drives it
(the stream callable once per chunk, then with b""), with a recording sink,
in inspect-only mode and in one further mode taken in turn from the others
(inspect-only deferred and sniffed, each repair alone, all repairs, each
injection, gzip with and without decompress), and every tenth case also with
all repairs. What must hold, or the case fails:

- nothing raises out of the pipeline, and its sink never hears of an
  internal error (a fallback to pass-through is a failure too);
- no empty piece is returned mid-stream (it would end the body);
- inspect-only, and every mode that does not edit the body (headers,
  decompress of a plain body, gzip without decompress), forwards each chunk
  exactly as it came;
- a repair keeps every event's data: parsing what the client got and what
  the upstream sent with the same parser (SSE or NDJSON, the session's
  framing), every upstream event (its type, data and id) arrives, in order,
  except those a repair drops on purpose (``sanitize``: events whose JSON is
  invalid; ``done``: an end marker after an error), and every other event
  the client gets is one a repair adds (an error event or end marker from
  ``done``, an ``assistant_message`` from ``letta``). For the ``letta``
  repair in the ``openai`` shape, an event may come as an OpenAI chat chunk
  that carries every field of the upstream's payload but ``object`` (a
  number out of float range, 1e999, is written as null); with ``sanitize``,
  ids are not compared (a dropped event takes its ``id:`` with it); with
  ``normalise`` on NDJSON, a bare CR counts as the line end it is made into;
- an injection keeps the events it does not break: ``split-*``, ``cr``,
  ``burst`` and ``stall`` deliver every event (``cr`` on NDJSON is not
  checked: a bare CR ends no NDJSON line, so it merges them, as meant);
  ``drop-done`` every event but the end markers; ``error-done`` a prefix of
  them without their end markers, then its error and end marker; ``cut`` a
  prefix (on NDJSON the half line it leaves is a prefix of its line);
- memory stays bounded: on every 50th case (and every stream over 64 KiB),
  tracemalloc's peak while the pipeline runs stays under MEMORY_BUDGET.

It prints the number of cases and pipeline runs, by kind and by mode, the
duration and the result, and exits 1 if any case failed (each failure is
printed with its case number; ``--save DIR`` also writes its stream there).
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import random
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "addons"))

from ssemedic.core.events import _finite, loads  # noqa: E402 - strict, and raises only ValueError
from ssemedic.core.faults import Fault  # noqa: E402
from ssemedic.core.inject import Injection  # noqa: E402
from ssemedic.core.ndjson import NDJSONParser  # noqa: E402
from ssemedic.core.parts import Malformed  # noqa: E402
from ssemedic.core.pipeline import Pipeline  # noqa: E402
from ssemedic.core.repair import ALL_REPAIRS, Repair  # noqa: E402
from ssemedic.core.session import EventRecord  # noqa: E402
from ssemedic.core.sse import SSEParser  # noqa: E402

#: tracemalloc's peak per pipeline run may not exceed this (streams are at most 6.5 MiB).
MEMORY_BUDGET = 64 * 1024 * 1024
#: Every this many cases, and every stream larger than BIG, memory is measured.
MEMORY_EVERY = 50
BIG = 64 * 1024

# -- modes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """How a Pipeline is set up, as the addon's options would set it up."""

    name: str
    repairs: frozenset[Repair] = frozenset()
    injection: Injection | None = None
    deferred: bool = False
    gzip: bool = False
    sniff: bool = False

    @property
    def forwards_as_is(self) -> bool:
        """Whether the client gets every chunk as the upstream sent it."""
        if self.injection is not None:
            return False
        if self.gzip:
            return Repair.DECOMPRESS not in self.repairs
        return not self.repairs - {Repair.HEADERS, Repair.DECOMPRESS}


INSPECT = Mode("inspect-only")
ALL = Mode("repair all", ALL_REPAIRS)
OTHER_MODES = (
    [Mode("inspect-only, deferred", deferred=True), Mode("inspect-only, sniffed", sniff=True)]
    + [Mode(f"repair {r}", frozenset({r})) for r in Repair]
    + [ALL]
    + [Mode(f"inject {i}", injection=i) for i in Injection]
    + [
        Mode("gzip, inspect-only", gzip=True),
        Mode("gzip, repair all but decompress", ALL_REPAIRS - {Repair.DECOMPRESS}, gzip=True),
        Mode("gzip, repair decompress", frozenset({Repair.DECOMPRESS}), gzip=True),
        Mode("gzip, repair all", ALL_REPAIRS, gzip=True),
    ]
)
MODES = [INSPECT, *OTHER_MODES]

# -- streams ------------------------------------------------------------------------

#: Where each provider's streams are asked for.
PATHS = {
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
    "anthropic": "/v1/messages",
    "letta": "/v1/agents/agent-1/messages/stream",
    "ollama": "/api/chat",
    "gemini": "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    "generic": "/stream",
}
#: Keys whose string values are text the model wrote: replaced by random text.
TEXT_KEYS = {"content", "text", "reasoning", "thinking", "refusal", "delta", "message"}


@dataclass(frozen=True)
class Template:
    """A real stream as events: (event type, id, JSON payload or raw data)."""

    provider: str
    framing: str
    events: tuple[tuple[str, str | None, Any], ...]


@cache
def templates() -> tuple[Template, ...]:
    """One template per recording (recordings/*.flows but hostile-*, and recordings/samples/)."""
    from ssemedic.files.sources import load

    found = []
    files = sorted((ROOT / "recordings").glob("*.flows")) + sorted((ROOT / "recordings" / "samples").glob("*"))
    files = [f for f in files if not f.name.startswith("hostile-")]  # not valid streams: made hostile here
    for path in files:
        for capture in load(path):
            session = capture.session()
            framing = session.framing or "sse"
            parser = SSEParser() if framing == "sse" else NDJSONParser()
            events = []
            for event in parser.feed(capture.body) + parser.close():
                try:
                    payload: Any = loads(event.data)
                except ValueError:
                    payload = event.data  # [DONE] and the like, or the recording's own invalid JSON
                events.append((event.event, event.id, payload))
            found.append(Template(session.provider, framing, tuple(_shorten(events))))
    # A generic stream: an unknown path with JSON events of no known shape.
    found.append(Template("generic", "sse", (("message", None, {"token": "a", "i": 1}),
                                             ("update", None, {"token": "b", "i": 2}),
                                             ("message", None, "[DONE]"))))
    return tuple(found)


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple((k, _shape(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_shape(v) for v in value)
    return type(value).__name__


def _shorten(events: list[tuple[str, str | None, Any]]) -> list[tuple[str, str | None, Any]]:
    """At most three events in a row of the same type and shape (the deltas):
    a short stream that is still whole (its start, its end and every kind of event)."""
    out: list[tuple[str, str | None, Any]] = []
    run = 0
    for item in events:
        same = out and (out[-1][0], _shape(out[-1][2])) == (item[0], _shape(item[2]))
        run = run + 1 if same else 1
        if run <= 3:
            out.append(item)
    return out


#: Characters random text is made of: ASCII, Cyrillic, CJK, emoji (with
#: joiners), combining marks, quotes, backslashes, controls, U+2028, BOM.
ALPHABET = ("abc xyz 0123 ", "Привет мир ", "日本語 ", "🙂🚀👍🏽👨‍👩‍👧", "e\u0301", '"\\/', "\x00\x01\x1b[2J\x07\x7f",
            "\t\n\r", "\u2028\u2029\ufeff\uffff", "\U0010ffff")


def random_text(rng: random.Random) -> str:
    pieces = []
    for _ in range(rng.randint(0, 6)):
        pool = rng.choice(ALPHABET)
        pieces.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
    if rng.random() < 0.1:
        pieces.append(rng.choice(["\ud800", "\udfff", "\udc80x", "\ud83d"]))  # lone surrogates
    return "".join(pieces)


def retext(value: Any, rng: random.Random, key: str | None = None) -> Any:
    """``value`` with the strings under TEXT_KEYS replaced by random text."""
    if isinstance(value, dict):
        return {k: retext(v, rng, k) for k, v in value.items()}
    if isinstance(value, list):
        return [retext(v, rng, key) for v in value]
    if isinstance(value, str) and key in TEXT_KEYS and rng.random() < 0.8:
        return random_text(rng)
    return value


def encode_payload(payload: Any, rng: random.Random) -> str:
    if isinstance(payload, str):
        return payload
    ascii_only = rng.random() < 0.3
    # Now and then split over lines where JSON allows whitespace (never inside a string).
    separators = (",\n", ": ") if rng.random() < 0.1 else None
    text = json.dumps(payload, ensure_ascii=ascii_only, separators=separators)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only an escape can carry it
        text = json.dumps(payload, separators=separators)
    return text


def serialise(framing: str, events: list[tuple[str, str | None, str]], rng: random.Random) -> bytes:
    """Events as SSE (with random, valid variations) or NDJSON."""
    if framing == "ndjson":
        eol = rng.choice(["\n", "\n", "\r\n"])
        return "".join(data.replace("\n", " ") + eol for _, _, data in events).encode("utf-8")
    eol = rng.choice(["\n", "\n", "\n", "\r\n", "\r"])
    out = ["\ufeff"] if rng.random() < 0.05 else []
    if rng.random() < 0.1:
        out.append(f"retry: {rng.randint(0, 10000)}{eol}")
    for kind, ident, data in events:
        if rng.random() < 0.05:
            out.append(f": ping{eol}{eol}")
        if kind != "message" or rng.random() < 0.05:
            out.append(f"event: {kind}{eol}")
        if ident is not None:
            out.append(f"id: {ident}{eol}")
        for line in data.split("\n"):  # several data: lines, joined with LF again by the client
            out.append(f"data:{'' if rng.random() < 0.1 else ' '}{line}{eol}")
        out.append(eol)
    return "".join(out).encode("utf-8")


def valid_stream(rng: random.Random) -> tuple[Template, list[tuple[str, str | None, str]]]:
    template = rng.choice(templates())
    events = [(kind, ident, encode_payload(retext(payload, rng), rng)) for kind, ident, payload in template.events]
    return template, events


def hostile_value(rng: random.Random) -> str:
    """One JSON-ish value that Python's json or strict clients choke on."""
    pick = rng.randrange(12)
    if pick == 0:
        return rng.choice(["NaN", "Infinity", "-Infinity"])
    if pick == 1:
        depth = rng.choice([100, 990, 1000, 5000]) if rng.random() < 0.95 else rng.choice([100_000, 200_000])
        return "[" * depth + "]" * depth if rng.random() < 0.7 else '{"a":' * depth + "1" + "}" * depth
    if pick == 2:
        return rng.choice(["-", ""]) + "9" * rng.choice([4300, 4301, 5000, 20_000])
    if pick == 3:
        return rng.choice(["1e999", "-1e999", "1e-999", "1" * 400 + ".5"])
    if pick == 4:
        # Strings of up to 5 MiB, the last over the 4 MiB event cap; rarely, as they take time.
        size = rng.choice([1000, 10_000, 100_000]) if rng.random() < 0.95 else rng.choice([1024 * 1024, 5 * 1024 * 1024])
        char = rng.choice("xя🙂")
        return json.dumps(char * (size // len(char.encode())), ensure_ascii=False)
    if pick == 5:
        return json.dumps(random_text(rng) + rng.choice(["\ud800", "\x00", "\x1b]0;x\x07"]))
    if pick == 6:
        return rng.choice(['"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"\\ud83d\\ude00"'])
    if pick == 7:
        return rng.choice(["null", "true", "0", '"s"', "[]", "{}", "[1,2]", '{"choices": "x"}',
                           '{"choices": [null]}', '{"choices": [{"delta": 5}]}', '{"type": 7}',
                           '{"message_type": []}', '{"candidates": {}}', '{"message": "x", "done": "yes"}'])
    if pick == 8:
        return rng.choice(["{", "[1,]", '{"a" 1}', "nul", "'x'", "{} {}", "\x00"])
    if pick == 9:
        return '{"a": "' + "\\" * rng.randint(1, 5) + '"}'
    if pick == 10:
        return '{"a": 1, "a": 2}'
    return '{"usage": {"prompt_tokens": 1e999, "completion_tokens": -1, "total_tokens": "' + "9" * 50 + '"}}'


def put_hostile_value(payload: Any, rng: random.Random) -> str | None:
    """``payload`` as JSON text with one of its values replaced by a hostile one."""
    if not isinstance(payload, dict | list) or not payload:
        return None
    marker = "\x00HOSTILE\x00"
    target: Any = payload
    path: list[Any] = []
    while isinstance(target, dict | list) and target:
        key = rng.choice(list(target)) if isinstance(target, dict) else rng.randrange(len(target))
        path.append(key)
        if rng.random() < 0.4 or not isinstance(target[key], dict | list):
            break
        target = target[key]
    copy = json.loads(json.dumps(payload))
    holder = copy
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = marker
    return json.dumps(copy).replace(json.dumps(marker), hostile_value(rng), 1)


def hostile_stream(rng: random.Random) -> tuple[Template, list[tuple[str, str | None, str]]]:
    template, events = valid_stream(rng)
    big = False
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        at = rng.randrange(len(events) + 1)
        if rng.random() < 0.5 and at < len(events):
            kind, ident, _ = events[at]
            text = put_hostile_value(template.events[min(at, len(template.events) - 1)][2], rng)
            if text is not None and (len(text) < 100_000 or not big):
                big = big or len(text) >= 100_000
                events[at] = (kind, ident, text)
                continue
        kind = events[at - 1][0] if at else "message"
        value = hostile_value(rng)
        if len(value) > 100_000:
            if big:
                continue
            big = True  # one huge value per stream: streams stay under 6.5 MiB
        events.insert(at, (kind, None, value))
    return template, events


FRAMING_BYTES = [b"\r", b"\n", b"\r\n", b"\n\n", b"data:", b"data: ", b"event: x\n", b"id: \x00\n", b":", b"\xff",
                 b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\xf0\x9f", b"retry: x\n", b"{", b"}", b'"', b"\\"]


def mutate(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        at = rng.randint(0, len(data))
        if op == 0 and data and at < len(data):
            data[at] = rng.randrange(256)
        elif op == 1:
            data[at:at] = rng.choice(FRAMING_BYTES)
        elif op == 2:
            del data[at : at + rng.randint(1, 64)]
        elif op == 3:
            size = rng.randint(1, 256)
            data[at:at] = data[at : at + size]
        elif op == 4:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 5 and rng.random() < 0.5:
            del data[at:]
    return bytes(data)


SSE_ALPHABET = b"data: event:id:retry\r\n\n\n{}[]\",:0123456789 NaN\\u \xff\xc3\xa9\xf0\x9f\x99\x82"


def random_bytes(rng: random.Random) -> bytes:
    size = rng.choice([0, 1, 2, 5, 50, 500, 2000])
    if rng.random() < 0.5:
        return rng.randbytes(size)
    return bytes(rng.choice(SSE_ALPHABET) for _ in range(size))


# -- chunkings ----------------------------------------------------------------------


def chunking(body: bytes, rng: random.Random) -> tuple[str, list[bytes]]:
    """One way the upstream's bytes arrive: never an empty chunk (b"" is the end)."""
    if not body:
        return "empty", []
    pick = rng.choices(range(5), weights=[20, 5, 10, 25, 40])[0]
    if pick == 0:
        return "whole", [body]
    if pick == 1 and len(body) <= 400:
        return "bytewise", [body[i : i + 1] for i in range(len(body))]
    if pick == 2 and len(body) <= 3_000:
        cuts, at = [], 0
        while at < len(body):
            step = rng.randint(1, 16)
            cuts.append(body[at : at + step])
            at += step
        return "tiny", cuts
    if pick == 3:
        inside = [i for i in range(1, min(len(body), 20_000)) if body[i] & 0xC0 == 0x80]
        if inside:
            points = sorted(set(rng.sample(inside, min(len(inside), rng.randint(1, 8)))))
            return "in-chars", _cut(body, points)
    points = sorted(set(rng.randint(1, max(len(body) - 1, 1)) for _ in range(rng.randint(1, 12))))
    return "random", _cut(body, [p for p in points if 0 < p < len(body)])


def _cut(body: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in zip(edges, edges[1:]) if b > a]


# -- cases --------------------------------------------------------------------------


@dataclass
class Case:
    number: int
    kind: str
    provider: str
    framing: str
    path: str
    content_type: str
    body: bytes
    way: str
    chunks: list[bytes]
    modes: list[Mode]


def make_case(seed: int, number: int) -> Case:
    rng = random.Random(f"ssemedic-fuzz:{seed}:{number}")
    kind = rng.choices(["valid", "hostile", "mutated", "random"], weights=[3, 3, 3, 1])[0]
    if kind == "random":
        provider = rng.choice(list(PATHS))
        framing = "ndjson" if provider == "ollama" else "sse"
        body = random_bytes(rng)
    else:
        template, events = hostile_stream(rng) if kind == "hostile" else valid_stream(rng)
        provider, framing = template.provider, template.framing
        body = serialise(framing, events, rng)
        if kind == "mutated":
            body = mutate(body, rng)
    path = PATHS.get(provider, "/stream")
    if provider == "letta" and rng.random() < 0.3:
        path = "/api/v1/agents/agent-1/proxy/chat/completions"  # behind an OpenAI-style router
    content_type = "application/x-ndjson" if framing == "ndjson" else "text/event-stream"
    way, chunks = chunking(body, rng)
    modes = [INSPECT, OTHER_MODES[number % len(OTHER_MODES)]]
    if number % 10 == 0 and ALL not in modes:
        modes.append(ALL)
    return Case(number, kind, provider, framing, path, content_type, body, way, chunks, modes)


class Sink:
    """Records what the pipeline reports (the live Sink protocol)."""

    def __init__(self) -> None:
        self.records: list[EventRecord] = []
        self.errors: list[BaseException] = []

    def started(self, stream: Pipeline) -> None: ...
    def first_chunk(self, stream: Pipeline, data: bytes) -> None: ...
    def event(self, stream: Pipeline, record: EventRecord) -> None:
        self.records.append(record)
    def progress(self, stream: Pipeline) -> None: ...
    def finished(self, stream: Pipeline, error: str | None) -> None: ...
    def internal_error(self, stream: Pipeline, exc: BaseException) -> None:
        self.errors.append(exc)
    def fault(self, stream: Pipeline, fault: Fault) -> None: ...
    def note(self, stream: Pipeline, text: str) -> None: ...


@dataclass
class Run:
    pieces: list[list[bytes]]
    sent: bytes
    records: list[EventRecord]
    errors: list[BaseException]
    notes: list[str]
    framing: str
    peak: int | None = None


@lru_cache(maxsize=2)
def compressed(body: bytes) -> bytes:
    return gzip.compress(body, mtime=0)


def drive(case: Case, mode: Mode, *, measure: bool) -> Run:
    """Drive a Pipeline as mitmproxy does: the stream callable once per
    chunk, then with b"" (deferred inspection runs before the next chunk)."""
    chunks = case.chunks
    headers = {"content-type": "text/plain" if mode.sniff else case.content_type}
    if mode.gzip:
        headers["content-encoding"] = "gzip"
        body = compressed(case.body)
        size = len(body) // 3 + 1
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
    sink = Sink()
    queued: list[Callable[[], None]] = []
    if measure:
        tracemalloc.start()
    try:
        pipeline = Pipeline(
            flow_id="f0", label=f"case {case.number}", method="POST", path=case.path, request_headers={},
            status=200, response_headers=headers, started_at=0.0, sink=sink, clock=lambda: 1.0,
            sniff=mode.sniff, repairs=mode.repairs,
            injections={mode.injection: 5.0 if mode.injection is Injection.STALL else 0.0} if mode.injection else None,
            defer=queued.append if mode.deferred else None,
        )
        if not mode.sniff:
            pipeline.announce()
        pieces = []
        for chunk in chunks:
            pieces.append(pipeline(chunk))
            while queued:
                queued.pop(0)()
        pieces.append(pipeline(b""))
        while queued:
            queued.pop(0)()
        peak = tracemalloc.get_traced_memory()[1] if measure else None
    finally:
        if measure:
            tracemalloc.stop()
    sent = b"".join(p for piece in pieces for p in piece)
    return Run(pieces, sent, sink.records, sink.errors, list(pipeline.notes),
               pipeline.session.framing or case.framing, peak)


def events_of(body: bytes, framing: str) -> list[tuple[str, str, str | None]]:
    parser = SSEParser() if framing == "sse" else NDJSONParser()
    return [(e.event, e.data, e.id) for e in parser.feed(body) + parser.close()]


ADDED_KEYS = ("error",)


def is_added(event: tuple[str, str, str | None]) -> bool:
    """An event only a repair or injection writes: an end marker, an error
    event, or an event ssemedic made itself (id ``ssemedic-…``)."""
    _, data, _ = event
    if data == "[DONE]":
        return True
    try:
        payload = loads(data)
    except ValueError:
        return False
    if not isinstance(payload, dict):
        return False
    if "error" in payload or payload.get("type") == "error" or payload.get("message_type") == "error_message":
        return True
    if isinstance(payload.get("delta"), dict) and "error" in payload["delta"]:
        return True  # Cohere's: a message-end whose delta carries the error
    return str(payload.get("id", "")).startswith("ssemedic-")


def carries(upstream: tuple[str, str, str | None], got: tuple[str, str, str | None]) -> bool:
    """Whether ``got`` is the Letta event ``upstream`` in the OpenAI chat chunk shape."""
    try:
        before, after = loads(upstream[1]), loads(got[1])
    except ValueError:
        return False
    if not isinstance(before, dict) or not isinstance(after, dict):
        return False
    try:
        before = _finite(before)  # a number out of float range (1e999) is written as null, as JSON.stringify does
    except RecursionError:
        pass  # nested deeper than _finite goes: the rewrite passes such an event as it came
    return all(k == "object" or (k in after and after[k] == v) for k, v in before.items())


def check(case: Case, mode: Mode, run: Run, inspected: Run) -> list[str]:
    """What went wrong in ``run`` (empty: nothing)."""
    problems = [f"internal error: {exc!r}" for exc in run.errors]
    problems += [f"note: {note}" for note in run.notes if "internal error" in note]
    if any(b"" in piece for piece in run.pieces):
        problems.append("an empty piece mid-stream")
    if mode.forwards_as_is:
        expected = compressed(case.body) if mode.gzip else case.body
        if run.sent != expected:
            problems.append("the client did not get the upstream's bytes")
        elif not mode.gzip and not mode.deferred and run.pieces[:-1] != [[c] for c in case.chunks]:
            problems.append("a chunk was not forwarded as it came")
        return problems
    framing = inspected.framing
    body = case.body
    if mode.injection is None and Repair.NORMALISE in mode.repairs and framing == "ndjson":
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # normalise makes a bare CR a line end
    upstream = events_of(body, framing)
    got = events_of(run.sent, framing)
    if mode.injection is not None:
        return problems + check_injection(mode.injection, framing, upstream, got)
    repairs = mode.repairs
    invalid = {r.event.data for r in inspected.records
               if any(isinstance(p, Malformed) and p.kind == "invalid-json" for p in r.parts)}
    droppable = [False] * len(upstream)
    if Repair.SANITIZE in repairs:
        droppable = [e[1] in invalid or body is not case.body and any(e[1] in bad for bad in invalid)
                     for e in upstream]
    if Repair.DONE in repairs:
        droppable = [d or e[1] == "[DONE]" for d, e in zip(droppable, upstream)]
    ids = Repair.SANITIZE not in repairs
    openai_shape = Repair.LETTA in repairs and "/chat/completions" in case.path
    i = 0
    for index, want in enumerate(upstream):
        while True:
            have = got[i] if i < len(got) else None
            if have is not None and (have[:2] == want[:2] and (not ids or have[2] == want[2])
                                     or openai_shape and carries(want, have)):
                i += 1
                break
            if droppable[index]:
                break
            if have is None:
                problems.append(f"upstream event #{index} never arrived: {want[1][:80]!r}")
                return problems
            if not is_added(have):
                problems.append(f"the client's event #{i} is neither the upstream's #{index} nor one a repair "
                                f"adds: {have[1][:80]!r}")
                return problems
            i += 1
    extra = [e for e in got[i:] if not is_added(e)]
    if extra:
        problems.append(f"{len(extra)} events at the end that are not the upstream's nor added: {extra[0][1][:80]!r}")
    return problems


def check_injection(injection: Injection, framing: str, upstream: list[Any], got: list[Any]) -> list[str]:
    if injection is Injection.CR and framing == "ndjson":
        return []  # bare CR ends no NDJSON line: the lines merge, as the injection means them to
    if injection in (Injection.SPLIT_UTF8, Injection.SPLIT_EVENTS, Injection.CR, Injection.BURST, Injection.STALL):
        return [] if got == upstream else ["the injection lost or changed events"]
    if injection is Injection.DROP_DONE:
        keep = [e for e in upstream if e[1] != "[DONE]"]
        return [] if [e for e in got if e[1] != "[DONE]"] == keep and "[DONE]" not in [e[1] for e in got] else [
            "drop-done changed more than the end markers"]
    if injection is Injection.ERROR_DONE:
        head = got
        while head and is_added(head[-1]):
            head = head[:-1]
        kept = [e for e in upstream if e[1] != "[DONE]"]  # its own [DONE] comes after its error
        return [] if head == kept[: len(head)] else ["error-done changed the events before its error"]
    # CUT: a prefix; an NDJSON half line is still a line (its data a prefix of the event's)
    whole = got[:-1] if framing == "ndjson" and got and got[-1] not in upstream else got
    if whole != upstream[: len(whole)]:
        return ["cut changed the events before the cut"]
    if len(whole) < len(got):
        cut = got[-1][1].rstrip("\ufffd")  # the cut may fall inside a character
        if not (len(whole) < len(upstream) and upstream[len(whole)][1].startswith(cut)):
            return ["cut's last NDJSON line is not a prefix of the upstream's"]
    return []


@dataclass
class Result:
    cases: Counter[str] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)
    chunkings: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[int, str, str]] = field(default_factory=list)
    measured: int = 0
    peak: int = 0
    peak_case: int = -1
    biggest: int = 0
    cpu: float = 0.0  # CPU seconds spent in the workers

    def add(self, other: Result) -> None:
        self.cpu += other.cpu
        self.cases.update(other.cases)
        self.runs.update(other.runs)
        self.chunkings.update(other.chunkings)
        self.failures += other.failures
        self.measured += other.measured
        if other.peak > self.peak:
            self.peak, self.peak_case = other.peak, other.peak_case
        self.biggest = max(self.biggest, other.biggest)


def run_case(case: Case, result: Result, save: Path | None = None) -> None:
    result.cases[case.kind] += 1
    result.chunkings[case.way] += 1
    result.biggest = max(result.biggest, len(case.body))
    measure_every = case.number % MEMORY_EVERY == 0 or len(case.body) > BIG
    inspected: Run | None = None
    for mode in case.modes:
        measure = measure_every and (mode is INSPECT or mode is case.modes[1])
        result.runs[mode.name] += 1
        try:
            run = drive(case, mode, measure=measure)
        except Exception as exc:  # noqa: BLE001 - that is what is being looked for
            problems = [f"raised {exc!r}"]
        else:
            if inspected is None:
                inspected = run
            try:
                problems = check(case, mode, run, inspected)
            except Exception as exc:  # noqa: BLE001 - a checker bug must not end the campaign
                problems = [f"the check itself raised {exc!r}"]
            if run.peak is not None:
                result.measured += 1
                if run.peak > result.peak:
                    result.peak, result.peak_case = run.peak, case.number
                if run.peak > MEMORY_BUDGET:
                    problems.append(f"tracemalloc peak {run.peak:,} bytes over the budget of {MEMORY_BUDGET:,}")
        for problem in problems:
            result.failures.append((case.number, mode.name, f"{case.kind} {case.provider} {case.way}: {problem}"))
        if problems and save is not None:
            save.mkdir(parents=True, exist_ok=True)
            (save / f"case-{case.number}.bin").write_bytes(case.body)


def run_batch(args: tuple[int, int, int, str | None]) -> Result:
    seed, start, stop, save = args
    result = Result()
    began = time.process_time()
    for number in range(start, stop):
        run_case(make_case(seed, number), result, Path(save) if save else None)
    result.cpu = time.process_time() - began
    return result


def batches(cases: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, cases, size):
        yield start, min(start + size, cases)


def campaign(cases: int, seed: int, jobs: int, save: str | None = None,
             progress: Callable[[int], None] | None = None) -> Result:
    total = Result()
    work = [(seed, a, b, save) for a, b in batches(cases, 500)]
    if jobs <= 1:
        for item in work:
            total.add(run_batch(item))
            if progress:
                progress(sum(total.cases.values()))
        return total
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(jobs) as pool:
        for part in pool.imap_unordered(run_batch, work):
            total.add(part)
            if progress:
                progress(sum(total.cases.values()))
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--cases", type=int, default=100_000, help="streams x chunkings to run (default 100,000)")
    ap.add_argument("--seed", type=int, default=1, help="the campaign's seed (default 1)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default 2)")
    ap.add_argument("--case", type=int, help="run only this case (to reproduce a failure)")
    ap.add_argument("--save", help="write each failing case's stream to this folder")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    templates()  # loaded once, before the workers fork
    start = time.monotonic()
    if args.case is not None:
        case = make_case(args.seed, args.case)
        print(f"case {case.number}: {case.kind} {case.provider} {case.path} {len(case.body):,} bytes, "
              f"{case.way} ({len(case.chunks)} chunks), modes: {', '.join(m.name for m in case.modes)}")
        print(f"body: {case.body[:300]!r}{'…' if len(case.body) > 300 else ''}")
        result = Result()
        run_case(case, result, Path(args.save) if args.save else None)
    else:
        def progress(done: int) -> None:
            if not args.quiet and done % 10_000 == 0:
                print(f"  {done:,} cases, {time.monotonic() - start:.0f} s", flush=True)
        result = campaign(args.cases, args.seed, args.jobs, args.save, progress)
    took = time.monotonic() - start
    cases, runs = sum(result.cases.values()), sum(result.runs.values())
    print(f"fuzz: seed {args.seed}, {cases:,} cases (streams x chunkings), {runs:,} pipeline runs "
          f"in {took:.1f} s on {args.jobs} process{'es' * (args.jobs != 1)} ({result.cpu:.0f} CPU s; "
          f"load average {os.getloadavg()[0]:.1f} at the end)")
    print("  streams:   " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.cases.items())))
    print("  chunkings: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.chunkings.items())))
    print("  runs per mode: " + ", ".join(f"{m.name} {result.runs[m.name]:,}" for m in MODES))
    print(f"  memory: {result.measured:,} runs measured, peak {result.peak / 2**20:.1f} MiB (case {result.peak_case}), "
          f"budget {MEMORY_BUDGET / 2**20:.0f} MiB; largest stream {result.biggest / 2**20:.1f} MiB")
    for number, mode, problem in sorted(result.failures)[:50]:
        print(f"FAIL case {number} [{mode}] {problem}  (rerun: scripts/fuzz.py --seed {args.seed} --case {number})")
    if len(result.failures) > 50:
        print(f"... and {len(result.failures) - 50} more failures")
    failed_cases = len({n for n, _, _ in result.failures})
    print(f"result: {'FAILED' if failed_cases else 'passed'}: {failed_cases:,} of {cases:,} cases failed")
    return 1 if failed_cases else 0


if __name__ == "__main__":
    raise SystemExit(main())
