"""What the SSE, NDJSON and AWS event-stream parsers share: the framed event, the closed set of
parse issues, the capped issue log, the UTF-8 decoding rule and the JSON decoding rule for
payloads."""

from __future__ import annotations

import json
import json.scanner
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from operator import itemgetter
from typing import Any, NoReturn, Self

BOM = b"\xef\xbb\xbf"

#: An event (SSE block or NDJSON line) larger than this is reported and skipped.
DEFAULT_MAX_EVENT_SIZE = 4 * 1024 * 1024

#: How many issues of one kind are kept in full; the rest are only counted.
MAX_ISSUES_PER_KIND = 100


@dataclass(frozen=True, init=False)
class ServerSentEvent(tuple[str, str, str | None, int | None, bytes, int]):
    """One dispatched event.

    ``id`` is the stream's last event ID at dispatch time, or None if no ``id``
    field was ever accepted. ``retry`` comes from a valid ``retry`` field in
    this event's own block. ``raw`` holds the exact bytes of the block,
    terminator included, and ``offset`` where they start in the stream.
    NDJSON lines are represented the same way, with ``event == "message"``.

    It is a frozen dataclass (``fields()``, ``replace()``, ``asdict()``,
    ``FrozenInstanceError``, field-wise equality and hashing) stored as a
    tuple: the parser builds one per event, and a tuple subclass can be built
    by one C call, ``tuple.__new__(ServerSentEvent, values)``, where a slotted
    frozen class needs one call per field; building them that way saves
    40-50% of the parser's time (scripts/bench_tricks.py). The fields are
    ``property(itemgetter(i))``, both C, on the tuple's items.
    """

    __slots__ = ()

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    raw: bytes = b""
    offset: int = 0

    def __new__(
        cls,
        event: str = "message",
        data: str = "",
        id: str | None = None,  # noqa: A002 - the WHATWG field name
        retry: int | None = None,
        raw: bytes = b"",
        offset: int = 0,
    ) -> Self:
        return tuple.__new__(cls, (event, data, id, retry, raw, offset))

    def __getnewargs__(self) -> tuple[str, str, str | None, int | None, bytes, int]:
        # pickle and copy rebuild through __new__ with the fields in order.
        return (self.event, self.data, self.id, self.retry, self.raw, self.offset)

    def json(self) -> Any:
        """Decode ``data`` as JSON (strictly: see ``loads``); raises
        ``json.JSONDecodeError`` if it is not JSON or cannot be decoded."""
        return loads(self.data)


# The dataclass keeps each field's default as a class attribute; replace
# them with read-only views of the tuple items.
for _index, _item in enumerate(fields(ServerSentEvent)):
    setattr(ServerSentEvent, _item.name, property(itemgetter(_index), doc=f"The event's {_item.name}."))
del _index, _item


class IssueKind(StrEnum):
    """Everything a parser can find wrong (or notable) in the framing."""

    INVALID_UTF8 = "invalid-utf8"
    BOM = "bom"
    INVALID_RETRY = "invalid-retry"
    INVALID_ID = "invalid-id"
    UNKNOWN_FIELD = "unknown-field"
    OVERSIZED_EVENT = "oversized-event"
    INCOMPLETE_EVENT = "incomplete-event"
    MISSING_FINAL_NEWLINE = "missing-final-newline"
    # The AWS event stream (eventstream.py): binary frames with CRCs.
    BAD_PRELUDE_CRC = "bad-prelude-crc"
    BAD_MESSAGE_CRC = "bad-message-crc"
    INVALID_FRAME = "invalid-frame"
    UNPARSED = "unparsed"
    UNEXPECTED_DATA = "unexpected-data"  # bytes outside any element of a streamed JSON array


@dataclass(frozen=True, slots=True)
class ParseIssue:
    """A malformation found at ``offset`` (a byte position in the stream)."""

    kind: IssueKind
    offset: int
    detail: str


@dataclass(slots=True)
class IssueLog:
    """Issues in the order found, capped per kind; ``counts`` stays exact."""

    issues: list[ParseIssue] = field(default_factory=list)
    counts: Counter[IssueKind] = field(default_factory=Counter)

    def add(self, kind: IssueKind, offset: int, detail: str) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= MAX_ISSUES_PER_KIND:
            self.issues.append(ParseIssue(kind, offset, detail))


def decode_utf8(data: bytes, offset: int, log: IssueLog) -> str:
    """Decode complete bytes, replacing invalid sequences with U+FFFD.

    Callers only ever pass whole lines or fields. CR, LF and ``:`` are ASCII and
    never occur inside a multi-byte sequence, so decoding these pieces gives
    the same text as decoding the whole stream first, as WHATWG prescribes.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        log.add(
            IssueKind.INVALID_UTF8,
            offset + exc.start,
            f"invalid UTF-8 byte {data[exc.start:exc.start + 1]!r} replaced by U+FFFD",
        )
        return data.decode("utf-8", "replace")


def preview(data: bytes | str, limit: int = 40) -> str:
    """A short printable excerpt for issue details."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return repr(text if len(text) <= limit else text[:limit] + "…")


# -- JSON ----------------------------------------------------------------------
#
# Payloads are decoded strictly, as RFC 8259 defines JSON and as strict
# clients (JavaScript's JSON.parse, Go, serde) read it: Python's json module
# also accepts NaN, Infinity and -Infinity, which are not JSON, and raises
# RecursionError on deep nesting and a plain ValueError on an integer over
# sys.get_int_max_str_digits() digits (RFC 8259 §9 lets a parser limit both,
# and every Python client, openai-python's included, fails on them). ``loads``
# turns all of these into one exception, json.JSONDecodeError, with a
# position and a message that says which it was.


class _Constant(ValueError):
    """NaN, Infinity or -Infinity met by the scanner (found again by _TOKEN for its position)."""


def _reject_constant(name: str) -> NoReturn:
    raise _Constant(name)


# json.loads' own decoder, except for the constants; the C scanner only calls
# parse_constant on them, so a valid payload costs nothing more.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# The C scanner json.loads ends in. (typeshed types its argument as a
# scanner; any decoder's settings do.)
_scan = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
# A string (skipped), or a constant or a run of digits outside any string:
# what finds the position of the value the scanner gave up on.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN|\d+)', re.DOTALL)


def loads(text: str) -> Any:
    """Decode one JSON document strictly (see above); raises
    ``json.JSONDecodeError`` for anything else, never another exception.

    Every event's payload is decoded, and ``json.loads`` spends about 40% of
    its time (1.3 µs of 3.4 per chat chunk, measured) in Python around the C
    scanner: leading whitespace, a BOM, trailing text, error messages. A
    payload that is one JSON document and nothing else is decoded by the
    scanner alone; anything else, including every error, goes the long way.
    """
    try:
        value, end = _scan(text, 0)
    except (StopIteration, ValueError, RecursionError):  # no value here, a malformed one, or a limit
        return _loads_slowly(text)
    return value if end == len(text) else _loads_slowly(text)


def _loads_slowly(text: str) -> Any:
    """``json.loads(text)`` with the strict rules and one exception type."""
    try:
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError:
        raise
    except _Constant as exc:
        name = str(exc)
        pos = next((m.start() for m in _TOKEN.finditer(text) if m.group(1) == name), 0)
        raise json.JSONDecodeError(f"{name} is not JSON (strict clients reject it)", text, pos) from None
    except RecursionError:
        raise json.JSONDecodeError("arrays or objects nested too deeply for Python's json "
                                   "(Python clients fail on it too)", text, 0) from None
    except ValueError as exc:  # the only other one: an integer over the digit limit
        limit = sys.get_int_max_str_digits()
        found = next((m for m in _TOKEN.finditer(text) if m.group(1) and len(m.group(1)) > limit), None)
        size = f"{len(found.group(1)):,}" if found is not None else "too many"
        raise json.JSONDecodeError(f"an integer of {size} digits, more than Python's json (and Python clients) "
                                   f"decode ({limit:,}): {exc.__class__.__name__}", text,
                                   found.start() if found is not None else 0) from None


def dumps(value: Any, default: Callable[[Any], Any] | None = None, indent: int | None = None) -> str:
    """``value`` as JSON text that strict clients accept and that encodes as
    UTF-8, whatever strings and floats it holds; raises ``ValueError`` for a
    value JSON cannot hold at all (nested too deeply, circular, of another type).

    A non-finite float (``1e999`` decodes to inf) becomes null, as
    JavaScript's JSON.stringify writes it; a string with a lone surrogate (a
    payload's ``"\\ud800"``) is written with ``\\u`` escapes, the same value
    in ASCII.
    """
    try:
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=default, indent=indent)
        except ValueError:  # a non-finite float somewhere (or a circle: raised again below)
            value = _finite(value)
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=default, indent=indent)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = json.dumps(value, ensure_ascii=True, allow_nan=False, default=default, indent=indent)
    except (TypeError, RecursionError) as exc:
        raise ValueError(f"not encodable as JSON: {exc.__class__.__name__}: {exc}") from None
    return text


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None."""
    if isinstance(value, float):
        return value if value - value == 0.0 else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
