"""Fault injection: break a healthy stream on purpose, on its way to the client,
so that client robustness can be tested against any real upstream.

Strategy: the injector parses what is about to be sent with its own parser,
so it always works on whole blocks (events, comments) of the outgoing stream.
It then drops, rewrites, delays or re-cuts them. Each piece it returns
becomes its own chunk on the wire (mitmproxy sends every piece the stream
callable returns as a separate HTTP/1.1 chunk). Sans-IO: bytes and times in,
pieces out.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum

from .events import ServerSentEvent
from .ndjson import NDJSONParser
from .sse import SSEParser

#: After how many whole events ``error-done`` and ``cut`` strike.
STRIKE_AFTER_EVENTS = 5

INJECTED_ERROR = {"error": {"message": "injected by ssemedic: upstream failed mid-stream",
                            "type": "server_error", "code": "injected"}}


class Injection(StrEnum):
    SPLIT_UTF8 = "split-utf8"  # chunks end inside multi-byte characters
    SPLIT_EVENTS = "split-events"  # chunks end inside data: lines
    CR = "cr"  # bare CR line endings
    DROP_DONE = "drop-done"  # no [DONE]
    ERROR_DONE = "error-done"  # an error event, then [DONE], then nothing
    BURST = "burst"  # everything in one chunk at the end
    STALL = "stall"  # stall=N: after the first event, hold the rest back N s (or until the upstream ends)
    CUT = "cut"  # stop in the middle of an event


def parse_injections(value: str) -> dict[Injection, float]:
    """``split-utf8,stall=3``-style text; raises ValueError naming what is wrong."""
    chosen: dict[Injection, float] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, _, arg = item.partition("=")
        try:
            kind = Injection(name.strip().lower())
        except ValueError:
            known = ", ".join(i.value for i in Injection)
            raise ValueError(f"unknown injection {name.strip()!r}; known: {known}") from None
        seconds = 0.0
        if kind is Injection.STALL:
            try:
                seconds = float(arg) if arg else 5.0
            except ValueError:
                seconds = -1.0
            if not 0 < seconds < 3600:
                raise ValueError(f"stall needs a number of seconds between 0 and 3600, not {arg!r}")
        elif arg:
            raise ValueError(f"injection {kind.value!r} takes no value")
        chosen[kind] = seconds
    return chosen


#: The first byte of a multi-byte UTF-8 character.
_LEAD_BYTE = re.compile(rb"[\xc0-\xff]")


class Injector:
    """Breaks one outgoing stream; see the module docstring."""

    def __init__(self, injections: dict[Injection, float], framing: str = "sse") -> None:
        self.injections = injections
        self.framing = framing
        self._parser: SSEParser | NDJSONParser = SSEParser() if framing == "sse" else NDJSONParser()
        self._pending = bytearray()  # outgoing bytes not yet cut into whole blocks
        self._pending_at = 0  # offset of _pending[0] in the outgoing stream
        self._held: list[bytes] = []  # whole blocks held back (burst, stall)
        self._stall_from: float | None = None
        self._stall_over = False
        self._events = 0
        self._stopped = False  # after error-done or cut nothing more is sent
        self.done: list[str] = []  # what was injected, for the log

    def feed(self, data: bytes, at: float | None) -> list[bytes]:
        """Pieces to send for outgoing ``data``."""
        if self._stopped or not data:
            return []
        events = self._parser.feed(data)
        self._pending += data
        return self._emit(events, at, final=False)

    def end(self, at: float | None) -> list[bytes]:
        """Pieces to send when the stream ends."""
        if self._stopped:
            return []
        events = self._parser.close()
        pieces = self._emit(events, at, final=True)
        if Injection.ERROR_DONE in self.injections and not self._stopped:
            self._pending.clear()  # an unfinished block would swallow the error: it is what gets cut
            last = (pieces or self._held or [b"\n"])[-1]
            if self.framing == "ndjson" and not last.endswith(b"\n"):
                pieces.append(b"\n")  # a last line without its newline: ended, or the error joins it
            pieces.append(self._error_done())  # a short stream: strike at its end
        if self._pending and not self._stopped:
            pieces.append(bytes(self._pending))  # an unfinished block: as it came
            self._pending.clear()
        return self._release() + pieces if Injection.BURST not in self.injections else self._release_with(pieces)

    def _release_with(self, pieces: list[bytes]) -> list[bytes]:
        self._held.extend(pieces)
        return self._release()

    # -- internals ---------------------------------------------------------------

    def _emit(self, events: list[ServerSentEvent], at: float | None, *, final: bool) -> list[bytes]:
        boundary = self._parser.boundary
        size = boundary - self._pending_at
        if size <= 0 and not events:
            return self._stall_check(at, final)
        region = bytes(self._pending[:size])
        del self._pending[:size]
        start, self._pending_at = self._pending_at, boundary
        blocks: list[bytes] = []
        cursor = 0
        for event in events:
            offset = event.offset - start
            if cursor < offset:
                blocks.append(region[cursor:offset])  # comments, blank lines
            cursor = offset + len(event.raw)
            blocks.extend(self._event(event.raw, event.data))
            if self._stopped:
                break
        if not self._stopped and cursor < len(region):
            blocks.append(region[cursor:])
        pieces = [piece for block in blocks for piece in self._cut(block)]
        if Injection.BURST in self.injections:
            self._held.extend(pieces)
            return []
        if Injection.STALL in self.injections and not self._stall_over:
            if self._stall_from is None:
                if self._events:
                    self._stall_from = at if at is not None else 0.0
                    self.done.append(f"stalled {self.injections[Injection.STALL]:g} s")
                return pieces  # the first event goes out; the rest waits
            self._held.extend(pieces)
            return self._stall_check(at, final)
        return pieces

    def _event(self, raw: bytes, data: str) -> list[bytes]:
        if data.strip() == "[DONE]":
            if Injection.DROP_DONE in self.injections:
                self.done.append("[DONE] dropped")
                return []
            if Injection.ERROR_DONE in self.injections:
                return []  # replaced by the injected error and [DONE] (at the latest at the end)
        self._events += 1
        if Injection.CR in self.injections:
            raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r")
            if self._events == 1:
                self.done.append("line endings turned into bare CR")
        if self._events > STRIKE_AFTER_EVENTS and Injection.ERROR_DONE in self.injections:
            return [self._error_done()]
        if self._events > STRIKE_AFTER_EVENTS and Injection.CUT in self.injections:
            self._stopped = True
            self.done.append(f"cut inside event #{self._events}")
            return [raw[: max(1, len(raw) // 2)]]
        return [raw]

    def _error_done(self) -> bytes:
        self._stopped = True
        self.done.append(f"error and [DONE] after event #{min(self._events - 1, STRIKE_AFTER_EVENTS)}")
        if self.framing == "ndjson":  # an error line; NDJSON has no [DONE]
            return f"{json.dumps(INJECTED_ERROR)}\n".encode()
        return f"data: {json.dumps(INJECTED_ERROR)}\n\ndata: [DONE]\n\n".encode()

    def _cut(self, block: bytes) -> list[bytes]:
        """Re-cut one block into pieces that end inside a character or a line."""
        cuts: set[int] = set()
        if Injection.SPLIT_UTF8 in self.injections:
            lead = _LEAD_BYTE.search(block)  # a regex, not a loop in Python: blocks may be megabytes
            if lead is not None:
                cuts.add(lead.start() + 1)
        if Injection.SPLIT_EVENTS in self.injections and len(block) > 8:
            cuts.add(len(block) // 2)
        if not cuts:
            return [block]
        if "split" not in " ".join(self.done):
            self.done.append("chunks cut inside " + " and ".join(
                name for kind, name in ((Injection.SPLIT_UTF8, "characters"), (Injection.SPLIT_EVENTS, "events"))
                if kind in self.injections))
        points = [0, *sorted(c for c in cuts if 0 < c < len(block)), len(block)]
        return [block[a:b] for a, b in zip(points, points[1:]) if b > a]

    def _stall_check(self, at: float | None, final: bool) -> list[bytes]:
        if self._stall_from is None or not self._held:
            return []
        waited = at is not None and at - self._stall_from >= self.injections.get(Injection.STALL, 0.0)
        if final or waited:
            self._stall_over = True  # stall once
            return self._release()
        return []

    def _release(self) -> list[bytes]:
        if not self._held:
            return []
        if Injection.BURST in self.injections:
            self.done.append("whole stream sent in one burst")
            held, self._held = b"".join(self._held), []
            return [held]
        held_pieces, self._held = self._held, []
        return held_pieces
