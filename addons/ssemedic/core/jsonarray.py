"""Incremental, UTF-8-safe parser for a JSON array streamed element by element
(Gemini ``:streamGenerateContent`` without ``alt=sse``: ``[{…}``, ``,\\r\\n{…}``, ``]``).

It has the same interface as ``SSEParser``: each array element becomes a
``ServerSentEvent`` with ``event == "message"`` and the element's JSON text
as ``data``. Whether an element is valid JSON is left to the provider
interpreter, which decodes every payload with core's strict ``loads``
anyway; framing only finds where each element ends.

Strategy: a small state machine over bytes. Between elements it expects
``[``, ``,``, ``]`` and whitespace; inside an element it tracks only string
state (inside a string, after a backslash) and bracket depth, jumping from
one interesting byte to the next with a regex. Every byte that matters
(quote, backslash, bracket, comma) is ASCII and never occurs inside a
multi-byte UTF-8 sequence, so an element is decoded only once it is whole.
An element's ``raw`` starts after the previous element (its leading
``,`` and whitespace included), so dropping one event leaves a valid array;
the opening ``[`` and the closing ``]`` lie between events. A body that does
not start with ``[`` (an error object) is read as top-level values, one
event each.
"""

from __future__ import annotations

import re

from .events import (
    BOM,
    DEFAULT_MAX_EVENT_SIZE,
    IssueKind,
    IssueLog,
    ParseIssue,
    ServerSentEvent,
    decode_utf8,
    preview,
)

__all__ = ["JSONArrayParser"]

_WS = b" \t\r\n"
# Outside strings inside an element: what changes depth or string state.
_STRUCT = re.compile(rb'["{}\[\]]')
# Inside a string: what ends it or escapes.
_IN_STRING = re.compile(rb'["\\]')
# A bare literal (number, true, false, null) ends at these.
_LITERAL_END = re.compile(rb"[,\]\s]")
_NOT_WS = re.compile(rb"[^ \t\r\n]")
# Where garbage between elements stops: something we can read again. Letters,
# digits and spaces go on with it, so where it ends does not depend on the chunking.
_RESYNC = re.compile(rb'[,\]\[{"]')

# States between elements.
_START = 0  # before the opening [ (or the first bare value)
_OPEN = 1  # after [ or a comma: an element (or ]) comes next
_AFTER = 2  # after an element: a comma or ] comes next
_END = 3  # after the closing ]
_ELEMENT = 4  # inside an element


class JSONArrayParser:
    """Sans-IO streamed-JSON-array parser: ``feed(bytes)`` in, one event per element out."""

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if max_event_size < 1:
            raise ValueError("max_event_size must be positive")
        self.max_event_size = max_event_size
        self.log = IssueLog()
        #: Stream offset up to which every byte belongs to a whole element or the array's frame.
        self.boundary = 0
        self.consumed = 0
        self._state = _START
        self._bare = False  # the body is top-level values, not an array
        self._offset = 0  # stream offset of the next byte to scan
        self._bom_checked = False
        self._bom_held = b""
        # The element being read: where its raw bytes start, the pieces so far.
        self._raw_at = 0
        self._pieces: list[bytes] = []
        self._size = 0
        self._lead = 0
        self._skipping = False  # the element outgrew max_event_size: scanned, not kept
        self._data_at = 0  # offset of the element's first byte (after its separator)
        # Inside the element.
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._literal = False  # a bare number/true/false/null
        self._garbage = False  # inside a run of unexpected bytes (reported once)
        self._closed = False

    @property
    def issues(self) -> list[ParseIssue]:
        return self.log.issues

    @property
    def inside_block(self) -> bool:
        """Whether the bytes so far end inside an element. Costs O(1)."""
        return self._state == _ELEMENT

    @property
    def pending(self) -> int:
        return self.consumed - self.boundary

    @property
    def closed_array(self) -> bool:
        """Whether the array's closing ``]`` arrived."""
        return self._state == _END

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Add received bytes; return the elements they complete."""
        if self._closed:
            raise RuntimeError("JSONArrayParser.feed() called after close()")
        if not data:
            return []
        data = bytes(data)
        self.consumed += len(data)
        if not self._bom_checked:
            data = self._bom_held + data
            if len(data) < len(BOM) and BOM.startswith(data):
                self._bom_held = data
                return []
            self._bom_checked = True
            self._bom_held = b""
            if data.startswith(BOM):
                self.log.add(IssueKind.BOM, 0, "stream starts with a UTF-8 byte order mark")
                data = data[len(BOM) :]
                self._offset = self.boundary = len(BOM)
        events: list[ServerSentEvent] = []
        self._scan(data, events)
        return events

    def close(self) -> list[ServerSentEvent]:
        """End of stream: a bare literal still pending is dispatched; an element
        cut off, or an array without its ``]``, is reported as incomplete."""
        if self._closed:
            return []
        self._closed = True
        events: list[ServerSentEvent] = []
        if self._state == _ELEMENT and self._literal and not self._skipping:
            self._finish(events)  # a literal ends where the stream does
        if self._state == _ELEMENT:
            self.log.add(IssueKind.INCOMPLETE_EVENT, self._data_at, "stream ended inside an array element")
        elif self._state in (_OPEN, _AFTER) and not self._bare:
            self.log.add(IssueKind.INCOMPLETE_EVENT, self._offset, "stream ended before the array's closing ]")
        return events

    # -- scanning -------------------------------------------------------------

    def _scan(self, data: bytes, events: list[ServerSentEvent]) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._state == _ELEMENT:
                end = self._element_end(data, i)
                if end < 0:
                    self._keep(data[i:])
                    self._offset += n - i
                    return
                self._keep(data[i:end])
                self._offset += end - i
                i = end
                self._finish(events)
                continue
            byte = data[i : i + 1]
            if self._garbage and not _RESYNC.match(byte):
                i = self._unexpected(data, i, "")
                continue
            if byte in (b" ", b"\t", b"\r", b"\n"):
                m = _NOT_WS.search(data, i)
                end = m.start() if m else n
                if self._state in (_OPEN, _AFTER):
                    self._keep(data[i:end])
                self._offset += end - i
                i = end
                if self._state in (_START, _END):
                    self.boundary = self._raw_at = self._offset
                continue
            if self._state == _END:
                i = self._unexpected(data, i, "bytes after the array's closing ]")
                continue
            if self._state == _START and byte == b"[":
                self._state = _OPEN
                i += 1
                self._offset += 1
                self._start_raw()  # the [ is frame, not the first element's
                continue
            if byte == b"," and not self._bare:
                if self._state != _AFTER and not self._garbage:  # after garbage, a comma is the way back
                    self.log.add(IssueKind.UNEXPECTED_DATA, self._offset, "a comma where an array element belongs")
                self._state = _OPEN
                self._garbage = False
                self._keep(byte)
                i += 1
                self._offset += 1
                continue
            if byte == b"]" and not self._bare:
                self._state = _END
                self._garbage = False
                i += 1
                self._offset += 1
                self.boundary = self._offset
                self._pieces.clear()
                self._size = 0
                continue
            if byte in b'{["-0123456789tfn' and not (byte == b"[" and self._state == _START):
                if self._state == _START:
                    self._bare = True
                    self._start_raw()
                elif self._state == _AFTER and not self._bare:
                    self.log.add(IssueKind.UNEXPECTED_DATA, self._offset, "array elements without a comma between them")
                self._begin_element(byte)
                continue
            i = self._unexpected(data, i, "unexpected bytes between array elements")

    def _unexpected(self, data: bytes, i: int, what: str) -> int:
        """Skip a run of bytes that belong to no element, reported once; return where it stops."""
        m = _RESYNC.search(data, i + 1)
        end = m.start() if m else len(data)
        if not self._garbage:
            self._garbage = True
            # Only the first byte: the run may go on in the next feed, and the detail must not depend on that.
            self.log.add(IssueKind.UNEXPECTED_DATA, self._offset, f"{what}, from {preview(data[i : i + 1])}")
        self._keep(data[i:end])
        self._offset += end - i
        if self._state in (_START, _END):  # outside the array: it passes as it is
            self.boundary = self._raw_at = self._offset
        return end

    def _start_raw(self) -> None:
        self._raw_at = self._offset
        self._pieces.clear()
        self._size = 0

    def _begin_element(self, first: bytes) -> None:
        self._state = _ELEMENT
        self._garbage = False
        self._data_at = self._offset
        self._lead = self._size  # bytes of separator kept before the element (at most max_event_size)
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._literal = first not in b'{["'

    def _element_end(self, data: bytes, i: int) -> int:
        """Where the element ends in ``data`` (the index after its last byte), or -1."""
        n = len(data)
        if self._literal:
            m = _LITERAL_END.search(data, i)
            return m.start() if m else -1
        while i < n:
            if self._in_string:
                if self._escape:
                    self._escape = False
                    i += 1
                    continue
                m = _IN_STRING.search(data, i)
                if m is None:
                    return -1
                i = m.end()
                if data[m.start()] == 0x5C:  # backslash: the next byte is escaped
                    self._escape = True
                else:
                    self._in_string = False
                    if self._depth == 0:
                        return i  # a bare string element
                continue
            m = _STRUCT.search(data, i)
            if m is None:
                return -1
            i = m.end()
            c = data[m.start()]
            if c == 0x22:
                self._in_string = True
            elif c in (0x7B, 0x5B):
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth <= 0:
                    return i
        return -1

    def _keep(self, piece: bytes) -> None:
        """Keep ``piece``, which starts at ``self._offset``, as part of the next event's raw bytes."""
        if not piece or self._skipping:
            return
        self._size += len(piece)
        if self._size > self.max_event_size and self._state != _ELEMENT:
            # Separators and garbage past the cap: they go on between events, not in one.
            self._pieces.clear()
            self._size = 0
            self._raw_at = self._offset + len(piece)
            return
        if self._size - self._lead > self.max_event_size:  # the cap is on the element, not its separator
            self.log.add(
                IssueKind.OVERSIZED_EVENT, self._data_at, f"array element longer than {self.max_event_size} bytes was skipped"
            )
            self._skipping = True
            self._pieces.clear()
            return
        self._pieces.append(piece)

    def _finish(self, events: list[ServerSentEvent]) -> None:
        """The element that ends at ``self._offset`` is whole: dispatch it."""
        self._state = _OPEN if self._bare else _AFTER
        if not self._skipping:
            raw = b"".join(self._pieces)
            element = raw[self._data_at - self._raw_at :]
            events.append(
                ServerSentEvent("message", decode_utf8(element, self._data_at, self.log), None, None, raw, self._raw_at)
            )
        self._skipping = False
        self.boundary = self._offset
        self._start_raw()
