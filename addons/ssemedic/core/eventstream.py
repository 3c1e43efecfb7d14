"""Incremental parser for the AWS event stream (``application/vnd.amazon.eventstream``),
the binary framing of Bedrock's ``ConverseStream`` and ``InvokeModelWithResponseStream``.

Spec: the Smithy "Amazon Event Stream Specification". A frame (message) is

    total length (uint32 BE) | headers length (uint32 BE) | prelude CRC32
    | headers | payload | message CRC32

where the prelude CRC covers the first 8 bytes and the message CRC every
byte before it (CRC-32 as zlib computes it). A header is a 1-byte name
length, the name, a 1-byte value type and the typed value: 0 true, 1 false
(no value), 2 int8, 3 int16, 4 int32, 5 int64, 6 byte array and 7 string
(uint16 length first), 8 timestamp (int64 milliseconds since the epoch),
9 UUID (16 bytes).

It has the same interface as ``SSEParser``: ``feed(bytes)`` returns the
events the bytes complete, ``close()`` the end, ``issues`` what was wrong.
Each frame becomes an ``EventStreamEvent``: its ``event`` is the frame's
``:event-type`` header (``:exception-type`` for an exception, ``:error-code``
for an error message), its ``data`` the payload as UTF-8 text, its
``headers`` every header, its ``raw`` the frame's bytes.

Strategy: the prelude gives the frame's length, so bytes are only held
(in a list, joined once) until the current frame is whole: a large frame
in small chunks costs linear time. Malformed input never raises. A bad
message CRC, a frame over the size cap or malformed headers skip that one
frame, whose length the prelude CRC vouches for; a bad prelude CRC leaves
the length untrustworthy, so parsing stops there and the rest of the
stream is reported as unparsed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from operator import itemgetter
from struct import error as StructError
from struct import unpack_from
from typing import Self
from zlib import crc32

from .events import (
    DEFAULT_MAX_EVENT_SIZE,
    IssueKind,
    IssueLog,
    ParseIssue,
    ServerSentEvent,
    decode_utf8,
)

__all__ = ["EventStreamEvent", "EventStreamParser", "HeaderValue", "PRELUDE_SIZE", "encode_frame", "valid_prelude"]

#: The prelude: total length, headers length, prelude CRC.
PRELUDE_SIZE = 12
#: The smallest frame: a prelude and the message CRC.
MIN_FRAME = PRELUDE_SIZE + 4

#: A header's value: bool (types 0, 1), int (2-5 and 8, the timestamp in
#: milliseconds), bytes (6), str (7) or uuid.UUID (9).
HeaderValue = bool | int | bytes | str | uuid.UUID

# Fixed-size integer types: type byte -> (struct format, size).
#: How many distinct header blocks a parser remembers (see EventStreamParser._frame).
_KNOWN_HEADERS = 64
#: Which header names an event, by ``:message-type``.
_NAME_HEADERS = {"event": ":event-type", "exception": ":exception-type", "error": ":error-code"}
_INTS = {2: (">b", 1), 3: (">h", 2), 4: (">i", 4), 5: (">q", 8), 8: (">q", 8)}


def valid_prelude(head: bytes) -> bool:
    """Whether ``head`` starts with an event-stream prelude whose CRC matches
    and whose lengths are possible (used to sniff a body's framing)."""
    if len(head) < PRELUDE_SIZE:
        return False
    total, headers, crc = unpack_from(">III", head)
    return bool(crc32(head[:8]) == crc and total >= MIN_FRAME and headers <= total - MIN_FRAME)


class EventStreamEvent(ServerSentEvent):
    """A ``ServerSentEvent`` that also keeps the frame's ``headers``.

    ``id`` and ``retry`` are always None: the framing has neither."""

    __slots__ = ()

    def __new__(
        cls,
        event: str = "message",
        data: str = "",
        id: str | None = None,  # noqa: A002 - the field name of ServerSentEvent
        retry: int | None = None,
        raw: bytes = b"",
        offset: int = 0,
        headers: Mapping[str, HeaderValue] | None = None,
    ) -> Self:
        return tuple.__new__(cls, (event, data, id, retry, raw, offset, dict(headers or {})))

    def __getnewargs__(self) -> tuple[str, str, str | None, int | None, bytes, int, Mapping[str, HeaderValue]]:  # type: ignore[override]
        return (self.event, self.data, self.id, self.retry, self.raw, self.offset, self.headers)

    headers: Mapping[str, HeaderValue] = property(itemgetter(6), doc="The frame's headers, by name.")  # type: ignore[assignment]


class EventStreamParser:
    """Sans-IO event-stream parser: ``feed(bytes)`` in, ``EventStreamEvent`` out.

    A frame larger than ``max_event_size`` is reported once and skipped
    without being held; the parser keeps no more than that many bytes.
    """

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if max_event_size < 1:
            raise ValueError("max_event_size must be positive")
        self.max_event_size = max_event_size
        self.log = IssueLog()
        #: Stream offset up to which every byte belongs to a whole frame (or a skipped one).
        self.boundary = 0
        #: Stream bytes seen so far.
        self.consumed = 0
        self._held: list[bytes] = []  # the start of the current frame, at offset boundary
        self._held_size = 0
        self._need = PRELUDE_SIZE  # bytes the current frame needs before it can be cut
        self._skip = 0  # bytes of an oversized frame still to pass
        self._stopped_at: int | None = None  # where a bad prelude stopped parsing
        # Header blocks already read, and the event name they give: a stream
        # repeats a few (one per event type), and reading them is half the work.
        self._known_headers: dict[bytes, tuple[str, dict[str, HeaderValue]]] = {}
        self._closed = False

    @property
    def issues(self) -> list[ParseIssue]:
        return self.log.issues

    @property
    def pending_bytes(self) -> bytes:
        """The buffered start of an unfinished frame, if any."""
        if len(self._held) > 1:
            self._held = [b"".join(self._held)]
        return self._held[0] if self._held else b""

    @property
    def inside_block(self) -> bool:
        """Whether the bytes so far end inside a frame. Costs O(1)."""
        return self._held_size > 0 or self._skip > 0

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return self.consumed - self.boundary

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Add received bytes; return the events they complete."""
        if self._closed:
            raise RuntimeError("EventStreamParser.feed() called after close()")
        if not data:
            return []
        data = bytes(data)
        self.consumed += len(data)
        if self._stopped_at is not None:
            return []
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                self.boundary += len(data)
                return []
            data = data[self._skip :]
            self.boundary += self._skip
            self._skip = 0
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size < self._need:
            return []
        buf = b"".join(self._held) if len(self._held) > 1 else data
        return self._parse(buf)

    def close(self) -> list[ServerSentEvent]:
        """Signal the end of the stream. A last frame cut short is reported
        as ``incomplete-event``; bytes a bad prelude left unparsed, as ``unparsed``."""
        if self._closed:
            return []
        self._closed = True
        if self._stopped_at is not None:
            rest = self.consumed - self._stopped_at
            self.log.add(IssueKind.UNPARSED, self._stopped_at,
                         f"{rest:,} bytes from offset {self._stopped_at:,} on were not parsed (after a bad prelude CRC)")
        elif self._skip:
            self.log.add(IssueKind.INCOMPLETE_EVENT, self.boundary, "stream ended inside an oversized frame")
        elif self._held_size:
            what = f"of a {self._need:,}-byte frame" if self._need > PRELUDE_SIZE else "of a frame's prelude"
            self.log.add(IssueKind.INCOMPLETE_EVENT, self.boundary,
                         f"stream ended after {self._held_size:,} bytes {what}")
        self._held.clear()
        self._held_size = 0
        return []

    # -- internals ---------------------------------------------------------

    def _parse(self, buf: bytes) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        pos = 0
        end = len(buf)
        while end - pos >= PRELUDE_SIZE:
            offset = self.boundary
            total, headers_length, prelude_crc = unpack_from(">III", buf, pos)
            if crc32(buf[pos : pos + 8]) != prelude_crc:
                self.log.add(IssueKind.BAD_PRELUDE_CRC, offset,
                             f"prelude CRC mismatch in the frame at offset {offset:,}: its length cannot be "
                             "trusted, so the rest of the stream is not parsed")
                return self._stop(events, offset)
            if total < MIN_FRAME:
                self.log.add(IssueKind.INVALID_FRAME, offset,
                             f"frame length {total} is below the minimum of {MIN_FRAME}: the rest of the stream "
                             "is not parsed")
                return self._stop(events, offset)
            if total > self.max_event_size:
                self.log.add(IssueKind.OVERSIZED_EVENT, offset,
                             f"frame of {total:,} bytes, over the cap of {self.max_event_size:,}, was skipped")
                if end - pos >= total:
                    pos += total
                    self.boundary += total
                    continue
                self._skip = total - (end - pos)
                self.boundary += end - pos
                pos = end
                break
            if end - pos < total:
                break
            frame = buf[pos : pos + total] if pos or total != end else buf
            pos += total
            self.boundary += total
            event = self._frame(frame, headers_length, offset)
            if event is not None:
                events.append(event)
        rest = buf[pos:] if pos else buf
        self._held = [rest] if rest else []
        self._held_size = len(rest)
        self._need = unpack_from(">I", rest)[0] if len(rest) >= PRELUDE_SIZE else PRELUDE_SIZE
        return events

    def _stop(self, events: list[ServerSentEvent], offset: int) -> list[ServerSentEvent]:
        self._stopped_at = offset
        self._held.clear()
        self._held_size = 0
        return events

    def _frame(self, frame: bytes, headers_length: int, offset: int) -> EventStreamEvent | None:
        """The event of one whole frame whose prelude is valid, or None (reported) when it is bad."""
        total = len(frame)
        message_crc = unpack_from(">I", frame, total - 4)[0]
        if crc32(frame[:-4]) != message_crc:
            self.log.add(IssueKind.BAD_MESSAGE_CRC, offset,
                         f"message CRC mismatch in the {total:,}-byte frame at offset {offset:,}: frame skipped")
            return None
        if headers_length > total - MIN_FRAME:
            self.log.add(IssueKind.INVALID_FRAME, offset,
                         f"headers length {headers_length} does not fit the {total}-byte frame: frame skipped")
            return None
        payload_start = PRELUDE_SIZE + headers_length
        raw_headers = frame[PRELUDE_SIZE:payload_start]
        known = self._known_headers.get(raw_headers)
        if known is None:
            issues = self.log.counts.total()
            headers = self._headers(frame, payload_start, offset)
            if headers is None:
                return None
            kind = headers.get(":message-type")
            name = headers.get(_NAME_HEADERS.get(kind if isinstance(kind, str) else "event", ":event-type"))
            known = (name if isinstance(name, str) and name else "message", headers)
            if self.log.counts.total() == issues and len(self._known_headers) < _KNOWN_HEADERS:
                self._known_headers[raw_headers] = known
        data = decode_utf8(frame[payload_start:-4], offset + payload_start, self.log)
        return EventStreamEvent(known[0], data, None, None, frame, offset, known[1])

    def _headers(self, frame: bytes, end: int, offset: int) -> dict[str, HeaderValue] | None:
        headers: dict[str, HeaderValue] = {}
        pos = PRELUDE_SIZE
        try:
            while pos < end:
                name_length = frame[pos]
                name = decode_utf8(frame[pos + 1 : pos + 1 + name_length], offset + pos + 1, self.log)
                pos += 1 + name_length
                kind = frame[pos]
                pos += 1
                value: HeaderValue
                if kind in (0, 1):
                    value = kind == 0
                elif kind in _INTS:
                    fmt, size = _INTS[kind]
                    value = unpack_from(fmt, frame, pos)[0]
                    pos += size
                elif kind in (6, 7):
                    length = unpack_from(">H", frame, pos)[0]
                    raw = frame[pos + 2 : pos + 2 + length]
                    if len(raw) != length:
                        raise IndexError("value runs past the headers")
                    value = raw if kind == 6 else decode_utf8(raw, offset + pos + 2, self.log)
                    pos += 2 + length
                elif kind == 9:
                    if pos + 16 > end:
                        raise IndexError("value runs past the headers")
                    value = uuid.UUID(bytes=frame[pos : pos + 16])
                    pos += 16
                else:
                    self.log.add(IssueKind.INVALID_FRAME, offset,
                                 f"header {name!r} has unknown value type {kind}: frame skipped")
                    return None
                if pos > end:
                    raise IndexError("value runs past the headers")
                if name in headers:
                    self.log.add(IssueKind.INVALID_FRAME, offset, f"duplicate header {name!r}: the last value kept")
                headers[name] = value
        except (IndexError, StructError) as exc:  # a length or value runs past the frame
            self.log.add(IssueKind.INVALID_FRAME, offset, f"malformed headers ({exc}): frame skipped")
            return None
        return headers


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One frame with string headers (type 7) and ``payload``: what the
    ``done`` repair needs to end a binary stream with an exception."""
    encoded = b"".join(
        bytes([len(n := name.encode())]) + n + b"\x07" + len(v := value.encode()).to_bytes(2, "big") + v
        for name, value in headers.items()
    )
    total = MIN_FRAME + len(encoded) + len(payload)
    prelude = total.to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    prelude += crc32(prelude).to_bytes(4, "big")
    body = prelude + encoded + payload
    return body + crc32(body).to_bytes(4, "big")
