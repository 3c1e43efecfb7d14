"""Incremental, UTF-8-safe parser for the WHATWG event-stream format.

Spec: https://html.spec.whatwg.org/multipage/server-sent-events.html
(section 9.2.6, "Interpreting an event stream").

Strategy: work on bytes and cut the stream into *blocks*, each ended by a blank
line (two consecutive line terminators). A block is parsed only once it is
complete, so a field, a line or a multi-byte character split across feeds is
simply bytes waiting in the buffer. CR and LF never occur inside a UTF-8
multi-byte sequence, so decoding a complete line's bytes is exactly what
decoding the whole stream first would give. Only a block's field values are
decoded, and each block keeps its raw bytes for byte-exact pass-through.

Line terminators are CRLF, LF or CR. A CR at the very end of the buffer may be
the first half of a CRLF, so a block whose terminator ends in that CR waits for
the next byte, or for ``close()``, before it is cut.

Most feeds of an LLM token stream complete nothing but single-line ``data: ``
events with LF line ends; ``feed()`` takes such a run in a few C calls per
event (``_simple_events``), and everything else goes block by block. Tests
compare both with a reference interpreter over any chunking.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import accumulate, repeat

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

__all__ = ["SSEParser", "ServerSentEvent"]

# A blank line: a terminator followed by another one. The first may not be a
# CR that is half of a CRLF, or "a\r\nb" would read as CR + LF.
_BLOCK_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")
_LINE_SPLIT = re.compile(rb"(\r\n|\r|\n)")
# Buffered bytes that end with a blank line held back only because its last
# CR may be half of a CRLF: a complete block, not a split one.
_ENDS_IN_BLANK_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r)\Z")
# The raw block of a lone "data: " line with the given value.
_simple_raw = b"data: %b\n\n".__mod__

# Builds a ServerSentEvent from its field values in one C call (see framing).
_new_event = tuple.__new__
# Endless, stateless iterators that every parser's runs of events share.
_EVENT_CLASS = repeat(ServerSentEvent)
_MESSAGE = repeat("message")
_NO_RETRY = repeat(None)

# Bytes are tested for CR or LF with these ints: `b"\r" in data` first tries
# the needle as an int and raises (and clears) a TypeError on every call,
# about ten times the cost of the memchr that follows.
_CR = 0x0D
_LF = 0x0A

# int() refuses longer digit strings when sys.set_int_max_str_digits() is at
# its minimum; no sane reconnection time comes close.
_MAX_RETRY_DIGITS = 640


class SSEParser:
    """Sans-IO event-stream parser: ``feed(bytes)`` in, ``ServerSentEvent`` out.

    Malformed input never raises; it is recorded in ``issues``. A block larger
    than ``max_event_size`` is reported once and skipped, and the parser keeps
    no more than that many bytes of any block.
    """

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if max_event_size < 1:
            raise ValueError("max_event_size must be positive")
        self.max_event_size = max_event_size
        self.log = IssueLog()
        #: The last event ID buffer (None until an ``id`` field is accepted).
        self.last_event_id: str | None = None
        #: The reconnection time set by the latest valid ``retry`` field.
        self.reconnection_time: int | None = None
        #: Stream offset up to which every byte belongs to a complete block.
        self.boundary = 0
        #: Stream bytes seen so far.
        self.consumed = 0
        #: Comment lines seen: keep-alives (``: ping``, OpenRouter's ``: OPENROUTER PROCESSING``).
        self.comments = 0

        self._buf = b""  # unparsed bytes; _buf[0] is at stream offset _offset
        # Feeds that cannot end a block, kept apart and joined to _buf only
        # when a block can end (see _hold): a large event then costs linear time.
        self._held: list[bytes] = []
        self._held_size = 0
        self._held_content = False  # whether _held has a byte other than LF
        self._offset = 0
        self._scan = 0  # where the search for a block end resumes in _buf
        self._bom_checked = False
        self._skipping: int | None = None  # start offset of an oversized block
        self._closed = False
        self._n_cr = self._n_crlf = 0
        self._n_lf = 0  # LFs in the stream before _offset; _buf holds the rest
        self._last_was_cr = False
        self._buf_has_cr = False
        # Whether the next feed may skip the start-of-stream, CR, oversized
        # and closed checks: set once a feed ends with none of them pending.
        self._plain = False

    @property
    def issues(self) -> list[ParseIssue]:
        return self.log.issues

    @property
    def line_endings(self) -> Counter[str]:
        """How many line terminators of each kind (``lf``, ``crlf``, ``cr``) were seen."""
        return Counter(
            {
                "lf": self._n_lf + self._unfold().count(b"\n") - self._n_crlf,
                "crlf": self._n_crlf,
                "cr": self._n_cr - self._n_crlf,
            }
        )

    @property
    def pending_bytes(self) -> bytes:
        """The buffered start of an unfinished event (or line), if any."""
        return self._unfold()

    @property
    def inside_block(self) -> bool:
        """Whether the bytes so far end inside a block: an event (or a line of
        one) has begun and its blank line has not arrived. A block held back
        only for the LF that may follow its last CR is complete. Costs O(1)."""
        if self._held:
            return self._scan > 0 or self._held_content  # held feeds have no CR
        return self._scan > 0 and not _ENDS_IN_BLANK_LINE.search(self._buf[-4:])

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete block."""
        return self.consumed - self.boundary

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Add received bytes; return the events they complete."""
        if type(data) is not bytes:
            data = bytes(data)
        if self._plain and _CR not in data:
            # The usual case, mid-stream with LF line ends.
            self.consumed += len(data)
            # Where the complete blocks end (1: none), searched in the new bytes
            # only: a feed that ends no block is held, not joined (see _hold).
            cut = data.rfind(b"\n\n")
            if cut < 0 and data and self._hold(data):
                return []
            head = self._unfold()
            buf = head + data
            end = len(head) + cut + 2 if cut >= 0 else buf.rfind(b"\n\n", self._scan) + 2
            if end > 1 and (events := self._simple_events(buf, end)) is not None:
                self._n_lf += 2 * len(events)
                self._offset = self.boundary = self._offset + end
                rest = buf[end:]
                if len(rest) - 3 > self.max_event_size:
                    self._keep(rest, has_cr=False)
                else:  # what _keep does when no block is oversized and no CR is pending
                    self._buf = rest
                    self._scan = len(rest.rstrip(b"\n"))
                return events
            return self._parse(buf, final=False, has_cr=False)
        if self._closed:
            raise RuntimeError("SSEParser.feed() called after close()")
        if not data:
            return []
        self.consumed += len(data)
        has_cr = _CR in data
        if has_cr or self._last_was_cr:
            self._count_cr(data)
        buf = self._unfold() + data
        if not self._bom_checked:
            if len(buf) < len(BOM) and BOM.startswith(buf):
                self._buf = buf
                return []
            buf = self._strip_bom(buf)
        return self._parse(buf, final=False, has_cr=has_cr or self._buf_has_cr)

    def close(self) -> list[ServerSentEvent]:
        """Signal the end of the stream; return any events it completes.

        A last block without its blank line is not dispatched (WHATWG: "if the
        file ends in the middle of an event, [...] the pending data is
        discarded"); it is reported as ``incomplete-event``.
        """
        if self._closed:
            return []
        self._closed = True
        buf, self._buf = self._unfold(), b""
        if not self._bom_checked:
            buf = self._strip_bom(buf)
        events = self._parse(buf, final=True, has_cr=_CR in buf)
        rest = self._buf
        if self._skipping is not None:
            self.log.add(
                IssueKind.INCOMPLETE_EVENT,
                self._skipping,
                "stream ended inside an oversized event",
            )
        elif rest.strip(b"\r\n"):
            self.log.add(
                IssueKind.INCOMPLETE_EVENT,
                self._offset,
                f"stream ended without the blank line that ends the last event: {preview(rest)}",
            )
        return events

    # -- internals ---------------------------------------------------------

    def _hold(self, data: bytes) -> bool:
        """Keep ``data`` (LF-only, with no blank line in it) unparsed when it
        cannot end a block either: it does not start with the LF of a blank
        line straddling the feeds, and the block stays within the size cap."""
        if data[0] == _LF and (self._held[-1] if self._held else self._buf)[-1:] == b"\n":
            return False
        if len(self._buf) + self._held_size + len(data) - 3 > self.max_event_size:
            return False  # let _keep start skipping the oversized block
        self._held.append(data)
        self._held_size += len(data)
        if not self._held_content and data.count(b"\n") != len(data):
            self._held_content = True
        return True

    def _unfold(self) -> bytes:
        """``_buf`` with the held feeds joined to it."""
        if self._held:
            self._buf += b"".join(self._held)
            self._held.clear()
            self._held_size = 0
            self._held_content = False
            self._scan = len(self._buf.rstrip(b"\n"))  # as _keep sets it (held feeds have no CR)
        return self._buf

    def _strip_bom(self, buf: bytes) -> bytes:
        # WHATWG decodes the stream with "UTF-8 decode", which strips one
        # leading BOM; a BOM anywhere else is an ordinary character.
        self._bom_checked = True
        if buf.startswith(BOM):
            self.log.add(IssueKind.BOM, 0, "stream starts with a UTF-8 byte order mark")
            self._offset = self.boundary = len(BOM)
            return buf[len(BOM) :]
        return buf

    def _count_cr(self, data: bytes) -> None:
        # Counting CR, LF and CRLF separately, with a CRLF allowed to straddle
        # feeds, gives the same totals for any chunking.
        self._n_cr += data.count(b"\r")
        self._n_crlf += data.count(b"\r\n") + (self._last_was_cr and data[0] == _LF)
        self._last_was_cr = data[-1] == _CR

    def _parse(self, buf: bytes, *, final: bool, has_cr: bool) -> list[ServerSentEvent]:
        """Events from every complete block in ``buf``, block by block."""
        events: list[ServerSentEvent] = []
        start = 0  # start of the current block in buf
        if has_cr:
            scan = self._scan
            while (m := _BLOCK_END.search(buf, scan)) is not None:
                end = m.end()
                if end == len(buf) and buf[-1] == _CR and not final:
                    break  # the CR may be half of a CRLF that belongs to this block
                self._end_block(buf, start, m.start(), end, events)
                start = scan = end
            self._n_lf += buf.count(b"\n", 0, start)
            self._offset += start
        elif buf.find(b"\n\n", self._scan) >= 0:
            # LF only: one split cuts every complete block, and the last
            # piece is the unfinished rest.
            blocks = buf.split(b"\n\n")
            start = len(buf) - len(blocks.pop())
            events = self._lf_blocks(blocks)
            self._n_lf += buf.count(b"\n", 0, start)
            self._offset = self.boundary = self._offset + start
        self._keep(buf[start:] if start else buf, has_cr=has_cr)
        return events

    def _keep(self, rest: bytes, *, has_cr: bool) -> None:
        """Buffer ``rest``, the start of an unfinished block at ``_offset``."""
        if self._skipping is None and len(rest) - 3 > self.max_event_size:
            # The block is certainly over the cap: its terminator is at most
            # three bytes of what is buffered.
            self._skipping = self._offset
            self._report_oversized(self._offset)
        if self._skipping is not None and len(rest) > 3:
            # Keep only what could be the start of the blank line that ends it.
            self._n_lf += rest.count(b"\n", 0, len(rest) - 3)
            self._offset += len(rest) - 3
            rest = rest[-3:]
        self._buf = rest
        self._buf_has_cr = has_cr and _CR in rest
        # Resume the search just before any trailing line-terminator bytes, so
        # a blank line straddling two feeds is found, but never mid-CRLF.
        self._scan = len(rest.rstrip(b"\r\n"))
        self._plain = not (
            self._buf_has_cr or self._last_was_cr or self._skipping is not None or self._closed
        ) and self._bom_checked

    def _simple_events(self, buf: bytes, end: int) -> list[ServerSentEvent] | None:
        """The events of the complete blocks in ``buf[:end]``, if each of them is
        one ``data: `` line of valid UTF-8 within the size cap; None otherwise
        (then the block-by-block path takes over).

        Strategy: nearly every feed of a token stream is such a run, and it is
        done with a few C calls per event instead of Python work per line. The
        run reads ``data: X1\\n\\ndata: X2 ... Xn\\n\\n``: one split gives
        every value X, and the blocks are single lines when no X holds a LF.
        """
        if not buf.startswith(b"data: "):
            return None
        values = buf[6 : end - 2].split(b"\n\ndata: ")
        if _LF in b"".join(values):
            return None  # some block has another line
        if end - 2 > self.max_event_size and max(map(len, values)) + 6 > self.max_event_size:
            return None
        try:
            if len(values) == 1:
                # One event, as when each chunk carries one: build it directly.
                fields = ("message", values[0].decode(), self.last_event_id, None, buf[:end], self._offset)
                return [_new_event(ServerSentEvent, fields)]
            raws = list(map(_simple_raw, values))
            offsets = accumulate(map(len, raws), initial=self._offset)
            runs = zip(_MESSAGE, map(bytes.decode, values), repeat(self.last_event_id), _NO_RETRY, raws, offsets)
            return list(map(_new_event, _EVENT_CLASS, runs))
        except UnicodeDecodeError:
            return None

    def _lf_blocks(self, blocks: list[bytes]) -> list[ServerSentEvent]:
        """Events from the complete LF-only ``blocks`` that start at ``_offset``."""
        offset = self._offset
        if self._skipping is not None:
            # The first block is the tail of an oversized one.
            self._skipping = None
            offset += len(blocks[0]) + 2
            blocks = blocks[1:]
        events: list[ServerSentEvent] = []
        for block in blocks:
            raw = block + b"\n\n"
            if len(block) > self.max_event_size:
                self._report_oversized(offset)
            elif (event := self._interpret(block, raw, offset)) is not None:
                events.append(event)
            offset += len(raw)
        return events

    def _end_block(
        self, buf: bytes, start: int, content_end: int, end: int, events: list[ServerSentEvent]
    ) -> None:
        offset = self._offset + start
        self.boundary = self._offset + end
        if self._skipping is not None:
            self._skipping = None
        elif content_end - start > self.max_event_size:
            self._report_oversized(offset)
        else:
            event = self._interpret(buf[start:content_end], buf[start:end], offset)
            if event is not None:
                events.append(event)

    def _report_oversized(self, offset: int) -> None:
        self.log.add(
            IssueKind.OVERSIZED_EVENT,
            offset,
            f"event larger than {self.max_event_size} bytes was skipped",
        )

    def _interpret(self, block: bytes, raw: bytes, offset: int) -> ServerSentEvent | None:
        """Apply the field rules of WHATWG 9.2.6 to one complete block."""
        log = self.log
        # The two usual shapes first, with the same result as the loop below:
        # a lone "data:" line, and an "event: " line followed by a "data: "
        # line (Anthropic and the OpenAI Responses API send only those).
        if block[:5] == b"data:" and _LF not in block and _CR not in block:
            value = block[5:]
            if value[:1] == b" ":
                value = value[1:]
                offset_value = offset + 6
            else:
                offset_value = offset + 5
            data = decode_utf8(value, offset_value, log)
            return _new_event(ServerSentEvent, ("message", data, self.last_event_id, None, raw, offset))
        if block[:7] == b"event: " and _CR not in block:
            head, _, line = block.partition(b"\n")
            if line[:6] == b"data: " and _LF not in line:
                event_type = decode_utf8(head[7:], offset + 7, log)
                data = decode_utf8(line[6:], offset + len(head) + 7, log)
                fields = (event_type or "message", data, self.last_event_id, None, raw, offset)
                return _new_event(ServerSentEvent, fields)

        event_type = ""
        data_lines: list[str] = []
        retry: int | None = None
        line_offset = offset
        has_cr = _CR in block
        pieces = _LINE_SPLIT.split(block) if has_cr else block.split(b"\n")
        step = 2 if has_cr else 1  # with the regex, terminators alternate
        for i in range(0, len(pieces), step):
            line = pieces[i]
            here = line_offset
            line_offset += len(line) + (len(pieces[i + 1]) if step == 2 and i + 1 < len(pieces) else 1)
            if not line:
                continue  # only leading blank lines reach here: nothing is pending
            if line[0] == 0x3A:  # ":" starts a comment
                self.comments += 1
                decode_utf8(line, here, log)
                continue
            name, colon, value = line.partition(b":")
            skip = len(name) + len(colon)
            if value[:1] == b" ":  # exactly one space is stripped
                value = value[1:]
                skip += 1
            if name == b"data":
                data_lines.append(decode_utf8(value, here + skip, log))
            elif name == b"event":
                event_type = decode_utf8(value, here + skip, log)
            elif name == b"id":
                if 0 in value:  # NUL
                    log.add(IssueKind.INVALID_ID, here, "id field containing NUL ignored")
                    decode_utf8(value, here + skip, log)
                else:
                    self.last_event_id = decode_utf8(value, here + skip, log)
            elif name == b"retry":
                # bytes.isdigit() is ASCII-only, as WHATWG requires.
                digits = value.lstrip(b"0")
                if not value.isdigit():
                    log.add(IssueKind.INVALID_RETRY, here, f"retry value {preview(value)} is not all ASCII digits")
                    decode_utf8(value, here + skip, log)
                elif len(digits) > _MAX_RETRY_DIGITS:
                    log.add(IssueKind.INVALID_RETRY, here, f"retry value of {len(digits)} digits ignored as too large")
                else:
                    retry = self.reconnection_time = int(digits or b"0")
            else:
                detail = f"unknown field {preview(name)} ignored"
                if name == b"error":  # llama.cpp's server sends its stream errors so: keep what it said
                    detail += f": {preview(value, 300)}"
                log.add(IssueKind.UNKNOWN_FIELD, here, detail)
                decode_utf8(line, here, log)

        if not data_lines:
            return None  # WHATWG: no data, no dispatch
        data = "\n".join(data_lines)
        return _new_event(ServerSentEvent, (event_type or "message", data, self.last_event_id, retry, raw, offset))
