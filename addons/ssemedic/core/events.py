"""What the SSE and NDJSON parsers share: the framed event, the closed set of
parse issues, the capped issue log and the UTF-8 decoding rule."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, fields
from enum import StrEnum
from operator import itemgetter
from typing import Any, Self

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
        """Decode ``data`` as JSON; raises ``json.JSONDecodeError`` if it is not."""
        return json.loads(self.data)


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
