"""Incremental, UTF-8-safe parser for newline-delimited JSON streams (Ollama).

It has the same interface as ``SSEParser``: each non-blank line becomes a
``ServerSentEvent`` with ``event == "message"`` and the line as ``data``.
Whether a line is valid JSON is left to the provider interpreter, which parses
it anyway; framing only cuts lines. A CRLF is accepted as a line end.
"""

from __future__ import annotations

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

__all__ = ["NDJSONParser"]


class NDJSONParser:
    """Sans-IO NDJSON parser: ``feed(bytes)`` in, one event per line out."""

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if max_event_size < 1:
            raise ValueError("max_event_size must be positive")
        self.max_event_size = max_event_size
        self.log = IssueLog()
        self.boundary = 0
        self.consumed = 0
        self._buf = b""
        # Feeds without a newline, joined to _buf only when a line ends, so a
        # long line costs linear time.
        self._held: list[bytes] = []
        self._held_size = 0
        self._content = False  # whether the pending bytes hold more than CR/LF
        self._offset = 0
        self._bom_checked = False
        self._skipping: int | None = None
        self._closed = False

    @property
    def issues(self) -> list[ParseIssue]:
        return self.log.issues

    @property
    def pending_bytes(self) -> bytes:
        """The buffered start of an unfinished event (or line), if any."""
        return self._unfold()

    @property
    def inside_block(self) -> bool:
        """Whether the bytes so far end inside a line. Costs O(1)."""
        return self._content

    @property
    def pending(self) -> int:
        return self.consumed - self.boundary

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Add received bytes; return the lines they complete."""
        if self._closed:
            raise RuntimeError("NDJSONParser.feed() called after close()")
        if not data:
            return []
        data = bytes(data)
        self.consumed += len(data)
        if self._skipping is not None:
            return self._skip(data)
        if (
            self._bom_checked
            and b"\n" not in data
            and len(self._buf) + self._held_size + len(data) <= self.max_event_size
        ):
            self._held.append(data)
            self._held_size += len(data)
            self._content = self._content or bool(data.strip(b"\r\n"))
            return []
        buf = self._unfold()
        buf = buf + data if buf else data
        if not self._bom_checked:
            if len(buf) < len(BOM) and BOM.startswith(buf):
                self._buf = buf
                return []
            buf = self._strip_bom(buf)
        return self._parse(buf, len(buf) - len(data))

    def close(self) -> list[ServerSentEvent]:
        """End of stream: a last line without its newline is still dispatched,
        as line-reading clients do, and reported."""
        if self._closed:
            return []
        self._closed = True
        if self._skipping is not None:
            self.log.add(IssueKind.INCOMPLETE_EVENT, self._skipping, "stream ended inside an oversized line")
            return []
        buf, self._buf = self._unfold(), b""
        self._content = False
        if not self._bom_checked:
            buf = self._strip_bom(buf)
        if not buf.strip():
            return []
        self.log.add(
            IssueKind.MISSING_FINAL_NEWLINE,
            self._offset,
            f"last line has no newline: {preview(buf)}",
        )
        events: list[ServerSentEvent] = []
        self._line(buf, buf, self._offset, events)
        self.boundary = self._offset + len(buf)
        return events

    def _strip_bom(self, buf: bytes) -> bytes:
        self._bom_checked = True
        if buf.startswith(BOM):
            self.log.add(IssueKind.BOM, 0, "stream starts with a UTF-8 byte order mark")
            self._offset = self.boundary = len(BOM)
            return buf[len(BOM) :]
        return buf

    def _parse(self, buf: bytes, scan: int) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        start = 0
        while (i := buf.find(b"\n", max(scan, start))) >= 0:
            self._line(buf[start:i], buf[start : i + 1], self._offset + start, events)
            start = i + 1
        self._offset += start
        self.boundary = self._offset
        rest = buf[start:]
        if len(rest) > self.max_event_size:
            self.log.add(
                IssueKind.OVERSIZED_EVENT, self._offset, f"line longer than {self.max_event_size} bytes was skipped"
            )
            self._skipping = self._offset
            self._offset += len(rest)
            rest = b""
        self._buf = rest
        self._content = bool(rest.strip(b"\r\n"))
        return events

    def _unfold(self) -> bytes:
        """``_buf`` with the held feeds joined to it."""
        if self._held:
            self._buf += b"".join(self._held)
            self._held.clear()
            self._held_size = 0
        return self._buf

    def _skip(self, data: bytes) -> list[ServerSentEvent]:
        i = data.find(b"\n")
        if i < 0:
            self._offset += len(data)
            self._content = True
            return []
        self._skipping = None
        self._offset += i + 1
        self.boundary = self._offset
        return self._parse(data[i + 1 :], 0)

    def _line(self, line: bytes, raw: bytes, offset: int, events: list[ServerSentEvent]) -> None:
        if len(line) > self.max_event_size:
            self.log.add(IssueKind.OVERSIZED_EVENT, offset, f"line longer than {self.max_event_size} bytes was skipped")
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return
        events.append(ServerSentEvent("message", decode_utf8(line, offset, self.log), None, None, raw, offset))
